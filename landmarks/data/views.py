"""Dataset views: other datasets' samples, changed in one way each.

- :class:`BlackFaces`: the images replaced by a constant one, the labels kept (the PIPNet paper's
  black-image experiment, :mod:`landmarks.pipnet.position`);
- :class:`MemoryDataset`: every sample rendered once and kept in memory.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

__all__ = ["BlackFaces", "MemoryDataset"]


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
