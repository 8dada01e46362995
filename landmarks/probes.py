"""Position probes: does a detector find landmarks, or does it remember where they usually are?

The PIPNet paper trains a detector on plain black images whose labels are real landmarks; with
zero padding the network still outputs a face-shaped cloud of points, because the zeros around
every feature map tell each neuron where it sits. These tools reproduce and measure that:

* :class:`BlackFaces` - a face data set with every image replaced by a constant (black) one;
  the labels are untouched, so the best a network can do is the mean position of each landmark.
* :func:`probe` - run any model + task on images and collect the predictions, a per-image
  "response" strength and, optionally, the NME against a mean shape.
* :func:`nme_to_shapes` - the NME of every prediction against every reference shape, to show that
  a black-image model's output sits near the mean shape and far from individual training faces.
* :func:`set_padding_mode` - switch every convolution (and the stem max-pool) of a model to
  ``"zeros"``, ``"circular"``, ``"reflect"`` or ``"replicate"`` padding.
* :func:`position_sensitivity` - how much a model's maps vary with position on constant images.

What "no position signal" means with circular padding
-----------------------------------------------------
With circular padding every layer treats the feature map as a torus, so the network commutes with
circular shifts of the input by multiples of its total stride ``T`` (32 for the ResNet trunk; the
input side must be a multiple of ``T``). On a *constant* image every position then sees the same
thing, and:

* the stride-32 trunk features are spatially constant;
* a PIP head at stride >= 32 gives flat score maps: the arg-max is a tie, which ``torch.argmax``
  breaks at the first cell, so every landmark lands in the top-left cell (plus its learned
  offset). The head cannot reproduce the mean face, whatever it is trained on;
* a PIP head at stride 16 or a heatmap head upsamples with transposed convolutions, whose output
  on a constant map is periodic (period ``T`` image pixels), not flat: the network knows the
  position *modulo* ``T`` pixels, never the absolute position. Predictions fall in the first
  ``T x T`` tile;
* a coordinate head (global average pooling + linear layer) never read positions from map
  indices in the first place: its output on a constant image is a learned constant, so it can
  output the mean shape with any padding. Padding changes nothing for it in this experiment.

Training on black images with circular padding: every channel of a black batch has (almost) zero
variance, so BatchNorm in training mode divides float noise by ``sqrt(eps)`` at every layer and
the gradients overflow to NaN within a step. Keep BatchNorm in eval mode (fixed statistics) for
that run, or swap it for GroupNorm; zero padding does not have the problem (the border varies).
"""
from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from .layouts import Layout, get_layout
from .metrics import nme, normalising_distance

PADDING_MODES = ("zeros", "circular", "reflect", "replicate")

__all__ = [
    "PADDING_MODES",
    "BlackFaces",
    "PaddedMaxPool2d",
    "PositionSensitivity",
    "PriorPull",
    "ProbeResult",
    "WrappedConvTranspose2d",
    "nme_to_shapes",
    "position_sensitivity",
    "probe",
    "pull_to_mean",
    "response_strength",
    "set_padding_mode",
]


# --------------------------------------------------------------------------- data
class BlackFaces(Dataset):
    """``source``'s samples with the image replaced by a constant one (black by default).

    The landmarks, box, visibility and every other entry are those of ``source``; only
    ``"image"`` changes, to a tensor of the same shape and dtype filled with ``level``
    (``0.0`` = the paper's black images). ``layout`` is copied from ``source`` when it has one,
    so :func:`landmarks.train.evaluate` works on it unchanged.
    """

    def __init__(self, source: Dataset, level: float = 0.0) -> None:
        if not 0.0 <= level <= 1.0:
            raise ValueError(f"BlackFaces: level must be in [0, 1], got {level}")
        self.source = source
        self.level = float(level)
        if hasattr(source, "layout"):
            self.layout = source.layout

    def __len__(self) -> int:
        return len(self.source)

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = dict(self.source[index])
        sample["image"] = torch.full_like(torch.as_tensor(sample["image"]), self.level)
        return sample

    def __repr__(self) -> str:
        return f"BlackFaces({self.source!r}, level={self.level})"


# --------------------------------------------------------------------------- probing a model
@dataclass
class ProbeResult:
    """What :func:`probe` measured, all on the CPU.

    Attributes:
        predictions: ``(B, N, 2)`` decoded landmarks in pixels of the input.
        response: ``(B,)`` see :func:`response_strength` (NaN for coordinate heads).
        nme: ``(B,)`` NME of each prediction against the mean shape, normalised by the mean shape's
            inter-ocular distance (layout's ``"inter-ocular"`` norm); ``None`` without a mean shape.
        kind: ``"pip"``, ``"heatmap"`` or ``"coordinate"``, read from the output keys.
    """

    predictions: Tensor
    response: Tensor
    nme: Tensor | None
    kind: str


