"""Self-training on unlabelled faces: transform ensembles, pseudo-labels, curriculum, TSD / TMD splits.

PIPNet's second idea (paper draft, Sect. 3.2, ``papers/pipnet-eccv-draft.txt``) is *data
distillation* with image translations: a detector trained on the labelled faces predicts landmarks on
shifted copies of every unlabelled face (20 and 30 px up, down, left and right at 256 px), each
prediction is shifted back, the eight are averaged into a pseudo-label, and the detector is trained
again on labelled plus pseudo-labelled faces; the paper repeats this three times. The journal
version adds a curriculum (``REFERENCE.md``): in the first rounds the pseudo-labelled faces only
supervise max-pooled, coarse score maps (2 x 2, then 4 x 4), the labelled faces the full loss.

Pieces, all batched:

- :class:`Translation`, :class:`HorizontalFlip`, :class:`Rotation`, :class:`Identity`: how an image
  batch is changed and how points are moved forward and *back* (exact inverses on points);
  :func:`TRANSLATIONS`, :func:`FLIPS`, :func:`ROTATIONS`, :func:`NONE` build the sets of the
  paper's ablation (Table 7) and :func:`ablation_transforms` picks one by name.
- :func:`shift_images` (integer shifts exact by indexing, fractional ones bilinear) and
  :func:`ensemble_predict`: every transformed copy goes through the model in one (chunked) call.
- :func:`pseudo_label`, :class:`PseudoLabelled`, :class:`Labelled`, :class:`Unlabelled`,
  :class:`TestSet`: test sets are flagged and can never be pseudo-labelled.
- :func:`coarse_score_loss` and :class:`CurriculumPIPTask` (the curriculum; the loss lives here,
  not in :mod:`landmarks.losses`), :func:`self_train` (the rounds).
- :func:`tsd_split`, :func:`tmd_split`, :func:`test_sets`: the paper's two scenarios on synthetic
  domains.

Pixel convention (:mod:`landmarks.data.coords`): an image of width ``W`` covers ``[0, W]``, pixel ``j``
is ``[j, j + 1]`` with its centre at ``j + 0.5``. Shifting an image by ``(dx, dy)`` moves what was
at ``(x, y)`` to ``(x + dx, y + dy)``, so pixel ``(row i, column j)`` moves to
``(i + dy, j + dx)``; uncovered pixels are zero (black). A horizontal flip maps ``x`` to ``W - x``
and relabels the points with the layout's ``flip_permutation``. A rotation by ``angle`` degrees
turns the image counter-clockwise *as seen on screen* (torchvision's sense) about its centre
``(W / 2, H / 2)``. Images are resampled with ``grid_sample`` (``align_corners=False``, which uses
this same convention) whenever the motion does not map pixels onto pixels.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import ConcatDataset, Dataset, Subset

from landmarks.data.coords import pixel_centres
from landmarks.data.layouts import Layout, get_layout
from landmarks.losses import pip_loss
from landmarks.codecs.pip import pip_targets
from landmarks.data.transforms import Augmented

__all__ = [
    "FLIPS",
    "NONE",
    "ROTATIONS",
    "TRANSLATIONS",
    "CurriculumPIPTask",
    "HorizontalFlip",
    "Identity",
    "Labelled",
    "PseudoLabelled",
    "Rotation",
    "Round",
    "TestSet",
    "Transform",
    "Translation",
    "Unlabelled",
    "ablation_transforms",
    "coarse_score_loss",
    "ensemble_predict",
    "is_test_set",
    "predictor",
    "pseudo_label",
    "self_train",
    "shift_images",
    "test_sets",
    "tmd_split",
    "translation_offsets",
    "tsd_split",
]

PredictFn = Callable[[Tensor], Tensor]


# --------------------------------------------------------------------------- image warping helpers
def _check_images(images: Tensor) -> Tensor:
    if not isinstance(images, Tensor) or images.ndim != 4:
        raise ValueError(f"images: expected a (B, C, H, W) tensor, got "
                         f"{tuple(images.shape) if isinstance(images, Tensor) else type(images).__name__}")
    return images


def _warp(images: Tensor, source_of: Callable[[Tensor, Tensor], tuple[Tensor, Tensor]]) -> Tensor:
    """Resample ``images``: output pixel centre ``(x, y)`` reads the input at ``source_of(x, y)``.

    ``source_of`` gets and returns continuous coordinates of shape ``(B or 1, H, W)``; bilinear
    interpolation, zero outside the image.
    """
    b, _, h, w = images.shape
    xs, ys = pixel_centres(h, w, dtype=images.dtype)
    grid_y, grid_x = torch.meshgrid(ys.to(images.device), xs.to(images.device), indexing="ij")
    sx, sy = source_of(grid_x[None], grid_y[None])
    # align_corners=False: normalised -1 is the image's left edge (x = 0), +1 its right edge (x = W).
    grid = torch.stack([2 * sx / w - 1, 2 * sy / h - 1], -1).expand(b, h, w, 2)
    return F.grid_sample(images, grid, mode="bilinear", padding_mode="zeros", align_corners=False)


def _offsets_tensor(offsets: Any, batch: int, device: torch.device) -> Tensor:
    off = torch.as_tensor(offsets, dtype=torch.float64, device=device)
    if off.shape == (2,):
        off = off.expand(batch, 2)
    if off.shape != (batch, 2) or not torch.isfinite(off).all():
        raise ValueError(f"offsets: expected finite (dx, dy) or ({batch}, 2), got {tuple(off.shape)}")
    return off


def shift_images(images: Tensor, offsets: Any) -> Tensor:
    """Translate a batch of images by ``(dx, dy)`` pixels, filling uncovered pixels with zeros.

    Args:
        images: ``(B, C, H, W)``.
        offsets: one ``(dx, dy)`` for the whole batch, or ``(B, 2)``, one per image. Positive ``dx``
            moves the content right, positive ``dy`` down: a landmark at ``(x, y)`` ends up at
            ``(x + dx, y + dy)``.

    When every offset is a whole number the result is exact (pixels are copied by index); otherwise
    it is a bilinear resampling (``grid_sample``), which keeps each image's total brightness and its
    intensity centroid moving exactly with the shift as long as nothing leaves the frame.
    """
    images = _check_images(images)
    b, _, h, w = images.shape
    off = _offsets_tensor(offsets, b, images.device)
    if torch.equal(off, off.round()):
        dx, dy = off[:, 0].long(), off[:, 1].long()
        cols = torch.arange(w, device=images.device)[None, :] - dx[:, None]  # (B, W): source column
        rows = torch.arange(h, device=images.device)[None, :] - dy[:, None]  # (B, H): source row
        valid = ((rows >= 0) & (rows < h))[:, :, None] & ((cols >= 0) & (cols < w))[:, None, :]  # (B, H, W)
        batch = torch.arange(b, device=images.device)[:, None, None]
        picked = images.permute(0, 2, 3, 1)[batch, rows.clamp(0, h - 1)[:, :, None], cols.clamp(0, w - 1)[:, None, :]]
        return (picked * valid[..., None].to(images.dtype)).permute(0, 3, 1, 2).contiguous()
    dxy = off.to(images.dtype)[:, :, None, None]
    return _warp(images, lambda x, y: (x - dxy[:, 0], y - dxy[:, 1]))


# --------------------------------------------------------------------------- transforms
class Transform(Protocol):
    """One view of an image for the ensemble: how to make it and how to map its points back.

    ``size`` is ``(height, width)`` of the images; points are ``(..., N, 2)`` in pixels.
    ``inverse_points(points(p)) == p`` holds exactly up to float rounding.
    """

    name: str

    def images(self, images: Tensor) -> Tensor: ...

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor: ...

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor: ...


@dataclass(frozen=True)
class Identity:
    """The untouched image."""

    name: str = "identity"

    def images(self, images: Tensor) -> Tensor:
        return images

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return points

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return points


@dataclass(frozen=True)
class Translation:
    """Shift by ``(dx, dy)`` pixels (see :func:`shift_images`); points move by the same amount."""

    dx: float
    dy: float
    name: str = "translation"

    def images(self, images: Tensor) -> Tensor:
        return shift_images(images, (self.dx, self.dy))

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return points + points.new_tensor([self.dx, self.dy])

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return points - points.new_tensor([self.dx, self.dy])


@dataclass(frozen=True)
class HorizontalFlip:
    """Mirror left-right: ``x -> W - x`` and relabel with ``permutation`` (``flipped[i] = original[perm[i]]``)."""

    permutation: tuple[int, ...]
    name: str = "flip"

    def __post_init__(self) -> None:
        if sorted(self.permutation) != list(range(len(self.permutation))):
            raise ValueError(f"flip permutation {self.permutation} is not a permutation of 0..N-1")

    @classmethod
    def for_layout(cls, layout: str | Layout) -> HorizontalFlip:
        return cls(tuple(get_layout(layout).flip_permutation))

    def images(self, images: Tensor) -> Tensor:
        return torch.flip(images, dims=[-1])

    def _check(self, points: Tensor) -> None:
        if points.shape[-2] != len(self.permutation):
            raise ValueError(f"flip: {points.shape[-2]} points, but the permutation has {len(self.permutation)}")

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        self._check(points)
        mirrored = torch.stack([size[1] - points[..., 0], points[..., 1]], -1)
        return mirrored[..., list(self.permutation), :]

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        self._check(points)
        inverse = torch.argsort(torch.tensor(self.permutation)).tolist()
        relabelled = points[..., inverse, :]
        return torch.stack([size[1] - relabelled[..., 0], relabelled[..., 1]], -1)


@dataclass(frozen=True)
class Rotation:
    """Rotate by ``angle`` degrees counter-clockwise on screen about the image centre."""

    angle: float
    name: str = "rotation"

    def _turn(self, points: Tensor, size: tuple[int, int], angle: float) -> Tensor:
        h, w = size
        cos, sin = math.cos(math.radians(angle)), math.sin(math.radians(angle))
        u, v = points[..., 0] - w / 2, points[..., 1] - h / 2
        # y grows downwards, so a counter-clockwise turn on screen sends +x towards -y.
        return torch.stack([w / 2 + cos * u + sin * v, h / 2 - sin * u + cos * v], -1)

    def images(self, images: Tensor) -> Tensor:
        size = tuple(images.shape[-2:])
        return _warp(images, lambda x, y: self._turn(torch.stack([x, y], -1), size, -self.angle).unbind(-1))

    def points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return self._turn(points, size, self.angle)

    def inverse_points(self, points: Tensor, size: tuple[int, int]) -> Tensor:
        return self._turn(points, size, -self.angle)


def translation_offsets(image_size: int, base: int = 256, shifts: Sequence[float] = (20, 30)
                        ) -> list[tuple[float, float]]:
    """The paper's eight shifts, scaled from a ``base`` px input to ``image_size``.

    For each shift ``s`` (in pixels at ``base``): right, left, down, up, i.e. ``(s', 0), (-s', 0),
    (0, s'), (0, -s')`` with ``s' = s * image_size / base``. At 256 px: 20 and 30 px; at 128 px: 10
    and 15 px; at 64 px: 5 and 7.5 px (a fractional shift, resampled bilinearly).
    """
    if image_size <= 0 or base <= 0:
        raise ValueError(f"image_size and base must be positive, got {image_size} and {base}")
    scale = image_size / base
    out: list[tuple[float, float]] = []
    for s in shifts:
        d = float(s) * scale
        out += [(d, 0.0), (-d, 0.0), (0.0, d), (0.0, -d)]
    return out


def NONE() -> list[Transform]:
    """No ensemble: the plain prediction (plain self-training)."""
    return [Identity()]


def TRANSLATIONS(image_size: int, base: int = 256, shifts: Sequence[float] = (20, 30)) -> list[Transform]:
    """The paper's eight translations (the unshifted image is not among them, as in the paper)."""
    return [Translation(dx, dy) for dx, dy in translation_offsets(image_size, base, shifts)]


