"""Data augmentation for landmark samples, built on :mod:`torchvision.transforms.v2`.

A *sample* is a dict with

- ``"image"``: a ``(C, H, W)`` tensor, float in ``[0, 1]`` or ``uint8``;
- ``"landmarks"``: ``(N, 2)`` float ``(x, y)`` in the continuous pixel coordinates of
  :mod:`landmarks.data.coords` (pixel ``j`` spans ``[j, j + 1]``, its centre is ``j + 0.5``);
- ``"visible"`` (optional): ``(N,)`` bool;
- ``"box"`` (optional): ``(4,)`` face box ``(x_min, y_min, x_max, y_max)`` in the same coordinates.

Any other key is copied through untouched. Every transform takes a probability ``p`` and returns
a *new* dict (the input is never modified). Geometric transforms move the image with
:func:`torchvision.transforms.v2.functional.affine` / ``horizontal_flip`` and the points with the same
functions applied to :class:`torchvision.tv_tensors.KeyPoints`, so image and points cannot drift apart.

Points are never clamped to the canvas: a landmark pushed out of the image keeps its true
position (and its ``visible`` flag; use the position to decide what "out of frame" means).
torchvision 0.23 clamped key points inside its geometric kernels (pytorch/vision issue 9223);
PR 9236 removed that, and 0.29 does not clamp. :func:`check_keypoints_unclamped` probes the
installed version once and raises rather than silently corrupting labels. The box is moved as its four corners (as key points) and
re-fitted as the axis-aligned box around them, which avoids ``BoundingBoxes`` clamping too.

Randomness comes from the ``generator`` given to a transform, or from the global torch RNG when
it is ``None``, so ``torch.manual_seed`` makes a pipeline reproducible.
"""
from __future__ import annotations

import functools
import math
from typing import Callable, Sequence

import cv2
import torch
from torch import Tensor
from torch.utils.data import Dataset
from torchvision import tv_tensors
from torchvision.transforms.v2 import InterpolationMode
from torchvision.transforms.v2 import functional as F

from landmarks.data.coords import from_pixel_index, to_pixel_index
from landmarks.data.layouts import Layout, get_layout

Range = float | tuple[float, float]
PointOp = Callable[[tv_tensors.KeyPoints], Tensor]

__all__ = [
    "SampleTransform", "Compose", "RandomTranslate", "RandomRotate", "RandomScale", "RandomAffine", "RandomHorizontalFlip",
    "RandomOcclusion", "RandomGaussianBlur", "RandomGrayscale", "RandomColorJitter", "pipnet_augmentation",
    "geometric_augmentation", "real_data_augmentation", "Augmented",
    "check_keypoints_unclamped",
]


# --------------------------------------------------------------------------- helpers
@functools.lru_cache(maxsize=None)
def check_keypoints_unclamped() -> None:
    """Raise ``RuntimeError`` if this torchvision clamps ``KeyPoints`` to the canvas (0.23 did)."""
    probe = tv_tensors.KeyPoints(torch.tensor([[-5.0, 25.0]]), canvas_size=(10, 10))
    moved = F.affine(probe, angle=0.0, translate=[1.0, 0.0], scale=1.0, shear=[0.0, 0.0])
    flipped = F.horizontal_flip(probe)
    if not (torch.allclose(moved.as_subclass(Tensor), torch.tensor([[-4.0, 25.0]]))
            and torch.allclose(flipped.as_subclass(Tensor), torch.tensor([[14.0, 25.0]]))):
        raise RuntimeError("this torchvision clamps KeyPoints to the image; landmarks would move. "
                           "Install a newer torchvision (0.29 is known to work).")


def _span(value: Range, name: str) -> tuple[float, float]:
    """``v`` -> ``(-|v|, |v|)``; a ``(lo, hi)`` pair is checked and kept."""
    lo, hi = (float(value[0]), float(value[1])) if isinstance(value, (tuple, list)) else (-abs(float(value)), abs(float(value)))
    if lo > hi:
        raise ValueError(f"{name}: empty range ({lo}, {hi})")
    return lo, hi