def output_kind(outputs: Mapping[str, Tensor]) -> str:
    """``"pip"`` (has ``"score"``), ``"heatmap"`` (``"heatmaps"``) or ``"coordinate"`` (``"coords"``)."""
    for key, kind in (("score", "pip"), ("heatmaps", "heatmap"), ("coords", "coordinate")):
        if key in outputs:
            return kind
    raise ValueError(f"probe: cannot tell the head from output keys {sorted(outputs)}")


def response_strength(outputs: Mapping[str, Tensor]) -> Tensor:
    """Per-image response ``(B,)``: how strongly the maps say "a landmark is here".

    For PIP outputs: the maximum raw (pre-sigmoid) score of each landmark's map, averaged over the
    landmarks. For heatmap outputs: the same with the heatmaps (each landmark's peak value,
    averaged over landmarks). For coordinate outputs there is no map, so NaN.
    """
    kind = output_kind(outputs)
    if kind == "coordinate":
        coords = outputs["coords"]
        return torch.full((coords.shape[0],), math.nan, dtype=coords.dtype, device=coords.device)
    maps = outputs["score" if kind == "pip" else "heatmaps"]
    return maps.flatten(2).amax(-1).mean(-1)


def _image_batches(images: Tensor | Dataset, batch_size: int):
    """Yield ``(b, 3, H, W)`` float tensors from a tensor or from a data set's ``"image"`` entries."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(images, Tensor):
        if images.ndim != 4 or images.shape[1] != 3:
            raise ValueError(f"probe: images must be (B, 3, H, W), got {tuple(images.shape)}")
        for start in range(0, len(images), batch_size):
            yield images[start:start + batch_size]
        return
    for start in range(0, len(images), batch_size):
        stop = min(start + batch_size, len(images))
        yield torch.stack([torch.as_tensor(images[i]["image"]) for i in range(start, stop)])


def _model_device(model: nn.Module) -> torch.device:
    for tensor in list(model.parameters()) + list(model.buffers()):
        return tensor.device
    return torch.device("cpu")


def probe(model: nn.Module, task: Any, images: Tensor | Dataset, mean_shape: Tensor | None = None,
          layout: str | Layout = "300w", batch_size: int = 64) -> ProbeResult:
    """Run ``model`` on ``images`` and decode with ``task``; see :class:`ProbeResult`.

    Args:
        model: any module mapping ``(B, 3, H, W)`` images in ``[0, 1]`` to a dict of raw outputs
            (``"score"``..., ``"heatmaps"`` or ``"coords"``).
        task: the head's task (anything with ``predict(outputs, batch)``; only ``batch["image"]``
            is given).
        images: ``(B, 3, H, W)`` tensor, or a data set whose samples hold ``"image"``.
        mean_shape: ``(N, 2)`` reference face in pixels; when given, ``nme`` is filled in.
        layout: layout of the points (for the inter-ocular distance of ``mean_shape``).
        batch_size: images per forward pass.

    Runs without gradients in eval mode on the model's device; the model's mode is restored.
    """
    device = _model_device(model)
    was_training = model.training
    model.eval()
    predictions, responses, kind = [], [], None
    try:
        with torch.no_grad():
            for batch in _image_batches(images, batch_size):
                batch = batch.to(device=device, dtype=torch.float32)
                outputs = model(batch)
                kind = output_kind(outputs)
                predictions.append(task.predict(outputs, {"image": batch}).float().cpu())
                responses.append(response_strength(outputs).float().cpu())
    finally:
        model.train(was_training)
    if not predictions:
        raise ValueError("probe: no images")
    pred = torch.cat(predictions)
    errors = None
    if mean_shape is not None:
        shape = torch.as_tensor(mean_shape, dtype=pred.dtype)
        if shape.shape != pred.shape[1:]:
            raise ValueError(f"probe: mean_shape {tuple(shape.shape)} does not match predictions {tuple(pred.shape)}")
        errors = nme(pred, shape.expand_as(pred), get_layout(layout), norm="inter-ocular")
    return ProbeResult(predictions=pred, response=torch.cat(responses), nme=errors, kind=kind)


def nme_to_shapes(predictions: Tensor, shapes: Tensor, layout: str | Layout = "300w") -> Tensor:
    """``(B, M)`` NMEs: entry ``[b, m]`` is prediction ``b`` scored against reference shape ``m``.

    Each entry is the mean point-to-point distance divided by reference ``m``'s inter-ocular
    distance (outer eye corners), i.e. ``metrics.nme(predictions[b], shapes[m], layout)``.
    """
    layout = get_layout(layout)
    pred = torch.as_tensor(predictions)
    refs = torch.as_tensor(shapes).to(pred.dtype)
    pred = pred.unsqueeze(0) if pred.ndim == 2 else pred
    refs = refs.unsqueeze(0) if refs.ndim == 2 else refs
    if pred.ndim != 3 or pred.shape[1:] != (layout.num_points, 2):
        raise ValueError(f"nme_to_shapes: predictions must be (B, {layout.num_points}, 2), got {tuple(pred.shape)}")
    if not torch.isfinite(pred).all():
        raise ValueError("nme_to_shapes: NaN or infinite predictions")
    iod = normalising_distance(refs, layout, "inter-ocular")  # checks the shapes too
    rows = []
    for chunk in pred.split(256):  # bounds memory at 256 * M * N distances
        distances = (chunk[:, None] - refs[None]).norm(dim=-1).mean(-1)
        rows.append(distances / iod[None, :])
    return torch.cat(rows)


# --------------------------------------------------------------------------- padding
class WrappedConvTranspose2d(nn.ConvTranspose2d):
    """A transposed convolution whose ``padding`` crop wraps around instead of dropping.

    A transposed convolution scatters each input pixel into a ``k x k`` patch of a larger
    "full" map and then crops ``padding`` pixels from each side. Zero padding simply throws the
    cropped border away, so border outputs get fewer contributions than inner ones, a position
    signal. Here the cropped border is added back on the opposite side (output index
    ``(o - padding) mod L``), which is the transpose of a circularly padded convolution: shifting
    the input by one pixel circularly shifts the output by ``stride`` pixels exactly.

    Same parameters and state dict keys as :class:`torch.nn.ConvTranspose2d`; its
    ``padding_mode`` attribute reads ``"circular"``. ``output_size`` is not supported.
    """

    def forward(self, input: Tensor, output_size: list[int] | None = None) -> Tensor:
        if output_size is not None:
            raise ValueError("WrappedConvTranspose2d does not take output_size")
        full = F.conv_transpose2d(input, self.weight, None, self.stride, 0, 0, self.groups, self.dilation)
        for dim, pad, extra in ((-2, self.padding[0], self.output_padding[0]), (-1, self.padding[1], self.output_padding[1])):
            length = full.shape[dim] - 2 * pad + extra
            if length < 1:
                raise ValueError(f"WrappedConvTranspose2d: output side {length} < 1")
            index = (torch.arange(full.shape[dim], device=full.device) - pad) % length
            shape = list(full.shape)
            shape[dim] = length
            full = full.new_zeros(shape).index_add_(full.ndim + dim, index, full)
        if self.bias is not None:
            full = full + self.bias.view(1, -1, 1, 1)
        return full


class PaddedMaxPool2d(nn.MaxPool2d):
    """Max-pooling on an input padded with ``mode`` (``F.pad``) instead of ``-inf``.

    ``nn.MaxPool2d`` pads with ``-inf``, so a border window sees fewer real values than an inner
    one: on a feature map that is not constant this leaks position just like zero padding. With
    ``mode="circular"`` the windows wrap around. (``"reflect"`` and ``"replicate"`` give the same
    result as ``-inf`` padding for the usual 3x3/stride-2/padding-1 pool, since the padded values
    are copies of values already in the window.)
    """

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1, ceil_mode: bool = False,
                 mode: str = "circular") -> None:
        super().__init__(kernel_size, stride, padding, dilation, return_indices=False, ceil_mode=ceil_mode)
        self.mode = mode

    def forward(self, input: Tensor) -> Tensor:
        ph, pw = (self.padding, self.padding) if isinstance(self.padding, int) else self.padding
        padded = F.pad(input, (pw, pw, ph, ph), mode=self.mode)
        return F.max_pool2d(padded, self.kernel_size, self.stride, 0, self.dilation, self.ceil_mode)

    def extra_repr(self) -> str:
        return super().extra_repr() + f", mode={self.mode!r}"


def _plain_max_pool(pool: nn.MaxPool2d) -> nn.MaxPool2d:
    return nn.MaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation, ceil_mode=pool.ceil_mode)


def _padded_max_pool(pool: nn.MaxPool2d, mode: str) -> PaddedMaxPool2d:
    return PaddedMaxPool2d(pool.kernel_size, pool.stride, pool.padding, pool.dilation, pool.ceil_mode, mode)


def _transposed(conv: nn.ConvTranspose2d, cls: type) -> nn.ConvTranspose2d:
    """A copy of ``conv`` as class ``cls`` sharing its parameters (same state dict keys)."""
    new = cls(conv.in_channels, conv.out_channels, conv.kernel_size, conv.stride, conv.padding,
              conv.output_padding, conv.groups, conv.bias is not None, conv.dilation,
              device=conv.weight.device, dtype=conv.weight.dtype)
    new.weight = conv.weight
    new.bias = conv.bias
    new.train(conv.training)
    return new


def _swap(module: nn.Module, mode: str) -> nn.Module | None:
    """The replacement of a layer that cannot change its padding in place, or None to keep it."""
    if isinstance(module, nn.ConvTranspose2d):
        wrapped = isinstance(module, WrappedConvTranspose2d)
        if mode == "circular" and not wrapped:
            return _transposed(module, WrappedConvTranspose2d)
        if mode != "circular" and wrapped:
            return _transposed(module, nn.ConvTranspose2d)
        return None
    if isinstance(module, nn.MaxPool2d) and not module.return_indices:
        padding = module.padding if isinstance(module.padding, tuple) else (module.padding,)
        if not any(padding):
            return None
        if mode == "zeros":
            return _plain_max_pool(module) if isinstance(module, PaddedMaxPool2d) else None
        return _padded_max_pool(module, mode)
    return None


def set_padding_mode(model: nn.Module, mode: str) -> nn.Module:
    """Switch the padding of every layer of ``model`` to ``mode`` (in place) and return it.

    * ``nn.Conv2d``: ``padding_mode`` is set to ``mode`` (PyTorch pads with ``F.pad`` for the
      modes other than ``"zeros"``; weights are untouched).
    * ``nn.ConvTranspose2d`` (the heatmap head's and the stride-16 PIP head's upsampling):
      PyTorch only supports zero padding there. For ``"circular"`` each one is replaced by a
      :class:`WrappedConvTranspose2d` sharing its weights, which wraps the cropped border around;
      for ``"reflect"`` / ``"replicate"`` there is no natural meaning, so they keep the
      zero-padding behaviour; ``"zeros"`` restores plain ones.
    * ``nn.MaxPool2d`` with padding (the ResNet stem's 3x3 pool pads with ``-inf``, which leaks
      position too): replaced by a :class:`PaddedMaxPool2d` that pads with ``mode``;
      ``"zeros"`` restores the plain ``-inf``-padded pool (after a ReLU the two agree).

    Other padding (average pools, ``F.pad`` inside ``forward``) is not touched. Replaced layers
    keep their parameters and names, so state dicts load either way. A circularly padded network
    commutes with circular shifts of the input by multiples of its total stride (the input side
    must be a multiple of it); see the module docstring for what that means for each head.
    """
    if mode not in PADDING_MODES:
        raise ValueError(f"unknown padding mode {mode!r}; choose one of {PADDING_MODES}")
    root = _swap(model, mode)
    if root is not None:
        return root
    for parent in list(model.modules()):
        for name, child in list(parent.named_children()):
            replacement = _swap(child, mode)
            if replacement is not None:
                setattr(parent, name, replacement)
    for module in model.modules():
        if isinstance(module, nn.Conv2d):
            module.padding_mode = mode
    return model


# --------------------------------------------------------------------------- position sensitivity
@dataclass
class PositionSensitivity:
    """How much a model's maps depend on position on constant images (one entry per grey level).

    Attributes:
        levels: the constant grey levels fed in (``0`` = black).
        period: ``P`` map cells: the trunk's total stride over the head's net stride (at least 1).
            A network with no absolute position signal gives maps that repeat every ``P`` cells
            on a constant image (``P = 1``: flat maps).
        roll_difference: ``(L,)`` mean absolute change of the score maps / heatmaps when rolled by
            ``P`` cells along x and along y (averaged over both), divided by the maps' mean absolute
            value (so untrained heads with tiny outputs compare with trained ones): 0 means no
            absolute position signal; zero padding typically gives 0.1-1.
        spatial_std: ``(L,)`` standard deviation of each map over positions, averaged over landmarks.
        predictions: ``(L, N, 2)`` decoded points when a task was given, else ``None``.

    Coordinate heads have no maps: their map entries are NaN.
    """

    levels: tuple[float, ...]
    period: int
    roll_difference: Tensor
    spatial_std: Tensor
    predictions: Tensor | None


def position_sensitivity(model: nn.Module, size: int = 64, device: str | torch.device | None = None,
                         levels: Sequence[float] = (0.0, 0.5, 1.0), task: Any = None) -> PositionSensitivity:
    """Feed ``size x size`` constant images at ``levels`` and measure the maps' position dependence.

    See :class:`PositionSensitivity`. The trunk's total stride is ``model.backbone.strides[-1]``
    when the model has one, else 32. Runs in eval mode without gradients (mode restored); when
    ``device`` is given the model is moved there and stays there.
    """
    if device is not None:
        model.to(device)
    device = _model_device(model)
    images = torch.stack([torch.full((3, size, size), float(level)) for level in levels]).to(device)
    was_training = model.training
    model.eval()
    try:
        with torch.no_grad():
            outputs = model(images)
            predictions = None if task is None else task.predict(outputs, {"image": images}).float().cpu()
    finally:
        model.train(was_training)
    kind = output_kind(outputs)
    trunk_stride = int(getattr(getattr(model, "backbone", None), "strides", [32])[-1])
    net_stride = getattr(model, "net_stride", None)
    period = max(1, trunk_stride // int(net_stride)) if net_stride else 1
    if kind == "coordinate":
        nan = torch.full((len(levels),), math.nan)
        return PositionSensitivity(tuple(levels), period, nan, nan.clone(), predictions)
    maps = outputs["score" if kind == "pip" else "heatmaps"].float().cpu()
    rolled_x = (maps - maps.roll(period, dims=-1)).abs().mean(dim=(1, 2, 3))
    rolled_y = (maps - maps.roll(period, dims=-2)).abs().mean(dim=(1, 2, 3))
    scale = maps.abs().mean(dim=(1, 2, 3)).clamp(min=torch.finfo(maps.dtype).tiny)
    spatial_std = maps.flatten(2).std(-1, unbiased=False).mean(-1)
    return PositionSensitivity(tuple(float(v) for v in levels), period, (rolled_x + rolled_y) / 2 / scale,
                               spatial_std, predictions)


# --------------------------------------------------------------------------- errors that follow the prior
@dataclass
class PriorPull:
    """How the large errors of a detector relate to the mean shape (see :func:`pull_to_mean`).

    Attributes:
        large: ``(B, N)`` bool, the landmarks whose error exceeds ``threshold`` inter-ocular distances.
        closer_to_mean: fraction of the large errors whose prediction is nearer the mean shape's
            point than the true landmark is (NaN when there is no large error).
        prediction_to_mean, truth_to_mean: median distances in pixels, over the large errors, from
            the prediction and from the truth to the mean shape's point.
    """

    large: Tensor
    closer_to_mean: float
    prediction_to_mean: float
    truth_to_mean: float


def pull_to_mean(predictions: Tensor, truth: Tensor, mean_shape: Tensor, layout: str | Layout = "300w",
                 threshold: float = 0.2) -> PriorPull:
    """Do a detector's large errors fall back on where landmarks usually are?

    A landmark counts as a large error when its distance to the truth exceeds ``threshold`` times the
    face's inter-ocular distance. For those, compare the prediction's and the truth's distances to the
    same landmark of ``mean_shape`` (``(N, 2)``, pixels): a detector that overfits to position puts
    its misses near the mean shape (a false positive at a plausible position), so ``closer_to_mean``
    is near 1.
    """
    pred, true = torch.as_tensor(predictions).float(), torch.as_tensor(truth).float()
    if pred.shape != true.shape or pred.ndim != 3:
        raise ValueError(f"pull_to_mean: predictions {tuple(pred.shape)} and truth {tuple(true.shape)} must be equal (B, N, 2)")
    shape = torch.as_tensor(mean_shape, dtype=pred.dtype)
    if shape.shape != pred.shape[1:]:
        raise ValueError(f"pull_to_mean: mean_shape {tuple(shape.shape)} does not match {tuple(pred.shape[1:])}")
    iod = normalising_distance(true, get_layout(layout), "inter-ocular")
    large = (pred - true).norm(dim=-1) > threshold * iod[:, None]
    to_mean_pred = (pred - shape).norm(dim=-1)[large]
    to_mean_true = (true - shape).norm(dim=-1)[large]
    if not large.any():
        return PriorPull(large, math.nan, math.nan, math.nan)
    return PriorPull(large, float((to_mean_pred < to_mean_true).float().mean()),
                     float(to_mean_pred.median()), float(to_mean_true.median()))