def FLIPS(layout: str | Layout) -> list[Transform]:
    """The image and its mirror image (data distillation's flip ensemble)."""
    return [Identity(), HorizontalFlip.for_layout(layout)]


def ROTATIONS(angles: Sequence[float] = (-20, -10, 10, 20)) -> list[Transform]:
    """Rotations about the centre by ``angles`` degrees (the paper does not give its angles)."""
    return [Rotation(float(a)) for a in angles]


def ablation_transforms(name: str, image_size: int, layout: str | Layout = "300w") -> list[Transform]:
    """The transform set of the paper's ablation (Table 7) by name: none, flip, rotation, translation."""
    options = {"none": NONE, "flip": lambda: FLIPS(layout), "rotation": ROTATIONS,
               "translation": lambda: TRANSLATIONS(image_size)}
    if name not in options:
        raise ValueError(f"unknown transform set {name!r}; choose one of {sorted(options)}")
    return options[name]()


def ensemble_predict(predict_fn: PredictFn, images: Tensor, transforms: Sequence[Transform],
                     chunk_size: int | None = None) -> tuple[Tensor, Tensor]:
    """Predict on every transformed copy of ``images`` and average the predictions mapped back.

    Args:
        predict_fn: ``(K, C, H, W) -> (K, N, 2)`` landmarks in pixels of its input.
        images: ``(B, C, H, W)``.
        transforms: the ``T`` views (:class:`Transform`).
        chunk_size: at most this many images per ``predict_fn`` call (default: all ``T * B`` at once).

    Returns ``(mean, all)``: ``mean`` ``(B, N, 2)`` and ``all`` ``(T, B, N, 2)``, every prediction in
    the coordinates of the original images.
    """
    images = _check_images(images)
    if not transforms:
        raise ValueError("ensemble_predict: no transforms given (use NONE() for the plain prediction)")
    b = images.shape[0]
    size = (int(images.shape[-2]), int(images.shape[-1]))
    copies = torch.cat([t.images(images) for t in transforms])  # (T * B, C, H, W), transform-major
    step = chunk_size or copies.shape[0]
    predictions = torch.cat([predict_fn(copies[i:i + step]) for i in range(0, copies.shape[0], step)])
    per_view = predictions.view(len(transforms), b, *predictions.shape[1:])
    back = torch.stack([t.inverse_points(p, size) for t, p in zip(transforms, per_view)])
    return back.mean(0), back


