"""Any folder of annotated faces: images with a ``.pts`` beside each, or one CSV / JSON of points.

::

    faces = load_folder("my_faces/")                          # every image with a .pts beside it
    faces = load_folder("my_faces/points.csv", layout=5,      # a 5-point layout of your own
                        flip_pairs=[(0, 1), (3, 4)], eye_corners=(0, 1))

Three ways to store the points, found by what ``source`` is:

==================  ==========================================================================
``source``          what is read
==================  ==========================================================================
a folder            every ``*.pts`` below it (any depth), with the image of the same name
                    beside it (``.jpg``, ``.jpeg``, ``.png``, ``.bmp``, any letter case)
a ``.csv`` file     a header row, then one face per row: the image path, then ``x0, y0, x1, y1,
                    ...`` (2 N numbers; optionally four more columns named ``box_x0, box_y0,
                    box_x1, box_y1``)
a ``.json`` file    a list of ``{"image": path, "landmarks": [[x, y], ...], "box": [...]}``
                    (``"box"`` optional), the same list under a ``"faces"`` key, or a mapping
                    ``{path: [[x, y], ...]}``
==================  ==========================================================================

Image paths in a CSV or JSON file are relative to the file's folder.

Coordinates are converted once, on reading, to the library's continuous convention
(:mod:`landmarks.data.coords`: pixel ``j`` covers ``[j, j + 1)``). ``convention`` says what the
file stores: ``"one-based"`` (MATLAB, the ``.pts`` of 300W: pixel centres at 1, 2, ...),
``"pixel-index"`` (0-based pixel centres at 0, 1, ..., what OpenCV, dlib and most Python tools
write) or ``"continuous"`` (ours). The default is ``"one-based"`` for ``.pts`` and
``"pixel-index"`` for CSV and JSON.

The layout is named (``"300w"``, ``"wflw"``, ``"cofw"``, ``"aflw"``), given as a
:class:`~landmarks.data.layouts.Layout`, or declared by its point count with optional flip pairs
(for flip augmentation and test-time flip) and the two eye corners (for the inter-ocular NME;
without them the NME divides by the box diagonal). With no layout at all, a 68-, 98-, 29- or
19-point file gets the benchmark layout of that count. The mean face and PIPNet's neighbours are
computed from whatever points are loaded (:func:`landmarks.detector.with_neighbours`).
"""
from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any, Callable, Sequence

import numpy as np

from landmarks.data.coords import from_one_based, from_pixel_index
from landmarks.data.datasets import IMAGE_SUFFIXES, LandmarkDataset, image_beside
from landmarks.data.formats import PathLike, read_pts
from landmarks.data.layouts import LAYOUTS, Layout, custom_layout, get_layout

__all__ = ["CONVENTIONS", "IMAGE_SUFFIXES", "load_folder", "folder_layout", "image_beside", "split_every"]

CONVENTIONS = ("one-based", "pixel-index", "continuous")
_BENCHMARK_BY_COUNT = {layout.num_points: layout for layout in LAYOUTS.values()}
_CONVERTERS: dict[str, Callable[[np.ndarray], np.ndarray]] = {
    "one-based": from_one_based, "pixel-index": from_pixel_index, "continuous": lambda points: points,
}


def folder_layout(num_points: int, layout: Layout | str | int | None = None, flip_pairs: Sequence[tuple[int, int]] = (),
                  eye_corners: tuple[int, int] | None = None) -> Layout:
    """The layout of a folder whose files hold ``num_points`` points (see the module text)."""
    if isinstance(layout, (Layout, str)):
        chosen = get_layout(layout)
        if flip_pairs or eye_corners:
            raise ValueError(f"flip_pairs and eye_corners declare a layout of your own; layout {chosen.name!r} has its own")
    elif layout is None and not flip_pairs and eye_corners is None and num_points in _BENCHMARK_BY_COUNT:
        chosen = _BENCHMARK_BY_COUNT[num_points]
    else:
        count = num_points if layout is None else int(layout)
        chosen = custom_layout(count, flip_pairs=flip_pairs, outer_eye_corners=eye_corners,
                               default_norm="inter-ocular" if eye_corners is not None else "box-diagonal")
    if chosen.num_points != num_points:
        raise ValueError(f"layout {chosen.name!r} has {chosen.num_points} points but the files hold {num_points}")
    return chosen


