"""Torch datasets of synthetic faces and of non-face images, rendered on the fly.

Both are deterministic: item ``index`` of a dataset with ``seed`` is drawn from
``np.random.default_rng([seed, index])``, so it is the same in every process, epoch and
worker, and items can be read in any order.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
import torch
from torch.utils.data import Dataset

from landmarks.data.coords import bounding_boxes
from landmarks.data.layouts import conversion_matrix, get_layout
from landmarks.data.synthetic import scene
from landmarks.data.synthetic.domains import Domain, get_domain
from landmarks.data.synthetic.params import FaceParams, sample_face_params
from landmarks.data.synthetic.render import render_face

Sample = dict
Transform = Callable[[Sample], Sample]

#: The layouts :class:`SyntheticFaces` can return (the faces are drawn with 68 points).
SUPPORTED_LAYOUTS = ("300w", "aflw")
#: Kinds of :class:`NonFaceImages`.
NON_FACE_KINDS = ("texture", "shapes", "noise", "black")


def _check_index(index: int, length: int) -> int:
    index = int(index)
    if index < 0:
        index += length
    if not 0 <= index < length:
        raise IndexError(f"index {index} out of range for a dataset of length {length}")
    return index


def to_chw_tensor(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` float32 array to a contiguous ``(3, H, W)`` tensor."""
    return torch.from_numpy(np.ascontiguousarray(image.transpose(2, 0, 1)))


def supported_layout(layout) -> str:
    """The name of ``layout`` if faces can be given in it, else a ``ValueError`` saying which can."""
    try:
        name = get_layout(layout).name
    except KeyError:
        name = None
    if name not in SUPPORTED_LAYOUTS:
        raise ValueError(f"SyntheticFaces draws 300W-68 faces and can give them in layouts {SUPPORTED_LAYOUTS}, "
                         f"not {layout!r}")
    return name


