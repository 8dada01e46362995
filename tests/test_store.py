"""The experiment store: trained once per seed, stored in half precision, reloaded, refused when stale."""
import json

import pytest
import torch

from landmarks.detector import ModelSpec, build_detector
from landmarks.profile import Profile
from landmarks.store import Experiment, Results, StaleResult, Store, Trained
from landmarks.training.loop import History

PROFILE = Profile(name="tiny", image_size=32, width=0.25, train_images=4, test_images=2, epochs=1, batch_size=2,
                  seeds=(0, 1, 2))
SPEC = ModelSpec("coordinate", num_points=5, width=0.25, image_size=32)


def toy(calls: list, scale: float = 1.0, keep: str = "first") -> Experiment:
    """An experiment whose 'training' sets one weight to (scale + seed) / 3 and whose metric reads it."""

    def train(profile, seed, progress):
        calls.append(seed)
        detector = build_detector(SPEC)
        with torch.no_grad():
            detector.model.head.fc.weight[0, 0] = (scale + seed) / 3   # not a float16 number: rounding shows
        history = History()
        history.append({"epoch": 1.0, "loss_total": 0.5 + seed})
        return Trained(detector, history)

    def evaluate(detector, profile):
        return {"weight": float(detector.model.head.fc.weight[0, 0].detach())}

    return Experiment("toy", "00", settings=lambda profile: {"scale": scale, "size": profile.image_size},
                      train=train, evaluate=evaluate, keep=keep, build=lambda profile: build_detector(SPEC))


def half(value: float) -> float:
    return float(torch.tensor(value).half().float())


def test_results_hold_every_seed_and_weights_only_the_first(tmp_path):
    calls = []
    store = Store(tmp_path, [toy(calls)])
    results = store.results("toy", PROFILE, progress=False)
    assert calls == [0, 1, 2]
    assert results.seeds == [0, 1, 2]
    assert results.values("weight") == pytest.approx([half(1 / 3), half(2 / 3), half(1.0)], abs=0)
    assert results.mean("weight") == pytest.approx(sum(results.values("weight")) / 3)
    assert results.std("weight") == pytest.approx(torch.tensor(results.values("weight")).std().item())
    assert results.history(1)[0]["loss_total"] == 1.5
    written = json.loads((tmp_path / "results" / "tiny" / "toy.json").read_text())
    assert {"experiment", "chapter", "seeds", "metrics", "settings", "command"} <= set(written)
    assert written["chapter"] == "00" and written["metrics"]["weight"] == results.values("weight")
    assert written["settings"] == {"scale": 1.0, "size": 32}
    assert sorted(p.name for p in (tmp_path / "checkpoints" / "tiny").iterdir()) == ["toy.pt"]
    stored = torch.load(tmp_path / "checkpoints" / "tiny" / "toy.pt", weights_only=True)
    assert stored["model"]["head.fc.weight"].dtype == torch.float16
    again = store.results("toy", PROFILE, progress=False)
    assert calls == [0, 1, 2] and again.metrics == results.metrics, "up-to-date results are read, not trained"
    assert store.status("toy", PROFILE) == "up to date"


def test_model_loads_the_stored_seed_and_trains_the_others(tmp_path):
    calls = []
    store = Store(tmp_path, [toy(calls)])
    first = store.model("toy", profile=PROFILE, progress=False)
    assert calls == [0] and first.seed == 0
    loaded = store.model("toy", profile=PROFILE, progress=False)
    assert calls == [0], "a stored seed is loaded"
    assert loaded.metrics == first.metrics and loaded.history[0]["loss_total"] == 0.5 and loaded.command
    assert float(loaded.detector.model.head.fc.weight[0, 0].detach()) == half(1 / 3)
    assert loaded.spec == {"scale": 1.0, "size": 32}
    store.model("toy", seed=2, profile=PROFILE, progress=False)
    store.model("toy", seed=2, profile=PROFILE, progress=False)
    assert calls == [0, 2, 2], "seeds whose weights are not kept are trained each time they are asked for"
    assert store.results("toy", PROFILE, progress=False).seeds == [0, 1, 2] and calls == [0, 2, 2, 1]


def test_keep_all_stores_every_seed(tmp_path):
    calls = []
    store = Store(tmp_path, [toy(calls, keep="all")])
    store.results("toy", PROFILE, progress=False)
    names = sorted(p.name for p in (tmp_path / "checkpoints" / "tiny").iterdir())
    assert names == ["toy.pt", "toy.seed1.pt", "toy.seed2.pt"]
    assert float(store.load("toy", 2, PROFILE).detector.model.head.fc.weight[0, 0].detach()) == half(1.0)


