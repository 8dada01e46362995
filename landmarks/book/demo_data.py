"""Tiny fake copies of the four benchmarks, written in their official file formats and folders.

They let the tests, and the book before any real download, run every loader end to end::

    root = make_300w_root(tmp / "300W")
    train = load_300w(root, "train")          # 300W's real folder names, .pts beside .jpg/.png

Faces are plausible shapes derived from the packaged 300-W mean shape (the other layouts are
built from it by averaging and resampling points), drawn as white dots on a smooth dark
background, so a crop shows its dots exactly where its landmarks are. Values are written in
each file's own convention (1-based for ``.pts`` and ``.mat``, unchanged for WFLW).
"""
from __future__ import annotations

from pathlib import Path
from typing import Mapping, Sequence

import cv2
import numpy as np

from landmarks.data.coords import to_one_based, to_pixel_index
from landmarks.data.formats import WFLW_ATTRIBUTES, PathLike, WFLWRecord, write_pts, write_wflw_list
from landmarks.data.layouts import Layout, conversion_matrix, get_layout
from landmarks.data.shape_model import default_shape_model

__all__ = [
    "fake_shape", "fake_image", "write_cofw_mat", "write_aflw_mat",
    "make_300w_root", "make_wflw_root", "make_cofw_root", "make_aflw_root", "write_face_photos",
    "make_300w_photos",
]

# --------------------------------------------------------------------------- shapes
Recipe = list[tuple[tuple[int, ...], float]]  # (68-point indices to average, downward shift in IOD)


