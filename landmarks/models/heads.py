"""Detection heads and the backbone + head model.

Every head takes the backbone's list of feature maps, reads one level of it (``level``, default the
last: stride 32 on a ResNet) and returns a dict of raw tensors; decoding lives elsewhere
(:mod:`landmarks.codecs.pip`, :mod:`landmarks.codecs.heatmaps`). A head knows only the channels and stride of the
level it reads, never which backbone produced it. Each head has ``num_points`` and ``net_stride``
(the stride of its output maps in input pixels; ``None`` for the coordinate head).

- :class:`CoordinateHead` ("Coord Net"): global average pool, optional hidden FC + BN + ReLU
  layers, FC to ``2N``. ``{"coords": (B, N, 2)}`` in units of the input size (x / W, y / H).
- :class:`HeatmapHead` ("Map Net"): stride-2 deconvolutions up to ``net_stride``, then a 1x1 conv.
  ``{"heatmaps": (B, N, H / s, W / s)}``.
- :class:`PIPHead` (pixel-in-pixel regression): optional resampling to ``net_stride``, then 1x1
  convolutions for scores, offsets and neighbour offsets.
- :class:`LandmarkModel`: ``model(images) == head(backbone(images))``.
"""
from __future__ import annotations

import math
from typing import Sequence

import torch
from torch import Tensor, nn

__all__ = ["CoordinateHead", "HeatmapHead", "PIPHead", "LandmarkModel", "PIP_KEYS", "upsampling_block",
           "downsampling_block"]

#: Output keys of :class:`PIPHead`, in the order of its output channels.
PIP_KEYS = ("score", "offset_x", "offset_y", "neighbour_x", "neighbour_y")


def _power_of_two_steps(in_stride: int, net_stride: int, what: str) -> int:
    """Signed number of stride-2 steps from ``in_stride`` to ``net_stride`` (> 0: upsampling)."""
    ratio = in_stride / net_stride
    steps = round(math.log2(ratio)) if ratio > 0 else 0
    if in_stride <= 0 or net_stride <= 0 or 2.0 ** steps != ratio:
        raise ValueError(f"{what}: net_stride {net_stride} must be in_stride {in_stride} times a power of two")
    return steps


