"""Cropping geometry, LandmarkDataset, and the four builders on fake roots in the official layouts."""
import cv2
import numpy as np
import pytest
import torch

from landmarks.data.coords import from_one_based
from landmarks.data.datasets import (LandmarkDataset, crop_and_resize, crop_box, crop_matrix, load_300w,
                                load_aflw, load_cofw, load_wflw, opencv_matrix)
from landmarks.book.demo_data import (FAKE_300W_COUNTS, make_300w_root, make_aflw_root, make_cofw_root,
                                 make_wflw_root)
from landmarks.data.formats import read_aflw_mat, read_cofw_mat, read_pts, read_wflw_list
from landmarks.data.layouts import W300
from landmarks.data.synthetic import SyntheticFaces


# --------------------------------------------------------------------------- geometry
def test_crop_box_from_landmarks_and_from_a_box():
    points = np.array([[10.0, 20.0], [30.0, 60.0], [20.0, 40.0]])
    np.testing.assert_allclose(crop_box(points, 1.0), [0.0, 20.0, 40.0, 60.0])   # square, centred
    np.testing.assert_allclose(crop_box(points, 1.5), [-10.0, 10.0, 50.0, 70.0])
    np.testing.assert_allclose(crop_box(np.array([0.0, 0.0, 10.0, 4.0]), 2.0), [-5.0, -8.0, 15.0, 12.0])
    assert crop_box(np.zeros((5, 68, 2)) + np.arange(68)[:, None], 1.1).shape == (5, 4)
    with pytest.raises(ValueError):
        crop_box(np.zeros(3))


def test_opencv_matrix_adds_the_half_pixel_terms():
    matrix = crop_matrix(np.array([10.0, 20.0, 50.0, 60.0]), 80)  # scale 2
    np.testing.assert_allclose(matrix, [[2, 0, -20], [0, 2, -40]])
    np.testing.assert_allclose(opencv_matrix(matrix), [[2, 0, 2 * (0.5 - 10) - 0.5], [0, 2, 2 * (0.5 - 20) - 0.5]])


@pytest.mark.parametrize("box,size", [((3.0, 5.0, 23.0, 25.0), 40), ((2.3, 1.7, 30.3, 29.7), 14),
                                      ((4.0, 4.0, 20.0, 20.0), 16)])
