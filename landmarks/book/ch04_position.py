"""Chapter 4's stored models: detectors trained on black images (PIPNet paper, Fig. 3a).

Both see the book's 2000 studio training faces with every image replaced by black, so the labels
are real landmarks and the images carry no information. ``black_zero`` is a PIP detector (stride
32, no neighbours) with the usual zero padding; ``black_circular`` is the same network with
circular padding, which gives a convolution no way to tell the border from the middle. Batch norm
is kept in evaluation mode in both (``fit(frozen_batchnorm=True)``): on identical black images its
batch statistics are zero-variance (see :mod:`landmarks.pipnet.position`), and the two runs must differ in
the padding only.

Metrics (:func:`black_image_metrics`): the NME of the prediction on a black image against the
training mean shape and, averaged, against individual training shapes.
"""
from __future__ import annotations

from functools import lru_cache

import torch
from torch import Tensor, nn

from landmarks.experiments import ModelSpec, book_data, build_model, build_task, fit_schedule
from landmarks.pipnet.position import BlackFaces, nme_to_shapes, probe, set_padding_mode
from landmarks.profile import Profile
from landmarks.recipes import Recipe, register
from landmarks.training.loop import fit

PADDINGS = ("zeros", "circular")


def black_spec(profile: Profile) -> ModelSpec:
    """The detector of the black-image experiment: PIP head at stride 32, no neighbours."""
    return ModelSpec.from_profile(profile, head="pip", net_stride=32, num_neighbours=0)


@lru_cache(maxsize=2)
def training_shapes(profile: Profile) -> Tensor:
    """``(M, N, 2)`` landmarks of the book's training faces (the black images' labels)."""
    train, _ = book_data(profile)
    faces = train.build(profile.image_size)
    return torch.stack([faces[i]["landmarks"] for i in range(len(faces))])


def black_image_metrics(model: nn.Module, task, profile: Profile, references: int = 200) -> dict[str, float]:
    """NME (inter-ocular, %-free fraction) of the prediction on one black image.

    ``nme_to_mean``: against the training mean shape; ``nme_to_random``: mean over the first
    ``references`` training shapes, each scored against the prediction; ``response``: the
    prediction's mean peak score (:func:`landmarks.probes.response_strength`).
    """
    shapes = training_shapes(profile)
    black = torch.zeros(1, 3, profile.image_size, profile.image_size)
    result = probe(model, task, black, mean_shape=shapes.mean(0))
    to_shapes = nme_to_shapes(result.predictions, shapes[:references])
    return {"nme_to_mean": float(result.nme.mean()), "nme_to_random": float(to_shapes.mean()),
            "response": float(result.response.mean())}


def black_recipe(profile: Profile, padding: str) -> Recipe:
    spec = black_spec(profile)
    train, _ = book_data(profile)
    task = build_task(spec)

    def build() -> nn.Module:
        return set_padding_mode(build_model(spec), padding)

    def train_model(model: nn.Module, progress: bool):
        data = BlackFaces(train.build(profile.image_size))
        return fit(model, task, data, None, progress=progress, frozen_batchnorm=True, **fit_schedule(profile))

    return Recipe(f"black_{padding}", chapter="04", build=build, train=train_model,
                  evaluate=lambda model: black_image_metrics(model, task, profile),
                  request={"spec": spec.to_config(), "padding": padding, "schedule": fit_schedule(profile),
                           "train": {"domain": train.domain, "length": train.length, "seed": train.seed},
                           "images": "black", "frozen_batchnorm": True})


for _padding in PADDINGS:
    register(f"black_{_padding}", chapter="04")(lambda profile, _p=_padding: black_recipe(profile, _p))
