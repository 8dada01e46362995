"""Adversarial semi-supervised training on a tiny problem: wiring, logged losses, the maps D sees."""
from __future__ import annotations

import math

import pytest
import torch

from landmarks.laplacekl.adversarial import (
    AdversarialSettings,
    discriminator_scale,
    fake_heatmaps,
    real_heatmaps,
    train_adversarial,
)
from landmarks.models.patchgan import PatchGAN
from landmarks.models.recombinator import Recombinator
from landmarks.codecs.tasks import SoftargmaxTask

def _faces(count: int, seed: int, points: int = 3, size: int = 16) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    return [{"image": torch.rand(3, size, size, generator=g), "landmarks": 2 + 12 * torch.rand(points, 2, generator=g)}
            for _ in range(count)]


def test_real_maps_peak_near_one():
    # A landmark on a cell centre: per axis the discrete Laplace peak is (1 - e^(-1/b)) / (1 + e^(-1/b))
    # (a geometric series on both sides); D's factor is (2 b)^2.
    task = SoftargmaxTask("laplace-kl", gt_scale=1.5)
    maps = real_heatmaps(task, torch.tensor([[[40.5, 40.5]]]), (80, 80), 1.0)
    r = math.exp(-1 / 1.5)
    assert maps.max().item() == pytest.approx(((1 - r) / (1 + r)) ** 2 * 9.0, rel=1e-4)
    assert discriminator_scale("gaussian", 2.0) == pytest.approx(8 * math.pi)
    # a uniform generator map is far below the real peak
    fake = fake_heatmaps(task, torch.zeros(1, 1, 80, 80))
    assert fake.max().item() == pytest.approx(9.0 / 6400)


@pytest.mark.parametrize("unlabelled", [0, 6])
def test_training_logs_both_players_and_updates_both(unlabelled):
    torch.manual_seed(0)
    generator, discriminator = Recombinator(3, divisor=16), PatchGAN(3, divisor=16)
    g0 = [p.detach().clone() for p in generator.parameters()]
    d0 = [p.detach().clone() for p in discriminator.parameters()]
    task = SoftargmaxTask("laplace-kl")
    history = train_adversarial(generator, discriminator, task, _faces(8, 1), _faces(unlabelled, 2),
                                AdversarialSettings(epochs=2, batch_size=4, weight=0.5), progress=False)
    assert len(history) == 2
    for key in ("loss_supervised", "loss_adversarial", "loss_total", "loss_discriminator", "d_real", "d_fake"):
        values = history.column(key)
        assert all(math.isfinite(v) for v in values), key
    record = history[1]
    assert record["loss_total"] == pytest.approx(record["loss_supervised"] + 0.5 * record["loss_adversarial"],
                                                 rel=1e-5)
    assert all(not torch.equal(a, b) for a, b in zip(g0, generator.parameters()))
    assert any(not torch.equal(a, b) for a, b in zip(d0, discriminator.parameters()))
    assert not generator.training and not discriminator.training


def test_discriminator_learns_to_tell_rendered_from_uniform_maps():
    # With a generator that cannot learn (lr tiny), D separates sharp rendered maps from flat ones.
    torch.manual_seed(1)
    generator, discriminator = Recombinator(3, divisor=16), PatchGAN(3, divisor=16, noise=0.0)
    settings = AdversarialSettings(epochs=12, batch_size=4, lr=1e-12, d_lr=1e-2, weight=1.0)
    history = train_adversarial(generator, discriminator, SoftargmaxTask("laplace-kl"), _faces(8, 3), None,
                                settings, progress=False)
    assert history[-1]["d_real"] > 0.55
    assert history[-1]["d_fake"] < 0.45
    assert history[-1]["loss_discriminator"] < 0.6
    assert history[0]["loss_discriminator"] > math.log(2) - 0.05


def test_bad_settings_raise():
    with pytest.raises(ValueError):
        AdversarialSettings(epochs=0)
    with pytest.raises(ValueError, match="labelled batch"):
        train_adversarial(Recombinator(3, 16), PatchGAN(3, 16), SoftargmaxTask(), _faces(2, 0), None,
                          AdversarialSettings(batch_size=4), progress=False)
