"""Plots of faces, landmarks, layouts, heatmaps and CED curves (matplotlib).

Functions draw into ``ax`` when given one, otherwise into a new figure, and return the axes (or
the figure for grids). They never call ``plt.show()``, so they work in notebooks and in a headless
book build alike.

Images are drawn with ``extent=(0, W, H, 0)``: pixel ``j`` covers ``[j, j + 1]`` and its centre is
``j + 0.5``, the coordinate convention of :mod:`landmarks.data.coords`, so landmarks need no shifting.
"""
from __future__ import annotations

import math

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.collections import LineCollection
from matplotlib.figure import Figure

from landmarks.data.layouts import Layout
from landmarks.evaluation.metrics import auc, ced

TARGET_STYLE = dict(c="lime", marker="o", s=14, edgecolors="black", linewidths=0.4, label="ground truth")
PRED_STYLE = dict(c="red", marker="x", s=16, linewidths=1.0, label="prediction")

__all__ = ["to_display", "show_landmarks", "show_layout", "face_grid", "heatmap_overlay", "plot_ced", "markdown_table",
           "settings_table", "figure_png", "explorer_html", "TITLE_POINTS_PER_INCH"]


def _numpy(value) -> np.ndarray:
    return value.detach().cpu().numpy() if isinstance(value, torch.Tensor) else np.asarray(value)


def to_display(image) -> np.ndarray:
    """An ``(H, W, 3)`` or ``(H, W)`` float array in ``[0, 1]`` from a ``(C, H, W)`` tensor or an
    ``(H, W[, C])`` array; ``uint8`` is divided by 255, floats are clipped to ``[0, 1]``."""
    is_tensor = isinstance(image, torch.Tensor)
    array = _numpy(image)
    if is_tensor and array.ndim == 3:
        array = array.transpose(1, 2, 0)
    if array.ndim == 3 and array.shape[-1] == 1:
        array = array[..., 0]
    array = array / 255.0 if array.dtype == np.uint8 else array.astype(np.float64)
    return np.clip(array, 0.0, 1.0)


def _axes(ax: Axes | None, size: float = 4.0) -> Axes:
    return plt.subplots(figsize=(size, size))[1] if ax is None else ax


def _imshow(ax: Axes, image) -> tuple[int, int]:
    array = to_display(image)
    height, width = array.shape[:2]
    ax.imshow(array, extent=(0, width, height, 0), cmap="gray" if array.ndim == 2 else None,
              interpolation="nearest", vmin=0, vmax=1)
    ax.set_axis_off()
    return height, width


def _draw_points(ax: Axes, points, layout: Layout | None, style: dict, edges: bool) -> None:
    pts = _numpy(points).reshape(-1, 2)
    if layout is not None and edges and layout.edges:
        segments = [[pts[a], pts[b]] for a, b in layout.edges]
        ax.add_collection(LineCollection(segments, colors=style["c"], linewidths=0.8, alpha=0.7))
    ax.scatter(pts[:, 0], pts[:, 1], **style)


def show_landmarks(image, pred=None, target=None, layout: Layout | None = None, ax: Axes | None = None,
                   edges: bool = True, title: str | None = None, legend: bool = False) -> Axes:
    """Draw ``image`` with ground-truth (green dots) and predicted (red crosses) ``(N, 2)`` landmarks.

    With a ``layout`` (and ``edges=True``), the layout's edges join the points of each set.
    """
    ax = _axes(ax)
    height, width = _imshow(ax, image)
    for points, style in ((target, TARGET_STYLE), (pred, PRED_STYLE)):
        if points is not None:
            _draw_points(ax, points, layout, style, edges)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    if title:
        ax.set_title(title, fontsize=9)
    if legend and (pred is not None or target is not None):
        ax.legend(loc="lower right", fontsize=7)
    return ax


def show_layout(layout: Layout, shape, ax: Axes | None = None, numbers: bool = True) -> Axes:
    """Draw a layout on an example ``(N, 2)`` shape: one colour per group, edges, index numbers.

    Points in no group are grey. The y axis points down, as in images.
    """
    ax = _axes(ax, 6.0)
    pts = _numpy(shape).reshape(-1, 2)
    if len(pts) != layout.num_points:
        raise ValueError(f"shape has {len(pts)} points, layout {layout.name!r} has {layout.num_points}")
    if layout.edges:
        ax.add_collection(LineCollection([[pts[a], pts[b]] for a, b in layout.edges], colors="0.7", linewidths=0.8))
    grouped = set()
    colours = plt.get_cmap("tab10" if len(layout.groups) <= 10 else "tab20")
    for k, (name, indices) in enumerate(layout.groups.items()):
        ax.scatter(pts[list(indices), 0], pts[list(indices), 1], color=colours(k % colours.N), s=18, label=name)
        grouped.update(indices)
    rest = [i for i in range(layout.num_points) if i not in grouped]
    if rest:
        ax.scatter(pts[rest, 0], pts[rest, 1], color="0.5", s=18, label="other")
    if numbers:
        for i, (x, y) in enumerate(pts):
            ax.annotate(str(i), (x, y), xytext=(2, 2), textcoords="offset points", fontsize=6)
    ax.set_aspect("equal")
    if not ax.yaxis_inverted():
        ax.invert_yaxis()
    ax.set_title(f"{layout.name}: {layout.num_points} points", fontsize=10)
    ax.legend(fontsize=7, loc="center left", bbox_to_anchor=(1.0, 0.5))
    return ax


