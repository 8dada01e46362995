"""The Recombinator generator of the LaplaceKL paper (Table 1 and Sect. 3.4).

A 4-branch Recombinator network (RCN, Honari et al.): 80 x 80 images in, 80 x 80 heatmaps out.

Encoder (4 blocks, paper Table 1 rows 2-5): 3x3 convolution to ``64 / d`` channels, LeakyReLU 0.2,
dropout, 2x2 max pooling: 80 -> 40 -> 20 -> 10 -> 5. The features of each block *before* pooling
(at 80, 40, 20 and 10 px) are the skip branches.

Decoder (4 blocks, rows 6-13): 1x1 convolution to ``64 / d`` channels, LeakyReLU, dropout, nearest
x2 upsampling, concatenation with the skip branch of that resolution (``128 / d`` channels), 5x5
convolution ``128 / d -> 128 / d``, LeakyReLU, dropout: 5 -> 10 -> 20 -> 40 -> 80.

Output (row 14): 1x1 convolution to ``N`` maps, no activation (raw logits, read by
:class:`landmarks.codecs.tasks.SoftargmaxTask`). The paper applies LeakyReLU "on all but the last
convolution layer" and dropout "after all but the first and last activation"; we follow the text
where it and the table disagree. The dropout rate is not given; we use 0.1.

``divisor`` (1, 2, 4, 8, 16) divides every width, as in the paper's size study (Table 3).
Output: ``{"heatmaps": (B, N, H, W)}`` for ``(B, 3, H, W)`` images with ``H, W`` multiples of 16.
"""
from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["Recombinator", "recombinator", "parameter_count", "storage_megabytes", "DIVISORS"]

#: Width divisors of the paper's size study (Table 3).
DIVISORS = (1, 2, 4, 8, 16)
#: Depth of the encoder: four poolings, so inputs must be multiples of 16.
LEVELS = 4


def _activation(dropout: float, drop: bool) -> nn.Sequential:
    layers: list[nn.Module] = [nn.LeakyReLU(0.2, inplace=True)]
    if drop and dropout > 0:
        layers.append(nn.Dropout(dropout))
    return nn.Sequential(*layers)


class Recombinator(nn.Module):
    """The paper's generator (Table 1); see the module text.

    Args:
        num_points: number of heatmaps N.
        divisor: width divisor (64 / divisor encoder channels).
        dropout: dropout probability after the inner activations.
    """

    def __init__(self, num_points: int = 68, divisor: int = 1, dropout: float = 0.1) -> None:
        super().__init__()
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        if divisor < 1 or 64 % divisor:
            raise ValueError(f"divisor must divide 64, got {divisor}")
        if not 0 <= dropout < 1:
            raise ValueError(f"dropout must be in [0, 1), got {dropout}")
        c = 64 // divisor
        self.num_points, self.divisor, self.net_stride = num_points, divisor, 1
        self.encoder = nn.ModuleList(
            nn.Sequential(nn.Conv2d(3 if k == 0 else c, c, 3, padding=1), _activation(dropout, drop=k > 0))
            for k in range(LEVELS))
        self.pool = nn.MaxPool2d(2)
        self.squeeze = nn.ModuleList(
            nn.Sequential(nn.Conv2d(c if k == 0 else 2 * c, c, 1), _activation(dropout, drop=True))
            for k in range(LEVELS))
        self.up = nn.Upsample(scale_factor=2, mode="nearest")
        self.combine = nn.ModuleList(
            nn.Sequential(nn.Conv2d(2 * c, 2 * c, 5, padding=2), _activation(dropout, drop=k < LEVELS - 1))
            for k in range(LEVELS))
        self.output = nn.Conv2d(2 * c, num_points, 1)
        nn.init.zeros_(self.output.weight)  # start from uniform maps: softargmax at the image centre
        nn.init.zeros_(self.output.bias)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"Recombinator: expected (B, 3, H, W) images, got {tuple(images.shape)}")
        h, w = images.shape[-2:]
        if h % 2**LEVELS or w % 2**LEVELS:
            raise ValueError(f"Recombinator: image sides must be multiples of {2**LEVELS}, got {h}x{w}")
        x = images * 2 - 1
        branches = []
        for block in self.encoder:
            x = block(x)
            branches.append(x)
            x = self.pool(x)
        for squeeze, combine, skip in zip(self.squeeze, self.combine, reversed(branches)):
            x = combine(torch.cat([self.up(squeeze(x)), skip], 1))
        return {"heatmaps": self.output(x)}


def recombinator(num_points: int = 68, divisor: int = 1, dropout: float = 0.1) -> Recombinator:
    """Build a :class:`Recombinator` (untrained)."""
    return Recombinator(num_points, divisor, dropout)


def parameter_count(model: nn.Module) -> int:
    """Number of trainable parameters."""
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def storage_megabytes(model: nn.Module) -> float:
    """Size of the float32 weights in MB (10^6 bytes), the paper's "Storage (MB)" row of Table 3."""
    return sum(p.numel() * p.element_size() for p in model.parameters()) / 1e6
