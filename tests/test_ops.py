"""Softargmax, map spread and rendered probability maps, against hand-computed values."""
from __future__ import annotations

import math

import pytest
import torch

from landmarks.codecs.softargmax import (
    expectation_2d,
    gaussian_heatmaps_normalised,
    laplace_heatmaps,
    mean_absolute_deviation,
    render_heatmaps,
    softargmax_2d,
    spatial_softmax,
    spread,
    variance_2d,
)


@pytest.mark.parametrize("stride", [1, 4])
def test_one_hot_map_decodes_to_the_cell_centre(stride):
    # A one-hot map at row i, column j decodes to ((j + 0.5) S, (i + 0.5) S): the pixel-centre convention.
    maps = torch.full((1, 2, 6, 8), -1e4)
    maps[0, 0, 2, 5] = 1e4
    maps[0, 1, 0, 0] = 1e4
    points = softargmax_2d(maps, stride=stride)
    expected = torch.tensor([[[5.5 * stride, 2.5 * stride], [0.5 * stride, 0.5 * stride]]])
    assert torch.equal(points, expected)
    assert torch.equal(mean_absolute_deviation(spatial_softmax(maps), stride=stride), torch.zeros(1, 2, 2))


def test_uniform_map_and_two_cells_by_hand():
    # Uniform 4 x 6 map: mean at the centre (3, 2); x centres 0.5..5.5 -> MAD 1.5, variance 35/12.
    probs = torch.full((1, 1, 4, 6), 1 / 24)
    assert torch.allclose(expectation_2d(probs), torch.tensor([[[3.0, 2.0]]]))
    assert torch.allclose(mean_absolute_deviation(probs), torch.tensor([[[1.5, 1.0]]]))
    assert torch.allclose(variance_2d(probs), torch.tensor([[[35 / 12, 15 / 12]]]))
    # Mass 0.25 at column 1, 0.75 at column 3 (row 0): x mean 0.25*1.5 + 0.75*3.5 = 3.0,
    # MAD 0.25*1.5 + 0.75*0.5 = 0.75, variance 0.25*2.25 + 0.75*0.25 = 0.75.
    two = torch.zeros(1, 1, 4, 6)
    two[0, 0, 0, 1], two[0, 0, 0, 3] = 0.25, 0.75
    assert torch.allclose(expectation_2d(two), torch.tensor([[[3.0, 0.5]]]))
    assert torch.allclose(mean_absolute_deviation(two)[..., 0], torch.tensor([[0.75]]))
    assert torch.allclose(spread(two, "gaussian")[..., 0], torch.tensor([[math.sqrt(0.75)]]))


def test_temperature_sharpens_and_flattens():
    g = torch.Generator().manual_seed(0)
    logits = torch.randn(2, 3, 10, 10, generator=g)
    cold, warm = spread(spatial_softmax(logits, 0.1)), spread(spatial_softmax(logits, 10.0))
    assert (cold < warm).all()
    # temperature t equals dividing the logits by t
    assert torch.allclose(spatial_softmax(logits, 2.0), spatial_softmax(logits / 2.0))
    assert torch.allclose(spatial_softmax(logits).sum((-2, -1)), torch.ones(2, 3))


def test_rendered_maps_are_normalised_and_centred():
    # On a cell boundary (41) or centre (39.5) the sampled map is symmetric about the landmark.
    points = torch.tensor([[[24.0, 30.0], [41.0, 39.5]]])
    for kind in ("laplace", "gaussian"):
        maps = render_heatmaps(kind, points, 80, 1, 2.0)
        assert maps.shape == (1, 2, 80, 80)
        assert torch.allclose(maps.sum((-2, -1)), torch.ones(1, 2))
        assert torch.allclose(expectation_2d(maps), points, atol=1e-4)  # far from the borders


