"""Training losses as plain functions of tensors.

Every function returns a scalar tensor (or, for :func:`pip_loss`, a dict of scalars) and states
its reduction exactly, so a value printed in the book can be recomputed by hand.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from landmarks.data.layouts import Layout, get_layout
from landmarks.evaluation.metrics import normalising_distance
from landmarks.codecs.softargmax import expectation_2d, mean_absolute_deviation, softargmax_2d, spatial_softmax, variance_2d

__all__ = ["pip_loss", "heatmap_mse", "coordinate_l1", "coordinate_l2", "iod_normalised_l2", "softargmax_loss",
           "laplace_kl_divergence", "gaussian_kl_divergence", "laplace_kl", "gaussian_kl"]


def _same_shape(pred: Tensor, target: Tensor, name: str) -> None:
    if pred.shape != target.shape:
        raise ValueError(f"{name}: pred {tuple(pred.shape)} and target {tuple(target.shape)} differ")


def _at_cells(maps: Tensor, cell_index: Tensor) -> Tensor:
    """Read ``maps`` ``(B, C, h, w)`` at one flat cell per channel; ``cell_index`` is ``(B, N)``
    and ``C = N * r`` (every group of ``r`` consecutive channels belongs to one landmark)."""
    b, c = maps.shape[:2]
    n = cell_index.shape[1]
    if c % n:
        raise ValueError(f"pip_loss: {c} channels are not a multiple of {n} landmarks")
    index = cell_index[:, :, None].expand(b, n, c // n).reshape(b, c)
    return maps.flatten(2).gather(2, index[..., None]).squeeze(-1)


def pip_loss(outputs: Mapping[str, Tensor], targets: Mapping[str, Tensor], alpha: float = 10.0,
             beta: float = 1.0) -> dict[str, Tensor]:
    """PIPNet's loss, in the form of the authors' public code release.

    The paper (:cite:p:`jin2021pipnet`) writes it as eq. (1)
    ``L = alpha L_score + L_x + L_y`` with the squared errors of eq. (2)-(3) summed; the released
    code uses means and L1 for the offsets, and adds the neighbour terms. Here, with ``B`` images,
    ``N`` landmarks, ``nb`` neighbours and ``h x w`` maps, and ``c(b, i)`` landmark ``i``'s
    ground-truth cell (``targets["cell_index"]``, else the arg-max of ``targets["score"]``):

    - ``score = 1/(B N h w) * sum_{b,i,cell} (S'_{b,i}(cell) - S*_{b,i}(cell))^2`` over every cell (eq. 2);
    - ``offset = 1/(B N) * sum_{b,i} |X'_{b,i}(c(b,i)) - X*_{b,i}|
      + 1/(B N) * sum_{b,i} |Y'_{b,i}(c(b,i)) - Y*_{b,i}|`` (eq. 3 with L1), only at the
      ground-truth cell;
    - ``neighbour`` = the same two means over the ``B N nb`` neighbour channels, each read at its
      landmark's cell; 0 when neither outputs nor targets have neighbour maps (``ValueError``
      when only one side has them);
    - ``total = alpha * score + beta * (offset + neighbour)``.

    Targets are the dict of :func:`landmarks.codecs.pip.pip_targets`; the offset targets are read from
    its maps at the same cells. Returns ``{"score", "offset", "neighbour", "total"}`` (scalars).
    """
    score, target_score = outputs["score"], targets["score"]
    _same_shape(score, target_score, "pip_loss score")
    if "cell_index" in targets:
        cell_index = targets["cell_index"].to(score.device)
    else:
        cell_index = target_score.flatten(2).argmax(-1)

    score_term = (score - target_score).square().mean()

    def l1_at_cells(key: str) -> Tensor:
        _same_shape(outputs[key], targets[key], f"pip_loss {key}")
        return (_at_cells(outputs[key], cell_index) - _at_cells(targets[key], cell_index)).abs().mean()

    offset_term = l1_at_cells("offset_x") + l1_at_cells("offset_y")
    keys = ("neighbour_x", "neighbour_y")
    in_outputs, in_targets = all(k in outputs for k in keys), all(k in targets for k in keys)
    if in_outputs != in_targets:
        where = "outputs" if in_outputs else "targets"
        raise ValueError(f"pip_loss: only the {where} have neighbour maps; pass the same neighbours "
                         "to pip_targets as the head predicts")
    if in_outputs and outputs["neighbour_x"].shape[1] > 0:
        neighbour_term = l1_at_cells("neighbour_x") + l1_at_cells("neighbour_y")
    else:
        neighbour_term = score_term.new_zeros(())
    total = alpha * score_term + beta * (offset_term + neighbour_term)
    return {"score": score_term, "offset": offset_term, "neighbour": neighbour_term, "total": total}


def heatmap_mse(pred: Tensor, target: Tensor) -> Tensor:
    """Mean of the squared differences over every element: ``1/(B N h w) * sum (P - T)^2``."""
    _same_shape(pred, target, "heatmap_mse")
    return (pred - target).square().mean()


def coordinate_l1(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over points of the L1 distance: ``1/(B N) * sum_{b,i} (|dx| + |dy|)``.

    ``pred`` and ``target`` are ``(B, N, 2)`` in the same units (pixels, or the coordinate head's
    ``[0, 1]`` units). Twice ``torch.nn.functional.l1_loss``, which also averages over the 2 axes.
    """
    _same_shape(pred, target, "coordinate_l1")
    return (pred - target).abs().sum(-1).mean()


