"""Tasks join heads, losses and decoders: perfect outputs give zero loss and the exact landmarks."""
import pytest
import torch

from landmarks.codecs.heatmaps import gaussian_heatmaps
from landmarks.models import coordinate_net, heatmap_net, pipnet
from landmarks.codecs.pip import pip_targets
from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask


def _batch(size=64, points=68, seed=0):
    g = torch.Generator().manual_seed(seed)
    landmarks = 4 + (size - 8) * torch.rand(3, points, 2, generator=g)
    return {"image": torch.rand(3, 3, size, size, generator=g), "landmarks": landmarks}


def test_pip_task_with_perfect_maps_has_zero_loss_and_decodes_exactly():
    batch = _batch()
    task = PIPTask.from_training_shapes(batch["landmarks"], 64, net_stride=16, num_neighbours=4)
    targets = pip_targets(batch["landmarks"], 64, 16, task.neighbours)
    outputs = {k: targets[k] for k in ("score", "offset_x", "offset_y", "neighbour_x", "neighbour_y")}
    losses = task.loss(outputs, batch)
    assert float(losses["total"]) == 0.0
    assert torch.allclose(task.predict(outputs, batch), batch["landmarks"], atol=1e-4)


def test_pip_task_neighbours_come_from_the_mean_face():
    # Three collinear points: each one's nearest other point is the middle one (or, for the middle, the left).
    shapes = torch.tensor([[[10.0, 10.0], [20.0, 10.0], [40.0, 10.0]]]).repeat(2, 1, 1)
    task = PIPTask.from_training_shapes(shapes, 64, net_stride=16, num_neighbours=1)
    assert task.neighbours.flatten().tolist() == [1, 0, 1]


def test_heatmap_task_with_perfect_maps_has_zero_loss_and_decodes_to_a_quarter_cell():
    batch = _batch(seed=1)
    task = HeatmapTask(net_stride=4)
    outputs = {"heatmaps": gaussian_heatmaps(batch["landmarks"], 64, 4)}
    assert float(task.loss(outputs, batch)["total"]) == 0.0
    error = (task.predict(outputs, batch) - batch["landmarks"]).abs()
    assert float(error.max()) <= 0.25 * 4 + 1e-5  # the quarter-pixel rule leaves at most 1/4 map pixel


@pytest.mark.parametrize("loss", ["l1", "l2", "iod-l2"])
def test_coordinate_task_uses_image_units(loss):
    batch = _batch(seed=2)
    task = CoordinateTask(loss, layout="300w")
    outputs = {"coords": batch["landmarks"] / 64}
    assert float(task.loss(outputs, batch)["total"]) == 0.0
    assert torch.allclose(task.predict(outputs, batch), batch["landmarks"])
    shifted = {"coords": outputs["coords"] + torch.tensor([1 / 64, 0.0])}  # one pixel to the right
    if loss == "l1":
        assert float(task.loss(shifted, batch)["total"]) == pytest.approx(1 / 64)


def test_coordinate_task_rejects_unknown_losses():
    with pytest.raises(ValueError, match="unknown coordinate loss"):
        CoordinateTask("huber")
    with pytest.raises(ValueError, match="needs a layout"):
        CoordinateTask("iod-l2")


@pytest.mark.parametrize("name", ["pip", "heatmap", "coordinate"])
def test_every_task_trains_its_model_end_to_end(name):
    torch.manual_seed(0)
    batch = _batch(points=5)
    if name == "pip":
        model = pipnet(5, width=0.25, net_stride=16, num_neighbours=2)
        task = PIPTask.from_training_shapes(batch["landmarks"], 64, net_stride=16, num_neighbours=2)
    elif name == "heatmap":
        model, task = heatmap_net(5, width=0.25, net_stride=4), HeatmapTask(net_stride=4)
    else:
        model, task = coordinate_net(5, width=0.25), CoordinateTask("l1")
    outputs = model(batch["image"])
    loss = task.loss(outputs, batch)["total"]
    loss.backward()
    assert torch.isfinite(loss)
    assert model.backbone.conv1.weight.grad.abs().sum() > 0
    assert task.predict(outputs, batch).shape == (3, 5, 2)
