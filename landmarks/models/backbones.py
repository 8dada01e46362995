"""ResNet trunks that return the feature maps of every level.

:class:`ResNetBackbone` is the convolutional part of torchvision's ResNet-18/34/50 (``conv1``,
``bn1``, ``relu``, ``maxpool``, ``layer1`` ... ``layer4``; no pooling, no ``fc``), assembled from
torchvision's own :class:`~torchvision.models.resnet.BasicBlock` and
:class:`~torchvision.models.resnet.Bottleneck`, with two additions:

- every channel count is multiplied by ``width`` (``width=0.25`` gives a ResNet-18 with 16, 32, 64
  and 128 channels in its four stages: the small trunks of the fine-grained chapter and of the
  quick profile);
- ``forward`` takes images in ``[0, 1]`` and applies the ImageNet mean / std normalisation itself.

At ``width=1.0`` the parameter and buffer names and shapes are exactly those of
``torchvision.models.resnet18/34/50()`` without ``fc``, so an ImageNet state dict loads with
:meth:`ResNetBackbone.load_trunk_state_dict` (which drops ``fc.*``).

Levels returned by ``forward`` (``channels`` and ``strides`` list them in the same order)::

    index  level                                   stride   channels (ResNet-18 / -50, width 1)
    0      stem: relu(bn1(conv1(x))), before maxpool   2        64 / 64
    1      layer1                                      4        64 / 256
    2      layer2                                      8       128 / 512
    3      layer3                                     16       256 / 1024
    4      layer4                                     32       512 / 2048

A feature map at stride ``s`` of an ``H x W`` image has ``ceil(H / s) x ceil(W / s)`` cells.
"""
from __future__ import annotations

import hashlib
import os
import pickle
import re
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

import torch
import torchvision.models as tvm
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock, Bottleneck

__all__ = ["IMAGENET_MEAN", "IMAGENET_STD", "RESNET_SPECS", "ResNetBackbone", "scaled_channels",
           "load_imagenet_state_dict", "check_hub_hash", "hub_file"]

#: ImageNet statistics of ``[0, 1]`` RGB images, as used to train torchvision's weights.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

#: depth -> (block class, number of blocks in layer1..layer4)
RESNET_SPECS: dict[int, tuple[type[BasicBlock] | type[Bottleneck], tuple[int, int, int, int]]] = {
    18: (BasicBlock, (2, 2, 2, 2)),
    34: (BasicBlock, (3, 4, 6, 3)),
    50: (Bottleneck, (3, 4, 6, 3)),
}

#: depth -> torchvision weights enum (only looked up when ``pretrained=True``).
_WEIGHTS = {18: "ResNet18_Weights", 34: "ResNet34_Weights", 50: "ResNet50_Weights"}

#: Base channel counts of the stem and of the four stages at ``width=1``.
_BASE_STEM = 64
_BASE_PLANES = (64, 128, 256, 512)


def scaled_channels(channels: int, width: float) -> int:
    """``channels * width`` rounded to the nearest integer, at least 1."""
    return max(1, int(round(channels * width)))


def _imagenet_weights(depth: int) -> tvm.WeightsEnum:
    """torchvision's ``IMAGENET1K_V1`` weights entry for a ResNet of this depth."""
    return getattr(tvm, _WEIGHTS[depth]).IMAGENET1K_V1


def hub_file(url: str) -> Path:
    """Where torch hub caches the file of ``url``: ``<torch.hub.get_dir()>/checkpoints/<file name>``."""
    return Path(torch.hub.get_dir()) / "checkpoints" / os.path.basename(urlparse(url).path)


def check_hub_hash(path: Path) -> None:
    """``ValueError`` naming ``path`` unless the SHA-256 of its bytes starts with the hex digits of
    its name (torchvision's convention ``<name>-<sha256 prefix>.<ext>``, e.g. ``resnet18-f37072fd.pth``)."""
    match = torch.hub.HASH_REGEX.search(path.name)
    if match is None or not match.group(1):
        raise ValueError(f"{path}: no SHA-256 prefix in the file name ('<name>-<hash>.pth'); cannot check it")
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    if not digest.hexdigest().startswith(match.group(1)):
        raise ValueError(f"{path}: SHA-256 {digest.hexdigest()[:12]}... does not start with {match.group(1)!r} "
                         "from its name (corrupt or replaced); delete it to download it again")


