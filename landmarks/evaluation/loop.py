"""The one inference loop over a dataset, and the evaluation built on it.

:func:`predictions` runs a :class:`~landmarks.detector.Detector` over a dataset of input crops in
batches (evaluation mode, no gradients, the detector's device) and yields every batch with its raw
outputs and decoded landmarks. Everything that scores a detector goes through it: :func:`evaluate`
(NME, FR, AUC), the validation of :func:`landmarks.training.loop.fit`, the position probes of
PIPNet, the stage-by-stage scores of the fine-grained models and the spread measurements of
LaplaceKL::

    results = evaluate(detector, test_set)            # {"nme", "fr", "auc", "per_image", "predictions", "norm"}
    for batch, outputs, points in predictions(detector, test_set, outputs=True):
        ...
"""
from __future__ import annotations

from typing import Any, Iterator, Mapping

import torch
from torch import Tensor
from torch.utils.data import DataLoader, Dataset

from landmarks.data.layouts import Layout, conversion_matrix, get_layout
from landmarks.evaluation.metrics import nme, summarise

__all__ = ["loader", "to_device", "predictions", "evaluate", "evaluate_across", "layout_for", "mean_face_baseline"]


def loader(data: Dataset, batch_size: int, *, sampler=None, num_workers: int = 0, persistent_workers: bool = False,
           pin_memory: bool = False, drop_last: bool = False, generator: torch.Generator | None = None) -> DataLoader:
    """A ``DataLoader`` in dataset order (or ``sampler``'s), the one way the library batches data."""
    return DataLoader(data, batch_size=batch_size, sampler=sampler, shuffle=False, num_workers=num_workers,
                      persistent_workers=persistent_workers and num_workers > 0, pin_memory=pin_memory,
                      drop_last=drop_last, generator=generator)


def to_device(batch: Mapping[str, Any], device: torch.device) -> dict[str, Any]:
    """Tensors of a collated batch moved to ``device``; other entries (strings, lists) kept."""
    return {key: value.to(device, non_blocking=True) if isinstance(value, Tensor) else value
            for key, value in batch.items()}


def layout_for(layout: str | Layout | None, data: Any, detector: Any = None) -> Layout:
    """The layout to score with: the one given, else the data's, else the detector's."""
    for candidate in (layout, getattr(data, "layout", None), getattr(detector, "layout", None)):
        if candidate is not None:
            return get_layout(candidate)
    raise ValueError("pass layout=... to compute NME (neither the data nor the detector has a layout)")


@torch.no_grad()
def predictions(detector: Any, data: Dataset | Tensor, batch_size: int = 32, num_workers: int = 0,
                outputs: bool = False, flip: bool = False) -> Iterator[tuple[dict[str, Any], dict[str, Tensor] | None, Tensor]]:
    """``(batch, raw outputs or None, (B, N, 2) landmarks)`` for every batch of ``data``.

    ``data`` is a dataset of sample dicts with ``"image"`` crops at the detector's input size, or a
    ``(M, 3, H, W)`` tensor of images. Runs in evaluation mode on the detector's device and gives the
    network back in the mode it came in. Batches stay on that device. ``flip``: test-time flip
    (:meth:`~landmarks.detector.Detector.landmarks`); the raw outputs are those of the crops as given.
    """
    device = detector.device
    if isinstance(data, Tensor):
        batches = ({"image": data[start:start + batch_size]} for start in range(0, len(data), batch_size))
    else:
        batches = iter(loader(data, batch_size, num_workers=num_workers, pin_memory=device.type == "cuda"))
    was_training = detector.model.training
    detector.model.eval()
    try:
        for batch in batches:
            batch = to_device(batch, device)
            if flip:
                raw = detector.outputs(batch["image"]) if outputs else None
                yield batch, raw, detector.landmarks(batch["image"], flip=True).float()
                continue
            raw = detector.outputs(batch["image"])
            yield batch, raw if outputs else None, detector.decode(raw, batch["image"]).float()
    finally:
        detector.model.train(was_training)


