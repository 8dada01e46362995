"""Stored models of chapters 8-9: the fine-grained baseline and CropNet-refined models.

One baseline (quarter-width ResNet-18 + FC, IOD-normalised L2) and refined models (baseline + 3
CropNet stages trained end to end) that differ in one thing each:

- the loss of each stage (the paper's Table 5): the multi-loss scheme IOD-L2 / L2 / L1 / Align Loss,
  and the same loss in every stage (L2 / L2 / L2, L1 / L1 / L1);
- the gradient switches of the crops (Table 6), on the multi-loss model.

All sizes come from :func:`settings` (the one place that reads the profile). Align Loss is smoothed
(Gaussian 3 x 3, sigma 1) until ``smooth_epochs`` and unsmoothed afterwards, as the paper removes the
filter once the loss stops falling; the run is resumed from its own checkpoint with the same
optimiser and schedule, so the switch changes nothing else.
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import dataclass

import torch

from landmarks.experiments import SyntheticData
from landmarks.finegrained.stages import PAPER_SCHEME, FineGrainedTask, MemoryDataset, evaluate_stages
from landmarks.models.cropnet import finegrained_net
from landmarks.profile import Profile
from landmarks.recipes import Recipe, register
from landmarks.training.loop import History, fit

CHAPTER = "09"


@dataclass(frozen=True)
class Settings:
    """Sizes of the chapter's experiments (quick: a few CPU minutes per model; full: the paper's)."""

    image_size: int
    width: float
    depth: int
    train: SyntheticData
    test: SyntheticData
    epochs: int
    smooth_epochs: int
    batch_size: int
    lr: float
    decay_epochs: tuple[int, ...]
    decay: float
    weight_decay: float
    hidden: int
    patch_size: int = 8


def settings(profile: Profile) -> Settings:
    """The chapter's sizes for ``profile``."""
    if profile.name == "quick":
        return Settings(image_size=profile.image_size, width=0.25, depth=18,
                        train=SyntheticData("studio", 1500, seed=100), test=SyntheticData("studio", 200, seed=101),
                        epochs=6, smooth_epochs=5, batch_size=32, lr=1e-3, decay_epochs=(5,), decay=0.3,
                        weight_decay=0.0, hidden=64)
    # The paper (Sect. 6.6): 25 % channels, batch 64, Adam 5e-4 decayed by 0.3, weight decay 5e-4,
    # CropNet block of 128 channels. Epochs scaled down from its 400.
    return Settings(image_size=profile.image_size, width=0.25, depth=18,
                    train=SyntheticData("studio", profile.train_images, seed=100),
                    test=SyntheticData("studio", profile.test_images, seed=101),
                    epochs=profile.epochs, smooth_epochs=profile.epochs * 3 // 4, batch_size=64, lr=5e-4,
                    decay_epochs=profile.decay_epochs, decay=0.3, weight_decay=5e-4, hidden=128)


@functools.lru_cache(maxsize=4)
def _faces(data: SyntheticData, image_size: int) -> MemoryDataset:
    """The faces of ``data``, rendered once per process (every recipe trains on the same ones)."""
    return MemoryDataset(data.build(image_size))


def training_faces(s: Settings) -> MemoryDataset:
    return _faces(s.train, s.image_size)


def test_faces(s: Settings) -> MemoryDataset:
    return _faces(s.test, s.image_size)


#: name -> (stage losses, grad_features, grad_locations, what it is)
VARIANTS: dict[str, tuple[tuple[str, ...], bool, bool, str]] = {
    "fg_baseline": (("iod-l2",), True, True, "baseline (no refinement)"),
    "fg_multiloss": (PAPER_SCHEME, True, True, "L2 / L1 / AL (multi-loss)"),
    "fg_l2": (("iod-l2", "l2", "l2", "l2"), True, True, "L2 / L2 / L2"),
    "fg_l1": (("iod-l2", "l1", "l1", "l1"), True, True, "L1 / L1 / L1"),
    "fg_nograd": (PAPER_SCHEME, False, False, "no gradient to the feature maps"),
    "fg_locgrad": (PAPER_SCHEME, False, True, "crop-location gradient only"),
    "fg_featgrad": (PAPER_SCHEME, True, False, "feature-map gradient only"),
}


def build_model(name: str, s: Settings) -> torch.nn.Module:
    losses, grad_features, grad_locations, _ = VARIANTS[name]
    return finegrained_net(68, s.depth, s.width, stages=len(losses) - 1, hidden=s.hidden, patch_size=s.patch_size,
                           grad_features=grad_features, grad_locations=grad_locations)


def build_task(name: str) -> FineGrainedTask:
    return FineGrainedTask(VARIANTS[name][0], layout="300w")


def train_model(name: str, model: torch.nn.Module, s: Settings, progress: bool = True) -> History:
    """Train end to end; Align Loss loses its smoothing after ``smooth_epochs`` (resumed run)."""
    task = build_task(name)
    options = dict(batch_size=s.batch_size, lr=s.lr, decay_epochs=s.decay_epochs, decay=s.decay,
                   weight_decay=s.weight_decay, seed=0, progress=progress, layout="300w")
    data = training_faces(s)
    if "align" not in task.losses or s.smooth_epochs >= s.epochs:
        return fit(model, task, data, epochs=s.epochs, **options)
    with tempfile.TemporaryDirectory() as folder:
        first = fit(model, task, data, epochs=s.smooth_epochs, checkpoint_dir=folder, **options)
        task.smooth = False
        second = fit(model, task, data, epochs=s.epochs, checkpoint_dir=folder, resume=True, **options)
    return History(first.records + [r for r in second.records if r["epoch"] > s.smooth_epochs])


def evaluate_model(model: torch.nn.Module, s: Settings) -> dict[str, float]:
    """NME after every output (``nme_0`` = baseline), FR and AUC of the last, on the test faces."""
    results = evaluate_stages(model, test_faces(s), "300w", batch_size=50)
    metrics = {f"nme_{k}": float(v) for k, v in enumerate(results["nme"])}
    metrics.update(nme=float(results["nme"][-1]), fr=float(results["summary"][-1]["fr"]),
                   auc=float(results["summary"][-1]["auc"]))
    return metrics


def _recipe(name: str, profile: Profile) -> Recipe:
    s = settings(profile)
    losses, grad_features, grad_locations, label = VARIANTS[name]
    request = {"losses": list(losses), "grad_features": grad_features, "grad_locations": grad_locations,
               "settings": {k: v for k, v in s.__dict__.items() if k not in ("train", "test")},
               "train": s.train.__dict__, "test": s.test.__dict__}
    return Recipe(name, request, build=lambda: build_model(name, s),
                  train=lambda model, progress: train_model(name, model, s, progress),
                  evaluate=lambda model: evaluate_model(model, s), chapter=CHAPTER, extra={"label": label})


for _name in VARIANTS:
    register(_name, chapter=CHAPTER)(functools.partial(_recipe, _name))
