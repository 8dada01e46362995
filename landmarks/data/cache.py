"""Face crops decoded once: a cache of ``uint8`` crops in memory or in a folder.

A real photo is large (300W's median is 1.2 megapixels, some reach 13.5) and its face is small:
decoding the JPEG is what an epoch spends its time on, not the crop or the network. A
:class:`CropCache` keeps each crop after its first decoding, keyed by everything that defines it:

- the image file (resolved path, size in bytes and modification time, so an edited file is read
  again);
- the crop box in the image (``x0, y0, x1, y1``, rounded to 1e-6 pixels) and the crop's side.

In memory (``CropCache()``) it lives as long as the dataset, in each data-loading worker
separately; in a folder (``CropCache("cache/")``) it is shared by workers and runs, one ``.npy``
per crop. :class:`~landmarks.data.datasets.LandmarkDataset` caches crops with a *margin* around
the face so that augmentation (translation, rotation, scale) moves real pixels into the crop
instead of black ones.
"""
from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Callable

import numpy as np

from landmarks.data.formats import PathLike

__all__ = ["CropCache", "crop_key"]


def crop_key(source: PathLike | str, box: np.ndarray, side: int) -> str:
    """The cache key of the ``side x side`` crop of ``box`` out of image file ``source``."""
    path = Path(source)
    try:
        stat = path.stat()
        identity = f"{path.resolve()}|{stat.st_size}|{stat.st_mtime_ns}"
    except OSError:
        identity = str(source)
    corners = ",".join(f"{v:.6f}" for v in np.asarray(box, dtype=np.float64).ravel())
    return hashlib.sha1(f"{identity}|{corners}|{int(side)}".encode()).hexdigest()


class CropCache:
    """Crops by key, in memory (``folder=None``) or as ``<key>.npy`` files in ``folder``.

    :meth:`get` returns the stored crop or makes it with ``make()`` and stores it. ``hits`` and
    ``misses`` count the lookups (what the loader benchmark reports).
    """

    def __init__(self, folder: PathLike | None = None) -> None:
        self.folder = Path(folder) if folder is not None else None
        if self.folder is not None:
            self.folder.mkdir(parents=True, exist_ok=True)
        self._memory: dict[str, np.ndarray] = {}
        self.hits = self.misses = 0

    def __repr__(self) -> str:
        where = f"folder={str(self.folder)!r}" if self.folder is not None else "in memory"
        return f"CropCache({where}, {len(self)} crops)"

    def __len__(self) -> int:
        if self.folder is None:
            return len(self._memory)
        return sum(1 for _ in self.folder.glob("*.npy"))

    def get(self, key: str, make: Callable[[], np.ndarray]) -> np.ndarray:
        if self.folder is None:
            crop = self._memory.get(key)
            if crop is None:
                self.misses += 1
                crop = self._memory[key] = make()
            else:
                self.hits += 1
            return crop
        path = self.folder / f"{key}.npy"
        try:
            crop = np.load(path, allow_pickle=False)
            self.hits += 1
            return crop
        except (OSError, ValueError):  # absent, or cut short by a killed writer: make it again
            pass
        self.misses += 1
        crop = make()
        temporary = path.with_name(f"{path.stem}.{os.getpid()}.tmp.npy")
        np.save(temporary, crop, allow_pickle=False)
        os.replace(temporary, path)
        return crop
