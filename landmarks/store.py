"""The experiment store: named experiments, trained once under several seeds, loaded ever after.

An :class:`Experiment` is a named function of ``(profile, seed)`` that builds and trains a
:class:`~landmarks.detector.Detector`, with the settings that define its result and the evaluation
that scores it. A :class:`Store` keeps, for every experiment and profile,

- ``<root>/results/<profile>/<experiment>.json``: one entry per seed, always::

      {"experiment": "pip_s32", "chapter": "02", "profile": "quick", "seeds": [0, 1, 2],
       "metrics": {"nme": [0.0373, 0.0369, 0.0378], "nme/wild": [...], ...},
       "histories": [{"records": [...]}, ...], "settings": {...}, "command": "..."}

  (metrics are fractions, one value per seed in the order of ``seeds``);
- ``<root>/checkpoints/<profile>/<experiment>.pt`` (and ``<experiment>.seed<k>.pt``): the weights,
  in half precision, only of the seeds the experiment keeps (``keep="first"``: the run a chapter
  displays; ``"all"``: every seed, for experiments that others start from; ``"none"``).

:meth:`Store.results` returns an experiment's results for the profile's seeds, training the seeds
that are missing; :meth:`Store.model` returns one seed's stored model (a :class:`StoredModel`),
training it when its weights are missing. A result is *up to date* when its stored settings equal
the experiment's settings for the profile; otherwise it is trained again, every seed. Weights are
rounded to float16 before the evaluation, so stored metrics are those of the weights a reader
loads. Training one seed holds a lock file for that seed (and writing the results file one for the
experiment), so several processes (``make checkpoints`` run twice) never train the same seed twice
at once, and share the seeds of one experiment: a process skips a seed that another one is training,
and waits for it only when it has nothing else of the experiment left to train::

    store = Store(root)
    store.add(Experiment("pip_s32", "02", settings, train, evaluate, seeds=(0, 1, 2)))
    results = store.results("pip_s32")        # trains what is missing
    results.mean("nme"), results.std("nme")
    stored = store.model("pip_s32")           # .detector, .metrics, .history, .spec, .command
"""
from __future__ import annotations

import contextlib
import json
import math
import os
import shlex
import sys
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

from landmarks.detector import Detector, round_to_half
from landmarks.profile import Profile, current
from landmarks.training.checkpoints import config_differences, describe_differences, normalise_config
from landmarks.training.loop import History

__all__ = ["Experiment", "Trained", "StoredModel", "Results", "Store", "StaleResult"]

Metrics = Mapping[str, float]
KEEP = ("first", "all", "none")


@dataclass
class Trained:
    """What an experiment's training returns: the detector and its training history."""

    detector: Detector
    history: History | None = None


@dataclass(frozen=True)
class Experiment:
    """A named, declared experiment.

    Args:
        name: unique across the store; the stem of its files.
        chapter: the chapter that shows it (``"05"``), for ``make checkpoints --chapter``.
        settings: ``settings(profile)``: every setting that defines the result (plain JSON-like
            values). A stored result made with other settings is trained again.
        train: ``train(profile, seed, progress) -> Trained``: builds and trains a detector; the
            seed sets the initialisation and the data order (never the test set).
        evaluate: ``evaluate(detector, profile) -> {metric: value}`` (fractions, plain floats).
        seeds: ``seeds(profile)``: the replicates (default: the profile's ``seeds``).
        keep: whose weights are stored: ``"first"`` seed, ``"all"`` or ``"none"``.
        requires: experiments its training loads (trained first by ``make checkpoints``).
        label: a short description for tables.
        build: ``build(profile) -> Detector``: the untrained detector (what ``train`` starts from),
            for tests and for re-reading weights stored by other code.
    """

    name: str
    chapter: str
    settings: Callable[[Profile], Mapping[str, Any]]
    train: Callable[[Profile, int, bool], Trained]
    evaluate: Callable[[Detector, Profile], Metrics]
    seeds: Callable[[Profile], Sequence[int]] | None = None
    keep: str = "first"
    requires: tuple[str, ...] = ()
    label: str = ""
    build: Callable[[Profile], Detector] | None = None

    def __post_init__(self) -> None:
        if self.keep not in KEEP:
            raise ValueError(f"experiment {self.name!r}: keep must be one of {KEEP}, got {self.keep!r}")

    def seeds_for(self, profile: Profile) -> tuple[int, ...]:
        seeds = tuple(int(s) for s in (self.seeds(profile) if self.seeds is not None else profile.seeds))
        if not seeds or len(set(seeds)) != len(seeds):
            raise ValueError(f"experiment {self.name!r}: seeds must be distinct and at least one, got {seeds}")
        return seeds

    def kept(self, seed: int, profile: Profile) -> bool:
        return self.keep == "all" or (self.keep == "first" and seed == self.seeds_for(profile)[0])