# --------------------------------------------------------------------------- datasets
class _Wrapper(Dataset):
    """A view of another dataset: same length, same layout, samples changed by ``__getitem__``."""

    def __init__(self, dataset: Dataset) -> None:
        self.dataset = dataset
        layout = getattr(dataset, "layout", None)
        if layout is not None:
            self.layout = layout

    def __len__(self) -> int:
        return len(self.dataset)  # type: ignore[arg-type]


class TestSet(_Wrapper):
    """A labelled test set: usable for evaluation, refused by :func:`pseudo_label`."""

    is_test = True
    __test__ = False  # not a pytest test class

    def __getitem__(self, index: int) -> dict[str, Any]:
        return self.dataset[index]

    def __repr__(self) -> str:
        return f"TestSet({self.dataset!r})"


def is_test_set(dataset: Dataset) -> bool:
    """True if ``dataset`` or anything it wraps (``Subset``, ``ConcatDataset``, our wrappers) is flagged
    ``is_test``."""
    if getattr(dataset, "is_test", False):
        return True
    inner = getattr(dataset, "dataset", None)
    if inner is not None and is_test_set(inner):
        return True
    return any(is_test_set(d) for d in getattr(dataset, "datasets", ()))


def _refuse_test(dataset: Dataset) -> None:
    if is_test_set(dataset):
        raise ValueError("pseudo-labels are never made from labelled test images: this dataset is (or wraps) "
                         "a test set")