def _grid_items(samples, landmarks, preds) -> list[tuple]:
    """``(image, target, pred)`` triples from sample dicts or from parallel sequences."""
    if isinstance(samples, Sequence) and samples and isinstance(samples[0], Mapping):
        return [(s["image"], s.get("landmarks"), s.get("pred")) for s in samples]
    count = len(samples)
    landmarks = [None] * count if landmarks is None else landmarks
    preds = [None] * count if preds is None else preds
    if len(landmarks) != count or len(preds) != count:
        raise ValueError(f"{count} images but {len(landmarks)} landmark sets and {len(preds)} predictions")
    return list(zip(samples, landmarks, preds))


#: Title size of :func:`face_grid` in points per inch of panel: 6.5 gives 14 pt on a 2.2-inch panel,
#: about a tenth of the panel's side, so titles stay readable when a wide grid is shrunk to the page.
TITLE_POINTS_PER_INCH = 6.5


def face_grid(samples, landmarks=None, preds=None, ncols: int = 4, layout: Layout | None = None,
              titles: Sequence[str] | None = None, panel_size: float = 2.5, edges: bool = False,
              title_size: float | None = None) -> Figure:
    """A grid of faces with their landmarks.

    ``samples`` is a list of sample dicts (``"image"``, ``"landmarks"``, optional ``"pred"``) or a
    sequence / ``(B, C, H, W)`` tensor of images, with ``landmarks`` and ``preds`` alongside.

    Titles are ``title_size`` points (default :data:`TITLE_POINTS_PER_INCH` x ``panel_size``: a
    fixed fraction of the panel, so they shrink with the panels and no further when the figure is
    scaled to a page); a title wider than its panel is set smaller until it fits.
    """
    items = _grid_items(samples, landmarks, preds)
    if not items:
        raise ValueError("face_grid needs at least one image")
    if titles is not None and len(titles) != len(items):
        raise ValueError(f"{len(items)} images but {len(titles)} titles")
    ncols = max(1, min(ncols, len(items)))
    nrows = -(-len(items) // ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(panel_size * ncols, panel_size * nrows), squeeze=False)
    size = TITLE_POINTS_PER_INCH * panel_size if title_size is None else title_size
    renderer = fig.canvas.get_renderer()
    room = 0.95 * panel_size * fig.dpi  # a title may use 95 % of its panel's width, in pixels
    for k, ax in enumerate(axes.flat):
        if k >= len(items):
            ax.set_axis_off()
            continue
        image, target, pred = items[k]
        show_landmarks(image, pred=pred, target=target, layout=layout, ax=ax, edges=edges)
        if titles is not None and titles[k]:
            title = ax.set_title(titles[k], fontsize=size)
            width = title.get_window_extent(renderer).width
            while width > room and title.get_fontsize() > 2:  # text width is not quite linear in size
                title.set_fontsize(title.get_fontsize() * 0.98 * room / width)
                width = title.get_window_extent(renderer).width
    fig.tight_layout()
    return fig


def heatmap_overlay(image, heatmap, ax: Axes | None = None, alpha: float = 0.5, cmap: str = "viridis",
                    interpolation: str = "nearest", colorbar: str | None = None) -> Axes:
    """Draw an ``(h, w)`` heatmap stretched over the whole image (cell ``(i, j)`` covers
    ``[j W/w, (j+1) W/w] x [i H/h, (i+1) H/h]``). A ``(K, h, w)`` stack is reduced by its maximum.

    ``interpolation="nearest"`` draws every map cell as the square it is (a coarse PIP map shows its
    cells); ``colorbar`` labels a colour bar beside the axes when given."""
    ax = _axes(ax)
    height, width = _imshow(ax, image)
    heat = _numpy(heatmap).astype(np.float64)
    if heat.ndim == 3:
        heat = heat.max(0)
    if heat.ndim != 2:
        raise ValueError(f"heatmap must be (h, w) or (K, h, w), got shape {heat.shape}")
    shown = ax.imshow(heat, extent=(0, width, height, 0), cmap=cmap, alpha=alpha, interpolation=interpolation)
    if colorbar is not None:
        ax.figure.colorbar(shown, ax=ax, fraction=0.046, pad=0.04, label=colorbar)
    ax.set_xlim(0, width)
    ax.set_ylim(height, 0)
    return ax


def plot_ced(curves: Mapping[str, object], threshold: float = 0.1, ax: Axes | None = None,
             steps: int = 1000, percent: bool = True) -> Axes:
    """Cumulative error distributions of several methods, their exact AUC@threshold in the legend.

    ``curves`` maps a name to that method's per-image NMEs (fractions). With ``percent`` the x axis
    is in percent of the normalising distance.
    """
    ax = plt.subplots(figsize=(5, 4))[1] if ax is None else ax
    scale = 100.0 if percent else 1.0
    for name, nmes in curves.items():
        x, y = ced(nmes, threshold, steps)
        ax.plot(x.numpy() * scale, y.numpy(), label=f"{name} (AUC@{threshold:g} = {auc(nmes, threshold):.4f})")
    ax.set_xlim(0, threshold * scale)
    ax.set_ylim(0, 1)
    ax.set_xlabel("NME (%)" if percent else "NME")
    ax.set_ylabel("share of images")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="lower right")
    return ax


