"""A spec rebuilds, trains, saves and reloads the same detector."""
import pytest
import torch

from landmarks.experiments import (ModelSpec, build_model, build_task, load_trained, save_trained, train_spec,
                                   with_neighbours)
from landmarks.profile import PROFILES
from landmarks.data.synthetic import SyntheticFaces
from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask
from landmarks.training.loop import evaluate

TINY = PROFILES["quick"].__class__(name="tiny", image_size=64, width=0.25, train_images=24, test_images=8,
                                   epochs=1, batch_size=8, learning_rate=1e-3)


def test_spec_round_trips_through_its_config():
    spec = ModelSpec("pip", num_points=5, num_neighbours=2, neighbours=((1, 2), (0, 2), (1, 3), (2, 4), (3, 2)))
    assert ModelSpec.from_config(spec.to_config()) == spec
    with pytest.raises(ValueError, match="unknown head"):
        ModelSpec("transformer")


def test_neighbours_come_from_the_training_shapes():
    shapes = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]]).repeat(4, 1, 1)
    spec = with_neighbours(ModelSpec("pip", num_points=3, num_neighbours=1, image_size=8), shapes)
    assert spec.neighbours == ((1,), (0,), (1,))
    with pytest.raises(ValueError, match="with_neighbours"):
        build_task(ModelSpec("pip", num_points=3, num_neighbours=1))


@pytest.mark.parametrize("head,task_type", [("pip", PIPTask), ("heatmap", HeatmapTask),
                                            ("coordinate", CoordinateTask)])
def test_build_matches_the_head(head, task_type):
    spec = ModelSpec(head, num_points=5, num_neighbours=0, net_stride=4 if head == "heatmap" else 32)
    assert isinstance(build_task(spec), task_type)
    outputs = build_model(spec)(torch.rand(1, 3, 64, 64))
    assert isinstance(outputs, dict)


def test_train_save_and_reload_gives_identical_predictions(tmp_path):
    train = SyntheticFaces("studio", 64, length=TINY.train_images, seed=0)
    test = SyntheticFaces("studio", 64, length=TINY.test_images, seed=1)
    spec = ModelSpec.from_profile(TINY, head="pip", net_stride=16, num_neighbours=4)
    model, task, spec, history = train_spec(spec, train, None, TINY, progress=False)
    assert spec.neighbours is not None and len(spec.neighbours) == 68
    metrics = evaluate(model, task, test, layout="300w", batch_size=8)
    path = save_trained(tmp_path / "pip.pt", model, spec, history, {"nme": metrics["nme"]}, command="test")
    loaded, loaded_task, loaded_spec, stored = load_trained(path)
    again = evaluate(loaded, loaded_task, test, layout="300w", batch_size=8)
    assert loaded_spec == spec
    assert stored["metrics"]["nme"] == pytest.approx(again["nme"], abs=1e-7)
    assert torch.equal(again["predictions"], metrics["predictions"])


def test_loading_a_foreign_file_names_it(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"not": "ours"}, path)
    with pytest.raises(ValueError, match="weights.pt"):
        load_trained(path)
