"""Chapter 7 (adversarial training with unlabelled faces): stored generator + discriminator pairs.

Every run starts from a chapter-6 generator of the same seed (softargmax or LaplaceKL, see
:mod:`landmarks.book.ch06_heatmap_spread`) and trains it ``epochs`` more passes over the same
labelled studio faces, with or without the adversarial branch of
:cite:p:`robinson2019laplace` (Sect. 3.2-3.3, :mod:`landmarks.laplacekl.adversarial`):

- ``ch07_<loss>_sup``: supervised only (the control: the same extra training with weight 0, so
  ``D`` never acts on ``G``);
- ``ch07_<loss>_u<K>``: adversarial with ``K`` unlabelled faces of another domain (the paper's
  D(10K) ... D(70K) columns of Table 2, scaled down); the pools of the full profile are in chapter
  ``"07-full"``;
- ``ch07_weight_<1000 w>``: the sweep that chose the adversarial weight (lost in our text copy).

The stored detector's network is the :class:`~landmarks.laplacekl.adversarial.AdversarialPair`
(its forward is the generator's), so the discriminator is stored with it. Settings come from
:func:`adversarial_settings` (:class:`AdversarialChapterSettings` with the profile's chapter-7
values) and :func:`~landmarks.book.ch06_heatmap_spread.spread_settings`. Metrics: :func:`measure`
on the studio test faces (``nme``, ``fr``, ``auc``, ``spread_px``) and on the unlabelled domain's
(``nme/wild``, ...).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass
from typing import Any, Callable

import torch

from landmarks.book.ch06_heatmap_spread import make_task, measure, spread_settings, test_data, train_data
from landmarks.book.experiments import STORE, experiment, first_seed
from landmarks.data.synthetic import SyntheticData
from landmarks.detector import Detector, architecture, build_network
from landmarks.laplacekl.adversarial import AdversarialSettings, adversarial_pair, train_adversarial
from landmarks.profile import PROFILES, Profile
from landmarks.store import Trained

__all__ = ["AdversarialChapterSettings", "adversarial_settings", "run_name", "weight_name", "start_name",
           "pair_detector", "evaluate_pair"]


@dataclass(frozen=True)
class AdversarialChapterSettings:
    """Unlabelled pool sizes, the unlabelled domain, the adversarial schedule and the weight sweep.

    Defaults: the quick profile's one extra epoch on the CPU; the full profile sets the paper's
    D(10K)-D(70K) pools and 200 epochs in all. ``d_lr``: with one epoch (100 steps) a discriminator
    at Adam 2e-4 stayed at chance (P(real) 0.53 on real and 0.48 on fake pairs at the end) and every
    run matched its control to 0.01 % NME; 2e-3 lets it learn within the epoch.
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
    """The chapter's settings in ``profile`` (its chapter-7 values over the defaults)."""
    return AdversarialChapterSettings(**profile.chapter("07"))


def run_name(loss: str, unlabelled: int | None) -> str:
    """``ch07_laplace_sup`` (no discriminator) or ``ch07_laplace_u400`` (400 unlabelled faces)."""
    short = "laplace" if loss == "laplace-kl" else "softargmax"
    return f"ch07_{short}_sup" if unlabelled is None else f"ch07_{short}_u{unlabelled}"


def weight_name(weight: float) -> str:
    return f"ch07_weight_{round(1000 * weight):04d}"


def start_name(loss: str) -> str:
    """The chapter-6 experiment a run of ``loss`` starts from."""
    return "ch06_laplace_kl" if loss == "laplace-kl" else "ch06_softargmax"


def pair_detector(loss: str, profile: Profile) -> Detector:
    """The untrained detector of a run: an AdversarialPair of the chapter-6 generator's width and a
    PatchGAN, with the softargmax task of ``loss``."""
    s, a = spread_settings(profile), adversarial_settings(profile)
    record = architecture(adversarial_pair, num_points=68, divisor=s.divisor, dropout=s.dropout,
                          d_divisor=a.d_divisor, noise=a.noise)
    return Detector(build_network(record), make_task(loss, s), image_size=s.image_size, layout="300w",
                    architecture=record)


