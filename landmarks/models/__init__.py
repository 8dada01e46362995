"""Networks: ResNet trunks, detection heads, and builders that put the two together.

Quick start::

    from landmarks.models import pipnet
    model = pipnet(num_points=68, depth=18, width=0.25)      # untrained, offline
    outputs = model(images)                                  # images: (B, 3, 256, 256) in [0, 1]
    outputs["score"].shape                                   # (B, 68, 8, 8) at net stride 32

Every builder returns a :class:`LandmarkModel` whose head reads the trunk's last level (stride 32).
``pretrained`` is passed to :class:`ResNetBackbone`: ``False`` (default, no network access),
``True`` (torchvision ImageNet weights, width 1.0 only) or a local state dict path.
"""
from __future__ import annotations

from pathlib import Path
from typing import Sequence

from landmarks.models.backbones import IMAGENET_MEAN, IMAGENET_STD, ResNetBackbone, scaled_channels
from landmarks.models.heads import PIP_KEYS, CoordinateHead, HeatmapHead, LandmarkModel, PIPHead

__all__ = ["ResNetBackbone", "CoordinateHead", "HeatmapHead", "PIPHead", "LandmarkModel", "PIP_KEYS",
           "IMAGENET_MEAN", "IMAGENET_STD", "pipnet", "heatmap_net", "coordinate_net"]

Pretrained = bool | str | Path


def pipnet(num_points: int, depth: int = 18, width: float = 1.0, net_stride: int = 32, num_neighbours: int = 10,
           pretrained: Pretrained = False) -> LandmarkModel:
    """PIPNet: a ResNet trunk + :class:`PIPHead` on its stride-32 features."""
    backbone = ResNetBackbone(depth, width, pretrained)
    head = PIPHead(backbone.channels[-1], num_points, num_neighbours=num_neighbours,
                   in_stride=backbone.strides[-1], net_stride=net_stride)
    return LandmarkModel(backbone, head)


def heatmap_net(num_points: int, depth: int = 18, width: float = 1.0, net_stride: int = 4,
                hidden: int | None = None, pretrained: Pretrained = False) -> LandmarkModel:
    """"Map Net": a ResNet trunk + :class:`HeatmapHead`.

    ``hidden`` (deconvolution channels) defaults to ``256 * width``, i.e. 256 at full width as in
    the simple-baseline heatmap networks, 64 for a quarter-width trunk.
    """
    backbone = ResNetBackbone(depth, width, pretrained)
    hidden = scaled_channels(256, width) if hidden is None else hidden
    head = HeatmapHead(backbone.channels[-1], num_points, in_stride=backbone.strides[-1],
                       net_stride=net_stride, hidden=hidden)
    return LandmarkModel(backbone, head)


def coordinate_net(num_points: int, depth: int = 18, width: float = 1.0, hidden: Sequence[int] = (),
                   pretrained: Pretrained = False) -> LandmarkModel:
    """"Coord Net": a ResNet trunk + :class:`CoordinateHead` (``hidden=(512, 512)`` is the paper's)."""
    backbone = ResNetBackbone(depth, width, pretrained)
    return LandmarkModel(backbone, CoordinateHead(backbone.channels[-1], num_points, hidden=hidden))
