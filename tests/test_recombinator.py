"""The Recombinator generator (paper Table 1) and the PatchGAN discriminator: shapes, sizes, wiring."""
from __future__ import annotations

import pytest
import torch
from torch import nn

from landmarks.models.patchgan import GaussianNoise, PatchGAN
from landmarks.models.recombinator import (
    DIVISORS,
    Recombinator,
    parameter_count,
    storage_megabytes,
)


def _expected_parameters(num_points: int, divisor: int) -> int:
    # Hand count from Table 1: 4 encoder 3x3 convs (3->c, then c->c), 4 decoder 1x1 squeezes
    # (c->c, then 2c->c), 4 decoder 5x5 convs (2c->2c), 1x1 output (2c->N); every conv has a bias.
    c = 64 // divisor
    encoder = (3 * 9 * c + c) + 3 * (c * 9 * c + c)
    squeeze = (c * c + c) + 3 * (2 * c * c + c)
    combine = 4 * (2 * c * 25 * 2 * c + 2 * c)
    return encoder + squeeze + combine + (2 * c * num_points + num_points)


@pytest.mark.parametrize("divisor", DIVISORS)
def test_parameter_count_by_hand(divisor):
    model = Recombinator(68, divisor)
    assert parameter_count(model) == _expected_parameters(68, divisor)
    assert storage_megabytes(model) == pytest.approx(4 * _expected_parameters(68, divisor) / 1e6)


def test_full_width_is_close_to_the_papers_storage():
    # Table 3 of the paper: 7.496 MB at full width, 1.919 MB at half width.
    assert storage_megabytes(Recombinator(68, 1)) == pytest.approx(7.5, rel=0.06)
    assert storage_megabytes(Recombinator(68, 2)) == pytest.approx(1.92, rel=0.07)


def test_shapes_and_uniform_start():
    model = Recombinator(5, divisor=16).eval()
    out = model(torch.rand(2, 3, 80, 80))["heatmaps"]
    assert out.shape == (2, 5, 80, 80)
    assert torch.equal(out, torch.zeros_like(out))  # zero-initialised output layer: uniform maps
    assert model(torch.rand(1, 3, 32, 48))["heatmaps"].shape == (1, 5, 32, 48)


def test_skip_branches_reach_the_output():
    # With every decoder squeeze zeroed, only the 80 x 80 skip branch reaches the output: a change in
    # one input pixel moves the output within the 3x3 + 5x5 receptive field (3 px) and nowhere else.
    torch.manual_seed(0)
    model = Recombinator(3, divisor=16, dropout=0.0).eval()
    nn.init.normal_(model.output.weight)
    with torch.no_grad():
        for p in model.squeeze.parameters():
            p.zero_()
        x = torch.rand(1, 3, 80, 80)
        y = x.clone()
        y[0, :, 40, 40] += 1
        diff = (model(x)["heatmaps"] - model(y)["heatmaps"]).abs().sum((0, 1))
    assert diff[40, 40] > 0
    outside = torch.ones_like(diff, dtype=torch.bool)
    outside[37:44, 37:44] = False
    assert diff[outside].max() == 0


def test_layers_follow_table_1():
    model = Recombinator(68, 1)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert [m.kernel_size[0] for m in convs] == [3] * 4 + [1] * 4 + [5] * 4 + [1]
    assert sum(isinstance(m, nn.LeakyReLU) and m.negative_slope == 0.2 for m in model.modules()) == 12
    assert sum(isinstance(m, nn.Dropout) for m in model.modules()) == 10  # not after the first and last


def test_bad_input_raises():
    with pytest.raises(ValueError, match="multiples of 16"):
        Recombinator(5, 16)(torch.rand(1, 3, 40, 40))
    with pytest.raises(ValueError, match="divisor"):
        Recombinator(5, 3)


def test_patchgan_layout_and_noise():
    d = PatchGAN(num_points=4, divisor=4, noise=0.5)
    convs = [m for m in d.modules() if isinstance(m, nn.Conv2d)]
    assert len(convs) == 4 and convs[0].in_channels == 3 + 4
    assert sum(isinstance(m, nn.BatchNorm2d) for m in d.modules()) == 2  # not first, not last
    assert sum(isinstance(m, GaussianNoise) for m in d.modules()) == 4
    images, maps = torch.rand(2, 3, 80, 80), torch.rand(2, 4, 80, 80)
    assert d(images, maps).shape == (2, 1, 9, 9)
    d.eval()
    assert torch.equal(d(images, maps), d(images, maps))  # no noise in evaluation mode
    d.train()
    assert not torch.equal(d(images, maps), d(images, maps))
    with pytest.raises(ValueError, match="heatmaps"):
        d(images, torch.rand(2, 5, 80, 80))
