"""Adversarial semi-supervised training of a heatmap generator (LaplaceKL paper, Sect. 3.2-3.3).

The generator ``G`` (e.g. :class:`~landmarks.models.recombinator.Recombinator`) makes heatmaps; a
discriminator ``D`` (:class:`~landmarks.models.patchgan.PatchGAN`) sees an image stacked with N
heatmaps and says, patch by patch, whether the heatmaps were *rendered from labels* (real) or
*generated* (fake):

- real pairs: labelled images with maps rendered from their labels (:func:`landmarks.ops.render_heatmaps`,
  the ground-truth distribution of the supervised loss: Laplace or Gaussian, scale ``gt_scale``);
- fake pairs: ``G``'s probability maps (spatial softmax with the task's temperature) on the same
  labelled images *and* on unlabelled images.

Each step alternates (paper eq. 4, "alternating updates"):

1. ``D`` step: binary cross-entropy, real pairs -> 1, fake pairs (detached) -> 0, averaged over
   patches, the two halves weighted equally;
2. ``G`` step: ``supervised + weight * adversarial`` (paper eq. 6-7), the supervised loss of the
   task on the labelled images and the non-saturating adversarial loss ``BCE(D(fake), 1)`` on all
   fake pairs.

Map scaling: ``D`` sees probability maps multiplied by the inverse peak of the continuous
ground-truth density (``(2 b)^2`` for Laplace, ``2 pi sigma^2`` for Gaussian), so a ground-truth map
peaks near 1 and a spread-out map is visibly lower. The same factor is applied to real and fake maps.

One epoch is one pass over the labelled data; every labelled batch is paired with the next batch
of an endless shuffled pass over the unlabelled data. The history has one record per epoch (or per
``1 / records_per_epoch`` of one) with the means over its steps of ``loss_supervised``, ``loss_adversarial``, ``loss_total`` (generator) and
``loss_discriminator``, ``d_real``, ``d_fake`` (mean probability ``D`` gives real and fake pairs),
``seconds`` and, with ``val_data``, ``val_nme`` / ``val_fr`` / ``val_auc``.
"""
from __future__ import annotations

import math
import time
from dataclasses import dataclass
from typing import Any, Iterator

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, RandomSampler
from tqdm.auto import tqdm

from landmarks.codecs.softargmax import render_heatmaps
from landmarks.codecs.tasks import SoftargmaxTask
from landmarks.training.loop import History, evaluate, seed_everything

__all__ = ["AdversarialSettings", "AdversarialPair", "discriminator_scale", "real_heatmaps", "fake_heatmaps", "train_adversarial"]


@dataclass(frozen=True)
class AdversarialSettings:
    """Schedule of :func:`train_adversarial`.

    Args:
        epochs: passes over the labelled data.
        batch_size: labelled images per step (and as many unlabelled ones, when there are any).
        lr: Adam step of the generator (the paper: 1e-3).
        d_lr: Adam step of the discriminator.
        weight: weight of the adversarial term in the generator's loss (lost in our text copy;
            chosen by a sweep in chapter 7).
        betas: Adam's betas for both networks.
        seed: seeds sample order, dropout and the discriminator's noise.
        records_per_epoch: history records per epoch (more than one gives curves for short runs;
            ``epoch`` is then fractional: 0.2, 0.4, ... and only the last record of an epoch is
            validated).
    """

    epochs: int = 2
    batch_size: int = 16
    lr: float = 1e-3
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


def _endless(data: Dataset, batch_size: int, generator: torch.Generator) -> Iterator[dict[str, Any]]:
    loader = DataLoader(data, batch_size=batch_size, sampler=RandomSampler(data, generator=generator),
                        drop_last=len(data) >= batch_size)
    while True:
        yield from loader


def _bce(logits: Tensor, real: bool) -> Tensor:
    return F.binary_cross_entropy_with_logits(logits, torch.full_like(logits, 1.0 if real else 0.0))


def _check_finite(values: dict[str, float], epoch: int, step: int) -> None:
    bad = {k: v for k, v in values.items() if not math.isfinite(v)}
    if bad:
        raise FloatingPointError(f"non-finite loss in epoch {epoch + 1}, step {step + 1}: {bad}")


