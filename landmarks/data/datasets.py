"""Benchmark data: crop-and-resize, a generic dataset, and builders for 300W, WFLW, COFW and AFLW.

A sample (``dataset[i]``) is the dict that :mod:`landmarks.data.transforms` works on:

- ``"image"``: ``(3, size, size)`` float32 tensor, RGB in ``[0, 1]``;
- ``"landmarks"``: ``(N, 2)`` float32, in the continuous pixel coordinates of
  :mod:`landmarks.data.coords`, *of the crop*;
- ``"box"``: ``(4,)`` float32 ``x_min, y_min, x_max, y_max`` of the dataset's face box (the
  box that box-size NME divides by), mapped into the crop;
- ``"visible"``: ``(N,)`` bool (``False`` = occluded / not visible, where the data says so);
- ``"index"``: the item's position in the dataset.

Every item is cut out of its image by :func:`crop_and_resize`: a square *crop box* centred on the
face box (or on the landmarks' bounding box) with side ``box_scale`` x its longer side, resized to
``size x size`` by one affine warp. Areas outside the image are black.

Coordinates in the files are converted once, here: ``.pts`` and the ``.mat`` files are 1-based
(``coords.from_one_based``). WFLW stores fractional 0-based values without saying where a pixel
centre lies; we read them as continuous coordinates of our convention, unchanged (what code that
divides them by the image size assumes). If they were pixel indices instead, every WFLW point
would be 0.5 px off, far below the annotation noise.
"""
from __future__ import annotations

import warnings
from pathlib import Path
from typing import Any, Callable, Sequence

import cv2
import numpy as np
import torch
from torch.utils.data import Dataset

from landmarks.data.cache import CropCache, crop_key
from landmarks.data.coords import apply_affine, bounding_boxes, from_one_based
from landmarks.data.formats import (WFLW_ATTRIBUTES, PathLike, read_aflw_mat, read_cofw_mat, read_pts,
                      read_wflw_list)
from landmarks.data.layouts import AFLW, COFW, W300, WFLW, Layout, get_layout

__all__ = [
    "DATA_SOURCES", "OFFICIAL_SIZES", "crop_box", "crop_matrix", "opencv_matrix", "apply_affine",
    "crop_and_resize", "read_image", "image_beside", "IMAGE_SUFFIXES", "LandmarkDataset", "load_300w", "load_wflw", "load_cofw", "load_aflw",
]

#: Where each benchmark is published (named in the error raised for a missing root).
DATA_SOURCES = {
    "300w": "the iBUG 300-W page, https://ibug.doc.ic.ac.uk/resources/300-W/ (afw, helen, lfpw, ibug)",
    "wflw": "the WFLW page, https://wywu.github.io/projects/LAB/WFLW.html (WFLW_images and WFLW_annotations)",
    "cofw": "Caltech's COFW page (Burgos-Artizzu, Perona, Dollar, ICCV 2013), "
            "http://www.vision.caltech.edu/xpburgos/ICCV13/ (COFW_train_color.mat, COFW_test_color.mat)",
    "aflw": "the AFLW project at TU Graz (images, request access at "
            "https://www.tugraz.at/institute/icg/research/team-bischof/lrs/downloads/aflw/) and the "
            "AFLWinfo_release.mat 19-point annotation of Zhu et al., CVPR 2016",
}

#: Split sizes of the full official downloads (for checking a local copy).
OFFICIAL_SIZES = {
    "300w": {"train": 3148, "common": 554, "challenge": 135, "full": 689, "test": 689},
    "wflw": {"train": 7500, "test": 2500},
    "cofw": {"train": 1345, "test": 507},
    "aflw": {"train": 20000, "test": 4386, "frontal": 1314},
}


# --------------------------------------------------------------------------- geometry
def crop_box(points_or_box: np.ndarray, scale: float = 1.0) -> np.ndarray:
    """Square crop box(es) ``(..., 4)`` = ``x0, y0, x1, y1`` around points or boxes.

    ``(..., N, 2)`` landmarks are first reduced to their bounding box; a ``(..., 4)`` box is
    used as given. The result is centred on that box, with side ``scale`` x its longer side.
    """
    data = np.asarray(points_or_box, dtype=np.float64)
    if data.shape[-1] == 2 and data.ndim >= 2:
        data = bounding_boxes(data)
    elif data.shape[-1] != 4:
        raise ValueError(f"crop_box: expected (..., N, 2) points or (..., 4) boxes, got {data.shape}")
    centre = (data[..., :2] + data[..., 2:]) / 2
    half = scale * np.maximum(data[..., 2] - data[..., 0], data[..., 3] - data[..., 1]) / 2
    return np.concatenate([centre - half[..., None], centre + half[..., None]], axis=-1)