def test_rendered_laplace_spread_matches_the_scale_and_a_hand_value():
    # A wide Laplace sampled on a fine grid: mean absolute deviation close to b.
    points = torch.tensor([[[40.0, 40.0]]])
    wide = laplace_heatmaps(points, 80, 1, 4.0)
    assert torch.allclose(mean_absolute_deviation(wide), torch.full((1, 1, 2), 4.0), rtol=0.02)
    # Ratio of neighbouring cells by hand: at x = 40.5 and 41.5 (distances 0.5, 1.5), exp(-1 / b).
    m = laplace_heatmaps(points, 80, 1, 2.0)
    assert math.isclose((m[0, 0, 39, 41] / m[0, 0, 39, 40]).item(), math.exp(-0.5), rel_tol=1e-5)
    sigma = gaussian_heatmaps_normalised(points, 80, 1, 4.0)
    assert torch.allclose(spread(sigma, "gaussian"), torch.full((1, 1, 2), 4.0), rtol=0.02)


def test_stride_scales_positions_and_spread():
    # (34, 22) is a cell centre at stride 4 ((8 + 0.5) * 4, (5 + 0.5) * 4) and a cell boundary at stride 1.
    points = torch.tensor([[[34.0, 22.0]]])
    fine = laplace_heatmaps(points, 64, 1, 2.0)
    coarse = laplace_heatmaps(points, 64, 4, 2.0)
    assert coarse.shape == (1, 1, 16, 16)
    assert coarse[0, 0].argmax() == 5 * 16 + 8
    assert torch.allclose(expectation_2d(coarse, 4), points, atol=1e-4)
    assert torch.allclose(expectation_2d(fine), points, atol=1e-4)
    # b = 2 px is two cells at stride 1 and half a cell at stride 4: sampled at cell centres, the
    # fine map's spread is close to b, the coarse one's is not (the density is undersampled).
    assert torch.allclose(mean_absolute_deviation(fine), torch.full((1, 1, 2), 2.0), rtol=0.05)
    assert (mean_absolute_deviation(coarse, stride=4) < 1.8).all()


@pytest.mark.parametrize("kind", ["gaussian", "laplace"])
def test_one_hot_map_has_zero_spread_and_finite_gradients(kind):
    # A 16 x 16 map of -1e4 with one cell at +1e4: softmax is exactly one-hot, so the variance is
    # exactly 0; sqrt'(0) is infinite and, times the saturated softmax's zero derivative, was NaN.
    logits = torch.full((1, 1, 16, 16), -1e4)
    logits[0, 0, 5, 9] = 1e4
    logits.requires_grad_(True)
    sigma = spread(spatial_softmax(logits), kind, stride=4)
    assert torch.equal(sigma.detach(), torch.zeros(1, 1, 2))
    sigma.sum().backward()
    assert torch.isfinite(logits.grad).all()


def test_gaussian_spread_values_and_gradients_on_a_normal_map():
    # Unchanged values: the square root of the variance; gradients: finite differences (float64).
    g = torch.Generator().manual_seed(3)
    logits = torch.randn(2, 3, 6, 5, generator=g, dtype=torch.float64, requires_grad=True)
    probs = spatial_softmax(logits, 0.7)
    assert torch.equal(spread(probs, "gaussian", stride=4), variance_2d(probs, stride=4).sqrt())
    assert torch.autograd.gradcheck(lambda x: spread(spatial_softmax(x, 0.7), "gaussian", stride=4), (logits,))


def test_bad_input_raises():
    with pytest.raises(ValueError, match="temperature"):
        spatial_softmax(torch.zeros(1, 1, 4, 4), 0.0)
    with pytest.raises(ValueError, match="maps"):
        softargmax_2d(torch.zeros(4, 4))
    with pytest.raises(ValueError, match="spread"):
        spread(torch.ones(1, 1, 2, 2) / 4, "cauchy")
    with pytest.raises(ValueError, match="scale"):
        laplace_heatmaps(torch.zeros(1, 1, 2), 8, 1, -1.0)