def load_folder(source: PathLike, layout: Layout | str | int | None = None, *, flip_pairs: Sequence[tuple[int, int]] = (),
                eye_corners: tuple[int, int] | None = None, convention: str | None = None, size: int = 256,
                box_scale: float = 1.1, transform: Callable[[dict], dict] | None = None, margin: float = 0.0,
                cache: Any = None, check: bool = True) -> LandmarkDataset:
    """Faces of a folder (``.pts`` beside each image) or of one CSV / JSON file (see the module text).

    ``size``, ``box_scale``, ``transform``, ``margin``, ``cache`` and ``check`` are those of
    :class:`~landmarks.data.datasets.LandmarkDataset`; without a box in the file, the crop is built
    from the landmarks' bounding box. Items are in sorted path order (a CSV / JSON keeps its order).
    """
    source = Path(source)
    if not source.exists():
        raise FileNotFoundError(f"faces not found: {source} (a folder of images with .pts files, or a .csv / .json)")
    if source.is_dir():
        images, points, boxes = _read_pts_tree(source)
        default = "one-based"
    elif source.suffix.lower() == ".csv":
        images, points, boxes = _read_csv(source)
        default = "pixel-index"
    elif source.suffix.lower() == ".json":
        images, points, boxes = _read_json(source)
        default = "pixel-index"
    else:
        raise ValueError(f"{source}: expected a folder, a .csv or a .json file")
    convention = convention or default
    if convention not in CONVENTIONS:
        raise ValueError(f"unknown convention {convention!r}; choose one of {CONVENTIONS}")
    convert = _CONVERTERS[convention]
    chosen = folder_layout(points[0].shape[0], layout, flip_pairs, eye_corners)
    landmarks = np.stack([convert(p) for p in points])
    has_boxes = all(b is not None for b in boxes)
    box_array = None
    if has_boxes:
        corners = np.stack(boxes).reshape(-1, 2, 2)
        box_array = convert(corners).reshape(-1, 4)
    return LandmarkDataset(images, landmarks, chosen, boxes=box_array, size=size, box_scale=box_scale,
                           transform=transform, crop_from="box" if has_boxes else "landmarks",
                           margin=margin, cache=cache, check=check)


def split_every(count: int, every: int = 10) -> tuple[list[int], list[int]]:
    """A deterministic hold-out: item ``k`` is held out when ``k % every == every - 1``.
    Returns ``(kept, held_out)`` index lists (the CLI's validation split of a single folder)."""
    if every < 2:
        raise ValueError(f"every must be >= 2, got {every}")
    held = [k for k in range(count) if k % every == every - 1]
    return [k for k in range(count) if k % every != every - 1], held


# ------------------------------------------------------------------------------------ readers
def _check_counts(points: list[np.ndarray], names: list[str], source: Path) -> None:
    if not points:
        raise FileNotFoundError(f"{source}: no faces found")
    first = points[0].shape[0]
    for array, name in zip(points, names):
        if array.shape[0] != first:
            raise ValueError(f"{name}: {array.shape[0]} points, but {names[0]} has {first}: "
                             "every face of a folder needs the same layout")


def _read_pts_tree(root: Path) -> tuple[list[Path], list[np.ndarray], list[None]]:
    annotations = sorted(p for p in root.rglob("*") if p.suffix.lower() == ".pts" and p.is_file())
    if not annotations:
        raise FileNotFoundError(f"{root}: no .pts files below this folder (give a .csv or .json file instead?)")
    images = [image_beside(pts) for pts in annotations]
    points = [read_pts(pts) for pts in annotations]
    _check_counts(points, [str(p) for p in annotations], root)
    return images, points, [None] * len(images)