class Unlabelled(_Wrapper):
    """Images of ``dataset`` with their labels removed (only ``"image"`` and ``"index"`` remain).

    The original stays reachable as ``.dataset`` for measuring pseudo-label quality.
    """

    def __init__(self, dataset: Dataset) -> None:
        _refuse_test(dataset)
        super().__init__(dataset)

    def __getitem__(self, index: int) -> dict[str, Any]:
        return {"image": self.dataset[index]["image"], "index": index}


def _box(landmarks: Tensor) -> Tensor:
    return torch.cat([landmarks.min(0).values, landmarks.max(0).values])


class Labelled(_Wrapper):
    """Manually labelled training samples in the common training form, flagged ``"pseudo": False``.

    Samples keep ``"image"``, ``"landmarks"``, ``"box"``, ``"visible"`` (all True if absent) and gain
    ``"pseudo"``, so they can be concatenated with :class:`PseudoLabelled` samples and collated.
    """

    pseudo = False

    def __getitem__(self, index: int) -> dict[str, Any]:
        sample = self.dataset[index]
        landmarks = sample["landmarks"]
        return {"image": sample["image"], "landmarks": landmarks,
                "box": sample["box"] if "box" in sample else _box(landmarks),
                "visible": sample.get("visible", torch.ones(landmarks.shape[0], dtype=torch.bool)),
                "pseudo": self.pseudo}


