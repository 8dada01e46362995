"""Readers and writers of landmarks.data.formats: real-world quirks, round trips, malformed input."""
import h5py
import numpy as np
import pytest

from landmarks.book.demo_data import write_aflw_mat, write_cofw_mat
from landmarks.data.formats import (WFLW_ATTRIBUTES, WFLWRecord, read_aflw_mat, read_cofw_mat, read_pts,
                               read_wflw_list, write_pts, write_wflw_list)

RNG = np.random.default_rng(7)


def write_bytes(path, text):
    path.write_bytes(text.encode("utf-8"))
    return path


# --------------------------------------------------------------------------- .pts
def test_pts_with_crlf_tabs_trailing_blanks_and_bom(tmp_path):
    text = ("\ufeffversion: 1\r\nn_points:  3 \r\n{\r\n446.000\t91.000  \r\n 449.459 119.344\r\n"
            "\t450.957\t150.02\r\n}\r\n\r\n")
    points = read_pts(write_bytes(tmp_path / "a.pts", text), num_points=3)
    assert points.dtype == np.float64 and points.shape == (3, 2)
    np.testing.assert_array_equal(points, [[446.0, 91.0], [449.459, 119.344], [450.957, 150.02]])


def test_pts_with_bare_carriage_returns(tmp_path):
    points = read_pts(write_bytes(tmp_path / "a.pts", "version: 1\rn_points: 1\r{\r1 2\r}\r"))
    np.testing.assert_array_equal(points, [[1.0, 2.0]])


@pytest.mark.parametrize("newline,sep", [("\n", " "), ("\r\n", "\t")])
def test_pts_round_trip_is_exact(tmp_path, newline, sep):
    points = RNG.uniform(-5, 900, size=(68, 2))
    write_pts(tmp_path / "b.pts", points, newline=newline, sep=sep)
    np.testing.assert_array_equal(read_pts(tmp_path / "b.pts", 68), points)
    assert (newline == "\r\n") == (b"\r\n" in (tmp_path / "b.pts").read_bytes())


def test_write_pts_refuses_nan(tmp_path):
    with pytest.raises(ValueError, match="finite"):
        write_pts(tmp_path / "c.pts", np.array([[1.0, np.nan]]))


HEAD = "version: 1\nn_points: 2\n{\n"
MALFORMED_PTS = {
    "too few points": (HEAD + "1 2\n}\n", 5, "n_points is 2"),
    "too many points": (HEAD + "1 2\n3 4\n5 6\n}\n", 7, "3 point lines"),
    "missing closing brace": (HEAD + "1 2\n3 4\n", 6, "closing '}'"),
    "missing opening brace": ("version: 1\nn_points: 2\n1 2\n3 4\n}\n", 3, "'key: value'"),
    "missing header": ("{\n1 2\n3 4\n}\n", 1, "missing header"),
    "empty file": ("", 1, "end of file"),
    "non-numeric": (HEAD + "1 2\n3 four\n}\n", 5, "'four'"),
    "nan": (HEAD + "nan 2\n3 4\n}\n", 4, "NaN"),
    "inf": (HEAD + "1 2\n3 -inf\n}\n", 5, "infinite"),
    "three columns": (HEAD + "1 2 3\n3 4\n}\n", 4, "2 columns"),
    "one column": (HEAD + "1 2\n3\n}\n", 5, "2 columns"),
    "n_points not a number": ("version: 1\nn_points: two\n{\n1 2\n}\n", 2, "not an integer"),
    "text after the block": (HEAD + "1 2\n3 4\n}\nextra\n", 7, "after the closing"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_PTS))
def test_malformed_pts_names_file_and_line(tmp_path, case):
    text, line, fragment = MALFORMED_PTS[case]
    path = write_bytes(tmp_path / "bad.pts", text.replace("\n", "\r\n"))
    with pytest.raises(ValueError) as error:
        read_pts(path)
    message = str(error.value)
    assert str(path) in message and f"line {line}:" in message and fragment in message, message


def test_pts_expected_count(tmp_path):
    write_pts(tmp_path / "d.pts", np.zeros((5, 2)))
    with pytest.raises(ValueError, match=r"line 2: n_points is 5, expected 68"):
        read_pts(tmp_path / "d.pts", num_points=68)