def upsampling_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Double the resolution: 4x4 transposed convolution (stride 2, padding 1) + BN + ReLU."""
    return nn.Sequential(
        nn.ConvTranspose2d(in_channels, out_channels, kernel_size=4, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def downsampling_block(in_channels: int, out_channels: int) -> nn.Sequential:
    """Halve the resolution: 3x3 convolution (stride 2, padding 1) + BN + ReLU."""
    return nn.Sequential(
        nn.Conv2d(in_channels, out_channels, kernel_size=3, stride=2, padding=1, bias=False),
        nn.BatchNorm2d(out_channels),
        nn.ReLU(inplace=True),
    )


def _init_resampling(module: nn.Module, std: float | None = None) -> None:
    """Convolutions: He-normal (fan-out), or N(0, std) when given; BN to identity."""
    for m in module.modules():
        if isinstance(m, (nn.Conv2d, nn.ConvTranspose2d)):
            if std is None:
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
            else:
                nn.init.normal_(m.weight, std=std)
            if m.bias is not None:
                nn.init.zeros_(m.bias)
        elif isinstance(m, nn.BatchNorm2d):
            nn.init.ones_(m.weight)
            nn.init.zeros_(m.bias)


class CoordinateHead(nn.Module):
    """Direct coordinate regression ("Coord Net").

    Args:
        in_channels: channels of the feature level read.
        num_points: number of landmarks N.
        hidden: sizes of hidden fully connected layers (each Linear + BatchNorm1d + ReLU). The
            default ``()`` is a single FC layer; the PIPNet paper's Coord Net is ``(512, 512)``.
        level: which entry of the feature list to read.

    Output: ``{"coords": (B, N, 2)}`` in units of the input image size: multiply x by the image
    width and y by its height to get pixel coordinates. The last layer starts with N(0, 0.001)
    weights and bias 0.5, so an untrained head predicts points near the image centre.
    """

    def __init__(self, in_channels: int, num_points: int, hidden: Sequence[int] = (), level: int = -1) -> None:
        super().__init__()
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        self.in_channels = in_channels
        self.num_points = num_points
        self.net_stride = None
        self.level = level
        layers: list[nn.Module] = []
        size = in_channels
        for width in hidden:
            layers += [nn.Linear(size, width, bias=False), nn.BatchNorm1d(width), nn.ReLU(inplace=True)]
            size = width
        self.hidden = nn.Sequential(*layers)
        self.fc = nn.Linear(size, 2 * num_points)
        nn.init.normal_(self.fc.weight, std=0.001)
        nn.init.constant_(self.fc.bias, 0.5)

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        pooled = features[self.level].mean(dim=(2, 3))
        coords = self.fc(self.hidden(pooled))
        return {"coords": coords.view(-1, self.num_points, 2)}


class HeatmapHead(nn.Module):
    """Heatmap regression ("Map Net"): upsample by stride-2 deconvolutions, then a 1x1 conv.

    Args:
        in_channels: channels of the feature level read.
        num_points: number of landmarks N (one map each).
        in_stride: stride of that level (32 for a ResNet's last level).
        net_stride: stride of the output maps: ``in_stride / 2**k`` (4, 2 or 1 from a stride-32
            level means 3, 4 or 5 deconvolutions).
        hidden: channels of every deconvolution.
        level: which entry of the feature list to read.

    Output: ``{"heatmaps": (B, N, h, w)}`` with ``h = ceil(H / in_stride) * in_stride / net_stride``
    (``H / net_stride`` when ``H`` is a multiple of ``in_stride``). Raw scores: no sigmoid or
    softmax. Deconvolution and output weights start as N(0, 0.001), biases at zero.
    """

    def __init__(self, in_channels: int, num_points: int, in_stride: int = 32, net_stride: int = 4,
                 hidden: int = 256, level: int = -1) -> None:
        super().__init__()
        steps = _power_of_two_steps(in_stride, net_stride, "HeatmapHead")
        if steps < 0:
            raise ValueError(f"HeatmapHead: net_stride {net_stride} must not exceed in_stride {in_stride}")
        self.in_channels = in_channels
        self.num_points = num_points
        self.in_stride = in_stride
        self.net_stride = net_stride
        self.level = level
        blocks = [upsampling_block(in_channels if k == 0 else hidden, hidden) for k in range(steps)]
        self.upsample = nn.Sequential(*blocks)
        self.output = nn.Conv2d(hidden if steps else in_channels, num_points, kernel_size=1)
        _init_resampling(self, std=0.001)

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        return {"heatmaps": self.output(self.upsample(features[self.level]))}


class PIPHead(nn.Module):
    """Pixel-in-pixel regression head (PIPNet).

    Args:
        in_channels: channels of the feature level read.
        num_points: number of landmarks N.
        num_neighbours: neighbours each landmark predicts offsets for (``nb``); 0 disables them.
        in_stride: stride of that level (32 for a ResNet's last level).
        net_stride: stride of the output maps. Larger than ``in_stride`` (64, 128): one 3x3 stride-2
            conv + BN + ReLU per halving; smaller (16): one 4x4 stride-2 deconvolution + BN + ReLU
            per doubling. These keep ``in_channels`` channels and start He-normal.
        level: which entry of the feature list to read.

    Output dict, all maps ``(B, C, h, w)`` at ``net_stride`` (``h = H / net_stride`` for inputs
    that are multiples of the strides), raw values (no sigmoid):

    - ``"score"``: ``(B, N, h, w)``, which cell holds landmark i;
    - ``"offset_x"``, ``"offset_y"``: ``(B, N, h, w)``, the landmark's position inside the cell;
    - ``"neighbour_x"``, ``"neighbour_y"``: ``(B, N * nb, h, w)``, channel ``i * nb + k`` is the
      offset of landmark i's k-th neighbour, predicted in landmark i's cell. Absent when
      ``num_neighbours == 0``.

    The five 1x1 predictors are stored as one convolution (``predict``) whose output channels are
    ``[score | offset_x | offset_y | neighbour_x | neighbour_y]``; this is the same as five separate
    1x1 convolutions, computed in one call. Weights start as N(0, 0.001), biases at zero.
    """

    def __init__(self, in_channels: int, num_points: int, num_neighbours: int = 10, in_stride: int = 32,
                 net_stride: int = 32, level: int = -1) -> None:
        super().__init__()
        if num_points < 1:
            raise ValueError(f"num_points must be >= 1, got {num_points}")
        if num_neighbours < 0:
            raise ValueError(f"num_neighbours must be >= 0, got {num_neighbours}")
        steps = _power_of_two_steps(in_stride, net_stride, "PIPHead")
        self.in_channels = in_channels
        self.num_points = num_points
        self.num_neighbours = num_neighbours
        self.in_stride = in_stride
        self.net_stride = net_stride
        self.level = level
        block = upsampling_block if steps > 0 else downsampling_block
        self.resample = nn.Sequential(*[block(in_channels, in_channels) for _ in range(abs(steps))])
        _init_resampling(self.resample)
        n, nb = num_points, num_neighbours
        self.split_sizes = [n, n, n] + ([n * nb, n * nb] if nb else [])
        self.predict = nn.Conv2d(in_channels, sum(self.split_sizes), kernel_size=1)
        nn.init.normal_(self.predict.weight, std=0.001)
        nn.init.zeros_(self.predict.bias)

    def forward(self, features: Sequence[Tensor]) -> dict[str, Tensor]:
        maps = self.predict(self.resample(features[self.level]))
        parts = torch.split(maps, self.split_sizes, dim=1)
        return {key: part.contiguous() for key, part in zip(PIP_KEYS, parts)}


class LandmarkModel(nn.Module):
    """A backbone followed by a head: ``model(images) == head(backbone(images))``.

    Args:
        backbone: maps ``(B, 3, H, W)`` images in ``[0, 1]`` to a list of feature maps.
        head: maps that list to a dict of raw output tensors.

    When both sides say so (``backbone.channels`` / ``backbone.strides`` and ``head.in_channels`` /
    ``head.in_stride`` / ``head.level``), a mismatch raises ``ValueError`` at construction.
    """

    def __init__(self, backbone: nn.Module, head: nn.Module) -> None:
        super().__init__()
        level = getattr(head, "level", -1)
        channels = getattr(backbone, "channels", None)
        if channels is not None and hasattr(head, "in_channels") and channels[level] != head.in_channels:
            raise ValueError(f"head reads {head.in_channels} channels but backbone level {level} "
                             f"has {channels[level]}")
        strides = getattr(backbone, "strides", None)
        if strides is not None and hasattr(head, "in_stride") and strides[level] != head.in_stride:
            raise ValueError(f"head expects stride {head.in_stride} but backbone level {level} "
                             f"has stride {strides[level]}")
        self.backbone = backbone
        self.head = head

    @property
    def num_points(self) -> int:
        return self.head.num_points

    @property
    def net_stride(self) -> int | None:
        return self.head.net_stride

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.head(self.backbone(images))