def evaluate_pair(detector: Detector, profile: Profile) -> dict[str, float]:
    """:func:`measure` on the studio test faces and, suffixed ``/<domain>``, on the unlabelled domain's."""
    s, a = spread_settings(profile), adversarial_settings(profile)
    studio = measure(detector, test_data(s, "studio"))
    other = measure(detector, test_data(s, a.unlabelled_domain))
    return {**studio, **{f"{key}/{a.unlabelled_domain}": value for key, value in other.items()}}


def _settings(profile: Profile, loss: str, unlabelled: int | None, weight: float) -> dict[str, Any]:
    return {"spread": asdict(spread_settings(profile)), "adversarial": asdict(adversarial_settings(profile)),
            "loss": loss, "unlabelled": unlabelled, "weight": weight, "start": start_name(loss)}


def _train(profile: Profile, seed: int, progress: bool, loss: str, unlabelled: int | None, weight: float) -> Trained:
    torch.set_num_threads(1)  # CPU kernels are deterministic for a fixed thread count; the stored runs used one
    s, a = spread_settings(profile), adversarial_settings(profile)
    torch.manual_seed(seed)
    detector = pair_detector(loss, profile)
    pair = detector.model
    start = STORE.model(start_name(loss), seed=seed, profile=profile, progress=progress).detector
    pair.generator.load_state_dict(start.model.state_dict())
    pool = SyntheticData(a.unlabelled_domain, unlabelled, seed=300).build(s.image_size) if unlabelled else None
    # the control (unlabelled None): the same extra epochs with weight 0, so D never acts on G
    schedule = AdversarialSettings(epochs=a.epochs, batch_size=s.batch_size, lr=s.lr, d_lr=a.d_lr,
                                   weight=0.0 if unlabelled is None else weight, seed=seed,
                                   records_per_epoch=a.records_per_epoch)
    generator = Detector(pair.generator, detector.task, image_size=s.image_size, layout="300w")
    history = train_adversarial(generator, pair.discriminator, train_data(s), pool, schedule, progress=progress)
    return Trained(detector, history)


def _register(name: str, chapter: str, loss: str, unlabelled_of: Callable[[Profile], int | None],
              weight_of: Callable[[Profile], float], label: str) -> None:
    """One run; ``unlabelled_of(profile)`` is its pool size (``None``: the control) and
    ``weight_of(profile)`` its adversarial weight."""
    experiment(name, chapter,
               settings=lambda profile: _settings(profile, loss, unlabelled_of(profile), weight_of(profile)),
               train=lambda profile, seed, progress: _train(profile, seed, progress, loss, unlabelled_of(profile),
                                                            weight_of(profile)),
               evaluate=evaluate_pair, build=lambda profile: pair_detector(loss, profile),
               requires=(start_name(loss),), label=label, seeds=first_seed)


def _register_all() -> None:
    defaults = AdversarialChapterSettings()
    pools = list(dict.fromkeys(c for p in (defaults, *map(adversarial_settings, PROFILES.values()))
                               for c in p.unlabelled_counts))
    largest = {max(adversarial_settings(p).unlabelled_counts) for p in PROFILES.values()}
    chosen_weight = lambda profile: adversarial_settings(profile).weight  # noqa: E731
    for loss, short in (("laplace-kl", "LaplaceKL"), ("softargmax-l1", "softargmax")):
        for count in (None, *pools):
            if loss != "laplace-kl" and count is not None and count not in largest:
                continue  # softargmax: only the control and the largest pool
            # the quick profile makes only its own pools; "07-full" marks the others (the full profile's)
            chapter = "07" if count is None or count in defaults.unlabelled_counts else "07-full"
            label = f"{short}, {'no unlabelled faces' if count is None else f'{count} unlabelled faces'}"
            _register(run_name(loss, count), chapter, loss, lambda profile, c=count: c, chosen_weight, label)
    for weight in defaults.sweep_weights:
        if weight == defaults.weight:
            continue  # that point is ch07_laplace_u<sweep_unlabelled>
        _register(weight_name(weight), "07", "laplace-kl",
                  lambda profile: adversarial_settings(profile).sweep_unlabelled,
                  lambda profile, w=weight: w, f"LaplaceKL, weight {weight:g}")


_register_all()