# --------------------------------------------------------------------------- WFLW
def wflw_record(k=0):
    flags = np.zeros(6, bool)
    flags[k % 6] = True
    return WFLWRecord(RNG.uniform(0, 500, (98, 2)), np.array([10.5, 20.25, 300.0, 400.0]), flags,
                      f"{k}--Event/{k}_Event_name_{k}.jpg")


def test_wflw_round_trip(tmp_path):
    records = [wflw_record(k) for k in range(7)]
    write_wflw_list(tmp_path / "list.txt", records, newline="\r\n")
    back = read_wflw_list(tmp_path / "list.txt")
    assert len(back) == 7
    for a, b in zip(records, back):
        np.testing.assert_array_equal(a.landmarks, b.landmarks)
        np.testing.assert_array_equal(a.box, b.box)
        np.testing.assert_array_equal(a.attributes, b.attributes)
        assert a.image == b.image and b.landmarks.shape == (98, 2)
    assert back[2].has("illumination") and not back[2].has("blur")


def test_wflw_tabs_trailing_blanks_and_blank_lines(tmp_path):
    values = ["%.6f" % v for v in range(196)] + ["1", "2", "3", "4"] + ["0", "1", "0", "0", "1", "0"]
    line = "\t".join(values) + "  a/b.jpg \t"
    back = read_wflw_list(write_bytes(tmp_path / "l.txt", "\r\n" + line + "\r\n\r\n"))
    assert len(back) == 1 and back[0].image == "a/b.jpg"
    assert back[0].landmarks[1, 0] == 2.0 and back[0].landmarks[97, 1] == 195.0
    assert [a for a in WFLW_ATTRIBUTES if back[0].has(a)] == ["expression", "occlusion"]


def wflw_line(**changes):
    fields = ["1.5"] * 200 + ["0"] * 6 + ["x/y.jpg"]
    for index, value in changes.items():
        fields[int(index[1:])] = value
    return " ".join(fields)


MALFORMED_WFLW = {
    "too few columns": (wflw_line()[: -len(" x/y.jpg")], "expected 207 columns, got 206"),
    "too many columns": (wflw_line() + " extra", "got 208"),
    "non-numeric": (wflw_line(c17="abc"), "'abc'"),
    "nan": (wflw_line(c3="nan"), "NaN"),
    "attribute not binary": (wflw_line(c203="2"), "0 or 1"),
}


@pytest.mark.parametrize("case", sorted(MALFORMED_WFLW))
def test_malformed_wflw_names_file_and_line(tmp_path, case):
    bad, fragment = MALFORMED_WFLW[case]
    path = write_bytes(tmp_path / "list.txt", wflw_line() + "\n" + bad + "\n")
    with pytest.raises(ValueError) as error:
        read_wflw_list(path)
    message = str(error.value)
    assert str(path) in message and "line 2:" in message and fragment in message, message


# --------------------------------------------------------------------------- COFW
def cofw_content(count=3):
    images = [RNG.integers(0, 256, (20 + k, 30 + 2 * k, 3), dtype=np.uint8) for k in range(count)]
    images[1] = RNG.integers(0, 256, (25, 17), dtype=np.uint8)  # grayscale, as some COFW images
    points = RNG.uniform(1, 20, (count, 29, 2))
    occluded = RNG.random((count, 29)) < 0.3
    boxes = np.column_stack([RNG.uniform(1, 5, (count, 2)), RNG.uniform(10, 15, (count, 2))])
    return images, points, occluded, boxes


@pytest.mark.parametrize("split", ["train", "test"])
@pytest.mark.parametrize("version", ["7.3", "5"])
def test_cofw_round_trip(tmp_path, split, version):
    images, points, occluded, boxes = cofw_content()
    path = tmp_path / f"COFW_{split}_color.mat"
    write_cofw_mat(path, images, points, occluded, boxes, split=split, version=version)
    data = read_cofw_mat(path)
    assert data.split == split and len(data.images) == 3
    for written, read in zip(images, data.images):
        assert read.dtype == np.uint8 and read.shape == written.shape[:2] + (3,)
        np.testing.assert_array_equal(read, written if written.ndim == 3 else np.dstack([written] * 3))
    np.testing.assert_array_equal(data.landmarks, points)
    np.testing.assert_array_equal(data.occluded, occluded)
    np.testing.assert_array_equal(data.boxes, np.column_stack([boxes[:, :2], boxes[:, :2] + boxes[:, 2:]]))


