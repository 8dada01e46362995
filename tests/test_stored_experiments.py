"""The book's stored experiments: every result file is up to date, and every stored model still
reproduces the metrics stored beside its weights."""
import pytest

from landmarks.book import STORE
from landmarks.profile import PROFILES

QUICK = PROFILES["quick"]
ROOT = STORE.root
RESULTS = sorted((ROOT / "results" / "quick").glob("*.json"))
WEIGHTS = sorted((ROOT / "checkpoints" / "quick").glob("*.pt"))
#: experiments stored in the quick profile (chapters marked "-full" are made in the full profile only)
QUICK_NAMES = [name for name in STORE.names() if not STORE[name].chapter.endswith("-full")]


def _experiment_of(stem: str) -> tuple[str, int | None]:
    name, _, seed = stem.partition(".seed")
    return name, int(seed) if seed else None


def test_every_quick_experiment_is_stored_and_up_to_date():
    stale = {name: STORE.status(name, QUICK) for name in QUICK_NAMES if STORE.status(name, QUICK) != "up to date"}
    assert not stale, f"run `make checkpoints`: {stale}"
    known = set(STORE.names())
    assert {p.stem for p in RESULTS} <= known, "result files of unknown experiments"
    assert {_experiment_of(p.stem)[0] for p in WEIGHTS} <= known, "weight files of unknown experiments"
    for path in WEIGHTS:
        assert path.stat().st_size < 8 * 2**20, f"{path.name} is {path.stat().st_size / 2**20:.1f} MB"


@pytest.mark.parametrize("path", WEIGHTS, ids=[p.stem for p in WEIGHTS])
def test_stored_model_reproduces_its_stored_metrics(path):
    name, seed = _experiment_of(path.stem)
    experiment = STORE[name]
    stored = STORE.load(name, seed, QUICK)  # also fails if the experiment's settings changed
    assert stored.command, "the command that made the model is stored"
    results = STORE.results(name, QUICK, train=False)
    assert results.for_seed(stored.seed) == stored.metrics, "the results file and the weights agree"
    if stored.seed != experiment.seeds_for(QUICK)[0]:
        return  # other seeds kept for a dependent experiment: loaded and matched above; the first is re-scored
    metrics = experiment.evaluate(stored.detector, QUICK)
    assert set(metrics) == set(stored.metrics)
    # Two instances with equal weights differ by ~1e-5 in their outputs (CPU kernels pick different
    # code paths by memory layout); a metric of one black image moves by up to ~1e-3 of its value.
    # A failure rate counts faces above an NME threshold, so a face within that noise of the
    # threshold can flip (measured: one indoor face of tmd_translation_curriculum at NME 0.0999994):
    # an FR may differ by one face of the quick profile's 200 test faces, every other metric may not.
    for key, value in metrics.items():
        one_face = 1 / QUICK.test_images + 1e-9 if key.split("/")[0].startswith("fr") else 1e-5
        assert value == pytest.approx(stored.metrics[key], rel=3e-3, abs=one_face), key
