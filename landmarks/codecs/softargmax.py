"""Heatmaps as probability maps: softargmax, their spread, and rendered Laplace / Gaussian targets.

LaplaceKL :cite:p:`robinson2019laplace` (Sect. 3.1, eq. 2-3; the equations are lost in our text
copy, so the forms below are ours and say so where a choice was made) reads a landmark off a
heatmap as the *expectation* of the pixel position under a spatial softmax, and measures how much
the map is spread around that expectation.

Grid convention (stated once, here)
-----------------------------------
A map of size ``h x w`` at stride ``S`` covers an image of ``h S x w S`` pixels; map cell ``(i, j)``
covers image pixels ``[j S, (j + 1) S] x [i S, (i + 1) S]`` and its **centre** is at
``((j + 0.5) S, (i + 0.5) S)`` in the library's continuous pixel coordinates
(:mod:`landmarks.data.coords`, :mod:`landmarks.codecs.heatmaps`). A one-hot map at cell ``(i, j)`` therefore
decodes to exactly ``((j + 0.5) S, (i + 0.5) S)``. (Public softargmax code often uses ``j`` instead
of ``j + 0.5``, which shifts every prediction by half a cell.)

Temperature: ``p = softmax(logits / temperature)`` over the ``h w`` cells of each map. A small
temperature sharpens the map (towards arg-max), a large one flattens it (towards the map centre).

Spread, per axis, in image pixels: the mean absolute deviation ``sum p |x - mu|`` (for a Laplace
distribution it equals the scale ``b``) and the variance ``sum p (x - mu)^2`` (for a Gaussian it is
``sigma^2``); ``mu`` is the softargmax. The two axes are treated as independent distributions.
"""
from __future__ import annotations

import math

import torch
from torch import Tensor

from landmarks.codecs.pip import ImageSize, _check_landmarks, _check_stride, map_size

__all__ = ["spatial_softmax", "softargmax_2d", "expectation_2d", "mean_absolute_deviation", "variance_2d",
           "spread", "laplace_heatmaps", "gaussian_heatmaps_normalised", "render_heatmaps", "SPREADS"]

#: Kinds of spread :func:`spread` measures.
SPREADS = ("laplace", "gaussian")


def _check_maps(maps: Tensor, what: str) -> Tensor:
    if not isinstance(maps, Tensor) or maps.ndim != 4:
        shape = tuple(maps.shape) if isinstance(maps, Tensor) else type(maps).__name__
        raise ValueError(f"{what}: expected (B, N, h, w) maps, got {shape}")
    if not maps.is_floating_point():
        raise ValueError(f"{what}: expected floating-point maps, got {maps.dtype}")
    return maps