class SyntheticFaces(Dataset):
    """Synthetic faces with exact landmarks, rendered in ``__getitem__``.

    Args:
        domain: a name in :data:`~landmarks.data.synthetic.DOMAINS` or a :class:`Domain`.
        size: side of the square images in pixels.
        length: number of items.
        seed: seed of the whole dataset (item ``i`` uses ``default_rng([seed, i])``).
        layout: ``"300w"`` (68 points, as drawn) or ``"aflw"`` (19 points, converted with
            :func:`landmarks.data.layouts.convert`).
        transform: callable applied last to each sample dict.

    Each sample is a dict: ``image`` float32 (3, size, size) in [0, 1]; ``landmarks`` float32
    (N, 2) in pixel coordinates (see :mod:`landmarks.data.coords`); ``box`` float32 (4,)
    ``(x0, y0, x1, y1)`` around the 68 points; ``visible`` bool (N,) (False under an occluder
    or outside the image); ``index`` int; ``domain`` str.
    """

    def __init__(self, domain: str | Domain = "studio", size: int = 128, length: int = 1000, seed: int = 0,
                 layout: str = "300w", transform: Transform | None = None) -> None:
        self.domain = get_domain(domain)
        self.layout = supported_layout(layout)
        self.size, self.length, self.seed, self.transform = int(size), int(length), int(seed), transform
        self._matrix = conversion_matrix("300w", self.layout) if self.layout != "300w" else None

    def __len__(self) -> int:
        return self.length

    def params(self, index: int) -> FaceParams:
        """The factors of item ``index`` (render them with :func:`render_face`)."""
        index = _check_index(index, self.length)
        return sample_face_params(np.random.default_rng([self.seed, index]), self.domain)

    def _in_layout(self, landmarks: torch.Tensor, visible: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Convert 68 points to the dataset's layout; a converted point is visible if all its sources are."""
        if self._matrix is None:
            return landmarks, visible
        hidden_sources = self._matrix @ (~visible).float()
        return self._matrix @ landmarks, hidden_sources == 0

    def __getitem__(self, index: int) -> Sample:
        index = _check_index(index, self.length)
        face = render_face(self.params(index), self.size)
        points = torch.from_numpy(face.landmarks)
        landmarks, visible = self._in_layout(points, torch.from_numpy(face.visible))
        sample = {
            "image": to_chw_tensor(face.image), "landmarks": landmarks, "box": torch.from_numpy(bounding_boxes(face.landmarks)),
            "visible": visible, "index": index, "domain": self.domain.name,
        }
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return (f"SyntheticFaces(domain={self.domain.name!r}, size={self.size}, length={self.length}, "
                f"seed={self.seed}, layout={self.layout!r})")


# ------------------------------------------------------------------ non-face images
def texture_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random texture: colour blotches at three scales modulated by a sine grating."""
    layers = [scene.blotches(rng, size, cells) for cells in (3, 7, 15)]
    weights = rng.dirichlet(np.ones(3)).astype(np.float32)
    field = sum(w * layer for w, layer in zip(weights, layers))
    period = float(rng.uniform(4.0, 24.0)) * size / 128
    phase = scene.ramp(size, float(rng.uniform(0, np.pi))) * float(size / (np.sqrt(2) * period) * np.pi)
    grating = 0.5 + 0.5 * np.sin(phase + float(rng.uniform(0, 2 * np.pi)))
    depth = float(rng.uniform(0.2, 0.8))
    return (field * (1.0 - depth + depth * grating[..., None])).astype(np.float32)


def shapes_image(rng: np.random.Generator, size: int) -> np.ndarray:
    """Random geometric shapes over a smooth background (the face domains' clutter, with no face)."""
    colours = rng.random((2, 3))
    return scene.to_float(scene.fresh_clutter(rng, size, colours[0], colours[1], int(rng.integers(15, 40))))


def non_face_image(kind: str, rng: np.random.Generator, size: int) -> np.ndarray:
    """One ``(S, S, 3)`` float32 image of ``kind`` in :data:`NON_FACE_KINDS`."""
    if kind == "texture":
        return texture_image(rng, size)
    if kind == "shapes":
        return shapes_image(rng, size)
    if kind == "noise":
        return rng.random((size, size, 3), dtype=np.float32)
    return np.zeros((size, size, 3), np.float32)


class NonFaceImages(Dataset):
    """Images with no face, to probe what a landmark detector does on them.

    ``kind``: ``"texture"`` (blotches and gratings), ``"shapes"`` (random geometric clutter),
    ``"noise"`` (uniform i.i.d. pixels) or ``"black"`` (all zeros). Samples hold ``image``
    float32 (3, size, size) in [0, 1], ``index`` and ``kind`` (no landmarks). Deterministic
    from ``(seed, index)`` like :class:`SyntheticFaces`.
    """

    def __init__(self, kind: str, size: int = 128, length: int = 1000, seed: int = 0,
                 transform: Transform | None = None) -> None:
        if kind not in NON_FACE_KINDS:
            raise ValueError(f"unknown non-face kind {kind!r}; known: {NON_FACE_KINDS}")
        self.kind, self.size, self.length, self.seed, self.transform = kind, int(size), int(length), int(seed), transform

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> Sample:
        index = _check_index(index, self.length)
        image = non_face_image(self.kind, np.random.default_rng([self.seed, index]), self.size)
        image = np.clip(image, 0.0, 1.0).astype(np.float32, copy=False)
        sample = {"image": to_chw_tensor(image), "index": index, "kind": self.kind}
        return self.transform(sample) if self.transform is not None else sample

    def __repr__(self) -> str:
        return f"NonFaceImages(kind={self.kind!r}, size={self.size}, length={self.length}, seed={self.seed})"


@dataclass(frozen=True)
class SyntheticData:
    """A synthetic data set by name, built at any image size:
    ``SyntheticData("studio", 2000, seed=100).build(128)`` is ``SyntheticFaces("studio", 128, 2000, 100)``.

    Experiments record it (``dataclasses.asdict``) among their settings, so a stored result names
    exactly the faces it was trained and tested on."""

    domain: str = "studio"
    length: int = 2000
    seed: int = 0

    def build(self, image_size: int) -> SyntheticFaces:
        return SyntheticFaces(self.domain, image_size, length=self.length, seed=self.seed)