def _wflw_recipe() -> Recipe:
    jaw = [((k // 2,), 0.0) if k % 2 == 0 else ((k // 2, k // 2 + 1), 0.0) for k in range(33)]
    lower_left = [((i, i + 1), 0.08) for i in (20, 19, 18, 17)]    # inner -> outer
    lower_right = [((i, i + 1), 0.08) for i in (25, 24, 23, 22)]   # outer -> inner
    left_eye = [(36,), (37,), (37, 38), (38,), (39,), (40,), (40, 41), (41,)]
    right_eye = [(42,), (43,), (43, 44), (44,), (45,), (46,), (46, 47), (47,)]
    return (jaw + [((i,), 0.0) for i in range(17, 22)] + lower_left
            + [((i,), 0.0) for i in range(22, 27)] + lower_right + [((i,), 0.0) for i in range(27, 36)]
            + [(e, 0.0) for e in left_eye + right_eye] + [((i,), 0.0) for i in range(48, 68)]
            + [(tuple(range(36, 42)), 0.0), (tuple(range(42, 48)), 0.0)])


_COFW_RECIPE: Recipe = [
    ((17,), 0.0), ((26,), 0.0), ((21,), 0.0), ((22,), 0.0), ((19,), 0.0), ((19,), 0.08),
    ((24,), 0.0), ((24,), 0.08), ((36,), 0.0), ((45,), 0.0), ((39,), 0.0), ((42,), 0.0),
    ((37, 38), 0.0), ((40, 41), 0.0), ((43, 44), 0.0), ((46, 47), 0.0),
    (tuple(range(36, 42)), 0.0), (tuple(range(42, 48)), 0.0),
    ((31,), 0.0), ((35,), 0.0), ((30,), 0.0), ((33,), 0.0),
    ((48,), 0.0), ((54,), 0.0), ((51,), 0.0), ((62,), 0.0), ((66,), 0.0), ((57,), 0.0), ((8,), 0.0),
]


def _from_68(points: np.ndarray, recipe: Recipe) -> np.ndarray:
    iod = np.linalg.norm(points[45] - points[36])
    return np.stack([points[list(idx)].mean(axis=0) + (0.0, shift * iod) for idx, shift in recipe])


def fake_shape(layout: Layout | str, centre: Sequence[float], iod: float,
               rng: np.random.Generator | None = None, spread: float = 0.7) -> np.ndarray:
    """A plausible ``(N, 2)`` face of ``layout`` (300w, wflw, cofw, aflw) in our coordinates.

    A random shape of the packaged 300-W model (mode weights ``~ N(0, spread^2)``), scaled to an
    inter-ocular distance ``iod`` and centred on ``centre``, converted to the other layouts.
    """
    rng = rng if rng is not None else np.random.default_rng(0)
    model = default_shape_model()
    points = model.sample(rng.normal(0.0, spread, size=model.num_modes)) * iod + np.asarray(centre)
    name = get_layout(layout).name
    if name == "300w":
        return points
    if name == "aflw":
        return conversion_matrix("300w", "aflw").double().numpy() @ points
    recipes = {"wflw": _wflw_recipe(), "cofw": _COFW_RECIPE}
    if name not in recipes:
        raise ValueError(f"no fake shape for layout {name!r}")
    return _from_68(points, recipes[name])


def fake_image(points: np.ndarray, height: int, width: int, rng: np.random.Generator | None = None,
               gray: bool = False) -> np.ndarray:
    """An ``(H, W, 3)`` uint8 RGB image (``(H, W)`` if ``gray``): a dark gradient with a white
    dot (radius 1 px) centred on every point of ``points`` (our coordinates)."""
    rng = rng if rng is not None else np.random.default_rng(0)
    ys, xs = np.mgrid[0:height, 0:width]
    tint = rng.uniform(20, 60, size=3)
    image = (tint * (0.5 + 0.5 * (xs + ys)[..., None] / (height + width))).astype(np.uint8)
    image = np.ascontiguousarray(image)
    for x, y in np.round(to_pixel_index(np.asarray(points)) * 16).astype(int):
        cv2.circle(image, (int(x), int(y)), 16, (255, 255, 255), -1, cv2.LINE_AA, shift=4)
    return cv2.cvtColor(image, cv2.COLOR_RGB2GRAY) if gray else image


def _face(layout: str, height: int, width: int, rng: np.random.Generator) -> np.ndarray:
    centre = (width * rng.uniform(0.4, 0.6), height * rng.uniform(0.45, 0.6))
    return fake_shape(layout, centre, iod=0.35 * width * rng.uniform(0.85, 1.15), rng=rng)


def _save_image(path: Path, image_rgb: np.ndarray) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    if not cv2.imwrite(str(path), cv2.cvtColor(image_rgb, cv2.COLOR_RGB2BGR)):
        raise OSError(f"could not write {path}")


# --------------------------------------------------------------------------- MATLAB writers
def _matlab_header(path: Path) -> None:
    """Put MATLAB's 128-byte v7.3 header into the HDF5 user block, as MATLAB does."""
    text = b"MATLAB 7.3 MAT-file, Platform: GLNXA64, Created by: landmarks.book.demo_data HDF5 schema 1.00 ."
    with open(path, "r+b") as handle:
        handle.write(text.ljust(116, b" ") + b"\0" * 8 + b"\x00\x02" + b"IM")


def write_cofw_mat(path: PathLike, images: Sequence[np.ndarray], landmarks: np.ndarray,
                   occluded: np.ndarray, boxes_xywh: np.ndarray, split: str = "train",
                   version: str = "7.3") -> None:
    """Write a COFW-style ``.mat``: ``Is*`` image cell, ``phis*`` N x 87, ``bboxes*`` N x 4.

    ``version="7.3"`` imitates MATLAB's HDF5 layout: images are datasets in ``#refs#`` referred to
    by an object-reference cell array of shape ``(1, N)``, and every array is stored transposed
    (an H x W x 3 image as ``(3, W, H)``). ``version="5"`` uses :func:`scipy.io.savemat`.
    Values are written as given (pass 1-based coordinates for a faithful copy).
    """
    suffix = {"train": "Tr", "test": "T"}[split]
    points = np.asarray(landmarks, dtype=np.float64)
    phis = np.concatenate([points[..., 0], points[..., 1], np.asarray(occluded, np.float64)], axis=1)
    boxes = np.asarray(boxes_xywh, dtype=np.float64)
    if version == "5":
        from scipy.io import savemat

        cell = np.empty((len(images), 1), dtype=object)
        cell[:, 0] = list(images)
        savemat(path, {f"Is{suffix}": cell, f"phis{suffix}": phis, f"bboxes{suffix}": boxes})
        return
    _write_cofw_hdf5(Path(path), images, {f"phis{suffix}": phis, f"bboxes{suffix}": boxes}, f"Is{suffix}")


def _write_cofw_hdf5(path: Path, images: Sequence[np.ndarray], matrices: Mapping[str, np.ndarray],
                     image_key: str) -> None:
    import h5py

    with h5py.File(path, "w", userblock_size=512) as mat:
        refs_group = mat.create_group("#refs#")
        refs = []
        for k, image in enumerate(images):
            stored = refs_group.create_dataset(f"image_{k}", data=np.asarray(image, np.uint8).T)
            stored.attrs["MATLAB_class"] = np.bytes_("uint8")
            refs.append(stored.ref)
        cell = mat.create_dataset(image_key, data=np.array([refs], dtype=h5py.ref_dtype))
        cell.attrs["MATLAB_class"] = np.bytes_("cell")
        for key, matrix in matrices.items():
            mat.create_dataset(key, data=matrix.T).attrs["MATLAB_class"] = np.bytes_("double")
    _matlab_header(path)


def write_aflw_mat(path: PathLike, landmarks: np.ndarray, visible: np.ndarray, boxes: np.ndarray,
                   names: Sequence[str], order: np.ndarray) -> None:
    """Write an ``AFLWinfo_release.mat``-style file (MATLAB v5, :func:`scipy.io.savemat`).

    ``boxes`` are ``x0, y0, x1, y1`` and are stored in AFLW's order ``xmin, xmax, ymin, ymax``;
    ``order`` is the 1-based permutation stored as ``ra``. Values are written as given.
    """
    from scipy.io import savemat

    points = np.asarray(landmarks, dtype=np.float64)
    x0, y0, x1, y1 = np.asarray(boxes, dtype=np.float64).T
    cell = np.empty((len(names), 1), dtype=object)
    cell[:, 0] = list(names)
    savemat(path, {
        "bbox": np.stack([x0, x1, y0, y1], axis=1),
        "data": np.concatenate([points[..., 0], points[..., 1]], axis=1),
        "mask_new": np.asarray(visible, np.float64),
        "nameList": cell,
        "ra": np.asarray(order, np.float64).reshape(1, -1),
    })


# --------------------------------------------------------------------------- fake roots
#: Images per 300W folder in :func:`make_300w_root` (train 5, common 3, challenge 1).
FAKE_300W_COUNTS = {"afw": 2, "helen/trainset": 2, "lfpw/trainset": 1,
                    "helen/testset": 2, "lfpw/testset": 1, "ibug": 1}


def make_300w_root(root: PathLike, counts: Mapping[str, int] | None = None, height: int = 72,
                   width: int = 64, seed: int = 0) -> Path:
    """A fake 300W download: ``afw/``, ``helen/{train,test}set/``, ``lfpw/{train,test}set/``,
    ``ibug/``, each image with a ``.pts`` beside it (1-based, CRLF line ends, tab separated, as
    many real files). LFPW images are ``.png``, the others ``.jpg``."""
    root, rng = Path(root), np.random.default_rng(seed)
    for folder, count in (counts or FAKE_300W_COUNTS).items():
        suffix = ".png" if folder.startswith("lfpw") else ".jpg"
        for k in range(count):
            points = _face("300w", height, width, rng)
            stem = root / folder / f"{folder.replace('/', '_')}_{k:04d}"
            _save_image(stem.with_suffix(suffix), fake_image(points, height, width, rng))
            write_pts(stem.with_suffix(".pts"), to_one_based(points), newline="\r\n", sep="\t")
    return root


def make_wflw_root(root: PathLike, num_train: int = 4, num_test: int = 6, height: int = 72,
                   width: int = 64, seed: int = 0) -> Path:
    """A fake WFLW download: ``WFLW_images/<event>/<name>.jpg`` and both list files under
    ``WFLW_annotations/list_98pt_rect_attr_train_test/``. Test face ``k`` carries attribute
    ``k % 6`` (so 6 test faces fill every subset once); coordinates are stored unchanged."""
    root, rng = Path(root), np.random.default_rng(seed)
    lists = root / "WFLW_annotations" / "list_98pt_rect_attr_train_test"
    lists.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        records = []
        for k in range(count):
            points = _face("wflw", height, width, rng)
            name = f"{k % 3}--Fake/{k % 3}_Fake_{split}_{k}.jpg"
            _save_image(root / "WFLW_images" / name, fake_image(points, height, width, rng))
            box = np.concatenate([points.min(0) - 2, points.max(0) + 2])
            flags = np.arange(len(WFLW_ATTRIBUTES)) == k % len(WFLW_ATTRIBUTES)
            records.append(WFLWRecord(points, box, flags, name))
        write_wflw_list(lists / f"list_98pt_rect_attr_{split}.txt", records)
    return root


def make_cofw_root(root: PathLike, num_train: int = 3, num_test: int = 2, height: int = 72,
                   width: int = 64, seed: int = 0) -> Path:
    """A fake COFW download: ``COFW_train_color.mat`` and ``COFW_test_color.mat`` (v7.3/HDF5
    layout, 1-based). The first image of each file is grayscale, as some real ones are."""
    root, rng = Path(root), np.random.default_rng(seed)
    root.mkdir(parents=True, exist_ok=True)
    for split, count in (("train", num_train), ("test", num_test)):
        points = np.stack([_face("cofw", height, width, rng) for _ in range(count)])
        images = [fake_image(p, height, width, rng, gray=(k == 0)) for k, p in enumerate(points)]
        occluded = rng.random((count, 29)) < 0.2
        corner = points.min(axis=1) - 3
        boxes = np.concatenate([to_one_based(corner), (points.max(axis=1) + 3) - corner], axis=1)
        write_cofw_mat(root / f"COFW_{split}_color.mat", images, to_one_based(points), occluded, boxes, split)
    return root


def make_aflw_root(root: PathLike, count: int = 10, height: int = 72, width: int = 64,
                   seed: int = 0) -> Path:
    """A fake AFLW: ``AFLWinfo_release.mat`` (1-based) and images under ``data/flickr/<0|2|3>/``.
    Every third face has one hidden point (``mask_new`` 0), the others are fully visible.
    Load it with ``load_aflw(root, split, num_train=...)``: the real split point is 20,000."""
    root, rng = Path(root), np.random.default_rng(seed)
    points = np.stack([_face("aflw", height, width, rng) for _ in range(count)])
    names = [f"{(0, 2, 3)[k % 3]}/image{k:05d}.jpg" for k in range(count)]
    for name, p in zip(names, points):
        _save_image(root / "data" / "flickr" / name, fake_image(p, height, width, rng))
    visible = np.ones((count, 19), dtype=bool)
    visible[::3, 18] = False
    boxes = np.concatenate([points.min(axis=1) - 2, points.max(axis=1) + 2], axis=1)
    write_aflw_mat(root / "AFLWinfo_release.mat", to_one_based(points), visible, to_one_based(boxes),
                   names, rng.permutation(count) + 1)
    return root


# --------------------------------------------------------------------------- photo-like faces
def write_face_photos(folder: PathLike, count: int, megapixels: float = 1.2, domain: str = "wild", seed: int = 0,
                      face_size: int = 300, prefix: str = "photo") -> Path:
    """``count`` 4:3 JPEG photos of ``megapixels`` with one synthetic face each and a 1-based
    ``.pts`` beside it: the face (rendered at ``face_size`` px, scaled to 25-45 % of the photo's
    height) sits anywhere in a blurred noise scene. What the loader benchmark and chapter 10 use
    in place of real photos: the files are as large and as slow to decode as 300W's."""
    from landmarks.data.synthetic import SyntheticFaces

    folder, rng = Path(folder), np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    width = int(round(np.sqrt(megapixels * 1e6 * 4 / 3)))
    height = int(round(width * 3 / 4))
    faces = SyntheticFaces(domain, face_size, length=count, seed=seed)
    for k in range(count):
        face = faces[k]
        side = int(rng.uniform(0.25, 0.45) * height)
        x0, y0 = int(rng.uniform(0, width - side)), int(rng.uniform(0, height - side))
        scene = cv2.GaussianBlur(rng.integers(0, 255, (height, width, 3), dtype=np.uint8), (0, 0), 2.0)
        pixels = np.round(face["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        scene[y0:y0 + side, x0:x0 + side] = cv2.resize(pixels, (side, side), interpolation=cv2.INTER_AREA)
        # a face pixel u of the rendering covers [u, u + 1) * side / face_size of the photo
        points = face["landmarks"].double().numpy() * side / face_size + [x0, y0]
        path = folder / f"{prefix}_{k:04d}.jpg"
        if not cv2.imwrite(str(path), cv2.cvtColor(scene, cv2.COLOR_RGB2BGR), [cv2.IMWRITE_JPEG_QUALITY, 92]):
            raise OSError(f"could not write {path}")
        write_pts(path.with_suffix(".pts"), to_one_based(points))
    return folder


def make_300w_photos(root: PathLike, counts: Mapping[str, int], megapixels: float = 1.2, domain: str = "wild",
                     seed: int = 0) -> Path:
    """A fake 300W root (the official folder names of ``counts``) of photo-like faces
    (:func:`write_face_photos`), e.g. ``{"helen/trainset": 870, "helen/testset": 330}``."""
    root = Path(root)
    for offset, (folder, count) in enumerate(counts.items()):
        write_face_photos(root / folder, count, megapixels, domain, seed=seed + 1000 * offset,
                          prefix=folder.replace("/", "_"))
    return root
