"""Colab, simulated.

Colab gives a notebook Python with torch, torchvision and a Jupyter kernel, and nothing of this
project. Every chapter's first cell installs the library from the book's repository when it runs
there. The simulation makes such an environment (a fresh virtual environment with torch,
torchvision, ipykernel and nbclient), runs the install cell's own command in it against this
checkout (its working tree, committed into a scratch repository and installed from there as
``git+file://``, as Colab installs from GitHub), then executes the set-up and import cells of every
chapter there and one whole chapter, from a folder outside the checkout.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torchvision
import yaml

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOKS = sorted((ROOT / "notebooks").glob("*.ipynb"))
REPOSITORY_LINE = re.compile(r'^REPOSITORY = "([^"]+)"', re.M)
#: the chapter executed whole in the simulation (the one that loads no stored model and trains nothing long)
WHOLE = "01_facial_landmarks.ipynb"


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_every_install_cell_installs_from_the_configured_repository():
    url = yaml.safe_load((ROOT / "_config.yml").read_text())["repository"]["url"]
    cells = {path.name: code_cells(path)[0] for path in NOTEBOOKS}
    for name, cell in cells.items():
        match = REPOSITORY_LINE.search(cell)
        assert match and match.group(1) == url, f"{name}: the install cell must use {url} (_config.yml)"
        assert '"google.colab" in sys.modules' in cell and "landmarks[colab] @ git+{REPOSITORY}" in cell, name
    assert len(set(cells.values())) == 1, "every chapter has the same install cell"


def _version(module) -> str:
    return module.__version__.split("+")[0]


def _snapshot(folder: Path) -> Path:
    """The checkout's working tree (tracked and untracked-not-ignored files) as a one-commit repository."""
    listed = subprocess.run(["git", "ls-files", "-z", "--cached", "--others", "--exclude-standard"], cwd=ROOT,
                            capture_output=True, check=True).stdout.decode().split("\0")
    for name in filter(None, listed):
        source = ROOT / name
        if source.is_file():
            (folder / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(source, folder / name)
    git = ["git", "-C", str(folder), "-c", "user.name=test", "-c", "user.email=test@localhost"]
    subprocess.run([*git, "init", "-q"], check=True)
    subprocess.run([*git, "add", "-A"], check=True)
    subprocess.run([*git, "commit", "-q", "-m", "snapshot"], check=True)
    return folder


DRIVER = r'''
import json, sys, nbformat
from nbclient import NotebookClient
notebooks, folder = json.loads(sys.argv[1]), sys.argv[2]
for name, cells in notebooks.items():
    nb = nbformat.v4.new_notebook(cells=[nbformat.v4.new_code_cell(c) for c in cells])
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    NotebookClient(nb, timeout=900, kernel_name="python3", resources={"metadata": {"path": folder}}).execute()
    print("ran", name, len(cells), "cells", flush=True)
'''


@pytest.mark.skipif(shutil.which("git") is None, reason="needs git (pip installs the library from git+file://)")
def test_chapters_run_on_a_simulated_colab(tmp_path):
    venv = tmp_path / "colab"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
    python = str(venv / "bin" / "python")
    pip = [python, "-m", "pip", "install", "-q", "--disable-pip-version-check"]
    subprocess.run([*pip, "--upgrade", "pip"], check=True)   # Colab's pip is a recent one; a venv's may be older
    subprocess.run([*pip, f"torch=={_version(torch)}", f"torchvision=={_version(torchvision)}", "ipykernel",
                    "nbclient"], check=True)
    # the install cell as Colab runs it: google.colab imported, the repository address pointed at this checkout
    repository = _snapshot(tmp_path / "repository")
    install = code_cells(NOTEBOOKS[0])[0]
    install = REPOSITORY_LINE.sub(f'REPOSITORY = "file://{repository}"', install)
    colab = "import sys, types\nsys.modules['google.colab'] = types.ModuleType('google.colab')\n"
    work = tmp_path / "content"   # Colab's working folder: not the checkout
    work.mkdir()
    environment = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    environment["LANDMARKS_PROFILE"] = "quick"

    def run(notebooks: dict[str, list[str]]) -> str:
        result = subprocess.run([python, "-c", DRIVER, json.dumps(notebooks), str(work)], cwd=work, env=environment,
                                capture_output=True, text=True)
        assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-6000:]
        return result.stdout

    run({"install": [colab + install, "import landmarks, landmarks.book; print(landmarks.__file__)"]})
    shown = subprocess.run([python, "-c", "import landmarks; print(landmarks.__file__)"], cwd=work, env=environment,
                           capture_output=True, text=True, check=True).stdout
    assert str(venv) in shown, f"the library must come from the simulated environment, not the checkout: {shown}"
    chapters = {path.name: code_cells(path)[:2] for path in NOTEBOOKS}
    chapters[WHOLE] = code_cells(ROOT / "notebooks" / WHOLE)
    out = run(chapters)
    assert out.count("ran ") == len(NOTEBOOKS)
