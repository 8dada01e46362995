"""Chapters 8-9's stored detectors: the fine-grained baseline and CropNet-refined models.

One baseline (quarter-width ResNet-18 + FC, IOD-normalised L2) trained alone, and refined models
(the same baseline + 3 CropNet stages, :cite:p:`yan2020finegrained`) started from it, that differ in
one thing each (:data:`VARIANTS`):

- the loss of each stage (the paper's Table 5): the multi-loss scheme IOD-L2 / L2 / L1 / Align Loss,
  and the same loss in every stage (L2 / L2 / L2, L1 / L1 / L1);
- the crops' gradients (Table 6), both switched off, on the multi-loss model;
- the paper's end-to-end phase after the stages (``fg_multiloss_joint``).

The schedule follows the paper's (Sect. 6.6): the baseline is trained first (``fg_baseline``, every
seed stored), then the stages are added with a zero-initialised last layer, so that a refined model
starts by predicting exactly what its baseline predicts. We then depart from the paper in one point,
which the chapter states: the stages are trained on the frozen baseline (``stage_epochs``, trunk and FC
fixed, Align Loss smoothed). Only ``fg_multiloss_joint`` then trains everything end to end, as the
paper does (``joint_epochs`` at ``joint_lr``, Align Loss unsmoothed, as the paper removes the filter
once the loss stops falling, Sect. 4.3): in pilot runs that phase raised the NME of the stages on a
converged baseline instead of lowering it, and the chapter measures it with seeds. With the trunk
frozen, the crops' gradient to the feature maps reaches no trainable weight, so of Table 6's two
switches only the location one acts.
The control ``fg_baseline_more`` trains the same stored baseline for as many extra epochs as the stages
get, at the baseline's last learning rate, so that a gain of the stages is not a gain of training
longer.

All sizes come from :func:`settings`, built from the profile's image size and the chapter's entry
of the profile (``profile.chapter("09")``; the quick profile's are the :class:`Settings` defaults).

Metrics of every experiment, on the chapter's test faces: ``"nme/stage<k>"`` after output ``k``
(``k = 0``: the baseline output ``S_0``) and ``"nme"``, ``"fr"``, ``"auc"`` of the last output.
"""
from __future__ import annotations

import copy
import functools
from dataclasses import asdict, dataclass, fields, replace
from typing import Any

import torch

from landmarks.book.experiments import STORE, experiment
from landmarks.data.synthetic import SyntheticData
from landmarks.data.views import MemoryDataset
from landmarks.detector import Detector
from landmarks.finegrained.stages import PAPER_SCHEME, evaluate_stages, finegrained_detector
from landmarks.profile import Profile
from landmarks.store import Trained
from landmarks.training.loop import History, fit

__all__ = ["CHAPTER", "BASELINE", "CONTROL", "Settings", "settings", "Variant", "VARIANTS", "training_faces",
           "test_faces", "build", "train", "evaluate"]

CHAPTER = "09"
BASELINE = "fg_baseline"
CONTROL = "fg_baseline_more"


@dataclass(frozen=True)
class Settings:
    """Sizes of the chapter's experiments; the defaults are the quick profile's (about 14 CPU minutes
    for a baseline, 4 for the stages on it). The full profile sets the paper's (Sect. 6.6): batch 64,
    weight decay 5e-4, Adam 1e-4 for the baseline and 5e-4 end to end, decayed by 0.3, a CropNet block
    of 128 channels; epochs scaled down from its 350 and 400."""

    image_size: int
    width: float = 0.25
    depth: int = 18
    train_images: int = 4000
    test_images: int = 200
    baseline_epochs: int = 30
    baseline_lr: float = 1e-3
    baseline_decay_epochs: tuple[int, ...] = (20, 26)
    stage_epochs: int = 4
    stage_lr: float = 1e-3
    stage_decay_epochs: tuple[int, ...] = (3,)
    joint_epochs: int = 4
    joint_lr: float = 2e-4
    joint_decay_epochs: tuple[int, ...] = ()
    batch_size: int = 32
    decay: float = 0.3
    weight_decay: float = 0.0
    hidden: int = 128
    patch_size: int = 8

    @property
    def extra_epochs(self) -> int:
        """Epochs the control trains after the stored baseline: as many as the stages."""
        return self.stage_epochs

    @property
    def control_lr(self) -> float:
        """The control's learning rate: the baseline's last (after all its decays)."""
        return self.baseline_lr * self.decay ** len(self.baseline_decay_epochs)

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
    """One stored model: the loss of every output, the crops' gradient switches (Table 6), and whether
    an end-to-end phase follows the stages (``joint``)."""

    losses: tuple[str, ...]
    grad_features: bool = True
    grad_locations: bool = True
    label: str = ""
    joint: bool = False

    @property
    def refined(self) -> bool:
        return len(self.losses) > 1


VARIANTS: dict[str, Variant] = {
    BASELINE: Variant(("iod-l2",), label="baseline alone"),
    CONTROL: Variant(("iod-l2",), label="baseline, trained as many epochs more"),
    "fg_multiloss": Variant(PAPER_SCHEME, label="L2 / L1 / AL (multi-loss)"),
    "fg_l2": Variant(("iod-l2", "l2", "l2", "l2"), label="L2 / L2 / L2"),
    "fg_l1": Variant(("iod-l2", "l1", "l1", "l1"), label="L1 / L1 / L1"),
    "fg_nograd": Variant(PAPER_SCHEME, False, False, "no gradient through the crops"),
    "fg_multiloss_joint": Variant(PAPER_SCHEME, label="L2 / L1 / AL, then end to end", joint=True),
}


