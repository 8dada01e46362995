"""Chapter 7 (adversarial training with unlabelled faces): stored generator + discriminator pairs.

Every run starts from a chapter-6 generator (softargmax or LaplaceKL, see
:mod:`landmarks.book.ch06_heatmap_spread`) and trains it ``epochs`` more passes over the same
labelled studio faces, with or without the adversarial branch of :mod:`landmarks.laplacekl.adversarial`:

- ``ch07_<loss>_sup``: supervised only (the control: the same extra training without ``D``);
- ``ch07_<loss>_u<K>``: adversarial with ``K`` unlabelled faces of another domain (the paper's
  D(10K) ... D(70K) columns, scaled down);
- ``ch07_weight_<w>``: the sweep that chose the adversarial weight (lost in our text copy).

Settings come from :func:`adversarial_settings`, the one place that reads the profile.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any

import torch
from torch import nn

from landmarks.laplacekl.adversarial import AdversarialPair, AdversarialSettings, train_adversarial
from landmarks.experiments import SyntheticData
from landmarks.models.patchgan import PatchGAN
from landmarks.models.recombinator import recombinator
from landmarks.profile import Profile
from landmarks.recipes import Recipe, cook, recipe, register
from landmarks.book.ch06_heatmap_spread import (
    SpreadSettings,
    make_task,
    measure,
    spread_settings,
    test_data,
    train_data,
)

__all__ = ["AdversarialChapterSettings", "adversarial_settings", "run_name", "weight_name"]


@dataclass(frozen=True)
class AdversarialChapterSettings:
    """Unlabelled pool sizes, the unlabelled domain, the adversarial schedule and the weight sweep.

    ``d_lr``: with one epoch (100 steps) a discriminator at Adam 2e-4 stayed at chance (P(real)
    0.53 on real and 0.48 on fake pairs at the end) and every run matched its control to 0.01 %
    NME; 2e-3 lets it learn within the epoch.
    """

    unlabelled_domain: str = "wild"
    unlabelled_counts: tuple[int, ...] = (400, 1600)
    epochs: int = 1
    d_divisor: int = 4
    d_lr: float = 2e-3
    noise: float = 0.1
    weight: float = 0.1
    sweep_weights: tuple[float, ...] = (0.01, 0.1, 1.0)
    sweep_unlabelled: int = 400
    records_per_epoch: int = 5
    seed: int = 0


def adversarial_settings(profile: Profile) -> AdversarialChapterSettings:
    """Quick profile: one extra epoch on CPU. Full: the paper's D(10K)-D(70K) pools, 200 epochs in all."""
    if profile.name == "quick":
        return AdversarialChapterSettings()
    return AdversarialChapterSettings(unlabelled_counts=(10_000, 30_000, 50_000, 70_000), epochs=100, d_divisor=1,
                                      sweep_unlabelled=10_000, records_per_epoch=1)


def run_name(loss: str, unlabelled: int | None) -> str:
    """``ch07_laplace_sup`` (no discriminator) or ``ch07_laplace_u400`` (400 unlabelled faces)."""
    short = "laplace" if loss == "laplace-kl" else "softargmax"
    return f"ch07_{short}_sup" if unlabelled is None else f"ch07_{short}_u{unlabelled}"


def weight_name(weight: float) -> str:
    return f"ch07_weight_{round(1000 * weight):04d}"


def _start(loss: str) -> str:
    return "ch06_laplace_kl" if loss == "laplace-kl" else "ch06_softargmax"


def _recipe(name: str, profile: Profile, loss: str, unlabelled: int | None, weight: float) -> Recipe:
    s: SpreadSettings = spread_settings(profile)
    a = adversarial_settings(profile)
    task = make_task(loss, s)

    def build() -> nn.Module:
        torch.manual_seed(a.seed)
        return AdversarialPair(recombinator(68, s.divisor, s.dropout), PatchGAN(68, a.d_divisor, a.noise))

    def train(pair: nn.Module, progress: bool):
        torch.set_num_threads(1)
        start, _ = cook(recipe(_start(loss), profile), profile, progress=progress)
        pair.generator.load_state_dict(start.state_dict())
        pool = SyntheticData(a.unlabelled_domain, unlabelled, seed=300).build(s.image_size) if unlabelled else None
        # the control (unlabelled None): the same extra epochs with weight 0, so D never acts on G
        schedule = AdversarialSettings(epochs=a.epochs, batch_size=s.batch_size, lr=s.lr, d_lr=a.d_lr,
                                       weight=0.0 if unlabelled is None else weight, seed=a.seed,
                                       records_per_epoch=a.records_per_epoch)
        return train_adversarial(pair.generator, pair.discriminator, task, train_data(s), pool, schedule,
                                 progress=progress)

    def evaluate(pair: nn.Module) -> dict[str, float]:
        studio = measure(pair, task, test_data(s, "studio"))
        other = measure(pair, task, test_data(s, a.unlabelled_domain))
        return {**studio, **{f"{a.unlabelled_domain}_{k}": v for k, v in other.items()}}

    request: dict[str, Any] = {"spread": asdict(s), "adversarial": asdict(a), "loss": loss,
                               "unlabelled": unlabelled, "weight": weight, "start": _start(loss)}
    return Recipe(name, request, build, train, evaluate, chapter="07",
                  extra={"loss": loss, "unlabelled": unlabelled, "weight": weight})


def _register() -> None:
    defaults = AdversarialChapterSettings()
    for loss in ("laplace-kl", "softargmax-l1"):
        for count in (None, *defaults.unlabelled_counts):
            if loss != "laplace-kl" and count not in (None, max(defaults.unlabelled_counts)):
                continue  # softargmax: only the control and the largest pool
            name = run_name(loss, count)

            def factory(profile: Profile, loss: str = loss, count: int | None = count, name: str = name) -> Recipe:
                return _recipe(name, profile, loss, count, adversarial_settings(profile).weight)
            register(name, chapter="07")(factory)
    for weight in defaults.sweep_weights:
        if weight == defaults.weight:
            continue  # that point is ch07_laplace_u<sweep_unlabelled>
        name = weight_name(weight)

        def factory(profile: Profile, weight: float = weight, name: str = name) -> Recipe:
            return _recipe(name, profile, "laplace-kl", adversarial_settings(profile).sweep_unlabelled, weight)
        register(name, chapter="07")(factory)


_register()
