"""Point the book at another repository (a fork): ``python scripts/set_repository.py URL``.

The address lives in two places that must agree (``tests/test_colab.py`` checks it): ``repository.url``
in ``_config.yml`` (the book's GitHub and Colab buttons) and the ``REPOSITORY = "..."`` line of every
chapter's first cell (what Colab installs the library from).
"""
from __future__ import annotations

import json
import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main(url: str) -> None:
    if not re.fullmatch(r"https://github\.com/[\w.-]+/[\w.-]+", url):
        raise SystemExit(f"expected https://github.com/OWNER/NAME, got {url!r}")
    config = ROOT / "_config.yml"
    text, count = re.subn(r"(?m)^(  url: ).*$", rf"\g<1>{url}", config.read_text())
    if count != 1:
        raise SystemExit(f"{config}: expected one 'url:' line under 'repository:'")
    config.write_text(text)
    for path in sorted((ROOT / "notebooks").glob("*.ipynb")):
        notebook = json.loads(path.read_text())
        cell = next(c for c in notebook["cells"] if c["cell_type"] == "code")
        source = re.sub(r'(?m)^REPOSITORY = "[^"]*"', f'REPOSITORY = "{url}"', "".join(cell["source"]))
        cell["source"] = source.splitlines(keepends=True)
        path.write_text(json.dumps(notebook, indent=1, ensure_ascii=False) + "\n")
    print(f"_config.yml and {len(list((ROOT / 'notebooks').glob('*.ipynb')))} chapters now use {url}")


if __name__ == "__main__":
    if len(sys.argv) != 2:
        raise SystemExit(__doc__)
    main(sys.argv[1])
