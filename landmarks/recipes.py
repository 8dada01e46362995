"""Recipes: the stored models of the book's chapters, by name, made by one committed script.

A chapter whose table needs more training than its time budget allows loads a small model stored
under ``<checkpoint_root>/<profile>/<name>.pt``. A :class:`Recipe` says how that model is built,
trained and evaluated, and which settings (its ``request``) define it. :func:`cook` loads the stored
file when its request matches, and otherwise trains, evaluates and stores the model, so
``make checkpoints`` (``scripts/make_checkpoints.py``) and the chapters run the same code::

    # in a module of landmarks/stored/ (one per chapter):
    @register("black_zero", chapter="04")
    def black_zero(profile):
        return Recipe("black_zero", request={...}, build=..., train=..., evaluate=...)

    model, record = cook(recipe("black_zero"))
    record["metrics"]        # what ``evaluate`` returned when the model was made

``tests/test_shipped_checkpoints.py`` evaluates every shipped file again and compares the result
with the metrics stored beside its weights.
"""
from __future__ import annotations

import importlib
import pkgutil
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Mapping

import torch
from torch import nn

from landmarks.training.checkpoints import config_differences, describe_differences, load_checkpoint, normalise_config, save_model
from landmarks.profile import Profile, current
from landmarks.training.loop import History

Metrics = dict[str, float]


@dataclass(frozen=True)
class Recipe:
    """How one stored model is made.

    Args:
        name: file stem, unique across the book.
        request: every setting that defines the result (a stored file with another request is
            trained again); plain JSON-like values.
        build: makes the untrained network.
        train: ``train(model, progress)`` trains it in place and returns its history (or ``None``).
        evaluate: ``evaluate(model)`` returns plain-number metrics of the trained model.
        chapter: the chapter that loads it (for ``make checkpoints --chapter``).
    """

    name: str
    request: Mapping[str, Any]
    build: Callable[[], nn.Module]
    train: Callable[[nn.Module, bool], History | None]
    evaluate: Callable[[nn.Module], Metrics]
    chapter: str = ""
    extra: Mapping[str, Any] = field(default_factory=dict)


#: name -> (chapter, factory of the recipe for a profile). Filled by :func:`register`.
RECIPES: dict[str, tuple[str, Callable[[Profile], Recipe]]] = {}


def register(name: str, chapter: str) -> Callable[[Callable[[Profile], Recipe]], Callable[[Profile], Recipe]]:
    """Decorator: record ``factory(profile) -> Recipe`` under ``name``."""
    def decorate(factory: Callable[[Profile], Recipe]) -> Callable[[Profile], Recipe]:
        if name in RECIPES and RECIPES[name][1] is not factory:
            raise ValueError(f"two recipes are named {name!r}")
        RECIPES[name] = (chapter, factory)
        return factory
    return decorate


def load_all() -> dict[str, tuple[str, Callable[[Profile], Recipe]]]:
    """Import every module of :mod:`landmarks.book` (each registers its chapter's recipes)."""
    from landmarks import book as stored

    for module in pkgutil.iter_modules(stored.__path__):
        importlib.import_module(f"{stored.__name__}.{module.name}")
    return RECIPES


def recipe(name: str, profile: Profile | None = None) -> Recipe:
    """The recipe registered as ``name``, for ``profile`` (the current one by default)."""
    registry = load_all()
    if name not in registry:
        raise KeyError(f"unknown recipe {name!r}; known: {sorted(registry)}")
    return registry[name][1](profile or current())


def stored_path(name: str, profile: Profile | None = None):
    from landmarks.experiments import checkpoint_root

    return checkpoint_root() / (profile or current()).name / f"{name}.pt"


class StaleModel(ValueError):
    """A stored model was made with other settings than its recipe's current request."""


def load_stored(made: Recipe, profile: Profile | None = None) -> tuple[nn.Module, dict[str, Any]]:
    """The stored model of ``made`` and its record, without training.

    Raises ``FileNotFoundError`` when there is none and :class:`StaleModel` (naming the settings
    that differ) when it was made with another request.
    """
    path = stored_path(made.name, profile)
    state = load_checkpoint(path)
    config = state.get("config") or {}
    differences = config_differences(config.get("request") or {}, made.request)
    if differences:
        raise StaleModel(f"{path}: made with other settings ({describe_differences(differences)}); "
                         "run `make checkpoints` again")
    model = made.build()
    model.load_state_dict(state["model"])
    model.eval()
    return model, {**config, "history": History.from_dict(state.get("history"))}


def cooked(name: str, profile: Profile | None = None, progress: bool = True) -> tuple[nn.Module, dict[str, Any]]:
    """``cook(recipe(name, profile), profile)``: the stored model ``name`` and its record, as chapters
    load them."""
    profile = profile or current()
    return cook(recipe(name, profile), profile, progress=progress)


@torch.no_grad()
def round_to_half(model: nn.Module) -> nn.Module:
    """Round every floating-point parameter and buffer to the nearest float16 value (kept as float32).

    Stored models are saved in half precision (half the size); rounding *before* the evaluation
    makes the stored metrics exactly those of the weights a reader loads.
    """
    for tensor in [*model.parameters(), *model.buffers()]:
        if tensor.is_floating_point():
            tensor.copy_(tensor.half().float())
    return model


def cook(made: Recipe, profile: Profile | None = None, *, retrain: bool = False, progress: bool = True
         ) -> tuple[nn.Module, dict[str, Any]]:
    """Load the stored model of ``made`` if its request matches, else train, evaluate and store it.

    New models are stored in half precision (:func:`round_to_half`). Returns the model (float32,
    evaluation mode) and its record: ``"metrics"``, ``"history"`` (a
    :class:`~landmarks.training.loop.History`), ``"request"`` and ``"command"``.
    """
    if not retrain:
        try:
            return load_stored(made, profile)
        except (FileNotFoundError, StaleModel):
            pass
    path = stored_path(made.name, profile)
    wanted = normalise_config(made.request)
    model = made.build()
    history = made.train(model, progress)
    model.eval()
    round_to_half(model)
    metrics = {key: float(value) for key, value in made.evaluate(model).items()}
    record = {"request": wanted, "metrics": metrics, "command": " ".join(sys.argv), **normalise_config(made.extra)}
    save_model(path, model.half(), history, record)
    model.float()
    return model, {**record, "history": history}
