"""Align Loss (:cite:p:`yan2020finegrained`, Sect. 4.3, eq. 2) and loss surfaces (its Fig. 6).

Align Loss compares two patches of the same feature map: one cropped at the predicted landmark, one
at the ground truth, both smoothed by a Gaussian kernel ``G`` (size 3, sigma 1 in the paper):

    L = sum_m || (G * P_GT)_m - (G * P_pred)_m ||^2                                   (eq. 2)

Here ``m`` runs over the ``h x w`` patch pixels and the norm over the channels. We report it
divided by the number of terms (``C h w``) and averaged over images and landmarks, so its value
does not depend on the patch size or the channel count (a constant factor; eq. 2's minimiser is
unchanged). Because the patches move with the prediction through the bilinear crop
(:func:`landmarks.finegrained.crops.crop_patches`), the loss has a gradient w.r.t. the predicted location
(eq. 10-12) and trains whatever produced it.

Gradient into the feature map. By default (``grad_features=False``) both crops are taken from the
*detached* map: the loss moves the prediction, never the features. Letting it reach the features
would also reward making them flat, since a constant map makes every pair of patches equal; the
paper does not say which it does, so this is our choice, and ``grad_features=True`` allows it.

Smoothing. ``smooth=True`` filters both patches with ``G`` (edge-replicating padding, so a patch
keeps its size and a constant patch stays constant). The paper removes the filter "once the loss
stops going down"; :class:`landmarks.finegrained.FineGrainedTask` has the same switch.

Loss surfaces. :func:`loss_surfaces` evaluates, for one feature map and one ground-truth point, the
value of L2, L1, heat-map L2 with a Gaussian target, and Align Loss at every candidate prediction of
a grid: the paper's Fig. 6. :func:`contour_map` makes the synthetic contour patch of that figure.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor

from landmarks.finegrained.crops import crop_patches

__all__ = ["gaussian_kernel", "smoothing_matrix", "smooth_patches", "align_loss_per_point", "align_loss", "candidate_grid",
           "loss_surfaces", "contour_map", "SURFACE_LOSSES"]

#: The losses :func:`loss_surfaces` knows, in the order of the paper's Fig. 6 (b)-(e).
SURFACE_LOSSES = ("l2", "l1", "heatmap", "align")


def gaussian_kernel(size: int = 3, sigma: float = 1.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(size, size)`` Gaussian kernel ``exp(-(dx^2 + dy^2) / (2 sigma^2))`` normalised to sum 1."""
    if size < 1 or size % 2 == 0:
        raise ValueError(f"kernel size must be a positive odd number, got {size}")
    if not sigma > 0:
        raise ValueError(f"sigma must be positive, got {sigma}")
    offsets = torch.arange(size, dtype=dtype) - (size - 1) / 2
    profile = torch.exp(-offsets.square() / (2 * sigma ** 2))
    kernel = profile[:, None] * profile[None, :]
    return kernel / kernel.sum()


def smoothing_matrix(length: int, kernel_size: int = 3, sigma: float = 1.0, dtype: torch.dtype = torch.float32) -> Tensor:
    """``(length, length)`` matrix ``M`` of 1-D Gaussian smoothing with edge replication.

    ``(M v)_i = sum_t g_t v_{clamp(i + t - r, 0, length - 1)}`` with ``g`` the normalised 1-D
    Gaussian of ``kernel_size = 2 r + 1`` taps. The 2-D kernel of :func:`gaussian_kernel` is the
    outer product of ``g`` with itself, so ``M_h P M_w^T`` is the 2-D filter of a ``h x w`` plane.
    """
    profile = gaussian_kernel(kernel_size, sigma, torch.float64).sum(dim=1)  # the 1-D factor (sums to 1)
    radius = kernel_size // 2
    rows = torch.arange(length)[:, None] + torch.arange(-radius, radius + 1)[None, :]
    matrix = torch.zeros(length, length, dtype=torch.float64)
    matrix.scatter_add_(1, rows.clamp(0, length - 1), profile.expand(length, -1).clone())
    return matrix.to(dtype)


