"""Chapter 7 (adversarial training with unlabelled faces): stored generator + discriminator pairs.

The regime where unlabelled faces can matter: few labelled faces and many unlabelled ones of the
same kind. Every run trains a LaplaceKL Recombinator (chapter 6's width, temperature and
ground-truth scale, :mod:`landmarks.book.ch06_heatmap_spread`) and a PatchGAN from scratch, jointly,
on the first ``labelled`` studio training faces of chapter 6, as the paper does
(:cite:p:`robinson2019laplace`, Sect. 3.2-3.4; :mod:`landmarks.laplacekl.adversarial`):

- ``ch07_laplace_sup``: supervised only, the control (the same schedule with weight 0, so ``D`` is
  trained but never acts on ``G``);
- ``ch07_laplace_d0``: adversarial, fakes from the labelled faces only (the paper's "D(300W)" check:
  the unlabelled set is the labelled one);
- ``ch07_laplace_u<K>``: adversarial with ``K`` unlabelled faces (the paper's D(10K) ... D(70K)
  columns of Table 2, scaled down); the pools of the full profile are in chapter ``"07-full"``.

The unlabelled faces come from the labelled faces' domain (another seed), so the discriminator's
real pairs (labelled images, maps rendered from labels) and fake pairs (generated maps on labelled
and unlabelled images) have images of one distribution: ``D`` can tell them apart only by the maps.
The stored detector's network is the :class:`~landmarks.laplacekl.adversarial.AdversarialPair`
(its forward is the generator's), so the discriminator is stored with it. Settings come from
:func:`adversarial_settings` (:class:`AdversarialChapterSettings` with the profile's chapter-7
values) and :func:`~landmarks.book.ch06_heatmap_spread.spread_settings`. Metrics:
:func:`~landmarks.book.ch06_heatmap_spread.measure` on chapter 6's studio test faces (``nme``,
``fr``, ``auc``, ``spread_px``) and :func:`discriminator_scores` on held-out pairs
(``d_real/test``, ``d_fake/test``).
"""
from __future__ import annotations

import copy
from dataclasses import asdict, dataclass
from typing import Any

import torch

from landmarks.book.ch06_heatmap_spread import make_task, measure, spread_settings, test_data
from landmarks.book.experiments import experiment
from landmarks.data.synthetic import SyntheticData
from landmarks.detector import Detector, architecture, build_network
from landmarks.laplacekl.adversarial import (AdversarialSettings, adversarial_pair, fake_heatmaps, real_heatmaps,
                                             train_adversarial)
from landmarks.profile import PROFILES, Profile
from landmarks.store import Trained

__all__ = ["AdversarialChapterSettings", "adversarial_settings", "run_name", "labelled_data", "unlabelled_data",
           "pair_detector", "discriminator_scores", "evaluate_pair", "LOSS"]

#: The loss of every run: the paper's semi-supervised model is LaplaceKL + D.
LOSS = "laplace-kl"


@dataclass(frozen=True)
class AdversarialChapterSettings:
    """Labelled and unlabelled faces, the joint schedule and the discriminator.

    Defaults: the quick profile. 400 labelled studio faces (a fifth of chapter 6's), pools of 800
    and 3,200 unlabelled studio faces, 30 epochs over the labelled faces (750 steps of batch 16,
    each with as many unlabelled faces), Adam 5e-3 dropped tenfold after epoch 22 for both networks.
    Pilots of the supervised control (one seed each): 100 labelled faces at chapter 6's 1e-2
    collapsed (every map on one cell, 184 % NME), at 2e-3 for 100 epochs reached 6.83 %, less than
    the book's factor 2 below the mean face (about 9.4 %); 400 faces at 5e-3 for 40 epochs 3.88 %
    (30 epochs here, to fit the CPU budget). ``labelled_only_check``: also train ``D`` on the
    labelled faces alone (the paper's D(300W) row; the full profile only, for the same budget). The full profile sets the paper's 300W-sized
    labelled set, D(10K)-D(70K) pools, 200 epochs and Adam 1e-3 without a drop. ``weight``: the
    adversarial weight (its value is lost in our text copy; not swept here). ``noise``: the
    PatchGAN's input noise.
    """

    labelled: int = 400
    domain: str = "studio"
    unlabelled_counts: tuple[int, ...] = (800, 3200)
    epochs: int = 30
    lr: float = 5e-3
    decay_epochs: tuple[int, ...] = (22,)
    decay: float = 0.1
    d_divisor: int = 4
    d_lr: float = 1e-3
    noise: float = 0.1
    weight: float = 0.1
    labelled_only_check: bool = False
    records_per_epoch: int = 1
    seed: int = 0


def adversarial_settings(profile: Profile) -> AdversarialChapterSettings:
    """The chapter's settings in ``profile`` (its chapter-7 values over the defaults)."""
    return AdversarialChapterSettings(**profile.chapter("07"))


def run_name(unlabelled: int | None) -> str:
    """``ch07_laplace_sup`` (``None``: the control), ``ch07_laplace_d0`` (``0``: D on the labelled
    faces only) or ``ch07_laplace_u500`` (500 unlabelled faces)."""
    if unlabelled is None:
        return "ch07_laplace_sup"
    return "ch07_laplace_d0" if unlabelled == 0 else f"ch07_laplace_u{unlabelled}"


def labelled_data(profile: Profile):
    """The labelled faces: the first ``labelled`` of chapter 6's training faces' generator."""
    s, a = spread_settings(profile), adversarial_settings(profile)
    return SyntheticData(a.domain, a.labelled, seed=100).build(s.image_size)