def train_adversarial(generator: nn.Module, discriminator: nn.Module, task: SoftargmaxTask, labelled: Dataset,
                      unlabelled: Dataset | None = None, settings: AdversarialSettings = AdversarialSettings(),
                      *, val_data: Dataset | None = None, layout: str = "300w", progress: bool = True,
                      device: str | torch.device = "cpu") -> History:
    """Train ``generator`` and ``discriminator`` in place; return the per-epoch :class:`History`.

    ``unlabelled`` may be ``None`` or empty: the fakes are then the generator's maps on the labelled
    images only. Images of both sets must have the same size. Raises ``FloatingPointError`` on a
    non-finite loss.
    """
    device = torch.device(device)
    s = settings
    generator.to(device)
    discriminator.to(device)
    opt_g = torch.optim.Adam(generator.parameters(), lr=s.lr, betas=s.betas)
    opt_d = torch.optim.Adam(discriminator.parameters(), lr=s.d_lr, betas=s.betas)
    order = torch.Generator().manual_seed(s.seed)
    labelled_loader = DataLoader(labelled, batch_size=s.batch_size, sampler=RandomSampler(labelled, generator=order),
                                 drop_last=True)
    steps = len(labelled_loader)
    if steps == 0:
        raise ValueError(f"no labelled batch: {len(labelled)} images for batch_size={s.batch_size}")
    extra = _endless(unlabelled, s.batch_size, torch.Generator().manual_seed(s.seed + 1)) \
        if unlabelled is not None and len(unlabelled) > 0 else None
    history = History()
    bar = tqdm(total=steps * s.epochs, disable=not progress, leave=False, dynamic_ncols=True)
    try:
        for epoch in range(s.epochs):
            seed_everything(int(np.random.SeedSequence([s.seed, epoch]).generate_state(1)[0]))
            generator.train()
            discriminator.train()
            sums: dict[str, float] = {}
            count, start = 0, time.perf_counter()
            marks = {round(steps * (k + 1) / s.records_per_epoch) for k in range(s.records_per_epoch)}
            for step, batch in enumerate(labelled_loader):
                images, landmarks = batch["image"].to(device), batch["landmarks"].to(device)
                n_lab = len(images)
                all_images = images if extra is None else torch.cat([images, next(extra)["image"].to(device)])
                logits = generator(all_images)["heatmaps"]
                outputs = {"heatmaps": logits[:n_lab]}
                stride = task.stride(outputs, batch)
                real = real_heatmaps(task, landmarks, tuple(images.shape[-2:]), stride)
                fake = fake_heatmaps(task, logits)

                # 1. discriminator: real pairs -> 1, generated pairs -> 0
                d_real = discriminator(images, real)
                d_fake = discriminator(all_images, fake.detach())
                loss_d = 0.5 * (_bce(d_real, True) + _bce(d_fake, False))
                opt_d.zero_grad(set_to_none=True)
                loss_d.backward()
                opt_d.step()

                # 2. generator: supervised loss on the labelled images + weighted adversarial term on all
                supervised = task.loss(outputs, {"image": images, "landmarks": landmarks})["total"]
                adversarial = _bce(discriminator(all_images, fake), True) if s.weight > 0 else logits.new_zeros(())
                total = supervised + s.weight * adversarial
                opt_g.zero_grad(set_to_none=True)
                total.backward()
                opt_g.step()

                values = {"supervised": supervised.item(), "adversarial": adversarial.item(), "total": total.item(),
                          "discriminator": loss_d.item(), "d_real": torch.sigmoid(d_real).mean().item(),
                          "d_fake": torch.sigmoid(d_fake).mean().item()}
                _check_finite(values, epoch, step)
                for key, value in values.items():
                    sums[key] = sums.get(key, 0.0) + value
                count += 1
                bar.update()
                bar.set_postfix(g=f"{values['total']:.3g}", d=f"{values['discriminator']:.3g}", refresh=False)
                if step + 1 not in marks:
                    continue
                record: dict[str, float] = {"epoch": epoch + (step + 1) / steps, "lr": s.lr,
                                            "seconds": time.perf_counter() - start}
                for key, value in sums.items():
                    record[key if key.startswith("d_") else f"loss_{key}"] = value / count
                if val_data is not None and step + 1 == steps:
                    result = evaluate(generator, task, val_data, layout=layout, batch_size=64, device=device)
                    record.update({f"val_{k}": float(result[k]) for k in ("nme", "fr", "auc")})
                    generator.train()
                history.append(record)
                sums, count, start = {}, 0, time.perf_counter()
                if progress:
                    shown = "  ".join(f"{k} {v:.4g}" for k, v in record.items() if k != "epoch")
                    bar.write(f"epoch {record['epoch']:.2f}/{s.epochs}  {shown}")
    finally:
        bar.close()
    generator.eval()
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
