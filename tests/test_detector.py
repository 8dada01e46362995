"""A Detector: built from a spec, trained, saved and reloaded, and predicting in the images' coordinates."""
import numpy as np
import pytest
import torch
from torch import nn

from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask
from landmarks.data.datasets import crop_box
from landmarks.data.layouts import custom_layout
from landmarks.data.synthetic import SyntheticFaces
from landmarks.detector import Detector, ModelSpec, build_detector, with_neighbours
from landmarks.evaluation.loop import evaluate
from landmarks.pipnet.padding import set_padding_mode
from landmarks.profile import Profile
from landmarks.training.loop import train_spec

TINY = Profile(name="tiny", image_size=64, width=0.25, train_images=24, test_images=8, epochs=1, batch_size=8,
               learning_rate=1e-3)


def test_spec_round_trips_through_its_config():
    spec = ModelSpec("pip", num_points=5, num_neighbours=2, neighbours=((1, 2), (0, 2), (1, 3), (2, 4), (3, 2)))
    assert ModelSpec.from_config(spec.to_config()) == spec
    with pytest.raises(ValueError, match="unknown head"):
        ModelSpec("transformer")


def test_neighbours_come_from_the_training_shapes():
    shapes = torch.tensor([[[0.0, 0.0], [1.0, 0.0], [5.0, 0.0]]]).repeat(4, 1, 1)
    spec = with_neighbours(ModelSpec("pip", num_points=3, num_neighbours=1, image_size=8), shapes)
    assert spec.neighbours == ((1,), (0,), (1,))
    assert build_detector(ModelSpec("pip", num_points=3, num_neighbours=1, image_size=8), shapes).spec == spec
    with pytest.raises(ValueError, match="neighbours"):
        build_detector(ModelSpec("pip", num_points=3, num_neighbours=1))


@pytest.mark.parametrize("head,task_type", [("pip", PIPTask), ("heatmap", HeatmapTask),
                                            ("coordinate", CoordinateTask)])
def test_build_matches_the_head(head, task_type):
    detector = build_detector(ModelSpec(head, num_points=5, num_neighbours=0, image_size=64,
                                        net_stride=4 if head == "heatmap" else 32))
    assert isinstance(detector.task, task_type)
    assert detector.predict(torch.rand(2, 3, 64, 64)).shape == (2, 5, 2)


def test_train_save_and_reload_gives_identical_predictions(tmp_path):
    train = SyntheticFaces("studio", 64, length=TINY.train_images, seed=0)
    test = SyntheticFaces("studio", 64, length=TINY.test_images, seed=1)
    spec = ModelSpec.from_profile(TINY, head="pip", net_stride=16, num_neighbours=4)
    detector, history = train_spec(spec, train, schedule=TINY.schedule(), progress=False)
    assert detector.spec.neighbours is not None and len(detector.spec.neighbours) == 68 and len(history) == 1
    metrics = evaluate(detector, test, batch_size=8)
    path = detector.save(tmp_path / "pip.pt", history, metrics={"nme": metrics["nme"]}, command="test")
    loaded, record = Detector.load_with_record(path)
    again = evaluate(loaded, test, batch_size=8)
    assert loaded.spec == detector.spec and torch.equal(loaded.task.neighbours, detector.task.neighbours)
    assert record["metrics"]["nme"] == pytest.approx(again["nme"], abs=1e-7) and record["command"] == "test"
    assert torch.equal(again["predictions"], metrics["predictions"])
    halved = Detector.load(detector.save(tmp_path / "half.pt", half=True))
    weights = dict(halved.model.named_parameters())
    for name, value in detector.model.named_parameters():
        torch.testing.assert_close(weights[name], value.half().float(), rtol=0, atol=0)


def test_rounded_to_half_predicts_exactly_what_the_half_file_predicts(tmp_path):
    # the store rounds a trained model before scoring it, so the stored metrics are those of the file;
    # the input normalisation's constants are not in the file, and must not be rounded either
    from landmarks.detector import round_to_half

    torch.manual_seed(0)
    detector = build_detector(ModelSpec("coordinate", num_points=5, num_neighbours=0, image_size=64))
    detector.model.eval()
    exact = {name: buffer.clone() for name, buffer in detector.model.named_buffers()
             if name not in detector.model.state_dict()}
    assert exact, "the backbone's normalisation constants are buffers outside the state dict"
    round_to_half(detector.model)
    for name, buffer in detector.model.named_buffers():
        if name in exact:
            assert torch.equal(buffer, exact[name])
    loaded = Detector.load(detector.save(tmp_path / "half.pt", half=True))
    images = torch.rand(3, 3, 64, 64)
    assert torch.equal(loaded.predict(images), detector.predict(images))


def test_modifiers_and_custom_layouts_survive_the_file(tmp_path):
    layout = custom_layout(5, name="five", flip_pairs=[(0, 1), (3, 4)], outer_eye_corners=(0, 1))
    spec = ModelSpec("pip", num_points=5, num_neighbours=0, image_size=64, layout="300w")
    detector = build_detector(spec, modifiers=[(set_padding_mode, {"mode": "circular"})])
    detector.layout = layout
    loaded = Detector.load(detector.save(tmp_path / "five.pt"))
    assert loaded.layout == layout
    convs = [m for m in loaded.model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.padding_mode == "circular" for m in convs)


class Fixed(nn.Module):
    """Outputs the same coordinates (in units of the input size) for every image."""

    def __init__(self, points):
        super().__init__()
        self.register_buffer("points", torch.tensor(points))

    def forward(self, images):
        return {"coords": self.points.expand(len(images), -1, -1)}


def test_predict_maps_crops_back_to_the_image():
    layout = custom_layout(3, name="three")
    detector = Detector(Fixed([[0.5, 0.5], [0.0, 0.0], [1.0, 0.25]]), CoordinateTask(), image_size=32, layout=layout,
                        box_scale=1.5)
    image = np.zeros((90, 120, 3), np.uint8)
    box = [20.0, 10.0, 60.0, 40.0]                                      # 40 x 30, centre (40, 25)
    x0, y0, x1, y1 = crop_box(np.array(box), 1.5)                        # a 60-pixel square around the centre
    expected = np.array([[40.0, 25.0], [x0, y0], [x1, y0 + 0.25 * (y1 - y0)]])
    points = detector.predict([image], boxes=[box])
    np.testing.assert_allclose(points[0].numpy(), expected, atol=1e-4)
    whole = detector.predict([image])                                    # the image made square: side 120
    np.testing.assert_allclose(whole[0, 0].numpy(), [60.0, 45.0], atol=1e-4)
    crops = torch.rand(2, 3, 32, 32)
    torch.testing.assert_close(detector.predict((crops * 255).round().to(torch.uint8)),
                               detector.predict((crops * 255).round() / 255))
    with pytest.raises(ValueError, match="x1 > x0"):
        detector.predict([image], boxes=[[10, 10, 5, 20]])
    with pytest.raises(ValueError, match="one box per image"):
        detector.predict([image, image], boxes=[box])


def test_loading_a_foreign_file_names_it(tmp_path):
    path = tmp_path / "weights.pt"
    torch.save({"not": "ours"}, path)
    with pytest.raises(ValueError, match="weights.pt"):
        Detector.load(path)


def test_a_file_may_only_name_library_functions(tmp_path):
    detector = build_detector(ModelSpec("coordinate", num_points=5, image_size=32))
    config = detector.config()
    config["architecture"]["builder"] = "os:system"
    with pytest.raises(ValueError, match="landmarks"):
        Detector.from_config(config)
