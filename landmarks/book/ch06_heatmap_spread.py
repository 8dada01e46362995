"""Chapter 6 (heatmap spread): Recombinators trained with softargmax, LaplaceKL and GaussianKL.

Every setting of the chapter's stored models comes from :func:`spread_settings`, the one place that
reads the profile. Recipes (``python scripts/make_checkpoints.py --chapter 06``):

- ``ch06_softargmax``, ``ch06_laplace_kl``, ``ch06_gaussian_kl``: the three losses on the same data,
  the same network (width divisor ``divisor``) and schedule;
- ``ch06_size_d<k>``: LaplaceKL at other width divisors (the paper's Table 3);
- ``ch06_sweep_<name>``: short runs of a narrower network that choose the temperature and the
  ground-truth scale (the paper's Fig. 4; the values are lost in our text copy).
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from typing import Any

import torch
from torch import nn

from landmarks.experiments import SyntheticData
from landmarks.models.recombinator import recombinator
from landmarks.codecs.softargmax import mean_absolute_deviation, spatial_softmax
from landmarks.profile import Profile
from landmarks.recipes import Recipe, register
from landmarks.codecs.tasks import SoftargmaxTask
from landmarks.training.loop import evaluate, fit

__all__ = ["SpreadSettings", "spread_settings", "LOSSES", "measure", "train_data", "test_data", "make_task"]

#: Recipe name -> loss of the task.
LOSSES = {"ch06_softargmax": "softargmax-l1", "ch06_laplace_kl": "laplace-kl", "ch06_gaussian_kl": "gaussian-kl"}


@dataclass(frozen=True)
class SpreadSettings:
    """Sizes and schedule of chapter 6 (and the generator that chapter 7 starts from).

    ``temperature`` and ``gt_scale`` (pixels) are the values the sweep chose; ``sweep_*`` size the
    sweep's runs; ``size_divisors`` are the widths trained for the size study.
    """

    image_size: int = 80
    train_images: int = 800
    test_images: int = 200
    epochs: int = 4
    batch_size: int = 8
    lr: float = 2e-3
    divisor: int = 8
    dropout: float = 0.0
    temperature: float = 1.0
    gt_scale: float = 1.0
    size_divisors: tuple[int, ...] = (2, 4, 16)
    sweep_divisor: int = 16
    sweep_images: int = 400
    sweep_epochs: int = 3
    sweep_temperatures: tuple[float, ...] = (0.5, 1.0, 2.0)
    sweep_scales: tuple[float, ...] = (0.5, 1.0, 2.0)
    seed: int = 0


def spread_settings(profile: Profile) -> SpreadSettings:
    """Quick profile: CPU-sized runs (a larger step and no dropout, as a few epochs cannot overfit; a
    small pilot at 800 faces x 4 epochs gave 8.3 % NME with them against 9.5 % with lr 1e-3, batch 16
    and dropout 0.1). Full: the paper's Adam 1e-3, dropout, 200 epochs at full width (Sect. 3.4, 4)."""
    if profile.name == "quick":
        return SpreadSettings()
    return SpreadSettings(train_images=profile.train_images, test_images=profile.test_images, epochs=200,
                          batch_size=profile.batch_size, lr=1e-3, dropout=0.1, divisor=1, size_divisors=(2, 4, 8, 16), sweep_divisor=4,
                          sweep_images=profile.train_images, sweep_epochs=20)


def train_data(s: SpreadSettings, images: int | None = None):
    """Labelled studio faces at ``s.image_size`` (the book's training seed)."""
    return SyntheticData("studio", images or s.train_images, seed=100).build(s.image_size)


def test_data(s: SpreadSettings, domain: str = "studio"):
    """Test faces of ``domain`` (the book's test seed)."""
    return SyntheticData(domain, s.test_images, seed=101).build(s.image_size)


def make_task(loss: str, s: SpreadSettings) -> SoftargmaxTask:
    return SoftargmaxTask(loss, temperature=s.temperature, gt_scale=s.gt_scale)


