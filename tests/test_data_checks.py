"""Bad files and labels are errors naming the file when a dataset is built (landmarks.data.checks),
and a detector cuts the crop its training used around any face box (crop convention)."""
import cv2
import numpy as np
import pytest
import torch

from landmarks.data.checks import image_size
from landmarks.data.coords import bounding_boxes
from landmarks.data.datasets import LandmarkDataset, crop_box, read_image
from landmarks.data.synthetic import SyntheticFaces
from landmarks.detector import Detector, ModelSpec, build_detector, crop_convention


def photo(height=240, width=320):
    """A smooth, photo-like RGB image (JPEG keeps it close to itself)."""
    y, x = np.mgrid[0:height, 0:width]
    return np.stack([x * 255 // width, y * 255 // height, (x + y) % 256], axis=-1).astype(np.uint8)


def face_points(centre=(160.0, 120.0), side=100.0):
    """68 synthetic landmarks scaled so their box has the given longer side, centred at ``centre``."""
    points = SyntheticFaces("studio", 128, 1, 0)[0]["landmarks"].double().numpy()
    low, high = points.min(0), points.max(0)
    return (points - (low + high) / 2) * side / (high - low).max() + np.asarray(centre)


def write(path, rgb):
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path


@pytest.mark.parametrize("suffix", [".jpg", ".png"])
def test_a_truncated_image_is_an_error_naming_it_not_grey_rows(tmp_path, suffix):
    whole = write(tmp_path / f"whole{suffix}", photo())
    data = whole.read_bytes()
    cut = tmp_path / f"cut{suffix}"
    cut.write_bytes(data[:len(data) // 3])
    if suffix == ".jpg":  # what OpenCV alone makes of it: the missing rows come back grey, without an error
        grey = cv2.imread(str(cut))
        assert grey is not None and (grey[-20:] == 128).all()
    for read in (read_image, image_size):
        with pytest.raises(ValueError, match=rf"cut{suffix}: truncated"):
            read(cut)
    with pytest.raises(ValueError, match=rf"cut{suffix}"):
        LandmarkDataset([whole, cut], np.stack([face_points()] * 2), "300w")
    assert image_size(whole) == (320, 240) and read_image(whole).shape == (240, 320, 3)


def test_bytes_after_the_end_marker_are_not_truncation(tmp_path):
    """Cameras append data after a JPEG's end marker; the pixels are all there."""
    path = write(tmp_path / "trailer.jpg", photo())
    path.write_bytes(path.read_bytes() + b"\x00" * 7 + b"camera trailer")
    reference = cv2.imread(str(path))
    np.testing.assert_array_equal(read_image(path), cv2.cvtColor(reference, cv2.COLOR_BGR2RGB))
    assert len(LandmarkDataset([path], face_points()[None], "300w")) == 1


def test_undecodable_and_missing_images_are_errors_when_the_dataset_is_built(tmp_path):
    (tmp_path / "text.jpg").write_text("not an image")
    for name in ("text.jpg", "absent.png"):
        with pytest.raises(ValueError, match=name):
            LandmarkDataset([tmp_path / name], face_points()[None], "300w")


def test_zero_inter_ocular_distance_names_the_files(tmp_path):
    images = [write(tmp_path / f"face{k}.png", photo()) for k in range(3)]
    points = np.stack([face_points()] * 3)
    points[1, 45] = points[1, 36]  # outer eye corners on one point: every NME of this face is infinite
    with pytest.raises(ValueError, match=r"inter-ocular normalising distance is zero for 1 face .*face1\.png"):
        LandmarkDataset(images, points, "300w")
    points[1] = face_points()
    assert len(LandmarkDataset(images, points, "300w")) == 3


def test_points_far_outside_the_image_name_the_file_but_faces_at_the_border_pass(tmp_path):
    image = write(tmp_path / "photo.png", photo())  # 320 x 240
    at_border = face_points(centre=(300.0, 120.0))  # 100-px face, 30 px of it beyond the right edge
    assert at_border[:, 0].max() > 320
    assert len(LandmarkDataset([image], at_border[None], "300w")) == 1
    elsewhere = face_points(centre=(160.0, 1120.0))  # labels of another image, or in other units
    with pytest.raises(ValueError, match=r"far outside the image in 1 file: .*photo\.png.*320 x 240"):
        LandmarkDataset([image], elsewhere[None], "300w")
    memory = photo()  # in-memory images are checked by their shape
    with pytest.raises(ValueError, match="item 0"):
        LandmarkDataset([memory], elsewhere[None], "300w")


# ---------------------------------------------------------------------------------------- crops
def test_crop_convention_recovers_the_crops_a_dataset_cut():
    """Crops cut 1.4 x the landmark box and moved 0.1 of its side down: the convention measured on
    their landmarks is (1.4, (0, 0.1)), and the detector cuts the same crops from the landmark boxes."""
    rng = np.random.default_rng(0)
    points = np.stack([face_points(centre=rng.uniform(100, 200, 2), side=rng.uniform(60, 120)) for _ in range(9)])
    boxes = bounding_boxes(points)
    side = (boxes[:, 2:] - boxes[:, :2]).max(1)
    crops = crop_box(boxes, 1.4) + np.stack([0 * side, 0.1 * side, 0 * side, 0.1 * side], 1)
    data = LandmarkDataset([photo()] * 9, points, "300w", boxes=crops, size=64, box_scale=1.0)
    scale, shift = crop_convention(data.crop_landmarks(), 64)
    assert scale == pytest.approx(1.4, rel=1e-6) and shift == pytest.approx((0.0, 0.1), abs=1e-6)  # float32 crops
    detector = build_detector(ModelSpec("heatmap", net_stride=4, image_size=64), box_scale=scale, box_shift=shift)
    np.testing.assert_allclose(detector.crop_boxes(boxes), crops, atol=1e-9)


def test_synthetic_faces_fill_about_half_of_their_crop():
    faces = SyntheticFaces("studio", 128, 64, 0)
    scale, (dx, dy) = crop_convention(torch.stack([faces[k]["landmarks"] for k in range(64)]), 128)
    assert 1.7 < scale < 2.4 and abs(dx) < 0.05 and abs(dy) < 0.1


def test_the_crop_convention_travels_in_the_model_file(tmp_path):
    detector = build_detector(ModelSpec("coordinate", image_size=64), box_scale=2.0, box_shift=(0.01, 0.05))
    detector.save(tmp_path / "m.pt")
    loaded = Detector.load(tmp_path / "m.pt")
    assert loaded.box_scale == 2.0 and loaded.box_shift == (0.01, 0.05)


def test_a_box_outside_the_image_or_a_tiny_image_is_an_error():
    detector = build_detector(ModelSpec("coordinate", image_size=64), box_scale=1.2)
    image = photo(120, 160)
    with pytest.raises(ValueError, match=r"box 500 500 600 600 .*outside the image of 160 x 120"):
        detector.predict([image], boxes=[[500, 500, 600, 600]])
    with pytest.raises(ValueError, match=r"1 x 1 pixels.*at least 8"):
        detector.predict([np.zeros((1, 1, 3), np.uint8)], boxes=None)
    assert detector.predict([image], boxes=[[-20, -20, 40, 40]]).shape == (1, 68, 2)  # partly inside: fine


def test_a_file_whose_head_record_does_not_fit_its_weights_is_refused(tmp_path):
    detector = build_detector(ModelSpec("coordinate", image_size=64))
    detector.save(tmp_path / "coordinate.pt")
    state = torch.load(tmp_path / "coordinate.pt", weights_only=True)
    state["config"]["detector"]["codec"] = {"task": "landmarks.codecs.tasks:HeatmapTask", "fields": {"net_stride": 4}}
    torch.save(state, tmp_path / "mixed.pt")
    with pytest.raises(ValueError, match=r"mixed\.pt: the stored decoder HeatmapTask cannot decode"):
        Detector.load(tmp_path / "mixed.pt")
