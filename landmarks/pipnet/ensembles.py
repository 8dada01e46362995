"""Transform ensembles: predict on transformed copies of a batch and map every prediction back.

PIPNet's data distillation (:cite:p:`jin2021pipnet`) makes a pseudo-label from a detector's
predictions on *shifted* copies of an unlabelled face: 20 and 30 px right, left, down and up at
256 px, each prediction shifted back, the eight averaged. The paper's ablation (Table 7) compares
translations with no ensemble, a flip ensemble and a rotation ensemble. This module holds those
views and the ensemble:

- :class:`Identity`, :class:`Translation`, :class:`HorizontalFlip`, :class:`Rotation`: how a batch
  of images is changed (:meth:`~Transform.images`) and how points move forward
  (:meth:`~Transform.points`) and back (:meth:`~Transform.inverse_points`, an exact inverse on
  points up to float rounding);
- :func:`translation_offsets` and the sets :func:`no_transforms`, :func:`translations`,
  :func:`flips`, :func:`rotations`; :func:`ablation_transforms` picks one by name;
- :func:`ensemble_predict`: every copy of every image goes through the detector in one (or a few
  chunked) batched calls of :func:`landmarks.evaluation.loop.predictions`.

Images are warped by :mod:`torchvision.transforms.v2.functional`, the engine of
:mod:`landmarks.data.transforms`, applied to the whole ``(B, C, H, W)`` batch at once: a translation
by whole pixels is sampled nearest-neighbour (an exact copy of pixels), by fractions of a pixel
bilinearly; a rotation bilinearly (a quarter turn of a square image is an exact ``rot90``); a flip
mirrors the columns. Uncovered pixels are zero (black), without the fill blending the augmentation
uses (``fill=None``), so a pixel half outside the frame keeps half its value.

Pixel convention (:mod:`landmarks.data.coords`): an image of width ``W`` covers ``[0, W]``, pixel
``j`` is ``[j, j + 1]`` with its centre at ``j + 0.5``. Shifting by ``(dx, dy)`` moves what was at
``(x, y)`` to ``(x + dx, y + dy)``. A flip maps ``x`` to ``W - x`` and relabels the points with the
layout's ``flip_permutation``. A rotation by ``angle`` degrees turns the image counter-clockwise
*as seen on screen* (torchvision's sense) about its centre ``(W / 2, H / 2)``.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

import torch
from torch import Tensor
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from landmarks.data.layouts import Layout, get_layout
from landmarks.detector import Detector
from landmarks.evaluation.loop import predictions

__all__ = [
    "Transform", "Identity", "Translation", "HorizontalFlip", "Rotation", "translation_offsets",
    "no_transforms", "translations", "flips", "rotations", "ablation_transforms", "ensemble_predict",
]

PredictFn = Callable[[Tensor], Tensor]


def _check_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError(f"images: expected a (B, C, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    return images


class Transform(Protocol):
    """One view of a batch for the ensemble: how to make it and how to map its points back.

    ``size`` is ``(height, width)`` of the images; points are ``(..., N, 2)`` in pixels;
    ``inverse_points(points(p, size), size) == p`` up to float rounding.
    """

    name: str

    def images(self, images: Tensor) -> Tensor: ...

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor: ...

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor: ...


@dataclass(frozen=True)
class Identity:
    """The untouched image."""

    name: str = "identity"

    def images(self, images: Tensor) -> Tensor:
        return images

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return points

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return points


@dataclass(frozen=True)
class Translation:
    """Shift by ``(dx, dy)`` pixels (positive: right, down); points move by the same amount.

    Whole-pixel shifts copy pixels exactly (nearest-neighbour sampling of a grid that falls on pixel
    centres); fractional ones are bilinear, which keeps an image's total brightness and moves its
    intensity centroid exactly with the shift as long as nothing leaves the frame.
    """

    dx: float
    dy: float
    name: str = "translation"

    def __post_init__(self) -> None:
        if not (math.isfinite(self.dx) and math.isfinite(self.dy)):
            raise ValueError(f"translation: (dx, dy) must be finite, got ({self.dx}, {self.dy})")

    def images(self, images: Tensor) -> Tensor:
        whole = float(self.dx).is_integer() and float(self.dy).is_integer()
        mode = InterpolationMode.NEAREST if whole else InterpolationMode.BILINEAR
        return F.affine(_check_images(images), angle=0.0, translate=[float(self.dx), float(self.dy)], scale=1.0,
                        shear=[0.0, 0.0], interpolation=mode)

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return points + points.new_tensor([self.dx, self.dy])

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return points - points.new_tensor([self.dx, self.dy])


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right: ``x -> W - x``, relabelled with ``permutation`` (``flipped[i] = original[perm[i]]``)."""

    permutation: tuple[int, ...]
    name: str = "flip"

    def __post_init__(self) -> None:
        if sorted(self.permutation) != list(range(len(self.permutation))):
            raise ValueError(f"flip permutation {self.permutation} is not a permutation of 0..N-1")

    @classmethod
    def for_layout(cls, layout: str | Layout) -> HorizontalFlip:
        return cls(tuple(get_layout(layout).flip_permutation))

    def images(self, images: Tensor) -> Tensor:
        return F.horizontal_flip(_check_images(images))

    def _check(self, points: Tensor) -> None:
        if points.shape[-2] != len(self.permutation):
            raise ValueError(f"flip: {points.shape[-2]} points, but the permutation has {len(self.permutation)}")

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        self._check(points)
        mirrored = torch.stack([size[1] - points[..., 0], points[..., 1]], -1)
        return mirrored[..., list(self.permutation), :]

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        self._check(points)
        inverse = torch.argsort(torch.tensor(self.permutation)).tolist()
        relabelled = points[..., inverse, :]
        return torch.stack([size[1] - relabelled[..., 0], relabelled[..., 1]], -1)


