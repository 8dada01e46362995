"""Readers (and a few writers) for the annotation files of the four benchmarks.

Every reader returns the numbers *exactly as the file stores them*: no 1-based correction, no
re-centring. The dataset builders of :mod:`landmarks.data.datasets` convert them to the pixel
convention of :mod:`landmarks.data.coords` (``coords.from_one_based`` for the Matlab-style files).

==============================  ==========================  ===================================
file                            reader                      stored values
==============================  ==========================  ===================================
300W ``*.pts``                  :func:`read_pts`            1-based ``x y`` per point
WFLW ``list_98pt_rect_attr_*``  :func:`read_wflw_list`      98 points, box, 6 attributes, path
COFW ``COFW_*_color.mat``       :func:`read_cofw_mat`       images, 29 points, occlusion, box
AFLW ``AFLWinfo_release.mat``   :func:`read_aflw_mat`       19 points, visibility, box, names
==============================  ==========================  ===================================

Text files are read as UTF-8 (an optional BOM is skipped). A file that is not text (an image or
other binary bytes under a ``.pts`` name) raises ``ValueError("<file>: not a text <kind> file
...")``; malformed text files raise ``ValueError("<file>, line <n>: <what is wrong>")``.
"""
from __future__ import annotations

import io
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable, Sequence

import numpy as np

PathLike = str | os.PathLike

__all__ = [
    "read_pts", "write_pts", "WFLW_ATTRIBUTES", "WFLWRecord", "read_wflw_list", "write_wflw_list",
    "COFWData", "read_cofw_mat", "AFLWData", "read_aflw_mat",
]


def _error(path: PathLike, line: int, message: str) -> ValueError:
    return ValueError(f"{path}, line {line}: {message}")


def _text_lines(path: PathLike, kind: str) -> list[str]:
    """The lines of a UTF-8 text file (BOM skipped; ``\\n``, ``\\r\\n`` or ``\\r`` ends, each read as ``\\n``);
    ``ValueError`` naming the file when its bytes are not UTF-8 text (a ``kind`` file of another sort)."""
    data = Path(path).read_bytes()
    try:
        text = data.decode("utf-8-sig")
    except UnicodeDecodeError as error:
        raise ValueError(f"{path}: not a text {kind} file (byte {error.start} is not UTF-8; "
                         f"starts with {data[:8]!r})") from None
    return list(io.StringIO(text, newline=None))


def _finite_floats(fields: Sequence[str], path: PathLike, line: int) -> list[float]:
    """Parse ``fields`` as floats; a non-number, NaN or infinity raises naming file and line."""
    try:
        values = [float(v) for v in fields]
    except ValueError:
        bad = next(v for v in fields if not _is_float(v))
        raise _error(path, line, f"not a number: {bad!r}") from None
    if not np.all(np.isfinite(values)):
        raise _error(path, line, "NaN or infinite value")
    return values


