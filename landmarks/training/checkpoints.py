"""Checkpoint files: atomic writes, what a file holds, and comparing the settings that made it.

Every file is a plain dict written with ``torch.save`` and read back with
``torch.load(weights_only=True)`` (tensors, numbers, strings, lists and dicts only), so a checkpoint
never runs code when it is opened. Two kinds exist:

- ``"training"``: written by :func:`landmarks.training.loop.fit` after every epoch as
  ``<checkpoint_dir>/last.pt``; it holds the model, optimiser, scheduler and gradient scaler
  states, the history, the RNG states and the number of finished epochs, so a stopped run can
  continue (see :func:`landmarks.training.loop.fit`).
- ``"model"``: written by :func:`save_model` (through :meth:`landmarks.detector.Detector.save`):
  the weights, the training history and the configuration of a finished model, with the
  detector's own record (architecture, decoder, input convention) among them.

Both kinds also record the command line, the creation time and the library versions.

Files are replaced atomically: the new content goes to a temporary file in the same folder, which
is then renamed over the old one, so an interrupted write leaves the previous checkpoint intact.
"""
from __future__ import annotations

import datetime
import json
import os
import sys
from pathlib import Path
from typing import Any, Mapping

import torch
from torch import nn

from landmarks import __version__

#: Version of the checkpoint layout; bump it when the dict's keys change meaning.
FORMAT = 1
KINDS = ("training", "model")

__all__ = ["FORMAT", "atomic_save", "load_checkpoint", "save_model", "normalise_config",
           "config_differences", "provenance", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file and a rename (never a half-written file)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        with open(temporary, "wb") as handle:
            torch.save(obj, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return path


def provenance() -> dict[str, str]:
    """Where a file comes from: the command line, the time (UTC) and the library versions."""
    return {
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "torch": str(torch.__version__),
        "landmarks": __version__,
    }


def normalise_config(config: Mapping[str, Any] | None) -> dict[str, Any]:
    """A JSON-like copy of ``config`` (tuples become lists, unknown objects their ``str``), so that a
    configuration compares equal to itself after a round trip through a file."""
    return json.loads(json.dumps(dict(config or {}), sort_keys=True, default=str))


def config_differences(stored: Mapping[str, Any], current: Mapping[str, Any],
                       ignore: tuple[str, ...] = ()) -> dict[str, tuple[Any, Any]]:
    """``{key: (stored value, current value)}`` for every top-level key whose values differ
    (a key missing on one side shows as ``None`` there); keys in ``ignore`` are skipped."""
    stored, current = normalise_config(stored), normalise_config(current)
    keys = (set(stored) | set(current)) - set(ignore)
    return {key: (stored.get(key), current.get(key)) for key in sorted(keys) if stored.get(key) != current.get(key)}


def describe_differences(differences: Mapping[str, tuple[Any, Any]]) -> str:
    """``"lr: stored 0.001, now 0.01; seed: ..."`` for error messages."""
    return "; ".join(f"{key}: stored {old!r}, now {new!r}" for key, (old, new) in differences.items())


def load_checkpoint(path: str | Path, kind: str | None = None, map_location: Any = "cpu") -> dict[str, Any]:
    """Read a checkpoint written by this module; ``ValueError`` naming the file if it is not one
    (or not of ``kind`` when given)."""
    path = Path(path)
    try:
        state = torch.load(path, map_location=map_location, weights_only=True)
    except FileNotFoundError:
        raise
    except Exception as error:  # a truncated or foreign file
        raise ValueError(f"{path}: not a readable checkpoint ({type(error).__name__}: {error})") from error
    if not isinstance(state, dict) or state.get("format") != FORMAT or state.get("kind") not in KINDS:
        found = state.get("format") if isinstance(state, dict) else type(state).__name__
        raise ValueError(f"{path}: not a landmarks checkpoint of format {FORMAT} (found {found!r})")
    if kind is not None and state["kind"] != kind:
        raise ValueError(f"{path}: a {state['kind']!r} checkpoint, expected a {kind!r} one")
    return state


def save_model(path: str | Path, model: nn.Module, history: Any = None,
               config: Mapping[str, Any] | None = None) -> Path:
    """Save a trained model's weights with its history (a :class:`~landmarks.training.loop.History` or a
    dict) and the configuration that made it."""
    if history is not None and hasattr(history, "to_dict"):
        history = history.to_dict()
    state = {"format": FORMAT, "kind": "model", "model": unwrap(model).state_dict(), "history": history,
             "config": normalise_config(config), **provenance()}
    return atomic_save(state, path)
