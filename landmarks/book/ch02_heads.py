"""Chapters 2-3's stored detectors: the PIPNet paper's heads on one trunk and one data set.

Every detector is a quarter-width ResNet-18 (the profile's width and input size) trained on the
book's studio faces (:func:`~landmarks.book.experiments.book_data`) with the geometric part of
PIPNet's augmentation (shifts, flips, rotations; :func:`~landmarks.data.transforms.geometric_augmentation`)
and the schedule of :class:`HeadsSettings`, under every seed of the profile; the validation NME
on separate studio faces is recorded every epoch (the plateau the chapters show). Scored on the
book's test faces (NME, FR@0.1, AUC@0.1, inter-ocular) and on two harder test domains of
:mod:`landmarks.book.domains` (``nme/occluded``, ``nme/posed``):

- ``coordinate``: global pooling and a fully connected layer ("Coord Net", :cite:p:`jin2021pipnet`
  Table 2);
- ``heatmap_s4``: the Map Net at net stride 4 (Table 2);
- ``pip_s16`` ... ``pip_s128``: PIP heads at net strides 16-128 without neighbours (Table 1);
- ``pipnet_s32`` (chapter 3): the PIP head at stride 32 with 10 neighbours (neighbour regression);
  its metrics also carry ``nme_own`` (and ``nme_own/<domain>``), the same network decoded from
  each landmark's own maps only;
- ``pipnet_s32_plain`` (chapters 4 and 5): the same PIPNet trained *without* augmentation, the
  detector that shows why translation ensembles need a translation-equivariant model.

(Map Nets at strides 2 and 1 cost three to ten times a PIP head's training; the stored budget
goes to replicates of the comparisons the paper's claims rest on instead.)
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, replace
from functools import lru_cache
from typing import Any

from landmarks.book.domains import book_domain
from landmarks.book.experiments import book_data, experiment, scores
from landmarks.data.synthetic import SyntheticData, SyntheticFaces
from landmarks.data.transforms import Augmented, geometric_augmentation
from landmarks.data.views import MemoryDataset
from landmarks.detector import Detector, ModelSpec, build_detector, training_landmarks
from landmarks.profile import Profile
from landmarks.store import Trained
from landmarks.training.loop import train_spec

#: name -> (chapter, the ModelSpec fields that differ from the defaults)
DETECTORS: dict[str, tuple[str, dict[str, Any]]] = {
    "coordinate": ("02", dict(head="coordinate")),
    "heatmap_s4": ("02", dict(head="heatmap", net_stride=4)),
    "pip_s16": ("02", dict(head="pip", net_stride=16, num_neighbours=0)),
    "pip_s32": ("02", dict(head="pip", net_stride=32, num_neighbours=0)),
    "pip_s64": ("02", dict(head="pip", net_stride=64, num_neighbours=0)),
    "pip_s128": ("02", dict(head="pip", net_stride=128, num_neighbours=0)),
    "pipnet_s32": ("03", dict(head="pip", net_stride=32, num_neighbours=10)),
    "pipnet_s32_plain": ("05", dict(head="pip", net_stride=32, num_neighbours=10)),
}
#: Trained without augmentation.
UNAUGMENTED = ("pipnet_s32_plain",)
AUGMENTATION = "geometric: translate +-30/256 of the side, flip, rotate +-30 degrees, p 0.5 each"
#: The harder test domains every head is also scored on (chapter 3's occlusion and unusual shapes).
HARD_DOMAINS = ("occluded", "posed")
VAL_SEED = 102


@dataclass(frozen=True)
class HeadsSettings:
    """The training of chapters 2-3's stored detectors.

    ``epochs`` over the profile's training faces with Adam at the profile's rate, multiplied by the
    profile's ``decay`` after each of ``decay_epochs``; ``val_images`` studio faces (seed 102, apart
    from the training and test faces) validated after every epoch. The quick default is twice the
    profile's epochs with the decay at three quarters: in a first measurement with the profile's 8
    epochs every loss was still falling when training stopped.
    """

    epochs: int
    decay_epochs: tuple[int, ...]
    val_images: int

    @classmethod
    def from_profile(cls, profile: Profile) -> "HeadsSettings":
        epochs = 2 * profile.epochs
        fields: dict[str, Any] = dict(epochs=epochs, decay_epochs=(3 * epochs // 4,), val_images=profile.test_images)
        fields.update(profile.chapter("02"))
        return cls(**{**fields, "decay_epochs": tuple(fields["decay_epochs"])})

    def schedule(self, profile: Profile) -> dict[str, Any]:
        """Keyword arguments of :func:`~landmarks.training.loop.fit`."""
        return dict(profile.schedule(), epochs=self.epochs, decay_epochs=self.decay_epochs)


def spec(name: str, profile: Profile) -> ModelSpec:
    """The (untrained, neighbour-less) spec of detector ``name`` in ``profile``'s size."""
    return ModelSpec.from_profile(profile, **DETECTORS[name][1])


