"""The stored models the chapters load still reproduce the metrics stored beside their weights."""
from pathlib import Path

import pytest

from landmarks.experiments import BOOK_MODELS, SyntheticData, checkpoint_root, load_trained
from landmarks.train import evaluate

SHIPPED = sorted((checkpoint_root() / "quick").glob("*.pt"))


def test_every_book_model_is_shipped_and_small():
    assert {path.stem for path in SHIPPED} == set(BOOK_MODELS), "run `make checkpoints`"
    for path in SHIPPED:
        assert path.stat().st_size < 8 * 2**20, f"{path.name} is {path.stat().st_size / 2**20:.1f} MB"


@pytest.mark.parametrize("path", SHIPPED, ids=[p.stem for p in SHIPPED])
def test_shipped_checkpoint_reproduces_its_stored_metrics(path: Path):
    model, task, spec, stored = load_trained(path)
    assert stored["command"], "the command that made the checkpoint is stored"
    test = SyntheticData(**stored["request"]["test"]).build(spec.image_size)
    result = evaluate(model, task, test, layout=spec.layout, batch_size=50)
    for key in ("nme", "fr", "auc"):
        assert result[key] == pytest.approx(stored["metrics"][key], rel=1e-3, abs=1e-6), key