def markdown_table(records: Sequence[Mapping[str, object]], digits: int = 3):
    """A list of rows (dicts with the same keys) as a Markdown table that notebooks display.

    Floats are printed with ``digits`` decimals, a missing value (``None`` or NaN) as an en dash;
    anything else with ``str``. Returns an ``IPython.display.Markdown`` object, which Jupyter and the
    book render as a table.
    """
    from IPython.display import Markdown

    if not records:
        raise ValueError("markdown_table needs at least one row")
    columns = list(records[0])

    def cell(value: object) -> str:
        if value is None or (isinstance(value, float) and math.isnan(value)):
            return "\u2013"
        return f"{value:.{digits}f}" if isinstance(value, float) else str(value)

    lines = ["| " + " | ".join(columns) + " |", "|" + "---|" * len(columns)]
    lines += ["| " + " | ".join(cell(row[c]) for c in columns) + " |" for row in records]
    return Markdown("\n".join(lines))


def settings_table(settings: object, digits: int = 4):
    """A dataclass (a profile, a chapter's settings) as a two-column Markdown table: every field on
    its own row, so no value is cut off at the right edge of the page."""
    import dataclasses

    if not dataclasses.is_dataclass(settings):
        raise TypeError(f"settings_table needs a dataclass instance, got {type(settings).__name__}")
    rows = [{"setting": f.name, "value": getattr(settings, f.name)} for f in dataclasses.fields(settings)
            if f.repr]
    return markdown_table(rows, digits=digits)


def figure_png(fig: Figure, dpi: int = 60) -> bytes:
    """``fig`` as PNG bytes (and closed, so a notebook does not show it a second time)."""
    import io

    buffer = io.BytesIO()
    fig.savefig(buffer, format="png", dpi=dpi)
    plt.close(fig)
    return buffer.getvalue()


def explorer_html(frames: Mapping[tuple[str, ...], bytes], names: Sequence[str], caption: str) -> str:
    """A self-contained HTML figure that shows one of many pre-drawn PNG ``frames``, chosen with one
    drop-down list per component of the frames' keys (``names`` labels the lists), under ``caption``.

    It works in a static web page (a built book, no Python kernel): the images are embedded and a
    few lines of JavaScript swap them. Every key must have ``len(names)`` components; the first key
    is shown first. Raises ``ValueError`` on an empty ``frames`` or keys of the wrong length.
    """
    import base64
    import hashlib
    import html
    import json

    if not frames:
        raise ValueError("explorer_html needs at least one frame")
    keys = list(frames)
    if any(len(key) != len(names) for key in keys):
        raise ValueError(f"every frame key needs {len(names)} components ({list(names)}), got {keys[:3]}")
    data = {"|".join(key): "data:image/png;base64," + base64.b64encode(png).decode() for key, png in frames.items()}
    ident = "explorer-" + hashlib.sha1(json.dumps([caption, list(data)]).encode()).hexdigest()[:8]
    selects = []
    for position, name in enumerate(names):
        options = list(dict.fromkeys(key[position] for key in keys))
        items = "".join(f'<option value="{html.escape(o)}"{" selected" if o == keys[0][position] else ""}>'
                        f"{html.escape(o)}</option>" for o in options)
        selects.append(f'<label style="margin-right:1em">{html.escape(name)} '
                       f'<select class="{ident}-choice">{items}</select></label>')
    return (f'<figure id="{ident}"><div>{"".join(selects)}</div>'
            f'<img id="{ident}-image" style="max-width:100%" src="{data["|".join(keys[0])]}" '
            f'alt="{html.escape(caption)}"/><figcaption>{html.escape(caption)}</figcaption></figure>\n'
            f"<script>(function() {{\n"
            f"  const frames = {json.dumps(data)};\n"
            f'  const choices = document.querySelectorAll(".{ident}-choice");\n'
            f'  const image = document.getElementById("{ident}-image");\n'
            f"  const show = () => {{ const key = Array.from(choices, c => c.value).join('|');\n"
            f"    if (key in frames) {{ image.src = frames[key]; }} image.style.opacity = key in frames ? 1 : 0.3; }};\n"
            f'  choices.forEach(c => c.addEventListener("change", show));\n'
            f"}})();</script>")
