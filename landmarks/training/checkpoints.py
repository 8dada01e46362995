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

Files are replaced atomically: the new content goes to a temporary file ``.{name}.{pid}.tmp`` in
the same folder, which is then renamed over the old one, so an interrupted write leaves the
previous checkpoint intact. :func:`atomic_save` only ever replaces a regular file, removes its
temporary file when the write fails, is interrupted (``KeyboardInterrupt``) or is stopped by
``SIGTERM``, and removes the temporaries left by earlier writers that were killed outright
(:func:`remove_stale_temporaries`).
"""
from __future__ import annotations

import datetime
import json
import os
import signal
import stat
import sys
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Any, Iterator, Mapping

import torch
from torch import nn

from landmarks import __version__

#: Version of the checkpoint layout; bump it when the dict's keys change meaning.
FORMAT = 1
KINDS = ("training", "model")

__all__ = ["FORMAT", "atomic_save", "remove_stale_temporaries", "load_checkpoint", "save_model",
           "normalise_config", "config_differences", "describe_differences", "provenance", "unwrap"]


def unwrap(model: nn.Module) -> nn.Module:
    """The module inside a ``DistributedDataParallel`` / ``DataParallel`` wrapper (or ``model`` itself)."""
    return model.module if isinstance(model, (nn.parallel.DistributedDataParallel, nn.DataParallel)) else model


def atomic_save(obj: Any, path: str | Path) -> Path:
    """``torch.save(obj)`` to ``path`` through a temporary file and a rename (never a half-written file).

    - ``path`` must be a regular file or not exist: anything else (``/dev/null``, a folder, a FIFO)
      raises ``ValueError`` before anything is written. A symbolic link is followed: the file it
      points to is replaced and the link is kept.
    - Missing parent folders are created; an ancestor that exists but is not a folder raises
      ``ValueError`` naming it.
    - The temporary file ``.{name}.{pid}.tmp`` beside the target is removed when the write raises,
      is interrupted, or (called from the main thread while ``SIGTERM`` has its default action)
      when the process receives ``SIGTERM``; the process then still terminates by that signal.
    - Temporaries of earlier writes to the same path whose process is gone are removed first
      (:func:`remove_stale_temporaries`).

    Returns ``path`` as given.
    """
    path = Path(path)
    target = Path(os.path.realpath(path)) if path.is_symlink() else path
    _check_replaceable(target)
    _make_folder(target.parent, target)
    remove_stale_temporaries(target)
    temporary = _temporary_name(target, os.getpid())
    try:
        with _sigterm_raises():
            with open(temporary, "wb") as handle:
                torch.save(obj, handle)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
    except BaseException as error:
        temporary.unlink(missing_ok=True)
        interruption = _interruption(error)
        if isinstance(interruption, _Terminated):
            signal.raise_signal(signal.SIGTERM)  # the default action again: terminate as if never caught
        if interruption is not None and interruption is not error:
            raise interruption from None
        raise
    return path


def _interruption(error: BaseException) -> BaseException | None:
    """The ``KeyboardInterrupt`` (or SIGTERM) behind ``error``, if any: interrupted inside
    ``torch.save``, torch's zip writer raises a ``RuntimeError`` of its own on the way out, with the
    interruption as its context."""
    seen: BaseException | None = error
    while seen is not None:
        if isinstance(seen, (KeyboardInterrupt, _Terminated)):
            return seen
        seen = seen.__context__
    return None


def remove_stale_temporaries(path: str | Path) -> list[Path]:
    """Remove the temporary files ``.{name}.{pid}.tmp`` that killed writers to ``path`` left beside it.

    Only regular files of exactly that pattern are removed, and only when process ``pid`` is not
    alive (``os.kill(pid, 0)`` finds no such process); our own pid and any live or unknown one are
    kept. On Windows, where that test does not exist, nothing is removed. Returns what was removed.
    """
    path = Path(path)
    if os.name == "nt" or not path.parent.is_dir():
        return []
    prefix, removed = f".{path.name}.", []
    for entry in path.parent.iterdir():
        pid = entry.name[len(prefix):-len(".tmp")]
        if not (entry.name.startswith(prefix) and entry.name.endswith(".tmp") and pid.isdigit()):
            continue
        if int(pid) == os.getpid() or _alive(int(pid)) or not stat.S_ISREG(entry.lstat().st_mode):
            continue
        entry.unlink(missing_ok=True)
        removed.append(entry)
    return removed


class _Terminated(BaseException):
    """Raised by the temporary ``SIGTERM`` handler of :func:`atomic_save`."""


def _temporary_name(path: Path, pid: int) -> Path:
    return path.with_name(f".{path.name}.{pid}.tmp")


def _alive(pid: int) -> bool:
    """Whether a process ``pid`` exists (one of another user counts; any doubt counts as alive)."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:
        return True
    return True