def _move_points(points: Tensor, canvas: tuple[int, int], op: PointOp) -> Tensor:
    moved = op(tv_tensors.KeyPoints(points, canvas_size=canvas))
    return moved.as_subclass(Tensor).to(points.dtype).reshape(points.shape)


def _move_box(box: Tensor, canvas: tuple[int, int], op: PointOp) -> Tensor:
    """Move a ``(..., 4)`` xyxy box by its corners and return the axis-aligned box around them."""
    x0, y0, x1, y1 = box.unbind(-1)
    corners = torch.stack([torch.stack(c, -1) for c in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], -2)
    moved = _move_points(corners, canvas, op)
    return torch.cat([moved.amin(-2), moved.amax(-2)], -1)


def _geometric(sample: dict, image_op: Callable[[Tensor], Tensor], point_op: PointOp) -> dict:
    """Apply one spatial mapping to the image, the landmarks and the box of ``sample``."""
    check_keypoints_unclamped()
    image = sample["image"]
    canvas = (int(image.shape[-2]), int(image.shape[-1]))
    sample["image"] = image_op(tv_tensors.Image(image)).as_subclass(Tensor)
    sample["landmarks"] = _move_points(sample["landmarks"], canvas, point_op)
    if sample.get("box") is not None:
        sample["box"] = _move_box(torch.as_tensor(sample["box"]), canvas, point_op)
    return sample


def _affine(sample: dict, angle: float = 0.0, translate: Sequence[float] = (0.0, 0.0),
            scale: float = 1.0, fill: float = 0.0) -> dict:
    """Rotate (degrees, *clockwise* on screen, as ``F.affine`` takes it) and scale about the image centre, then translate."""
    args = dict(angle=angle, translate=[float(t) for t in translate], scale=scale, shear=[0.0, 0.0])
    return _geometric(
        sample,
        lambda img: F.affine(img, **args, interpolation=InterpolationMode.BILINEAR, fill=fill),
        lambda pts: F.affine(pts, **args),
    )


def _warp_like_points(sample: dict, point_op: PointOp, fill: float) -> dict:
    """Move the points with ``point_op`` (torchvision's key-point kernel) and warp the image with
    the affine map that ``point_op`` *is*, read off three probe points, by one ``cv2.warpAffine``.

    Image and points then move by the same map by construction (what :func:`_geometric` gets from
    torchvision's image and key-point kernels agreeing), and the warp is about ten times faster on
    a CPU than ``F.affine`` on a tensor.
    """
    from landmarks.data.datasets import opencv_matrix

    check_keypoints_unclamped()
    image = sample["image"]
    height, width = int(image.shape[-2]), int(image.shape[-1])
    probes = torch.tensor([[0.0, 0.0], [1.0, 0.0], [0.0, 1.0]], dtype=torch.float64)
    moved = _move_points(probes, (height, width), point_op).double()
    matrix = torch.stack([moved[1] - moved[0], moved[2] - moved[0], moved[0]], dim=1).numpy()
    pixels = image.permute(1, 2, 0).contiguous().numpy()
    scale = _scale_for(image)
    warped = cv2.warpAffine(pixels, opencv_matrix(matrix), (width, height), flags=cv2.INTER_LINEAR,
                            borderMode=cv2.BORDER_CONSTANT, borderValue=(fill * scale,) * 4)
    sample["image"] = torch.from_numpy(warped.reshape(height, width, -1)).permute(2, 0, 1).contiguous()
    linear, shift = torch.from_numpy(matrix[:, :2]), torch.from_numpy(matrix[:, 2])

    def move(points: Tensor) -> Tensor:  # the same affine map, applied directly
        return (points.double() @ linear.T + shift).to(points.dtype)

    sample["landmarks"] = move(sample["landmarks"])
    if sample.get("box") is not None:
        x0, y0, x1, y1 = torch.as_tensor(sample["box"]).unbind(-1)
        corners = move(torch.stack([torch.stack(c, -1) for c in ((x0, y0), (x1, y0), (x0, y1), (x1, y1))], -2))
        sample["box"] = torch.cat([corners.amin(-2), corners.amax(-2)], -1)
    return sample


