"""Self-training on unlabelled faces: pseudo-labels, the coarse-score curriculum and the rounds.

PIPNet's data distillation (:cite:p:`jin2021pipnet`): a detector trained on the labelled faces
predicts landmarks on translated copies of every unlabelled face, the predictions mapped back and
averaged are its *pseudo-label*, and a fresh detector is trained on labelled plus pseudo-labelled
faces; the paper repeats this three times. The journal version adds a curriculum: in the first
rounds the pseudo-labelled faces only supervise max-pooled, coarse score maps (2 x 2, then 4 x 4),
the labelled faces the full loss.

- :func:`pseudo_label`: ensemble pseudo-labels of a dataset (the views and the ensemble are in
  :mod:`landmarks.pipnet.ensembles`); labelled test sets
  (:class:`~landmarks.data.views.TestSet`) are refused;
- :func:`coarse_score_loss` and :class:`CurriculumPIPTask`: the curriculum, a loss passed to
  :func:`landmarks.training.loop.fit` as ``loss=`` (the detector keeps its own task for decoding);
- :func:`self_train`: the rounds, each a :class:`Round` holding its
  :class:`~landmarks.detector.Detector`.

The dataset roles (:class:`~landmarks.data.views.Labelled`,
:class:`~landmarks.data.views.PseudoLabelled`, :class:`~landmarks.data.views.Unlabelled`) are in
:mod:`landmarks.data.views`.
"""
from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset

from landmarks.codecs.pip import pip_targets
from landmarks.data.transforms import Augmented
from landmarks.data.views import Labelled, PseudoLabelled, is_test_set, refuse_test_set
from landmarks.detector import Detector, ModelSpec, build_detector, training_landmarks, with_neighbours
from landmarks.evaluation.loop import loader
from landmarks.losses import pip_loss
from landmarks.pipnet.ensembles import Transform, ensemble_predict, translations
from landmarks.training.loop import History, fit

__all__ = ["pseudo_label", "coarse_score_loss", "CurriculumPIPTask", "Round", "self_train"]


@torch.no_grad()
def pseudo_label(detector: Detector, dataset: Dataset, transforms: Sequence[Transform], batch_size: int = 32,
                 chunk_size: int | None = None) -> Tensor:
    """Ensemble pseudo-labels ``(M, N, 2)`` (CPU) for every image of ``dataset``, in dataset order.

    Each batch of ``batch_size`` images is expanded into its ``T`` views and predicted by
    :func:`~landmarks.pipnet.ensembles.ensemble_predict` in one call (or in ``chunk_size`` pieces),
    on the detector's device and in evaluation mode (its mode is given back).

    Raises:
        ValueError: ``dataset`` is (or wraps) a test set: pseudo-labels are never made from labelled
            test images.
    """
    refuse_test_set(dataset)
    labels = [ensemble_predict(detector, batch["image"], transforms, chunk_size)[0].cpu()
              for batch in loader(dataset, batch_size)]
    return torch.cat(labels)


# --------------------------------------------------------------------------- curriculum
def coarse_score_loss(score: Tensor, target_score: Tensor, pool: int) -> Tensor:
    """Mean squared error between score maps max-pooled to ``pool x pool`` cells.

    Both ``(B, N, h, w)`` maps are reduced with ``adaptive_max_pool2d`` to ``(B, N, p, q)`` with
    ``p = min(pool, h)`` rows and ``q = min(pool, w)`` columns (no finer than the maps themselves);
    the loss is ``1/(B N p q) * sum (pooled(S') - pooled(S*))^2``. A pseudo-label then only says in
    which coarse region of the face crop a landmark lies, not in which cell.
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
    """A PIP loss whose pseudo-labelled samples only supervise coarse score maps.

    Samples with ``batch["pseudo"]`` False get the full :func:`landmarks.losses.pip_loss` of
    ``base`` (a :class:`~landmarks.codecs.tasks.PIPTask`); pseudo-labelled ones get ``base.alpha``
    times the mean of :func:`coarse_score_loss` over ``pool_sizes``. The two parts are weighted by
    their share of the batch, so every sample counts equally:
    ``total = (n_l / B) * pip_total(labelled) + (n_p / B) * alpha * coarse(pseudo)``. Decoding is
    ``base``'s. Losses reported: ``score``, ``offset``, ``neighbour`` (labelled part), ``coarse``
    (pseudo part) and ``total``.
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
    """One round of :func:`self_train`.

    ``detector``: the round's trained detector (its task decodes plainly). ``history``: its training
    history (``None`` for a round 0 given as ``initial``). ``train_size``: training samples
    (labelled + pseudo-labelled). ``pseudo_labels``: ``(M, N, 2)`` the round trained on (``None``
    in round 0). ``pools``: the curriculum's pool sizes of the round, if any; ``loss``: the
    :class:`CurriculumPIPTask` it minimised then, else ``None`` (the detector's own loss).
    """

    detector: Detector
    history: History | None
    train_size: int
    pseudo_labels: Tensor | None = None
    pools: tuple[int, ...] | None = None
    loss: CurriculumPIPTask | None = None