def test_stale_results_are_refused_and_trained_again(tmp_path):
    calls = []
    Store(tmp_path, [toy(calls)]).results("toy", PROFILE, progress=False)
    changed = Store(tmp_path, [toy(calls, scale=2.0)])
    assert changed.status("toy", PROFILE).startswith("stale") and "scale" in changed.status("toy", PROFILE)
    with pytest.raises(StaleResult, match="scale"):
        changed.load("toy", 0, PROFILE)
    with pytest.raises(FileNotFoundError):
        changed.results("toy", PROFILE, train=False)
    results = changed.results("toy", PROFILE, progress=False)
    assert calls == [0, 1, 2, 0, 1, 2]
    assert results.values("weight")[0] == half(2 / 3) and results.settings["scale"] == 2.0


def test_more_seeds_later_trains_only_the_new_ones(tmp_path):
    calls = []
    store = Store(tmp_path, [toy(calls)])
    one = Profile(**{**PROFILE.__dict__, "seeds": (0,)})
    store.results("toy", one, progress=False)
    assert calls == [0]
    assert store.status("toy", PROFILE) == "missing seeds [1, 2]"
    results = store.results("toy", PROFILE, progress=False)
    assert calls == [0, 1, 2] and results.seeds == [0, 1, 2]


def test_a_seed_another_process_trains_is_skipped_then_waited_for(tmp_path):
    """Two ``make checkpoints`` processes share one experiment's seeds: a seed whose lock is held
    elsewhere is left for last, waited for, and not trained again once the other process stored it."""
    import fcntl
    import threading

    calls = []
    store = Store(tmp_path, [toy(calls, keep="all")])
    other = Store(tmp_path, [toy([], keep="all")])              # "another process" on the same folder
    lock_path = tmp_path / "results" / "tiny" / ".toy.seed1.lock"
    lock_path.parent.mkdir(parents=True)
    handle = open(lock_path, "w")                               # a separate open file: flock conflicts
    fcntl.flock(handle, fcntl.LOCK_EX)
    worker = threading.Thread(target=store.results, args=("toy", PROFILE), kwargs={"progress": False})
    worker.start()
    for _ in range(500):                                        # seeds 0 and 2 go ahead of the locked one
        if calls == [0, 2]:
            break
        worker.join(0.01)
    assert calls == [0, 2] and worker.is_alive(), "seed 1 is waited for, not trained past the lock"
    other._train("toy", 1, PROFILE, progress=False)             # the other process stores seed 1 ...
    fcntl.flock(handle, fcntl.LOCK_UN)                          # ... and lets go
    handle.close()
    worker.join(10)
    assert not worker.is_alive() and calls == [0, 2]
    assert store.results("toy", PROFILE, progress=False, train=False).seeds == [0, 1, 2]


def test_results_round_trip_and_bad_declarations():
    results = Results("a", "01", "quick", [0, 1], {"nme": [0.1, 0.3]}, {"x": 1}, "cmd")
    assert Results.from_json(json.loads(json.dumps(results.to_json()))) == results
    assert results.mean("nme") == pytest.approx(0.2) and results.std("nme") == pytest.approx(2 ** 0.5 * 0.1)
    with pytest.raises(KeyError, match="nme"):
        results.values("fr")
    with pytest.raises(ValueError, match="keep"):
        Experiment("a", "01", dict, dict, dict, keep="some")
    store = Store("unused", [toy([])])
    with pytest.raises(ValueError, match="two experiments"):
        store.add(toy([]))
    with pytest.raises(KeyError, match="toy"):
        store["missing"]


def test_make_checkpoints_shards_are_disjoint_and_cover_every_experiment():
    import subprocess
    import sys
    from pathlib import Path

    script = Path(__file__).resolve().parents[1] / "scripts" / "make_checkpoints.py"

    def listed(*options):
        out = subprocess.run([sys.executable, str(script), "--list", *options], capture_output=True, text=True,
                             check=True).stdout
        return [line.split()[1] for line in out.splitlines() if line.strip()]

    everything = listed()
    halves = listed("--shard", "1/2"), listed("--shard", "2/2")
    assert sorted(halves[0] + halves[1]) == sorted(everything) and not set(halves[0]) & set(halves[1])
    from landmarks.book import STORE

    for name in everything:  # an experiment comes after the ones it starts from
        assert all(everything.index(required) < everything.index(name) for required in STORE[name].requires
                   if required in everything), name


def test_results_curves_are_every_seeds_history_column():
    from landmarks.store import Results

    histories = [{"records": [{"epoch": 1, "val_nme": 0.3}, {"epoch": 2}, {"epoch": 3, "val_nme": 0.1}]},
                 {"records": [{"epoch": 1, "val_nme": 0.4}, {"epoch": 2, "val_nme": 0.2}]}]
    results = Results("x", "02", "quick", [3, 5], {"nme": [0.1, 0.2]}, {}, "", histories)
    assert results.curves("val_nme") == [[0.3, 0.1], [0.4, 0.2]]
    with pytest.raises(KeyError, match="no history records"):
        results.curves("pseudo_nme")
