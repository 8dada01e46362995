"""Dataset views: other datasets' samples, changed in one way each.

- :class:`BlackFaces`: the images replaced by a constant one, the labels kept (the PIPNet paper's
  black-image experiment, :mod:`landmarks.pipnet.position`);
- :class:`MemoryDataset`: every sample rendered once and kept in memory;
- the roles of samples in self-training (:cite:p:`jin2021pipnet`, :mod:`landmarks.pipnet.distillation`):
  :class:`TestSet` (labelled test faces, flagged so that :func:`is_test_set` finds them through any
  wrapping and no pseudo-label is ever made from them), :class:`Unlabelled` (the labels removed),
  :class:`Labelled` and :class:`PseudoLabelled` (one training form, flagged ``"pseudo"``, so the
  two can be concatenated and collated).

Every view keeps the ``layout`` attribute of the dataset it wraps.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from landmarks.data.coords import bounding_boxes

__all__ = ["BlackFaces", "MemoryDataset", "TestSet", "Unlabelled", "Labelled", "PseudoLabelled", "is_test_set",
           "refuse_test_set"]


class BlackFaces(Dataset):
    """``source``'s samples with the image replaced by a constant one (black by default).

    The landmarks, box, visibility and every other entry are those of ``source``; only
    ``"image"`` changes, to a tensor of the same shape and dtype filled with ``level``
    (``0.0`` = the paper's black images). ``layout`` is copied from ``source`` when it has one,
    so :func:`landmarks.evaluation.loop.evaluate` works on it unchanged.
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


@dataclass
class MemoryDataset(Dataset):
    """Every sample of ``source`` rendered once and kept in memory (images, landmarks, boxes).

    Synthetic faces are drawn on the fly; training several small models on the same faces renders
    them once instead of once per epoch and model. ``layout`` is copied from the source.
    """

    source: Dataset
    keys: tuple[str, ...] = ("image", "landmarks", "box")
    _store: dict[str, Tensor] = field(init=False, repr=False)

    def __post_init__(self) -> None:
        samples = [self.source[i] for i in range(len(self.source))]
        missing = [key for key in self.keys if key not in samples[0]]
        if missing:
            raise ValueError(f"MemoryDataset: the samples have no {missing}")
        self._store = {key: torch.stack([torch.as_tensor(s[key]) for s in samples]) for key in self.keys}
        self.layout = getattr(self.source, "layout", None)

    def __len__(self) -> int:
        return len(next(iter(self._store.values())))

    def __getitem__(self, index: int) -> dict[str, Tensor]:
        return {key: value[index] for key, value in self._store.items()}


# --------------------------------------------------------------------------- self-training roles
class _View(Dataset):
    """A view of another dataset: same length, same layout, samples changed by ``__getitem__``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        layout = getattr(dataset, "layout", None)
        if layout is not None:
            self.layout = layout

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


class TestSet(_View):
    """A labelled test set: its samples unchanged, usable for evaluation, refused as unlabelled data."""

    is_test = True
    __test__ = False  # not a pytest test class

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[index]

    def __repr__(self) -> str:
        return f"TestSet({self.dataset!r})"


def is_test_set(dataset: Dataset) -> bool:
    """True if ``dataset`` or anything it wraps (``Subset``, ``ConcatDataset``, the views of this
    module) is flagged ``is_test``."""
    if getattr(dataset, "is_test", False):
        return True
    inner = getattr(dataset, "dataset", None)
    if inner is not None and is_test_set(inner):
        return True
    return any(is_test_set(d) for d in getattr(dataset, "datasets", ()))


def refuse_test_set(dataset: Dataset) -> None:
    """Raise ``ValueError`` if ``dataset`` is (or wraps) a test set: pseudo-labels are never made
    from labelled test images."""
    if is_test_set(dataset):
        raise ValueError("pseudo-labels are never made from labelled test images: this dataset is (or wraps) "
                         "a test set")


class Unlabelled(_View):
    """Images of ``dataset`` with their labels removed (only ``"image"`` and ``"index"`` remain).

    The original stays reachable as ``.dataset`` (to measure pseudo-labels on synthetic faces,
    whose true landmarks are known). A test set is refused.
    """

    def __init__(self, dataset: Dataset) -> None:
        refuse_test_set(dataset)
        super().__init__(dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.dataset[index]["image"], "index": index}


class Labelled(_View):
    """Manually labelled training samples in the common training form, flagged ``"pseudo": False``.

    Samples keep ``"image"``, ``"landmarks"``, ``"box"`` (around the landmarks if absent),
    ``"visible"`` (all True if absent) and gain ``"pseudo"``, so they can be concatenated with
    :class:`PseudoLabelled` samples and collated.
    """

    pseudo = False

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        landmarks = sample["landmarks"]
        return {"image": sample["image"], "landmarks": landmarks,
                "box": sample["box"] if "box" in sample else bounding_boxes(landmarks),
                "visible": sample.get("visible", torch.ones(landmarks.shape[0], dtype=torch.bool)),
                "pseudo": self.pseudo}


class PseudoLabelled(Labelled):
    """The images of an unlabelled ``dataset`` with ``landmarks`` ``(M, N, 2)`` as their labels.

    Samples: ``"image"``, ``"landmarks"`` (the pseudo-label), ``"box"`` (around it), ``"visible"``
    (all True) and ``"pseudo": True``. Labels the dataset may carry are ignored; a test set is
    refused.
    """

    pseudo = True

    def __init__(self, dataset: Dataset, landmarks: Tensor) -> None:
        refuse_test_set(dataset)
        if landmarks.ndim != 3 or landmarks.shape[-1] != 2 or landmarks.shape[0] != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"pseudo-labels: expected ({len(dataset)}, N, 2), got {tuple(landmarks.shape)}")  # type: ignore[arg-type]
        super().__init__(dataset)
        self.landmarks = landmarks.detach().float().cpu()

    def __getitem__(self, index: int) -> dict[str, Any]:
        points = self.landmarks[index]
        return {"image": self.dataset[index]["image"], "landmarks": points, "box": bounding_boxes(points),
                "visible": torch.ones(points.shape[0], dtype=torch.bool), "pseudo": True}