def _flip_points(points: tv_tensors.KeyPoints) -> Tensor:
    """torchvision flips key points as pixel indices (x' = W - 1 - x); ours need x' = W - x."""
    as_index = tv_tensors.KeyPoints(to_pixel_index(points.as_subclass(Tensor)), canvas_size=points.canvas_size)
    return from_pixel_index(F.horizontal_flip(as_index).as_subclass(Tensor))


def _scale_for(image: Tensor) -> float:
    """What 1.0 (white) is for this image dtype."""
    return 1.0 if image.is_floating_point() else float(torch.iinfo(image.dtype).max)


# --------------------------------------------------------------------------- base classes
class SampleTransform:
    """Base class: applies :meth:`apply` with probability ``p`` to a copy of the sample."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"p must lie in [0, 1], got {p}")
        self.p = p
        self.generator = generator

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        if float(torch.rand((), generator=self.generator)) >= self.p:
            return out
        return self.apply(out)

    def apply(self, sample: dict) -> dict:  # pragma: no cover - abstract
        raise NotImplementedError

    def uniform(self, lo: float, hi: float) -> float:
        return lo + (hi - lo) * float(torch.rand((), generator=self.generator))

    def __repr__(self) -> str:
        shown = {k: (v.name if isinstance(v, Layout) else v) for k, v in vars(self).items() if k != "generator"}
        args = ", ".join(f"{k}={v!r}" for k, v in shown.items())
        return f"{type(self).__name__}({args})"


class Compose:
    """Apply transforms one after the other."""

    def __init__(self, transforms: Sequence[Callable[[dict], dict]]) -> None:
        self.transforms = list(transforms)

    def __call__(self, sample: dict) -> dict:
        out = dict(sample)
        for transform in self.transforms:
            out = transform(out)
        return out

    def __repr__(self) -> str:
        body = "".join(f"\n    {t!r}," for t in self.transforms)
        return f"Compose([{body}\n])"


# --------------------------------------------------------------------------- geometric
class RandomTranslate(SampleTransform):
    """Shift by ``dx, dy`` drawn uniformly from ``[-max_shift, max_shift]`` (sub-pixel amounts allowed).

    ``max_shift`` is one value or ``(max_x, max_y)``; a value below 1 is a fraction of the image
    width (height), 1 or more is in pixels. Uncovered border pixels get ``fill``.
    """

    def __init__(self, max_shift: float | tuple[float, float], p: float = 0.5, fill: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        self.max_shift = tuple(max_shift) if isinstance(max_shift, (tuple, list)) else (max_shift, max_shift)
        self.fill = fill

    def apply(self, sample: dict) -> dict:
        height, width = sample["image"].shape[-2:]
        limits = [m * size if 0 < m < 1 else m for m, size in zip(self.max_shift, (width, height))]
        shift = [self.uniform(-abs(m), abs(m)) for m in limits]
        return _affine(sample, translate=shift, fill=self.fill)


class RandomRotate(SampleTransform):
    """Rotate about the image centre by an angle (degrees) from ``[-degrees, degrees]`` or ``(lo, hi)``.

    Positive angles turn the picture counter-clockwise as displayed, like ``F.rotate`` (``F.affine``,
    used underneath, counts clockwise).
    """

    def __init__(self, degrees: Range, p: float = 0.5, fill: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        self.degrees = _span(degrees, "degrees")
        self.fill = fill

    def apply(self, sample: dict) -> dict:
        return _affine(sample, angle=-self.uniform(*self.degrees), fill=self.fill)


class RandomScale(SampleTransform):
    """Zoom about the image centre by a factor from ``range`` (the canvas size is kept)."""

    def __init__(self, range: tuple[float, float] = (0.9, 1.1), p: float = 0.5, fill: float = 0.0,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        if not 0 < range[0] <= range[1]:
            raise ValueError(f"scale range must satisfy 0 < lo <= hi, got {range}")
        self.range = (float(range[0]), float(range[1]))
        self.fill = fill

    def apply(self, sample: dict) -> dict:
        return _affine(sample, scale=self.uniform(*self.range), fill=self.fill)


class RandomAffine(SampleTransform):
    """Translation, rotation and scale drawn independently, applied in one warp.

    Each part happens with its own probability (``p_translate``, ``p_rotate``, ``p_scale``) and the
    parts that happen are composed into one ``F.affine`` call: the image is resampled once, which
    is both faster and sharper than one warp per part. Amounts as :class:`RandomTranslate`,
    :class:`RandomRotate` and :class:`RandomScale`; ``p`` is the probability of considering any.
    """

    def __init__(self, max_shift: float | tuple[float, float] = 0.0, degrees: Range = 0.0,
                 scale: tuple[float, float] = (1.0, 1.0), p_translate: float = 0.5, p_rotate: float = 0.5,
                 p_scale: float = 0.5, p: float = 1.0, fill: float = 0.0, generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        self.max_shift = tuple(max_shift) if isinstance(max_shift, (tuple, list)) else (max_shift, max_shift)
        self.degrees = _span(degrees, "degrees")
        if not 0 < scale[0] <= scale[1]:
            raise ValueError(f"scale range must satisfy 0 < lo <= hi, got {scale}")
        self.scale = (float(scale[0]), float(scale[1]))
        self.chances = (p_translate, p_rotate, p_scale)
        self.fill = fill

    def apply(self, sample: dict) -> dict:
        height, width = sample["image"].shape[-2:]
        moves = [self.uniform(0.0, 1.0) < chance for chance in self.chances]
        if not any(moves):
            return sample
        limits = [m * size if 0 < m < 1 else m for m, size in zip(self.max_shift, (width, height))]
        shift = [self.uniform(-abs(m), abs(m)) for m in limits] if moves[0] else [0.0, 0.0]
        angle = -self.uniform(*self.degrees) if moves[1] else 0.0
        scale = self.uniform(*self.scale) if moves[2] else 1.0
        args = dict(angle=angle, translate=shift, scale=scale, shear=[0.0, 0.0])
        if sample["image"].device.type != "cpu" or sample["image"].ndim != 3:
            return _affine(sample, angle=angle, translate=shift, scale=scale, fill=self.fill)
        return _warp_like_points(sample, lambda pts: F.affine(pts, **args), self.fill)


class RandomHorizontalFlip(SampleTransform):
    """Mirror image and points (``x -> W - x``), then relabel with ``layout.flip_permutation``.

    After the flip, point ``i`` is the mirror of old point ``perm[i]``: on 300W the new image-left
    outer eye corner 36 is where the old 45 was, mirrored. ``visible`` is permuted alike.
    """

    def __init__(self, layout: Layout, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        self.layout = layout

    def apply(self, sample: dict) -> dict:
        n = sample["landmarks"].shape[-2]
        if n != self.layout.num_points:
            raise ValueError(f"flip: {n} landmarks, layout {self.layout.name!r} has {self.layout.num_points}")
        sample = _geometric(sample, F.horizontal_flip, _flip_points)
        perm = list(self.layout.flip_permutation)
        sample["landmarks"] = sample["landmarks"][..., perm, :]
        if sample.get("visible") is not None:
            sample["visible"] = sample["visible"][..., perm]
        return sample


# --------------------------------------------------------------------------- photometric
class RandomOcclusion(SampleTransform):
    """Paint a rectangle whose sides are up to ``max_fraction`` of the image sides.

    ``fill`` is a value or per-channel values in ``[0, 1]`` (scaled to 255 for ``uint8``); ``None``
    draws a random colour. Landmarks inside the rectangle are marked not visible when the sample
    has a ``visible`` entry (no entry is added otherwise). Uses ``torchvision`` ``F.erase``.
    """

    def __init__(self, max_fraction: float = 0.4, p: float = 0.5, fill: float | Sequence[float] | None = None,
                 generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        if not 0 < max_fraction <= 1:
            raise ValueError(f"max_fraction must lie in (0, 1], got {max_fraction}")
        self.max_fraction = max_fraction
        self.fill = fill

    def _rectangle(self, height: int, width: int) -> tuple[int, int, int, int]:
        h = max(1, int(self.uniform(0, self.max_fraction) * height))
        w = max(1, int(self.uniform(0, self.max_fraction) * width))
        top = min(int(self.uniform(0, height - h + 1)), height - h)
        left = min(int(self.uniform(0, width - w + 1)), width - w)
        return top, left, h, w

    def apply(self, sample: dict) -> dict:
        image = sample["image"]
        channels, height, width = image.shape[-3:]
        top, left, h, w = self._rectangle(height, width)
        colour = torch.rand(channels, generator=self.generator) if self.fill is None else self.fill
        value = (torch.as_tensor(colour, dtype=torch.float32) * _scale_for(image)).expand(channels)
        value = value.to(image.dtype).reshape(channels, 1, 1)
        sample["image"] = F.erase(image, top, left, h, w, value)
        if sample.get("visible") is not None:
            x, y = sample["landmarks"].unbind(-1)
            covered = (x >= left) & (x < left + w) & (y >= top) & (y < top + h)
            sample["visible"] = sample["visible"].masked_fill(covered, False)
        return sample


class RandomGaussianBlur(SampleTransform):
    """Gaussian blur with standard deviation drawn from ``[0, max_radius]`` pixels.

    "Radius" follows PIL's ``ImageFilter.GaussianBlur``, whose radius is the standard deviation.
    """

    def __init__(self, max_radius: float = 5.0, p: float = 0.3, generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        self.max_radius = max_radius

    def apply(self, sample: dict) -> dict:
        sigma = self.uniform(0.0, self.max_radius)
        image = sample["image"]
        if sigma < 0.05:  # a kernel this narrow leaves the image unchanged
            return sample
        largest = 2 * (min(image.shape[-2:]) - 1) + 1  # reflect padding must stay inside the image
        size = min(2 * math.ceil(3 * sigma) + 1, largest)
        if image.device.type == "cpu" and image.ndim == 3:
            # OpenCV's separable filter, with the same kernel and reflect padding (10x faster on a CPU)
            channels_last = image.permute(1, 2, 0).contiguous().numpy()
            blurred = cv2.GaussianBlur(channels_last, (size, size), sigmaX=sigma, sigmaY=sigma,
                                       borderType=cv2.BORDER_REFLECT_101)
            sample["image"] = torch.from_numpy(blurred.reshape(channels_last.shape)).permute(2, 0, 1).contiguous()
        else:
            sample["image"] = F.gaussian_blur(image, kernel_size=[size, size], sigma=[sigma, sigma])
        return sample


class RandomGrayscale(SampleTransform):
    """Replace the colours by their luma, keeping the number of channels."""

    def __init__(self, p: float = 0.2, generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)

    def apply(self, sample: dict) -> dict:
        image = sample["image"]
        sample["image"] = F.rgb_to_grayscale(image, num_output_channels=image.shape[-3])
        return sample


class RandomColorJitter(SampleTransform):
    """Brightness, contrast and saturation factors from ``[1 - v, 1 + v]``, hue shift from ``[-hue, hue]``.

    The four adjustments run in a random order, like ``torchvision.transforms.v2.ColorJitter``,
    but their randomness comes from this transform's generator.
    """

    def __init__(self, brightness: float = 0.0, contrast: float = 0.0, saturation: float = 0.0,
                 hue: float = 0.0, p: float = 0.5, generator: torch.Generator | None = None) -> None:
        super().__init__(p, generator)
        if not 0 <= hue <= 0.5:
            raise ValueError(f"hue must lie in [0, 0.5], got {hue}")
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue

    def apply(self, sample: dict) -> dict:
        steps = [
            (self.brightness, F.adjust_brightness),
            (self.contrast, F.adjust_contrast),
            (self.saturation, F.adjust_saturation),
        ]
        image = sample["image"]
        for k in torch.randperm(4, generator=self.generator).tolist():
            if k == 3:
                image = F.adjust_hue(image, self.uniform(-self.hue, self.hue)) if self.hue > 0 else image
            elif steps[k][0] > 0:
                strength, adjust = steps[k]
                image = adjust(image, max(0.0, 1.0 + self.uniform(-strength, strength)))
        sample["image"] = image
        return sample


# --------------------------------------------------------------------------- presets
def geometric_augmentation(layout: Layout | str, size: int = 256) -> Compose:
    """The geometric part of :func:`pipnet_augmentation`: translate +-30 px (scaled from 256 px to
    ``size``), flip with the layout's permutation, rotate +-30 degrees, each with probability 0.5.
    It is what makes a detector roughly equivariant to the shifts of translation-based distillation."""
    return Compose([RandomTranslate(30 * size / 256, p=0.5), RandomHorizontalFlip(get_layout(layout), p=0.5),
                    RandomRotate(30, p=0.5)])


class Augmented(Dataset):
    """``dataset``'s samples passed through ``transform`` on every access (a training-time view).

    Keeps ``len`` and the ``layout`` attribute; every other entry of a sample (``"pseudo"``,
    ``"index"``, ...) passes through the transforms unchanged.
    """

    def __init__(self, dataset: Dataset, transform: Callable[[dict], dict]) -> None:
        self.dataset, self.transform = dataset, transform
        if hasattr(dataset, "layout"):
            self.layout = dataset.layout

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]

    def __getitem__(self, index: int) -> dict:
        return self.transform(self.dataset[index])


def pipnet_augmentation(layout: Layout, size: int | tuple[int, int] = 256, grayscale_p: float = 0.2,
                        generator: torch.Generator | None = None) -> Compose:
    """The PIPNet training augmentation, in the order of its public release.

    Translate +-30 px (p 0.5), occluding rectangle up to 40 % of each side (102 px at 256, p 0.5),
    flip with the layout's permutation (p 0.5), rotate +-30 degrees (p 0.5), Gaussian blur up to
    radius 5 (p 0.3), grayscale (``grayscale_p``, 0.2 in the release). Pixel amounts are given at
    256 x 256 and scaled to ``size`` (an int or ``(height, width)``).
    """
    height, width = (size, size) if isinstance(size, int) else size
    g = generator
    return Compose([
        RandomTranslate((30 * width / 256, 30 * height / 256), p=0.5, generator=g),
        RandomOcclusion(0.4, p=0.5, generator=g),
        RandomHorizontalFlip(layout, p=0.5, generator=g),
        RandomRotate(30, p=0.5, generator=g),
        RandomGaussianBlur(5 * min(height, width) / 256, p=0.3, generator=g),
        RandomGrayscale(p=grayscale_p, generator=g),
    ])


def real_data_augmentation(layout: Layout | str, size: int | tuple[int, int] = 256, grayscale_p: float = 0.2,
                           scale: tuple[float, float] = (0.9, 1.1), generator: torch.Generator | None = None) -> Compose:
    """PIPNet's augmentation for training on real photos, with the three geometric draws in one warp.

    Occluding rectangle up to 40 % of each side (p 0.5), flip with the layout's permutation (p 0.5),
    then one :class:`RandomAffine`: translate +-30 px (p 0.5), rotate +-30 degrees (p 0.5) and scale
    by ``scale`` (p 0.5); Gaussian blur up to radius 5 (p 0.3), grayscale (``grayscale_p``). The
    release's order (:func:`pipnet_augmentation`) translates before the occluder and rotates after
    the flip; here the occluder moves with the face, which changes nothing a model can learn from.
    Pixel amounts are given at 256 x 256 and scaled to ``size``. Meant for a
    :class:`~landmarks.data.datasets.LandmarkDataset` with a ``margin``, so that the warp moves real
    pixels, not black ones, into the crop.
    """
    height, width = (size, size) if isinstance(size, int) else size
    g = generator
    return Compose([
        RandomOcclusion(0.4, p=0.5, generator=g),
        RandomHorizontalFlip(get_layout(layout), p=0.5, generator=g),
        RandomAffine((30 * width / 256, 30 * height / 256), 30, scale, generator=g),
        RandomGaussianBlur(5 * min(height, width) / 256, p=0.3, generator=g),
        RandomGrayscale(p=grayscale_p, generator=g),
    ])