def coordinate_l2(pred: Tensor, target: Tensor) -> Tensor:
    """Mean over points of the squared Euclidean distance: ``1/(B N) * sum_{b,i} (dx^2 + dy^2)``.

    The "standard L2" loss of the fine-grained paper (Sect. 4.2: the squared error of the
    positions). Twice ``torch.nn.functional.mse_loss``.
    """
    _same_shape(pred, target, "coordinate_l2")
    return (pred - target).square().sum(-1).mean()


def iod_normalised_l2(pred: Tensor, target: Tensor, layout: str | Layout, squared: bool = False) -> Tensor:
    """Inter-ocular-normalised L2 loss of the fine-grained paper's baseline (its eq. 1).

    With ``d_b`` the distance between the layout's outer eye corners in ``target[b]``:

    - ``squared=False`` (default, an NME used as a loss):
      ``1/B * sum_b [ 1/N * sum_i ||p_bi - t_bi|| / d_b ]``;
    - ``squared=True`` (eq. 1 as printed, squared error over ``d``, averaged instead of summed
      over points): ``1/B * sum_b [ 1/N * sum_i ||p_bi - t_bi||^2 / d_b ]``.

    The distance has a zero subgradient where a prediction is exact (no NaN gradients). Raises
    ``ValueError`` when some ``d_b`` is zero or not finite, or the layout has no eye corners.
    """
    _same_shape(pred, target, "iod_normalised_l2")
    layout = get_layout(layout)
    iod = normalising_distance(target.detach(), layout, "inter-ocular").to(pred.dtype)
    diff = pred - target
    if squared:
        per_point = diff.square().sum(-1)
    else:
        per_point = torch.linalg.vector_norm(diff, dim=-1)
    return (per_point.mean(-1) / iod).mean()


# ------------------------------------------------------------------ softargmax and KL losses (LaplaceKL)
# The LaplaceKL paper (Robinson et al., Sect. 3.1, eq. 2-3 and 5-7; equations lost in our text copy).
# Every loss below reads raw maps (B, N, h, w), turns them into probability maps with a temperature
# (landmarks.codecs.softargmax.spatial_softmax) and works in image pixels; the map stride is ``stride``.

def softargmax_loss(logits: Tensor, landmarks: Tensor, stride: float = 1.0, temperature: float = 1.0,
                    norm: str = "l1") -> Tensor:
    """The softargmax baseline: coordinate L1 or L2 between the softargmax and the labels, in pixels.

    ``norm="l1"``: :func:`coordinate_l1`, ``"l2"``: :func:`coordinate_l2` of
    ``softargmax_2d(logits, temperature, stride)`` against ``landmarks`` ``(B, N, 2)``. It scores
    only the mean of each map, so nothing stops the maps from spreading.
    """
    pred = softargmax_2d(logits, temperature, stride)
    if norm == "l1":
        return coordinate_l1(pred, landmarks)
    if norm == "l2":
        return coordinate_l2(pred, landmarks)
    raise ValueError(f"unknown softargmax norm {norm!r}; choose 'l1' or 'l2'")