@torch.no_grad()
def measure(model: nn.Module, task: SoftargmaxTask, data, batch_size: int = 50) -> dict[str, float]:
    """NME / FR / AUC on ``data`` and the mean spread of the predicted maps in pixels.

    ``spread_px``: the per-axis mean absolute deviation of the probability maps around their
    softargmax (:func:`landmarks.ops.mean_absolute_deviation`), averaged over axes, landmarks and
    images: the "variation from the mean" the paper reports (1.02 vs 2.59 px, Sect. 4.2).
    """
    result = evaluate(model, task, data, layout="300w", batch_size=batch_size)
    model.eval()
    spreads = []
    for start in range(0, len(data), batch_size):
        images = torch.stack([data[i]["image"] for i in range(start, min(start + batch_size, len(data)))])
        probs = spatial_softmax(model(images)["heatmaps"], task.temperature)
        spreads.append(mean_absolute_deviation(probs).mean((1, 2)))
    return {"nme": float(result["nme"]), "fr": float(result["fr"]), "auc": float(result["auc"]),
            "spread_px": float(torch.cat(spreads).mean())}


def _recipe(name: str, s: SpreadSettings, loss: str, divisor: int, images: int, epochs: int) -> Recipe:
    task = make_task(loss, s)

    def build() -> nn.Module:
        torch.manual_seed(s.seed)
        return recombinator(68, divisor, s.dropout)

    def train(model: nn.Module, progress: bool):
        torch.set_num_threads(1)
        return fit(model, task, train_data(s, images), None, epochs=epochs, batch_size=s.batch_size, lr=s.lr,
                   seed=s.seed, progress=progress)

    request: dict[str, Any] = {"settings": asdict(s), "loss": loss, "divisor": divisor, "images": images,
                               "epochs": epochs, "temperature": s.temperature, "gt_scale": s.gt_scale}
    return Recipe(name, request, build, train, lambda model: measure(model, task, test_data(s)), chapter="06",
                  extra={"loss": loss, "divisor": divisor})


def _register_losses() -> None:
    for name, loss in LOSSES.items():
        def factory(profile: Profile, name: str = name, loss: str = loss) -> Recipe:
            s = spread_settings(profile)
            return _recipe(name, s, loss, s.divisor, s.train_images, s.epochs)
        register(name, chapter="06")(factory)


def _register_sizes() -> None:
    for divisor in (1, 2, 4, 8, 16):
        def factory(profile: Profile, divisor: int = divisor) -> Recipe:
            s = spread_settings(profile)
            return _recipe(f"ch06_size_d{divisor}", s, "laplace-kl", divisor, s.train_images, s.epochs)
        # the quick profile makes only its own divisors; "06-full" marks the others (make them with
        # ``--chapter 06 06-full`` in the full profile)
        chapter = "06" if divisor in SpreadSettings().size_divisors else "06-full"
        register(f"ch06_size_d{divisor}", chapter=chapter)(factory)


def sweep_name(temperature: float, gt_scale: float) -> str:
    """``ch06_sweep_t<100 T>_b<100 b>``, e.g. ``ch06_sweep_t100_b050``."""
    return f"ch06_sweep_t{round(100 * temperature):03d}_b{round(100 * gt_scale):03d}"


def sweep_points(s: SpreadSettings) -> list[tuple[float, float]]:
    """One-at-a-time sweep: every temperature at scale 1, every scale at temperature 1."""
    points = [(t, 1.0) for t in s.sweep_temperatures] + [(1.0, b) for b in s.sweep_scales]
    return list(dict.fromkeys(points))


def _register_sweep() -> None:
    for t, b in sweep_points(SpreadSettings()):
        def factory(profile: Profile, t: float = t, b: float = b) -> Recipe:
            s = replace(spread_settings(profile), temperature=t, gt_scale=b)
            return _recipe(sweep_name(t, b), s, "laplace-kl", s.sweep_divisor, s.sweep_images, s.sweep_epochs)
        register(sweep_name(t, b), chapter="06")(factory)


_register_losses()
_register_sizes()
_register_sweep()