@dataclass
class StoredModel:
    """One seed of a stored experiment: the detector and what is known about it."""

    experiment: str
    seed: int
    detector: Detector
    metrics: dict[str, float]
    history: History
    spec: dict[str, Any]
    command: str


@dataclass
class Results:
    """Every seed's metrics (and training history) of one experiment under one profile."""

    experiment: str
    chapter: str
    profile: str
    seeds: list[int]
    metrics: dict[str, list[float]]
    settings: dict[str, Any]
    command: str
    histories: list[dict[str, Any]] = field(default_factory=list)
    label: str = ""

    def values(self, key: str) -> list[float]:
        if key not in self.metrics:
            raise KeyError(f"{self.experiment}: no metric {key!r}; stored: {sorted(self.metrics)}")
        return list(self.metrics[key])

    def mean(self, key: str) -> float:
        values = self.values(key)
        return sum(values) / len(values)

    def std(self, key: str) -> float:
        """Sample standard deviation over seeds (0 for a single seed)."""
        values = self.values(key)
        if len(values) < 2:
            return 0.0
        mean = sum(values) / len(values)
        return math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))

    def history(self, seed: int | None = None) -> History:
        index = 0 if seed is None else self.seeds.index(seed)
        return History.from_dict(self.histories[index] if index < len(self.histories) else None)

    def curves(self, key: str) -> list[list[float]]:
        """Every seed's history column ``key`` (records without it skipped), in the order of ``seeds``:
        the validation curves of a training (``"val_nme"``) or the per-round scores of a self-training."""
        curves = [[float(r[key]) for r in self.history(seed) if key in r] for seed in self.seeds]
        if not any(curves):
            raise KeyError(f"{self.experiment}: no history records with {key!r}")
        return curves

    def for_seed(self, seed: int) -> dict[str, float]:
        index = self.seeds.index(seed)
        return {key: values[index] for key, values in self.metrics.items()}

    def to_json(self) -> dict[str, Any]:
        return {"experiment": self.experiment, "chapter": self.chapter, "profile": self.profile, "label": self.label,
                "seeds": self.seeds, "metrics": self.metrics, "settings": self.settings, "command": self.command,
                "histories": self.histories}

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> "Results":
        return cls(data["experiment"], data["chapter"], data["profile"], list(data["seeds"]),
                   {k: list(v) for k, v in data["metrics"].items()}, data["settings"], data.get("command", ""),
                   list(data.get("histories", [])), data.get("label", ""))


class StaleResult(ValueError):
    """A stored result was made with other settings than the experiment's current ones."""


def _command() -> str:
    return shlex.join(["python", *sys.argv]) if sys.argv and sys.argv[0] else "python"