@functools.lru_cache(maxsize=4)
def _faces(data: SyntheticData, image_size: int) -> MemoryDataset:
    """The faces of ``data``, rendered once per process (every experiment trains on the same ones)."""
    return MemoryDataset(data.build(image_size))


def training_faces(s: Settings) -> MemoryDataset:
    return _faces(s.train, s.image_size)


def test_faces(s: Settings) -> MemoryDataset:
    return _faces(s.test, s.image_size)


_BASELINE_FIELDS = ("baseline_epochs", "baseline_lr", "baseline_decay_epochs")
_LATER_FIELDS = ("stage_epochs", "stage_lr", "stage_decay_epochs", "joint_epochs", "joint_lr", "joint_decay_epochs")


def request(name: str, profile: Profile) -> dict[str, Any]:
    """Every setting that defines experiment ``name``'s result (the baseline's do not include the later
    phases', so that changing those does not make the stored baselines stale)."""
    s, variant = settings(profile), VARIANTS[name]
    skip = {"train_images", "test_images", *(_LATER_FIELDS if name == BASELINE else ())}
    sizes = {f.name: getattr(s, f.name) for f in fields(s) if f.name not in skip}
    return {"losses": list(variant.losses), "grad_features": variant.grad_features,
            "grad_locations": variant.grad_locations, **({"joint": True} if variant.joint else {}),
            "settings": sizes, "train": asdict(s.train), "test": asdict(s.test)}


def build(name: str, profile: Profile) -> Detector:
    """The untrained detector of experiment ``name``."""
    s, variant = settings(profile), VARIANTS[name]
    return finegrained_detector(variant.losses, 68, s.depth, s.width, patch_size=s.patch_size,
                                image_size=s.image_size, layout="300w", hidden=s.hidden,
                                grad_features=variant.grad_features, grad_locations=variant.grad_locations)


def start_from_baseline(name: str, profile: Profile, seed: int, progress: bool = True) -> Detector:
    """Experiment ``name``'s detector initialised under ``seed`` and given the stored baseline of the
    same seed: every weight of the trunk and FC head is the baseline's, and the stages' last layers
    are zero, so it predicts exactly what the baseline predicts at every output."""
    baseline = STORE.model(BASELINE, seed=seed, profile=profile, progress=progress).detector
    torch.manual_seed(seed)
    detector = build(name, profile)
    result = detector.model.load_state_dict(copy.deepcopy(baseline.model.state_dict()), strict=False)
    outside = [key for key in result.missing_keys if not key.startswith("stages.")]
    if outside or result.unexpected_keys:
        raise RuntimeError(f"{name}: the stored {BASELINE} (seed {seed}) does not fit its trunk and head "
                           f"(missing {outside[:3]}, unexpected {result.unexpected_keys[:3]})")
    return detector


def _options(s: Settings, seed: int, progress: bool) -> dict[str, Any]:
    return dict(batch_size=s.batch_size, decay=s.decay, weight_decay=s.weight_decay, seed=seed, progress=progress)


def _joined(*phases: History) -> History:
    """The phases' histories as one, epochs counted on, each record marked with its phase."""
    joined, offset = History(), 0.0
    for phase, history in enumerate(phases):
        for record in history:
            joined.append({**record, "epoch": record["epoch"] + offset, "phase": float(phase)})
        offset += max(history.column("epoch"), default=0.0)
    return joined


def train(name: str, profile: Profile, seed: int, progress: bool = True) -> Trained:
    """Train experiment ``name`` under ``seed``: the baseline from scratch; the control and the
    refined models from the stored baseline of the same seed (trained first if it is missing)."""
    s, variant = settings(profile), VARIANTS[name]
    options, data, val = _options(s, seed, progress), training_faces(s), test_faces(s)
    if name == BASELINE:
        torch.manual_seed(seed)
        detector = build(name, profile)
        history = fit(detector, data, val, epochs=s.baseline_epochs, lr=s.baseline_lr,
                      decay_epochs=s.baseline_decay_epochs, **options)
        return Trained(detector, history)
    detector = start_from_baseline(name, profile, seed, progress)
    if not variant.refined:
        return Trained(detector, fit(detector, data, val, epochs=s.extra_epochs, lr=s.control_lr, **options))
    detector.model.freeze_baseline(True)
    stages = fit(detector, data, val, epochs=s.stage_epochs, lr=s.stage_lr, decay_epochs=s.stage_decay_epochs,
                 **options)
    detector.model.freeze_baseline(False)
    if not (variant.joint and s.joint_epochs):
        return Trained(detector, _joined(stages))
    joint = fit(detector, data, val, epochs=s.joint_epochs, lr=s.joint_lr, decay_epochs=s.joint_decay_epochs,
                loss=replace(detector.task, smooth=False), **options)
    return Trained(detector, _joined(stages, joint))


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
               evaluate=evaluate, label=_variant.label, build=lambda profile, n=_name: build(n, profile),
               **(dict(keep="all") if _name == BASELINE else dict(requires=(BASELINE,))))
