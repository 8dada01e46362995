"""PIP encoding / decoding against hand-worked values and brute-force references."""
from __future__ import annotations

import math

import pytest
import torch

from landmarks.data.layouts import AFLW, custom_layout
from landmarks.codecs.pip import (decode_pip, decode_pip_detailed, map_size, mean_face, merge_neighbour_votes,
                           neighbour_indices, pip_targets)

DEVICES = ["cpu"] + (["cuda"] if torch.cuda.is_available() else [])


def random_inside(b: int, n: int, h: int, w: int, stride: int, seed: int) -> torch.Tensor:
    """Random landmarks in [0, w) x [0, h), a third of the coordinates snapped onto cell borders."""
    g = torch.Generator().manual_seed(seed)
    pts = torch.rand(b, n, 2, generator=g) * torch.tensor([w, h])
    snap = torch.rand(b, n, 2, generator=g) < 1 / 3
    borders = torch.floor(pts / stride) * stride  # the cell's top-left corner, an exact multiple
    return torch.where(snap, borders, pts)


# --------------------------------------------------------------------------- hand-worked targets
def test_targets_by_hand():
    # 64 x 64 image at stride 16 -> a 4 x 4 map.
    # Landmark 0 at (20, 50): u = (1.25, 3.125) -> cell (1, 3), offset (0.25, 0.125), flat 3 * 4 + 1 = 13.
    # Landmark 1 at (40, 8):  u = (2.5, 0.5)    -> cell (2, 0), offset (0.5, 0.5),    flat 2.
    # Neighbours: 0 <-> 1. Seen from cell (1, 3), landmark 1 (u = (2.5, 0.5)) is at (1.5, -2.5);
    # seen from cell (2, 0), landmark 0 (u = (1.25, 3.125)) is at (-0.75, 3.125).
    pts = torch.tensor([[[20.0, 50.0], [40.0, 8.0]]])
    t = pip_targets(pts, 64, 16, neighbours=torch.tensor([[1], [0]]))
    assert t["score"].shape == (1, 2, 4, 4) and t["neighbour_x"].shape == (1, 2, 4, 4)
    assert t["cell"].tolist() == [[[1, 3], [2, 0]]]
    assert t["cell_index"].tolist() == [[13, 2]]
    assert t["score"].sum().item() == 2 and t["score"][0, 0, 3, 1] == 1 and t["score"][0, 1, 0, 2] == 1
    assert t["offset_x"][0, 0, 3, 1] == 0.25 and t["offset_y"][0, 0, 3, 1] == 0.125
    assert t["offset_x"][0, 1, 0, 2] == 0.5 and t["offset_y"][0, 1, 0, 2] == 0.5
    assert t["neighbour_x"][0, 0, 3, 1] == 1.5 and t["neighbour_y"][0, 0, 3, 1] == -2.5
    assert t["neighbour_x"][0, 1, 0, 2] == -0.75 and t["neighbour_y"][0, 1, 0, 2] == 3.125
    # Zero everywhere but the ground-truth cell.
    for key in ("offset_x", "offset_y", "neighbour_x", "neighbour_y"):
        assert torch.equal(t[key] * (1 - t["score"]), torch.zeros_like(t[key])), key
    assert torch.equal(t["offset"], torch.tensor([[[0.25, 0.125], [0.5, 0.5]]]))
    assert torch.equal(t["neighbour_offset"], torch.tensor([[[[1.5, -2.5]], [[-0.75, 3.125]]]]))


def test_map_size_follows_eq4_and_rounds_up():
    assert map_size(256, 32) == (8, 8)
    assert map_size((192, 256), 64) == (3, 4)
    assert map_size(250, 32) == (8, 8)  # a strided trunk rounds up
    with pytest.raises(ValueError):
        map_size(256, 0)


