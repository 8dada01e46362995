"""The one switch between small CPU settings and the papers' settings.

Set the environment variable ``LANDMARKS_PROFILE`` to ``quick`` (the default: small models, small
images, a few CPU minutes per chapter) or ``full`` (the papers' settings, for a GPU and a real
dataset). Every chapter reads its sizes from :func:`current` and branches on nothing else::

    import landmarks.profile
    settings = landmarks.profile.current()
    settings.image_size   # 128 in the quick profile, 256 in the full one

This module is the only place that reads the variable.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, replace

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


PROFILES: dict[str, Profile] = {
    # A few CPU minutes per chapter on two cores.
    "quick": Profile(name="quick", image_size=128, width=0.25, train_images=2000, test_images=200,
                     epochs=8, batch_size=32, learning_rate=1e-3, decay_epochs=(6,), num_workers=0),
    # PIPNet's settings: 256 px, ResNet-18, 60 epochs, Adam 1e-4 decayed at 30 and 50, batch 16.
    "full": Profile(name="full", image_size=256, width=1.0, train_images=20000, test_images=2000,
                    epochs=60, batch_size=16, learning_rate=1e-4, decay_epochs=(30, 50), num_workers=4),
}


def current(**overrides) -> Profile:
    """The profile named by ``LANDMARKS_PROFILE`` (``quick`` when unset), with optional overrides."""
    name = os.environ.get(ENV_VARIABLE, "quick").strip().lower() or "quick"
    if name not in PROFILES:
        raise ValueError(f"{ENV_VARIABLE}={name!r}: expected one of {sorted(PROFILES)}")
    return replace(PROFILES[name], **overrides)
