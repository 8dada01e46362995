"""Position probes: does a detector find landmarks, or does it remember where they usually are?

The PIPNet paper trains a detector on plain black images whose labels are real landmarks; with
zero padding the network still outputs a face-shaped cloud of points, because the zeros around
every feature map tell each neuron where it sits. These tools reproduce and measure that:

* :class:`~landmarks.data.views.BlackFaces` - a face data set with every image replaced by a
  constant (black) one; the labels are untouched, so the best a network can do is the mean
  position of each landmark.
* :func:`probe` - run any detector on images and collect the predictions, a per-image
  "response" strength and, optionally, the NME against a mean shape.
* :func:`nme_to_shapes` - the NME of every prediction against every reference shape, to show that
  a black-image model's output sits near the mean shape and far from individual training faces.
* :func:`landmarks.pipnet.padding.set_padding_mode` - switch every convolution (and the stem
  max-pool) of a network to ``"zeros"``, ``"circular"``, ``"reflect"`` or ``"replicate"`` padding.
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
from typing import TYPE_CHECKING

import torch
from torch import Tensor
from torch.utils.data import Dataset

from landmarks.data.layouts import Layout, get_layout
from landmarks.evaluation.loop import predictions
from landmarks.evaluation.metrics import nme, normalising_distance

if TYPE_CHECKING:
    from landmarks.detector import Detector

__all__ = ["PositionSensitivity", "PriorPull", "ProbeResult", "nme_to_shapes", "output_kind", "position_sensitivity",
           "probe", "pull_to_mean", "response_strength"]


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


def probe(detector: "Detector", images: Tensor | Dataset, mean_shape: Tensor | None = None,
          layout: str | Layout = "300w", batch_size: int = 64) -> ProbeResult:
    """Run ``detector`` on ``images``; see :class:`ProbeResult`.

    Args:
        detector: any :class:`~landmarks.detector.Detector` (PIP, heatmap or coordinate head).
        images: ``(B, 3, H, W)`` tensor, or a data set whose samples hold ``"image"``.
        mean_shape: ``(N, 2)`` reference face in pixels; when given, ``nme`` is filled in.
        layout: layout of the points (for the inter-ocular distance of ``mean_shape``).
        batch_size: images per forward pass.

    Runs through :func:`landmarks.evaluation.loop.predictions` (no gradients, evaluation mode, the
    detector's device; the mode is restored).
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if isinstance(images, Tensor) and (images.ndim != 4 or images.shape[1] != 3):
        raise ValueError(f"probe: images must be (B, 3, H, W), got {tuple(images.shape)}")
    source = images.float() if isinstance(images, Tensor) else images
    predicted, responses, kind = [], [], None
    for _, outputs, points in predictions(detector, source, batch_size, outputs=True):
        kind = output_kind(outputs)
        predicted.append(points.cpu())
        responses.append(response_strength(outputs).float().cpu())
    if not predicted:
        raise ValueError("probe: no images")
    pred = torch.cat(predicted)
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
        predictions: ``(L, N, 2)`` decoded points.

    Coordinate heads have no maps: their map entries are NaN.
    """

    levels: tuple[float, ...]
    period: int
    roll_difference: Tensor
    spatial_std: Tensor
    predictions: Tensor


def position_sensitivity(detector: "Detector", size: int = 64, levels: Sequence[float] = (0.0, 0.5, 1.0)
                         ) -> PositionSensitivity:
    """Feed ``size x size`` constant images at ``levels`` and measure the maps' position dependence.

    See :class:`PositionSensitivity`. The trunk's total stride is ``model.backbone.strides[-1]``
    when the network has one, else 32. Runs on the detector's device through
    :func:`landmarks.evaluation.loop.predictions`.
    """
    model = detector.model
    images = torch.stack([torch.full((3, size, size), float(level)) for level in levels])
    ((_, outputs, points),) = list(predictions(detector, images, batch_size=len(images), outputs=True))
    points = points.cpu()
    kind = output_kind(outputs)
    trunk_stride = int(getattr(getattr(model, "backbone", None), "strides", [32])[-1])
    net_stride = getattr(model, "net_stride", None)
    period = max(1, trunk_stride // int(net_stride)) if net_stride else 1
    if kind == "coordinate":
        nan = torch.full((len(levels),), math.nan)
        return PositionSensitivity(tuple(levels), period, nan, nan.clone(), points)
    maps = outputs["score" if kind == "pip" else "heatmaps"].float().cpu()
    rolled_x = (maps - maps.roll(period, dims=-1)).abs().mean(dim=(1, 2, 3))
    rolled_y = (maps - maps.roll(period, dims=-2)).abs().mean(dim=(1, 2, 3))
    scale = maps.abs().mean(dim=(1, 2, 3)).clamp(min=torch.finfo(maps.dtype).tiny)
    spatial_std = maps.flatten(2).std(-1, unbiased=False).mean(-1)
    return PositionSensitivity(tuple(float(v) for v in levels), period, (rolled_x + rolled_y) / 2 / scale,
                               spatial_std, points)


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
