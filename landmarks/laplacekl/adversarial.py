"""Adversarial semi-supervised training of a heatmap generator (:cite:p:`robinson2019laplace`, Sect. 3.2-3.3).

The generator ``G`` (e.g. :class:`~landmarks.models.recombinator.Recombinator`) makes heatmaps; a
discriminator ``D`` (:class:`~landmarks.models.patchgan.PatchGAN`) sees an image stacked with N
heatmaps and says, patch by patch, whether the heatmaps were *rendered from labels* (real) or
*generated* (fake):

- real pairs: labelled images with maps rendered from their labels
  (:func:`landmarks.codecs.softargmax.render_heatmaps`, the ground-truth distribution of the
  supervised loss: Laplace or Gaussian, scale ``gt_scale``);
- fake pairs: ``G``'s probability maps (spatial softmax with the task's temperature) on the same
  labelled images *and* on unlabelled images.

Each step alternates (the paper's eq. 4, "alternating updates"):

1. ``D`` step: binary cross-entropy, real pairs -> 1, fake pairs (detached) -> 0, averaged over
   patches, the two halves weighted equally;
2. ``G`` step: ``supervised + weight * adversarial`` (eq. 6-7), the supervised loss of the task on
   the labelled images and the non-saturating adversarial loss ``BCE(D(fake), 1)`` on all fake pairs.

Map scaling: ``D`` sees probability maps multiplied by the inverse peak of the continuous
ground-truth density (``(2 b)^2`` for Laplace, ``2 pi sigma^2`` for Gaussian), so a ground-truth map
peaks near 1 and a spread-out map is visibly lower. The same factor is applied to real and fake maps.

The training loop is :func:`landmarks.training.loop.fit`'s: :class:`AdversarialStep` is the
:class:`~landmarks.training.loop.Step` that replaces fit's default update, so adversarial runs get
fit's per-epoch seeding, NaN guard (naming the component, the discriminator's included), history,
atomic per-epoch checkpoints (holding ``D`` and its optimiser too) and exact resumption. One epoch is
one pass over the labelled data; every labelled batch is paired with a batch of the unlabelled data
(fit's extra stream: shuffled passes whose order is drawn from the seed and the epoch). The history
has ``records_per_epoch`` records per epoch with the means over their steps of ``loss_supervised``,
``loss_adversarial``, ``loss_total`` (generator), ``loss_discriminator``, ``d_real``, ``d_fake`` (mean
probability ``D`` gives real and fake pairs), the times and, with ``val_data``, ``val_nme`` /
``val_fr`` / ``val_auc``.
"""
from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Mapping, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import Dataset

from landmarks.codecs.softargmax import render_heatmaps
from landmarks.codecs.tasks import SoftargmaxTask
from landmarks.models.patchgan import PatchGAN
from landmarks.models.recombinator import recombinator
from landmarks.training.loop import History, Step, StepContext, fit

if TYPE_CHECKING:
    from landmarks.detector import Detector

__all__ = ["AdversarialSettings", "AdversarialStep", "AdversarialPair", "adversarial_pair", "discriminator_scale",
           "real_heatmaps", "fake_heatmaps", "train_adversarial"]


@dataclass(frozen=True)
class AdversarialSettings:
    """Schedule of :func:`train_adversarial`.

    Args:
        epochs: passes over the labelled data.
        batch_size: labelled images per step (and as many unlabelled ones, when there are any).
        lr: Adam step of the generator (the paper: 1e-3).
        decay_epochs, decay: both learning rates are multiplied by ``decay`` after each listed epoch
            (the paper drops neither; a short CPU run needs the drop to settle).
        d_lr: Adam step of the discriminator.
        weight: weight of the adversarial term in the generator's loss (lost in our text copy;
            chosen by a sweep in chapter 7).
        betas: Adam's betas for both networks.
        seed: seeds sample order, dropout and the discriminator's noise (fit's per-epoch seeding).
        records_per_epoch: history records per epoch (more than one gives curves for short runs;
            ``epoch`` is then fractional: 0.2, 0.4, ... and only the last record of an epoch is
            validated).
    """

    epochs: int = 2
    batch_size: int = 16
    lr: float = 1e-3
    decay_epochs: tuple[int, ...] = ()
    decay: float = 0.1
    d_lr: float = 2e-4
    weight: float = 0.1
    betas: tuple[float, float] = (0.5, 0.999)
    seed: int = 0
    records_per_epoch: int = 1

    def __post_init__(self) -> None:
        if self.records_per_epoch < 1:
            raise ValueError(f"records_per_epoch must be >= 1, got {self.records_per_epoch}")
        if self.epochs < 1 or self.batch_size < 1:
            raise ValueError(f"epochs and batch_size must be >= 1, got {self.epochs}, {self.batch_size}")
        if self.weight < 0 or self.lr <= 0 or self.d_lr <= 0:
            raise ValueError("weight must be >= 0 and the learning rates positive")
        if not 0 < self.decay <= 1 or any(e < 1 for e in self.decay_epochs):
            raise ValueError(f"decay must be in (0, 1] and decay_epochs positive, got {self.decay}, {self.decay_epochs}")