class PseudoLabelled(Labelled):
    """The images of an unlabelled ``dataset`` with ``landmarks`` ``(M, N, 2)`` as their labels.

    Samples: ``"image"``, ``"landmarks"`` (the pseudo-label), ``"box"`` (around it), ``"visible"``
    (all True) and ``"pseudo": True``. Labels the dataset may carry are ignored.
    """

    pseudo = True

    def __init__(self, dataset: Dataset, landmarks: Tensor) -> None:
        _refuse_test(dataset)
        if landmarks.ndim != 3 or landmarks.shape[-1] != 2 or landmarks.shape[0] != len(dataset):  # type: ignore[arg-type]
            raise ValueError(f"pseudo-labels: expected ({len(dataset)}, N, 2), got {tuple(landmarks.shape)}")  # type: ignore[arg-type]
        super().__init__(dataset)
        self.landmarks = landmarks.detach().float().cpu()

    def __getitem__(self, index: int) -> dict[str, Any]:
        points = self.landmarks[index]
        return {"image": self.dataset[index]["image"], "landmarks": points, "box": _box(points),
                "visible": torch.ones(points.shape[0], dtype=torch.bool), "pseudo": True}


def predictor(model: nn.Module, task: Any) -> PredictFn:
    """``images -> (B, N, 2)`` landmarks of ``model`` decoded by ``task``, without gradients (the
    ``predict_fn`` of :func:`ensemble_predict`). The model is used in the mode it is in."""
    def predict(images: Tensor) -> Tensor:
        with torch.no_grad():
            return task.predict(model(images), {"image": images}).float()
    return predict


@torch.no_grad()
def pseudo_label(model: nn.Module, task: Any, dataset: Dataset, transforms: Sequence[Transform],
                 batch_size: int = 32, device: str | torch.device = "cpu", chunk_size: int | None = None) -> Tensor:
    """Ensemble pseudo-labels ``(M, N, 2)`` for every image of ``dataset`` (in dataset order).

    Each batch of ``batch_size`` images is expanded into its ``T`` views and predicted in one call
    (or in ``chunk_size`` pieces). The model is put in eval mode and given back in the mode it had.

    Raises:
        ValueError: ``dataset`` is (or wraps) a test set: pseudo-labels are never made from labelled
            test images.
    """
    _refuse_test(dataset)
    device = torch.device(device)
    was_training = model.training
    model.eval().to(device)
    predict = predictor(model, task)
    labels = []
    try:
        for start in range(0, len(dataset), batch_size):  # type: ignore[arg-type]
            stop = min(start + batch_size, len(dataset))  # type: ignore[arg-type]
            images = torch.stack([dataset[i]["image"] for i in range(start, stop)]).to(device)
            mean, _ = ensemble_predict(predict, images, transforms, chunk_size)
            labels.append(mean.cpu())
    finally:
        model.train(was_training)
    return torch.cat(labels)


