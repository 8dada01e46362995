"""The one switch between small CPU settings and the papers' settings.

Set the environment variable ``LANDMARKS_PROFILE`` to ``quick`` (the default: small models, small
images, a few CPU minutes per chapter) or ``full`` (the papers' settings, for a GPU and a real
dataset). Every chapter reads its sizes from :func:`current` and branches on nothing else::

    import landmarks.profile
    settings = landmarks.profile.current()
    settings.image_size   # 128 in the quick profile, 256 in the full one

This module is the only place that reads the variable, and the only one whose code depends on the
profile's name. Settings that only one chapter uses are kept per chapter in :attr:`Profile.chapters`
(``profile.chapter("06")``): each chapter's settings class takes them as keyword arguments, so a
chapter reads its settings from the profile the same way in both profiles.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field, replace
from typing import Any, Mapping

ENV_VARIABLE = "LANDMARKS_PROFILE"


@dataclass(frozen=True)
class Profile:
    """Sizes and schedules shared by the library's defaults and the book's chapters.

    Args:
        name: ``"quick"`` or ``"full"``.
        image_size: side of the square face crop fed to the models, in pixels.
        width: channel multiplier of the ResNet trunks (0.25 = a quarter of the channels).
        train_images: number of training faces per experiment (synthetic faces are rendered on the fly).
        test_images: number of test faces per experiment.
        epochs: training epochs.
        batch_size: images per optimisation step.
        learning_rate: Adam's initial step size.
        decay_epochs: epochs after which the learning rate is multiplied by ``decay``.
        decay: the step-decay factor.
        num_workers: data-loading worker processes.
        seeds: the replicates of every stored experiment (initialisation and data order; the test
            sets never change with the seed).
        chapters: chapter number -> the settings of that chapter that differ from its defaults.
        augment: train with :func:`~landmarks.data.transforms.real_data_augmentation` (PIPNet's).
        crop_margin: border cut around each training crop for augmentation, as a fraction of the crop.
        real_data: the settings that differ when training on real photos (:meth:`for_real_data`).
        for_gpu: the settings are meant for a GPU (the command line says so when it trains them on a CPU).
    """

    name: str
    image_size: int
    width: float
    train_images: int
    test_images: int
    epochs: int
    batch_size: int
    learning_rate: float = 1e-4
    decay_epochs: tuple[int, ...] = ()
    decay: float = 0.1
    num_workers: int = 0
    seeds: tuple[int, ...] = (0, 1, 2)
    chapters: Mapping[str, Mapping[str, Any]] = field(default_factory=dict, hash=False, repr=False)
    augment: bool = False
    crop_margin: float = 0.0
    real_data: Mapping[str, Any] = field(default_factory=dict, hash=False, repr=False)
    for_gpu: bool = False

    def for_real_data(self) -> "Profile":
        """This profile with the recipe for real photos (:attr:`real_data`): augmentation on, crops
        cut with a margin and cached, and the schedule and model that suit a few thousand faces."""
        return replace(self, **self.real_data)

    def decays_for(self, epochs: int) -> tuple[int, ...]:
        """The decay epochs moved to a run of ``epochs`` epochs, at the same fractions of the run as
        :attr:`decay_epochs` are of :attr:`epochs` (a schedule that fits however long one trains)."""
        if epochs == self.epochs:
            return tuple(self.decay_epochs)
        return tuple(sorted({max(1, round(d * epochs / self.epochs)) for d in self.decay_epochs if d < self.epochs}))

    def chapter(self, number: str) -> dict[str, Any]:
        """The settings of chapter ``number`` (``"06"``) that this profile sets (a copy)."""
        return dict(self.chapters.get(number, {}))

    def schedule(self) -> dict[str, Any]:
        """The training schedule as keyword arguments of :func:`landmarks.training.loop.fit`."""
        return dict(epochs=self.epochs, batch_size=self.batch_size, lr=self.learning_rate,
                    decay_epochs=self.decay_epochs, decay=self.decay, num_workers=self.num_workers)

    def short_schedule(self) -> dict[str, Any]:
        """A schedule for a model trained in a chapter's own cells, while the reader waits: half the
        epochs, half the batch and the decay at half the epochs of :meth:`schedule` (at least 1 epoch
        and a batch of 2)."""
        return dict(self.schedule(), epochs=max(1, self.epochs // 2), batch_size=max(2, self.batch_size // 2),
                    decay_epochs=tuple(epoch // 2 for epoch in self.decay_epochs))


#: Chapter settings of the full profile (the papers' settings; the quick ones are each chapter's defaults).
_FULL_CHAPTERS: dict[str, dict[str, Any]] = {
    # LaplaceKL (Sect. 3.4, 4): Adam 1e-3, dropout, 200 epochs at full width.
    "06": dict(train_images=20000, test_images=2000, epochs=200, batch_size=16, lr=1e-3, decay_epochs=(), dropout=0.1, divisor=1,
               size_divisors=(2, 4, 8, 16), sweep_divisor=4, sweep_images=20000, sweep_epochs=20),
    # LaplaceKL + D (Sect. 4.2): 300W's 3,148 labelled faces, D(10K)-D(70K) unlabelled pools, 200 epochs,
    # Adam 1e-3 without a drop (the discriminator's step is not given; pix2pix's 2e-4).
    "07": dict(labelled=3148, unlabelled_counts=(10_000, 30_000, 50_000, 70_000), epochs=200, lr=1e-3,
               decay_epochs=(), d_divisor=1, d_lr=2e-4, labelled_only_check=True, records_per_epoch=1),
    # Fine-grained (Sect. 6.6): 25 % channels, batch 64, weight decay 5e-4, CropNet block of 128 channels;
    # the baseline alone with Adam 1e-4 decayed by 0.3 (the paper: 350 epochs, every 50), the stages
    # end to end with 5e-4 decayed by 0.3 (400 epochs, every 80); epochs scaled down.
    "09": dict(train_images=20000, test_images=2000, baseline_epochs=60, baseline_lr=1e-4,
               baseline_decay_epochs=(40, 52), stage_epochs=10, stage_lr=5e-4, stage_decay_epochs=(8,),
               joint_epochs=30, joint_lr=5e-4, joint_decay_epochs=(20, 26), batch_size=64,
               weight_decay=5e-4, hidden=128),
}


#: Real photos in the quick profile: about 870 faces (HELEN's training split) train from scratch in
#: at most 15 minutes on two CPU cores: a half-width ResNet-18 at 128 px (about 40 images/s per
#: training step there), 30 epochs of batch 16, Adam 1e-3 decayed by 10 after 2/3 and 9/10 of them.
_QUICK_REAL = dict(width=0.5, epochs=30, batch_size=16, learning_rate=1e-3, decay_epochs=(20, 27), decay=0.1,
                   augment=True, crop_margin=0.25)
#: Real photos in the full profile: PIPNet's own recipe (the profile's schedule) with its augmentation.
_FULL_REAL = dict(augment=True, crop_margin=0.25)

PROFILES: dict[str, Profile] = {
    # A few CPU minutes per chapter on two cores.
    "quick": Profile(name="quick", image_size=128, width=0.25, train_images=2000, test_images=200,
                     epochs=8, batch_size=32, learning_rate=1e-3, decay_epochs=(6,), num_workers=0,
                     real_data=_QUICK_REAL),
    # PIPNet's settings: 256 px, ResNet-18, 60 epochs, Adam 1e-4 decayed at 30 and 50, batch 16.
    "full": Profile(name="full", image_size=256, width=1.0, train_images=20000, test_images=2000,
                    epochs=60, batch_size=16, learning_rate=1e-4, decay_epochs=(30, 50), num_workers=4,
                    chapters=_FULL_CHAPTERS, real_data=_FULL_REAL, for_gpu=True),
}


def current(**overrides) -> Profile:
    """The profile named by ``LANDMARKS_PROFILE`` (``quick`` when unset), with optional overrides."""
    name = os.environ.get(ENV_VARIABLE, "quick").strip().lower() or "quick"
    if name not in PROFILES:
        raise ValueError(f"{ENV_VARIABLE}={name!r}: expected one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **overrides)
