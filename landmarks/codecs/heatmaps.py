"""Gaussian heatmap targets and arg-max decoding: the "Map Net" baseline of PIPNet's Table 2.

Map Net (:cite:p:`jin2021pipnet`, Sect. 4.3, after Xiao et al.'s simple baselines)
regresses one heatmap per landmark at net stride ``S`` and reads the landmark off the maximum.

Grid convention: map pixel ``(i, j)`` covers image pixels ``[j S, (j + 1) S] x [i S, (i + 1) S]``
and its centre is at ``((j + 0.5) S, (i + 0.5) S)`` in image coordinates (the library's
convention of :mod:`landmarks.data.coords`, applied to the coarse grid). Equivalently a landmark at
``x`` sits at ``x / S - 0.5`` in map-pixel-index units.

Sigma rule (:func:`default_sigma`): ``sigma = max(1, 4 / S)`` map pixels. The paper uses Gaussian
radii 1, 2 and 4 for strides 4, 2 and 1 (Sect. 4.3, "Baselines"): the same blur of 4 *image*
pixels whatever the resolution, i.e. ``4 / S`` map pixels. Past stride 4 that rule would go below
one map pixel, where the target is almost a one-hot cell and neither a regressor nor the
quarter-pixel decoder gets a slope to work with, so it is held at 1 map pixel (PIPNet's own
radius for its score maps).
"""
from __future__ import annotations

import torch
from torch import Tensor

from landmarks.codecs.pip import ImageSize, _check_landmarks, _check_stride, map_size

__all__ = ["default_sigma", "gaussian_heatmaps", "decode_heatmap"]


def default_sigma(net_stride: float) -> float:
    """Gaussian sigma in map pixels: ``max(1, 4 / net_stride)`` (4 at stride 1, 2 at 2, 1 from 4 on)."""
    return max(1.0, 4.0 / _check_stride(net_stride))


def gaussian_heatmaps(landmarks: Tensor, image_size: ImageSize, net_stride: float,
                      sigma: float | None = None) -> Tensor:
    """Unnormalised Gaussian targets ``(B, N, h, w)`` with ``(h, w) = map_size(image_size, net_stride)``.

    ``H[b, n, i, j] = exp(-((j + 0.5 - x / S)^2 + (i + 0.5 - y / S)^2) / (2 sigma^2))`` with
    ``(x, y) = landmarks[b, n]`` and ``S = net_stride``: peak 1 when the landmark is on a map-pixel
    centre, no truncation. Landmarks outside the image just put the bump (partly) off the map.

    Args:
        landmarks: ``(B, N, 2)`` image pixel coordinates.
        sigma: in map pixels; ``None`` uses :func:`default_sigma`.
    """
    landmarks = _check_landmarks(landmarks)
    stride = _check_stride(net_stride)
    sigma = default_sigma(stride) if sigma is None else float(sigma)
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    h, w = map_size(image_size, stride)
    u = landmarks / stride  # map units, cell j spans [j, j + 1]
    cols = torch.arange(w, dtype=landmarks.dtype, device=landmarks.device) + 0.5
    rows = torch.arange(h, dtype=landmarks.dtype, device=landmarks.device) + 0.5
    gx = torch.exp(-(cols - u[..., 0:1]).square() / (2 * sigma**2))  # (B, N, w)
    gy = torch.exp(-(rows - u[..., 1:2]).square() / (2 * sigma**2))  # (B, N, h)
    return gy[..., :, None] * gx[..., None, :]  # separable


def decode_heatmap(heatmaps: Tensor, net_stride: float, shift: float = 0.25,
                   return_confidence: bool = False) -> Tensor | tuple[Tensor, Tensor]:
    """Landmarks ``(B, N, 2)`` in image pixels from heatmaps ``(B, N, h, w)``.

    The arg-max map pixel ``(i, j)`` (first maximum in row-major order) gives the centre
    ``(j + 0.5, i + 0.5)``; then, separately in x and in y, it moves by ``shift`` (a quarter map
    pixel) toward the larger of its two neighbours along that axis, i.e. by
    ``shift * sign(H[i, j + 1] - H[i, j - 1])`` in x (no move when they are equal, or when the
    maximum is on the first or last column so one neighbour is missing; likewise in y). The result
    is multiplied by ``net_stride``. ``shift=0`` gives the plain arg-max.

    With ``return_confidence`` also returns the ``(B, N)`` maxima.
    """
    stride = _check_stride(net_stride)
    if heatmaps.ndim != 4:
        raise ValueError(f"decode_heatmap: expected (B, N, h, w), got {tuple(heatmaps.shape)}")
    b, n, h, w = heatmaps.shape
    flat = heatmaps.flatten(2)
    index = flat.argmax(-1)  # (B, N)
    confidence = flat.gather(2, index[..., None]).squeeze(-1)
    col = index % w
    row = torch.div(index, w, rounding_mode="floor")

    def at(r: Tensor, c: Tensor) -> Tensor:
        """Heatmap values at (row, column) per (b, n), positions clamped into the map."""
        idx = r.clamp(0, h - 1) * w + c.clamp(0, w - 1)
        return flat.gather(2, idx[..., None]).squeeze(-1)

    inner_x = (col > 0) & (col < w - 1)
    inner_y = (row > 0) & (row < h - 1)
    step_x = torch.sign(at(row, col + 1) - at(row, col - 1)) * inner_x
    step_y = torch.sign(at(row + 1, col) - at(row - 1, col)) * inner_y
    dtype = heatmaps.dtype if heatmaps.is_floating_point() else torch.float32
    x = (col.to(dtype) + 0.5 + shift * step_x.to(dtype)) * stride
    y = (row.to(dtype) + 0.5 + shift * step_y.to(dtype)) * stride
    coords = torch.stack([x, y], -1)
    return (coords, confidence) if return_confidence else coords
