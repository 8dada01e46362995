"""Chapter 5's stored detectors: self-training with transform ensembles (:cite:p:`jin2021pipnet`, Tables 5-7).

Two scenarios on the synthetic domains, each a supervised detector and self-trained ones that start
from it (:func:`~landmarks.pipnet.distillation.self_train` with ``initial=``, so they share round 0),
every one under each of the profile's seeds:

- TSD (Testing on a Single Domain, :func:`tsd_split`): ``tsd_total`` faces of the ``studio``
  domain, 5 % of them labelled and the rest unlabelled; tested on other studio faces.
  ``tsd5_supervised``, ``tsd5_translation`` (the paper's method) and
  ``tsd5_translation_curriculum`` (the journal version's coarse-score curriculum); the ablation's
  other transform sets are compared by the quality of their pseudo-labels (``pseudo/<transforms>``
  below), and their self-training runs are not stored. The labelled share is
  where labels matter: in a first measurement (16 epochs' worth of steps, one seed) 50, 200 and
  2,000 labelled faces gave 5.05, 3.96 and 3.67 % NME, so at 10 % (200 faces) a perfect
  self-training could gain 0.3 points at most. (Earlier, a TSD on the ``wild`` domain started from a
  detector at 23.5 % NME, whose pseudo-labels made every round worse.)
- TMD (Testing on Multiple Domains, :func:`tmd_split`): labelled studio faces and unlabelled faces
  of the book's milder ``indoor`` and ``dusk`` domains and of ``sketch``
  (:mod:`landmarks.book.domains`), on which a studio-trained detector is 1.5-2.2 times worse than
  at home; tested on every domain: ``tmd_supervised``, ``tmd_translation`` and
  ``tmd_translation_curriculum``. (On the library's
  ``wild`` and ``lowlight`` domains the supervised detector failed, at 23 % NME and a 97-100 %
  failure rate, and its pseudo-labels were noise.)

The detector is PIPNet (stride 32, 10 neighbours from the labelled shapes) in the profile's size,
trained with the geometric part of PIPNet's augmentation (:data:`AUGMENTATION`) for the rounds of
:class:`DistillSettings` (twice the profile's epochs over the round's faces in the quick profile).
A supervised detector trains for as many steps as a self-training round
(:func:`same_budget_schedule`), validated on separate studio faces; its weights are kept for every
seed, since the self-trained experiments start from them.

Metrics (:func:`domain_scores`): ``nme/<domain>`` and ``fr/<domain>`` (inter-ocular, FR at 0.1) on
every test domain; a supervised experiment also stores ``pseudo/<transforms>``, the NME of its
pseudo-labels of the unlabelled faces against their hidden truth for each transform set of
:data:`ABLATION` (``pseudo/<transforms>/<domain>`` per unlabelled domain in TMD). A self-trained
experiment's history has one record per round: ``round``, ``train_size``, ``nme_<domain>``,
``fr_<domain>`` and, for rounds >= 1, ``pseudo_nme``, the NME of the pseudo-labels against the true
labels of the unlabelled faces (known for synthetic faces only).
"""
from __future__ import annotations

from collections.abc import Sequence
from dataclasses import asdict, dataclass
from functools import lru_cache
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import ConcatDataset, Dataset, Subset

from landmarks.book.domains import book_domain
from landmarks.book.experiments import STORE, experiment, scores
from landmarks.data.layouts import get_layout
from landmarks.data.synthetic import SyntheticFaces
from landmarks.data.transforms import Augmented, geometric_augmentation
from landmarks.data.views import TestSet, Unlabelled
from landmarks.detector import Detector, ModelSpec, build_detector, training_landmarks, with_neighbours
from landmarks.evaluation.metrics import nme
from landmarks.pipnet.distillation import pseudo_label, self_train
from landmarks.pipnet.ensembles import ablation_transforms
from landmarks.profile import Profile
from landmarks.store import Trained
from landmarks.training.loop import History, fit