def _is_float(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


# --------------------------------------------------------------------------- 300W .pts
def read_pts(path: PathLike, num_points: int | None = None) -> np.ndarray:
    """Read a ``.pts`` landmark file (300W / iBUG) as an ``(N, 2)`` float64 array.

    Format (``\\n``, ``\\r\\n`` or ``\\r`` line ends; spaces or tabs; blank lines ignored)::

        version: 1
        n_points: 68
        {
        x y          <- one line per point, N lines, 1-based Matlab coordinates
        }

    The header may hold other ``key: value`` lines; ``n_points`` is required and must equal the
    number of point lines (and ``num_points`` when given). Values are returned unchanged.
    """
    lines = [line.strip() for line in _text_lines(path, ".pts")]
    header: dict[str, tuple[str, int]] = {}
    points: list[list[float]] = []
    state, brace_line = "header", 0
    for number, line in enumerate(lines, 1):
        if not line:
            continue
        if state == "header":
            state, brace_line = _pts_header_line(line, number, header, path), number
        elif state == "points":
            if line == "}":
                state, brace_line = "done", number
            else:
                points.append(_pts_point_line(line, number, path))
        else:
            raise _error(path, number, f"text after the closing '}}': {line!r}")
    end = len(lines) + 1
    if state == "header":
        raise _error(path, end, "end of file before '{' (missing header or point block)")
    if state == "points":
        raise _error(path, end, "end of file before the closing '}'")
    declared = _pts_count(header, path, num_points)
    if len(points) != declared:
        raise _error(path, brace_line, f"n_points is {declared} (line {header['n_points'][1]}) "
                                       f"but {len(points)} point lines were found")
    return np.asarray(points, dtype=np.float64).reshape(-1, 2)


def _pts_header_line(line: str, number: int, header: dict, path: PathLike) -> str:
    """Record one header line; return the next parser state."""
    if line == "{":
        if "n_points" not in header:
            raise _error(path, number, "'{' before an 'n_points:' header line (missing header)")
        return "points"
    key, colon, value = line.partition(":")
    if not colon:
        raise _error(path, number, f"expected a 'key: value' header line or '{{', got {line!r}")
    header[key.strip().lower()] = (value.strip(), number)
    return "header"


def _pts_point_line(line: str, number: int, path: PathLike) -> list[float]:
    fields = line.split()
    if len(fields) != 2:
        raise _error(path, number, f"expected 2 columns 'x y', got {len(fields)}: {line!r}")
    return _finite_floats(fields, path, number)


def _pts_count(header: dict, path: PathLike, expected: int | None) -> int:
    value, number = header["n_points"]
    try:
        count = int(value)
    except ValueError:
        raise _error(path, number, f"n_points is not an integer: {value!r}") from None
    if count < 0 or (expected is not None and count != expected):
        raise _error(path, number, f"n_points is {count}, expected {expected if expected is not None else '>= 0'}")
    return count


def write_pts(path: PathLike, points: np.ndarray, newline: str = "\n", sep: str = " ") -> None:
    """Write ``(N, 2)`` points as a ``.pts`` file, values unchanged (``repr`` precision, exact).

    ``newline`` and ``sep`` let tests imitate the real files (``"\\r\\n"``, ``"\\t"``).
    """
    points = np.asarray(points, dtype=np.float64)
    if points.ndim != 2 or points.shape[1] != 2 or not np.isfinite(points).all():
        raise ValueError(f"{path}: points must be a finite (N, 2) array, got shape {points.shape}")
    lines = ["version: 1", f"n_points: {len(points)}", "{"]
    lines += [f"{float(x)!r}{sep}{float(y)!r}" for x, y in points]
    lines.append("}")
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write(newline.join(lines) + newline)


# --------------------------------------------------------------------------- WFLW list
#: The six binary attribute columns of the WFLW lists, in file order.
WFLW_ATTRIBUTES = ("pose", "expression", "illumination", "makeup", "occlusion", "blur")
_WFLW_POINTS = 98
_WFLW_COLUMNS = 2 * _WFLW_POINTS + 4 + len(WFLW_ATTRIBUTES) + 1  # 207


@dataclass(eq=False)
class WFLWRecord:
    """One face of a WFLW list file (values as stored).

    Attributes:
        landmarks: ``(98, 2)`` float64 ``x, y``.
        box: ``(4,)`` float64 ``x_min, y_min, x_max, y_max``.
        attributes: ``(6,)`` bool in the order of :data:`WFLW_ATTRIBUTES`.
        image: the image path relative to ``WFLW_images/``.
    """

    landmarks: np.ndarray
    box: np.ndarray
    attributes: np.ndarray
    image: str

    def has(self, attribute: str) -> bool:
        """Whether the face carries one of :data:`WFLW_ATTRIBUTES` (e.g. ``"occlusion"``)."""
        return bool(self.attributes[WFLW_ATTRIBUTES.index(attribute)])


def read_wflw_list(path: PathLike) -> list[WFLWRecord]:
    """Read ``list_98pt_rect_attr_{train,test}.txt``: one face per line, 207 columns.

    Columns: ``x0 y0 ... x97 y97`` (196 floats), ``x_min y_min x_max y_max``, six 0/1 attributes
    (:data:`WFLW_ATTRIBUTES`), relative image path; separated by any whitespace. Blank lines are
    skipped.
    """
    records = []
    for number, line in enumerate(_text_lines(path, "WFLW list"), 1):
        fields = line.split()
        if fields:
            records.append(_wflw_record(fields, path, number))
    return records


def _wflw_record(fields: list[str], path: PathLike, number: int) -> WFLWRecord:
    if len(fields) != _WFLW_COLUMNS:
        raise _error(path, number, f"expected {_WFLW_COLUMNS} columns, got {len(fields)}")
    numbers = _finite_floats(fields[:-1], path, number)
    flags = numbers[200:206]
    if any(v not in (0.0, 1.0) for v in flags):
        raise _error(path, number, f"attribute columns must be 0 or 1, got {fields[200:206]}")
    return WFLWRecord(
        landmarks=np.asarray(numbers[:196], dtype=np.float64).reshape(_WFLW_POINTS, 2),
        box=np.asarray(numbers[196:200], dtype=np.float64),
        attributes=np.asarray(flags, dtype=bool),
        image=fields[-1],
    )


def write_wflw_list(path: PathLike, records: Iterable[WFLWRecord], newline: str = "\n") -> None:
    """Write records in the WFLW list format (floats in exact ``repr``, attributes as 0/1)."""
    lines = []
    for record in records:
        values = [*np.asarray(record.landmarks, np.float64).ravel(), *np.asarray(record.box, np.float64)]
        flags = [str(int(bool(a))) for a in record.attributes]
        lines.append(" ".join([*(repr(float(v)) for v in values), *flags, record.image]))
    with open(path, "w", encoding="utf-8", newline="") as handle:
        handle.write("".join(line + newline for line in lines))


# --------------------------------------------------------------------------- COFW .mat
_COFW_KEYS = {"train": ("IsTr", "phisTr", "bboxesTr"), "test": ("IsT", "phisT", "bboxesT")}
_COFW_POINTS = 29


@dataclass(eq=False)
class COFWData:
    """The content of ``COFW_{train,test}_color.mat`` (coordinates as stored, 1-based).

    Attributes:
        images: list of ``(H, W, 3)`` uint8 RGB arrays (grayscale images repeated to 3 channels).
        landmarks: ``(N, 29, 2)`` float64.
        occluded: ``(N, 29)`` bool, the third block of ``phis``.
        boxes: ``(N, 4)`` float64 ``x0, y0, x1, y1`` = ``x, y, x + w, y + h`` of the stored box.
        split: ``"train"`` or ``"test"``, from the variable names found.
    """

    images: list[np.ndarray]
    landmarks: np.ndarray
    occluded: np.ndarray
    boxes: np.ndarray
    split: str


def read_cofw_mat(path: PathLike) -> COFWData:
    """Read a COFW colour ``.mat`` file (train: ``IsTr/phisTr/bboxesTr``, test: ``IsT/phisT/bboxesT``).

    The released files are MATLAB v7.3, i.e. HDF5: the image cell array is a dataset of object
    references, every matrix is stored transposed (MATLAB is column-major), so an ``H x W x 3``
    image appears as ``(3, W, H)`` and the ``N x 87`` ``phis`` as ``(87, N)``. ``phis`` holds
    29 x, 29 y, then 29 occlusion flags per face; boxes are ``x, y, w, h``. Older (v5) saves are
    read with :func:`scipy.io.loadmat`.
    """
    import h5py

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"COFW file not found: {path}")
    images, phis, boxes, split = _cofw_hdf5(path) if h5py.is_hdf5(path) else _cofw_v5(path)
    return _cofw_assemble(path, images, phis, boxes, split)


