"""Image statistics that tell domains apart: :func:`domain_statistics`."""
from __future__ import annotations

from typing import Iterable

import numpy as np
import torch
import torch.nn.functional as F

#: Rec. 601 luma weights.
LUMA = torch.tensor([0.299, 0.587, 0.114])
#: Edges are measured on luma averaged over blocks of this many pixels (so pixel noise is not an edge).
EDGE_SCALE = 2
#: Gradient magnitude (luma per block, image in [0, 1]) above which a block counts as an edge.
EDGE_THRESHOLD = 0.04


def as_batch(images) -> torch.Tensor:
    """Images as a float ``(N, 3, H, W)`` tensor.

    Accepts a tensor or array ``(N, 3, H, W)`` / ``(3, H, W)``, or a sequence of such images or
    of sample dicts with an ``"image"``.
    """
    if isinstance(images, (torch.Tensor, np.ndarray)):
        batch = torch.as_tensor(images)
    else:
        batch = torch.stack([torch.as_tensor(x["image"] if isinstance(x, dict) else x) for x in images])
    batch = batch.float()
    return batch[None] if batch.ndim == 3 else batch


def luma(batch: torch.Tensor) -> torch.Tensor:
    """``(N, H, W)`` luma of ``(N, 3, H, W)`` RGB."""
    return torch.einsum("nchw,c->nhw", batch, LUMA.to(batch))


def gradient_magnitude(grey: torch.Tensor) -> torch.Tensor:
    """``(N, H-2, W-2)`` magnitude of central-difference gradients of ``(N, H, W)`` images."""
    gx = 0.5 * (grey[:, 1:-1, 2:] - grey[:, 1:-1, :-2])
    gy = 0.5 * (grey[:, 2:, 1:-1] - grey[:, :-2, 1:-1])
    return torch.sqrt(gx * gx + gy * gy)


def colourfulness(batch: torch.Tensor) -> torch.Tensor:
    """Hasler and Suesstrunk's colourfulness per image (on the [0, 1] scale)."""
    r, g, b = batch.unbind(1)
    rg, yb = (r - g).flatten(1), (0.5 * (r + g) - b).flatten(1)
    spread = torch.sqrt(rg.var(1) + yb.var(1))
    offset = torch.sqrt(rg.mean(1) ** 2 + yb.mean(1) ** 2)
    return spread + 0.3 * offset


def saturation(batch: torch.Tensor) -> torch.Tensor:
    """Mean HSV saturation ``(max - min) / max`` per image."""
    high, low = batch.amax(1), batch.amin(1)
    return ((high - low) / high.clamp_min(1e-6)).flatten(1).mean(1)


def edge_density(grey: torch.Tensor) -> torch.Tensor:
    """Fraction of ``EDGE_SCALE``-pixel blocks whose luma gradient exceeds :data:`EDGE_THRESHOLD`."""
    blocks = F.avg_pool2d(grey[:, None], EDGE_SCALE)[:, 0]
    return (gradient_magnitude(blocks) > EDGE_THRESHOLD).float().flatten(1).mean(1)


def noise_level(grey: torch.Tensor) -> torch.Tensor:
    """Robust estimate of the noise sigma per image: MAD of a 3 x 3 Laplacian-like high-pass."""
    kernel = torch.tensor([[1.0, -2.0, 1.0], [-2.0, 4.0, -2.0], [1.0, -2.0, 1.0]]).to(grey)
    response = F.conv2d(grey[:, None], kernel[None, None]).flatten(1)
    mad = (response - response.median(1, keepdim=True).values).abs().median(1).values
    return 1.4826 * mad / 6.0  # the kernel's gain on white noise is sqrt(36) = 6


def per_image_statistics(images) -> dict[str, torch.Tensor]:
    """The statistics of :func:`domain_statistics`, one value per image (``(N,)`` tensors)."""
    batch = as_batch(images)
    grey = luma(batch)
    return {
        "brightness": grey.flatten(1).mean(1),
        "contrast": grey.flatten(1).std(1),
        "saturation": saturation(batch),
        "colourfulness": colourfulness(batch),
        "edge_density": edge_density(grey),
        "noise": noise_level(grey),
    }


def domain_statistics(images: torch.Tensor | np.ndarray | Iterable) -> dict[str, float]:
    """Mean image statistics of a set of RGB images in [0, 1] (see :func:`as_batch` for inputs).

    * ``brightness``: mean luma;
    * ``contrast``: standard deviation of luma within an image (RMS contrast);
    * ``saturation``: mean HSV saturation; ``colourfulness``: Hasler-Suesstrunk's measure;
    * ``edge_density``: fraction of 2 x 2 blocks whose luma gradient exceeds :data:`EDGE_THRESHOLD`;
    * ``noise``: estimated sigma of pixel noise.
    """
    return {name: float(values.mean()) for name, values in per_image_statistics(images).items()}
