"""Chapter 6 (heatmap spread): Recombinators trained with softargmax, LaplaceKL and GaussianKL.

Every setting of the chapter's stored experiments comes from :func:`spread_settings`
(:class:`SpreadSettings` with the profile's chapter-6 values). Each experiment is a Recombinator
(:cite:p:`robinson2019laplace`, Table 1) with a :class:`~landmarks.codecs.tasks.SoftargmaxTask`,
trained with :func:`~landmarks.training.loop.fit` on the book's studio faces and scored on its studio
test faces by :func:`measure`:

- ``ch06_softargmax``, ``ch06_laplace_kl``, ``ch06_gaussian_kl``: the three losses (softargmax + L1,
  LaplaceKL and GaussianKL, Sect. 3.1 and 3.4) on the same data, the same network (width divisor
  ``divisor``) and schedule; chapter 7 starts from the first two, so every seed of them is kept;
- ``ch06_size_d<k>``: LaplaceKL at other width divisors (Table 3); the divisors the quick profile
  does not train are in chapter ``"06-full"``;
- ``ch06_sweep_t<100 T>_b<100 b>``: LaplaceKL runs that choose the temperature and the ground-truth
  scale (Fig. 4; the values are lost in our text copy). In the quick profile the sweep's runs have the
  main runs' sizes, so its point at the chosen values is ``ch06_laplace_kl`` itself
  (:func:`sweep_experiment`) and the duplicate name is left to chapter ``"06-full"``.

Every experiment is trained with the profile's seeds (three replicates).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any, Callable

import torch

from landmarks.book.experiments import experiment
from landmarks.codecs.softargmax import mean_absolute_deviation
from landmarks.codecs.tasks import SoftargmaxTask
from landmarks.data.synthetic import SyntheticData
from landmarks.detector import Detector, architecture, build_network
from landmarks.evaluation.loop import evaluate, predictions
from landmarks.models.recombinator import recombinator
from landmarks.profile import Profile
from landmarks.store import Trained
from landmarks.training.loop import fit

__all__ = ["SpreadSettings", "spread_settings", "LOSSES", "LABELS", "measure", "train_data", "test_data",
           "make_task", "spread_detector", "sweep_name", "sweep_points", "sweep_experiment", "sweep_same_as_main", "NARROW_LR"]

#: Experiment name -> loss of the task.
LOSSES = {"ch06_softargmax": "softargmax-l1", "ch06_laplace_kl": "laplace-kl", "ch06_gaussian_kl": "gaussian-kl"}
#: Experiment name -> how the chapter names its loss.
LABELS = {"ch06_softargmax": "softargmax + L1", "ch06_laplace_kl": "LaplaceKL", "ch06_gaussian_kl": "GaussianKL"}


@dataclass(frozen=True)
class SpreadSettings:
    """Sizes and schedule of chapter 6 (and of the generator that chapter 7 starts from).

    The defaults are the quick profile's CPU-sized runs: 2,000 faces, 16 epochs of batch 16, Adam
    ``lr`` dropped tenfold after epoch 12, **no dropout** (16 epochs of 2,000 faces do not overfit).
    Step and length were chosen on one seed per value (width / 8, drop at 3/4 of the run):
    softargmax + L1 reached 6.68, 5.24 and 4.89 % NME in 12 epochs at lr 2e-3, 5e-3 and 1e-2, and
    3.81 % in 20 epochs at 1e-2; LaplaceKL 4.42, 3.36 and 3.08 % in 12 epochs at the same steps.
    At 800 faces x 4 epochs (the earlier quick setting) softargmax stayed at the mean face. The full profile sets the paper's Adam 1e-3 without a drop, dropout
    and 200 epochs at full width (:cite:p:`robinson2019laplace`, Sect. 3.4 and 4).
    ``temperature`` and ``gt_scale`` (pixels) are the values the sweep chose; ``sweep_*`` size the
    sweep's runs; ``size_divisors`` are the widths trained for the size study besides ``divisor``.
    ``seed`` is the first replicate's seed (the store trains replicate ``k`` with seed ``k``).
    """

    image_size: int = 80
    train_images: int = 2000
    test_images: int = 200
    epochs: int = 16
    batch_size: int = 16
    lr: float = 1e-2
    decay_epochs: tuple[int, ...] = (12,)
    decay: float = 0.1
    divisor: int = 8
    dropout: float = 0.0
    temperature: float = 1.0
    gt_scale: float = 1.0
    size_divisors: tuple[int, ...] = (4, 16)
    sweep_divisor: int = 8
    sweep_images: int = 2000
    sweep_epochs: int = 8
    sweep_temperatures: tuple[float, ...] = (0.5, 1.0, 2.0)
    sweep_scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    seed: int = 0


def spread_settings(profile: Profile) -> SpreadSettings:
    """The chapter's settings in ``profile`` (its chapter-6 values over the defaults)."""
    return SpreadSettings(**profile.chapter("06"))


