"""CropNet refinement stages on a coordinate-regression ResNet (:cite:p:`yan2020finegrained`, Sect. 3, Table 7).

The baseline (Sect. 3.1) is a ResNet trunk with a quarter of the channels and a
:class:`~landmarks.models.heads.CoordinateHead` (global average pool, one FC layer to ``2N``). Each
refinement stage ``k`` (Fig. 1 and 4):

1. crops an ``8 x 8`` patch around every current estimate ``S_{k-1}`` from one intermediate level of
   the trunk by bilinear sampling (:func:`landmarks.finegrained.crops.crop_patches`, eq. 5-7);
2. runs a :class:`CropNet` on the ``N`` patches, which predicts a correction ``Delta S_k``;
3. outputs ``S_k = S_{k-1} + Delta S_k``, the centres of the next stage's crops.

The three stages read the 3rd, 2nd and 1st level feature maps, i.e. for a ResNet the outputs of
``layer2`` (stride 8), ``layer1`` (stride 4) and the stem (stride 2): at 224 px the paper's first stage
crops an ``8 x 8`` patch from a ``28 x 28`` map with ``32 N`` channels (``N`` patches of the 32
channels of ``layer2`` at width 0.25), which fixes the numbering. Everything is trained end to end;
the gradient reaches the trunk through the patch values (``grad_features``, eq. 8-9) and through
the crop centres (``grad_locations``, eq. 10-16): the two switches of Table 6.

:class:`CropNet` (Table 7)::

    channel selection   1x1 conv, C -> 4 channels per landmark (grouped: each landmark's patch only)
    batch norm          4N
    ResNet block        4N -> 128 (torchvision BasicBlock with a 1x1 conv + BN shortcut)
    max-pool            over the 8 x 8 patch
    FC                  128 -> 2N, weights and bias initialised to zero

Choices the paper leaves open: the channel selection is grouped (landmark ``i``'s 4 channels mix
only the ``C`` channels of its own patch, ``4 C N`` weights instead of ``4 C N^2``); the FC output is
in units of the stage's map cells (multiplied by the stride to get pixels), so one unit is one cell.
"""
from __future__ import annotations

from typing import Sequence

import torch
from torch import Tensor, nn
from torchvision.models.resnet import BasicBlock

from landmarks.finegrained.crops import crop_patches
from landmarks.models.backbones import ResNetBackbone
from landmarks.models.heads import CoordinateHead

__all__ = ["CropNet", "FineGrainedNet", "finegrained_net", "PAPER_LEVELS"]

#: Trunk levels read by the three stages: layer2 (3rd level), layer1 (2nd), stem (1st).
PAPER_LEVELS = (2, 1, 0)


class CropNet(nn.Module):
    """One refinement network (Table 7): ``(B, N, C, h, w)`` patches -> ``(B, N, 2)`` corrections.

    Args:
        in_channels: channels ``C`` of each landmark's patch.
        num_points: landmarks ``N``.
        selected: channels kept per landmark by the 1x1 channel selection (4).
        hidden: output channels of the ResNet block (128).

    The output is in the units of the patch grid (map cells); it is exactly zero at
    initialisation, so an untrained stage leaves the estimate unchanged.
    """

    def __init__(self, in_channels: int, num_points: int, selected: int = 4, hidden: int = 128) -> None:
        super().__init__()
        if min(in_channels, num_points, selected, hidden) < 1:
            raise ValueError(f"CropNet sizes must be positive, got in_channels={in_channels}, "
                             f"num_points={num_points}, selected={selected}, hidden={hidden}")
        self.in_channels = in_channels
        self.num_points = num_points
        width = selected * num_points
        self.select = nn.Conv2d(in_channels * num_points, width, kernel_size=1, groups=num_points, bias=False)
        self.bn = nn.BatchNorm2d(width)
        shortcut = nn.Sequential(nn.Conv2d(width, hidden, kernel_size=1, bias=False), nn.BatchNorm2d(hidden))
        self.block = BasicBlock(width, hidden, downsample=shortcut)
        self.pool = nn.AdaptiveMaxPool2d(1)
        self.fc = nn.Linear(hidden, 2 * num_points)
        for module in self.block.modules():
            if isinstance(module, nn.Conv2d):
                nn.init.kaiming_normal_(module.weight, mode="fan_out", nonlinearity="relu")
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def selected_channels(self, patches: Tensor) -> Tensor:
        """The channel-selected patches ``(B, N, selected, h, w)`` (the paper's Fig. 5)."""
        b, n, c, h, w = self._check(patches)
        return self.select(patches.reshape(b, n * c, h, w)).view(b, n, -1, h, w)

    def _check(self, patches: Tensor) -> torch.Size:
        if patches.ndim != 5 or patches.shape[1] != self.num_points or patches.shape[2] != self.in_channels:
            raise ValueError(f"CropNet expects (B, {self.num_points}, {self.in_channels}, h, w) patches, "
                             f"got {tuple(patches.shape)}")
        return patches.shape

    def forward(self, patches: Tensor) -> Tensor:
        b, n, c, h, w = self._check(patches)
        x = self.bn(self.select(patches.reshape(b, n * c, h, w)))
        x = self.pool(self.block(x)).flatten(1)
        return self.fc(x).view(b, n, 2)


