"""Chapters 8-9's stored detectors: the fine-grained baseline and CropNet-refined models.

One baseline (quarter-width ResNet-18 + FC, IOD-normalised L2) and refined models (baseline + 3
CropNet stages trained end to end, :cite:p:`yan2020finegrained`) that differ in one thing each
(:data:`VARIANTS`):

- the loss of each stage (the paper's Table 5): the multi-loss scheme IOD-L2 / L2 / L1 / Align Loss,
  and the same loss in every stage (L2 / L2 / L2, L1 / L1 / L1);
- the gradient switches of the crops (Table 6), on the multi-loss model.

All sizes come from :func:`settings`, built from the profile's image size and the chapter's entry
of the profile (``profile.chapter("09")``; the quick profile's are the :class:`Settings` defaults).
Align Loss is smoothed (Gaussian 3 x 3, sigma 1) until ``smooth_epochs`` and unsmoothed afterwards,
as the paper removes the filter once the loss stops falling (Sect. 4.3); the run is resumed from its
own checkpoint with the same optimiser and schedule, so the switch changes nothing else.

Metrics of every experiment, on the chapter's test faces: ``"nme/stage<k>"`` after output ``k``
(``k = 0``: the baseline output ``S_0``) and ``"nme"``, ``"fr"``, ``"auc"`` of the last output.
"""
from __future__ import annotations

import functools
import tempfile
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from landmarks.book.experiments import experiment, first_seed
from landmarks.data.synthetic import SyntheticData
from landmarks.data.views import MemoryDataset
from landmarks.detector import Detector
from landmarks.finegrained.stages import PAPER_SCHEME, evaluate_stages, finegrained_detector
from landmarks.profile import Profile
from landmarks.store import Trained
from landmarks.training.loop import fit

__all__ = ["CHAPTER", "Settings", "settings", "Variant", "VARIANTS", "training_faces", "test_faces", "build",
           "train", "evaluate"]

CHAPTER = "09"


@dataclass(frozen=True)
class Settings:
    """Sizes of the chapter's experiments; the defaults are the quick profile's (a few CPU minutes
    per model). The full profile sets the paper's (Sect. 6.6): batch 64, Adam 5e-4 decayed by 0.3,
    weight decay 5e-4, a CropNet block of 128 channels; epochs scaled down from its 400."""

    image_size: int
    width: float = 0.25
    depth: int = 18
    train_images: int = 1500
    test_images: int = 200
    epochs: int = 6
    smooth_epochs: int = 5
    batch_size: int = 32
    lr: float = 1e-3
    decay_epochs: tuple[int, ...] = (5,)
    decay: float = 0.3
    weight_decay: float = 0.0
    hidden: int = 64
    patch_size: int = 8

    @property
    def train(self) -> SyntheticData:
        """The training faces (studio domain, the book's training seed)."""
        return SyntheticData("studio", self.train_images, seed=100)

    @property
    def test(self) -> SyntheticData:
        """The test faces (studio domain, the book's test seed)."""
        return SyntheticData("studio", self.test_images, seed=101)


def settings(profile: Profile) -> Settings:
    """The chapter's sizes for ``profile``: its image size and its chapter-9 entry."""
    return Settings(image_size=profile.image_size, **profile.chapter(CHAPTER))


@dataclass(frozen=True)
class Variant:
    """One stored model: the loss of every output and the crops' gradient switches (Table 6)."""

    losses: tuple[str, ...]
    grad_features: bool = True
    grad_locations: bool = True
    label: str = ""


