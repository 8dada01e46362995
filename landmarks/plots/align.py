"""Plots of chapters 8-9: loss surfaces (:cite:p:`yan2020finegrained`, Fig. 6) and feature-map patches."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import torch
from torch import Tensor

from landmarks.finegrained.align_loss import candidate_grid, loss_surfaces
from landmarks.finegrained.crops import crop_patches

__all__ = ["TITLES", "edge_strength", "strongest_channel", "plot_surfaces", "surface_figure", "show_patches"]

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


def plot_surfaces(feature_map: Tensor, truth: Sequence[float] | Tensor, xs: Tensor, ys: Tensor,
                  surfaces: Mapping[str, Tensor], axes: Sequence[plt.Axes] | None = None, cmap: str = "jet",
                  map_title: str = "(a) patch and ground truth") -> list[plt.Axes]:
    """The map around ``truth`` and each surface on the same window, normalised to [0, 1] each.

    ``feature_map`` is ``(H, W)`` (or ``(1, H, W)``); ``xs``, ``ys`` are the candidate grid axes
    (map coordinates) the surfaces were computed on.
    """
    if axes is None:
        axes = plt.subplots(1, 1 + len(surfaces), figsize=(2.6 * (1 + len(surfaces)), 2.8))[1]
    image = feature_map.reshape(feature_map.shape[-2:]).detach().float().numpy()
    extent = (float(xs[0]), float(xs[-1]), float(ys[-1]), float(ys[0]))
    height, width = image.shape
    axes[0].imshow(image, cmap="gray", extent=(0, width, height, 0))
    axes[0].set_xlim(extent[0], extent[1])
    axes[0].set_ylim(extent[2], extent[3])
    axes[0].set_title(map_title, fontsize=9)
    tx, ty = (float(v) for v in torch.as_tensor(truth).tolist())
    for ax, (name, surface) in zip(axes[1:], surfaces.items()):
        values = surface.detach().float().numpy()
        span = values.max() - values.min()
        ax.imshow((values - values.min()) / (span if span > 0 else 1), cmap=cmap, extent=extent)
        ax.contour(xs.numpy(), ys.numpy(), values, levels=6, colors="white", linewidths=0.5)
        ax.set_title(TITLES.get(name, name), fontsize=9)
    for ax in axes:
        ax.plot(tx, ty, "o", mfc="none", mec="red", ms=8, mew=1.5)
        ax.set_xticks([])
        ax.set_yticks([])
    return list(axes)


def surface_figure(feature_map: Tensor, truth: Sequence[float] | Tensor, radius: float = 6.0, steps: int = 49,
                   losses: Sequence[str] = ("l2", "l1", "heatmap", "align"), axes: Sequence[plt.Axes] | None = None,
                   **options) -> list[plt.Axes]:
    """Compute :func:`landmarks.finegrained.align_loss.loss_surfaces` on a grid around ``truth`` and plot it.

    ``feature_map`` is one channel ``(H, W)``; ``options`` go to ``loss_surfaces`` (``smooth``,
    ``kernel_size``, ``sigma``, ``heatmap_sigma``, ``patch_size``).
    """
    xs, ys, grid = candidate_grid(truth, radius, steps)
    surfaces = loss_surfaces(feature_map, truth, grid, losses, **options)
    return plot_surfaces(feature_map, truth, xs, ys, surfaces, axes=axes)


def show_patches(patches: Tensor, rows: Sequence[int], row_labels: Sequence[str] | None = None,
                 cmap: str = "viridis", size: float = 1.2) -> plt.Figure:
    """A grid of ``(N, C, h, w)`` patches: one row per landmark in ``rows``, one column per channel."""
    patches = patches.detach().float()
    channels = patches.shape[1]
    fig, axes = plt.subplots(len(rows), channels, figsize=(size * channels, size * len(rows)), squeeze=False)
    for r, index in enumerate(rows):
        for c in range(channels):
            axes[r, c].imshow(patches[index, c].numpy(), cmap=cmap)
            axes[r, c].set_xticks([])
            axes[r, c].set_yticks([])
        axes[r, 0].set_ylabel(row_labels[r] if row_labels else f"point {index}", fontsize=8)
    return fig
