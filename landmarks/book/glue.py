"""``glue``: hand a value computed in a chapter to its prose, with or without the book's tools.

In the rendered book (``make book``) the chapters' prose quotes numbers that cells compute, through
MyST-NB's ``glue``. On Colab or in a plain Jupyter kernel, MyST-NB is not installed: there the
value is shown under the cell instead (or nothing, with ``display=False``), and the chapter runs the
same. Chapters import it as ``from landmarks.book.glue import glue``.
"""
from __future__ import annotations

from typing import Any

__all__ = ["glue"]


def glue(name: str, value: Any, display: bool = True) -> None:
    """Record ``value`` under ``name`` for the prose (MyST-NB), or display it when MyST-NB is absent."""
    try:
        from myst_nb import glue as myst_glue
    except ImportError:
        if display:
            from IPython.display import display as show

            show(value)
        return
    myst_glue(name, value, display=display)
