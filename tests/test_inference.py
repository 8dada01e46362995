"""Inference beyond one forward pass: test-time flip, channels-last on the CPU, ONNX export, faces found in a photo."""
from importlib import resources

import cv2
import numpy as np
import pytest
import torch

from landmarks.data.face_detection import CASCADE_BOX, BoxCalibration, detect_faces
from landmarks.data.layouts import W300, custom_layout, get_layout
from landmarks.data.synthetic import SyntheticFaces
from landmarks.detector import ModelSpec, build_detector
from landmarks.evaluation.loop import evaluate

HEADS = [("pip", 32), ("heatmap", 4), ("coordinate", 32)]


def tiny(head: str, stride: int, layout=W300, seed: int = 0):
    torch.manual_seed(seed)
    spec = ModelSpec(head, num_points=layout.num_points, width=0.25, image_size=64, net_stride=stride,
                     num_neighbours=4, layout="300w" if layout is W300 else layout.name)
    shapes = torch.rand(20, layout.num_points, 2) * 40 + 12
    return build_detector(spec, shapes, layout=layout).eval()


def mirror(points: torch.Tensor, width: int, layout) -> torch.Tensor:
    """The landmarks of the mirrored image, by hand: x -> W - x, then relabelled."""
    swapped = points[:, list(layout.flip_permutation)]
    return torch.stack([width - swapped[..., 0], swapped[..., 1]], -1)


@pytest.mark.parametrize("head,stride", HEADS)
def test_test_time_flip_makes_any_detector_exactly_mirror_equivariant(head, stride):
    """Averaging a face and its mirror image gives, on the mirror image, the mirror of the answer:
    a property no single untrained network has, and one a wrong relabelling or x -> W - 1 - x breaks."""
    detector = tiny(head, stride)
    images = torch.rand(3, 3, 64, 64)
    flipped = detector.predict(images, flip=True)
    on_mirror = detector.predict(images.flip(-1), flip=True)
    torch.testing.assert_close(on_mirror, mirror(flipped, 64, W300), atol=1e-4, rtol=0)
    plain = detector.predict(images)
    assert not torch.allclose(detector.predict(images.flip(-1)), mirror(plain, 64, W300), atol=1e-2)
    torch.testing.assert_close(flipped, (plain + mirror(detector.predict(images.flip(-1)), 64, W300)) / 2,
                               atol=1e-4, rtol=0)


def test_flip_in_evaluate_and_a_layout_without_pairs():
    detector = tiny("pip", 32)
    faces = SyntheticFaces("studio", 64, length=6, seed=4)
    plain, flipped = evaluate(detector, faces), evaluate(detector, faces, flip=True)
    stacked = torch.stack([faces[k]["image"] for k in range(6)])
    torch.testing.assert_close(flipped["predictions"], detector.predict(stacked, flip=True), atol=1e-4, rtol=0)
    assert flipped["nme"] != plain["nme"]
    unpaired = tiny("pip", 32, layout=custom_layout(5, name="five"))
    with pytest.raises(ValueError, match="flip pairs"):
        unpaired.predict(torch.rand(1, 3, 64, 64), flip=True)


@pytest.mark.parametrize("head,stride", HEADS)
def test_channels_last_on_the_cpu_changes_nothing_but_the_layout(head, stride):
    detector = tiny(head, stride)
    images = torch.rand(4, 3, 64, 64)
    detector.channels_last = False
    contiguous = detector.predict(images)
    assert all(p.is_contiguous() for p in detector.model.parameters())
    detector.channels_last = None  # the default: channels-last on a CPU
    fast = detector.predict(images)
    conv = next(m for m in detector.model.modules() if isinstance(m, torch.nn.Conv2d))
    assert conv.weight.is_contiguous(memory_format=torch.channels_last) and not conv.weight.is_contiguous()
    torch.testing.assert_close(fast, contiguous, atol=1e-3, rtol=0)
    detector.to("cpu")  # back to the default layout for training
    assert conv.weight.is_contiguous()