def test_cofw_v73_file_has_matlab_layout(tmp_path):
    """What MATLAB writes: a user-block header, a (1, N) reference cell, transposed arrays."""
    images, points, occluded, boxes = cofw_content()
    path = tmp_path / "COFW_train_color.mat"
    write_cofw_mat(path, images, points, occluded, boxes)
    assert path.read_bytes()[:10] == b"MATLAB 7.3"
    with h5py.File(path, "r") as mat:
        assert mat["IsTr"].shape == (1, 3) and mat["IsTr"].dtype == h5py.ref_dtype
        assert mat[mat["IsTr"][0, 0]].shape == (3, 30, 20)  # a 20 x 30 x 3 image, column-major
        assert mat[mat["IsTr"][0, 1]].shape == (17, 25)
        assert mat["phisTr"].shape == (87, 3) and mat["bboxesTr"].shape == (4, 3)


def test_cofw_pixel_order_survives_the_transposition(tmp_path):
    image = np.zeros((5, 8, 3), np.uint8)
    image[1, 6] = (10, 20, 30)  # row 1, column 6, RGB
    write_cofw_mat(tmp_path / "c.mat", [image], np.ones((1, 29, 2)), np.zeros((1, 29)), np.ones((1, 4)))
    read = read_cofw_mat(tmp_path / "c.mat").images[0]
    assert read.shape == (5, 8, 3) and tuple(read[1, 6]) == (10, 20, 30)


def test_cofw_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="missing.mat"):
        read_cofw_mat(tmp_path / "missing.mat")
    with h5py.File(tmp_path / "other.mat", "w") as mat:
        mat["X"] = np.zeros(3)
    with pytest.raises(ValueError, match="no COFW variables"):
        read_cofw_mat(tmp_path / "other.mat")
    write_bytes(tmp_path / "text.mat", "not a mat file")
    with pytest.raises(ValueError, match="text.mat"):
        read_cofw_mat(tmp_path / "text.mat")


# --------------------------------------------------------------------------- AFLW
def aflw_content(count=6):
    points = RNG.uniform(1, 200, (count, 19, 2))
    visible = RNG.random((count, 19)) < 0.8
    corner = RNG.uniform(1, 50, (count, 2))
    boxes = np.column_stack([corner, corner + RNG.uniform(30, 90, (count, 2))])
    names = [f"{k % 3}/image{k:05d}.jpg" for k in range(count)]
    return points, visible, boxes, names, RNG.permutation(count) + 1


def test_aflw_round_trip(tmp_path):
    points, visible, boxes, names, order = aflw_content()
    write_aflw_mat(tmp_path / "AFLWinfo_release.mat", points, visible, boxes, names, order)
    data = read_aflw_mat(tmp_path / "AFLWinfo_release.mat")
    np.testing.assert_array_equal(data.landmarks, points)
    np.testing.assert_array_equal(data.visible, visible)
    np.testing.assert_array_equal(data.boxes, boxes)
    np.testing.assert_array_equal(data.order, order)
    assert data.names == names


def test_aflw_stored_layout(tmp_path):
    """bbox is stored xmin, xmax, ymin, ymax; data as 19 x then 19 y; ra as a row."""
    from scipy.io import loadmat

    points, visible, boxes, names, order = aflw_content(2)
    write_aflw_mat(tmp_path / "a.mat", points, visible, boxes, names, order)
    mat = loadmat(tmp_path / "a.mat")
    np.testing.assert_array_equal(mat["bbox"][0], boxes[0, [0, 2, 1, 3]])
    np.testing.assert_array_equal(mat["data"][1, [0, 19]], points[1, 0])
    assert mat["ra"].shape == (1, 2) and mat["nameList"].shape == (2, 1)


def test_aflw_errors(tmp_path):
    from scipy.io import savemat

    points, visible, boxes, names, order = aflw_content(3)
    write_aflw_mat(tmp_path / "a.mat", points, visible, boxes, names, np.array([1, 1, 2]))
    with pytest.raises(ValueError, match="ra is not a 1-based permutation"):
        read_aflw_mat(tmp_path / "a.mat")
    savemat(tmp_path / "b.mat", {"bbox": np.zeros((3, 4))})
    with pytest.raises(ValueError, match=r"b.mat: missing variables \['data'"):
        read_aflw_mat(tmp_path / "b.mat")
    with pytest.raises(FileNotFoundError):
        read_aflw_mat(tmp_path / "none.mat")