def _check_temperature(temperature: float) -> float:
    if not (isinstance(temperature, (int, float)) and math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a positive number, got {temperature!r}")
    return float(temperature)


def _centres(maps: Tensor, stride: float) -> tuple[Tensor, Tensor]:
    """Image x of every column centre ``(w,)`` and image y of every row centre ``(h,)``."""
    h, w = maps.shape[-2:]
    xs = (torch.arange(w, dtype=maps.dtype, device=maps.device) + 0.5) * stride
    ys = (torch.arange(h, dtype=maps.dtype, device=maps.device) + 0.5) * stride
    return xs, ys


def spatial_softmax(logits: Tensor, temperature: float = 1.0) -> Tensor:
    """``(B, N, h, w)`` probability maps: softmax of ``logits / temperature`` over each map's cells.

    Stable for any finite logits (the maximum is subtracted inside ``torch.softmax``).
    """
    _check_maps(logits, "spatial_softmax")
    t = _check_temperature(temperature)
    b, n, h, w = logits.shape
    return torch.softmax(logits.reshape(b, n, h * w) / t, dim=-1).reshape(b, n, h, w)


def expectation_2d(probs: Tensor, stride: float = 1.0) -> Tensor:
    """``(B, N, 2)`` expected cell-centre position (image pixels) under probability maps ``probs``.

    The maps should sum to one; they are not renormalised. The marginals are summed first, so
    the cost is ``O(h w)`` per map.
    """
    _check_maps(probs, "expectation_2d")
    xs, ys = _centres(probs, _check_stride(stride))
    x = (probs.sum(-2) * xs).sum(-1)  # column marginal (B, N, w)
    y = (probs.sum(-1) * ys).sum(-1)  # row marginal (B, N, h)
    return torch.stack([x, y], -1)


def softargmax_2d(logits: Tensor, temperature: float = 1.0, stride: float = 1.0) -> Tensor:
    """Softargmax (:cite:p:`robinson2019laplace` eq. 2, in 2-D): ``(B, N, 2)`` landmarks in image pixels from raw maps.

    ``expectation_2d(spatial_softmax(logits, temperature), stride)``; see the module text for the
    cell-centre convention.
    """
    return expectation_2d(spatial_softmax(logits, temperature), stride)


def _marginals(probs: Tensor, stride: float, mean: Tensor | None) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
    _check_maps(probs, "spread")
    stride = _check_stride(stride)
    mean = expectation_2d(probs, stride) if mean is None else mean
    if mean.shape != (*probs.shape[:2], 2):
        raise ValueError(f"mean must be {(*probs.shape[:2], 2)}, got {tuple(mean.shape)}")
    xs, ys = _centres(probs, stride)
    return probs.sum(-2), probs.sum(-1), xs, ys, mean


def mean_absolute_deviation(probs: Tensor, mean: Tensor | None = None, stride: float = 1.0) -> Tensor:
    """``(B, N, 2)`` per-axis mean absolute deviation ``sum p |x - mu|`` in image pixels.

    ``mu`` is ``mean`` (default: the maps' own expectation). For a Laplace distribution this is
    its scale ``b`` (the paper's scale function for the Laplace case, Sect. 3.1). The gradient of
    ``|x - mu|`` at ``x = mu`` is taken as 0, so a one-hot map has finite gradients.
    """
    px, py, xs, ys, mean = _marginals(probs, stride, mean)
    dx = (px * (xs - mean[..., 0:1]).abs()).sum(-1)
    dy = (py * (ys - mean[..., 1:2]).abs()).sum(-1)
    return torch.stack([dx, dy], -1)


def variance_2d(probs: Tensor, mean: Tensor | None = None, stride: float = 1.0) -> Tensor:
    """``(B, N, 2)`` per-axis variance ``sum p (x - mu)^2`` in squared image pixels (Gaussian case)."""
    px, py, xs, ys, mean = _marginals(probs, stride, mean)
    vx = (px * (xs - mean[..., 0:1]).square()).sum(-1)
    vy = (py * (ys - mean[..., 1:2]).square()).sum(-1)
    return torch.stack([vx, vy], -1)


def _safe_sqrt(values: Tensor) -> Tensor:
    """``sqrt`` with the same values, and gradient 0 instead of infinity where ``values`` is 0.

    The inner ``where`` keeps 0 out of ``sqrt``'s backward: ``sqrt`` at 0 has an infinite
    derivative, and infinity times the zero derivative of a saturated softmax is NaN.
    """
    positive = values > 0
    return torch.where(positive, torch.where(positive, values, torch.ones_like(values)).sqrt(),
                       torch.zeros_like(values))


def spread(probs: Tensor, kind: str = "laplace", mean: Tensor | None = None, stride: float = 1.0) -> Tensor:
    """The scale of each map per axis, in image pixels: Laplace ``b`` (mean absolute deviation) or
    Gaussian ``sigma`` (square root of the variance), the scales of :cite:p:`robinson2019laplace`
    Sect. 3.1.

    A map with zero variance (one-hot) has ``sigma = 0`` and finite gradients: the derivative of
    the square root is taken as 0 there (it is infinite, and would turn the gradient into NaN).
    """
    if kind == "laplace":
        return mean_absolute_deviation(probs, mean, stride)
    if kind == "gaussian":
        return _safe_sqrt(variance_2d(probs, mean, stride))
    raise ValueError(f"unknown spread {kind!r}; choose one of {SPREADS}")


def _check_scale(scale: float | Tensor, what: str) -> Tensor | float:
    if isinstance(scale, Tensor):
        if not (torch.isfinite(scale).all() and (scale > 0).all()):
            raise ValueError(f"{what} must be positive and finite")
        return scale
    if not (isinstance(scale, (int, float)) and math.isfinite(scale) and scale > 0):
        raise ValueError(f"{what} must be a positive number, got {scale!r}")
    return float(scale)


def _render(landmarks: Tensor, image_size: ImageSize, net_stride: float, profile) -> Tensor:
    landmarks = _check_landmarks(landmarks)
    stride = _check_stride(net_stride)
    h, w = map_size(image_size, stride)
    xs = (torch.arange(w, dtype=landmarks.dtype, device=landmarks.device) + 0.5) * stride
    ys = (torch.arange(h, dtype=landmarks.dtype, device=landmarks.device) + 0.5) * stride
    log_x = profile(xs - landmarks[..., 0:1])  # (B, N, w)
    log_y = profile(ys - landmarks[..., 1:2])  # (B, N, h)
    logits = log_y[..., :, None] + log_x[..., None, :]
    b, n = landmarks.shape[:2]
    return torch.softmax(logits.reshape(b, n, h * w), -1).reshape(b, n, h, w)


def laplace_heatmaps(landmarks: Tensor, image_size: ImageSize, net_stride: float = 1.0,
                     scale: float | Tensor = 1.0) -> Tensor:
    """Normalised Laplace maps ``(B, N, h, w)``: ``p(i, j) ∝ exp(-|x_j - x| / b - |y_i - y| / b)``.

    ``x_j, y_i`` are cell centres and ``(x, y)`` the landmark, in image pixels; ``b = scale`` in image
    pixels (a float or a tensor broadcastable to ``(B, N, 1)``). Each map sums to one over the grid
    (the density is sampled at cell centres and renormalised, so for ``b`` below about one cell the
    measured spread of the map is smaller than ``b``).
    """
    b = _check_scale(scale, "scale")
    return _render(landmarks, image_size, net_stride, lambda d: -d.abs() / b)


def gaussian_heatmaps_normalised(landmarks: Tensor, image_size: ImageSize, net_stride: float = 1.0,
                                 sigma: float | Tensor = 1.0) -> Tensor:
    """Normalised Gaussian maps ``(B, N, h, w)``: ``p ∝ exp(-((x_j - x)^2 + (y_i - y)^2) / (2 sigma^2))``,
    ``sigma`` in image pixels, each map summing to one (compare :func:`landmarks.codecs.heatmaps.gaussian_heatmaps`,
    the unnormalised peak-1 targets of the MSE heatmap head)."""
    s = _check_scale(sigma, "sigma")
    return _render(landmarks, image_size, net_stride, lambda d: -d.square() / (2 * s * s))


def render_heatmaps(kind: str, landmarks: Tensor, image_size: ImageSize, net_stride: float = 1.0,
                    scale: float | Tensor = 1.0) -> Tensor:
    """:func:`laplace_heatmaps` (``kind="laplace"``) or :func:`gaussian_heatmaps_normalised` (``"gaussian"``)."""
    if kind == "laplace":
        return laplace_heatmaps(landmarks, image_size, net_stride, scale)
    if kind == "gaussian":
        return gaussian_heatmaps_normalised(landmarks, image_size, net_stride, scale)
    raise ValueError(f"unknown heatmap kind {kind!r}; choose one of {SPREADS}")
