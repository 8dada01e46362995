"""Align Loss (fine-grained paper eq. 2) and the loss surfaces of its Fig. 6."""
import math

import pytest
import torch
import torch.nn.functional as F

from landmarks.finegrained.align_loss import (align_loss, align_loss_per_point, candidate_grid, contour_map, gaussian_kernel,
                             loss_surfaces, smooth_patches, smoothing_matrix)
from landmarks.finegrained.crops import crop_patches


def test_gaussian_kernel_values():
    k = gaussian_kernel(3, 1.0, torch.float64)
    assert k.sum().item() == pytest.approx(1.0)
    assert (k[1, 1] / k[1, 0]).item() == pytest.approx(math.exp(0.5))
    assert (k[1, 1] / k[0, 0]).item() == pytest.approx(math.exp(1.0))
    with pytest.raises(ValueError):
        gaussian_kernel(2)
    with pytest.raises(ValueError):
        gaussian_kernel(3, 0.0)


def test_smoothing_equals_replicate_padded_convolution():
    patches = torch.randn(2, 3, 4, 8, 7, dtype=torch.float64)
    kernel = gaussian_kernel(3, 1.0, torch.float64)[None, None]
    planes = F.pad(patches.reshape(-1, 1, 8, 7), (1, 1, 1, 1), mode="replicate")
    expected = F.conv2d(planes, kernel).reshape(patches.shape)
    torch.testing.assert_close(smooth_patches(patches), expected)
    assert torch.allclose(smoothing_matrix(6).sum(1), torch.ones(6))
    constant = torch.full((5, 5), 3.0)
    torch.testing.assert_close(smooth_patches(constant), constant)


def test_align_loss_zero_at_truth_and_positive_elsewhere():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 16, 16, generator=gen)
    target = torch.rand(2, 4, 2, generator=gen) * 20 + 6
    assert align_loss(features, target, target, stride=2).item() == 0.0
    moved = align_loss_per_point(features, target + 1.5, target, stride=2)
    assert moved.shape == (2, 4) and torch.all(moved > 0)


def test_align_loss_is_eq2_over_the_number_of_terms():
    gen = torch.Generator().manual_seed(3)
    features = torch.randn(1, 2, 12, 12, generator=gen, dtype=torch.float64)
    pred, target = torch.tensor([[[10.2, 11.7]]], dtype=torch.float64), torch.tensor([[[12.0, 12.5]]], dtype=torch.float64)
    kernel = gaussian_kernel(3, 1.0, torch.float64)[None, None]

    def smoothed(point):
        patch = crop_patches(features, point, 4)[0, 0]                        # (C, 4, 4)
        return F.conv2d(F.pad(patch[:, None], (1, 1, 1, 1), mode="replicate"), kernel)[:, 0]

    eq2 = (smoothed(target) - smoothed(pred)).square().sum()
    assert align_loss(features, pred, target, 1.0, 4).item() == pytest.approx(eq2.item() / (2 * 4 * 4))
    raw = (crop_patches(features, target, 4) - crop_patches(features, pred, 4)).square().mean()
    assert align_loss(features, pred, target, 1.0, 4, smooth=False).item() == pytest.approx(raw.item())


def test_gradient_reaches_prediction_not_features():
    feature_map, truth = contour_map(24, radius=30.0, angle_degrees=0.0)
    features = feature_map[None].clone().requires_grad_()
    pred = (truth + torch.tensor([2.0, 0.0]))[None, None].requires_grad_()
    align_loss(features, pred, truth[None, None]).backward()
    assert features.grad is None
    # the contour's outward normal is +x: a prediction outside the edge is pulled back (-x)
    assert pred.grad[0, 0, 0] > 0


def test_descent_on_align_loss_reaches_the_boundary():
    feature_map, truth = contour_map(32, radius=40.0, angle_degrees=-30.0)
    normal = torch.tensor([math.cos(math.radians(-30)), math.sin(math.radians(-30))])
    pred = (truth + 2.5 * normal).clone()[None, None].requires_grad_()
    optimiser = torch.optim.SGD([pred], lr=20.0)
    for _ in range(300):
        optimiser.zero_grad()
        align_loss(feature_map[None], pred, truth[None, None]).backward()
        optimiser.step()
    assert abs(float((pred.detach()[0, 0] - truth) @ normal)) < 0.1


def test_surfaces_closed_forms_and_shapes():
    feature_map, truth = contour_map(32)
    xs, ys, grid = candidate_grid(truth, 10.0, 21)
    assert grid.shape == (21, 21, 2) and xs[10].item() == pytest.approx(truth[0].item())
    surf = loss_surfaces(feature_map, truth, grid)
    assert set(surf) == {"l2", "l1", "heatmap", "align"}
    d = grid - truth
    torch.testing.assert_close(surf["l2"], d.square().sum(-1))
    torch.testing.assert_close(surf["l1"], d.abs().sum(-1))
    for name in surf:
        assert surf[name][10, 10].item() == pytest.approx(0.0, abs=1e-6)


def test_heatmap_and_align_saturate_far_away():
    feature_map, truth = contour_map(32)
    far = torch.tensor([[200.0, 200.0], [-150.0, 60.0]])
    surf = loss_surfaces(feature_map, truth, far, heatmap_sigma=1.5)
    # heatmap: no overlap, so the loss is the mean of the two squared Gaussians = 2 * target energy / HW
    c = torch.arange(32, dtype=torch.float32) + 0.5
    g = torch.exp(-((c[None] - truth[0]) ** 2 + (c[:, None] - truth[1]) ** 2) / (2 * 1.5 ** 2))
    assert surf["heatmap"][0].item() == pytest.approx(g.square().mean().item(), rel=1e-4)
    # align: a patch outside the map is zero, so the loss is the energy of the smoothed truth patch
    truth_patch = smooth_patches(crop_patches(feature_map[None], truth[None, None], 8))
    assert surf["align"][0].item() == pytest.approx(truth_patch.square().mean().item(), rel=1e-5)
    assert surf["align"][1].item() == pytest.approx(surf["align"][0].item(), rel=1e-5)


def test_align_surface_is_anisotropic_along_the_boundary():
    feature_map, truth = contour_map(32, radius=200.0, angle_degrees=0.0)   # almost straight, vertical edge
    shifts = torch.tensor([[2.0, 0.0], [0.0, 2.0]])                         # across, along
    surf = loss_surfaces(feature_map, truth, truth + shifts, ["l2", "align"])
    assert surf["l2"][0] == surf["l2"][1]
    assert surf["align"][0] > 20 * surf["align"][1]


def test_bad_input():
    with pytest.raises(ValueError, match="unknown"):
        loss_surfaces(torch.zeros(8, 8), [4, 4], torch.zeros(3, 2), ["huber"])
    with pytest.raises(ValueError, match="differ"):
        align_loss(torch.zeros(1, 1, 8, 8), torch.zeros(1, 2, 2), torch.zeros(1, 3, 2))