def discriminator_scale(kind: str, gt_scale: float) -> float:
    """Factor applied to probability maps before ``D``: the inverse peak of the continuous 2-D density."""
    if kind == "laplace":
        return (2 * gt_scale) ** 2
    if kind == "gaussian":
        return 2 * math.pi * gt_scale**2
    raise ValueError(f"unknown distribution {kind!r}")


def real_heatmaps(task: SoftargmaxTask, landmarks: Tensor, image_size: tuple[int, int], stride: float) -> Tensor:
    """Maps rendered from labels, as ``D`` sees them (the task's ground-truth distribution, scaled)."""
    kind = task.spread_kind
    maps = render_heatmaps(kind, landmarks, image_size, stride, task.gt_scale)
    return maps * discriminator_scale(kind, task.gt_scale)


def fake_heatmaps(task: SoftargmaxTask, logits: Tensor) -> Tensor:
    """``G``'s probability maps, as ``D`` sees them."""
    return task.probabilities({"heatmaps": logits}) * discriminator_scale(task.spread_kind, task.gt_scale)


def _bce(logits: Tensor, real: bool) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


class AdversarialStep(Step):
    """One alternating update of the generator (fit's network) and ``discriminator`` (see the module text).

    Args:
        discriminator: ``D(images, maps) -> (B, 1, h, w)`` patch logits; trained in place.
        unlabelled: images without labels whose generated maps are fake pairs too (``None`` or
            empty: the fakes are the generator's maps on the labelled images only). Same image
            size as the labelled data.
        weight: of the adversarial term in the generator's loss (0: ``D`` is trained but never
            acts on ``G``, the supervised control).
        d_lr: Adam step of the discriminator.
        betas: Adam's betas of both optimisers (the generator's is fit's, made by :meth:`optimizer`).
        decay_epochs, decay: the discriminator's step decay (fit applies the same to the generator's).

    fit's task (the detector's :class:`~landmarks.codecs.tasks.SoftargmaxTask`) gives the supervised
    loss and the real and fake maps.
    """

    def __init__(self, discriminator: nn.Module, unlabelled: Dataset | None = None, weight: float = 0.1,
                 d_lr: float = 2e-4, betas: tuple[float, float] = (0.5, 0.999), decay_epochs: Sequence[int] = (),
                 decay: float = 0.1) -> None:
        if weight < 0 or not d_lr > 0:
            raise ValueError(f"weight must be >= 0 and d_lr positive, got {weight}, {d_lr}")
        self.discriminator = discriminator
        self.extra_data = unlabelled if unlabelled is not None and len(unlabelled) > 0 else None
        self.weight, self.d_lr, self.betas = float(weight), float(d_lr), tuple(betas)
        self.decay_epochs, self.decay = [int(e) for e in decay_epochs], float(decay)
        self.d_optimizer: torch.optim.Optimizer | None = None
        self.d_scheduler: torch.optim.lr_scheduler.MultiStepLR | None = None

    def optimizer(self, parameters: Sequence[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
        return torch.optim.Adam(parameters, lr=lr, betas=self.betas, weight_decay=weight_decay)

    def bind(self, context: StepContext) -> None:
        self.discriminator.to(context.device)
        context.synchronise(self.discriminator)
        self.d_optimizer = torch.optim.Adam(self.discriminator.parameters(), lr=self.d_lr, betas=self.betas)
        self.d_scheduler = torch.optim.lr_scheduler.MultiStepLR(self.d_optimizer, self.decay_epochs, self.decay)

    def start_epoch(self, context: StepContext) -> None:
        self.discriminator.train()

    def update(self, context: StepContext, batch: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, float]:
        task, discriminator = context.task, self.discriminator
        images, landmarks = batch["image"], batch["landmarks"]
        labelled = len(images)
        every = images if extra is None else torch.cat([images, extra["image"]])
        logits = context.forward(every)["heatmaps"]
        outputs = {"heatmaps": logits[:labelled]}
        real = real_heatmaps(task, landmarks, tuple(images.shape[-2:]), task.stride(outputs, batch))
        fake = fake_heatmaps(task, logits)

        # 1. discriminator: real pairs -> 1, generated pairs -> 0
        d_real = discriminator(images, real)
        d_fake = discriminator(every, fake.detach())
        loss_d = 0.5 * (_bce(d_real, True) + _bce(d_fake, False))
        d_values = context.check({"discriminator": loss_d}, required=())
        self.d_optimizer.zero_grad(set_to_none=True)
        loss_d.backward()
        context.average_gradients(discriminator)
        self.d_optimizer.step()

        # 2. generator: supervised loss on the labelled images + weighted adversarial term on all
        supervised = task.loss(outputs, batch)["total"]
        adversarial = _bce(discriminator(every, fake), True) if self.weight > 0 else logits.new_zeros(())
        total = supervised + self.weight * adversarial
        values = context.check({"supervised": supervised, "adversarial": adversarial, "total": total})
        context.minimise(total)
        return {"loss_supervised": values["supervised"], "loss_adversarial": values["adversarial"],
                "loss_total": values["total"], "loss_discriminator": d_values["discriminator"],
                "d_real": torch.sigmoid(d_real).mean().item(), "d_fake": torch.sigmoid(d_fake).mean().item()}

    def end_epoch(self, context: StepContext) -> None:
        context.synchronise(self.discriminator, parameters=False)  # rank 0's batch-norm statistics
        self.d_scheduler.step()

    def state_dict(self) -> dict[str, Any]:
        return {"discriminator": self.discriminator.state_dict(), "optimizer": self.d_optimizer.state_dict(),
                "scheduler": self.d_scheduler.state_dict()}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        self.discriminator.load_state_dict(state["discriminator"])
        self.d_optimizer.load_state_dict(state["optimizer"])
        if "scheduler" in state:  # checkpoints written before the discriminator had a schedule
            self.d_scheduler.load_state_dict(state["scheduler"])

    def config(self) -> dict[str, Any]:
        return {"discriminator": type(self.discriminator).__name__, "weight": self.weight, "d_lr": self.d_lr,
                "betas": list(self.betas), "decay_epochs": self.decay_epochs, "decay": self.decay,
                "unlabelled": len(self.extra_data) if self.extra_data is not None else 0}


def train_adversarial(detector: "Detector", discriminator: nn.Module, labelled: Dataset,
                      unlabelled: Dataset | None = None, settings: AdversarialSettings = AdversarialSettings(),
                      *, val_data: Dataset | None = None, progress: bool = True, device: str | torch.device = "cpu",
                      checkpoint_dir: str | Path | None = None, resume: bool = True, num_workers: int = 0,
                      config: Mapping[str, Any] | None = None) -> History:
    """Train ``detector``'s network (the generator) and ``discriminator`` in place with
    :func:`~landmarks.training.loop.fit` and an :class:`AdversarialStep`; return the :class:`History`.

    ``checkpoint_dir`` / ``resume``: fit's per-epoch checkpoints (generator, discriminator, both
    optimisers) and exact resumption. Both networks end in evaluation mode. Raises
    ``FloatingPointError`` on a non-finite loss (naming the component).
    """
    s = settings
    step = AdversarialStep(discriminator, unlabelled, s.weight, s.d_lr, s.betas, s.decay_epochs, s.decay)
    history = fit(detector, labelled, val_data, epochs=s.epochs, batch_size=s.batch_size, lr=s.lr, seed=s.seed,
                  decay_epochs=s.decay_epochs, decay=s.decay,
                  records_per_epoch=s.records_per_epoch, step=step, checkpoint_dir=checkpoint_dir, resume=resume,
                  num_workers=num_workers, device=device, progress=progress, config=config)
    detector.model.eval()
    discriminator.eval()
    return history


class AdversarialPair(nn.Module):
    """A generator and its discriminator stored together; ``pair(images) == generator(images)``,
    so the pair is evaluated like any heatmap model."""

    def __init__(self, generator: nn.Module, discriminator: nn.Module) -> None:
        super().__init__()
        self.generator = generator
        self.discriminator = discriminator

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        return self.generator(images)


def adversarial_pair(num_points: int = 68, divisor: int = 1, dropout: float = 0.1, d_divisor: int = 1,
                     noise: float = 0.1) -> AdversarialPair:
    """An untrained :class:`AdversarialPair`: a Recombinator (width divisor ``divisor``) and a
    PatchGAN (``d_divisor``, input noise ``noise``); the builder a detector file names."""
    return AdversarialPair(recombinator(num_points, divisor, dropout), PatchGAN(num_points, d_divisor, noise))