def crop_matrix(box: np.ndarray, size: int) -> np.ndarray:
    """The ``2 x 3`` affine map, in continuous coordinates, from ``box`` onto ``[0, size]^2``.

    ``u = s_x (x - x0)``, ``v = s_y (y - y0)`` with ``s_x = size / (x1 - x0)``,
    ``s_y = size / (y1 - y0)``: the box's corners go to the crop's corners, so the crop's pixel
    centres ``j + 0.5`` sample the image at ``x0 + (j + 0.5) / s_x``.
    """
    x0, y0, x1, y1 = np.asarray(box, dtype=np.float64)
    if not (x1 > x0 and y1 > y0):
        raise ValueError(f"crop box must have positive width and height, got {box}")
    sx, sy = size / (x1 - x0), size / (y1 - y0)
    return np.array([[sx, 0.0, -sx * x0], [0.0, sy, -sy * y0]])


def opencv_matrix(matrix: np.ndarray) -> np.ndarray:
    """Turn a ``2 x 3`` affine map between continuous coordinates into OpenCV's pixel-index form.

    OpenCV addresses pixel ``j`` by its centre ``j`` (ours: ``j + 0.5``). With ``c = i + 0.5``
    on both sides, ``u_c = A x_c + t`` becomes ``u_i = A x_i + (t + A @ (0.5, 0.5) - 0.5)``:
    the linear part is unchanged and the translation gains ``A @ (0.5, 0.5) - (0.5, 0.5)``.
    For a crop (``A = diag(s)``) that is ``t_i = s (0.5 - x0) - 0.5``.
    """
    linear, shift = matrix[:, :2], matrix[:, 2]
    return np.concatenate([linear, (shift + linear @ np.array([0.5, 0.5]) - 0.5)[:, None]], axis=1)