VARIANTS: dict[str, Variant] = {
    "fg_baseline": Variant(("iod-l2",), label="baseline (no refinement)"),
    "fg_multiloss": Variant(PAPER_SCHEME, label="L2 / L1 / AL (multi-loss)"),
    "fg_l2": Variant(("iod-l2", "l2", "l2", "l2"), label="L2 / L2 / L2"),
    "fg_l1": Variant(("iod-l2", "l1", "l1", "l1"), label="L1 / L1 / L1"),
    "fg_nograd": Variant(PAPER_SCHEME, False, False, "no gradient to the feature maps"),
    "fg_locgrad": Variant(PAPER_SCHEME, False, True, "crop-location gradient only"),
    "fg_featgrad": Variant(PAPER_SCHEME, True, False, "feature-map gradient only"),
}


@functools.lru_cache(maxsize=4)
def _faces(data: SyntheticData, image_size: int) -> MemoryDataset:
    """The faces of ``data``, rendered once per process (every experiment trains on the same ones)."""
    return MemoryDataset(data.build(image_size))


def training_faces(s: Settings) -> MemoryDataset:
    return _faces(s.train, s.image_size)


def test_faces(s: Settings) -> MemoryDataset:
    return _faces(s.test, s.image_size)


def request(name: str, profile: Profile) -> dict[str, Any]:
    """Every setting that defines experiment ``name``'s result."""
    s, variant = settings(profile), VARIANTS[name]
    sizes = {f.name: getattr(s, f.name) for f in fields(s) if f.name not in ("train_images", "test_images")}
    return {"losses": list(variant.losses), "grad_features": variant.grad_features,
            "grad_locations": variant.grad_locations, "settings": sizes,
            "train": asdict(s.train), "test": asdict(s.test)}


def build(name: str, profile: Profile) -> Detector:
    """The untrained detector of experiment ``name``."""
    s, variant = settings(profile), VARIANTS[name]
    return finegrained_detector(variant.losses, 68, s.depth, s.width, patch_size=s.patch_size,
                                image_size=s.image_size, layout="300w", hidden=s.hidden,
                                grad_features=variant.grad_features, grad_locations=variant.grad_locations)


def train(name: str, profile: Profile, seed: int, progress: bool = True) -> Trained:
    """Initialise under ``seed`` and train end to end; Align Loss loses its smoothing after
    ``smooth_epochs`` (the run is resumed with the unsmoothed loss)."""
    s = settings(profile)
    torch.manual_seed(seed)
    detector = build(name, profile)
    options = dict(batch_size=s.batch_size, lr=s.lr, decay_epochs=s.decay_epochs, decay=s.decay,
                   weight_decay=s.weight_decay, seed=seed, progress=progress)
    data = training_faces(s)
    if "align" not in detector.task.losses or s.smooth_epochs >= s.epochs:
        return Trained(detector, fit(detector, data, epochs=s.epochs, **options))
    with tempfile.TemporaryDirectory() as folder:
        fit(detector, data, epochs=s.smooth_epochs, checkpoint_dir=folder, **options)
        history = fit(detector, data, epochs=s.epochs, checkpoint_dir=folder, resume=True,
                      loss=replace(detector.task, smooth=False), **options)
    return Trained(detector, history)


def evaluate(detector: Detector, profile: Profile) -> dict[str, float]:
    """``"nme/stage<k>"`` after every output (``k = 0``: the baseline ``S_0``) and ``"nme"``, ``"fr"``,
    ``"auc"`` of the last one, on the chapter's test faces."""
    results = evaluate_stages(detector, test_faces(settings(profile)), batch_size=50)
    last = results["summary"][-1]
    metrics = {"nme": float(last["nme"]), "fr": float(last["fr"]), "auc": float(last["auc"])}
    metrics.update({f"nme/stage{k}": float(value) for k, value in enumerate(results["nme"])})
    return metrics


for _name, _variant in VARIANTS.items():
    experiment(_name, CHAPTER,
               settings=lambda profile, n=_name: request(n, profile),
               train=lambda profile, seed, progress, n=_name: train(n, profile, seed, progress),
               evaluate=evaluate, label=_variant.label, seeds=first_seed,
               build=lambda profile, n=_name: build(n, profile))
