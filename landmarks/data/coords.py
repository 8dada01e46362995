"""The one place where the library's pixel coordinate convention is defined.

Convention (used by every module, dataset, model and plot of the library)
-------------------------------------------------------------------------
A landmark is a point ``(x, y)`` in *continuous pixel coordinates*: an image of
width ``W`` and height ``H`` covers the rectangle ``[0, W] x [0, H]``, x grows to
the right, y grows down, and the pixel in row ``i`` and column ``j`` is the unit
square ``[j, j + 1] x [i, i + 1]``, so its **centre is at** ``(j + 0.5, i + 0.5)``.

This is the convention of ``torchvision.transforms.v2`` key points (resizing an
image by a factor ``s`` multiplies every coordinate by ``s``; flipping maps
``x`` to ``W - x``) and of ``torch.nn.functional.grid_sample`` with
``align_corners=False``.

Files written in the Matlab convention (the 300W ``.pts`` files, the COFW and
AFLW ``.mat`` files) count pixels from 1 and place the centre of the first pixel
at 1.0, so a file value ``v`` is ``v - 0.5`` here. OpenCV drawing functions place
the centre of pixel ``j`` at ``j``: an OpenCV coordinate ``c`` is ``c + 0.5`` here.
Readers in :mod:`landmarks.data.formats` return the numbers of the file untouched; the
dataset builders convert them with the functions below.
"""
from __future__ import annotations

from typing import TypeVar

import numpy as np
import torch

ArrayLike = TypeVar("ArrayLike", np.ndarray, torch.Tensor)

#: Where the centre of pixel ``j`` lies: ``j + PIXEL_CENTRE``.
PIXEL_CENTRE = 0.5


def from_one_based(points: ArrayLike) -> ArrayLike:
    """Matlab / 1-based pixel-centre coordinates (``.pts``, ``.mat``) to ours."""
    return points - 0.5


def to_one_based(points: ArrayLike) -> ArrayLike:
    """Our coordinates to the 1-based convention of ``.pts`` files."""
    return points + 0.5


def from_pixel_index(points: ArrayLike) -> ArrayLike:
    """0-based pixel-index coordinates (OpenCV, NumPy indexing) to ours."""
    return points + PIXEL_CENTRE


def to_pixel_index(points: ArrayLike) -> ArrayLike:
    """Our coordinates to 0-based pixel indices (OpenCV drawing, array indexing)."""
    return points - PIXEL_CENTRE


def pixel_centres(height: int, width: int, dtype: torch.dtype = torch.float32) -> tuple[torch.Tensor, torch.Tensor]:
    """The x and y coordinates of every pixel centre of an ``height x width`` grid."""
    ys = torch.arange(height, dtype=dtype) + PIXEL_CENTRE
    xs = torch.arange(width, dtype=dtype) + PIXEL_CENTRE
    return xs, ys


def apply_affine(matrix: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Apply a ``2 x 3`` affine map ``x -> A x + t`` to ``(..., 2)`` points (float64)."""
    return np.asarray(points, dtype=np.float64) @ matrix[:, :2].T + matrix[:, 2]


def bounding_boxes(points: ArrayLike) -> ArrayLike:
    """The tight ``(..., 4)`` boxes ``(x0, y0, x1, y1)`` around ``(..., N, 2)`` points.

    The one "box around landmarks" of the library, for NumPy arrays and tensors alike (the result
    has the input's type)."""
    if isinstance(points, torch.Tensor):
        return torch.cat([points.amin(-2), points.amax(-2)], -1)
    points = np.asarray(points)
    return np.concatenate([points.min(axis=-2), points.max(axis=-2)], axis=-1)
