import pytest
import torch

from landmarks.data.layouts import LAYOUTS, conversion_matrix, convert, custom_layout, get_layout


@pytest.mark.parametrize("name,count", [("300w", 68), ("wflw", 98), ("cofw", 29), ("aflw", 19)])
def test_point_counts_and_aliases(name, count):
    layout = get_layout(name)
    assert layout.num_points == count
    assert get_layout(str(count)) is layout


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_flip_permutation_is_an_involution(layout):
    perm = torch.tensor(layout.flip_permutation)
    assert sorted(perm.tolist()) == list(range(layout.num_points))
    assert torch.equal(perm[perm], torch.arange(layout.num_points))


@pytest.mark.parametrize("layout", LAYOUTS.values(), ids=list(LAYOUTS))
def test_groups_partition_their_points(layout):
    seen = [i for group in layout.groups.values() for i in group]
    assert len(seen) == len(set(seen))


def test_300w_semantics():
    layout = get_layout("300w")
    perm = layout.flip_permutation
    # Outer eye corners swap, the jaw reverses, the nose bridge and the chin stay.
    assert perm[36] == 45 and perm[45] == 36
    assert perm[0] == 16 and perm[8] == 8
    assert all(perm[i] == i for i in (27, 28, 29, 30, 33, 51, 57, 62, 66))
    assert layout.outer_eye_corners == (36, 45)


def test_flipping_a_symmetric_face_gives_the_same_face():
    # A face mirrored about x = 0 and relabelled with the permutation is the same face.
    layout = get_layout("300w")
    torch.manual_seed(0)
    half = torch.randn(68, 2)
    face = half.clone()
    for a, b in layout.flip_pairs:
        face[b] = face[a] * torch.tensor([-1.0, 1.0])
    for i in range(68):
        if layout.flip_permutation[i] == i:
            face[i, 0] = 0.0
    mirrored = face * torch.tensor([-1.0, 1.0])
    assert torch.allclose(mirrored[list(layout.flip_permutation)], face)


def test_pupils_of_300w_are_eye_centroids():
    landmarks = torch.zeros(68, 2)
    landmarks[36:42] = torch.tensor([[0.0, 0.0], [2.0, 0.0], [4.0, 0.0], [6.0, 0.0], [4.0, 2.0], [2.0, 2.0]])
    landmarks[42:48] = landmarks[36:42] + torch.tensor([10.0, 0.0])
    pupils = get_layout("300w").pupil_points(landmarks)
    assert torch.allclose(pupils, torch.tensor([[3.0, 2 / 3], [13.0, 2 / 3]]))


def test_pupils_of_wflw_are_annotated_points():
    landmarks = torch.arange(98 * 2, dtype=torch.float32).reshape(98, 2)
    assert torch.equal(get_layout("wflw").pupil_points(landmarks), landmarks[[96, 97]])


@pytest.mark.parametrize("source", ["300w", "wflw", "cofw"])
def test_conversion_to_19_rows_are_averages(source):
    matrix = conversion_matrix(source, "aflw")
    assert matrix.shape == (19, get_layout(source).num_points)
    assert torch.allclose(matrix.sum(1), torch.ones(19))


def test_68_to_19_picks_and_averages_by_hand():
    landmarks = torch.arange(68 * 2, dtype=torch.float32).reshape(68, 2)
    out = convert(landmarks, "300w", "aflw")
    assert torch.equal(out[0], landmarks[17])  # left brow, left corner
    assert torch.equal(out[18], landmarks[8])  # chin
    assert torch.allclose(out[7], landmarks[36:42].mean(0))  # left eye centre
    assert torch.allclose(out[16], (landmarks[62] + landmarks[66]) / 2)  # mouth centre


def test_conversions_commute_with_flipping():
    """Converting a mirrored face equals mirroring the converted face (the maps respect left/right)."""
    torch.manual_seed(1)
    for source in ("300w", "wflw", "cofw"):
        src, dst = get_layout(source), get_layout("aflw")
        face = torch.randn(3, src.num_points, 2)
        mirror = torch.tensor([-1.0, 1.0])
        flipped_first = convert((face * mirror)[:, list(src.flip_permutation)], src, dst)
        converted_first = (convert(face, src, dst) * mirror)[:, list(dst.flip_permutation)]
        assert torch.allclose(flipped_first, converted_first, atol=1e-6), source


def test_98_to_68_is_a_selection_and_respects_flipping():
    torch.manual_seed(2)
    face = torch.randn(98, 2)
    mirror = torch.tensor([-1.0, 1.0])
    w, w300 = get_layout("wflw"), get_layout("300w")
    flipped_first = convert((face * mirror)[list(w.flip_permutation)], w, w300)
    converted_first = (convert(face, w, w300) * mirror)[list(w300.flip_permutation)]
    assert torch.allclose(flipped_first, converted_first)
    assert torch.equal(convert(face, w, w300)[36], face[60])


def test_unknown_conversion_and_bad_input_raise():
    with pytest.raises(ValueError, match="no conversion"):
        conversion_matrix("aflw", "300w")
    with pytest.raises(ValueError, match=r"expected \(\.\.\., 68, 2\)"):
        convert(torch.zeros(67, 2), "300w", "aflw")
    bad = torch.zeros(68, 2)
    bad[3, 1] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        convert(bad, "300w", "aflw")
    with pytest.raises(KeyError, match="unknown layout"):
        get_layout("menpo")


def test_custom_layout_any_size():
    five = custom_layout(5, flip_pairs=[(0, 1), (3, 4)], outer_eye_corners=(0, 1))
    assert five.flip_permutation == (1, 0, 2, 4, 3)
    with pytest.raises(ValueError, match="outside"):
        custom_layout(5, flip_pairs=[(0, 5)])