def smooth_patches(patches: Tensor, kernel_size: int = 3, sigma: float = 1.0) -> Tensor:
    """Convolve every ``h x w`` plane of ``(..., h, w)`` patches with :func:`gaussian_kernel`.

    Edges are padded by replication, so the output has the input's shape. Computed as
    ``M_h P M_w^T`` (:func:`smoothing_matrix`), which equals the padded 2-D convolution and is much
    faster than a convolution over thousands of one-channel planes.
    """
    if patches.ndim < 2:
        raise ValueError(f"patches must have at least 2 dimensions (h, w), got {tuple(patches.shape)}")
    if kernel_size == 1:
        return patches
    h, w = patches.shape[-2:]
    rows = smoothing_matrix(h, kernel_size, sigma, patches.dtype).to(patches.device)
    cols = smoothing_matrix(w, kernel_size, sigma, patches.dtype).to(patches.device)
    return rows @ patches @ cols.T


def align_loss_per_point(features: Tensor, pred: Tensor, target: Tensor, stride: float = 1.0,
                         size: int | tuple[int, int] = 8, *, smooth: bool = True, kernel_size: int = 3,
                         sigma: float = 1.0, grad_features: bool = False) -> Tensor:
    """Align Loss of every landmark: ``(B, N)``, eq. 2 divided by ``C h w``.

    Args:
        features: ``(B, C, H, W)`` feature maps at ``stride``.
        pred, target: ``(B, N, 2)`` predicted and ground-truth points in image pixels.
        size: patch size in map cells (8 in the paper).
        smooth, kernel_size, sigma: the Gaussian filter ``G`` (3 and 1 in the paper).
        grad_features: let the loss change the feature map (see the module docstring).
    """
    if pred.shape != target.shape:
        raise ValueError(f"align loss: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    at_pred = crop_patches(features, pred, size, stride, grad_features=grad_features)
    at_truth = crop_patches(features, target.detach(), size, stride, grad_features=grad_features,
                            grad_locations=False)
    if smooth:
        at_pred = smooth_patches(at_pred, kernel_size, sigma)
        at_truth = smooth_patches(at_truth, kernel_size, sigma)
    return (at_truth - at_pred).square().mean(dim=(-3, -2, -1))


def align_loss(features: Tensor, pred: Tensor, target: Tensor, stride: float = 1.0,
               size: int | tuple[int, int] = 8, **options) -> Tensor:
    """Mean of :func:`align_loss_per_point` over images and landmarks (a scalar)."""
    return align_loss_per_point(features, pred, target, stride, size, **options).mean()


# ------------------------------------------------------------------------------------------- surfaces
def candidate_grid(centre: Sequence[float] | Tensor, radius: float, steps: int) -> tuple[Tensor, Tensor, Tensor]:
    """A square grid of candidate predictions around ``centre`` ``(x, y)``.

    Returns ``xs`` ``(steps,)``, ``ys`` ``(steps,)`` and the points ``(steps, steps, 2)``
    (``points[i, j] = (xs[j], ys[i])``), spanning ``centre +- radius``.
    """
    if steps < 2 or not radius > 0:
        raise ValueError(f"need steps >= 2 and radius > 0, got steps={steps}, radius={radius}")
    cx, cy = (float(v) for v in torch.as_tensor(centre, dtype=torch.float64).tolist())
    offsets = torch.linspace(-radius, radius, steps, dtype=torch.float32)
    xs, ys = cx + offsets, cy + offsets
    gy, gx = torch.meshgrid(ys, xs, indexing="ij")
    return xs, ys, torch.stack([gx, gy], dim=-1)


def _gaussian_maps(points: Tensor, height: int, width: int, sigma: float) -> Tensor:
    """``(K, H, W)`` Gaussians ``exp(-d^2 / (2 sigma^2))`` at continuous map points ``(K, 2)``."""
    xs = torch.arange(width, dtype=points.dtype, device=points.device) + 0.5
    ys = torch.arange(height, dtype=points.dtype, device=points.device) + 0.5
    dx = xs[None, None, :] - points[:, 0, None, None]
    dy = ys[None, :, None] - points[:, 1, None, None]
    return torch.exp(-(dx.square() + dy.square()) / (2 * sigma ** 2))


def loss_surfaces(feature_map: Tensor, truth: Sequence[float] | Tensor, candidates: Tensor,
                  losses: Sequence[str] = SURFACE_LOSSES, *, patch_size: int | tuple[int, int] = 8,
                  smooth: bool = True, kernel_size: int = 3, sigma: float = 1.0,
                  heatmap_sigma: float = 1.0) -> dict[str, Tensor]:
    """The value of each loss for every candidate prediction (the paper's Fig. 6).

    Args:
        feature_map: ``(C, H, W)`` (or ``(H, W)``) map; all points are in its continuous
            coordinates (pixel centres at ``j + 0.5``, i.e. image pixels at stride 1).
        truth: the ground-truth point ``(x, y)``.
        candidates: ``(..., 2)`` candidate predictions (e.g. from :func:`candidate_grid`).
        losses: any of :data:`SURFACE_LOSSES`:

            - ``"l2"``: squared distance ``dx^2 + dy^2``;
            - ``"l1"``: ``|dx| + |dy|``;
            - ``"heatmap"``: mean over the ``H x W`` map of the squared difference between
              Gaussians (``heatmap_sigma`` cells) at the candidate and at the truth;
            - ``"align"``: :func:`align_loss_per_point` with ``patch_size`` patches of the map.

    Returns ``{name: tensor of candidates.shape[:-1]}``.
    """
    unknown = [name for name in losses if name not in SURFACE_LOSSES]
    if unknown:
        raise ValueError(f"unknown losses {unknown}; choose from {SURFACE_LOSSES}")
    if feature_map.ndim == 2:
        feature_map = feature_map[None]
    if feature_map.ndim != 3:
        raise ValueError(f"feature_map must be (C, H, W) or (H, W), got {tuple(feature_map.shape)}")
    if candidates.shape[-1] != 2:
        raise ValueError(f"candidates must end in 2 coordinates, got {tuple(candidates.shape)}")
    shape = candidates.shape[:-1]
    points = candidates.reshape(-1, 2).to(feature_map.dtype)
    gt = torch.as_tensor(truth, dtype=feature_map.dtype, device=feature_map.device).reshape(1, 2)
    diff = points - gt
    out: dict[str, Tensor] = {}
    with torch.no_grad():
        for name in losses:
            if name == "l2":
                value = diff.square().sum(-1)
            elif name == "l1":
                value = diff.abs().sum(-1)
            elif name == "heatmap":
                _, height, width = feature_map.shape
                target = _gaussian_maps(gt, height, width, heatmap_sigma)
                value = (_gaussian_maps(points, height, width, heatmap_sigma) - target).square().mean(dim=(1, 2))
            else:
                value = align_loss_per_point(feature_map[None], points[None], gt.expand_as(points)[None], 1.0,
                                             patch_size, smooth=smooth, kernel_size=kernel_size, sigma=sigma)[0]
            out[name] = value.reshape(shape)
    return out


def contour_map(size: int = 32, radius: float = 40.0, angle_degrees: float = -30.0, softness: float = 0.7,
                noise: float = 0.0, seed: int = 0) -> tuple[Tensor, Tensor]:
    """A synthetic one-channel "face contour" map and the landmark on its boundary.

    The map is ``1`` inside a disc of ``radius`` cells and ``0`` outside, with a logistic edge of
    width ``softness``; the disc is placed so that its boundary passes through the map centre
    (the landmark), with the outward normal at ``angle_degrees`` from the x axis. ``noise`` adds
    Gaussian noise of that standard deviation. Returns ``(map (1, size, size), landmark (2,))``.
    """
    if size < 4 or not radius > 0 or not softness > 0:
        raise ValueError(f"need size >= 4, radius > 0, softness > 0; got {size}, {radius}, {softness}")
    landmark = torch.tensor([size / 2, size / 2])
    normal = torch.tensor([math.cos(math.radians(angle_degrees)), math.sin(math.radians(angle_degrees))])
    centre = landmark - radius * normal
    coords = torch.arange(size, dtype=torch.float32) + 0.5
    gy, gx = torch.meshgrid(coords, coords, indexing="ij")
    distance = torch.sqrt((gx - centre[0]).square() + (gy - centre[1]).square())
    image = torch.sigmoid((radius - distance) / softness)
    if noise > 0:
        image = image + noise * torch.randn(image.shape, generator=torch.Generator().manual_seed(seed))
    return image[None], landmark