__all__ = ["TSD_FRACTIONS", "ABLATION", "TSD_DOMAIN", "TMD_LABELLED", "TMD_UNLABELLED", "TRAIN_SEED", "TEST_SEED",
           "AUGMENTATION", "DistillSettings", "tsd_split", "tmd_split", "test_sets", "distill_spec", "scenario",
           "domain_scores", "same_budget_schedule", "true_labels"]

TSD_FRACTIONS = (0.05,)
ABLATION = ("none", "flip", "rotation", "translation")
TSD_DOMAIN = "studio"
TMD_LABELLED = ("studio",)
TMD_UNLABELLED = ("indoor", "dusk", "sketch")
TRAIN_SEED, TEST_SEED, VAL_SEED = 5, 6, 7
#: Every training of this chapter uses :func:`landmarks.data.transforms.geometric_augmentation`.
#: Without it a first run's detector was far from translation-equivariant: its predictions on the
#: eight shifted copies had 22-49 % NME against 6.7 % unshifted, so the ensemble made pseudo-labels
#: worse, not better.
AUGMENTATION = "geometric: translate +-30/256 of the side, flip, rotate +-30 degrees, p 0.5 each"


@dataclass(frozen=True)
class DistillSettings:
    """The sizes of chapter 5's experiments (the one place they are chosen).

    ``tsd_total``: faces of the TSD domain (labelled + unlabelled); ``tmd_labelled`` /
    ``tmd_unlabelled``: faces per labelled / unlabelled TMD domain; ``rounds``: trainings per
    self-training run (the paper's three distillation iterations after the supervised one = 4);
    ``epochs`` and ``decay_epochs``: the schedule of one round over its faces (the quick default:
    twice the profile's epochs, decayed at three quarters; with the profile's 8 epochs the
    students were still improving when training stopped).
    """

    image_size: int
    tsd_total: int
    tmd_labelled: int
    tmd_unlabelled: int
    test_images: int
    epochs: int
    decay_epochs: tuple[int, ...]
    rounds: int = 4

    @classmethod
    def from_profile(cls, profile: Profile) -> "DistillSettings":
        """The profile's image size and face counts, overridden by ``profile.chapter("05")``."""
        epochs = 2 * profile.epochs
        fields: dict[str, Any] = dict(image_size=profile.image_size, tsd_total=profile.train_images,
                                      tmd_labelled=profile.train_images // 2, tmd_unlabelled=profile.train_images // 5,
                                      test_images=profile.test_images, epochs=epochs, decay_epochs=(3 * epochs // 4,))
        fields.update(profile.chapter("05"))
        return cls(**{**fields, "decay_epochs": tuple(fields["decay_epochs"])})

    def schedule(self, profile: Profile) -> dict[str, Any]:
        """One round's keyword arguments of :func:`~landmarks.training.loop.fit`."""
        return dict(profile.schedule(), epochs=self.epochs, decay_epochs=self.decay_epochs)


# --------------------------------------------------------------------------- the paper's two scenarios
def _faces(domain: str, length: int, seed: int, image_size: int, layout: str) -> SyntheticFaces:
    return SyntheticFaces(book_domain(domain), image_size, length=length, seed=seed, layout=layout)


def tsd_split(domain: str, fraction: float, total: int, seed: int, image_size: int = 128,
              layout: str = "300w") -> tuple[Dataset, Unlabelled]:
    """Testing on a Single Domain: ``total`` faces of one domain, a ``fraction`` of them labelled.

    The faces are ``SyntheticFaces(domain, image_size, total, seed * 100)``; a permutation drawn from
    ``seed`` picks ``round(fraction * total)`` of them as the labelled set (a ``Subset``), the rest
    are :class:`~landmarks.data.views.Unlabelled`. Build the test set with :func:`test_sets` and
    another seed.
    """
    if not 0 < fraction < 1:
        raise ValueError(f"fraction must be strictly between 0 and 1, got {fraction}")
    n_labelled = round(fraction * total)
    if not 0 < n_labelled < total:
        raise ValueError(f"{fraction} of {total} faces leaves one of the two parts empty")
    faces = _faces(domain, total, seed * 100, image_size, layout)
    order = torch.randperm(total, generator=torch.Generator().manual_seed(seed)).tolist()
    labelled = Subset(faces, order[:n_labelled])
    labelled.layout = faces.layout  # type: ignore[attr-defined]
    return labelled, Unlabelled(Subset(faces, order[n_labelled:]))


def tmd_split(labelled_domains: Sequence[str], unlabelled_domains: Sequence[str], sizes: tuple[int, int],
              seed: int, image_size: int = 128, layout: str = "300w") -> tuple[Dataset, Unlabelled]:
    """Testing on Multiple Domains: labelled faces from some domains, unlabelled ones from others.

    ``sizes = (labelled_per_domain, unlabelled_per_domain)``. Domain ``k`` of the concatenated list
    ``labelled_domains + unlabelled_domains`` uses seed ``seed * 100 + k``. The two lists must be
    disjoint (as in the paper, where no domain is both labelled and unlabelled).
    """
    overlap = set(labelled_domains) & set(unlabelled_domains)
    if overlap:
        raise ValueError(f"domains {sorted(overlap)} are both labelled and unlabelled")
    if not labelled_domains or not unlabelled_domains:
        raise ValueError("tmd_split needs at least one labelled and one unlabelled domain")
    n_lab, n_unlab = sizes
    domains = list(labelled_domains) + list(unlabelled_domains)
    sets = [_faces(d, n_lab if k < len(labelled_domains) else n_unlab, seed * 100 + k, image_size, layout)
            for k, d in enumerate(domains)]
    labelled = ConcatDataset(sets[:len(labelled_domains)])
    labelled.layout = sets[0].layout  # type: ignore[attr-defined]
    return labelled, Unlabelled(ConcatDataset(sets[len(labelled_domains):]))


def test_sets(domains: Sequence[str], length: int, seed: int, image_size: int = 128,
              layout: str = "300w", train_seed: int | None = None) -> dict[str, TestSet]:
    """One labelled :class:`~landmarks.data.views.TestSet` per domain (domain ``k`` seeded ``seed * 100 + k``).

    Give the training split's ``train_seed`` to have a clash refused: with ``seed != train_seed``
    the test faces are drawn from other seeds than any training face of :func:`tsd_split` /
    :func:`tmd_split`.
    """
    if train_seed is not None and seed == train_seed:
        raise ValueError(f"test seed {seed} equals the training seed: the test faces would repeat training faces")
    return {d: TestSet(_faces(d, length, seed * 100 + k, image_size, layout)) for k, d in enumerate(domains)}


test_sets.__test__ = False  # type: ignore[attr-defined]  # not a pytest test when imported into a test module


# --------------------------------------------------------------------------- the experiments' pieces
def distill_spec(profile: Profile) -> ModelSpec:
    """PIPNet at stride 32 with 10 neighbours in the profile's size (neighbours not filled in)."""
    return ModelSpec.from_profile(profile, head="pip", net_stride=32, num_neighbours=10)


@lru_cache(maxsize=8)
def scenario(profile: Profile, name: str) -> tuple[Dataset, Unlabelled, dict[str, TestSet], ModelSpec]:
    """``(labelled, unlabelled, test sets by domain, spec with neighbours)`` of ``"tsd10"`` ... ``"tmd"``."""
    s = DistillSettings.from_profile(profile)
    if name == "tmd":
        labelled, unlabelled = tmd_split(TMD_LABELLED, TMD_UNLABELLED, (s.tmd_labelled, s.tmd_unlabelled),
                                         TRAIN_SEED, s.image_size)
        tests = test_sets(TMD_LABELLED + TMD_UNLABELLED, s.test_images, TEST_SEED, s.image_size, train_seed=TRAIN_SEED)
    else:
        fraction = int(name.removeprefix("tsd")) / 100
        labelled, unlabelled = tsd_split(TSD_DOMAIN, fraction, s.tsd_total, TRAIN_SEED, s.image_size)
        tests = test_sets((TSD_DOMAIN,), s.test_images, TEST_SEED, s.image_size, train_seed=TRAIN_SEED)
    spec = with_neighbours(distill_spec(profile), training_landmarks(labelled))
    return labelled, unlabelled, tests, spec


def domain_scores(detector: Detector, tests: dict[str, Dataset], separator: str = "/") -> dict[str, float]:
    """``nme<separator><domain>`` and ``fr<separator><domain>`` (inter-ocular, FR at 0.1) on every test set."""
    result: dict[str, float] = {}
    for domain, data in tests.items():
        result.update(scores(detector, data, ("nme", "fr"), f"{separator}{domain}"))
    return result


def same_budget_schedule(profile: Profile, images: int) -> dict[str, Any]:
    """A round's schedule stretched so that ``images`` faces give as many steps as the profile's
    ``train_images``: a detector trained on 5 % of the faces runs twenty times the epochs, so it is
    not simply under-trained compared with the self-trained rounds that see every face."""
    settings = DistillSettings.from_profile(profile)
    factor = max(1, round(profile.train_images / images))
    schedule = settings.schedule(profile)
    schedule.update(epochs=factor * settings.epochs, decay_epochs=tuple(factor * e for e in settings.decay_epochs))
    return schedule


def true_labels(unlabelled: Unlabelled) -> Tensor:
    """The labels the unlabelled faces hide (synthetic faces know them): ``(M, N, 2)``."""
    return torch.stack([unlabelled.dataset[i]["landmarks"] for i in range(len(unlabelled))])


def _augmentation(profile: Profile):
    return geometric_augmentation("300w", profile.image_size)


def _settings(profile: Profile, name: str, **method: Any) -> dict[str, Any]:
    domains = ({"labelled": list(TMD_LABELLED), "unlabelled": list(TMD_UNLABELLED)} if name == "tmd"
               else {"labelled": [TSD_DOMAIN], "unlabelled": [TSD_DOMAIN]})
    return {"scenario": name, "domains": domains, "settings": asdict(DistillSettings.from_profile(profile)),
            "spec": distill_spec(profile).to_config(), "schedule": DistillSettings.from_profile(profile).schedule(profile),
            "seeds": [TRAIN_SEED, TEST_SEED], "augmentation": AUGMENTATION, **method}


def _evaluate(profile: Profile, name: str, detector: Detector) -> dict[str, float]:
    return domain_scores(detector, scenario(profile, name)[2])


def _build(profile: Profile, name: str) -> Detector:
    return build_detector(scenario(profile, name)[3])


def supervised_settings(profile: Profile, name: str) -> dict[str, Any]:
    labelled = scenario(profile, name)[0]
    return _settings(profile, name, method="supervised", schedule=same_budget_schedule(profile, len(labelled)),
                     validation={"domain": TMD_LABELLED[0], "length": profile.test_images, "seed": VAL_SEED * 100},
                     pseudo_label_sets=list(ABLATION))


def train_supervised(profile: Profile, seed: int, progress: bool, name: str) -> Trained:
    """The scenario's detector trained on its labelled faces only (round 0 of every self-training),
    validated on separate studio faces as often as a round's epoch has steps."""
    labelled, _, _, spec = scenario(profile, name)
    torch.manual_seed(seed)
    detector = build_detector(spec)
    schedule = same_budget_schedule(profile, len(labelled))
    val = test_sets(TMD_LABELLED, profile.test_images, VAL_SEED, profile.image_size, train_seed=TRAIN_SEED)
    history = fit(detector, Augmented(labelled, _augmentation(profile)), val[TMD_LABELLED[0]], seed=seed,
                  progress=progress, val_every=max(1, round(profile.train_images / len(labelled))), **schedule)
    return Trained(detector, history)


def pseudo_label_quality(detector: Detector, profile: Profile, name: str) -> dict[str, float]:
    """``pseudo/<transforms>``: NME of ``detector``'s pseudo-labels of the scenario's unlabelled faces
    for every transform set of :data:`ABLATION` (and ``pseudo/<transforms>/<domain>`` per TMD domain)."""
    _, unlabelled, _, _ = scenario(profile, name)
    truth = true_labels(unlabelled)
    domains = [d for d in (TMD_UNLABELLED if name == "tmd" else ())]
    size = DistillSettings.from_profile(profile).tmd_unlabelled
    result: dict[str, float] = {}
    for transforms in ABLATION:
        labels = pseudo_label(detector, unlabelled, ablation_transforms(transforms, profile.image_size))
        errors = nme(labels, truth, get_layout("300w"))
        result[f"pseudo/{transforms}"] = float(errors.mean())
        for k, domain in enumerate(domains):
            result[f"pseudo/{transforms}/{domain}"] = float(errors[k * size:(k + 1) * size].mean())
    return result


def _method(transforms: str, curriculum: bool) -> str:
    return f"{transforms}+curriculum" if curriculum else transforms


def distilled_settings(profile: Profile, name: str, transforms: str, curriculum: bool) -> dict[str, Any]:
    return _settings(profile, name, method=_method(transforms, curriculum),
                     rounds=DistillSettings.from_profile(profile).rounds)


def train_distilled(profile: Profile, seed: int, progress: bool, name: str, transforms: str,
                    curriculum: bool) -> Trained:
    """Self-training from the stored supervised detector of the same seed; the last round is kept and
    every round is scored (the history's records)."""
    labelled, unlabelled, tests, spec = scenario(profile, name)
    start = STORE.model(f"{name}_supervised", seed=seed, profile=profile, progress=progress).detector
    rounds = self_train(spec, labelled, unlabelled, schedule=DistillSettings.from_profile(profile).schedule(profile),
                        rounds=DistillSettings.from_profile(profile).rounds,
                        transforms=ablation_transforms(transforms, spec.image_size), curriculum=curriculum,
                        seed=seed, progress=progress, initial=start, augment=_augmentation(profile))
    truth, history = true_labels(unlabelled), History()
    for r, result in enumerate(rounds):
        record = {"round": float(r), "train_size": float(result.train_size),
                  **domain_scores(result.detector, tests, separator="_")}
        if result.pseudo_labels is not None:
            record["pseudo_nme"] = float(nme(result.pseudo_labels, truth, get_layout("300w")).mean())
        history.append(record)
    return Trained(rounds[-1].detector, history)


def _register(name: str, transforms: str | None = None, curriculum: bool = False) -> None:
    common = dict(evaluate=lambda detector, profile: _evaluate(profile, name, detector),
                  build=lambda profile: _build(profile, name))
    if transforms is None:
        experiment(f"{name}_supervised", "05", settings=lambda profile: supervised_settings(profile, name),
                   train=lambda profile, seed, progress: train_supervised(profile, seed, progress, name),
                   keep="all", label=f"{name.upper()}: supervised",
                   **{**common, "evaluate": lambda detector, profile: {
                       **_evaluate(profile, name, detector), **pseudo_label_quality(detector, profile, name)}})
        return
    method = _method(transforms, curriculum)
    experiment(f"{name}_{method.replace('+', '_')}", "05",
               settings=lambda profile: distilled_settings(profile, name, transforms, curriculum),
               train=lambda profile, seed, progress: train_distilled(profile, seed, progress, name, transforms,
                                                                      curriculum),
               requires=(f"{name}_supervised",), label=f"{name.upper()}: self-trained, {method}", **common)


# in the order ``make checkpoints`` should make them: the main rows first, then the journal version's
# curriculum in both scenarios
for _name in ("tsd5", "tmd"):
    _register(_name)
    _register(_name, "translation")
for _name in ("tsd5", "tmd"):
    _register(_name, "translation", curriculum=True)