_BOX_COLUMNS = ("box_x0", "box_y0", "box_x1", "box_y1")


def _read_csv(path: Path) -> tuple[list[Path], list[np.ndarray], list[np.ndarray | None]]:
    with open(path, newline="", encoding="utf-8-sig") as handle:
        rows = [row for row in csv.reader(handle) if any(field.strip() for field in row)]
    if len(rows) < 2:
        raise ValueError(f"{path}: expected a header row and at least one face")
    header = [field.strip().lower() for field in rows[0]]
    box_at = [header.index(c) for c in _BOX_COLUMNS] if all(c in header for c in _BOX_COLUMNS) else None
    point_columns = [k for k in range(1, len(header)) if box_at is None or k not in box_at]
    if len(point_columns) % 2 or not point_columns:
        raise ValueError(f"{path}, line 1: after the image column expected x, y pairs, got {len(point_columns)} columns")
    images, points, boxes = [], [], []
    for number, row in enumerate(rows[1:], 2):
        if len(row) != len(header):
            raise ValueError(f"{path}, line {number}: {len(row)} columns, the header has {len(header)}")
        values = _numbers([row[k] for k in point_columns], path, number)
        images.append(_relative_image(path, row[0].strip(), number))
        points.append(values.reshape(-1, 2))
        boxes.append(_numbers([row[k] for k in box_at], path, number) if box_at is not None else None)
    _check_counts(points, [f"{path}, line {k}" for k in range(2, len(rows) + 1)], path)
    return images, points, boxes


def _read_json(path: Path) -> tuple[list[Path], list[np.ndarray], list[np.ndarray | None]]:
    try:
        content = json.loads(path.read_text(encoding="utf-8-sig"))
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise ValueError(f"{path}: not a JSON file ({error})") from None
    if isinstance(content, dict) and "faces" in content:
        content = content["faces"]
    if isinstance(content, dict):
        content = [{"image": key, "landmarks": value} for key, value in content.items()]
    if not isinstance(content, list):
        raise ValueError(f"{path}: expected a list of faces, {{'faces': [...]}} or {{image: points}}")
    images, points, boxes = [], [], []
    for k, face in enumerate(content):
        where = f"face {k}"
        if not isinstance(face, dict) or "image" not in face or "landmarks" not in face:
            raise ValueError(f"{path}: {where} needs an 'image' and 'landmarks'")
        array = _numbers(np.asarray(face["landmarks"], dtype=object).ravel().tolist(), path, where)
        if np.shape(face["landmarks"])[-1:] != (2,):
            raise ValueError(f"{path}: {where}: landmarks must be a list of [x, y] pairs")
        images.append(_relative_image(path, str(face["image"]), where))
        points.append(array.reshape(-1, 2))
        box = face.get("box")
        if box is not None and np.shape(box) != (4,):
            raise ValueError(f"{path}: {where}: box must be [x0, y0, x1, y1]")
        boxes.append(_numbers(list(box), path, where) if box is not None else None)
    _check_counts(points, [f"{path}: face {k}" for k in range(len(points))], path)
    return images, points, boxes


def _numbers(fields: Sequence[Any], path: Path, where: Any) -> np.ndarray:
    label = f"line {where}" if isinstance(where, int) else str(where)
    try:
        values = np.asarray([float(v) for v in fields], dtype=np.float64)
    except (TypeError, ValueError):
        raise ValueError(f"{path}, {label}: not a number among {list(fields)[:6]}...") from None
    if not np.isfinite(values).all():
        raise ValueError(f"{path}, {label}: NaN or infinite value")
    return values


def _relative_image(table: Path, name: str, where: Any) -> Path:
    image = (table.parent / name) if not Path(name).is_absolute() else Path(name)
    if not image.is_file():
        label = f"line {where}" if isinstance(where, int) else str(where)
        raise FileNotFoundError(f"{table}, {label}: image not found: {image}")
    return image
