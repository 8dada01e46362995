"""Chapter 4's stored detectors: trained on black images (:cite:p:`jin2021pipnet`, Fig. 3a).

Both see the book's studio training faces with every image replaced by black
(:class:`~landmarks.data.views.BlackFaces`), so the labels are real landmarks and the images carry
no information. ``black_zeros`` is a PIP detector (stride 32, no neighbours) with the usual zero
padding; ``black_circular`` is the same network with circular padding
(:func:`~landmarks.pipnet.padding.set_padding_mode`), which gives a convolution no way to tell the
border from the middle. Batch norm is kept in evaluation mode in both
(``fit(frozen_batchnorm=True)``): on identical black images its batch statistics have no variance
(see :mod:`landmarks.pipnet.position`), and the two runs must differ in the padding only.

Metrics (:func:`black_image_metrics`): the NME of the prediction on a black image against the
training mean shape and, averaged, against individual training shapes.
"""
from __future__ import annotations

from dataclasses import asdict
from functools import lru_cache

import torch
from torch import Tensor

from landmarks.book.experiments import book_data, experiment
from landmarks.data.views import BlackFaces
from landmarks.detector import Detector, ModelSpec, build_detector
from landmarks.pipnet.padding import set_padding_mode
from landmarks.pipnet.position import nme_to_shapes, probe
from landmarks.profile import Profile
from landmarks.store import Trained
from landmarks.training.loop import fit

PADDINGS = ("zeros", "circular")


def black_spec(profile: Profile) -> ModelSpec:
    """The detector of the black-image experiment: PIP head at stride 32, no neighbours."""
    return ModelSpec.from_profile(profile, head="pip", net_stride=32, num_neighbours=0)


def black_detector(profile: Profile, padding: str) -> Detector:
    """The untrained detector of the experiment with ``padding``."""
    return build_detector(black_spec(profile), modifiers=[(set_padding_mode, {"mode": padding})])


@lru_cache(maxsize=2)
def training_shapes(profile: Profile) -> Tensor:
    """``(M, N, 2)`` landmarks of the book's training faces (the black images' labels)."""
    train, _ = book_data(profile)
    faces = train.build(profile.image_size)
    return torch.stack([faces[i]["landmarks"] for i in range(len(faces))])


def black_image_metrics(detector: Detector, profile: Profile, references: int = 200) -> dict[str, float]:
    """NME (inter-ocular, a fraction) of the prediction on one black image.

    ``nme_to_mean``: against the training mean shape; ``nme_to_random``: mean over the first
    ``references`` training shapes, each scored against the prediction; ``response``: the
    prediction's mean peak score (:func:`landmarks.pipnet.position.response_strength`).
    """
    shapes = training_shapes(profile)
    black = torch.zeros(1, 3, profile.image_size, profile.image_size)
    result = probe(detector, black, mean_shape=shapes.mean(0))
    to_shapes = nme_to_shapes(result.predictions, shapes[:references])
    return {"nme_to_mean": float(result.nme.mean()), "nme_to_random": float(to_shapes.mean()),
            "response": float(result.response.mean())}


def _settings(profile: Profile, padding: str) -> dict:
    train, _ = book_data(profile)
    return {"spec": black_spec(profile).to_config(), "padding": padding, "schedule": profile.schedule(),
            "train": asdict(train), "images": "black", "frozen_batchnorm": True}


def _train(profile: Profile, seed: int, progress: bool, padding: str) -> Trained:
    train, _ = book_data(profile)
    torch.manual_seed(seed)
    detector = black_detector(profile, padding)
    history = fit(detector, BlackFaces(train.build(profile.image_size)), None, seed=seed, progress=progress,
                  frozen_batchnorm=True, **profile.schedule())
    return Trained(detector, history)


for _padding in PADDINGS:
    experiment(f"black_{_padding}", "04",
               settings=lambda profile, p=_padding: _settings(profile, p),
               train=lambda profile, seed, progress, p=_padding: _train(profile, seed, progress, p),
               evaluate=black_image_metrics, label=f"black images, {_padding} padding",
               build=lambda profile, p=_padding: black_detector(profile, p))