def train_data(s: SpreadSettings, images: int | None = None):
    """Labelled studio faces at ``s.image_size`` (the book's training seed)."""
    return SyntheticData("studio", images or s.train_images, seed=100).build(s.image_size)


def test_data(s: SpreadSettings, domain: str = "studio"):
    """Test faces of ``domain`` (the book's test seed)."""
    return SyntheticData(domain, s.test_images, seed=101).build(s.image_size)


def make_task(loss: str, s: SpreadSettings) -> SoftargmaxTask:
    """The softargmax task of ``loss`` with the chapter's temperature and ground-truth scale."""
    return SoftargmaxTask(loss, temperature=s.temperature, gt_scale=s.gt_scale)


def spread_detector(loss: str, s: SpreadSettings, divisor: int | None = None) -> Detector:
    """The untrained Recombinator detector (68 maps at stride 1, width divisor ``divisor``)."""
    record = architecture(recombinator, num_points=68, divisor=s.divisor if divisor is None else divisor,
                          dropout=s.dropout)
    return Detector(build_network(record), make_task(loss, s), image_size=s.image_size, layout="300w",
                    architecture=record)


def measure(detector: Detector, data, batch_size: int = 50) -> dict[str, float]:
    """NME / FR / AUC on ``data`` and the mean spread of the predicted maps in pixels.

    ``spread_px``: the per-axis mean absolute deviation of the probability maps around their
    softargmax (:func:`landmarks.codecs.softargmax.mean_absolute_deviation`), averaged over axes,
    landmarks and images: the "variation from the mean" of :cite:p:`robinson2019laplace` (1.02 vs
    2.59 px, Sect. 4.2). Both go through the one inference loop (:mod:`landmarks.evaluation.loop`).
    """
    task = detector.task
    result = evaluate(detector, data, layout="300w", batch_size=batch_size)
    spreads = [mean_absolute_deviation(task.probabilities(outputs), stride=task.stride(outputs, batch)).mean((1, 2))
               for batch, outputs, _ in predictions(detector, data, batch_size, outputs=True)]
    return {"nme": float(result["nme"]), "fr": float(result["fr"]), "auc": float(result["auc"]),
            "spread_px": float(torch.cat(spreads).mean())}


#: ``configure(profile) -> (settings, divisor, images, epochs)`` of one experiment.
Configure = Callable[[Profile], tuple[SpreadSettings, int, int, int]]


def _settings(loss: str, s: SpreadSettings, divisor: int, images: int, epochs: int) -> dict[str, Any]:
    return {"settings": asdict(s), "loss": loss, "divisor": divisor, "images": images, "epochs": epochs,
            "temperature": s.temperature, "gt_scale": s.gt_scale}


def _train(loss: str, s: SpreadSettings, divisor: int, images: int, epochs: int, seed: int,
           progress: bool) -> Trained:
    torch.set_num_threads(1)  # CPU kernels are deterministic for a fixed thread count; the stored runs used one
    torch.manual_seed(seed)
    detector = spread_detector(loss, s, divisor)
    decay_epochs = [round(e * epochs / s.epochs) for e in s.decay_epochs]  # the same fraction of a shorter run
    history = fit(detector, train_data(s, images), None, epochs=epochs, batch_size=s.batch_size, lr=s.lr,
                  decay_epochs=[e for e in decay_epochs if 0 < e < epochs], decay=s.decay, seed=seed,
                  progress=progress)
    return Trained(detector, history)