def load_imagenet_state_dict(weights: tvm.WeightsEnum, progress: bool = True) -> Mapping[str, Tensor]:
    """torchvision ``weights`` as a state dict, through its weights API, checked and weights-only.

    The file is downloaded to the torch hub cache on first use (:func:`hub_file`) and read with
    ``weights_only=True``, so it cannot run code. Hashes: torch hub refuses a download whose
    SHA-256 does not match its name (``RuntimeError``); :func:`check_hub_hash` checks a file already
    in the cache (which torch hub would load unchecked). A cached file with the wrong hash, or
    one that holds code, raises ``ValueError`` naming it.
    """
    cached = hub_file(weights.url)
    if cached.exists():
        check_hub_hash(cached)
    try:
        return weights.get_state_dict(progress=progress, check_hash=True, weights_only=True)
    except pickle.UnpicklingError as error:  # what torch.load(weights_only=True) raises for code
        raise ValueError(f"{cached}: not a weights-only state dict, refusing to load it "
                         f"({_unpickler_reason(error)})") from error


def _unpickler_reason(error: Exception) -> str:
    """The one-line reason inside torch's long ``weights_only`` error (``Unsupported global: ...``)."""
    match = re.search(r"WeightsUnpickler error: ([^\n]*?\.)(\s|$)", str(error))
    return match.group(1) if match else str(error).strip().split("\n")[0][:200]