# --------------------------------------------------------------------------- curriculum
def coarse_score_loss(score: Tensor, target_score: Tensor, pool: int) -> Tensor:
    """Mean squared error between score maps max-pooled to ``pool x pool`` cells.

    Both ``(B, N, h, w)`` maps are reduced with ``adaptive_max_pool2d`` to ``(B, N, p, p)`` with
    ``p = min(pool, h)`` rows and ``min(pool, w)`` columns (no finer than the maps themselves); the
    loss is ``1/(B N p p) * sum (pooled(S') - pooled(S*))^2``. A pseudo-label then only says in which
    coarse region of the face crop a landmark lies, not in which cell.
    """
    if score.shape != target_score.shape or score.ndim != 4:
        raise ValueError(f"coarse_score_loss: score {tuple(score.shape)} and target {tuple(target_score.shape)} "
                         "must be equal (B, N, h, w)")
    if pool < 1:
        raise ValueError(f"coarse_score_loss: pool must be >= 1, got {pool}")
    out = (min(pool, score.shape[-2]), min(pool, score.shape[-1]))
    return (F.adaptive_max_pool2d(score, out) - F.adaptive_max_pool2d(target_score, out)).square().mean()


@dataclass
class CurriculumPIPTask:
    """A PIP task whose pseudo-labelled samples only supervise coarse score maps.

    Samples with ``batch["pseudo"]`` False get the full :func:`landmarks.losses.pip_loss` of
    ``base``; pseudo-labelled ones get ``base.alpha`` times the mean of :func:`coarse_score_loss`
    over ``pool_sizes``. The two parts are weighted by their share of the batch, so every sample
    counts equally: ``total = (n_l / B) * pip_total(labelled) + (n_p / B) * alpha * coarse(pseudo)``.
    Decoding is ``base``'s. Losses reported: ``score``, ``offset``, ``neighbour`` (labelled part),
    ``coarse`` (pseudo part) and ``total``.
    """

    base: Any
    pool_sizes: tuple[int, ...] = (2,)

    @property
    def net_stride(self) -> int:
        return self.base.net_stride

    def loss(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> dict[str, Tensor]:
        landmarks = batch["landmarks"]
        b = landmarks.shape[0]
        pseudo = torch.as_tensor(batch.get("pseudo", torch.zeros(b, dtype=torch.bool)),
                                 device=landmarks.device).bool().reshape(b)
        size = tuple(int(v) for v in batch["image"].shape[-2:])
        neighbours = None if self.base.neighbours is None else self.base.neighbours.to(landmarks.device)
        zero = outputs["score"].sum() * 0  # keeps the graph when a part is empty
        result = {"score": zero, "offset": zero, "neighbour": zero, "coarse": zero}
        labelled_total, coarse_total = zero, zero
        keep = ~pseudo
        if keep.any():
            part = {k: v[keep] for k, v in outputs.items()}
            targets = pip_targets(landmarks[keep], size, self.base.net_stride, neighbours)
            losses = pip_loss(part, targets, self.base.alpha, self.base.beta)
            result.update(score=losses["score"], offset=losses["offset"], neighbour=losses["neighbour"])
            labelled_total = losses["total"]
        if pseudo.any():
            target = pip_targets(landmarks[pseudo], size, self.base.net_stride)["score"]
            score = outputs["score"][pseudo]
            coarse = torch.stack([coarse_score_loss(score, target, p) for p in self.pool_sizes]).mean()
            result["coarse"] = coarse
            coarse_total = self.base.alpha * coarse
        n_p = pseudo.sum().to(zero.dtype)
        result["total"] = ((b - n_p) * labelled_total + n_p * coarse_total) / b
        return result

    def predict(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Any]) -> Tensor:
        return self.base.predict(outputs, batch)


