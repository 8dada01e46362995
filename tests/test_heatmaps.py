"""Gaussian heatmap targets and the quarter-pixel arg-max decoder, against hand-worked values."""
from __future__ import annotations

import math

import pytest
import torch

from landmarks.codecs.heatmaps import decode_heatmap, default_sigma, gaussian_heatmaps


def test_default_sigma_follows_the_paper_radii():
    # Radii 4, 2, 1 at strides 1, 2, 4 (PIPNet draft, Sect. 4.3); held at 1 beyond.
    assert [default_sigma(s) for s in (1, 2, 4, 8, 32)] == [4.0, 2.0, 1.0, 1.0, 1.0]


def test_gaussian_values_by_hand():
    # Stride 4, 32 px image -> 8 x 8 map, sigma 1 map pixel.
    # Landmark (10, 6): u = (2.5, 1.5) = the centre of map pixel row 1, column 2 -> value 1 there;
    # one pixel right: exp(-1 / 2); one right and one down: exp(-2 / 2).
    # Landmark (8, 8): u = (2, 2), a map-pixel corner; pixel (row 1, col 1) is at distance
    # (0.5, 0.5) -> exp(-0.5 / 2); pixel (row 2, col 3) at (1.5, 0.5) -> exp(-2.5 / 2).
    hm = gaussian_heatmaps(torch.tensor([[[10.0, 6.0], [8.0, 8.0]]]), 32, 4)
    assert hm.shape == (1, 2, 8, 8)
    assert hm[0, 0, 1, 2] == 1.0 and hm[0, 0].max() == 1.0
    assert math.isclose(hm[0, 0, 1, 3].item(), math.exp(-0.5), rel_tol=1e-6)
    assert math.isclose(hm[0, 0, 2, 3].item(), math.exp(-1.0), rel_tol=1e-6)
    assert math.isclose(hm[0, 1, 1, 1].item(), math.exp(-0.25), rel_tol=1e-6)
    assert math.isclose(hm[0, 1, 2, 3].item(), math.exp(-1.25), rel_tol=1e-6)
    # A wider sigma, given explicitly: sigma 2 -> one pixel right is exp(-1 / 8).
    wide = gaussian_heatmaps(torch.tensor([[[10.0, 6.0]]]), 32, 4, sigma=2.0)
    assert math.isclose(wide[0, 0, 1, 3].item(), math.exp(-1 / 8), rel_tol=1e-6)


@pytest.mark.parametrize("stride", [1, 2, 4, 8])
def test_gaussian_on_a_map_pixel_centre_decodes_exactly(stride):
    size = 16 * stride  # a 16 x 16 map
    g = torch.Generator().manual_seed(stride)
    cells = torch.randint(0, 16, (3, 10, 2), generator=g).float()  # borders included
    pts = (cells + 0.5) * stride
    hm = gaussian_heatmaps(pts, size, stride)
    assert hm.shape == (3, 10, 16, 16)
    assert torch.equal(decode_heatmap(hm, stride), pts)
    assert torch.equal(decode_heatmap(hm, stride, shift=0.0), pts)


def five_by_five(peak: tuple[int, int], values: dict[tuple[int, int], float]) -> torch.Tensor:
    m = torch.zeros(5, 5)
    for (r, c), v in values.items():
        m[r, c] = v
    m[peak] = 1.0
    return m


def test_quarter_pixel_rule_by_hand():
    s = 4
    maps = torch.stack([
        # Peak at row 2, col 2. x: right 0.5 > left 0.2 -> +0.25; y: up 0.3 > down 0.1 -> -0.25.
        # x = (2 + 0.5 + 0.25) * 4 = 11, y = (2 + 0.5 - 0.25) * 4 = 9.
        five_by_five((2, 2), {(2, 3): 0.5, (2, 1): 0.2, (1, 2): 0.3, (3, 2): 0.1}),
        # Peak in the top-right corner (row 0, col 4): no neighbour pair on either axis, no shift.
        # x = 4.5 * 4 = 18, y = 0.5 * 4 = 2.
        five_by_five((0, 4), {(0, 3): 0.9, (1, 4): 0.9}),
        # Peak at row 3, col 1: left = right = 0.4 -> no x shift; down 0.6 > up 0.2 -> +0.25.
        # x = 1.5 * 4 = 6, y = (3.5 + 0.25) * 4 = 15.
        five_by_five((3, 1), {(3, 0): 0.4, (3, 2): 0.4, (2, 1): 0.2, (4, 1): 0.6}),
        # Peak on the left edge (row 2, col 0): no x shift even though col 1 is high; y: up 0.7 > 0 -> -0.25.
        # x = 0.5 * 4 = 2, y = (2.5 - 0.25) * 4 = 9.
        five_by_five((2, 0), {(2, 1): 0.8, (1, 0): 0.7}),
    ])[None]  # (1, 4, 5, 5)
    expected = torch.tensor([[[11.0, 9.0], [18.0, 2.0], [6.0, 15.0], [2.0, 9.0]]])
    coords, conf = decode_heatmap(maps, s, return_confidence=True)
    assert torch.equal(coords, expected)
    assert torch.equal(conf, torch.ones(1, 4))
    # Without the shift: the arg-max centres.
    plain = torch.tensor([[[10.0, 10.0], [18.0, 2.0], [6.0, 14.0], [2.0, 10.0]]])
    assert torch.equal(decode_heatmap(maps, s, shift=0.0), plain)


def test_ties_take_the_first_maximum_in_row_major_order():
    m = torch.zeros(1, 1, 5, 5)
    m[0, 0, 3, 1] = m[0, 0, 1, 3] = 1.0  # (row 1, col 3) comes first
    assert decode_heatmap(m, 2, shift=0.0).tolist() == [[[7.0, 3.0]]]


def test_batched_decoding_equals_one_image_at_a_time():
    hm = torch.rand(4, 7, 9, 11, generator=torch.Generator().manual_seed(0))
    whole = decode_heatmap(hm, 8)
    for i in range(4):
        assert torch.equal(whole[i:i + 1], decode_heatmap(hm[i:i + 1], 8))


def test_quantisation_error_and_the_quarter_shift():
    # 2000 random sub-pixel positions on a 16 x 16 map (stride 4), kept two map pixels off the border.
    stride = 4
    g = torch.Generator().manual_seed(0)
    pts = (2 + torch.rand(1, 2000, 2, generator=g, dtype=torch.float64) * 12) * stride
    hm = gaussian_heatmaps(pts, 16 * stride, stride)
    err_plain = (decode_heatmap(hm, stride, shift=0.0) - pts).abs() / stride  # map pixels, per axis
    err_shift = (decode_heatmap(hm, stride) - pts).abs() / stride
    # The arg-max is the nearest map-pixel centre: at most half a map pixel per axis ...
    assert err_plain.max() <= 0.5 + 1e-9
    # ... and the quarter shift, which always moves toward the true position, at most a quarter.
    assert err_shift.max() <= 0.25 + 1e-9
    # Mean per-axis error for a uniform sub-pixel position: 1/4 map pixel plain, 1/8 with the shift.
    assert abs(err_plain.mean().item() - 0.25) < 0.01
    assert abs(err_shift.mean().item() - 0.125) < 0.01
    assert err_shift.mean() < 0.6 * err_plain.mean()


def test_bad_inputs_raise():
    with pytest.raises(ValueError):
        gaussian_heatmaps(torch.zeros(1, 2, 2), 32, 4, sigma=0.0)
    with pytest.raises(ValueError):
        decode_heatmap(torch.zeros(2, 5, 5), 4)
