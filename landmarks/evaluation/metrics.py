"""Evaluation metrics: NME, failure rate, cumulative error distribution (CED) and its AUC.

All functions work in *fractions* (an NME of 0.035 is what papers print as 3.5 %). Landmarks are
``(B, N, 2)`` (a single ``(N, 2)`` face is treated as ``B = 1``); boxes are ``(B, 4)`` as
``(x_min, y_min, x_max, y_max)`` in the same pixel coordinates.

Normalisations (``norm``):

- ``"inter-ocular"``: distance between the layout's two outer eye corners;
- ``"inter-pupil"``: distance between the pupils (:meth:`Layout.pupil_points`; the eye centroids on 300W);
- ``"box-size"``: ``sqrt(w * h)`` of the face box;
- ``"box-diagonal"``: ``sqrt(w**2 + h**2)`` of the face box.

The eye distances are measured on the *ground truth*. The box norms need ``boxes``; to use the
box around the ground-truth landmarks, pass ``boxes=landmark_boxes(target)``.
"""
from __future__ import annotations

import torch
from torch import Tensor

from landmarks.data.coords import bounding_boxes
from landmarks.data.layouts import Layout

NORMS = ("inter-ocular", "inter-pupil", "box-size", "box-diagonal")

__all__ = ["NORMS", "landmark_boxes", "normalising_distance", "nme", "failure_rate", "ced", "auc", "summarise"]


def _batched(points: Tensor) -> Tensor:
    points = torch.as_tensor(points)
    return points.unsqueeze(0) if points.ndim == 2 else points


def _check(points: Tensor, layout: Layout, source: str) -> None:
    """Shape must fit ``layout``; non-finite coordinates are reported with their image indices."""
    if points.ndim != 3 or points.shape[-2:] != (layout.num_points, 2):
        raise ValueError(f"{source}: expected (B, {layout.num_points}, 2) for layout {layout.name!r}, "
                         f"got {tuple(points.shape)}")
    bad = (~torch.isfinite(points).flatten(1).all(1)).nonzero().flatten().tolist()
    if bad:
        raise ValueError(f"{source}: NaN or infinite coordinates in images {bad}")


def landmark_boxes(landmarks: Tensor) -> Tensor:
    """The tight ``(B, 4)`` xyxy box around each face's landmarks."""
    return bounding_boxes(_batched(landmarks))


def _box_distance(boxes: Tensor | None, batch: int, norm: str) -> Tensor:
    if boxes is None:
        raise ValueError(f"norm {norm!r} needs boxes; pass boxes=landmark_boxes(target) for the landmarks' box")
    boxes = torch.as_tensor(boxes).reshape(-1, 4)
    if len(boxes) != batch:
        raise ValueError(f"{len(boxes)} boxes for {batch} faces")
    w, h = boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1]
    return (w * h).clamp(min=0).sqrt() if norm == "box-size" else torch.hypot(w, h)


def normalising_distance(landmarks: Tensor, layout: Layout, norm: str | None = None,
                         boxes: Tensor | None = None, check: bool = True) -> Tensor:
    """Per-face normalising distance ``(B,)``; raises ``ValueError`` if any is zero or not finite
    (``check=False``: returns them as they are, for a caller that names the faces itself)."""
    points = _batched(landmarks)
    _check(points, layout, "landmarks")
    norm = norm or layout.default_norm
    if norm == "inter-ocular":
        if layout.outer_eye_corners is None:
            raise ValueError(f"layout {layout.name!r} has no outer eye corners; use another norm")
        a, b = layout.outer_eye_corners
        dist = (points[:, a] - points[:, b]).norm(dim=-1)
    elif norm == "inter-pupil":
        pupils = layout.pupil_points(points)
        dist = (pupils[:, 0] - pupils[:, 1]).norm(dim=-1)
    elif norm in ("box-size", "box-diagonal"):
        dist = _box_distance(boxes, len(points), norm).to(points.dtype)
    else:
        raise ValueError(f"unknown norm {norm!r}; choose one of {NORMS}")
    bad = (~torch.isfinite(dist) | (dist <= 0)).nonzero().flatten().tolist() if check else []
    if bad:
        raise ValueError(f"{norm} normalising distance is zero or not finite for images {bad}")
    return dist


def nme(pred: Tensor, target: Tensor, layout: Layout, norm: str | None = None, boxes: Tensor | None = None,
        visible: Tensor | None = None) -> Tensor:
    """Normalised mean error per face, ``(B,)``: mean point-to-point L2 error / normalising distance.

    With ``visible`` (``(B, N)`` bool), only visible points enter each face's mean; a face with no
    visible point raises ``ValueError``.
    """
    pred, target = _batched(pred), _batched(target)
    if pred.shape != target.shape:
        raise ValueError(f"pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")
    _check(pred, layout, "pred")
    errors = (pred - target).norm(dim=-1)
    if visible is None:
        mean_error = errors.mean(-1)
    else:
        mask = torch.as_tensor(visible, dtype=torch.bool, device=errors.device).reshape(errors.shape)
        empty = (mask.sum(-1) == 0).nonzero().flatten().tolist()
        if empty:
            raise ValueError(f"no visible landmark in images {empty}")
        mean_error = (errors * mask).sum(-1) / mask.sum(-1)
    return mean_error / normalising_distance(target, layout, norm, boxes)


def _errors(nmes: Tensor) -> Tensor:
    values = torch.as_tensor(nmes).flatten()
    if values.numel() == 0 or not torch.isfinite(values).all():
        raise ValueError("need a non-empty set of finite NME values")
    return values


def failure_rate(nmes: Tensor, threshold: float = 0.1) -> float:
    """Share of faces whose NME is strictly greater than ``threshold``."""
    return float((_errors(nmes) > threshold).double().mean())


def ced(nmes: Tensor, threshold: float = 0.1, steps: int = 1000) -> tuple[Tensor, Tensor]:
    """Cumulative error distribution on ``steps + 1`` even points of ``[0, threshold]``.

    Returns ``(x, y)`` with ``y[k]`` the share of faces whose NME is ``<= x[k]``.
    """
    values = _errors(nmes).double()
    x = torch.linspace(0.0, threshold, steps + 1, dtype=torch.float64)
    y = (values[None, :] <= x[:, None]).double().mean(1)
    return x, y


def auc(nmes: Tensor, threshold: float = 0.1, steps: int | None = None) -> float:
    """Area under the CED from 0 to ``threshold``, divided by ``threshold`` (1 = every error is 0).

    ``steps=None`` (default) integrates the step-function CED exactly: a face with error ``e``
    contributes ``max(0, threshold - e)``, so AUC = mean(max(0, 1 - e / threshold)). An integer
    ``steps`` applies the trapezoid rule to :func:`ced` sampled at ``steps + 1`` points, as most
    public evaluation scripts do; the two agree to about ``1 / steps``.
    """
    if steps is None:
        return float((1.0 - _errors(nmes).double() / threshold).clamp(min=0).mean())
    x, y = ced(nmes, threshold, steps)
    return float(torch.trapezoid(y, x) / threshold)


def summarise(nmes: Tensor, threshold: float = 0.1) -> dict[str, float]:
    """``{"nme": mean NME, "fr": failure rate, "auc": exact AUC}``, all as fractions, at ``threshold``."""
    values = _errors(nmes)
    return {"nme": float(values.double().mean()), "fr": failure_rate(values, threshold),
            "auc": auc(values, threshold)}
