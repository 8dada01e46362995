"""The book's experiment store: every chapter's stored experiments, registered by name.

Each chapter module of :mod:`landmarks.book` adds its experiments to :data:`STORE` when it is
imported (``import landmarks.book`` imports them all). The files live in the package's assets
(``landmarks/assets/results/<profile>/`` and ``landmarks/assets/checkpoints/<profile>/``), or under
``$LANDMARKS_STORE`` when that variable is set (tests and experiments of your own)::

    from landmarks.book import STORE
    results = STORE.results("pip_s32")      # every seed's metrics, trained if missing
    stored = STORE.model("pip_s32")         # the displayed seed: .detector, .metrics, .history
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Callable, Mapping, Sequence

from landmarks.data.synthetic import SyntheticData
from landmarks.detector import Detector
from landmarks.evaluation.loop import evaluate
from landmarks.profile import Profile
from landmarks.store import Experiment, Store, Trained

__all__ = ["STORE", "store_root", "book_data", "scores", "experiment"]

ENV_VARIABLE = "LANDMARKS_STORE"


def store_root() -> Path:
    """``$LANDMARKS_STORE``, else the package's assets folder."""
    default = Path(__file__).resolve().parent.parent / "assets"
    return Path(os.environ.get(ENV_VARIABLE) or default)


STORE = Store(store_root)


def experiment(name: str, chapter: str, settings: Callable[[Profile], Mapping[str, Any]],
               train: Callable[[Profile, int, bool], Trained], evaluate: Callable[[Detector, Profile], Mapping[str, float]],
               **options: Any) -> Experiment:
    """Declare an experiment and add it to :data:`STORE`."""
    return STORE.add(Experiment(name, chapter, settings, train, evaluate, **options))


def book_data(profile: Profile) -> tuple[SyntheticData, SyntheticData]:
    """The training and test faces of chapters 2-4 (studio domain, disjoint seeds)."""
    return (SyntheticData("studio", profile.train_images, seed=100),
            SyntheticData("studio", profile.test_images, seed=101))


def scores(detector: Detector, data: Any, keys: Sequence[str] = ("nme", "fr", "auc"), suffix: str = "",
           batch_size: int = 64) -> dict[str, float]:
    """``{"nme<suffix>": ..., "fr<suffix>": ..., "auc<suffix>": ...}`` of ``detector`` on ``data``."""
    result = evaluate(detector, data, batch_size=batch_size)
    return {f"{key}{suffix}": float(result[key]) for key in keys}