def _cofw_split(keys: Iterable[str], path: Path) -> str:
    keys = set(keys)
    for split, names in _COFW_KEYS.items():
        if set(names) <= keys:
            return split
    raise ValueError(f"{path}: no COFW variables; expected {_COFW_KEYS['train']} or {_COFW_KEYS['test']}, "
                     f"found {sorted(keys)}")


def _cofw_hdf5(path: Path):
    import h5py

    with h5py.File(path, "r") as mat:
        split = _cofw_split(mat.keys(), path)
        image_key, phis_key, box_key = _COFW_KEYS[split]
        refs = np.asarray(mat[image_key]).ravel()
        images = [_as_rgb(np.asarray(mat[ref]).T, path, f"{image_key}[{k}]") for k, ref in enumerate(refs)]
        return images, np.asarray(mat[phis_key]).T, np.asarray(mat[box_key]).T, split


def _cofw_v5(path: Path):
    from scipy.io import loadmat

    try:
        mat = loadmat(path)
    except Exception as error:  # scipy raises several types for a file that is not a .mat
        raise ValueError(f"{path}: not a readable MATLAB file ({error})") from None
    split = _cofw_split(mat.keys(), path)
    image_key, phis_key, box_key = _COFW_KEYS[split]
    cells = mat[image_key].ravel()
    images = [_as_rgb(np.asarray(cell), path, f"{image_key}[{k}]") for k, cell in enumerate(cells)]
    return images, mat[phis_key], mat[box_key], split


def _as_rgb(image: np.ndarray, path: Path, name: str) -> np.ndarray:
    """An ``(H, W)`` or ``(H, W, 3)`` uint8 array (already in row-major order) as ``(H, W, 3)``."""
    if image.dtype != np.uint8:
        raise ValueError(f"{path}: {name} has dtype {image.dtype}, expected uint8")
    if image.ndim == 2:
        image = np.repeat(image[:, :, None], 3, axis=2)
    if image.ndim != 3 or image.shape[2] != 3:
        raise ValueError(f"{path}: {name} has shape {image.shape}, expected (H, W) or (H, W, 3)")
    return np.ascontiguousarray(image)