class ResNetBackbone(nn.Module):
    """A torchvision-style ResNet trunk with a channel multiplier; returns every level's features.

    Args:
        depth: 18, 34 or 50.
        width: channel multiplier applied to the stem and to every stage (``0.25`` = a quarter of
            the channels). Bottleneck stages keep their 4x expansion.
        pretrained: ``False`` (random initialisation as in torchvision, never touches the
            network); ``True`` (torchvision's ``IMAGENET1K_V1`` weights through its weights API,
            downloaded on first use and cached by torch hub, hash-checked and read weights-only
            by :func:`load_imagenet_state_dict`; only for ``width=1.0``); or the path
            of a local state dict file saved from a torchvision ResNet or from this class (for
            offline use; ``fc.*`` entries are ignored).

    Attributes:
        depth, width: the constructor arguments.
        channels: channels of each returned level, ``[stem, layer1, layer2, layer3, layer4]``.
        strides: strides of each returned level, ``[2, 4, 8, 16, 32]``.

    ``forward(images)`` takes float ``(B, 3, H, W)`` RGB images in ``[0, 1]``, normalises them with
    the ImageNet mean and std, and returns the list of five feature maps described in the module
    docstring.
    """

    def __init__(self, depth: int = 18, width: float = 1.0, pretrained: bool | str | Path = False) -> None:
        super().__init__()
        if depth not in RESNET_SPECS:
            raise ValueError(f"ResNet depth {depth} not supported; expected one of {sorted(RESNET_SPECS)}")
        if not width > 0:
            raise ValueError(f"width must be positive, got {width}")
        if pretrained is True and width != 1.0:
            raise ValueError(f"pretrained=True loads torchvision's ImageNet weights, which exist only for "
                             f"width=1.0 (got width={width}); pass pretrained=False or a local state dict path")
        self.depth = depth
        self.width = float(width)
        block, blocks = RESNET_SPECS[depth]

        # Not persistent: the state dict keeps torchvision's names and nothing else.
        self.register_buffer("mean", torch.tensor(IMAGENET_MEAN).view(1, 3, 1, 1), persistent=False)
        self.register_buffer("std", torch.tensor(IMAGENET_STD).view(1, 3, 1, 1), persistent=False)

        stem = scaled_channels(_BASE_STEM, width)
        self.conv1 = nn.Conv2d(3, stem, kernel_size=7, stride=2, padding=3, bias=False)
        self.bn1 = nn.BatchNorm2d(stem)
        self.relu = nn.ReLU(inplace=True)
        self.maxpool = nn.MaxPool2d(kernel_size=3, stride=2, padding=1)

        channels = [stem]
        in_channels = stem
        stages = []
        for index, (base, count) in enumerate(zip(_BASE_PLANES, blocks)):
            planes = scaled_channels(base, width)
            stage = self._make_stage(block, in_channels, planes, count, stride=1 if index == 0 else 2)
            in_channels = planes * block.expansion
            stages.append(stage)
            channels.append(in_channels)
        self.layer1, self.layer2, self.layer3, self.layer4 = stages

        self.channels: list[int] = channels
        self.strides: list[int] = [2, 4, 8, 16, 32]
        self._init_weights()

        if pretrained is True:
            weights = _imagenet_weights(depth)
            self.load_trunk_state_dict(load_imagenet_state_dict(weights), source=str(hub_file(weights.url)))
        elif pretrained is not False and pretrained is not None:
            path = Path(pretrained)
            if not path.is_file():
                raise ValueError(f"pretrained={str(path)!r}: no such state dict file")
            state = torch.load(path, map_location="cpu", weights_only=True)
            self.load_trunk_state_dict(state, source=str(path))

    @staticmethod
    def _make_stage(block: type[BasicBlock] | type[Bottleneck], in_channels: int, planes: int,
                    count: int, stride: int) -> nn.Sequential:
        """``count`` blocks; the first changes stride / channels through a 1x1 conv + BN shortcut."""
        out_channels = planes * block.expansion
        shortcut = None
        if stride != 1 or in_channels != out_channels:
            shortcut = nn.Sequential(
                nn.Conv2d(in_channels, out_channels, kernel_size=1, stride=stride, bias=False),
                nn.BatchNorm2d(out_channels),
            )
        layers = [block(in_channels, planes, stride=stride, downsample=shortcut)]
        layers += [block(out_channels, planes) for _ in range(count - 1)]
        return nn.Sequential(*layers)

    def _init_weights(self) -> None:
        """torchvision's ResNet initialisation: He-normal (fan-out) convolutions, BN to identity."""
        for module in self.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
            elif isinstance(module, nn.BatchNorm2d):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)

    def load_trunk_state_dict(self, state_dict: Mapping[str, Tensor], source: str = "state dict") -> None:
        """Load a torchvision ResNet (or trunk) state dict strictly, ignoring its ``fc.*`` entries.

        A ``"module."`` prefix (from ``nn.DataParallel``) is stripped. Raises ``ValueError`` naming
        ``source`` when keys are missing or unexpected or shapes differ (e.g. a different width).
        """
        if not isinstance(state_dict, Mapping):
            raise ValueError(f"{source}: expected a state dict (a mapping of names to tensors), "
                             f"got {type(state_dict).__name__}")
        trunk = {}
        for name, value in state_dict.items():
            name = name.removeprefix("module.")
            if not name.startswith("fc."):
                trunk[name] = value
        own = self.state_dict()
        missing = sorted(set(own) - set(trunk))
        unexpected = sorted(set(trunk) - set(own))
        wrong = [f"{k} {tuple(trunk[k].shape)} vs {tuple(own[k].shape)}"
                 for k in own if k in trunk and tuple(trunk[k].shape) != tuple(own[k].shape)]
        if missing or unexpected or wrong:
            raise ValueError(f"{source} does not fit ResNet-{self.depth} width {self.width}: "
                             f"missing {missing[:5]}{'...' if len(missing) > 5 else ''}, "
                             f"unexpected {unexpected[:5]}{'...' if len(unexpected) > 5 else ''}, "
                             f"shape mismatches {wrong[:5]}{'...' if len(wrong) > 5 else ''}")
        self.load_state_dict(trunk, strict=True)

    def normalise(self, images: Tensor) -> Tensor:
        """``[0, 1]`` RGB images to ImageNet-normalised ones."""
        return (images - self.mean) / self.std

    def forward(self, images: Tensor) -> list[Tensor]:
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"expected images of shape (B, 3, H, W), got {tuple(images.shape)}")
        x = self.relu(self.bn1(self.conv1(self.normalise(images))))
        features = [x]
        x = self.maxpool(x)
        for stage in (self.layer1, self.layer2, self.layer3, self.layer4):
            x = stage(x)
            features.append(x)
        return features

    def extra_repr(self) -> str:
        return f"depth={self.depth}, width={self.width}, channels={self.channels}, strides={self.strides}"
