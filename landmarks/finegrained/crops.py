"""Differentiable bilinear crops of feature maps around landmarks (:cite:p:`yan2020finegrained`, eq. 5-7).

A refinement stage of the fine-grained detector :cite:p:`yan2020finegrained` looks at small ``h x w``
patches of a feature map centred on the current landmark estimates. The patch pixel ``(q, p)`` of a
landmark at ``(y, x)`` (in the map's pixel-index units) is read at::

    y_q = y - (h - 1) / 2 + q,     x_p = x - (w - 1) / 2 + p                    (eq. 6-7)

by bilinear interpolation::

    V_qp = sum_{n, m} I_nm max(0, 1 - |y_q - n|) max(0, 1 - |x_p - m|),          (eq. 5)

so neighbouring patch pixels are one map cell apart and the patch moves continuously with the
landmark. Eq. 5 is linear in ``I`` (its gradient w.r.t. the map is eq. 9) and piecewise linear in
``(y, x)`` (its gradient w.r.t. the location is eq. 11-12).

Units. Landmarks are given in *image pixels* of the library's convention (:mod:`landmarks.data.coords`:
the centre of pixel ``j`` is at ``j + 0.5``) together with the map's ``stride``. A point ``x`` of
the image lies at ``x / stride`` in continuous map coordinates, i.e. at pixel index
``x / stride - 0.5``: that is the ``x`` of eq. 7. :func:`to_map_index` does this conversion.

Borders. The sum of eq. 5 runs over the map only: a patch pixel that falls outside the map reads
zeros for the missing neighbours (exactly ``grid_sample``'s ``padding_mode="zeros"``), so a patch
pixel more than one cell outside the map is 0, its gradient w.r.t. the map is 0 and its gradient
w.r.t. the location is 0. Nothing is clamped; crops near the border fade to zero.

Implementation: one :func:`torch.nn.functional.grid_sample` call (``align_corners=False``, whose
pixel ``j`` sits at normalised coordinate ``(2 j + 1) / W - 1``, our convention) on a grid that
stacks the ``N`` patches of each image, batched over images and landmarks without Python loops.

Gradient switches (the ablation of the paper's Table 6): ``grad_features=False`` stops
``nabla_low_level`` (eq. 8-9, gradient into the feature map), ``grad_locations=False`` stops
``nabla_crop_location`` (eq. 10-16, gradient into the crop centres).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor

__all__ = ["to_map_index", "patch_offsets", "crop_patches", "crop_eq5"]


def _pair(size: int | tuple[int, int]) -> tuple[int, int]:
    h, w = (size, size) if isinstance(size, int) else tuple(size)
    if int(h) < 1 or int(w) < 1:
        raise ValueError(f"patch size must be positive, got {size}")
    return int(h), int(w)


def to_map_index(points: Tensor, stride: float) -> Tensor:
    """Image-pixel coordinates -> pixel-index coordinates of a map at ``stride`` (``x / s - 0.5``)."""
    if not stride > 0:
        raise ValueError(f"stride must be positive, got {stride}")
    return points / stride - 0.5


def patch_offsets(size: int | tuple[int, int], dtype: torch.dtype = torch.float32,
                  device: torch.device | str | None = None) -> Tensor:
    """``(h, w, 2)`` offsets ``(p - (w - 1) / 2, q - (h - 1) / 2)`` of eq. 6-7, as ``(x, y)``."""
    h, w = _pair(size)
    ys = torch.arange(h, dtype=dtype, device=device) - (h - 1) / 2
    xs = torch.arange(w, dtype=dtype, device=device) - (w - 1) / 2
    grid_y, grid_x = torch.meshgrid(ys, xs, indexing="ij")
    return torch.stack([grid_x, grid_y], dim=-1)


def crop_patches(features: Tensor, points: Tensor, size: int | tuple[int, int] = 8, stride: float = 1.0, *,
                 grad_features: bool = True, grad_locations: bool = True) -> Tensor:
    """Bilinear ``h x w`` patches of ``features`` centred on ``points`` (eq. 5-7).

    Args:
        features: ``(B, C, H, W)`` feature maps.
        points: ``(B, N, 2)`` crop centres ``(x, y)`` in image pixels (the library's convention).
        size: ``h`` or ``(h, w)``: patch size in map cells.
        stride: image pixels per map cell (``1`` when ``points`` are already continuous map
            coordinates, i.e. pixel index + 0.5).
        grad_features: let the gradient flow into ``features`` (Table 6, ``nabla_low_level``).
        grad_locations: let the gradient flow into ``points`` (Table 6, ``nabla_crop_location``).

    Returns:
        ``(B, N, C, h, w)`` patches; patch pixel ``(q, p)`` of landmark ``n`` is eq. 5 at the
        position of eq. 6-7. Parts outside the map read zeros (see the module docstring).
    """
    if features.ndim != 4:
        raise ValueError(f"features must be (B, C, H, W), got shape {tuple(features.shape)}")
    if points.ndim != 3 or points.shape[-1] != 2 or points.shape[0] != features.shape[0]:
        raise ValueError(f"points must be (B, N, 2) with B = {features.shape[0]}, got {tuple(points.shape)}")
    h, w = _pair(size)
    batch, channels, height, width = features.shape
    count = points.shape[1]
    if not grad_features:
        features = features.detach()
    if not grad_locations:
        points = points.detach()
    centres = to_map_index(points.to(features.dtype), stride)                       # (B, N, 2) index units
    samples = centres[:, :, None, None, :] + patch_offsets((h, w), features.dtype, features.device)
    # pixel index u -> normalised (2u + 1) / W - 1 (grid_sample, align_corners=False)
    scale = features.new_tensor([width, height])
    grid = (2 * samples + 1) / scale - 1                                             # (B, N, h, w, 2)
    sampled = F.grid_sample(features, grid.reshape(batch, count * h, w, 2), mode="bilinear",
                            padding_mode="zeros", align_corners=False)               # (B, C, N h, w)
    return sampled.view(batch, channels, count, h, w).permute(0, 2, 1, 3, 4)


def crop_eq5(feature_map: Tensor, y: float | Tensor, x: float | Tensor, size: int | tuple[int, int]) -> Tensor:
    """Eq. 5 evaluated literally (a dense sum over every map pixel) for one ``(C, H, W)`` map.

    ``(y, x)`` is the crop centre in pixel-index units of the map. Slow (``O(h w H W)``); a
    reference for tests and for the chapter, not for training. Returns ``(C, h, w)``.
    """
    if feature_map.ndim != 3:
        raise ValueError(f"feature_map must be (C, H, W), got {tuple(feature_map.shape)}")
    h, w = _pair(size)
    _, height, width = feature_map.shape
    dtype, device = feature_map.dtype, feature_map.device
    y_q = torch.as_tensor(y, dtype=dtype, device=device) - (h - 1) / 2 + torch.arange(h, dtype=dtype, device=device)
    x_p = torch.as_tensor(x, dtype=dtype, device=device) - (w - 1) / 2 + torch.arange(w, dtype=dtype, device=device)
    n = torch.arange(height, dtype=dtype, device=device)
    m = torch.arange(width, dtype=dtype, device=device)
    k_y = torch.clamp(1 - (y_q[:, None] - n[None, :]).abs(), min=0)                  # (h, H)
    k_x = torch.clamp(1 - (x_p[:, None] - m[None, :]).abs(), min=0)                  # (w, W)
    return torch.einsum("qn,cnm,pm->cqp", k_y, feature_map, k_x)
