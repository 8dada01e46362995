"""Experiments: one description of a model that builds it, trains it, saves it and loads it again.

A :class:`ModelSpec` names everything needed to rebuild a detector (head, trunk, stride, points,
input size and, for PIPNet, the neighbour indices taken from the training mean face). The command
line, the checkpoint script (``make checkpoints``) and the chapters all go through it, so a
checkpoint always loads into the model that made it::

    spec = ModelSpec("pip", net_stride=32)
    model, task, history = train_spec(spec, train_data, val_data, profile)
    save_trained("pip.pt", model, spec, history, metrics)
    model, task, spec, stored = load_trained("pip.pt")
"""
from __future__ import annotations

import os
import sys
from dataclasses import asdict, dataclass, replace
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.utils.data import Dataset

from landmarks.training.checkpoints import load_checkpoint, normalise_config, save_model
from landmarks.models import LandmarkModel, coordinate_net, heatmap_net, pipnet
from landmarks.codecs.pip import mean_face, neighbour_indices
from landmarks.profile import Profile
from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask
from landmarks.training.loop import History, fit

HEADS = ("pip", "heatmap", "coordinate")


@dataclass(frozen=True)
class ModelSpec:
    """Everything that defines a detector.

    Args:
        head: ``"pip"``, ``"heatmap"`` or ``"coordinate"``.
        num_points: landmarks per face.
        depth, width: ResNet depth and channel multiplier of the trunk.
        image_size: side of the square input in pixels.
        net_stride: stride of the head's output maps (PIP: 16-128, heatmap: 1-4; unused for coordinates).
        num_neighbours: PIPNet's neighbours per landmark (0 = plain PIP regression).
        neighbours: the neighbour indices, filled in from the training shapes by :func:`with_neighbours`.
        coordinate_loss: ``"l1"``, ``"l2"`` or ``"iod-l2"`` for the coordinate head.
        layout: layout name, used by the ``"iod-l2"`` loss and for evaluation.
        pretrained: start the trunk from ImageNet weights (downloads; never in the offline book).
    """

    head: str = "pip"
    num_points: int = 68
    depth: int = 18
    width: float = 0.25
    image_size: int = 128
    net_stride: int = 32
    num_neighbours: int = 10
    neighbours: tuple[tuple[int, ...], ...] | None = None
    coordinate_loss: str = "l1"
    layout: str = "300w"
    pretrained: bool = False

    def __post_init__(self) -> None:
        if self.head not in HEADS:
            raise ValueError(f"unknown head {self.head!r}; choose one of {HEADS}")

    @classmethod
    def from_profile(cls, profile: Profile, **fields: Any) -> "ModelSpec":
        """A spec with the profile's trunk width and input size."""
        return cls(width=profile.width, image_size=profile.image_size, **fields)

    def to_config(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_config(cls, config: dict[str, Any]) -> "ModelSpec":
        fields = dict(config)
        if fields.get("neighbours") is not None:
            fields["neighbours"] = tuple(tuple(int(i) for i in row) for row in fields["neighbours"])
        return cls(**{k: v for k, v in fields.items() if k in cls.__dataclass_fields__})


def with_neighbours(spec: ModelSpec, train_landmarks: torch.Tensor) -> ModelSpec:
    """Fill in PIPNet's neighbour indices from the mean face of ``(M, N, 2)`` training landmarks."""
    if spec.head != "pip" or spec.num_neighbours == 0:
        return replace(spec, neighbours=None)
    face = mean_face(train_landmarks, image_size=spec.image_size)
    indices = neighbour_indices(face, spec.num_neighbours)
    return replace(spec, neighbours=tuple(tuple(row) for row in indices.tolist()))


def build_model(spec: ModelSpec) -> LandmarkModel:
    """The untrained network of ``spec``."""
    common = dict(depth=spec.depth, width=spec.width, pretrained=spec.pretrained)
    if spec.head == "pip":
        return pipnet(spec.num_points, net_stride=spec.net_stride, num_neighbours=spec.num_neighbours, **common)
    if spec.head == "heatmap":
        return heatmap_net(spec.num_points, net_stride=spec.net_stride, **common)
    return coordinate_net(spec.num_points, **common)


def build_task(spec: ModelSpec) -> PIPTask | HeatmapTask | CoordinateTask:
    """The loss and decoder of ``spec``'s head."""
    if spec.head == "pip":
        if spec.num_neighbours and spec.neighbours is None:
            raise ValueError("a PIP spec with neighbours needs them filled in: call with_neighbours(spec, shapes)")
        neighbours = torch.tensor(spec.neighbours) if spec.neighbours is not None else None
        return PIPTask(spec.net_stride, neighbours)
    if spec.head == "heatmap":
        return HeatmapTask(spec.net_stride)
    return CoordinateTask(spec.coordinate_loss, spec.layout)


def training_landmarks(data: Dataset, limit: int = 2000) -> torch.Tensor:
    """The ``(M, N, 2)`` landmarks of the first ``limit`` training samples (for the mean face)."""
    return torch.stack([data[i]["landmarks"] for i in range(min(limit, len(data)))])


def fit_schedule(profile: Profile) -> dict[str, Any]:
    """The profile's training schedule as keyword arguments of :func:`landmarks.training.loop.fit`."""
    return dict(epochs=profile.epochs, batch_size=profile.batch_size, lr=profile.learning_rate,
                decay_epochs=profile.decay_epochs, decay=profile.decay, num_workers=profile.num_workers)


def train_spec(spec: ModelSpec, train_data: Dataset, val_data: Dataset | None, profile: Profile, *,
               seed: int = 0, checkpoint_dir: str | Path | None = None, progress: bool = True,
               device: str = "cpu", **fit_options: Any) -> tuple[LandmarkModel, Any, ModelSpec, History]:
    """Build and train ``spec`` with the profile's schedule; returns model, task, final spec, history."""
    spec = with_neighbours(spec, training_landmarks(train_data)) if spec.head == "pip" else spec
    torch.manual_seed(seed)
    model, task = build_model(spec), build_task(spec)
    options = {**fit_schedule(profile), **fit_options}
    history = fit(model, task, train_data, val_data, seed=seed, checkpoint_dir=checkpoint_dir,
                  layout=spec.layout, progress=progress, device=device, config=spec.to_config(), **options)
    return model, task, spec, history


def save_trained(path: str | Path, model: nn.Module, spec: ModelSpec, history: History | None = None,
                 metrics: dict[str, Any] | None = None, command: str | None = None) -> Path:
    """Save weights with the spec, the training history, evaluation metrics and the command that ran."""
    extra = {"metrics": metrics or {}, "command": command or " ".join(sys.argv)}
    return save_model(path, model, history, {"spec": spec.to_config(), **extra})


def load_trained(path: str | Path, map_location: Any = "cpu"
                 ) -> tuple[LandmarkModel, Any, ModelSpec, dict[str, Any]]:
    """Rebuild a saved model; returns model, task, spec and the stored config (plus ``"history"``)."""
    state = load_checkpoint(path, map_location=map_location)
    config = state.get("config") or {}
    if "spec" not in config:
        raise ValueError(f"{path}: not a checkpoint written by save_trained (no model spec inside)")
    spec = ModelSpec.from_config(config["spec"])
    model = build_model(replace(spec, pretrained=False))
    model.load_state_dict(state["model"])
    model.eval()
    return model, build_task(spec), spec, {**config, "history": state.get("history")}


# --------------------------------------------------------------------------- data and stored models
@dataclass(frozen=True)
class SyntheticData:
    """A synthetic data set by name: ``SyntheticData("studio", 2000, seed=100).build(128)``."""

    domain: str = "studio"
    length: int = 2000
    seed: int = 0

    def build(self, image_size: int) -> Dataset:
        from landmarks.data.synthetic import SyntheticFaces

        return SyntheticFaces(self.domain, image_size, length=self.length, seed=self.seed)


def checkpoint_root() -> Path:
    """Where stored models live: ``$LANDMARKS_CHECKPOINTS``, else the package's shipped ones."""
    return Path(os.environ.get("LANDMARKS_CHECKPOINTS", Path(__file__).parent / "assets" / "checkpoints"))


def stored_model_config(spec: ModelSpec, profile: Profile, train: SyntheticData, test: SyntheticData) -> dict:
    """What a stored model must match to be reused: the spec (before neighbours), schedule and data."""
    schedule = {k: getattr(profile, k) for k in ("epochs", "batch_size", "learning_rate", "decay_epochs", "decay")}
    return {"spec": spec.to_config(), "schedule": schedule, "train": asdict(train), "test": asdict(test)}


def load_or_train_spec(name: str, spec: ModelSpec, profile: Profile, train: SyntheticData, test: SyntheticData,
                       *, seed: int = 0, progress: bool = True, retrain: bool = False
                       ) -> tuple[LandmarkModel, Any, ModelSpec, dict[str, Any]]:
    """Load ``<checkpoint_root>/<profile>/<name>.pt`` if it was made with these settings, else train it.

    Returns the model, its task, the final spec and the stored record (``"metrics"`` on ``test``,
    ``"history"``, ``"command"``). Training evaluates on ``test`` and saves the result, so the next call
    (and every later build of the book) loads it instead.
    """
    from landmarks.training.loop import evaluate

    path = checkpoint_root() / profile.name / f"{name}.pt"
    wanted = stored_model_config(spec, profile, train, test)
    if path.exists() and not retrain:
        model, task, final_spec, stored = load_trained(path)
        if stored.get("request") == normalise_config(wanted):
            return model, task, final_spec, stored
    train_data, test_data = train.build(spec.image_size), test.build(spec.image_size)
    model, task, final_spec, history = train_spec(spec, train_data, None, profile, seed=seed, progress=progress)
    result = evaluate(model, task, test_data, layout=spec.layout, batch_size=64)
    metrics = {k: float(result[k]) for k in ("nme", "fr", "auc")}
    path.parent.mkdir(parents=True, exist_ok=True)
    save_model(path, model, history, {"spec": final_spec.to_config(), "request": normalise_config(wanted),
                                      "metrics": metrics, "command": " ".join(sys.argv)})
    return model, task, final_spec, {"metrics": metrics, "history": history.to_dict(), "request": wanted}


# --------------------------------------------------------------------------- the book's models
#: The detectors the chapters compare, all on the same trunk and data (PIPNet paper, Tables 1-2).
BOOK_MODELS: dict[str, dict[str, Any]] = {
    "coordinate": dict(head="coordinate"),
    "heatmap_s4": dict(head="heatmap", net_stride=4),
    "heatmap_s2": dict(head="heatmap", net_stride=2),
    "heatmap_s1": dict(head="heatmap", net_stride=1),
    "pip_s16": dict(head="pip", net_stride=16, num_neighbours=0),
    "pip_s32": dict(head="pip", net_stride=32, num_neighbours=0),
    "pip_s64": dict(head="pip", net_stride=64, num_neighbours=0),
    "pip_s128": dict(head="pip", net_stride=128, num_neighbours=0),
    "pipnet_s32": dict(head="pip", net_stride=32, num_neighbours=10),
}


def book_data(profile: Profile) -> tuple[SyntheticData, SyntheticData]:
    """The training and test faces every book model uses (studio domain, disjoint seeds)."""
    return SyntheticData("studio", profile.train_images, seed=100), SyntheticData("studio", profile.test_images, seed=101)


def book_model(name: str, profile: Profile | None = None, progress: bool = True, retrain: bool = False
               ) -> tuple[LandmarkModel, Any, ModelSpec, dict[str, Any]]:
    """One of :data:`BOOK_MODELS`, loaded from its stored checkpoint or trained (and stored) now."""
    from landmarks.profile import current

    if name not in BOOK_MODELS:
        raise KeyError(f"unknown book model {name!r}; known: {sorted(BOOK_MODELS)}")
    profile = profile or current()
    spec = ModelSpec.from_profile(profile, **BOOK_MODELS[name])
    train, test = book_data(profile)
    return load_or_train_spec(name, spec, profile, train, test, progress=progress, retrain=retrain)
