"""The project's own files agree with one another."""
import importlib
import re
import tomllib
from pathlib import Path

import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_environment_yml_installs_the_project_with_the_pyproject_extras():
    env = yaml.safe_load((ROOT / "environment.yml").read_text())
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    pip_section = next(d["pip"] for d in env["dependencies"] if isinstance(d, dict))
    assert len(pip_section) == 1, "environment.yml must install the project, not list packages"
    extras = set(re.fullmatch(r"-e \.\[(.*)\]", pip_section[0]).group(1).split(","))
    assert extras == set(project["optional-dependencies"])
    conda_names = {re.split(r"[<>=]", d)[0] for d in env["dependencies"] if isinstance(d, str)}
    assert conda_names == {"python", "pip"}, "dependencies belong in pyproject.toml"
    python_floor = next(d for d in env["dependencies"] if isinstance(d, str) and d.startswith("python"))
    assert python_floor.split(">=")[1] == project["requires-python"].split(">=")[1]


#: The only upper bounds, each with its reason (also written beside it in pyproject.toml).
UPPER_BOUNDS = {"opencv-python": "OpenCV 5's wheels no longer ship the Haar face cascades that predict uses"}


def test_runtime_dependencies_have_lower_bounds_only():
    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    for requirement in project["dependencies"]:
        name = re.split(r"[<>=]", requirement)[0]
        assert ">=" in requirement and "==" not in requirement, requirement
        assert "<" not in requirement or name in UPPER_BOUNDS, requirement


def test_profile_switch(monkeypatch):
    profile = importlib.import_module("landmarks.profile")
    monkeypatch.delenv(profile.ENV_VARIABLE, raising=False)
    assert profile.current().name == "quick"
    monkeypatch.setenv(profile.ENV_VARIABLE, "FULL")
    full = profile.current()
    assert (full.image_size, full.width, full.epochs, full.batch_size) == (256, 1.0, 60, 16)
    assert full.decay_epochs == (30, 50)
    monkeypatch.setenv(profile.ENV_VARIABLE, "medium")
    with pytest.raises(ValueError, match="medium"):
        profile.current()


def test_notebooks_are_stripped_and_use_python3():
    notebooks = sorted((ROOT / "notebooks").glob("*.ipynb"))
    assert notebooks, "no chapters found"
    import json
    for path in notebooks:
        notebook = json.loads(path.read_text())
        assert notebook["metadata"]["kernelspec"]["name"] == "python3", path.name
        for cell in notebook["cells"]:
            if cell["cell_type"] == "code":
                assert not cell["outputs"] and cell["execution_count"] is None, path.name


def test_every_notebook_is_in_the_table_of_contents():
    toc = (ROOT / "_toc.yml").read_text()
    for path in (ROOT / "notebooks").glob("*.ipynb"):
        assert f"notebooks/{path.stem}" in toc, path.name


def _imports(path: Path) -> set[str]:
    import ast

    tree = ast.parse(path.read_text())
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module)
            names |= {f"{node.module}.{alias.name}" for alias in node.names}
    return names


def test_no_library_module_imports_the_book():
    library = ROOT / "landmarks"
    offenders = []
    for path in library.rglob("*.py"):
        if (library / "book") in path.parents:
            continue
        if any(name == "landmarks.book" or name.startswith("landmarks.book.") for name in _imports(path)):
            offenders.append(str(path.relative_to(ROOT)))
    assert not offenders, f"library modules that import the book's experiments: {offenders}"


def test_only_the_profile_module_branches_on_the_profile_name():
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "landmarks").rglob("*.py")
                 if p.name != "profile.py" and re.search(r"\.name\s*[!=]=\s*[\"'](quick|full)[\"']", p.read_text())]
    assert not offenders, offenders


def test_docstrings_cite_nothing_outside_the_repository():
    pattern = re.compile(r"\b(papers/|REFERENCE\.md|CONTRACT\d*\.md|shared/)")
    offenders = [str(p.relative_to(ROOT)) for p in (ROOT / "landmarks").rglob("*.py") if pattern.search(p.read_text())]
    assert not offenders, offenders


def test_the_publishing_workflow_passes_actionlint_and_runs_the_readme_command():
    import shutil
    import subprocess

    workflow = ROOT / ".github" / "workflows" / "book.yml"
    actionlint = shutil.which("actionlint") or str(Path(__import__("sys").executable).parent / "actionlint")
    result = subprocess.run([actionlint, "-no-color", str(workflow)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr
    jobs = yaml.safe_load(workflow.read_text())["jobs"]
    runs = [step.get("run", "") for step in jobs["test"]["steps"]]
    assert "make test" in runs, "the workflow runs the README's test command"
    uploads = [step for step in jobs["test"]["steps"] if "upload-pages-artifact" in step.get("uses", "")]
    assert uploads and uploads[0]["with"]["path"] == "_build/html"
    assert any("deploy-pages" in step.get("uses", "") for step in jobs["deploy"]["steps"])
    assert "make test" in (ROOT / "README.md").read_text()


def test_no_markdown_line_of_a_chapter_starts_with_a_percent_sign():
    """MyST reads a line that starts with ``%`` as a comment and drops it from the page."""
    import json

    for path in sorted((ROOT / "notebooks").glob("*.ipynb")) + sorted((ROOT / "book").rglob("*.md")):
        if path.suffix == ".ipynb":
            texts = ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "markdown"]
        else:
            texts = [path.read_text()]
        dropped = [line for text in texts for line in text.splitlines() if line.lstrip().startswith("%")]
        assert not dropped, f"{path.name}: lines MyST would drop: {dropped[:3]}"


def test_the_short_schedule_halves_the_profiles():
    from landmarks.profile import PROFILES

    quick = PROFILES["quick"].short_schedule()
    assert (quick["epochs"], quick["batch_size"], quick["decay_epochs"]) == (4, 16, (3,))
    full = PROFILES["full"].short_schedule()
    assert (full["epochs"], full["batch_size"], full["decay_epochs"], full["lr"]) == (30, 8, (15, 25), 1e-4)