@dataclass(frozen=True)
class Rotation:
    """Rotate by ``angle`` degrees counter-clockwise on screen about the image centre (bilinear)."""

    angle: float
    name: str = "rotation"

    def _turn(self, points: Tensor, size: tuple[int, int], angle: float) -> Tensor:
        h, w = size
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        u, v = points[..., 0] - w / 2, points[..., 1] - h / 2
        # y grows downwards, so a counter-clockwise turn on screen sends +x towards -y.
        return torch.stack([w / 2 + cos * u + sin * v, h / 2 - sin * u + cos * v], -1)

    def images(self, images: Tensor) -> Tensor:
        return F.rotate(_check_images(images), float(self.angle), interpolation=InterpolationMode.BILINEAR)

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return self._turn(points, size, self.angle)

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return self._turn(points, size, -self.angle)


# --------------------------------------------------------------------------- the paper's sets
def translation_offsets(image_size: int, base: int = 256, shifts: Sequence[float] = (20, 30)
                        ) -> list[tuple[float, float]]:
    """The paper's eight shifts, scaled from a ``base`` px input to ``image_size``.

    For each shift ``s`` (in pixels at ``base``): right, left, down, up, i.e. ``(s', 0), (-s', 0),
    (0, s'), (0, -s')`` with ``s' = s * image_size / base``. At 256 px: 20 and 30 px; at 128 px: 10
    and 15 px; at 64 px: 5 and 7.5 px (a fractional shift, resampled bilinearly).
    """
    if image_size <= 0 or base <= 0:
        raise ValueError(f"image_size and base must be positive, got {image_size} and {base}")
    scale = image_size / base
    out: list[tuple[float, float]] = []
    for s in shifts:
        d = float(s) * scale
        out += [(d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d)]
    return out


def no_transforms() -> list[Transform]:
    """No ensemble: the plain prediction (plain self-training)."""
    return [Identity()]


def translations(image_size: int, base: int = 256, shifts: Sequence[float] = (20, 30)) -> list[Transform]:
    """The paper's eight translations (the unshifted image is not among them, as in the paper)."""
    return [Translation(dx, dy) for dx, dy in translation_offsets(image_size, base, shifts)]


def flips(layout: str | Layout) -> list[Transform]:
    """The image and its mirror image (the flip ensemble of data distillation)."""
    return [Identity(), HorizontalFlip.for_layout(layout)]


def rotations(angles: Sequence[float] = (-20, -10, 10, 20)) -> list[Transform]:
    """Rotations about the centre by ``angles`` degrees (the paper does not give its angles)."""
    return [Rotation(float(a)) for a in angles]


def ablation_transforms(name: str, image_size: int, layout: str | Layout = "300w") -> list[Transform]:
    """The transform set of the paper's ablation (Table 7) by name: none, flip, rotation, translation."""
    options: dict[str, Callable[[], list[Transform]]] = {
        "none": no_transforms, "flip": lambda: flips(layout), "rotation": rotations,
        "translation": lambda: translations(image_size)}
    if name not in options:
        raise ValueError(f"unknown transform set {name!r}; choose one of {sorted(options)}")
    return options[name]()


# --------------------------------------------------------------------------- the ensemble
def ensemble_predict(predictor: Detector | PredictFn, images: Tensor, transforms: Sequence[Transform],
                     chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Predict on every transformed copy of ``images`` and average the predictions mapped back.

    Args:
        predictor: a :class:`~landmarks.detector.Detector` (run through
            :func:`landmarks.evaluation.loop.predictions`: evaluation mode, no gradients, its mode
            given back) or any function ``(K, C, H, W) -> (K, N, 2)`` landmarks in pixels of its input.
        images: ``(B, C, H, W)`` input crops.
        transforms: the ``T`` views (:class:`Transform`).
        chunk_size: at most this many copies per call (default: all ``T * B`` at once).

    Returns ``(mean, all)``: ``mean`` ``(B, N, 2)`` and ``all`` ``(T, B, N, 2)``, every prediction in
    the coordinates of the original images, on the device of ``images``.
    """
    images = _check_images(images)
    if not transforms:
        raise ValueError("ensemble_predict: no transforms given (use no_transforms() for the plain prediction)")
    b = images.shape[0]
    size = (int(images.shape[-2]), int(images.shape[-1]))
    copies = torch.cat([t.images(images) for t in transforms])  # (T * B, C, H, W), transform-major
    step = chunk_size or copies.shape[0]
    if isinstance(predictor, Detector):
        points = [p.to(images.device) for _, _, p in predictions(predictor, copies, batch_size=step)]
    else:
        points = [predictor(copies[i:i + step]) for i in range(0, copies.shape[0], step)]
    per_view = torch.cat(points).float().reshape(len(transforms), b, *points[0].shape[1:])
    back = torch.stack([t.inverse_points(p, size) for t, p in zip(transforms, per_view)])
    return back.mean(0), back