def evaluate(detector: Any, data: Dataset, layout: str | Layout | None = None, batch_size: int = 32,
             norm: str | None = None, num_workers: int = 0, threshold: float = 0.1, flip: bool = False) -> dict[str, Any]:
    """NME of every image of ``data`` and the summary at ``threshold``.

    ``layout`` defaults to the data's, then the detector's; ``norm`` to the layout's benchmark
    normalisation (the box norms use each sample's ``"box"``). Returns ``{"nme", "fr", "auc"}``
    (fractions, as :func:`landmarks.evaluation.metrics.summarise`), ``"per_image"`` (``(M,)`` NMEs
    in dataset order), ``"predictions"`` (``(M, N, 2)`` pixels) and ``"norm"``. ``flip``: test-time
    flip (the mean of the predictions on each crop and on its mirror image).
    """
    layout = layout_for(layout, data, detector)
    norm = norm or layout.default_norm
    errors, points = [], []
    for batch, _, pred in predictions(detector, data, batch_size, num_workers, flip=flip):
        boxes = batch.get("box") if norm.startswith("box") else None
        if norm.startswith("box") and boxes is None:
            raise ValueError(f"norm {norm!r} needs a 'box' in every sample")
        errors.append(nme(pred, batch["landmarks"].float(), layout, norm, boxes).cpu())
        points.append(pred.cpu())
    per_image = torch.cat(errors)
    return {**summarise(per_image, threshold), "per_image": per_image, "predictions": torch.cat(points), "norm": norm}


def evaluate_across(detector: Any, data: Dataset, common: str | Layout = "aflw", batch_size: int = 32,
                    num_workers: int = 0, threshold: float = 0.1, flip: bool = False) -> dict[str, Any]:
    """The cross-dataset score of the PIPNet paper (ECCV draft, "Testing on Multiple Domains", Table 6):
    predictions and labels, whatever their layouts, are converted to the ``common`` layout (AFLW's 19
    points, :func:`~landmarks.data.layouts.conversion_matrix`) and the mean point error is divided
    by the image width (the crop's side). A 300W model can so be scored on WFLW, COFW or AFLW test
    faces. The same keys as :func:`evaluate`, ``"norm"`` being ``"image-width"``.
    """
    data_layout, model_layout = layout_for(None, data), layout_for(None, None, detector)
    to_common = conversion_matrix(model_layout, common), conversion_matrix(data_layout, common)
    errors, points = [], []
    for batch, _, pred in predictions(detector, data, batch_size, num_workers, flip=flip):
        guess = torch.einsum("mn,bnc->bmc", to_common[0].to(pred), pred)
        truth = torch.einsum("mn,bnc->bmc", to_common[1].to(pred), batch["landmarks"].float())
        errors.append(((guess - truth).norm(dim=-1).mean(-1) / batch["image"].shape[-1]).cpu())
        points.append(guess.cpu())
    per_image = torch.cat(errors)
    return {**summarise(per_image, threshold), "per_image": per_image, "predictions": torch.cat(points),
            "norm": "image-width"}


def mean_face_baseline(train_landmarks: Tensor, data: Dataset, layout: str | Layout | None = None,
                       norm: str | None = None, threshold: float = 0.1) -> dict[str, Any]:
    """The scores of a predictor that ignores the image: every face of ``data`` gets the mean of
    ``train_landmarks`` (``(M, N, 2)`` in crop pixels). The same keys as :func:`evaluate`.

    It is the floor every trained detector must clear: a model no better than this has learned
    where landmarks usually are, not where they are in the image (the book's chapter 1).
    """
    layout = layout_for(layout, data)
    norm = norm or layout.default_norm
    mean = train_landmarks.float().mean(0)
    errors, points = [], []
    for batch in loader(data, 64):
        truth = batch["landmarks"].float()
        guess = mean.expand_as(truth)
        boxes = batch.get("box") if norm.startswith("box") else None
        errors.append(nme(guess, truth, layout, norm, boxes))
        points.append(guess)
    per_image = torch.cat(errors)
    return {**summarise(per_image, threshold), "per_image": per_image, "predictions": torch.cat(points), "norm": norm}