def _register(name: str, chapter: str, loss: str, configure: Configure, label: str, keep: str = "first") -> None:
    experiment(name, chapter, settings=lambda profile: _settings(loss, *configure(profile)),
               train=lambda profile, seed, progress: _train(loss, *configure(profile), seed, progress),
               evaluate=lambda detector, profile: measure(detector, test_data(configure(profile)[0])),
               build=lambda profile: spread_detector(loss, *configure(profile)[:2]),
               keep=keep, label=label)


def sweep_name(temperature: float, gt_scale: float) -> str:
    """``ch06_sweep_t<100 T>_b<100 b>``, e.g. ``ch06_sweep_t100_b050``."""
    return f"ch06_sweep_t{round(100 * temperature):03d}_b{round(100 * gt_scale):03d}"


def sweep_same_as_main(s: SpreadSettings) -> bool:
    """Whether the sweep's runs have the main runs' width, faces and epochs."""
    return (s.sweep_divisor, s.sweep_images, s.sweep_epochs) == (s.divisor, s.train_images, s.epochs)


def sweep_experiment(s: SpreadSettings, temperature: float, gt_scale: float) -> str:
    """The experiment of one sweep point: ``ch06_laplace_kl`` at the chosen values when the sweep
    has the main runs' sizes (the same run), else :func:`sweep_name`."""
    if sweep_same_as_main(s) and (temperature, gt_scale) == (s.temperature, s.gt_scale):
        return "ch06_laplace_kl"
    return sweep_name(temperature, gt_scale)


def sweep_points(s: SpreadSettings) -> list[tuple[float, float]]:
    """One-at-a-time sweep: every temperature at scale 1, every scale at temperature 1."""
    points = [(t, 1.0) for t in s.sweep_temperatures] + [(1.0, b) for b in s.sweep_scales]
    return list(dict.fromkeys(points))


def _main(profile: Profile) -> tuple[SpreadSettings, int, int, int]:
    s = spread_settings(profile)
    return s, s.divisor, s.train_images, s.epochs


#: Width divisor -> the largest Adam step its size-study run takes. At the quick profile's 1e-2 the
#: 1/16 network collapsed (seed 0, epoch 10: every map on one cell, the loss from 0.54 to 6e4, 180 %
#: NME), the failure the paper reports for GaussianKL ("vanishing gradients", Sect. 3.4): a saturated
#: softmax has almost no gradient, so the maps stay where they collapsed.
NARROW_LR = {16: 5e-3}


def _size(divisor: int) -> Configure:
    def configure(profile: Profile) -> tuple[SpreadSettings, int, int, int]:
        s = spread_settings(profile)
        if divisor in NARROW_LR and s.lr > NARROW_LR[divisor]:
            s = replace(s, lr=NARROW_LR[divisor])
        return s, divisor, s.train_images, s.epochs
    return configure


def _sweep(temperature: float, gt_scale: float) -> Configure:
    def configure(profile: Profile) -> tuple[SpreadSettings, int, int, int]:
        s = replace(spread_settings(profile), temperature=temperature, gt_scale=gt_scale)
        return s, s.sweep_divisor, s.sweep_images, s.sweep_epochs
    return configure


for _name, _loss in LOSSES.items():  # chapter 7 starts from softargmax and LaplaceKL: keep every seed
    _register(_name, "06", _loss, _main, LABELS[_name],
              keep="all" if _name in ("ch06_softargmax", "ch06_laplace_kl") else "first")
for _divisor in (1, 2, 4, 8, 16):
    # the quick profile makes only its own divisors; "06-full" marks the others (the full profile's)
    _register(f"ch06_size_d{_divisor}", "06" if _divisor in SpreadSettings().size_divisors else "06-full",
              "laplace-kl", _size(_divisor), f"LaplaceKL, width / {_divisor}")
for _t, _b in sweep_points(SpreadSettings()):
    # the quick sweep's point at the chosen values is ch06_laplace_kl; its own name is the full profile's
    _quick = sweep_experiment(SpreadSettings(), _t, _b) == sweep_name(_t, _b)
    _register(sweep_name(_t, _b), "06" if _quick else "06-full", "laplace-kl", _sweep(_t, _b),
              f"LaplaceKL, T = {_t:g}, b0 = {_b:g} px")
