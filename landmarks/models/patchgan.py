"""The discriminator of the LaplaceKL paper (Sect. 3.2 and 3.4): a 4-layer PatchGAN.

Input: the RGB image stacked with the N heatmaps, ``(B, 3 + N, H, W)``. Four convolutions, each
preceded by additive Gaussian noise (training mode only; standard deviation ``noise``, a value the
text copy lost; we use 0.1):

1. 4x4 stride 2, ``64 / d`` channels, LeakyReLU 0.2 (no batch norm: the bottom layer);
2. 4x4 stride 2, ``128 / d``, batch norm, LeakyReLU 0.2;
3. 4x4 stride 2, ``256 / d``, batch norm, LeakyReLU 0.2;
4. 4x4 stride 1, 1 channel, nothing after it (the top layer).

Output: ``(B, 1, h, w)`` logits, one real-vs-generated score per overlapping image patch
(``h = H / 8 - 1``: 9 x 9 for 80 x 80 inputs).
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["GaussianNoise", "PatchGAN"]


class GaussianNoise(nn.Module):
    """Add ``N(0, std^2)`` noise in training mode; the identity in evaluation mode."""

    def __init__(self, std: float) -> None:
        super().__init__()
        if std < 0:
            raise ValueError(f"noise std must be >= 0, got {std}")
        self.std = std

    def forward(self, x: Tensor) -> Tensor:
        if self.training and self.std > 0:
            return x + self.std * torch.randn_like(x)
        return x


class PatchGAN(nn.Module):
    """4-layer PatchGAN on ``cat(image, heatmaps)``; see the module text.

    Args:
        num_points: number of heatmaps N stacked with the image.
        divisor: divides the widths 64, 128, 256.
        noise: standard deviation of the input noise of every layer.
    """

    def __init__(self, num_points: int = 68, divisor: int = 1, noise: float = 0.1) -> None:
        super().__init__()
        if num_points < 1 or divisor < 1 or 64 % divisor:
            raise ValueError(f"need num_points >= 1 and a divisor of 64, got {num_points}, {divisor}")
        widths = [3 + num_points, 64 // divisor, 128 // divisor, 256 // divisor, 1]
        layers: list[nn.Module] = []
        for k in range(4):
            top, bottom = k == 3, k == 0
            layers += [GaussianNoise(noise),
                       nn.Conv2d(widths[k], widths[k + 1], 4, stride=1 if top else 2, padding=1, bias=bottom or top)]
            if not (top or bottom):
                layers.append(nn.BatchNorm2d(widths[k + 1]))
            if not top:
                layers.append(nn.LeakyReLU(0.2, inplace=True))
        self.layers = nn.Sequential(*layers)
        self.num_points = num_points

    def forward(self, images: Tensor, heatmaps: Tensor) -> Tensor:
        if images.shape[0] != heatmaps.shape[0] or images.shape[-2:] != heatmaps.shape[-2:]:
            raise ValueError(f"PatchGAN: images {tuple(images.shape)} and heatmaps {tuple(heatmaps.shape)} "
                             "must share batch and size")
        if heatmaps.shape[1] != self.num_points:
            raise ValueError(f"PatchGAN: expected {self.num_points} heatmaps, got {heatmaps.shape[1]}")
        return self.layers(torch.cat([images, heatmaps], 1))
