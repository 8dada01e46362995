"""Chapters 2-3's stored detectors: the PIPNet paper's heads on one trunk and one data set.

Every detector is a quarter-width ResNet-18 (the profile's width and input size) trained with the
profile's schedule on the book's studio faces (:func:`~landmarks.book.experiments.book_data`) and
scored on the book's test faces (NME, FR@0.1, AUC@0.1, inter-ocular):

- ``coordinate``: global pooling and a fully connected layer ("Coord Net", :cite:p:`jin2021pipnet`
  Table 2);
- ``heatmap_s4`` / ``_s2`` / ``_s1``: Map Nets at net strides 4, 2 and 1 (Table 2);
- ``pip_s16`` ... ``pip_s128``: PIP heads at net strides 16-128 without neighbours (Table 1);
- ``pipnet_s32`` (chapter 3): the PIP head at stride 32 with 10 neighbours (neighbour regression).
"""
from __future__ import annotations

from dataclasses import asdict
from typing import Any

from landmarks.book.experiments import book_data, experiment, scores
from landmarks.detector import Detector, ModelSpec, build_detector, training_landmarks
from landmarks.profile import Profile
from landmarks.store import Trained
from landmarks.training.loop import train_spec

#: name -> (chapter, the ModelSpec fields that differ from the defaults)
DETECTORS: dict[str, tuple[str, dict[str, Any]]] = {
    "coordinate": ("02", dict(head="coordinate")),
    "heatmap_s4": ("02", dict(head="heatmap", net_stride=4)),
    "heatmap_s2": ("02", dict(head="heatmap", net_stride=2)),
    "heatmap_s1": ("02", dict(head="heatmap", net_stride=1)),
    "pip_s16": ("02", dict(head="pip", net_stride=16, num_neighbours=0)),
    "pip_s32": ("02", dict(head="pip", net_stride=32, num_neighbours=0)),
    "pip_s64": ("02", dict(head="pip", net_stride=64, num_neighbours=0)),
    "pip_s128": ("02", dict(head="pip", net_stride=128, num_neighbours=0)),
    "pipnet_s32": ("03", dict(head="pip", net_stride=32, num_neighbours=10)),
}

SCHEDULE_KEYS = ("epochs", "batch_size", "learning_rate", "decay_epochs", "decay")


def spec(name: str, profile: Profile) -> ModelSpec:
    """The (untrained, neighbour-less) spec of detector ``name`` in ``profile``'s size."""
    return ModelSpec.from_profile(profile, **DETECTORS[name][1])


def settings(name: str, profile: Profile) -> dict[str, Any]:
    train, test = book_data(profile)
    return {"spec": spec(name, profile).to_config(),
            "schedule": {key: getattr(profile, key) for key in SCHEDULE_KEYS},
            "train": asdict(train), "test": asdict(test)}


def train(name: str, profile: Profile, seed: int, progress: bool) -> Trained:
    train_faces, _ = book_data(profile)
    detector, history = train_spec(spec(name, profile), train_faces.build(profile.image_size),
                                   schedule=profile.schedule(), seed=seed, progress=progress)
    return Trained(detector, history)


def training_shapes(profile: Profile):
    """The ``(M, N, 2)`` landmarks of the training faces (PIPNet's neighbours come from their mean)."""
    train_faces, _ = book_data(profile)
    return training_landmarks(train_faces.build(profile.image_size))


def evaluate(detector: Detector, profile: Profile) -> dict[str, float]:
    _, test = book_data(profile)
    return scores(detector, test.build(profile.image_size))


for _name, (_chapter, _fields) in DETECTORS.items():
    experiment(_name, _chapter,
               settings=lambda profile, n=_name: settings(n, profile),
               train=lambda profile, seed, progress, n=_name: train(n, profile, seed, progress),
               evaluate=evaluate, label=_name,
               build=lambda profile, n=_name: build_detector(spec(n, profile), training_shapes(profile)))
