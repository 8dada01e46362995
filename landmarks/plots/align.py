"""Plots of chapters 8-9: loss surfaces (:cite:p:`yan2020finegrained`, Fig. 6) and feature-map patches."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from matplotlib.image import AxesImage
from torch import Tensor

from landmarks.finegrained.align_loss import candidate_grid, loss_surfaces
from landmarks.finegrained.crops import crop_patches

__all__ = ["TITLES", "SURFACE_LABEL", "MAP_LABEL", "edge_strength", "strongest_channel", "draw_map", "draw_surface",
           "mark_truth", "plot_surfaces", "surface_figure", "show_patches"]

#: Panel titles of the four losses, as in the paper's Fig. 6 (b)-(e).
TITLES = {"l2": "(b) L2", "l1": "(c) L1", "heatmap": "(d) heat-map L2", "align": "(e) Align Loss"}


def edge_strength(feature_map: Tensor, point: Sequence[float] | Tensor, size: int = 8) -> Tensor:
    """Mean gradient magnitude of every channel of ``(C, H, W)`` in the ``size`` patch at ``point``."""
    patch = crop_patches(feature_map[None].float(), torch.as_tensor(point, dtype=torch.float32).view(1, 1, 2),
                         size)[0, 0]                                               # (C, h, w)
    gx = patch[:, :, 1:] - patch[:, :, :-1]
    gy = patch[:, 1:, :] - patch[:, :-1, :]
    return gx.abs().mean(dim=(1, 2)) + gy.abs().mean(dim=(1, 2))


def strongest_channel(feature_map: Tensor, point: Sequence[float] | Tensor, size: int = 8) -> int:
    """The channel with the strongest edges around ``point`` (a boundary channel, Fig. 2 and 5)."""
    return int(edge_strength(feature_map, point, size).argmax())


#: Colour-bar label of a loss surface (every panel is scaled to its own minimum and maximum).
SURFACE_LABEL = "loss (scaled to [0, 1] per panel)"
#: Colour-bar label of the feature-map panel.
MAP_LABEL = "feature value"


def draw_map(ax: plt.Axes, feature_map: Tensor, xs: Tensor, ys: Tensor, cmap: str = "cividis",
             title: str | None = None) -> AxesImage:
    """The ``(H, W)`` map (or ``(1, H, W)``) in map coordinates, zoomed to the window ``xs x ys``."""
    image = feature_map.reshape(feature_map.shape[-2:]).detach().float().numpy()
    height, width = image.shape
    shown = ax.imshow(image, cmap=cmap, extent=(0, width, height, 0), interpolation="nearest")
    ax.set_xlim(float(xs[0]), float(xs[-1]))
    ax.set_ylim(float(ys[-1]), float(ys[0]))
    if title is not None:
        ax.set_title(title, fontsize=9)
    return shown


def draw_surface(ax: plt.Axes, xs: Tensor, ys: Tensor, values: Tensor, cmap: str = "viridis",
                 title: str | None = None, contours: int = 6) -> AxesImage:
    """One loss surface on the candidate grid ``xs x ys``, scaled to [0, 1], with ``contours`` white
    level lines; returns the image (for a colour bar with :data:`SURFACE_LABEL`)."""
    values = values.detach().float().numpy()
    span = values.max() - values.min()
    extent = (float(xs[0]), float(xs[-1]), float(ys[-1]), float(ys[0]))
    shown = ax.imshow((values - values.min()) / (span if span > 0 else 1), cmap=cmap, extent=extent,
                      vmin=0, vmax=1)
    if contours and span > 0:
        ax.contour(xs.numpy(), ys.numpy(), values, levels=contours, colors="white", linewidths=0.5)
    if title is not None:
        ax.set_title(title, fontsize=9)
    return shown


def mark_truth(ax: plt.Axes, truth: Sequence[float] | Tensor) -> None:
    """The ground-truth point as a red circle; no ticks (the panels are in map cells)."""
    tx, ty = (float(v) for v in torch.as_tensor(truth).tolist())
    ax.plot(tx, ty, "o", mfc="none", mec="red", ms=8, mew=1.5)
    ax.set_xticks([])
    ax.set_yticks([])


def plot_surfaces(feature_map: Tensor, truth: Sequence[float] | Tensor, xs: Tensor, ys: Tensor,
                  surfaces: Mapping[str, Tensor], axes: Sequence[plt.Axes] | None = None, cmap: str = "viridis",
                  map_cmap: str = "cividis", map_title: str = "(a) patch and ground truth",
                  colorbar: bool = True) -> list[plt.Axes]:
    """The map around ``truth`` and each surface on the same window, normalised to [0, 1] each.

    ``feature_map`` is ``(H, W)`` (or ``(1, H, W)``); ``xs``, ``ys`` are the candidate grid axes
    (map coordinates) the surfaces were computed on. Perceptual colour maps (``map_cmap`` for the
    map, ``cmap`` for the surfaces); with ``colorbar`` the map gets a colour bar labelled
    :data:`MAP_LABEL` and the surfaces share one labelled :data:`SURFACE_LABEL`. A figure made here
    uses matplotlib's constrained layout; pass ``axes`` of a constrained-layout figure too (colour
    bars and ``tight_layout`` do not mix).
    """
    if axes is None:
        axes = plt.subplots(1, 1 + len(surfaces), figsize=(2.7 * (1 + len(surfaces)) + 1.2, 2.8),
                            layout="constrained")[1]
    axes = list(axes)
    shown_map = draw_map(axes[0], feature_map, xs, ys, map_cmap, map_title)
    shown = None
    for ax, (name, surface) in zip(axes[1:], surfaces.items()):
        shown = draw_surface(ax, xs, ys, surface, cmap, TITLES.get(name, name))
    for ax in axes:
        mark_truth(ax, truth)
    if colorbar:
        figure = axes[0].figure
        figure.colorbar(shown_map, ax=axes[0], fraction=0.046, pad=0.03, label=MAP_LABEL)
        if shown is not None:
            bar = figure.colorbar(shown, ax=axes[1:], fraction=0.046 / max(len(axes) - 1, 1), pad=0.02,
                                  label=SURFACE_LABEL)
            bar.set_ticks([0, 0.5, 1])
    return axes


def surface_figure(feature_map: Tensor, truth: Sequence[float] | Tensor, radius: float = 6.0, steps: int = 49,
                   losses: Sequence[str] = ("l2", "l1", "heatmap", "align"), axes: Sequence[plt.Axes] | None = None,
                   colorbar: bool = True, **options) -> list[plt.Axes]:
    """Compute :func:`landmarks.finegrained.align_loss.loss_surfaces` on a grid around ``truth`` and plot it
    with :func:`plot_surfaces` (labelled colour bars unless ``colorbar=False``).

    ``feature_map`` is one channel ``(H, W)``; ``options`` go to ``loss_surfaces`` (``smooth``,
    ``kernel_size``, ``sigma``, ``heatmap_sigma``, ``patch_size``).
    """
    xs, ys, grid = candidate_grid(truth, radius, steps)
    surfaces = loss_surfaces(feature_map, truth, grid, losses, **options)
    return plot_surfaces(feature_map, truth, xs, ys, surfaces, axes=axes, colorbar=colorbar)


def show_patches(patches: Tensor, rows: Sequence[int], row_labels: Sequence[str] | None = None,
                 cmap: str = "viridis", size: float = 1.2, label: str = "patch value") -> plt.Figure:
    """A grid of ``(N, C, h, w)`` patches: one row per landmark in ``rows``, one column per channel.

    All panels share one colour scale (``cmap``, a perceptual map) and one colour bar labelled ``label``.
    """
    patches = patches.detach().float()
    channels = patches.shape[1]
    shown_values = patches[list(rows)]
    low, high = float(shown_values.min()), float(shown_values.max())
    fig, axes = plt.subplots(len(rows), channels, figsize=(size * channels + 1.0, size * len(rows)), squeeze=False,
                             layout="constrained")
    image = None
    for r, index in enumerate(rows):
        for c in range(channels):
            image = axes[r, c].imshow(patches[index, c].numpy(), cmap=cmap, vmin=low, vmax=high,
                                      interpolation="nearest")
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(row_labels[r] if row_labels else f"point {index}", fontsize=8)
    if image is not None:
        fig.colorbar(image, ax=axes, fraction=0.05, pad=0.03, label=label)
    return fig
