"""The built book, read as a reader's browser would.

These tests read ``$LANDMARKS_BUILT_BOOK`` (the ``_build/html`` folder); ``make test`` sets it after the
book is built, and they are skipped when it is not set (a plain ``pytest tests`` before any build).
The browser check runs headless Chromium (Debian's ``chromium``; ``google-chrome`` elsewhere) on the
files themselves, with no network, and waits for MathJax to typeset the formulas.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
import tempfile
from html.parser import HTMLParser
from pathlib import Path

import pytest

BUILT = os.environ.get("LANDMARKS_BUILT_BOOK")
pytestmark = pytest.mark.skipif(not BUILT, reason="set LANDMARKS_BUILT_BOOK to a built book (make test does)")
CHAPTERS = ["01_facial_landmarks", "02_detection_heads", "03_neighbour_regression", "04_position_overfitting",
            "05_data_distillation", "06_heatmap_spread", "07_adversarial_training", "08_align_loss",
            "09_cropnet_refinement", "10_real_faces"]


def root() -> Path:
    path = Path(BUILT).resolve()
    assert (path / "index.html").exists(), f"{path}: no built book"
    return path


def pages() -> list[Path]:
    return sorted(p for p in root().rglob("*.html") if "_static" not in p.parts and "_sources" not in p.parts)


class _Parser(HTMLParser):
    """Collects table cells, images (with whether they sit in a captioned figure) and headings."""

    def __init__(self) -> None:
        super().__init__()
        self.stack: list[tuple[str, dict]] = []
        self.cells: list[str] = []
        self.cell: list[str] | None = None
        self.images: list[tuple[str, bool]] = []
        self.figures: list[dict] = []
        self.h1: list[str] = []
        self.in_h1 = False

    def handle_starttag(self, tag, attrs):
        attrs = dict(attrs)
        if tag in ("td", "th"):
            self.cell = []
        if tag == "figure":
            self.figures.append({"caption": False})
        if tag == "figcaption" and self.figures:
            self.figures[-1]["caption"] = True
        if tag == "img":
            inside_output = any("cell_output" in (a.get("class") or "") for _, a in self.stack)
            self.images.append((attrs.get("src", ""), inside_output, len(self.figures) and any(
                t == "figure" for t, _ in self.stack)))
        if tag == "h1":
            self.in_h1, self.h1 = True, self.h1 + [""]
        if tag not in ("img", "br", "meta", "link", "input", "hr"):
            self.stack.append((tag, attrs))

    def handle_endtag(self, tag):
        if tag in ("td", "th") and self.cell is not None:
            self.cells.append("".join(self.cell).strip())
            self.cell = None
        if tag == "h1":
            self.in_h1 = False
        for k in range(len(self.stack) - 1, -1, -1):
            if self.stack[k][0] == tag:
                del self.stack[k:]
                break

    def handle_data(self, data):
        if self.cell is not None:
            self.cell.append(data)
        if self.in_h1:
            self.h1[-1] += data


def parse(path: Path) -> _Parser:
    parser = _Parser()
    parser.feed(path.read_text(encoding="utf-8"))
    return parser


def test_chapters_are_numbered_in_the_sidebar_and_the_titles():
    index = (root() / "book" / "intro.html").read_text(encoding="utf-8")   # index.html redirects here
    for number, chapter in enumerate(CHAPTERS, start=1):
        page = root() / "notebooks" / f"{chapter}.html"
        titles = [" ".join(t.split()) for t in parse(page).h1]
        assert any(re.match(rf"^{number}\.\s", t) for t in titles), f"{chapter}: no title numbered {number}: {titles}"
        link = re.search(rf'<a class="reference internal" href="../notebooks/{chapter}.html"[^>]*>(.*?)</a>', index, re.S)
        assert link, f"{chapter}: not in the sidebar"
        shown = " ".join(re.sub("<[^>]+>", " ", link.group(1)).split())
        assert re.match(rf"^{number}\.\s", shown), f"{chapter}: sidebar entry {shown!r} has no number {number}"


def test_no_table_shows_nan_and_no_glue_or_role_is_left_unrendered():
    for page in pages():
        parsed = parse(page)
        bad = [c for c in parsed.cells if re.fullmatch(r"[-+]?nan%?", c, re.I)]
        assert not bad, f"{page.name}: 'nan' in a table"
        text = page.read_text(encoding="utf-8")
        assert "{glue" not in text and "{cite" not in text and "{numref}" not in text, f"{page.name}: an unrendered role"


def test_every_figure_of_a_chapter_has_a_numbered_caption():
    for chapter in CHAPTERS:
        parsed = parse(root() / "notebooks" / f"{chapter}.html")
        outputs = [(src, in_figure) for src, in_output, in_figure in parsed.images if in_output]
        assert outputs, f"{chapter}: no figure"
        untitled = [src for src, in_figure in outputs if not in_figure]
        assert not untitled, f"{chapter}: {len(untitled)} figure(s) without a caption: {untitled[:3]}"
        assert all(figure["caption"] for figure in parsed.figures), f"{chapter}: a figure without a caption"
        text = (root() / "notebooks" / f"{chapter}.html").read_text(encoding="utf-8")
        assert re.search(r"Fig\.\s*\d+\.\d+", text), f"{chapter}: figures are not numbered"


def test_math_is_served_by_the_book_itself():
    scripts = set()
    for page in pages():
        scripts |= set(re.findall(r'<script[^>]+src="([^"]*(?:mathjax|tex-chtml)[^"]*)"', page.read_text(encoding="utf-8")))
    assert scripts, "no page loads MathJax"
    assert not [s for s in scripts if s.startswith(("http:", "https:", "//"))], f"MathJax from the network: {scripts}"
    assert (root() / "_static" / "mathjax" / "tex-chtml.js").exists()


def _browser() -> str | None:
    return next((shutil.which(name) for name in ("chromium", "chromium-browser", "google-chrome") if shutil.which(name)),
                None)


@pytest.mark.skipif(_browser() is None, reason="needs headless Chromium (apt-get install chromium)")
def test_formulas_render_in_a_browser_without_network():
    page = root() / "notebooks" / "02_detection_heads.html"
    assert "$" in page.read_text(encoding="utf-8") or "math" in page.read_text(encoding="utf-8")
    with tempfile.TemporaryDirectory() as profile:
        result = subprocess.run([_browser(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
                                 f"--user-data-dir={profile}", "--proxy-server=127.0.0.1:9", "--virtual-time-budget=20000",
                                 "--dump-dom", page.as_uri()], capture_output=True, text=True, timeout=180)
    dom = result.stdout
    assert "<mjx-container" in dom, "MathJax typeset nothing (is it loaded from the book?)" + result.stderr[-2000:]
    assert "<mjx-merror" not in dom, "MathJax reported a TeX error"
