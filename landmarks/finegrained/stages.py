"""The multi-stage, multi-loss task of the fine-grained detector and its stage-by-stage evaluation.

:class:`FineGrainedTask` scores every output of a :class:`~landmarks.models.cropnet.FineGrainedNet`
(the baseline ``S_0`` and each stage's ``S_k``) with its own loss and adds them up
(:cite:p:`yan2020finegrained`, Sect. 4):

- ``"iod-l2"``: :func:`landmarks.losses.iod_normalised_l2` in pixels (eq. 1; the baseline's loss);
- ``"l2"``: squared distance, :func:`landmarks.losses.coordinate_l2`, in units of the image size
  (Sect. 4.2, the "standard" L2);
- ``"l1"``: :func:`landmarks.losses.coordinate_l1`, in units of the image size (Sect. 4.2);
- ``"align"``: :func:`landmarks.finegrained.align_loss.align_loss` on the map the stage cropped
  (Sect. 4.3, eq. 2).

The paper's multi-loss scheme is :data:`PAPER_SCHEME` (IOD-L2 for the baseline, then L2, L1 and Align
Loss for stages 1-3); its Table 5 compares it with the same loss in every stage. ``predict`` decodes
the last stage's estimate. :func:`evaluate_stages` measures the NME after every output of a
:class:`~landmarks.detector.Detector` in one pass of the library's inference loop
(:func:`landmarks.evaluation.loop.predictions`).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Mapping, Sequence

import torch
from torch import Tensor
from torch.utils.data import Dataset

from landmarks.data.layouts import Layout, get_layout
from landmarks.detector import Detector, architecture
from landmarks.evaluation.loop import layout_for, predictions
from landmarks.evaluation.metrics import normalising_distance, summarise
from landmarks.finegrained.align_loss import align_loss
from landmarks.losses import coordinate_l1, coordinate_l2, iod_normalised_l2
from landmarks.models.cropnet import finegrained_net

__all__ = ["STAGE_LOSSES", "PAPER_SCHEME", "FineGrainedTask", "finegrained_detector", "evaluate_stages", "stage_table"]

#: The losses a stage can use.
STAGE_LOSSES = ("iod-l2", "l2", "l1", "align")
#: The paper's multi-loss scheme: baseline, stage 1, stage 2, stage 3 (Sect. 4, Table 5's last column).
PAPER_SCHEME = ("iod-l2", "l2", "l1", "align")


@dataclass
class FineGrainedTask:
    """Per-output losses for a baseline + refinement-stage model.

    Args:
        losses: one name of :data:`STAGE_LOSSES` per output: ``losses[0]`` for the baseline,
            ``losses[k]`` for stage ``k``. The baseline cannot use ``"align"`` (it crops nothing).
        layout: the landmark layout (eye corners for ``"iod-l2"``).
        weights: one factor per output (all 1 by default).
        smooth, kernel_size, sigma, patch_size: Align Loss settings (Gaussian 3 x 3, sigma 1,
            8 x 8 patches). Set ``smooth = False`` to drop the filter once the loss plateaus.

    ``loss`` returns ``"stage<k>_<name>"`` for every output and ``"total"`` (their weighted sum).
    The stride of a stage's map is the image size divided by the map size.
    """

    losses: Sequence[str] = PAPER_SCHEME
    layout: str | Layout = "300w"
    weights: Sequence[float] | None = None
    smooth: bool = True
    kernel_size: int = 3
    sigma: float = 1.0
    patch_size: int = 8

    def __post_init__(self) -> None:
        self.losses = tuple(self.losses)
        bad = [name for name in self.losses if name not in STAGE_LOSSES]
        if bad or not self.losses:
            raise ValueError(f"unknown stage losses {bad or '(none given)'}; choose from {STAGE_LOSSES}")
        if self.losses[0] == "align":
            raise ValueError("the baseline output (losses[0]) cannot use 'align': it crops no feature map")
        if self.weights is not None and len(self.weights) != len(self.losses):
            raise ValueError(f"{len(self.weights)} weights for {len(self.losses)} losses")
        self.layout = get_layout(self.layout)

    def _stage_loss(self, name: str, k: int, pred: Tensor, outputs: Mapping[str, Tensor],
                    batch: Mapping[str, Tensor]) -> Tensor:
        target = batch["landmarks"].to(pred.dtype)
        height, width = batch["image"].shape[-2:]
        if name == "iod-l2":
            return iod_normalised_l2(pred, target, self.layout)
        if name in ("l2", "l1"):
            scale = pred.new_tensor([width, height])
            fn = coordinate_l2 if name == "l2" else coordinate_l1
            return fn(pred / scale, target / scale)
        features = outputs[f"features_{k}"]
        stride = height / features.shape[-2]
        return align_loss(features, pred, target, stride, self.patch_size, smooth=self.smooth,
                          kernel_size=self.kernel_size, sigma=self.sigma)

    def loss(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> dict[str, Tensor]:
        points = outputs["points"]
        if points.shape[1] != len(self.losses):
            raise ValueError(f"the model has {points.shape[1]} outputs (baseline + stages) but the task "
                             f"has {len(self.losses)} losses {self.losses}")
        weights = self.weights or (1.0,) * len(self.losses)
        parts: dict[str, Tensor] = {}
        total = points.new_zeros(())
        for k, (name, weight) in enumerate(zip(self.losses, weights)):
            value = self._stage_loss(name, k, points[:, k], outputs, batch)
            parts[f"stage{k}_{name}"] = value
            total = total + weight * value
        parts["total"] = total
        return parts

    def predict(self, outputs: Mapping[str, Tensor], batch: Mapping[str, Tensor]) -> Tensor:
        """The last output's ``(B, N, 2)`` estimate in pixels (the last stage's, or ``S_0`` without stages)."""
        return outputs["points"][:, -1]


def finegrained_detector(losses: Sequence[str] = PAPER_SCHEME, num_points: int = 68, depth: int = 18,
                         width: float = 0.25, patch_size: int = 8, image_size: int | None = None,
                         layout: str | Layout = "300w", **options: Any) -> Detector:
    """The untrained :class:`~landmarks.detector.Detector` of a baseline with ``len(losses) - 1``
    CropNet stages: :func:`~landmarks.models.cropnet.finegrained_net` and a :class:`FineGrainedTask`
    with ``losses``.

    ``patch_size`` is the side of the stages' crops and of Align Loss's patches (8 in
    :cite:p:`yan2020finegrained`, Table 7); ``options`` go to the network (``hidden``,
    ``selected``, ``grad_features``, ``grad_locations``). The detector records the network's
    arguments, so :meth:`~landmarks.detector.Detector.load` rebuilds the same network.
    """
    task = FineGrainedTask(losses, layout=layout, patch_size=patch_size)
    kwargs = dict(num_points=num_points, depth=depth, width=width, stages=len(task.losses) - 1,
                  patch_size=patch_size, **options)
    return Detector(finegrained_net(**kwargs), task, image_size=image_size, layout=layout,
                    architecture=architecture(finegrained_net, **kwargs))


@torch.no_grad()
def evaluate_stages(detector: Detector, data: Dataset, layout: str | Layout | None = None, batch_size: int = 50,
                    threshold: float = 0.1, num_workers: int = 0) -> dict[str, Any]:
    """NME after the baseline and after every stage of a fine-grained detector, in one pass.

    ``detector`` is a :class:`~landmarks.detector.Detector` whose network returns ``"points"``
    ``(B, S + 1, N, 2)`` and ``"corrections"`` (a :class:`~landmarks.models.cropnet.FineGrainedNet`);
    the batches come from :func:`landmarks.evaluation.loop.predictions`. Errors are over the
    inter-ocular distance (outer eye corners of ``layout``: the data's, else the detector's).

    Returns (``S`` stages, ``M`` images, ``N`` landmarks):

    - ``"nme"``: list of ``S + 1`` mean NMEs (fractions), ``[0]`` the baseline, ``[-1]`` what the
      detector predicts;
    - ``"summary"``: list of :func:`landmarks.evaluation.metrics.summarise` dicts (nme, fr, auc) per
      output;
    - ``"per_image"``: ``(S + 1, M)``; ``"per_point"``: ``(S + 1, M, N)`` point errors over the
      inter-ocular distance (for landmark-wise CED curves, :cite:p:`yan2020finegrained` Fig. 11);
    - ``"points"``: ``(M, S + 1, N, 2)``; ``"corrections"``: ``(M, S, N, 2)`` in pixels;
      ``"corrections_iod"``: the same over each face's inter-ocular distance (Fig. 13);
    - ``"truth"``: ``(M, N, 2)``.
    """
    layout = layout_for(layout, data, detector)
    points, corrections, truth = [], [], []
    for batch, outputs, _ in predictions(detector, data, batch_size, num_workers, outputs=True):
        points.append(outputs["points"].float().cpu())
        corrections.append(outputs["corrections"].float().cpu())
        truth.append(batch["landmarks"].float().cpu())
    points, corrections, truth = torch.cat(points), torch.cat(corrections), torch.cat(truth)
    iod = normalising_distance(truth, layout, "inter-ocular")                      # (M,)
    per_point = ((points - truth[:, None]).norm(dim=-1) / iod[:, None, None]).permute(1, 0, 2)
    per_image = per_point.mean(-1)
    summary = [summarise(row, threshold) for row in per_image]
    return {"nme": [s["nme"] for s in summary], "summary": summary, "per_image": per_image,
            "per_point": per_point, "points": points, "corrections": corrections,
            "corrections_iod": corrections / iod[:, None, None, None], "truth": truth}


def stage_table(results: Mapping[str, Any], name: str = "") -> list[dict[str, Any]]:
    """Rows ``{"model", "output", "NME (%)", "FR@0.1 (%)", "AUC@0.1"}`` of :func:`evaluate_stages`."""
    rows = []
    for k, s in enumerate(results["summary"]):
        rows.append({"model": name, "output": "baseline" if k == 0 else f"stage {k}",
                     "NME (%)": 100 * s["nme"], "FR@0.1 (%)": 100 * s["fr"], "AUC@0.1": s["auc"]})
    return rows