# --------------------------------------------------------------------------- self-training
@dataclass
class Round:
    """One round of :func:`self_train`; unpacks as ``model, task, history``.

    ``task`` is the task trained with (a :class:`CurriculumPIPTask` in curriculum rounds; its
    ``predict`` is the plain one). ``pseudo_labels`` is ``None`` in round 0; ``train_size`` counts
    the training samples (labelled + pseudo-labelled).
    """

    model: nn.Module
    task: Any
    history: Any
    spec: Any
    train_size: int
    pseudo_labels: Tensor | None = None
    pools: tuple[int, ...] | None = None

    def __iter__(self) -> Iterator[Any]:
        return iter((self.model, self.task, self.history))


def self_train(spec: Any, labelled: Dataset, unlabelled: Dataset, profile: Any, rounds: int = 3,
               transforms: Sequence[Transform] | None = None, curriculum: bool = False,
               pool_schedule: Sequence[Sequence[int]] = ((2,), (4,)), batch_size: int | None = None,
               val_data: Dataset | None = None, seed: int = 0, device: str | torch.device = "cpu",
               progress: bool = False, initial: tuple[nn.Module, Any] | None = None,
               augment: Callable[[dict], dict] | None = None, **fit_options: Any) -> list[Round]:
    """Data distillation: train, pseudo-label, retrain on both; ``rounds`` trainings in all.

    Round 0 trains ``spec`` (a :class:`landmarks.experiments.ModelSpec`) on ``labelled`` with the
    ``profile``'s schedule. Round ``r >= 1`` pseudo-labels ``unlabelled`` with round ``r - 1``'s model
    through the ``transforms`` ensemble (default: :func:`TRANSLATIONS` for ``spec.image_size``) and
    trains a fresh model (same seed) on ``labelled + pseudo-labelled``. The paper's "three iterations"
    of distillation are ``rounds=4`` here (one supervised training, three retrainings).

    With ``curriculum=True`` (PIP heads only) round ``r`` uses :class:`CurriculumPIPTask` with the
    pools ``pool_schedule[r - 1]``; rounds past the schedule supervise pseudo-labels fully.

    ``batch_size`` is for pseudo-labelling (default: the profile's); ``fit_options`` go to
    :func:`landmarks.train.fit`. Neighbour indices come from the labelled shapes only. ``initial``
    (a trained ``(model, task)``) stands in for round 0, which is then not trained (its history is
    ``None``), so several self-training runs can share one supervised model. ``augment`` (a sample
    transform, e.g. :func:`landmarks.transforms.geometric_augmentation`) is applied to the labelled and
    pseudo-labelled training samples of every round, never to the images being pseudo-labelled.
    Returns one
    :class:`Round` per round.
    """
    from landmarks.experiments import (
        build_model,
        build_task,
        fit_schedule,
        training_landmarks,
        with_neighbours,
    )
    from landmarks.training.loop import fit

    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if curriculum and spec.head != "pip":
        raise ValueError(f"the curriculum supervises coarse score maps, so it needs a PIP head, not {spec.head!r}")
    for name, data in (("labelled", labelled), ("unlabelled", unlabelled)):
        if is_test_set(data):
            raise ValueError(f"the {name} training data is (or wraps) a test set")
    transforms = list(transforms) if transforms is not None else TRANSLATIONS(spec.image_size)
    if spec.head == "pip":
        spec = with_neighbours(spec, training_landmarks(labelled))
    options = {**fit_schedule(profile), **fit_options}
    labelled_set = Labelled(labelled)
    results: list[Round] = []
    previous: Round | None = None
    if initial is not None:
        previous = Round(initial[0], initial[1], None, spec, len(labelled_set))
        results.append(previous)
    for r in range(len(results), rounds):
        pools, labels = None, None
        train_data: Dataset = labelled_set
        torch.manual_seed(seed)
        model, task = build_model(spec), build_task(spec)
        if previous is not None:
            labels = pseudo_label(previous.model, previous.task, unlabelled, transforms,
                                  batch_size or profile.batch_size, device=device)
            train_data = ConcatDataset([labelled_set, PseudoLabelled(unlabelled, labels)])
            if curriculum and r - 1 < len(pool_schedule):
                pools = tuple(int(p) for p in pool_schedule[r - 1])
                task = CurriculumPIPTask(task, pools)
        if augment is not None:
            train_data = Augmented(train_data, augment)
        history = fit(model, task, train_data, val_data, seed=seed, layout=spec.layout, progress=progress,
                      device=device, **options)
        previous = Round(model, task, history, spec, len(train_data), labels, pools)
        results.append(previous)
    return results