def _write_json(path: Path, data: Mapping[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temporary = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        temporary.write_text(json.dumps(data, indent=1, sort_keys=False) + "\n")
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


class Store:
    """Experiments by name, with their results and kept weights under ``root``.

    Args:
        root: folder holding ``checkpoints/<profile>/`` and ``results/<profile>/``, or a function
            that returns it (read at every use, so an environment variable can move it).
        experiments: experiments to register (more with :meth:`add`).
    """

    def __init__(self, root: str | Path | Callable[[], Path], experiments: Sequence[Experiment] = ()) -> None:
        self._root = root
        self._experiments: dict[str, Experiment] = {}
        for item in experiments:
            self.add(item)

    @property
    def root(self) -> Path:
        return Path(self._root() if callable(self._root) else self._root)

    # ------------------------------------------------------------------------------ registry
    def add(self, experiment: Experiment) -> Experiment:
        if experiment.name in self._experiments and self._experiments[experiment.name] is not experiment:
            raise ValueError(f"two experiments are named {experiment.name!r}")
        self._experiments[experiment.name] = experiment
        return experiment

    def __contains__(self, name: str) -> bool:
        return name in self._experiments

    def __getitem__(self, name: str) -> Experiment:
        if name not in self._experiments:
            raise KeyError(f"unknown experiment {name!r}; known: {sorted(self._experiments)}")
        return self._experiments[name]

    def names(self, chapter: str | None = None) -> list[str]:
        """Experiment names in registration order (of one chapter, when given)."""
        return [n for n, e in self._experiments.items() if chapter is None or e.chapter == chapter]

    # ------------------------------------------------------------------------------ paths
    def results_path(self, name: str, profile: Profile) -> Path:
        return self.root / "results" / profile.name / f"{name}.json"

    def weights_path(self, name: str, seed: int, profile: Profile) -> Path:
        first = self[name].seeds_for(profile)[0]
        stem = name if seed == first else f"{name}.seed{seed}"
        return self.root / "checkpoints" / profile.name / f"{stem}.pt"

    # ------------------------------------------------------------------------------ reading
    def stored_results(self, name: str, profile: Profile | None = None) -> Results | None:
        """The stored results of ``name`` if they are up to date, else ``None``."""
        profile = profile or current()
        try:
            return self._read_results(name, profile)
        except (FileNotFoundError, StaleResult):
            return None

    def _read_results(self, name: str, profile: Profile) -> Results:
        path = self.results_path(name, profile)
        results = Results.from_json(json.loads(path.read_text()))
        wanted = normalise_config(self[name].settings(profile))
        differences = config_differences(results.settings, wanted)
        if differences:
            raise StaleResult(f"{path}: made with other settings ({describe_differences(differences)})")
        return results

    def status(self, name: str, profile: Profile | None = None) -> str:
        """``"up to date"``, ``"missing seeds [...]"``, ``"missing weights"``, ``"missing"`` or
        ``"stale: <differences>"``."""
        profile = profile or current()
        try:
            results = self._read_results(name, profile)
        except FileNotFoundError:
            return "missing"
        except StaleResult as error:
            return f"stale: {error}"
        experiment = self[name]
        missing = [s for s in experiment.seeds_for(profile) if s not in results.seeds]
        if missing:
            return f"missing seeds {missing}"
        if any(experiment.kept(s, profile) and not self.weights_path(name, s, profile).exists()
               for s in experiment.seeds_for(profile)):
            return "missing weights"
        return "up to date"

    def load(self, name: str, seed: int | None = None, profile: Profile | None = None) -> StoredModel:
        """The stored model of one seed (the first by default), without training.

        Raises ``FileNotFoundError`` when it is not stored and :class:`StaleResult` when it was made
        with other settings.
        """
        profile = profile or current()
        experiment = self[name]
        seed = experiment.seeds_for(profile)[0] if seed is None else int(seed)
        path = self.weights_path(name, seed, profile)
        detector, record = Detector.load_with_record(path)
        differences = config_differences(record.get("settings") or {}, normalise_config(experiment.settings(profile)))
        if differences:
            raise StaleResult(f"{path}: made with other settings ({describe_differences(differences)}); "
                              "run `make checkpoints` again")
        return StoredModel(name, seed, detector, dict(record.get("metrics") or {}),
                           History.from_dict(record.get("history")), record.get("settings") or {},
                           record.get("command") or "")

    # ------------------------------------------------------------------------------ training
    def model(self, name: str, seed: int | None = None, profile: Profile | None = None, progress: bool = True
              ) -> StoredModel:
        """The stored model of ``name`` under ``seed`` (the first seed by default); trained (and
        stored if the experiment keeps that seed) when it is missing or stale."""
        profile = profile or current()
        seed = self[name].seeds_for(profile)[0] if seed is None else int(seed)
        try:
            return self.load(name, seed, profile)
        except (FileNotFoundError, StaleResult):
            pass
        with self._lock(name, profile, seed):
            try:  # another process may have made it while this one waited
                return self.load(name, seed, profile)
            except (FileNotFoundError, StaleResult):
                return self._train(name, seed, profile, progress)

    def results(self, name: str, profile: Profile | None = None, progress: bool = True, train: bool = True,
                retrain: bool = False, seeds: Sequence[int] | None = None) -> Results:
        """Every seed's results of ``name``; the missing seeds are trained first (``train=False``:
        ``FileNotFoundError`` instead; ``retrain=True``: every seed is trained again, and replaces its
        stored entry as it finishes). ``seeds``: only these of the profile's seeds (another process
        makes the others)."""
        profile = profile or current()
        experiment = self[name]
        wanted = experiment.seeds_for(profile)
        if seeds is not None:
            unknown = sorted(set(seeds) - set(wanted))
            if unknown:
                raise ValueError(f"{name!r}: seeds {unknown} are not among the profile's {list(wanted)}")
            wanted = tuple(seed for seed in wanted if seed in seeds)

        def missing_seeds() -> list[int]:
            stored = self.stored_results(name, profile)
            return [s for s in wanted if stored is None or s not in stored.seeds
                    or (experiment.kept(s, profile) and not self.weights_path(name, s, profile).exists())]

        todo = list(wanted) if retrain else missing_seeds()
        if todo and not train:
            raise FileNotFoundError(f"{self.results_path(name, profile)}: seeds {todo} of {name!r} are not "
                                    "stored; run `make checkpoints`")
        if todo:
            # seeds another process is training are skipped at first and waited for at the end
            busy = [seed for seed in todo if not self._train_if_free(name, seed, profile, progress, retrain,
                                                                      missing_seeds, wait=False)]
            for seed in busy:
                self._train_if_free(name, seed, profile, progress, False, missing_seeds, wait=True)
        results = self.stored_results(name, profile)
        assert results is not None
        order = [results.seeds.index(s) for s in wanted]
        return Results(results.experiment, results.chapter, results.profile, list(wanted),
                       {k: [v[i] for i in order] for k, v in results.metrics.items()}, results.settings,
                       results.command, [results.histories[i] for i in order if i < len(results.histories)],
                       results.label)

    def _train_if_free(self, name: str, seed: int, profile: Profile, progress: bool, retrain: bool,
                       missing: Callable[[], list[int]], wait: bool) -> bool:
        """Train ``seed`` under its lock if it is (still) missing, or always with ``retrain``; ``False``
        without waiting when ``wait`` is false and another process holds the lock."""
        with self._lock(name, profile, seed, wait=wait) as held:
            if not held:
                return False
            if retrain or seed in missing():
                self._train(name, seed, profile, progress)
            return True

    def _train(self, name: str, seed: int, profile: Profile, progress: bool) -> StoredModel:
        experiment = self[name]
        settings = normalise_config(experiment.settings(profile))
        start = time.perf_counter()
        trained = experiment.train(profile, seed, progress)
        detector = trained.detector.eval()
        round_to_half(detector.model)
        metrics = {key: float(value) for key, value in experiment.evaluate(detector, profile).items()}
        history = trained.history if trained.history is not None else History()
        command = _command()
        if experiment.kept(seed, profile):
            detector.save(self.weights_path(name, seed, profile), history, half=True, metrics=metrics,
                          settings=settings, seed=seed, experiment=name, command=command,
                          train_seconds=time.perf_counter() - start)
        with self._lock(name, profile):
            self._record(experiment, profile, seed, metrics, history, settings, command)
        return StoredModel(name, seed, detector, metrics, history, settings, command)

    def _record(self, experiment: Experiment, profile: Profile, seed: int, metrics: Mapping[str, float],
                history: History, settings: dict[str, Any], command: str) -> None:
        """Add (or replace) one seed in the results file; results of other settings are dropped."""
        path = self.results_path(experiment.name, profile)
        try:
            results = self._read_results(experiment.name, profile)
        except (FileNotFoundError, StaleResult):
            results = Results(experiment.name, experiment.chapter, profile.name, [], {}, settings, command,
                              label=experiment.label)
        entries = {s: ({k: v[i] for k, v in results.metrics.items()},
                       results.histories[i] if i < len(results.histories) else None)
                   for i, s in enumerate(results.seeds)}
        entries[seed] = (dict(metrics), history.to_dict())
        seeds = sorted(entries, key=lambda s: (s not in experiment.seeds_for(profile), s))
        keys = list(dict.fromkeys(k for s in seeds for k in entries[s][0]))
        results.seeds = seeds
        results.metrics = {k: [entries[s][0].get(k, math.nan) for s in seeds] for k in keys}
        results.histories = [entries[s][1] for s in seeds]
        results.command, results.settings, results.label = command, settings, experiment.label
        _write_json(path, results.to_json())

    @contextlib.contextmanager
    def _lock(self, name: str, profile: Profile, seed: int | None = None, wait: bool = True) -> Iterator[bool]:
        """An exclusive lock across processes (POSIX ``flock``) on one seed's training, or (``seed=None``)
        on the experiment's results file; yields ``False`` without waiting when ``wait`` is false and
        another process holds it."""
        suffix = "" if seed is None else f".seed{seed}"
        path = self.root / "results" / profile.name / f".{name}{suffix}.lock"
        path.parent.mkdir(parents=True, exist_ok=True)
        with open(path, "w") as handle:
            try:
                import fcntl
            except ImportError:  # not POSIX: no cross-process lock
                yield True
                return
            try:
                fcntl.flock(handle, fcntl.LOCK_EX | (0 if wait else fcntl.LOCK_NB))
            except BlockingIOError:
                yield False
                return
            yield True