def laplace_kl_divergence(mu_p: Tensor, b_p: Tensor, mu_q: Tensor, b_q: Tensor) -> Tensor:
    """Elementwise ``KL(Laplace(mu_p, b_p) || Laplace(mu_q, b_q))`` in closed form:

    ``log(b_q / b_p) + |mu_p - mu_q| / b_q + (b_p / b_q) exp(-|mu_p - mu_q| / b_p) - 1``.

    Exactly zero when both parameters are equal. Broadcasts like ``torch`` arithmetic.
    """
    distance = (mu_p - mu_q).abs()
    return torch.log(b_q / b_p) + distance / b_q + (b_p / b_q) * torch.exp(-distance / b_p) - 1


def gaussian_kl_divergence(mu_p: Tensor, s_p: Tensor, mu_q: Tensor, s_q: Tensor) -> Tensor:
    """Elementwise ``KL(Normal(mu_p, s_p) || Normal(mu_q, s_q))`` (``s`` standard deviations):

    ``log(s_q / s_p) + (s_p^2 + (mu_p - mu_q)^2) / (2 s_q^2) - 1/2``.
    """
    ratio = (s_p / s_q).square()
    return -0.5 * torch.log(ratio) + 0.5 * (ratio + ((mu_p - mu_q) / s_q).square()) - 0.5


def _predicted_distribution(logits: Tensor, stride: float, temperature: float, kind: str,
                            min_scale: float) -> tuple[Tensor, Tensor]:
    """Softargmax mean and measured scale (floored at ``min_scale`` pixels) of each map, per axis."""
    if not min_scale > 0:
        raise ValueError(f"min_scale must be positive, got {min_scale}")
    probs = spatial_softmax(logits, temperature)
    mean = expectation_2d(probs, stride)
    if kind == "laplace":
        scale = mean_absolute_deviation(probs, mean, stride).clamp_min(min_scale)
    else:  # clamp before the square root: its slope at 0 is infinite
        scale = variance_2d(probs, mean, stride).clamp_min(min_scale**2).sqrt()
    return mean, scale


def _distribution_kl(kind: str, logits: Tensor, landmarks: Tensor, gt_scale: float, stride: float,
                     temperature: float, min_scale: float) -> Tensor:
    if not (isinstance(gt_scale, (int, float)) and gt_scale > 0):
        raise ValueError(f"gt_scale must be a positive number of pixels, got {gt_scale!r}")
    if logits.shape[:2] != landmarks.shape[:2] or landmarks.shape[-1:] != (2,):
        raise ValueError(f"{kind}_kl: maps {tuple(logits.shape)} and landmarks {tuple(landmarks.shape)} "
                         "do not match (expected (B, N, h, w) and (B, N, 2))")
    mean, scale = _predicted_distribution(logits, stride, temperature, kind, min_scale)
    truth = landmarks.to(mean.dtype)
    b_p = torch.full_like(scale, float(gt_scale))
    divergence = laplace_kl_divergence if kind == "laplace" else gaussian_kl_divergence
    return divergence(truth, b_p, mean, scale).sum(-1).mean()


def laplace_kl(logits: Tensor, landmarks: Tensor, gt_scale: float = 1.0, stride: float = 1.0,
               temperature: float = 1.0, min_scale: float = 1e-3) -> Tensor:
    """LaplaceKL (paper eq. 3): ``KL(ground truth || prediction)``, summed over x and y, mean over
    the ``B N`` landmarks.

    Ground truth: ``Laplace(label, gt_scale)`` per axis (``gt_scale`` in image pixels, a
    hyper-parameter). Prediction: ``Laplace(mu, b)`` with ``mu`` the softargmax of the map and ``b``
    its measured mean absolute deviation per axis (:func:`landmarks.codecs.softargmax.mean_absolute_deviation`),
    floored at ``min_scale`` pixels so a collapsed (one-hot) map gives a finite loss. Zero exactly
    when the softargmax is the label and the measured scale equals ``gt_scale``.
    """
    return _distribution_kl("laplace", logits, landmarks, gt_scale, stride, temperature, min_scale)


def gaussian_kl(logits: Tensor, landmarks: Tensor, gt_scale: float = 1.0, stride: float = 1.0,
                temperature: float = 1.0, min_scale: float = 1e-3) -> Tensor:
    """GaussianKL: as :func:`laplace_kl` with ``Normal(label, gt_scale)`` against ``Normal(mu, sigma)``,
    ``sigma`` the square root of the map's variance per axis (floored at ``min_scale`` pixels)."""
    return _distribution_kl("gaussian", logits, landmarks, gt_scale, stride, temperature, min_scale)
