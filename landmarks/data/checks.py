"""Checks of a dataset's files and labels, made when the dataset is built, before any training.

A bad item found at the first validation (or never) costs a training run and is reported by its
place in a batch; found here, it is reported by its file. :class:`~landmarks.data.datasets.LandmarkDataset`
runs :func:`check_faces` when it is built. It refuses, naming the files:

- *undecodable* images: a file no decoder reads (a text file named ``.jpg``, an unknown format);
- *truncated* images: a JPEG without its end-of-image marker or a PNG without its ``IEND`` chunk
  whose pixels the decoder cannot complete. OpenCV would fill the missing rows with grey and print
  libjpeg's ``Premature end of JPEG file`` without a file name; a grey half face is a wrong label,
  so here it is an error (:func:`truncation`, also used by :func:`~landmarks.data.datasets.read_image`);
- *degenerate* labels: a zero or non-finite normalising distance (two eye corners at one point),
  which would make every NME of that face infinite;
- points *far outside* the image: further outside than :data:`OUTSIDE_TOLERANCE` x the face's size
  (its landmark box's longer side). Faces cut by the image border legitimately have a few points
  just outside it; points a face-size away are labels of another image or in other units.

Reading an image's size costs its header only (Pillow opens files lazily), plus the last bytes of a
JPEG or PNG for the end marker; only files without a proper end are decoded in full to decide.
"""
from __future__ import annotations

import io
from pathlib import Path
from typing import Sequence

import numpy as np

__all__ = ["OUTSIDE_TOLERANCE", "truncation", "image_size", "check_faces", "names_of"]

#: How far outside the image a point may lie, in units of its face's size (landmark box's longer side).
OUTSIDE_TOLERANCE = 0.5
_JPEG, _PNG = b"\xff\xd8\xff", b"\x89PNG\r\n\x1a\n"
_SHOWN = 5


def names_of(names: Sequence[str], indices: Sequence[int]) -> str:
    """``"a.jpg, b.jpg and 3 more"``: the first few of ``names[indices]``."""
    shown = ", ".join(str(names[k]) for k in indices[:_SHOWN])
    return shown + (f" and {len(indices) - _SHOWN} more" if len(indices) > _SHOWN else "")


def _decodes_fully(data: bytes) -> bool:
    """Whether Pillow decodes every pixel of ``data`` (a file with bytes after its end marker does)."""
    from PIL import Image

    try:
        with Image.open(io.BytesIO(data)) as image:
            image.load()
    except Exception:  # Pillow's truncation and decoder errors are OSError, SyntaxError, ValueError
        return False
    return True


def _ends_properly(head: bytes, tail: bytes) -> bool | None:
    """True when a JPEG ends with its end-of-image marker or a PNG with its ``IEND`` chunk; None for
    other formats (which have no end marker to look for)."""
    tail = tail.rstrip(b"\x00")  # some writers pad a JPEG after its marker
    if head.startswith(_JPEG):
        return tail.endswith(b"\xff\xd9")
    if head.startswith(_PNG):
        return tail.endswith(b"IEND\xaeB`\x82")
    return None


def truncation(data: bytes) -> str | None:
    """What is wrong when ``data`` is a JPEG or PNG cut short (``None`` when it is whole or another format)."""
    if _ends_properly(data[:8], data[-64:]) is not False or _decodes_fully(data):
        return None
    kind = "JPEG" if data.startswith(_JPEG) else "PNG"
    return f"truncated {kind} file ({len(data)} bytes, no end marker; its last rows would be grey)"


def image_size(path: str | Path) -> tuple[int, int]:
    """``(width, height)`` of an image file from its header; ``ValueError`` naming the file when it
    cannot be decoded or is truncated (see :func:`truncation`)."""
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    try:
        with open(path, "rb") as handle:
            head = handle.read(16)
            handle.seek(0, io.SEEK_END)
            length = handle.tell()
            handle.seek(max(0, length - 64))
            tail = handle.read()
        if _ends_properly(head, tail) is False:
            problem = truncation(path.read_bytes())
            if problem:
                raise ValueError(f"cannot read image {path}: {problem}")
        with Image.open(path) as image:
            return image.size
    except UnidentifiedImageError:
        pass  # a format only OpenCV knows: decode it to be sure
    except OSError as error:
        raise ValueError(f"cannot read image {path}: {error}") from error
    from landmarks.data.datasets import read_image

    height, width = read_image(path).shape[:2]
    return width, height


def check_faces(landmarks: np.ndarray, boxes: np.ndarray, sizes: Sequence[tuple[int, int] | None],
                layout, names: Sequence[str]) -> None:
    """``ValueError`` naming the files whose labels are degenerate or lie far outside their image.

    Args:
        landmarks: ``(K, N, 2)`` points in continuous pixel coordinates; boxes: ``(K, 4)`` face boxes.
        sizes: ``(width, height)`` of each image (``None``: unknown, not checked for points outside).
        layout: the :class:`~landmarks.data.layouts.Layout`; its benchmark normalisation is checked.
        names: the K files (or labels) the errors name.
    """
    import torch

    from landmarks.evaluation.metrics import normalising_distance

    if len(landmarks) == 0:
        return
    points = torch.from_numpy(np.asarray(landmarks, dtype=np.float64))
    distances = normalising_distance(points, layout, boxes=torch.from_numpy(np.asarray(boxes, np.float64)),
                                     check=False)
    bad = (~torch.isfinite(distances) | (distances <= 0)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{layout.default_norm} normalising distance is zero for {len(bad)} face"
                         f"{'s' if len(bad) > 1 else ''} (their NME would be infinite): {names_of(names, bad)}")
    low, high = landmarks.min(axis=1), landmarks.max(axis=1)
    face = np.maximum(high - low, 1.0).max(axis=1)
    far = []
    for k, size in enumerate(sizes):
        if size is None:
            continue
        outside = np.maximum(np.maximum(-low[k], high[k] - np.asarray(size, np.float64)), 0.0).max()
        if outside > OUTSIDE_TOLERANCE * face[k]:
            far.append(k)
    if far:
        first = far[0]
        raise ValueError(f"landmarks far outside the image in {len(far)} file{'s' if len(far) > 1 else ''}: "
                         f"{names_of(names, far)} (e.g. {names[first]}: points span x {low[first][0]:.0f}.."
                         f"{high[first][0]:.0f}, y {low[first][1]:.0f}..{high[first][1]:.0f} in an image of "
                         f"{sizes[first][0]} x {sizes[first][1]}); are the labels of these images, in pixels?")