def crop_and_resize(image: np.ndarray, landmarks: np.ndarray, box: np.ndarray, size: int
                    ) -> tuple[np.ndarray, np.ndarray]:
    """Cut ``box`` (``x0, y0, x1, y1``) out of ``image`` (H x W x C) and resize it to ``size x size``.

    One ``cv2.warpAffine`` (bilinear) with :func:`opencv_matrix` of :func:`crop_matrix`; pixels
    outside the image are 0 (black). Returns the crop (same dtype as ``image``) and the
    ``(N, 2)`` landmarks mapped into it. Strong downscaling aliases (bilinear sampling, no
    pre-filter), as a plain ``cv2.resize`` would.
    """
    matrix = crop_matrix(box, size)
    crop = cv2.warpAffine(image, opencv_matrix(matrix), (size, size), flags=cv2.INTER_LINEAR,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    if crop.ndim == 2 and image.ndim == 3:  # OpenCV drops a single channel axis
        crop = crop[:, :, None]
    return crop, apply_affine(matrix, landmarks)


# --------------------------------------------------------------------------- dataset
ImageSource = PathLike | np.ndarray


class LandmarkDataset(Dataset):
    """Face images with landmarks, cropped around the face and resized to ``size x size``.

    Args:
        images: K image file paths (read lazily with OpenCV) or ``(H, W, 3)`` / ``(H, W)`` uint8
            RGB arrays held in memory; both may be mixed.
        landmarks: ``(K, N, 2)`` array (or K arrays ``(N, 2)``) in the convention of
            :mod:`landmarks.data.coords`; N must match ``layout``; NaN is refused.
        layout: a :class:`~landmarks.data.layouts.Layout` or its name.
        boxes: ``(K, 4)`` face boxes ``x0, y0, x1, y1`` (e.g. the dataset's detector boxes); by
            default the landmarks' bounding boxes. Returned (mapped) as the sample's ``box``.
        size: side of the square crop in pixels.
        box_scale: side of the crop box over the longer side of the box it is built from.
        transform: called on every sample dict (after cropping); returns the new dict.
        visible: ``(K, N)`` bool, by default all ``True``.
        crop_from: ``"box"`` (the face box) or ``"landmarks"`` (their bounding box).
        names: K labels used in error messages (default: the path, or ``"item k"``).
        margin: extra border cut around the crop, as a fraction of ``size`` on each side. With a
            margin, ``transform`` sees the larger crop (so translation and rotation bring in real
            pixels, not black ones) and the sample is its central ``size x size`` part afterwards.
            Without a transform the sample is the same crop as with no margin (the same sampling
            points; OpenCV rounds them to 1/32 pixel, which moves a few edge pixels by a few levels).
        cache: a :class:`~landmarks.data.cache.CropCache`, ``"memory"``, or a folder: crops (with
            their margin) are decoded once and kept (see :mod:`landmarks.data.cache`).
        check: check every image file and label now (:mod:`landmarks.data.checks`: undecodable or
            truncated images, zero normalising distances, points far outside the image), so that a
            bad item is an error naming its file before any training, not a grey crop or an
            infinite NME later. Reads each file's header, not its pixels.
    """

    def __init__(self, images: Sequence[ImageSource], landmarks, layout: Layout | str,
                 boxes: np.ndarray | None = None, size: int = 256, box_scale: float = 1.1,
                 transform: Callable[[dict], dict] | None = None, visible: np.ndarray | None = None,
                 crop_from: str = "box", names: Sequence[str] | None = None, margin: float = 0.0,
                 cache: "CropCache | str | PathLike | None" = None, check: bool = True) -> None:
        self.layout = get_layout(layout)
        self.images = list(images)
        count = len(self.images)
        self.names = list(names) if names is not None else [_default_name(im, k) for k, im in enumerate(self.images)]
        self.landmarks = _checked_landmarks(landmarks, self.layout, self.names, count)
        self.boxes = bounding_boxes(self.landmarks) if boxes is None else _checked_array(boxes, (count, 4), "boxes")
        shape = (count, self.layout.num_points)
        self.visible = (np.ones(shape, bool) if visible is None
                        else _checked_array(visible, shape, "visible").astype(bool))
        if crop_from not in ("box", "landmarks"):
            raise ValueError(f"crop_from must be 'box' or 'landmarks', got {crop_from!r}")
        self.crop_boxes = crop_box(self.boxes if crop_from == "box" else self.landmarks, box_scale)
        self.size, self.box_scale, self.transform = int(size), float(box_scale), transform
        if not 0.0 <= margin <= 1.0:
            raise ValueError(f"margin must be in [0, 1] (a fraction of the crop on each side), got {margin}")
        self.margin = float(margin)
        self.pad = int(round(self.margin * self.size))
        self.cache = _as_cache(cache)
        if check:
            self.check()

    def check(self) -> None:
        """``ValueError`` naming the files that are undecodable, truncated, or whose labels are
        degenerate or far outside their image (see :mod:`landmarks.data.checks`)."""
        from landmarks.data.checks import check_faces, image_size

        sizes = [(source.shape[1], source.shape[0]) if isinstance(source, np.ndarray) else image_size(source)
                 for source in self.images]
        check_faces(self.landmarks, self.boxes, sizes, self.layout, self.names)

    def __len__(self) -> int:
        return len(self.images)

    def __getitem__(self, index: int) -> dict:
        if not -len(self) <= index < len(self):
            raise IndexError(f"index {index} out of range for {len(self)} items")
        index = index % len(self)
        wide_box, side = self.wide_crop_box(index)
        crop = self.crop_pixels(index)
        matrix = crop_matrix(wide_box, side)
        box = apply_affine(matrix, self.boxes[index].reshape(2, 2)).reshape(4)
        sample = {
            "image": torch.from_numpy(np.ascontiguousarray(crop)).permute(2, 0, 1).float().div_(255.0),
            "landmarks": torch.from_numpy(apply_affine(matrix, self.landmarks[index])).float(),
            "box": torch.from_numpy(box).float(),
            "visible": torch.from_numpy(self.visible[index].copy()),
            "index": index,
        }
        if self.transform is not None:
            sample = self.transform(sample)
        return _centre(sample, self.pad, self.size) if self.pad else sample

    def wide_crop_box(self, index: int) -> tuple[np.ndarray, int]:
        """The crop box of item ``index`` grown by the margin, and its side in pixels: the crop's
        pixels ``pad .. pad + size`` sample the image exactly where the plain crop's do."""
        box = self.crop_boxes[index]
        if not self.pad:
            return box, self.size
        grow = self.pad * (box[2:] - box[:2]) / self.size
        return np.concatenate([box[:2] - grow, box[2:] + grow]), self.size + 2 * self.pad

    def crop_pixels(self, index: int) -> np.ndarray:
        """The ``(side, side, 3)`` uint8 crop (with its margin) of item ``index``, from the cache
        when there is one."""
        box, side = self.wide_crop_box(index)

        def make() -> np.ndarray:
            return crop_and_resize(self.load_image(index), np.zeros((0, 2)), box, side)[0]

        if self.cache is None:
            return make()
        source = self.images[index]
        if isinstance(source, np.ndarray):
            if self.cache.folder is not None:  # in-memory images have no file to key a shared cache by
                return make()
            source = f"memory:{id(self.images)}:{index}"
        return self.cache.get(crop_key(source, box, side), make)

    def load_image(self, index: int) -> np.ndarray:
        """The full image of item ``index`` as ``(H, W, 3)`` uint8 RGB."""
        source = self.images[index]
        if isinstance(source, np.ndarray):
            return _memory_image(source, self.names[index])
        return read_image(source)

    def crop_landmarks(self) -> torch.Tensor:
        """The ``(K, N, 2)`` float32 landmarks of every item in its crop's pixels, as the samples hold
        them before any transform, computed without reading an image (for the mean face)."""
        points = [apply_affine(crop_matrix(self.crop_boxes[k], self.size), self.landmarks[k]) for k in range(len(self))]
        return torch.from_numpy(np.stack(points)).float() if points else torch.zeros(0, self.layout.num_points, 2)

    def to_original(self, points, index: int) -> np.ndarray:
        """Map ``(..., 2)`` points from item ``index``'s crop back to its original image."""
        matrix = crop_matrix(self.crop_boxes[index], self.size)
        inverse = np.linalg.inv(np.vstack([matrix, [0.0, 0.0, 1.0]]))[:2]
        return apply_affine(inverse, np.asarray(points, dtype=np.float64))


def _as_cache(cache: Any) -> "CropCache | None":
    if cache is None or isinstance(cache, CropCache):
        return cache
    return CropCache() if cache == "memory" else CropCache(cache)


def _centre(sample: dict, pad: int, size: int) -> dict:
    """The central ``size x size`` part of a sample cut with a margin of ``pad`` pixels."""
    shift = torch.tensor([float(pad), float(pad)])
    sample = dict(sample)
    sample["image"] = sample["image"][..., pad:pad + size, pad:pad + size].contiguous()
    sample["landmarks"] = sample["landmarks"] - shift
    if sample.get("box") is not None:
        sample["box"] = torch.as_tensor(sample["box"]) - shift.repeat(2)
    return sample


def _default_name(source: ImageSource, index: int) -> str:
    return f"item {index}" if isinstance(source, np.ndarray) else str(source)


def _checked_landmarks(landmarks, layout: Layout, names: list[str], count: int) -> np.ndarray:
    items = list(landmarks)
    if len(items) != count:
        raise ValueError(f"{count} images but {len(items)} landmark sets")
    for k, item in enumerate(items):
        shape = np.shape(item)
        if shape != (layout.num_points, 2):
            raise ValueError(f"item {k} ({names[k]}): expected {layout.num_points} points (layout "
                             f"{layout.name!r}), got an array of shape {shape}")
        if not np.isfinite(np.asarray(item, dtype=np.float64)).all():
            raise ValueError(f"item {k} ({names[k]}): NaN or infinite landmark coordinates")
    return np.asarray(items, dtype=np.float64).reshape(count, layout.num_points, 2)


def _checked_array(values, shape: tuple[int, ...], name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.shape != shape:
        raise ValueError(f"{name}: expected shape {shape}, got {array.shape}")
    if array.dtype != bool and not np.isfinite(array.astype(np.float64)).all():
        raise ValueError(f"{name}: NaN or infinite values")
    return array.astype(np.float64) if array.dtype != bool else array


def _memory_image(image: np.ndarray, name: str) -> np.ndarray:
    if image.dtype != np.uint8:
        raise ValueError(f"{name}: in-memory images must be uint8, got {image.dtype}")
    if image.ndim == 2 or (image.ndim == 3 and image.shape[2] == 1):
        return np.repeat(image.reshape(image.shape[0], image.shape[1], 1), 3, axis=2)
    if image.ndim == 3 and image.shape[2] in (3, 4):
        return np.ascontiguousarray(image[:, :, :3])
    raise ValueError(f"{name}: expected an (H, W) or (H, W, 3) image, got shape {image.shape}")


def read_image(path: PathLike) -> np.ndarray:
    """Read a file as RGB uint8; grayscale becomes 3 channels. EXIF orientation is ignored
    (annotations refer to the stored pixel grid, as MATLAB's ``imread`` returns it)."""
    from landmarks.data.checks import truncation

    path = Path(path)
    if not path.is_file():
        raise ValueError(f"cannot read image {path}: no such file")
    data = path.read_bytes()
    problem = truncation(data)  # OpenCV would return grey rows for the missing part, with no file name
    if problem:
        raise ValueError(f"cannot read image {path}: {problem}")
    image = cv2.imdecode(np.frombuffer(data, np.uint8), cv2.IMREAD_COLOR | cv2.IMREAD_IGNORE_ORIENTATION)
    if image is None:
        raise ValueError(f"cannot read image {path}: not an image OpenCV can decode")
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


# --------------------------------------------------------------------------- builders
def _require(path: Path, dataset: str, what: str) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{dataset}: {what} not found: {path}. Download the data from "
                                f"{DATA_SOURCES[dataset]} and keep the official folder layout.")
    return path


def _choose(split: str, choices: Sequence[str], dataset: str) -> str:
    if split not in choices:
        raise ValueError(f"{dataset}: unknown split {split!r}; choose one of {list(choices)}")
    return split


_300W_FOLDERS = {
    "train": ("afw", "helen/trainset", "lfpw/trainset"),
    "common": ("helen/testset", "lfpw/testset"),
    "challenge": ("ibug",),
}
_300W_FOLDERS["full"] = _300W_FOLDERS["common"] + _300W_FOLDERS["challenge"]
_300W_FOLDERS["test"] = _300W_FOLDERS["full"]
#: Image files looked for beside an annotation (any letter case).
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp")


def image_beside(annotation: Path) -> Path:
    """The image with the same name as ``annotation`` in its folder (any of :data:`IMAGE_SUFFIXES`,
    any letter case); ``FileNotFoundError`` naming the annotation when there is none."""
    for candidate in sorted(annotation.parent.glob(annotation.stem + ".*")):
        if candidate.suffix.lower() in IMAGE_SUFFIXES and candidate.is_file():
            return candidate
    raise FileNotFoundError(f"no image ({'/'.join(IMAGE_SUFFIXES)}) beside {annotation}")


def load_300w(root: PathLike, split: str = "train", size: int = 256, box_scale: float = 1.1,
              transform: Callable[[dict], dict] | None = None, **crops: Any) -> LandmarkDataset:
    """300W (68 points) from the iBUG download.

    ``root`` holds ``afw/``, ``helen/trainset/``, ``helen/testset/``, ``lfpw/trainset/``,
    ``lfpw/testset/`` and ``ibug/``, each with images (``.jpg``/``.png``) and a ``.pts`` beside
    each. Splits: ``train`` (afw + helen/trainset + lfpw/trainset, 3148), ``common``
    (helen/testset + lfpw/testset, 554), ``challenge`` (ibug, 135), ``full`` = ``test``
    (common + challenge, 689). Box and crop from the landmarks (x 1.1, as PIPNet).

    A root with only some of the folders (HELEN alone, say) loads those of the split that are
    present and warns which are missing; a split none of whose folders is present is an error.
    ``crops``: ``margin`` and ``cache`` of :class:`LandmarkDataset`.
    """
    root, images, points = Path(root), [], []
    folders = _300W_FOLDERS[_choose(split, list(_300W_FOLDERS), "300w")]
    present = [folder for folder in folders if (root / folder).is_dir()]
    if not present:
        _require(root / folders[0], "300w", f"folder '{folders[0]}' (none of {', '.join(folders)})")
    if len(present) < len(folders):
        missing = [folder for folder in folders if folder not in present]
        warnings.warn(f"300w {split}: loading {', '.join(present)}; not found under {root}: {', '.join(missing)}",
                      stacklevel=2)
    for folder in present:
        directory = root / folder
        annotations = sorted(directory.glob("*.pts"))
        if not annotations:
            raise FileNotFoundError(f"300w: no .pts files in {directory}; see {DATA_SOURCES['300w']}")
        for pts in annotations:
            images.append(image_beside(pts))
            points.append(from_one_based(read_pts(pts, W300.num_points)))
    return LandmarkDataset(images, np.asarray(points), W300, size=size, box_scale=box_scale, transform=transform,
                           **crops)




_WFLW_LIST = "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_{}.txt"


def load_wflw(root: PathLike, split: str = "train", subset: str | None = None, size: int = 256,
              box_scale: float = 1.2, transform: Callable[[dict], dict] | None = None,
              crop_from: str = "landmarks", **crops: Any) -> LandmarkDataset:
    """WFLW (98 points): ``root/WFLW_annotations/list_98pt_rect_attr_train_test/`` and ``root/WFLW_images/``.

    Splits ``train`` (7500) and ``test`` (2500); ``subset`` keeps the faces with one attribute:
    ``pose``, ``expression``, ``illumination``, ``makeup``, ``occlusion`` or ``blur``. The
    sample's ``box`` is the list's rectangle; the crop is built from the landmarks x 1.2
    (``crop_from="box"`` uses the rectangle). Coordinates are used as stored (see module doc).
    """
    root = Path(root)
    _choose(split, ("train", "test"), "wflw")
    if subset is not None:
        _choose(subset, WFLW_ATTRIBUTES, "wflw subset")
    records = read_wflw_list(_require(root / _WFLW_LIST.format(split), "wflw", "annotation list"))
    folder = _require(root / "WFLW_images", "wflw", "image folder")
    records = [r for r in records if subset is None or r.has(subset)]
    if not records:
        raise ValueError(f"wflw: no faces in split {split!r} subset {subset!r}")
    return LandmarkDataset(
        [folder / r.image for r in records], np.stack([r.landmarks for r in records]), WFLW,
        boxes=np.stack([r.box for r in records]), size=size, box_scale=box_scale,
        transform=transform, crop_from=crop_from, **crops,
    )


def load_cofw(root: PathLike, split: str = "train", size: int = 256, box_scale: float = 1.0,
              transform: Callable[[dict], dict] | None = None, **crops: Any) -> LandmarkDataset:
    """COFW (29 points) from ``root/COFW_train_color.mat`` or ``root/COFW_test_color.mat``.

    Splits ``train`` (1345) and ``test`` (507); images are held in memory. ``visible`` is the
    negated occlusion flag. The crop is the given box made square (x 1.0 by default).
    """
    name = f"COFW_{_choose(split, ('train', 'test'), 'cofw')}_color.mat"
    data = read_cofw_mat(_require(Path(root) / name, "cofw", "annotation file"))
    names = [f"{name}[{k}]" for k in range(len(data.images))]
    return LandmarkDataset(
        data.images, from_one_based(data.landmarks), COFW, boxes=from_one_based(data.boxes),
        size=size, box_scale=box_scale, transform=transform, visible=~data.occluded, names=names, **crops,
    )


def load_aflw(root: PathLike, split: str = "train", size: int = 256, box_scale: float = 1.2,
              transform: Callable[[dict], dict] | None = None, num_train: int = 20000, **crops: Any) -> LandmarkDataset:
    """AFLW-19 from ``root/AFLWinfo_release.mat`` and images under ``root/data/flickr/``.

    ``train`` = the first ``num_train`` (20,000) indices of ``ra``, ``test`` = the rest (4,386),
    ``frontal`` = the test faces with all 19 points visible (1,314). The sample's ``box`` is the
    file's ``bbox`` (box-size NME divides by it); the crop is that box made square x 1.2 (our
    choice: the reference gives no AFLW crop scale).
    """
    root = Path(root)
    _choose(split, ("train", "test", "frontal"), "aflw")
    data = read_aflw_mat(_require(root / "AFLWinfo_release.mat", "aflw", "annotation file"))
    folder = _require(root / "data" / "flickr", "aflw", "image folder")
    chosen = data.order - 1
    chosen = chosen[:num_train] if split == "train" else chosen[num_train:]
    if split == "frontal":
        chosen = chosen[data.visible[chosen].all(axis=1)]
    return LandmarkDataset(
        [folder / data.names[k] for k in chosen], from_one_based(data.landmarks[chosen]), AFLW,
        boxes=from_one_based(data.boxes[chosen]), size=size, box_scale=box_scale,
        transform=transform, visible=data.visible[chosen], **crops,
    )