def unlabelled_data(profile: Profile, count: int, seed: int = 300):
    """``count`` unlabelled faces of the labelled faces' domain (another generator seed)."""
    s, a = spread_settings(profile), adversarial_settings(profile)
    return SyntheticData(a.domain, count, seed=seed).build(s.image_size)


def pair_detector(profile: Profile) -> Detector:
    """The untrained detector of a run: an AdversarialPair of chapter 6's generator width and a
    PatchGAN, with chapter 6's LaplaceKL task."""
    s, a = spread_settings(profile), adversarial_settings(profile)
    record = architecture(adversarial_pair, num_points=68, divisor=s.divisor, dropout=s.dropout,
                          d_divisor=a.d_divisor, noise=a.noise)
    return Detector(build_network(record), make_task(LOSS, s), image_size=s.image_size, layout="300w",
                    architecture=record)


@torch.no_grad()
def discriminator_scores(detector: Detector, data, batch_size: int = 16, seed: int = 0) -> dict[str, float]:
    """Mean ``P(real)`` the stored discriminator gives, on faces it never saw, to maps rendered from
    their labels (``d_real``) and to the generator's maps (``d_fake``), patches and faces averaged.

    ``D`` is run as in training, on a copy: batches of one kind of pair (all real or all generated)
    of ``batch_size`` faces, batch statistics in its batch norms and its input noise (drawn from
    ``seed``, without touching the global random state). In evaluation mode its running averages
    mix the statistics of real and generated batches, which no batch of either kind has. The maps
    are scaled as in training (:func:`~landmarks.laplacekl.adversarial.real_heatmaps`, ``fake_heatmaps``).
    """
    pair, task = detector.model, detector.task
    pair.eval()
    critic = copy.deepcopy(pair.discriminator).train()
    real, fake = [], []
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(seed)
        for start in range(0, len(data) - batch_size + 1, batch_size):  # whole batches, as in training
            samples = [data[i] for i in range(start, start + batch_size)]
            images = torch.stack([sample["image"] for sample in samples])
            landmarks = torch.stack([sample["landmarks"] for sample in samples])
            logits = pair.generator(images)["heatmaps"]
            stride = images.shape[-1] / logits.shape[-1]
            rendered = real_heatmaps(task, landmarks, tuple(images.shape[-2:]), stride)
            real.append(torch.sigmoid(critic(images, rendered)).mean((1, 2, 3)))
            fake.append(torch.sigmoid(critic(images, fake_heatmaps(task, logits))).mean((1, 2, 3)))
    return {"d_real": float(torch.cat(real).mean()), "d_fake": float(torch.cat(fake).mean())}


def evaluate_pair(detector: Detector, profile: Profile) -> dict[str, float]:
    """:func:`measure` on chapter 6's studio test faces, and the discriminator's scores on them
    (suffixed ``/test``)."""
    test = test_data(spread_settings(profile), adversarial_settings(profile).domain)
    scores = discriminator_scores(detector, test)
    return {**measure(detector, test), **{f"{key}/test": value for key, value in scores.items()}}


def _settings(profile: Profile, unlabelled: int | None) -> dict[str, Any]:
    return {"spread": asdict(spread_settings(profile)), "adversarial": asdict(adversarial_settings(profile)),
            "loss": LOSS, "unlabelled": unlabelled}


def _train(profile: Profile, seed: int, progress: bool, unlabelled: int | None) -> Trained:
    torch.set_num_threads(1)  # CPU kernels are deterministic for a fixed thread count; the stored runs used one
    s, a = spread_settings(profile), adversarial_settings(profile)
    torch.manual_seed(seed)
    detector = pair_detector(profile)
    pair = detector.model
    pool = unlabelled_data(profile, unlabelled) if unlabelled else None
    # the control (unlabelled None): the same schedule with weight 0, so D never acts on G
    schedule = AdversarialSettings(epochs=a.epochs, batch_size=s.batch_size, lr=a.lr, d_lr=a.d_lr,
                                   decay_epochs=a.decay_epochs, decay=a.decay,
                                   weight=0.0 if unlabelled is None else a.weight, seed=seed,
                                   records_per_epoch=a.records_per_epoch)
    generator = Detector(pair.generator, detector.task, image_size=s.image_size, layout="300w")
    history = train_adversarial(generator, pair.discriminator, labelled_data(profile), pool, schedule,
                                progress=progress)
    return Trained(detector, history)


def _register_all() -> None:
    defaults = AdversarialChapterSettings()
    pools = list(dict.fromkeys(c for p in (defaults, *map(adversarial_settings, PROFILES.values()))
                               for c in p.unlabelled_counts))
    for count in (None, 0, *pools):
        # the quick profile makes only its own runs; "07-full" marks the others (the full profile's)
        own = (None, *defaults.unlabelled_counts, *((0,) if defaults.labelled_only_check else ()))
        chapter = "07" if count in own else "07-full"
        label = {None: "LaplaceKL, no discriminator", 0: "LaplaceKL + D, labelled faces only"}.get(
            count, f"LaplaceKL + D, {count} unlabelled faces")
        experiment(run_name(count), chapter,
                   settings=lambda profile, c=count: _settings(profile, c),
                   train=lambda profile, seed, progress, c=count: _train(profile, seed, progress, c),
                   evaluate=evaluate_pair, build=pair_detector, label=label)


_register_all()