class FineGrainedNet(nn.Module):
    """Baseline coordinate regressor + CropNet refinement stages, trained end to end.

    Args:
        num_points: landmarks ``N``.
        depth, width: the ResNet trunk (18 or 50; 0.25 = the paper's quarter of the channels).
        levels: trunk level read by each stage (``PAPER_LEVELS = (2, 1, 0)``; ``()`` is the bare
            baseline).
        patch_size: side of the crops in map cells (8).
        selected, hidden: :class:`CropNet` sizes (4 channels per landmark, 128).
        grad_features, grad_locations: Table 6's switches, applied to every stage's crops.

    ``forward(images)`` returns

    - ``"coords"``: the baseline's ``(B, N, 2)`` in units of the image size (as the coordinate head);
    - ``"points"``: ``(B, S + 1, N, 2)`` estimates in image pixels, ``[:, 0]`` the baseline's
      ``S_0`` and ``[:, k]`` the output of stage ``k``;
    - ``"corrections"``: ``(B, S, N, 2)`` the ``Delta S_k`` in image pixels;
    - ``"features_k"`` for ``k = 1..S``: the feature map stage ``k`` cropped (for Align Loss).
    """

    def __init__(self, num_points: int, depth: int = 18, width: float = 0.25,
                 levels: Sequence[int] = PAPER_LEVELS, patch_size: int = 8, selected: int = 4, hidden: int = 128,
                 grad_features: bool = True, grad_locations: bool = True) -> None:
        super().__init__()
        self.backbone = ResNetBackbone(depth, width)
        self.head = CoordinateHead(self.backbone.channels[-1], num_points)
        count = len(self.backbone.channels)
        if any(not -count <= level < count for level in levels):
            raise ValueError(f"levels {tuple(levels)} out of range for a trunk with {count} levels")
        self.num_points = num_points
        self.levels = tuple(int(level) % count for level in levels)
        self.strides = tuple(self.backbone.strides[level] for level in self.levels)
        self.patch_size = int(patch_size)
        self.grad_features = bool(grad_features)
        self.grad_locations = bool(grad_locations)
        self.stages = nn.ModuleList(CropNet(self.backbone.channels[level], num_points, selected, hidden)
                                    for level in self.levels)
        self.baseline_frozen = False

    @property
    def num_stages(self) -> int:
        return len(self.stages)

    def freeze_baseline(self, frozen: bool = True) -> "FineGrainedNet":
        """Fix (or release) the baseline: the trunk and its FC head get no gradient and stay in
        evaluation mode (their batch-norm statistics fixed) while the stages train.

        Training the stages on a frozen, already trained baseline first gives them estimates to
        correct that do not move under them, before everything is trained end to end. The switch is a training state, not part of the
        architecture: it is not saved, and a loaded network starts unfrozen.
        """
        self.baseline_frozen = bool(frozen)
        for parameter in (*self.backbone.parameters(), *self.head.parameters()):
            parameter.requires_grad_(not frozen)
        return self.train(self.training)

    def train(self, mode: bool = True) -> "FineGrainedNet":
        super().train(mode)
        if self.baseline_frozen:
            self.backbone.eval()
            self.head.eval()
        return self

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        features = self.backbone(images)
        coords = self.head(features)["coords"]
        height, width = images.shape[-2:]
        current = coords * coords.new_tensor([width, height])
        points, corrections, out = [current], [], {"coords": coords}
        for k, (stage, level, stride) in enumerate(zip(self.stages, self.levels, self.strides), start=1):
            patches = crop_patches(features[level], current, self.patch_size, stride,
                                   grad_features=self.grad_features, grad_locations=self.grad_locations)
            delta = stage(patches) * stride
            current = current + delta
            points.append(current)
            corrections.append(delta)
            out[f"features_{k}"] = features[level]
        out["points"] = torch.stack(points, dim=1)
        out["corrections"] = (torch.stack(corrections, dim=1) if corrections
                              else coords.new_zeros(coords.shape[0], 0, *coords.shape[1:]))
        return out

    def extra_repr(self) -> str:
        return (f"levels={self.levels}, strides={self.strides}, patch_size={self.patch_size}, "
                f"grad_features={self.grad_features}, grad_locations={self.grad_locations}"
                + (", baseline frozen" if self.baseline_frozen else ""))


def finegrained_net(num_points: int, depth: int = 18, width: float = 0.25, stages: int = 3, **options) -> FineGrainedNet:
    """The paper's model: the first ``stages`` of :data:`PAPER_LEVELS` (0 = the baseline alone)."""
    if not 0 <= stages <= len(PAPER_LEVELS):
        raise ValueError(f"stages must be between 0 and {len(PAPER_LEVELS)}, got {stages}")
    return FineGrainedNet(num_points, depth, width, levels=PAPER_LEVELS[:stages], **options)