def settings(name: str, profile: Profile) -> dict[str, Any]:
    train, test = book_data(profile)
    heads = HeadsSettings.from_profile(profile)
    return {"spec": spec(name, profile).to_config(), "schedule": heads.schedule(profile),
            "augmentation": None if name in UNAUGMENTED else AUGMENTATION,
            "validation": {"domain": "studio", "length": heads.val_images, "seed": VAL_SEED},
            "train": asdict(train), "test": asdict(test), "hard_domains": list(HARD_DOMAINS)}


@lru_cache(maxsize=2)
def _training_faces(profile: Profile) -> MemoryDataset:
    train, _ = book_data(profile)
    return MemoryDataset(train.build(profile.image_size))


def train(name: str, profile: Profile, seed: int, progress: bool) -> Trained:
    faces = _training_faces(profile)
    heads = HeadsSettings.from_profile(profile)
    val = SyntheticData("studio", heads.val_images, seed=VAL_SEED).build(profile.image_size)
    data = faces if name in UNAUGMENTED else Augmented(faces, geometric_augmentation(faces.layout, profile.image_size))
    detector, history = train_spec(spec(name, profile), data, MemoryDataset(val),
                                   schedule=heads.schedule(profile), seed=seed, progress=progress)
    return Trained(detector, history)


def training_shapes(profile: Profile):
    """The ``(M, N, 2)`` landmarks of the training faces (PIPNet's neighbours come from their mean)."""
    return training_landmarks(_training_faces(profile))


@lru_cache(maxsize=4)
def test_faces(profile: Profile, domain: str = "studio") -> MemoryDataset:
    """The book's test faces (seed 101) of ``domain``: ``studio`` or one of :data:`HARD_DOMAINS`."""
    _, test = book_data(profile)
    faces = SyntheticFaces(book_domain(domain), profile.image_size, length=test.length, seed=test.seed)
    return MemoryDataset(faces, keys=("image", "landmarks", "box", "visible"))


def own_maps_only(detector: Detector) -> Detector:
    """``detector`` (a PIPNet) decoded from each landmark's own maps, without neighbour merging."""
    return Detector(detector.model, replace(detector.task, merge=False), detector.image_size, layout=detector.layout)


def evaluate(detector: Detector, profile: Profile) -> dict[str, float]:
    result = scores(detector, test_faces(profile))
    for domain in HARD_DOMAINS:
        result.update(scores(detector, test_faces(profile, domain), ("nme", "fr"), f"/{domain}"))
    if getattr(detector.task, "neighbours", None) is not None and getattr(detector.task, "merge", False):
        own = own_maps_only(detector)
        result.update(scores(own, test_faces(profile), ("nme", "fr"), "_own"))
        for domain in HARD_DOMAINS:
            result.update(scores(own, test_faces(profile, domain), ("nme", "fr"), f"_own/{domain}"))
    return result


for _name, (_chapter, _fields) in DETECTORS.items():
    experiment(_name, _chapter,
               settings=lambda profile, n=_name: settings(n, profile),
               train=lambda profile, seed, progress, n=_name: train(n, profile, seed, progress),
               evaluate=evaluate, label=_name,
               build=lambda profile, n=_name: build_detector(spec(n, profile), training_shapes(profile)))
