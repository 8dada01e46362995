"""Property tests: annotation files round trip, a crop and its inverse cancel, the coordinate
conventions convert back and forth (the CSV round trip is in test_folders.py)."""
import json
from types import SimpleNamespace

import cv2
import numpy as np
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays

from landmarks.data.coords import (apply_affine, from_one_based, from_pixel_index, to_one_based,
                                   to_pixel_index)
from landmarks.data.datasets import LandmarkDataset, crop_box, crop_matrix
from landmarks.data.folders import load_folder
from landmarks.data.formats import WFLWRecord, read_pts, read_wflw_list, write_pts, write_wflw_list

#: Any finite coordinate of a sane size, subnormals and -0.0 included.
coordinate = st.floats(-1e4, 1e4, allow_nan=False, allow_infinity=False)


def point_arrays(min_size: int = 1, max_size: int = 200, elements=coordinate):
    return st.integers(min_size, max_size).flatmap(lambda n: arrays(np.float64, (n, 2), elements=elements))


def same_bits(a: np.ndarray, b: np.ndarray) -> bool:
    """Equal values, to the last bit (so -0.0 and 0.0 differ)."""
    return a.shape == b.shape and a.dtype == b.dtype and a.tobytes() == b.tobytes()


# --------------------------------------------------------------------------- annotation files
@settings(max_examples=50, deadline=None)
@given(point_arrays(), st.sampled_from(["\n", "\r\n", "\r"]), st.sampled_from([" ", "\t"]))
def test_pts_files_round_trip_exactly(tmp_path_factory, points, newline, sep):
    path = tmp_path_factory.mktemp("pts") / "face.pts"
    write_pts(path, points, newline=newline, sep=sep)
    assert same_bits(read_pts(path, num_points=len(points)), points)


wflw_records = st.builds(
    WFLWRecord,
    landmarks=arrays(np.float64, (98, 2), elements=coordinate),
    box=arrays(np.float64, (4,), elements=coordinate),
    attributes=arrays(np.bool_, (6,)),
    image=st.text("abcXYZ019_-./", min_size=1, max_size=30),
)


@settings(max_examples=50, deadline=None)
@given(st.lists(wflw_records, min_size=1, max_size=4), st.sampled_from(["\n", "\r\n"]))
def test_wflw_lists_round_trip_exactly(tmp_path_factory, records, newline):
    path = tmp_path_factory.mktemp("wflw") / "list.txt"
    write_wflw_list(path, records, newline=newline)
    read = read_wflw_list(path)
    assert len(read) == len(records)
    for got, wrote in zip(read, records):
        assert same_bits(got.landmarks, wrote.landmarks) and same_bits(got.box, wrote.box)
        assert same_bits(got.attributes, wrote.attributes) and got.image == wrote.image


@settings(max_examples=50, deadline=None)
@given(point_arrays(0, 12, st.floats(0, 500, allow_nan=False)), st.booleans())
def test_json_points_and_boxes_are_read_as_pixel_indices(tmp_path_factory, points, with_box):
    folder = tmp_path_factory.mktemp("json")
    cv2.imwrite(str(folder / "a.png"), np.zeros((512, 512, 3), np.uint8))  # holds every point (checked)
    points = np.concatenate([points, [[1.0, 1.0], [400.0, 300.0]]])  # never a degenerate face (checked)
    box = np.array([points[:, 0].min() - 1, points[:, 1].min() - 2, points[:, 0].max() + 3, points[:, 1].max() + 4])
    face = {"image": "a.png", "landmarks": points.tolist(), **({"box": box.tolist()} if with_box else {})}
    (folder / "faces.json").write_text(json.dumps([face]))
    faces = load_folder(folder / "faces.json", size=8)
    # pixel index j is the pixel whose centre is at j + 0.5 in the library's convention
    np.testing.assert_array_equal(faces.landmarks[0], points + 0.5)
    if with_box:
        np.testing.assert_array_equal(faces.boxes[0], box + 0.5)


# --------------------------------------------------------------------------- crops
positive_side = st.floats(0.1, 1e3)


@settings(max_examples=50, deadline=None)
@given(st.floats(-1e3, 1e3), st.floats(-1e3, 1e3), positive_side, positive_side, st.floats(0.5, 3.0),
       st.integers(1, 512), point_arrays(1, 20, st.floats(-2e3, 2e3)))
def test_a_crop_and_its_inverse_cancel(x0, y0, width, height, scale, size, points):
    box = np.array([x0, y0, x0 + width, y0 + height])
    crop = crop_box(box, scale)
    magnitude = max(1.0, float(np.abs(box).max()), float(np.abs(points).max()))
    # centred on the box, square, with side scale x the box's longer side
    np.testing.assert_allclose((crop[:2] + crop[2:]) / 2, (box[:2] + box[2:]) / 2, rtol=0, atol=1e-12 * magnitude)
    side = scale * max(box[2] - box[0], box[3] - box[1])
    np.testing.assert_allclose(crop[2:] - crop[:2], [side, side], rtol=1e-12, atol=1e-12 * magnitude)
    # a box's corners (square or not) go to the corners of [0, size]^2
    for corners in (box, crop):
        shorter = min(corners[2] - corners[0], corners[3] - corners[1])
        np.testing.assert_allclose(apply_affine(crop_matrix(corners, size), corners.reshape(2, 2)),
                                   [[0, 0], [size, size]], rtol=0, atol=1e-9 * size * magnitude / shorter)
    matrix = crop_matrix(crop, size)
    # and LandmarkDataset.to_original (which reads only crop_boxes and size) undoes the crop
    dataset = SimpleNamespace(crop_boxes=crop[None], size=size)
    back = LandmarkDataset.to_original(dataset, apply_affine(matrix, points), 0)
    np.testing.assert_allclose(back, points, rtol=1e-6, atol=1e-6 * magnitude)


# --------------------------------------------------------------------------- coordinate conventions
@settings(max_examples=50, deadline=None)
@given(point_arrays(), st.booleans())
def test_one_based_and_pixel_index_conversions_invert(points, as_tensor):
    values = torch.from_numpy(points) if as_tensor else points
    tolerance = 2 * np.finfo(np.float64).eps * np.maximum(1.0, np.abs(points))
    for there, back in ((to_one_based, from_one_based), (from_one_based, to_one_based),
                        (to_pixel_index, from_pixel_index), (from_pixel_index, to_pixel_index)):
        result = back(there(values))
        assert type(result) is type(values)
        assert np.all(np.abs(np.asarray(result) - points) <= tolerance)


@settings(max_examples=50, deadline=None)
@given(arrays(np.int64, st.integers(1, 50), elements=st.integers(-10**6, 10**6)))
def test_pixel_j_is_one_based_j_plus_one(indices):
    # pixel j (0-based index) has its centre at j + 0.5 here and at j + 1 in a 1-based file
    j = indices.astype(np.float64)
    np.testing.assert_array_equal(from_pixel_index(j), j + 0.5)
    np.testing.assert_array_equal(to_one_based(from_pixel_index(j)), j + 1)
    np.testing.assert_array_equal(to_pixel_index(from_one_based(j + 1)), j)