def self_train(spec: ModelSpec, labelled: Dataset, unlabelled: Dataset, *, schedule: Mapping[str, Any],
               rounds: int = 3, transforms: Sequence[Transform] | None = None, curriculum: bool = False,
               pool_schedule: Sequence[Sequence[int]] = ((2,), (4,)), batch_size: int | None = None,
               val_data: Dataset | None = None, seed: int = 0, device: str | torch.device = "cpu",
               progress: bool = False, initial: Detector | None = None,
               augment: Callable[[dict], dict] | None = None, **fit_options: Any) -> list[Round]:
    """Data distillation: train, pseudo-label, retrain on both; ``rounds`` trainings in all.

    Round 0 builds the detector of ``spec`` (:class:`~landmarks.detector.ModelSpec`; PIPNet's
    neighbours from the labelled shapes only), initialised under ``seed``, and trains it on
    ``labelled`` with ``schedule`` (keyword arguments of :func:`~landmarks.training.loop.fit`, e.g.
    ``profile.schedule()``). Round ``r >= 1`` pseudo-labels ``unlabelled`` with round ``r - 1``'s
    detector through the ``transforms`` ensemble (default:
    :func:`~landmarks.pipnet.ensembles.translations` for ``spec.image_size``) and trains a fresh
    detector (same seed) on ``labelled + pseudo-labelled``. The paper's three iterations of
    distillation are ``rounds=4`` here (one supervised training, three retrainings).

    Args:
        curriculum: PIP heads only: round ``r`` minimises :class:`CurriculumPIPTask` with the pools
            ``pool_schedule[r - 1]`` (``fit(loss=...)``); rounds past the schedule supervise
            pseudo-labels fully.
        batch_size: images per pseudo-labelling batch (default: the schedule's).
        initial: a trained detector that stands in for round 0, which is then not trained (its
            history is ``None``), so several self-training runs can share one supervised model.
        augment: a sample transform (e.g. :func:`landmarks.data.transforms.geometric_augmentation`)
            applied to the labelled and pseudo-labelled training samples of every round, never to
            the images being pseudo-labelled.
        val_data, device, progress, fit_options: passed to :func:`~landmarks.training.loop.fit`.

    Returns one :class:`Round` per round.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be >= 1, got {rounds}")
    if curriculum and spec.head != "pip":
        raise ValueError(f"the curriculum supervises coarse score maps, so it needs a PIP head, not {spec.head!r}")
    for name, data in (("labelled", labelled), ("unlabelled", unlabelled)):
        if is_test_set(data):
            raise ValueError(f"the {name} training data is (or wraps) a test set")
    transforms = list(transforms) if transforms is not None else translations(spec.image_size)
    if spec.head == "pip":
        spec = with_neighbours(spec, training_landmarks(labelled))
    options = {**dict(schedule), **fit_options}
    label_batch = batch_size or int(options["batch_size"])
    labelled_set = Labelled(labelled)
    results: list[Round] = []
    if initial is not None:
        results.append(Round(initial, None, len(labelled_set)))
    for r in range(len(results), rounds):
        pools, labels, loss = None, None, None
        train_data: Dataset = labelled_set
        torch.manual_seed(seed)
        detector = build_detector(spec)
        if results:
            labels = pseudo_label(results[-1].detector.to(device), unlabelled, transforms, label_batch)
            train_data = ConcatDataset([labelled_set, PseudoLabelled(unlabelled, labels)])
            if curriculum and r - 1 < len(pool_schedule):
                pools = tuple(int(p) for p in pool_schedule[r - 1])
                loss = CurriculumPIPTask(detector.task, pools)
        if augment is not None:
            train_data = Augmented(train_data, augment)
        history = fit(detector, train_data, val_data, seed=seed, layout=spec.layout, progress=progress,
                      device=device, loss=loss, **options)
        results.append(Round(detector, history, len(train_data), labels, pools, loss))
    return results
