"""Any folder of faces (load_folder), partial 300W roots, and crops decoded once (CropCache)."""
import json
import warnings

import cv2
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from landmarks.book.demo_data import fake_image, make_300w_root
from landmarks.data.cache import CropCache
from landmarks.data.coords import to_one_based, to_pixel_index
from landmarks.data.datasets import LandmarkDataset, load_300w
from landmarks.data.folders import folder_layout, load_folder, split_every
from landmarks.data.formats import write_pts
from landmarks.data.transforms import RandomTranslate


def five_points(rng, width=80, height=70):
    """Eye corners 0/1, nose 2, mouth corners 3/4 (image left first), in our coordinates."""
    base = np.array([[25.0, 28.0], [55.0, 28.0], [40.0, 42.0], [29.0, 54.0], [51.0, 54.0]])
    return base + rng.uniform(-3, 3, size=(5, 2))


def write_face(folder, name, points, rng, suffix=".jpg"):
    folder.mkdir(parents=True, exist_ok=True)
    image = fake_image(points, 70, 80, rng)
    assert cv2.imwrite(str(folder / f"{name}{suffix}"), cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    return folder / f"{name}{suffix}"


def test_a_pts_tree_of_five_point_faces_with_a_declared_layout(tmp_path):
    rng = np.random.default_rng(0)
    truth = []
    for k in range(6):
        points = five_points(rng)
        truth.append(points)
        folder = tmp_path / ("a" if k < 3 else "b/c")
        write_face(folder, f"face{k}", points, rng, ".JPG" if k == 4 else ".png")
        write_pts(folder / f"face{k}.pts", to_one_based(points))
    faces = load_folder(tmp_path, 5, flip_pairs=[(0, 1), (3, 4)], eye_corners=(0, 1), size=64)
    assert len(faces) == 6 and faces.layout.num_points == 5
    assert faces.layout.flip_permutation == (1, 0, 2, 4, 3) and faces.layout.default_norm == "inter-ocular"
    # sorted path order; the .pts values (1-based) are back in our convention
    np.testing.assert_allclose(faces.landmarks, np.stack(truth), atol=1e-9)
    # the white dots of the fake images sit under the cropped landmarks
    sample = faces[4]
    image = sample["image"].mean(0)
    for x, y in sample["landmarks"]:
        column, row = int(x), int(y)
        assert image[row - 1:row + 2, column - 1:column + 2].max() > 0.5
    # no eye corners: the NME falls back to the box diagonal
    assert load_folder(tmp_path, 5).layout.default_norm == "box-diagonal"


def test_csv_and_json_read_pixel_indices_by_default(tmp_path):
    rng = np.random.default_rng(1)
    rows, faces = [], []
    for k in range(3):
        points = five_points(rng)
        write_face(tmp_path / "img", f"{k}", points, rng)
        index = to_pixel_index(points)  # what OpenCV, dlib and most tools write
        rows.append([f"img/{k}.jpg", *index.ravel().tolist()])
        faces.append({"image": f"img/{k}.jpg", "landmarks": index.tolist(), "box": [10.0, 12.0, 70.0, 66.0]})
    header = ["image"] + [f"{axis}{i}" for i in range(5) for axis in "xy"]
    (tmp_path / "points.csv").write_text("\n".join(",".join(map(str, r)) for r in [header, *rows]) + "\n")
    (tmp_path / "points.json").write_text(json.dumps({"faces": faces}))
    from_csv = load_folder(tmp_path / "points.csv")
    from_json = load_folder(tmp_path / "points.json", size=32)
    np.testing.assert_allclose(from_csv.landmarks, from_json.landmarks)
    np.testing.assert_allclose(from_csv.landmarks[0] - 0.5, np.asarray(rows[0][1:], float).reshape(5, 2))
    # the JSON's boxes are read (and converted like the points); the CSV has none, so its crop is the landmarks'
    np.testing.assert_allclose(from_json.boxes[0], [10.5, 12.5, 70.5, 66.5])
    assert from_csv.layout.name == "custom-5"
    # the continuous convention keeps the values; a mapping {image: points} reads the same
    (tmp_path / "map.json").write_text(json.dumps({f["image"]: f["landmarks"] for f in faces}))
    as_stored = load_folder(tmp_path / "map.json", convention="continuous")
    np.testing.assert_allclose(as_stored.landmarks, from_csv.landmarks - 0.5)


def test_a_68_point_folder_gets_the_300w_layout_and_a_named_layout_is_checked(tmp_path):
    root = make_300w_root(tmp_path / "300W", counts={"helen/trainset": 3})
    faces = load_folder(root)
    assert faces.layout.name == "300w" and len(faces) == 3
    with pytest.raises(ValueError, match="layout 'wflw' has 98 points but the files hold 68"):
        load_folder(root, "wflw")
    assert folder_layout(19).name == "aflw" and folder_layout(19, 19, flip_pairs=[(0, 1)]).name == "custom-19"


def test_bad_folders_name_the_file(tmp_path):
    rng = np.random.default_rng(2)
    with pytest.raises(FileNotFoundError, match="no .pts files"):
        load_folder(tmp_path)
    write_pts(tmp_path / "lonely.pts", five_points(rng))
    with pytest.raises(FileNotFoundError, match="no image .* beside .*lonely.pts"):
        load_folder(tmp_path)
    write_face(tmp_path, "lonely", five_points(rng), rng)
    write_face(tmp_path, "other", five_points(rng), rng)
    write_pts(tmp_path / "other.pts", rng.uniform(10, 60, (6, 2)))
    with pytest.raises(ValueError, match="other.pts: 6 points, but .*lonely.pts has 5"):
        load_folder(tmp_path)
    (tmp_path / "bad.csv").write_text("image,x0,y0\nlonely.jpg,3,oops\n")
    with pytest.raises(ValueError, match=r"bad.csv, line 2: not a number"):
        load_folder(tmp_path / "bad.csv")
    (tmp_path / "gone.csv").write_text("image,x0,y0\nmissing.jpg,3,4\n")
    with pytest.raises(FileNotFoundError, match=r"gone.csv, line 2: image not found: .*missing.jpg"):
        load_folder(tmp_path / "gone.csv")
    (tmp_path / "broken.json").write_text("{not json")
    with pytest.raises(ValueError, match="broken.json: not a JSON file"):
        load_folder(tmp_path / "broken.json")


@settings(max_examples=25, deadline=None)
@given(st.lists(st.tuples(st.floats(-50, 500, allow_nan=False), st.floats(-50, 500, allow_nan=False)),
                min_size=1, max_size=12))
def test_csv_values_round_trip_through_the_pixel_index_convention(tmp_path_factory, points):
    folder = tmp_path_factory.mktemp("csv")
    cv2.imwrite(str(folder / "a.png"), np.zeros((8, 8, 3), np.uint8))
    header = ["image"] + [f"c{k}" for k in range(2 * len(points))]
    values = [repr(v) for p in points for v in p]
    (folder / "p.csv").write_text(",".join(header) + "\n" + ",".join(["a.png", *values]) + "\n")
    faces = load_folder(folder / "p.csv", size=8, check=False)  # the values only; random points are no face
    np.testing.assert_allclose(to_pixel_index(faces.landmarks[0]), np.asarray(points), rtol=1e-15, atol=1e-13)


def test_split_every_holds_out_every_tenth_face():
    kept, held = split_every(25)
    assert held == [9, 19] and len(kept) == 23 and not set(kept) & set(held)


def test_load_300w_loads_the_folders_present_and_names_the_missing(tmp_path):
    root = make_300w_root(tmp_path / "HELEN", counts={"helen/trainset": 4, "helen/testset": 2})
    with pytest.warns(UserWarning, match=r"300w train: loading helen/trainset; not found under .*: afw, lfpw/trainset"):
        train = load_300w(root, "train", size=32)
    assert len(train) == 4
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert len(load_300w(make_300w_root(tmp_path / "full"), "challenge", size=32)) == 1
    with pytest.raises(FileNotFoundError, match="folder 'ibug'"):
        load_300w(root, "challenge")


# ------------------------------------------------------------------------------------ the crop cache
@pytest.fixture()
def photos(tmp_path):
    """Three 300 x 400 JPEGs with a face of dots, and their landmarks."""
    rng = np.random.default_rng(3)
    root = make_300w_root(tmp_path / "300W", counts={"afw": 3}, height=300, width=400)
    with pytest.warns(UserWarning, match="not found"):
        faces = load_300w(root, "train", size=48)
    return faces.images, faces.landmarks


def test_a_cached_crop_is_the_decoded_crop_and_a_margin_changes_nothing_without_a_transform(photos):
    images, points = photos
    plain = LandmarkDataset(images, points, "300w", size=48)
    cached = LandmarkDataset(images, points, "300w", size=48, margin=0.25, cache="memory")
    for k in range(3):
        for sample in (cached[k], cached[k]):  # the first decodes, the second reads the cache
            reference = plain[k]
            assert sample["image"].shape == (3, 48, 48)
            # the same samples of the image, up to OpenCV's fixed-point sampling positions (1/32 px)
            difference = (sample["image"] - reference["image"]).abs()
            assert difference.max() <= 8 / 255 and difference.mean() < 0.05 / 255
            torch.testing.assert_close(sample["landmarks"], reference["landmarks"], atol=1e-4, rtol=0)
            torch.testing.assert_close(sample["box"], reference["box"], atol=1e-4, rtol=0)
    assert (cached.cache.misses, cached.cache.hits) == (3, 3)
    assert cached.crop_pixels(0).shape == (72, 72, 3)  # 48 + 2 x 12 margin pixels


def test_a_margin_lets_a_translation_bring_in_real_pixels(photos):
    images, points = photos
    shift = RandomTranslate((10.0, 0.0), p=1.0)
    shift.uniform = lambda lo, hi: hi  # always +10 px to the right
    wide = LandmarkDataset(images, points, "300w", size=48, margin=0.25, transform=shift)
    narrow = LandmarkDataset(images, points, "300w", size=48, transform=shift)
    plain = LandmarkDataset(images, points, "300w", size=48, margin=0.25)[0]
    moved = wide[0]
    # the shifted crop's left strip comes from beyond the crop box, not black
    assert narrow[0]["image"][:, :, :10].abs().max() == 0
    assert moved["image"][:, :, :10].abs().max() > 0
    torch.testing.assert_close(moved["landmarks"], plain["landmarks"] + torch.tensor([10.0, 0.0]), atol=1e-4, rtol=0)
    torch.testing.assert_close(moved["image"][:, :, 12:], plain["image"][:, :, 2:38], atol=2 / 255, rtol=0)


def test_a_disk_cache_is_shared_and_an_edited_file_is_read_again(photos, tmp_path):
    images, points = photos
    folder = tmp_path / "cache"
    first = LandmarkDataset(images, points, "300w", size=48, cache=folder)
    [first[k] for k in range(3)]
    assert len(list(folder.glob("*.npy"))) == 3 and first.cache.misses == 3
    again = LandmarkDataset(images, points, "300w", size=48, cache=CropCache(folder))
    torch.testing.assert_close(again[1]["image"], first[1]["image"])
    assert (again.cache.hits, again.cache.misses) == (1, 0)
    before = again[1]["image"]
    cv2.imwrite(str(images[1]), np.full((300, 400, 3), 255, np.uint8))
    after = again[1]["image"]  # a new key (size and time of the file): decoded again, white
    assert again.cache.misses == 1 and after.mean() > 3 * before.mean()
    (folder / "cut.npy").write_bytes(b"\x93NUMPY")  # a crop cut short by a killed writer is made again
    assert CropCache(folder).get("cut", lambda: np.ones((2, 2, 3), np.uint8)).shape == (2, 2, 3)


def test_the_readme_example_trains_a_layout_of_your_own(tmp_path, monkeypatch):
    """The README's Python example, run as written on a tiny CSV with a tiny profile."""
    import re
    from dataclasses import replace
    from pathlib import Path

    import landmarks.profile as profiles
    from landmarks.detector import Detector

    readme = (Path(__file__).parents[1] / "README.md").read_text()
    example = re.search(r"layout of your own.*?```python\n(.*?)```", readme, re.S).group(1)
    rng = np.random.default_rng(4)
    rows = ["image," + ",".join(f"x{k},y{k}" for k in range(5))]
    for k in range(8):
        points = five_points(rng)
        write_face(tmp_path, f"f{k}", points, rng)
        rows.append(f"f{k}.jpg," + ",".join(str(v) for v in to_pixel_index(points).ravel()))
    (tmp_path / "points.csv").write_text("\n".join(rows) + "\n")
    tiny = replace(profiles.PROFILES["quick"], real_data=dict(image_size=32, width=0.25, epochs=1, batch_size=4,
                                                              decay_epochs=(), augment=True, crop_margin=0.25))
    monkeypatch.setattr(profiles, "current", lambda **overrides: replace(tiny, **overrides))
    monkeypatch.chdir(tmp_path)
    exec(compile(example, "README.md", "exec"), {"__name__": "readme"})
    detector = Detector.load(tmp_path / "five.pt")
    assert detector.layout.name == "five" and detector.layout.flip_pairs == ((0, 1), (3, 4))
    assert detector.predict(torch.rand(2, 3, 32, 32)).shape == (2, 5, 2)


def test_training_landmarks_reads_no_image_and_sees_through_subsets(photos):
    from torch.utils.data import Subset

    from landmarks.detector import training_landmarks

    images, points = photos
    shifted = RandomTranslate((10.0, 0.0), p=1.0)
    faces = LandmarkDataset(images, points, "300w", size=48, transform=shifted)
    faces.load_image = None  # reading an image would fail
    unaugmented = LandmarkDataset(images, points, "300w", size=48)
    expected = torch.stack([unaugmented[k]["landmarks"] for k in range(3)])
    torch.testing.assert_close(training_landmarks(faces), expected, atol=1e-4, rtol=0)
    nested = Subset(Subset(faces, [2, 0, 1]), [0, 2])
    torch.testing.assert_close(training_landmarks(nested), expected[[2, 1]], atol=1e-4, rtol=0)
