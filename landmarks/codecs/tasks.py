"""Tasks: what the trainer needs to know about a head, without the head knowing about training.

A task turns a batch into targets, scores the network's raw outputs with a loss, and decodes them
into landmarks. It holds no weights. The trainer calls two methods:

- ``task.loss(outputs, batch) -> dict`` with at least ``"total"`` (a scalar to minimise);
- ``task.predict(outputs, batch) -> (B, N, 2)`` landmarks in pixels of the network input.

The input size is read from ``batch["image"]``, so one task serves any image size.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Mapping

import torch
from torch import Tensor

from landmarks.codecs.heatmaps import decode_heatmap, gaussian_heatmaps
from landmarks.data.layouts import Layout, get_layout
from landmarks.losses import (coordinate_l1, coordinate_l2, gaussian_kl, heatmap_mse, iod_normalised_l2, laplace_kl, pip_loss,
                     softargmax_loss)
from landmarks.codecs.softargmax import softargmax_2d, spatial_softmax
from landmarks.codecs.pip import decode_pip, mean_face, neighbour_indices, pip_targets

Outputs = Mapping[str, Tensor]
Batch = Mapping[str, Tensor]


def _image_size(batch: Batch) -> tuple[int, int]:
    height, width = batch["image"].shape[-2:]
    return int(height), int(width)


@dataclass
class PIPTask:
    """PIPNet: score map and in-cell offsets (:cite:p:`jin2021pipnet`, eq. 1-4) plus neighbour regression.

    Args:
        net_stride: image pixels per cell of the head's output maps.
        neighbours: ``(N, nb)`` neighbour indices (:func:`landmarks.codecs.pip.neighbour_indices`), or
            ``None`` for plain PIP regression.
        alpha, beta: weights of the score and offset terms of :func:`landmarks.losses.pip_loss`.
        merge: at inference, average each landmark's own prediction with its neighbours' votes.
    """

    net_stride: int
    neighbours: Tensor | None = None
    alpha: float = 10.0
    beta: float = 1.0
    merge: bool = True

    @classmethod
    def from_training_shapes(cls, landmarks: Tensor, image_size: int | tuple[int, int], net_stride: int,
                             num_neighbours: int = 10, **kwargs) -> "PIPTask":
        """Neighbours from the mean face of ``(M, N, 2)`` training landmarks."""
        face = mean_face(landmarks, image_size=image_size)
        return cls(net_stride, neighbour_indices(face, num_neighbours) if num_neighbours else None, **kwargs)

    def _neighbours(self, device: torch.device) -> Tensor | None:
        return None if self.neighbours is None else self.neighbours.to(device)

    def loss(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        landmarks = batch["landmarks"]
        targets = pip_targets(landmarks, _image_size(batch), self.net_stride, self._neighbours(landmarks.device))
        return pip_loss(outputs, targets, self.alpha, self.beta)

    def predict(self, outputs: Outputs, batch: Batch) -> Tensor:
        return decode_pip(outputs, _image_size(batch), self.net_stride, self._neighbours(outputs["score"].device),
                          merge=self.merge)


@dataclass
class HeatmapTask:
    """Heatmap regression ("Map Net"): Gaussian targets at ``net_stride``, MSE, arg-max decoding."""

    net_stride: int
    sigma: float | None = None
    shift: float = 0.25

    def loss(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        target = gaussian_heatmaps(batch["landmarks"], _image_size(batch), self.net_stride, self.sigma)
        total = heatmap_mse(outputs["heatmaps"], target)
        return {"heatmap": total, "total": total}

    def predict(self, outputs: Outputs, batch: Batch) -> Tensor:
        return decode_heatmap(outputs["heatmaps"], self.net_stride, shift=self.shift)


_COORDINATE_LOSSES = ("l1", "l2", "iod-l2")


@dataclass
class CoordinateTask:
    """Direct coordinate regression; the head predicts positions in units of the image size.

    ``loss`` is ``"l1"``, ``"l2"`` (in those units) or ``"iod-l2"`` (mean point distance over the
    inter-ocular distance, the fine-grained paper's baseline loss, which needs ``layout``).
    """

    loss_name: str = "l1"
    layout: Layout | str | None = None

    def __post_init__(self) -> None:
        if self.loss_name not in _COORDINATE_LOSSES:
            raise ValueError(f"unknown coordinate loss {self.loss_name!r}; choose one of {_COORDINATE_LOSSES}")
        if self.loss_name == "iod-l2" and self.layout is None:
            raise ValueError("the 'iod-l2' loss needs a layout (for the inter-ocular distance)")

    def loss(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        height, width = _image_size(batch)
        scale = outputs["coords"].new_tensor([width, height])
        pred, target = outputs["coords"], batch["landmarks"] / scale
        if self.loss_name == "l1":
            total = coordinate_l1(pred, target)
        elif self.loss_name == "l2":
            total = coordinate_l2(pred, target)
        else:
            total = iod_normalised_l2(pred * scale, batch["landmarks"], get_layout(self.layout))
        return {self.loss_name: total, "total": total}

    def predict(self, outputs: Outputs, batch: Batch) -> Tensor:
        height, width = _image_size(batch)
        return outputs["coords"] * outputs["coords"].new_tensor([width, height])


SOFTARGMAX_LOSSES = ("softargmax-l1", "softargmax-l2", "laplace-kl", "gaussian-kl")


@dataclass
class SoftargmaxTask:
    """Heatmaps read as probability maps (:cite:p:`robinson2019laplace`, Sect. 3.1): softargmax decoding and a
    coordinate or distribution loss.

    Works with any model that returns ``{"heatmaps": (B, N, h, w)}`` raw maps: the Recombinator
    (:mod:`landmarks.models.recombinator`, stride 1) and the book's Map Nets (``heatmap_net``).

    Args:
        loss: ``"softargmax-l1"`` / ``"softargmax-l2"`` (:func:`landmarks.losses.softargmax_loss`,
            the paper's baseline), ``"laplace-kl"`` (:func:`landmarks.losses.laplace_kl`) or
            ``"gaussian-kl"`` (:func:`landmarks.losses.gaussian_kl`).
        temperature: of the spatial softmax (``softmax(logits / temperature)``).
        gt_scale: scale of the ground-truth distribution in image pixels (KL losses only).
        net_stride: image pixels per map cell; ``None`` reads it from the batch (image height over
            map height), so one task serves models of any stride.
        min_scale: floor of the measured scale in pixels (KL losses only).
    """

    loss_name: str = "laplace-kl"
    temperature: float = 1.0
    gt_scale: float = 1.0
    net_stride: float | None = None
    min_scale: float = 1e-3

    def __post_init__(self) -> None:
        if self.loss_name not in SOFTARGMAX_LOSSES:
            raise ValueError(f"unknown softargmax loss {self.loss_name!r}; choose one of {SOFTARGMAX_LOSSES}")
        if not self.temperature > 0 or not self.gt_scale > 0:
            raise ValueError(f"temperature and gt_scale must be positive, got {self.temperature}, {self.gt_scale}")

    @property
    def spread_kind(self) -> str:
        """``"gaussian"`` for the Gaussian KL, ``"laplace"`` otherwise (what the target maps look like)."""
        return "gaussian" if self.loss_name == "gaussian-kl" else "laplace"

    def stride(self, outputs: Outputs, batch: Batch) -> float:
        if self.net_stride is not None:
            return float(self.net_stride)
        height, width = _image_size(batch)
        h, w = outputs["heatmaps"].shape[-2:]
        if height / h != width / w:
            raise ValueError(f"maps {h}x{w} do not have one stride for images {height}x{width}")
        return height / h

    def loss(self, outputs: Outputs, batch: Batch) -> dict[str, Tensor]:
        maps, stride = outputs["heatmaps"], self.stride(outputs, batch)
        landmarks = batch["landmarks"]
        if self.loss_name.startswith("softargmax"):
            total = softargmax_loss(maps, landmarks, stride, self.temperature, self.loss_name[-2:])
        elif self.loss_name == "laplace-kl":
            total = laplace_kl(maps, landmarks, self.gt_scale, stride, self.temperature, self.min_scale)
        else:
            total = gaussian_kl(maps, landmarks, self.gt_scale, stride, self.temperature, self.min_scale)
        return {self.loss_name: total, "total": total}

    def predict(self, outputs: Outputs, batch: Batch) -> Tensor:
        return softargmax_2d(outputs["heatmaps"], self.temperature, self.stride(outputs, batch))

    def probabilities(self, outputs: Outputs) -> Tensor:
        """The ``(B, N, h, w)`` probability maps the loss and the decoder see."""
        return spatial_softmax(outputs["heatmaps"], self.temperature)