# --------------------------------------------------------------------------- scenarios
def _faces(domain: str, length: int, seed: int, image_size: int, layout: str) -> Dataset:
    from landmarks.data.synthetic import SyntheticFaces

    return SyntheticFaces(domain, image_size, length=length, seed=seed, layout=layout)


def tsd_split(domain: str, fraction: float, total: int, seed: int, image_size: int = 128,
              layout: str = "300w") -> tuple[Dataset, Unlabelled]:
    """Testing on a Single Domain: ``total`` faces of one domain, a ``fraction`` of them labelled.

    The faces are ``SyntheticFaces(domain, image_size, total, seed * 100)``; a permutation drawn from
    ``seed`` picks ``round(fraction * total)`` of them as the labelled set (a ``Subset``), the rest
    are :class:`Unlabelled`. Build the test set with :func:`test_sets` and another seed.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}")
    n_labelled = round(fraction * total)
    if not 0 < n_labelled < total:
        raise ValueError(f"{fraction} of {total} faces leaves one of the two parts empty")
    faces = _faces(domain, total, seed * 100, image_size, layout)
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).tolist()
    labelled = Subset(faces, order[:n_labelled])
    labelled.layout = faces.layout  # type: ignore[attr-defined]
    return labelled, Unlabelled(Subset(faces, order[n_labelled:]))


def tmd_split(labelled_domains: Sequence[str], unlabelled_domains: Sequence[str], sizes: tuple[int, int],
              seed: int, image_size: int = 128, layout: str = "300w") -> tuple[Dataset, Unlabelled]:
    """Testing on Multiple Domains: labelled faces from some domains, unlabelled ones from others.

    ``sizes = (labelled_per_domain, unlabelled_per_domain)``. Domain ``k`` of the concatenated list
    ``labelled_domains + unlabelled_domains`` uses seed ``seed * 100 + k``. The two lists must be
    disjoint (as in the paper, where no domain is both labelled and unlabelled).
    """
    overlap = set(labelled_domains) & set(unlabelled_domains)
    if overlap:
        raise ValueError(f"domains {sorted(overlap)} are both labelled and unlabelled")
    if not labelled_domains or not unlabelled_domains:
        raise ValueError("tmd_split needs at least one labelled and one unlabelled domain")
    n_lab, n_unlab = sizes
    domains = list(labelled_domains) + list(unlabelled_domains)
    sets = [_faces(d, n_lab if k < len(labelled_domains) else n_unlab, seed * 100 + k, image_size, layout)
            for k, d in enumerate(domains)]
    labelled = ConcatDataset(sets[:len(labelled_domains)])
    labelled.layout = sets[0].layout  # type: ignore[attr-defined]
    return labelled, Unlabelled(ConcatDataset(sets[len(labelled_domains):]))


def test_sets(domains: Sequence[str], length: int, seed: int, image_size: int = 128,
              layout: str = "300w", train_seed: int | None = None) -> dict[str, TestSet]:
    """One labelled :class:`TestSet` per domain (domain ``k`` seeded ``seed * 100 + k``).

    Give the training split's ``train_seed`` to have a clash refused: with ``seed != train_seed``
    the test faces are drawn from other seeds than any training face of :func:`tsd_split` /
    :func:`tmd_split`.
    """
    if train_seed is not None and seed == train_seed:
        raise ValueError(f"test seed {seed} equals the training seed: the test faces would repeat training faces")
    return {d: TestSet(_faces(d, length, seed * 100 + k, image_size, layout)) for k, d in enumerate(domains)}


test_sets.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module