@pytest.mark.parametrize("head,stride", HEADS)
def test_the_exported_onnx_graph_gives_the_same_landmarks(head, stride, tmp_path):
    ort = pytest.importorskip("onnxruntime")
    detector = tiny(head, stride, seed=3)
    path = detector.export_onnx(tmp_path / f"{head}.onnx")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    for batch in (1, 5):  # the batch size is free
        images = torch.rand(batch, 3, 64, 64)
        exported = session.run(["landmarks"], {"images": images.numpy()})[0]
        assert exported.shape == (batch, 68, 2)
        np.testing.assert_allclose(exported, detector.predict(images).numpy(), atol=1e-3)


def test_onnx_export_with_test_time_flip(tmp_path):
    ort = pytest.importorskip("onnxruntime")
    detector = tiny("pip", 32, seed=5)
    session = ort.InferenceSession(str(detector.export_onnx(tmp_path / "flip.onnx", flip=True)),
                                   providers=["CPUExecutionProvider"])
    images = torch.rand(2, 3, 64, 64)
    np.testing.assert_allclose(session.run(None, {"images": images.numpy()})[0],
                               detector.predict(images, flip=True).numpy(), atol=1e-3)


# ------------------------------------------------------------------------------------ faces in a photo
def astronaut() -> np.ndarray:
    path = resources.files("landmarks") / "assets" / "photos" / "astronaut.jpg"
    return cv2.cvtColor(cv2.imread(str(path)), cv2.COLOR_BGR2RGB)


def test_the_cascade_finds_the_face_of_a_real_photo_wherever_it_is():
    photo = astronaut()
    [box] = detect_faces(photo, calibration=None)
    # the face of the photo (Eileen Collins, 512 x 512) lies at about x 175-270, y 65-165
    assert 160 < box[0] < 190 and 255 < box[2] < 285 and 55 < box[1] < 80 and 150 < box[3] < 175
    canvas = np.full((600, 1000, 3), 90, np.uint8)
    canvas[44:556, 440:952] = photo  # the same face, right of centre in a larger picture
    [moved] = detect_faces(canvas, calibration=None)
    np.testing.assert_allclose(moved, box + [440, 44, 440, 44], atol=6)
    assert detect_faces(np.full((200, 300, 3), 128, np.uint8)).shape == (0, 4)


def test_the_calibration_moves_the_square_down_and_scales_it():
    box = np.array([[100.0, 50.0, 200.0, 150.0]])
    np.testing.assert_allclose(BoxCalibration(shift=0.1, scale=0.8).apply(box), [[110.0, 70.0, 190.0, 150.0]])
    np.testing.assert_allclose(CASCADE_BOX.apply(box), [[106.5, 69.5, 193.5, 156.5]])
    with pytest.raises(ValueError, match="uint8"):
        detect_faces(np.zeros((10, 10, 3)))


def test_cross_dataset_scores_convert_both_sides_to_19_points_and_divide_by_the_width():
    """A detector whose 68 points are known exactly, scored on 98-point (WFLW-layout) labels: the
    error is computed by hand from the two conversions to AFLW's 19 points."""
    from landmarks.data.layouts import conversion_matrix
    from landmarks.evaluation.loop import evaluate_across

    class Known(torch.nn.Module):
        def forward(self, images):
            return {"points": self.points.expand(len(images), -1, -1)}

    from dataclasses import dataclass

    @dataclass
    class Fixed:
        def predict(self, outputs, batch):
            return outputs["points"]

    rng = torch.Generator().manual_seed(0)
    model = Known()
    model.points = torch.rand(1, 68, 2, generator=rng) * 50 + 7
    from landmarks.detector import Detector

    detector = Detector(model, Fixed(), image_size=64, layout="300w")
    labels = torch.rand(3, 98, 2, generator=rng) * 50 + 7
    data = [{"image": torch.zeros(3, 64, 64), "landmarks": labels[k]} for k in range(3)]

    class Faces(torch.utils.data.Dataset):
        layout = get_layout("wflw")

        def __len__(self):
            return 3

        def __getitem__(self, k):
            return data[k]

    scores = evaluate_across(detector, Faces())
    guess = conversion_matrix("300w", "aflw") @ model.points[0]
    truth = torch.einsum("mn,bnc->bmc", conversion_matrix("wflw", "aflw"), labels)
    expected = (guess - truth).norm(dim=-1).mean(-1) / 64
    torch.testing.assert_close(scores["per_image"], expected)
    assert scores["norm"] == "image-width" and scores["predictions"].shape == (3, 19, 2)