# --------------------------------------------------------------------------- round trips
@pytest.mark.parametrize("device", DEVICES)
@pytest.mark.parametrize("stride", [16, 32, 64, 128])
def test_round_trip_is_exact(stride, device):
    h, w = 256, 256
    pts = random_inside(6, 68, h, w, stride, seed=stride).to(device)
    # Corner cases: the origin, the last representable point and points exactly on inner borders.
    pts[0, :4] = torch.tensor([[0.0, 0.0], [w - 1e-4, h - 1e-4], [stride, h - stride], [w - stride, 0.5]])
    t = pip_targets(pts, (h, w), stride)
    assert t["score"].shape == (6, 68, h // stride, w // stride)
    assert ((t["offset"] >= 0) & (t["offset"] < 1)).all()
    assert torch.equal(decode_pip(t, (h, w), stride), pts)


def test_round_trip_non_square_and_float64():
    pts = random_inside(3, 29, 192, 320, 32, seed=1).double()
    t = pip_targets(pts, (192, 320), 32)
    assert t["score"].shape == (3, 29, 6, 10) and t["offset_x"].dtype == torch.float64
    assert torch.equal(decode_pip(t, (192, 320), 32), pts)


def test_outside_landmarks_use_the_border_cell_and_still_decode():
    # 256 px image, stride 32 -> 8 x 8 cells.
    # (-10, 300): u = (-0.3125, 9.375) -> cell (0, 7), offset (-0.3125, 2.375).
    # (260, -40): u = (8.125, -1.25)   -> cell (7, 0), offset (1.125, -1.25).
    # (256, 256), the image's far corner: u = (8, 8) -> cell (7, 7), offset (1, 1).
    pts = torch.tensor([[[-10.0, 300.0], [260.0, -40.0], [256.0, 256.0], [100.0, 100.0]]])
    t = pip_targets(pts, 256, 32)
    assert t["cell"].tolist() == [[[0, 7], [7, 0], [7, 7], [3, 3]]]
    assert torch.equal(t["offset"][0, :3], torch.tensor([[-0.3125, 2.375], [1.125, -1.25], [1.0, 1.0]]))
    assert torch.equal(decode_pip(t, 256, 32), pts)
    # Random far-away points: right/below the map the offset is rounded once, so float precision.
    g = torch.Generator().manual_seed(5)
    far = torch.rand(4, 19, 2, generator=g) * 1200 - 500
    t = pip_targets(far, 256, 32)
    assert (t["cell"] >= 0).all() and (t["cell"] <= 7).all()
    assert torch.allclose(decode_pip(t, 256, 32), far, rtol=0, atol=1e-4)


@pytest.mark.parametrize("device", DEVICES)
def test_batched_decoding_equals_one_image_at_a_time(device):
    g = torch.Generator().manual_seed(0)
    b, n, nb, h, w = 5, 19, 4, 8, 8
    outputs = {k: torch.randn(b, c, h, w, generator=g).to(device)
               for k, c in [("score", n), ("offset_x", n), ("offset_y", n),
                            ("neighbour_x", n * nb), ("neighbour_y", n * nb)]}
    nbrs = neighbour_indices(torch.rand(n, 2, generator=g), nb)
    whole = decode_pip_detailed(outputs, 256, 32, nbrs)
    for i in range(b):
        alone = decode_pip_detailed({k: v[i:i + 1] for k, v in outputs.items()}, 256, 32, nbrs)
        for field in ("landmarks", "own", "votes", "confidence", "cell"):
            assert torch.equal(getattr(whole, field)[i:i + 1], getattr(alone, field)), field
    # Confidence and cell are the maxima of the score maps.
    flat = outputs["score"].flatten(2)
    assert torch.equal(whole.confidence, flat.amax(-1))
    assert torch.equal(whole.cell[..., 1] * w + whole.cell[..., 0], flat.argmax(-1))


# --------------------------------------------------------------------------- mean face and neighbours
def test_mean_face_by_hand():
    # Two shapes of two points.
    # image_size (h=100, w=200): divide x by 200 and y by 100.
    #   shape 0: (20, 10), (100, 50) -> (0.1, 0.1), (0.5, 0.5)
    #   shape 1: (60, 30), (140, 90) -> (0.3, 0.3), (0.7, 0.9)   -> mean (0.2, 0.2), (0.6, 0.7)
    shapes = torch.tensor([[[20.0, 10.0], [100.0, 50.0]], [[60.0, 30.0], [140.0, 90.0]]])
    assert torch.allclose(mean_face(shapes, image_size=(100, 200)), torch.tensor([[0.2, 0.2], [0.6, 0.7]]))
    # boxes: shape 0 in (0, 0, 200, 100) -> same as above; shape 1 in box (50, 20, 150, 120) (100 x 100):
    #   (60, 30) -> (0.1, 0.1); (140, 90) -> (0.9, 0.7)  -> mean (0.1, 0.1), (0.7, 0.6)
    boxes = torch.tensor([[0.0, 0.0, 200.0, 100.0], [50.0, 20.0, 150.0, 120.0]])
    assert torch.allclose(mean_face(shapes, boxes=boxes), torch.tensor([[0.1, 0.1], [0.7, 0.6]]))
    with pytest.raises(ValueError):
        mean_face(shapes)
    with pytest.raises(ValueError):
        mean_face(shapes, boxes=boxes, image_size=100)


def brute_force_neighbours(face: list[tuple[float, float]], k: int) -> list[list[int]]:
    rows = []
    for i, (xi, yi) in enumerate(face):
        others = [(math.hypot(xj - xi, yj - yi), j) for j, (xj, yj) in enumerate(face) if j != i]
        rows.append([j for _, j in sorted(others)[:k]])  # ties: the smaller index first
    return rows


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_neighbours_match_brute_force_on_random_faces(seed):
    face = torch.rand(68, 2, generator=torch.Generator().manual_seed(seed), dtype=torch.float64)
    expected = brute_force_neighbours(face.tolist(), 10)
    got = neighbour_indices(face, 10)
    assert got.dtype == torch.long and got.shape == (68, 10)
    assert got.tolist() == expected


def test_neighbours_break_ties_by_index():
    # A 4 x 5 integer grid: lots of exactly equal distances.
    grid = torch.tensor([[x, y] for y in range(4) for x in range(5)], dtype=torch.float32)
    assert neighbour_indices(grid, 7).tolist() == brute_force_neighbours(grid.tolist(), 7)
    # Point 6 = (1, 1): at distance 1 are 1 (1, 0), 5 (0, 1), 7 (2, 1), 11 (1, 2), in index order.
    assert neighbour_indices(grid, 4)[6].tolist() == [1, 5, 7, 11]
    with pytest.raises(ValueError):
        neighbour_indices(grid, 20)


# --------------------------------------------------------------------------- neighbour merging
@pytest.mark.parametrize("stride", [16, 32, 64, 128])
def test_merging_perfect_targets_returns_the_landmarks(stride):
    pts = random_inside(4, 68, 256, 256, stride, seed=10 + stride)
    nbrs = neighbour_indices(mean_face(pts, image_size=256), 10)
    t = pip_targets(pts, 256, stride, nbrs)
    out = decode_pip_detailed(t, 256, stride, nbrs, merge=True)
    assert torch.equal(out.own, pts)
    # Each vote is its neighbour's position, to float rounding.
    assert torch.allclose(out.votes, pts[:, nbrs], rtol=0, atol=1e-4)
    assert torch.allclose(out.landmarks, pts, rtol=0, atol=1e-4)
    assert torch.equal(decode_pip(t, 256, stride, nbrs, merge=False), pts)


def hand_made_maps(nb_maps: dict[tuple[int, int], tuple[float, float]], nb: int) -> dict[str, torch.Tensor]:
    """Three landmarks on a 4 x 4 map (stride 10, image 40); ground truth
    0 at (15, 15) = cell (1, 1), 1 at (25, 15) = cell (2, 1), 2 at (15, 25) = cell (1, 2), all with
    offset (0.5, 0.5), except landmark 0's own x offset, set wrong to 0.8 (it decodes to x = 18)."""
    cells = [(1, 1), (2, 1), (1, 2)]  # (column, row)
    maps = {k: torch.zeros(1, 3, 4, 4) for k in ("score", "offset_x", "offset_y")}
    maps["neighbour_x"] = torch.zeros(1, 3 * nb, 4, 4)
    maps["neighbour_y"] = torch.zeros(1, 3 * nb, 4, 4)
    for i, (c, r) in enumerate(cells):
        maps["score"][0, i, r, c] = 0.9
        maps["offset_x"][0, i, r, c] = 0.5
        maps["offset_y"][0, i, r, c] = 0.5
    maps["offset_x"][0, 0, 1, 1] = 0.8
    for (i, k), (dx, dy) in nb_maps.items():
        c, r = cells[i]
        maps["neighbour_x"][0, i * nb + k, r, c] = dx
        maps["neighbour_y"][0, i * nb + k, r, c] = dy
    return maps


def test_merge_pulls_a_wrong_landmark_toward_its_neighbours_votes():
    # Every landmark is the others' neighbour: neighbours = [[1, 2], [0, 2], [0, 1]].
    # Correct neighbour offsets, measured from the voter's cell:
    #   from cell (1, 1): landmark 1 (u = (2.5, 1.5)) -> (1.5, 0.5); landmark 2 (u = (1.5, 2.5)) -> (0.5, 1.5)
    #   from cell (2, 1): landmark 0 -> (-0.5, 0.5); landmark 2 -> (-0.5, 1.5)
    #   from cell (1, 2): landmark 0 -> (0.5, -0.5); landmark 1 -> (1.5, -0.5)
    nbrs = torch.tensor([[1, 2], [0, 2], [0, 1]])
    maps = hand_made_maps({(0, 0): (1.5, 0.5), (0, 1): (0.5, 1.5), (1, 0): (-0.5, 0.5),
                           (1, 1): (-0.5, 1.5), (2, 0): (0.5, -0.5), (2, 1): (1.5, -0.5)}, nb=2)
    out = decode_pip_detailed(maps, 40, 10, nbrs)
    assert out.own.tolist() == [[[18.0, 15.0], [25.0, 15.0], [15.0, 25.0]]]
    # Landmark 0: own 18, votes 15 and 15 -> x = (18 + 15 + 15) / 3 = 16; the others are untouched.
    assert torch.allclose(out.landmarks, torch.tensor([[[16.0, 15.0], [25.0, 15.0], [15.0, 25.0]]]))
    assert torch.allclose(out.confidence, torch.full((1, 3), 0.9))


def test_merge_counts_votes_per_landmark():
    # neighbours = [[1], [0], [0]]: landmark 0 gets votes from 1 and 2 (mean of 3 values),
    # landmark 1 only from 0 (mean of 2), landmark 2 from nobody (own prediction).
    # Votes: 1 for 0 from cell (2, 1) with (-0.5, 0.5) -> (15, 15); 2 for 0 from cell (1, 2) with
    # (0.5, -0.5) -> (15, 15); 0 for 1 from cell (1, 1) with a wrong (2.0, 0.5) -> (30, 15).
    #   landmark 0: ((18 + 15 + 15) / 3, (15 + 15 + 15) / 3) = (16, 15)
    #   landmark 1: ((25 + 30) / 2, (15 + 15) / 2)           = (27.5, 15)
    #   landmark 2: (15, 25)
    nbrs = torch.tensor([[1], [0], [0]])
    maps = hand_made_maps({(0, 0): (2.0, 0.5), (1, 0): (-0.5, 0.5), (2, 0): (0.5, -0.5)}, nb=1)
    merged = decode_pip(maps, 40, 10, nbrs)
    assert torch.allclose(merged, torch.tensor([[[16.0, 15.0], [27.5, 15.0], [15.0, 25.0]]]))
    # The same through merge_neighbour_votes directly.
    own = torch.tensor([[[18.0, 15.0], [25.0, 15.0], [15.0, 25.0]]])
    votes = torch.tensor([[[[30.0, 15.0]], [[15.0, 15.0]], [[15.0, 15.0]]]])
    assert torch.allclose(merge_neighbour_votes(own, votes, nbrs), merged)


# --------------------------------------------------------------------------- other layouts, errors
@pytest.mark.parametrize("num_points, nb", [(5, 4), (19, 10)])
def test_custom_layouts(num_points, nb):
    layout = AFLW if num_points == 19 else custom_layout(5, flip_pairs=[(0, 1), (3, 4)])
    pts = random_inside(3, layout.num_points, 128, 128, 32, seed=num_points)
    nbrs = neighbour_indices(mean_face(pts, image_size=128), nb)
    assert nbrs.shape == (num_points, nb)
    assert not (nbrs == torch.arange(num_points)[:, None]).any()
    t = pip_targets(pts, 128, 32, nbrs)
    assert t["neighbour_x"].shape == (3, num_points * nb, 4, 4)
    assert torch.allclose(decode_pip(t, 128, 32, nbrs), pts, rtol=0, atol=1e-4)


def test_bad_inputs_raise():
    pts = torch.rand(2, 5, 2) * 64
    with pytest.raises(ValueError, match="B, N, 2"):
        pip_targets(pts[0], 64, 16)
    with pytest.raises(ValueError, match="NaN"):
        pip_targets(torch.full((1, 5, 2), float("nan")), 64, 16)
    with pytest.raises(ValueError, match="neighbours"):
        pip_targets(pts, 64, 16, torch.tensor([[7]] * 5))
    t = pip_targets(pts, 64, 16)
    with pytest.raises(ValueError, match="maps are 4 x 4"):
        decode_pip(t, 128, 16)
    with pytest.raises(ValueError, match="neighbour_x"):
        decode_pip(t, 64, 16, torch.zeros(5, 2, dtype=torch.long))