def _check_replaceable(path: Path) -> None:
    """``ValueError`` if ``path`` exists and is not a regular file (a device, a folder, a FIFO ...)."""
    try:
        mode = os.stat(path).st_mode
    except (FileNotFoundError, NotADirectoryError):  # the latter: an ancestor is a file (see _make_folder)
        return
    if not stat.S_ISREG(mode):
        raise ValueError(f"{path}: not a regular file; refusing to replace it with a checkpoint")


def _make_folder(folder: Path, path: Path) -> None:
    """Create ``folder`` and its parents; ``ValueError`` naming the first ancestor that is not a folder."""
    for ancestor in (folder, *folder.parents):
        if ancestor.exists() or ancestor.is_symlink():
            if not ancestor.is_dir():
                raise ValueError(f"{ancestor}: not a folder; cannot save the checkpoint {path} below it")
            break
    folder.mkdir(parents=True, exist_ok=True)


@contextmanager
def _sigterm_raises() -> Iterator[None]:
    """While inside, ``SIGTERM`` raises :class:`_Terminated` instead of killing the process at once.

    Only in the main thread (the only one that may set handlers) and only while ``SIGTERM`` has
    its default action: a handler of the caller's own, or an ignored signal, is left alone.
    """
    if threading.current_thread() is not threading.main_thread() or signal.getsignal(signal.SIGTERM) != signal.SIG_DFL:
        yield
        return

    def terminate(signum: int, frame: Any) -> None:
        raise _Terminated(signum)

    signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


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
    """``{dotted path: (stored value, current value)}`` for every value that differs, after
    :func:`normalise_config`.

    Nested dicts present on both sides are compared key by key, so a difference deep inside shows
    as ``"user.detector.task.fields.neighbours"`` or ``"data.domain"``; lists and other values are
    compared whole. A key missing on one side shows as ``None`` there. ``ignore`` names top-level
    keys to skip (with everything below them). Paths are sorted.
    """
    stored, current = normalise_config(stored), normalise_config(current)
    for key in ignore:
        stored.pop(key, None), current.pop(key, None)
    return dict(_differences(stored, current, ""))


def _differences(stored: Mapping[str, Any], current: Mapping[str, Any], prefix: str) -> Iterator[tuple[str, tuple[Any, Any]]]:
    for key in sorted(set(stored) | set(current)):
        old, new = stored.get(key), current.get(key)
        if isinstance(old, dict) and isinstance(new, dict):
            yield from _differences(old, new, f"{prefix}{key}.")
        elif old != new:
            yield f"{prefix}{key}", (old, new)


#: :func:`describe_differences` shows at most this many differences, and a value's ``repr`` only
#: up to this many characters (a longer one is summarised).
MAX_DESCRIBED, MAX_REPR = 5, 40


def describe_differences(differences: Mapping[str, tuple[Any, Any]]) -> str:
    """One short line for error messages: ``"lr: stored 0.001, now 0.01; data.domain: ..."``.

    A value is shown by its ``repr`` when that has at most :data:`MAX_REPR` characters, otherwise
    summarised (``a list of 68 items``, ``a dict of 5 keys``, ``a string of 120 characters``);
    after :data:`MAX_DESCRIBED` differences the rest are counted (``and 3 more``).
    """
    items = list(differences.items())
    parts = [f"{key}: stored {_short(old)}, now {_short(new)}" for key, (old, new) in items[:MAX_DESCRIBED]]
    if len(items) > MAX_DESCRIBED:
        parts.append(f"and {len(items) - MAX_DESCRIBED} more")
    return "; ".join(parts)


def _short(value: Any) -> str:
    """``repr(value)`` if short, else what kind of value it is and how big."""
    text = repr(value)
    if len(text) <= MAX_REPR:
        return text
    if isinstance(value, (list, tuple)):
        return f"a {type(value).__name__} of {len(value)} items"
    if isinstance(value, dict):
        return f"a dict of {len(value)} keys"
    if isinstance(value, str):
        return f"a string of {len(value)} characters"
    return f"a {type(value).__name__}"


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
