"""Stage, time and build the book.

The committed notebooks have no outputs. Each build executes them exactly once, through nbmake
(pytest), on copies in ``_stage``; Jupyter Book then renders those executed copies without
running them again. Usage (the Makefile calls these)::

    python scripts/book.py stage                 # copy the book's sources into _stage
    python scripts/book.py runtimes JUNIT.xml    # record each chapter's run time, show it in the book
    python scripts/book.py build [--strict]      # render _stage into _build/html
"""
from __future__ import annotations

import argparse
import json
import os
import platform
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import nbformat
import yaml

ROOT = Path(__file__).resolve().parents[1]
STAGE = ROOT / "_stage"  # not under _build: nbmake skips paths containing "_build"
RUNTIMES = ROOT / "_build" / "runtimes.json"
SOURCES = ("_toc.yml", "book", "notebooks", "landmarks")  # the library's source: chapters literalinclude it


def stage() -> None:
    """Copy the book's sources into the stage and switch execution off there."""
    shutil.rmtree(STAGE, ignore_errors=True)
    STAGE.mkdir(parents=True)
    for name in SOURCES:
        source = ROOT / name
        if source.is_dir():
            shutil.copytree(source, STAGE / name,
                            ignore=shutil.ignore_patterns(".ipynb_checkpoints", "__pycache__", "assets"))
        else:
            shutil.copy2(source, STAGE / name)
    config = yaml.safe_load((ROOT / "_config.yml").read_text())
    config.setdefault("execute", {})["execute_notebooks"] = "off"
    (STAGE / "_config.yml").write_text(yaml.safe_dump(config, sort_keys=False))
    print(f"staged the book in {STAGE}")


def notebook_times(junit_path: Path) -> dict[str, float]:
    """Seconds per notebook from nbmake's JUnit report (one test case per notebook)."""
    times: dict[str, float] = {}
    for case in ElementTree.parse(junit_path).getroot().iter("testcase"):
        name = case.get("name", "")
        if name.endswith(".ipynb"):
            times[name] = times.get(name, 0.0) + float(case.get("time", 0.0))
    return times


def _runtime_cell(seconds: float, profile: str) -> nbformat.NotebookNode:
    text = (f"```{{note}}\nThis chapter executed in **{seconds:.0f} s** while the book was built "
            f"(profile `{profile}`, {os.cpu_count()} CPU cores, Python {platform.python_version()}).\n```")
    return nbformat.v4.new_markdown_cell(text, metadata={"tags": ["runtime"]})


def runtimes(junit_path: Path) -> None:
    """Write ``_build/runtimes.json``, a run-time table page, and a note in each executed chapter."""
    times = notebook_times(junit_path)
    if not times:
        raise SystemExit(f"{junit_path}: no notebook test cases found")
    profile = os.environ.get("LANDMARKS_PROFILE", "quick")
    RUNTIMES.write_text(json.dumps({"profile": profile, "seconds": times}, indent=2))
    rows = []
    for name, seconds in sorted(times.items()):
        path = STAGE / "notebooks" / name
        notebook = nbformat.read(path, as_version=4)
        notebook.cells.insert(1, _runtime_cell(seconds, profile))
        nbformat.write(notebook, path)
        rows.append(f"| [{name}](../notebooks/{name}) | {seconds:.0f} |")
    total = sum(times.values())
    table = "\n".join(["| chapter | seconds |", "|---|---|", *rows, f"| **total** | **{total:.0f}** |"])
    page = STAGE / "book" / "runtimes.md"
    page.write_text(page.read_text().replace("<!-- RUNTIME-TABLE -->", table))
    print(f"notebooks ran {total:.0f} s in total ({len(times)} chapters, profile {profile}):")
    for name, seconds in sorted(times.items()):
        print(f"  {seconds:7.1f} s  {name}")


def build(strict: bool) -> None:
    """Render the staged (already executed) book into ``_build/html``."""
    executable = Path(sys.executable).parent / "jupyter-book"
    command = [str(executable), "build", "--all", str(STAGE), "--path-output", str(ROOT)]
    if strict:
        command += ["-W", "--keep-going"]
    subprocess.run(command, check=True)
    print(f"\nThe book is at {ROOT / '_build' / 'html' / 'index.html'}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("stage", help="copy the book's sources into _stage")
    timing = commands.add_parser("runtimes", help="record the chapters' run times from a JUnit report")
    timing.add_argument("junit", type=Path)
    building = commands.add_parser("build", help="render the staged book into _build/html")
    building.add_argument("--strict", action="store_true", help="turn Sphinx warnings into errors")
    args = parser.parse_args(argv)
    if args.command == "stage":
        stage()
    elif args.command == "runtimes":
        runtimes(args.junit)
    else:
        build(args.strict)


if __name__ == "__main__":
    main()