def _cofw_assemble(path: Path, images, phis, boxes, split: str) -> COFWData:
    phis, boxes = np.asarray(phis, np.float64), np.asarray(boxes, np.float64)
    count = len(images)
    if phis.shape != (count, 3 * _COFW_POINTS) or boxes.shape != (count, 4):
        raise ValueError(f"{path}: {count} images but phis {phis.shape} (expected ({count}, 87)) "
                         f"and boxes {boxes.shape} (expected ({count}, 4))")
    points = np.stack([phis[:, :29], phis[:, 29:58]], axis=-1)
    x, y, w, h = boxes.T
    return COFWData(images=images, landmarks=points, occluded=phis[:, 58:] != 0,
                    boxes=np.stack([x, y, x + w, y + h], axis=-1), split=split)


# --------------------------------------------------------------------------- AFLW .mat
_AFLW_POINTS = 19


@dataclass(eq=False)
class AFLWData:
    """The content of ``AFLWinfo_release.mat`` (coordinates as stored, 1-based).

    Attributes:
        landmarks: ``(N, 19, 2)`` float64 from ``data`` (19 x, then 19 y).
        visible: ``(N, 19)`` bool from ``mask_new``.
        boxes: ``(N, 4)`` float64 ``x0, y0, x1, y1``, reordered from ``bbox`` (xmin, xmax, ymin, ymax).
        names: ``N`` image paths relative to the AFLW ``flickr`` folder (``nameList``).
        order: ``(N,)`` int64, the 1-based permutation ``ra``; ``order[:20000]`` is the training split.
    """

    landmarks: np.ndarray
    visible: np.ndarray
    boxes: np.ndarray
    names: list[str]
    order: np.ndarray


def read_aflw_mat(path: PathLike) -> AFLWData:
    """Read ``AFLWinfo_release.mat`` (a MATLAB v5 file) with :func:`scipy.io.loadmat`.

    Variables: ``bbox`` N x 4 (xmin, xmax, ymin, ymax), ``data`` N x 38 (19 x then 19 y),
    ``mask_new`` N x 19 (1 = visible), ``nameList`` N x 1 cell of relative paths, ``ra`` a
    1-based permutation of ``1..N``.
    """
    from scipy.io import loadmat

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"AFLW file not found: {path}")
    try:
        mat = loadmat(path)
    except Exception as error:  # scipy raises several types for a file that is not a .mat
        raise ValueError(f"{path}: not a readable MATLAB v5 file ({error})") from None
    missing = [k for k in ("bbox", "data", "mask_new", "nameList", "ra") if k not in mat]
    if missing:
        raise ValueError(f"{path}: missing variables {missing}")
    names = [_matlab_string(cell) for cell in mat["nameList"].ravel()]
    return _aflw_assemble(path, mat, names)


def _matlab_string(cell) -> str:
    """A MATLAB char array from a ``loadmat`` cell (``array(['a/b.jpg'])``) as ``str``."""
    value = np.asarray(cell).ravel()
    return "".join(str(v) for v in value).strip()


def _aflw_assemble(path: Path, mat: dict, names: list[str]) -> AFLWData:
    count = len(names)
    data = np.asarray(mat["data"], np.float64)
    mask = np.asarray(mat["mask_new"])
    bbox = np.asarray(mat["bbox"], np.float64)
    order = np.asarray(mat["ra"]).ravel()
    expected = {"data": (count, 38), "mask_new": (count, 19), "bbox": (count, 4)}
    for key, array in (("data", data), ("mask_new", mask), ("bbox", bbox)):
        if array.shape != expected[key]:
            raise ValueError(f"{path}: {key} has shape {array.shape}, expected {expected[key]} "
                             f"({count} names in nameList)")
    if sorted(order.tolist()) != list(range(1, count + 1)):
        raise ValueError(f"{path}: ra is not a 1-based permutation of 1..{count}")
    xmin, xmax, ymin, ymax = bbox.T
    return AFLWData(
        landmarks=np.stack([data[:, :19], data[:, 19:]], axis=-1),
        visible=mask != 0,
        boxes=np.stack([xmin, ymin, xmax, ymax], axis=-1),
        names=names,
        order=order.astype(np.int64),
    )
