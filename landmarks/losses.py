"""Training losses as plain functions of tensors.

Every function returns a scalar tensor (or, for :func:`pip_loss`, a dict of scalars) and states
its reduction exactly, so a value printed in the book can be recomputed by hand.
"""
from __future__ import annotations

from typing import Mapping

import torch
from torch import Tensor

from .layouts import Layout, get_layout
from .metrics import normalising_distance

__all__ = ["pip_loss", "heatmap_mse", "coordinate_l1", "coordinate_l2", "iod_normalised_l2"]


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
    """PIPNet's loss, in the form of the public release (REFERENCE.md).

    The paper draft (``papers/pipnet-eccv-draft.txt``) writes it as eq. (1)
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

    Targets are the dict of :func:`landmarks.pip.pip_targets`; the offset targets are read from
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