def test_warp_samples_a_linear_image_exactly(box, size):
    """On an image whose value is the x coordinate of the pixel centre minus 0.5 (= column index),
    bilinear sampling is exact: crop pixel u must hold x0 + (u + 0.5) / s - 0.5."""
    image = np.tile(np.arange(40, dtype=np.float32), (40, 1))
    crop, _ = crop_and_resize(image, np.zeros((1, 2)), np.array(box), size)
    scale = size / (box[2] - box[0])
    expected = box[0] + (np.arange(size) + 0.5) / scale - 0.5
    np.testing.assert_allclose(crop[size // 2], expected, atol=0.02)   # OpenCV's 1/32 px sub-pixel grid


def blob_image(point, height, width, sigma):
    """uint8 RGB image, a Gaussian dot centred on ``point`` (continuous coordinates)."""
    ys, xs = np.mgrid[0:height, 0:width] + 0.5
    blob = np.exp(-((xs - point[0]) ** 2 + (ys - point[1]) ** 2) / (2 * sigma**2))
    return np.dstack([np.round(255 * blob).astype(np.uint8)] * 3)


def centroid(crop):
    weights = crop[..., 0].astype(np.float64)
    ys, xs = np.mgrid[0:crop.shape[0], 0:crop.shape[1]] + 0.5
    return np.array([(weights * xs).sum(), (weights * ys).sum()]) / weights.sum()


@pytest.mark.parametrize("side,size", [(64, 32), (48, 128), (90, 90), (30, 256), (71.3, 17)])
def test_bright_dot_lands_on_the_mapped_landmark(side, size):
    point = np.array([47.3, 52.8])
    sigma = 1.5 * max(1.0, side / size)           # at least 1.5 px wide in the crop
    image = blob_image(point, 110, 100, sigma)
    box = np.array([point[0] - 0.35 * side, point[1] - 0.6 * side, point[0] + 0.65 * side, point[1] + 0.4 * side])
    crop, mapped = crop_and_resize(image, point[None], box, size)
    assert crop.shape == (size, size, 3)
    assert np.abs(centroid(crop) - mapped[0]).max() < 0.5, (centroid(crop), mapped[0])


@pytest.mark.parametrize("size", [24, 64, 200])
def test_box_past_the_image_border(size):
    point = np.array([7.2, 9.7])                  # near the top-left corner
    image = blob_image(point, 40, 50, 1.2)
    box = np.array([-20.0, -15.0, 30.0, 35.0])    # reaches 20 px past the left, 15 px past the top
    crop, mapped = crop_and_resize(image, point[None], box, size)
    assert np.abs(centroid(crop) - mapped[0]).max() < 0.5
    white = np.full((40, 50, 3), 255, np.uint8)
    crop, _ = crop_and_resize(white, point[None], box, size)
    # Where a crop pixel samples the image: x = x0 + (u + 0.5) / s. Bilinear sampling blends the
    # black border into the half pixel next to the edge; further out it is black, inside white.
    xs, ys = box[0] + (np.arange(size) + 0.5) * 50 / size, box[1] + (np.arange(size) + 0.5) * 50 / size
    assert crop[-1, xs < -0.5].max() == 0 and crop[-1, xs > 0.5].min() == 255
    assert crop[ys < -0.5, -1].max() == 0 and crop[ys > 0.5, -1].min() == 255


# --------------------------------------------------------------------------- LandmarkDataset
def memory_dataset(**kwargs):
    rng = np.random.default_rng(0)
    images = [rng.integers(0, 256, (60, 50, 3), dtype=np.uint8), rng.integers(0, 256, (40, 70), dtype=np.uint8)]
    points = rng.uniform(10, 35, (2, 68, 2))
    return LandmarkDataset(images, points, "300w", **kwargs), images, points


def test_sample_dict_from_memory():
    dataset, images, points = memory_dataset(size=64)
    sample = dataset[1]
    assert set(sample) == {"image", "landmarks", "box", "visible", "index"}
    assert sample["image"].shape == (3, 64, 64) and sample["image"].dtype == torch.float32
    assert 0.0 <= sample["image"].min() and sample["image"].max() <= 1.0
    assert torch.equal(sample["image"][0], sample["image"][2])          # grayscale -> 3 equal channels
    assert sample["landmarks"].shape == (68, 2) and sample["landmarks"].dtype == torch.float32
    assert sample["visible"].dtype == torch.bool and sample["visible"].all() and sample["index"] == 1
    box = sample["box"].numpy()                                         # landmark box, mapped, x 1.1 crop
    np.testing.assert_allclose(box[[0, 2]].mean(), 32.0, atol=1e-4)
    np.testing.assert_allclose(max(box[2] - box[0], box[3] - box[1]), 64 / 1.1, rtol=1e-5)
    np.testing.assert_allclose(dataset.to_original(sample["landmarks"].numpy(), 1), points[1], atol=1e-4)


def test_image_files_are_read_as_rgb(tmp_path):
    rgb = np.zeros((30, 30, 3), np.uint8)
    rgb[..., 0] = 200                                                   # red
    cv2.imwrite(str(tmp_path / "red.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    cv2.imwrite(str(tmp_path / "gray.png"), np.full((30, 30), 90, np.uint8))
    dataset = LandmarkDataset([tmp_path / "red.png", str(tmp_path / "gray.png")],
                              np.full((2, 68, 2), 15.0) + np.arange(68)[:, None] / 10, W300, size=8)
    red = dataset[0]["image"]
    assert red[0].min() > 0.7 and red[1:].max() == 0
    assert dataset[1]["image"].shape == (3, 8, 8)


def test_transform_and_visible():
    seen = []
    dataset, _, _ = memory_dataset(size=16, visible=np.zeros((2, 68), bool),
                                   transform=lambda s: seen.append(s["index"]) or {**s, "extra": 1})
    sample = dataset[0]
    assert seen == [0] and sample["extra"] == 1 and not sample["visible"].any()


def test_dataset_errors(tmp_path):
    (tmp_path / "broken.jpg").write_bytes(b"not a jpeg")
    face = SyntheticFaces("studio", 64, 1, 0)[0]["landmarks"].double().numpy()
    for name in ("broken.jpg", "gone.jpg"):  # found when the dataset is built ...
        with pytest.raises(ValueError, match=name):
            LandmarkDataset([tmp_path / name], face[None], "300w")
    unchecked = LandmarkDataset([tmp_path / "broken.jpg", tmp_path / "gone.jpg"], np.stack([face, face]), "300w",
                                check=False)
    with pytest.raises(ValueError, match="broken.jpg"):  # ... and, unchecked, when it is read
        unchecked[0]
    with pytest.raises(ValueError, match="gone.jpg"):
        unchecked[1]
    image = np.zeros((10, 10, 3), np.uint8)
    with pytest.raises(ValueError, match=r"item 1 .*expected 68 points \(layout '300w'\)"):
        LandmarkDataset([image, image], [np.ones((68, 2)), np.ones((67, 2))], "300w")
    with pytest.raises(ValueError, match="item 0 .*NaN"):
        LandmarkDataset([image], np.full((1, 68, 2), np.nan), "300w")
    with pytest.raises(ValueError, match="1 images but 2"):
        LandmarkDataset([image], np.ones((2, 68, 2)), "300w")
    with pytest.raises(ValueError, match="boxes"):
        LandmarkDataset([image], np.ones((1, 68, 2)), "300w", boxes=np.ones((1, 3)))


# --------------------------------------------------------------------------- builders
@pytest.fixture(scope="module")
def roots(tmp_path_factory):
    base = tmp_path_factory.mktemp("data")
    return {"300w": make_300w_root(base / "300W"), "wflw": make_wflw_root(base / "WFLW"),
            "cofw": make_cofw_root(base / "COFW"), "aflw": make_aflw_root(base / "AFLW")}


def test_300w_splits_and_one_based_conversion(roots):
    counts = FAKE_300W_COUNTS
    expected = {"train": counts["afw"] + counts["helen/trainset"] + counts["lfpw/trainset"],
                "common": counts["helen/testset"] + counts["lfpw/testset"], "challenge": counts["ibug"]}
    expected["full"] = expected["test"] = expected["common"] + expected["challenge"]
    for split, count in expected.items():
        assert len(load_300w(roots["300w"], split, size=32)) == count, split
    dataset = load_300w(roots["300w"], "common", size=32)
    first = dataset.images[0]
    assert first.parent.name == "testset" and first.suffix in (".jpg", ".png")
    np.testing.assert_array_equal(dataset.landmarks[0], read_pts(first.with_suffix(".pts")) - 0.5)


def test_fake_dots_sit_under_the_landmarks(roots):
    """End to end: file values -> our convention -> crop. The fake images have a white dot at
    every landmark, so the crop must be bright there and dark elsewhere."""
    sample = load_300w(roots["300w"], "train", size=128)[0]
    image = sample["image"].mean(0)
    x, y = (sample["landmarks"].numpy() - 0.5).round().astype(int).T
    assert image[y, x].mean() > 0.8 and image.median() < 0.5


def test_wflw_splits_subsets_and_coordinates(roots):
    root = roots["wflw"]
    train, test = load_wflw(root, "train", size=32), load_wflw(root, "test", size=32)
    assert (len(train), len(test)) == (4, 6)
    records = read_wflw_list(root / "WFLW_annotations/list_98pt_rect_attr_train_test/list_98pt_rect_attr_test.txt")
    np.testing.assert_array_equal(test.landmarks[3], records[3].landmarks)   # used as stored
    np.testing.assert_array_equal(test.boxes[3], records[3].box)
    for subset in ("pose", "expression", "illumination", "makeup", "occlusion", "blur"):
        assert len(load_wflw(root, "test", subset, size=32)) == 1
    assert load_wflw(root, "test", "blur").images[0] == root / "WFLW_images" / records[5].image
    with pytest.raises(ValueError, match="subset"):
        load_wflw(root, "test", "hat")


def test_cofw_builder(roots):
    data = read_cofw_mat(roots["cofw"] / "COFW_train_color.mat")
    dataset = load_cofw(roots["cofw"], "train", size=32)
    assert len(dataset) == 3 and len(load_cofw(roots["cofw"], "test")) == 2
    np.testing.assert_array_equal(dataset.landmarks, from_one_based(data.landmarks))
    np.testing.assert_array_equal(dataset.boxes, data.boxes - 0.5)
    np.testing.assert_array_equal(dataset.visible, ~data.occluded)
    sample = dataset[0]                                                   # the grayscale one
    assert sample["image"].shape == (3, 32, 32) and torch.equal(sample["image"][0], sample["image"][1])
    assert torch.equal(sample["visible"], torch.from_numpy(~data.occluded[0]))


def test_aflw_splits_follow_ra(roots):
    data = read_aflw_mat(roots["aflw"] / "AFLWinfo_release.mat")
    train = load_aflw(roots["aflw"], "train", num_train=6)
    test = load_aflw(roots["aflw"], "test", num_train=6)
    frontal = load_aflw(roots["aflw"], "frontal", num_train=6)
    assert (len(train), len(test)) == (6, 4)
    first = data.order[0] - 1
    assert train.images[0].as_posix().endswith("data/flickr/" + data.names[first])
    np.testing.assert_array_equal(train.landmarks[0], data.landmarks[first] - 0.5)
    np.testing.assert_array_equal(train.boxes[0], data.boxes[first] - 0.5)
    test_rows = data.order[6:] - 1
    assert len(frontal) == data.visible[test_rows].all(axis=1).sum() and frontal.visible.all()
    assert len(test) > len(frontal) > 0


@pytest.mark.parametrize("loader,folder,url", [
    (load_300w, "afw", "ibug.doc.ic.ac.uk/resources/300-W"),
    (load_wflw, "list_98pt_rect_attr_train.txt", "wywu.github.io/projects/LAB/WFLW.html"),
    (load_cofw, "COFW_train_color.mat", "caltech"),
    (load_aflw, "AFLWinfo_release.mat", "AFLW"),
])
def test_missing_root_says_what_and_where(tmp_path, loader, folder, url):
    with pytest.raises(FileNotFoundError) as error:
        loader(tmp_path / "nowhere")
    assert folder in str(error.value) and url in str(error.value) and "nowhere" in str(error.value)


def test_missing_image_folder_and_unknown_split(roots, tmp_path):
    with pytest.raises(FileNotFoundError, match="helen/testset"):
        load_300w(roots["300w"].parent / "WFLW", "common")
    with pytest.raises(ValueError, match="unknown split 'val'"):
        load_300w(roots["300w"], "val")
    with pytest.raises(ValueError, match="unknown split"):
        load_aflw(roots["aflw"], "valid")
