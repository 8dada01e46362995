"""Plots of chapters 6-7: probability maps around a landmark, and a discriminator's patch scores."""
from __future__ import annotations

from typing import Mapping, Sequence

import matplotlib.pyplot as plt
import numpy as np
import torch
from matplotlib.axes import Axes
from torch import Tensor

from landmarks.plots.figures import to_display

__all__ = ["crop_window", "show_map_crops", "show_patch_scores"]


def crop_window(centre: Sequence[float], size: int, radius: int) -> tuple[int, int, int, int]:
    """Integer pixel window ``(x0, y0, x1, y1)`` of side ``2 radius`` around ``centre``, inside ``[0, size]``."""
    x0 = int(np.clip(round(float(centre[0])) - radius, 0, size - 2 * radius))
    y0 = int(np.clip(round(float(centre[1])) - radius, 0, size - 2 * radius))
    return x0, y0, x0 + 2 * radius, y0 + 2 * radius


def show_map_crops(image: Tensor, maps: Mapping[str, Tensor], truth: Tensor, points: Sequence[int],
                   radius: int = 10, axes: np.ndarray | None = None) -> np.ndarray:
    """A grid: one row per landmark index in ``points``, one column per entry of ``maps``.

    ``maps[name]`` is ``(N, H, W)`` probability maps at the image's resolution (stride 1). Each panel
    shows the image crop around the true landmark (green cross) with the map on top (same colour
    scale in a row), the softargmax (white dot) and the map's mean absolute deviation in the title.
    """
    from landmarks.codecs.softargmax import expectation_2d, mean_absolute_deviation

    names = list(maps)
    if axes is None:
        axes = plt.subplots(len(points), len(names), figsize=(2.3 * len(names), 2.3 * len(points)),
                            squeeze=False)[1]
    picture = to_display(image)
    size = picture.shape[0]
    for row, index in enumerate(points):
        x0, y0, x1, y1 = crop_window(truth[index], size, radius)
        top = max(float(maps[name][index, y0:y1, x0:x1].max()) for name in names)
        for col, name in enumerate(names):
            ax: Axes = axes[row, col]
            prob = maps[name][index]
            mean = expectation_2d(prob[None, None])[0, 0]
            spread = mean_absolute_deviation(prob[None, None])[0, 0].mean()
            ax.imshow(picture[y0:y1, x0:x1], extent=(x0, x1, y1, y0))
            ax.imshow(prob[y0:y1, x0:x1].numpy(), extent=(x0, x1, y1, y0), cmap="magma", alpha=0.75, vmin=0,
                      vmax=top)
            ax.plot(*truth[index].tolist(), "+", color="lime", ms=12, mew=2)
            ax.plot(*mean.tolist(), "o", color="white", ms=4)
            ax.set_xlim(x0, x1)
            ax.set_ylim(y1, y0)
            ax.set_xticks([])
            ax.set_yticks([])
            ax.set_title(f"{name}\npoint {index}: spread {float(spread):.2f} px", fontsize=8)
    return axes


def show_patch_scores(image: Tensor, heatmaps: Tensor, scores: Tensor, title: str, axes: Sequence[Axes]) -> None:
    """Two panels: the image with the sum of its ``(N, H, W)`` maps D is shown, and D's ``(h, w)``
    patch probabilities (sigmoid of its logits) on a 0-1 scale."""
    axes[0].imshow(to_display(image))
    axes[0].imshow(heatmaps.sum(0).clamp(max=1).numpy(), cmap="magma", alpha=0.6,
                   extent=(0, image.shape[-1], image.shape[-2], 0))
    axes[0].set_title(title, fontsize=9)
    shown = axes[1].imshow(torch.sigmoid(scores).numpy(), cmap="cividis", vmin=0, vmax=1, interpolation="nearest")
    axes[1].set_title(f"D: mean P(real) = {float(torch.sigmoid(scores).mean()):.2f}", fontsize=9)
    for ax in axes:
        ax.set_xticks([])
        ax.set_yticks([])
    plt.colorbar(shown, ax=axes[1], fraction=0.046, label="P(real) of the patch")
