"""Softargmax and KL losses: closed forms against torch.distributions, exact zeros, safe gradients."""
from __future__ import annotations

import pytest
import torch
from torch.distributions import Laplace, Normal, kl_divergence

from landmarks.losses import (
    coordinate_l1,
    gaussian_kl,
    gaussian_kl_divergence,
    laplace_kl,
    laplace_kl_divergence,
    softargmax_loss,
)
from landmarks.codecs.softargmax import (
    expectation_2d,
    mean_absolute_deviation,
    spatial_softmax,
    variance_2d,
)
from landmarks.codecs.tasks import SoftargmaxTask

def _random_parameters(seed: int):
    g = torch.Generator().manual_seed(seed)
    mu_p, mu_q = torch.randn(2, 500, generator=g, dtype=torch.float64) * 5
    b_p, b_q = torch.rand(2, 500, generator=g, dtype=torch.float64) * 4 + 0.05
    return mu_p, b_p, mu_q, b_q


@pytest.mark.parametrize("seed", [0, 1])
def test_closed_forms_equal_torch_distributions(seed):
    mu_p, b_p, mu_q, b_q = _random_parameters(seed)
    expected = kl_divergence(Laplace(mu_p, b_p), Laplace(mu_q, b_q))
    assert torch.allclose(laplace_kl_divergence(mu_p, b_p, mu_q, b_q), expected, rtol=1e-10, atol=1e-12)
    expected = kl_divergence(Normal(mu_p, b_p), Normal(mu_q, b_q))
    assert torch.allclose(gaussian_kl_divergence(mu_p, b_p, mu_q, b_q), expected, rtol=1e-10, atol=1e-12)


def test_closed_forms_are_exactly_zero_for_equal_parameters():
    mu, b, _, _ = _random_parameters(2)
    assert torch.equal(laplace_kl_divergence(mu, b, mu, b), torch.zeros_like(mu))
    assert torch.equal(gaussian_kl_divergence(mu, b, mu, b), torch.zeros_like(mu))


def _random_maps(seed: int, shape=(2, 3, 12, 16), dtype=torch.float64):
    return torch.randn(*shape, generator=torch.Generator().manual_seed(seed), dtype=dtype) * 2


def test_map_loss_is_the_mean_of_per_axis_kl_sums():
    # The map losses read the softargmax and the measured spread and compare with torch.distributions.
    logits, stride, scale = _random_maps(3), 4.0, 1.7
    landmarks = torch.rand(2, 3, 2, dtype=torch.float64, generator=torch.Generator().manual_seed(4)) * 48
    probs = spatial_softmax(logits, 0.5)
    mean = expectation_2d(probs, stride)
    b = mean_absolute_deviation(probs, mean, stride)
    expected = kl_divergence(Laplace(landmarks, torch.full_like(b, scale)), Laplace(mean, b)).sum(-1).mean()
    assert torch.allclose(laplace_kl(logits, landmarks, scale, stride, 0.5), expected)
    sigma = variance_2d(probs, mean, stride).sqrt()
    expected = kl_divergence(Normal(landmarks, torch.full_like(sigma, scale)), Normal(mean, sigma)).sum(-1).mean()
    assert torch.allclose(gaussian_kl(logits, landmarks, scale, stride, 0.5), expected)


def test_map_loss_is_exactly_zero_when_the_prediction_is_the_ground_truth():
    # A map symmetric under transposition has the same measured scale on both axes; with the labels
    # at its softargmax and gt_scale at that scale, prediction and ground truth are the same law.
    x = _random_maps(5, (1, 1, 10, 10))
    logits = x + x.transpose(-1, -2)
    probs = spatial_softmax(logits)
    mean = expectation_2d(probs)
    b = mean_absolute_deviation(probs, mean)
    sigma = variance_2d(probs, mean).sqrt()
    assert b[0, 0, 0] == b[0, 0, 1] and sigma[0, 0, 0] == sigma[0, 0, 1]
    assert laplace_kl(logits, mean, float(b[0, 0, 0])).item() == 0.0
    assert gaussian_kl(logits, mean, float(sigma[0, 0, 0])).item() == 0.0
    assert laplace_kl(logits, mean + 0.1, float(b[0, 0, 0])).item() > 0.0


def test_softargmax_loss_matches_coordinate_l1():
    logits = _random_maps(6)
    landmarks = torch.rand(2, 3, 2, dtype=torch.float64) * 10
    pred = expectation_2d(spatial_softmax(logits, 2.0), 2.0)
    assert torch.equal(softargmax_loss(logits, landmarks, 2.0, 2.0, "l1"), coordinate_l1(pred, landmarks))
    assert torch.allclose(softargmax_loss(logits, landmarks, 2.0, 2.0, "l2"),
                          (pred - landmarks).square().sum(-1).mean())


def _hard_maps() -> dict[str, torch.Tensor]:
    uniform = torch.zeros(2, 3, 8, 8)
    one_hot = torch.full((2, 3, 8, 8), -30.0)
    one_hot[:, :, 3, 4] = 30.0
    extreme = torch.randn(2, 3, 8, 8, generator=torch.Generator().manual_seed(7)) * 1e4
    return {"uniform": uniform, "one-hot": one_hot, "extreme": extreme}


@pytest.mark.parametrize("name", ["uniform", "one-hot", "extreme"])
@pytest.mark.parametrize("loss", ["softargmax-l1", "softargmax-l2", "laplace-kl", "gaussian-kl"])
def test_gradients_stay_finite(name, loss):
    logits = _hard_maps()[name].requires_grad_()
    landmarks = torch.tensor([[[4.5, 3.5], [1.0, 7.0], [4.0, 3.0]]]).expand(2, 3, 2)
    task = SoftargmaxTask(loss, gt_scale=0.5)
    value = task.loss({"heatmaps": logits}, {"image": torch.zeros(2, 3, 8, 8), "landmarks": landmarks})["total"]
    value.backward()
    assert torch.isfinite(value)
    assert torch.isfinite(logits.grad).all()


def test_gradcheck_in_float64():
    logits = _random_maps(8, (1, 1, 4, 5)).requires_grad_()
    landmarks = torch.tensor([[[2.2, 3.1]]], dtype=torch.float64)
    assert torch.autograd.gradcheck(lambda x: laplace_kl(x, landmarks, 0.8), (logits,))
    assert torch.autograd.gradcheck(lambda x: gaussian_kl(x, landmarks, 0.8), (logits,))


def test_task_works_with_a_map_net_and_decodes_at_its_stride():
    from landmarks.models import heatmap_net

    model = heatmap_net(68, depth=18, width=0.125, net_stride=4)
    images = torch.rand(2, 3, 32, 32)
    batch = {"image": images, "landmarks": torch.rand(2, 68, 2) * 32}
    task = SoftargmaxTask("laplace-kl")
    outputs = model(images)
    assert outputs["heatmaps"].shape == (2, 68, 8, 8) and task.stride(outputs, batch) == 4
    task.loss(outputs, batch)["total"].backward()
    # the untrained head gives near-uniform maps: predictions near the image centre (16, 16)
    assert torch.allclose(task.predict(outputs, batch), torch.full((2, 68, 2), 16.0), atol=0.5)


def test_bad_settings_raise():
    with pytest.raises(ValueError, match="softargmax loss"):
        SoftargmaxTask("laplace")
    with pytest.raises(ValueError, match="gt_scale"):
        laplace_kl(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2), gt_scale=0.0)
    with pytest.raises(ValueError, match="do not match"):
        gaussian_kl(torch.zeros(1, 2, 4, 4), torch.zeros(1, 3, 2))
