"""Adversarial semi-supervised training on a tiny problem: wiring, logged losses, the maps D sees,
and fit's guarantees (exact resumption, NaN guard) for the generator-and-discriminator step."""
from __future__ import annotations

import math

import pytest
import torch

from landmarks.codecs.tasks import SoftargmaxTask
from landmarks.detector import Detector, architecture
from landmarks.laplacekl.adversarial import (
    AdversarialPair,
    AdversarialSettings,
    AdversarialStep,
    adversarial_pair,
    discriminator_scale,
    fake_heatmaps,
    real_heatmaps,
    train_adversarial,
)
from landmarks.models.patchgan import PatchGAN
from landmarks.models.recombinator import Recombinator
from landmarks.training import checkpoints
from landmarks.training.loop import CHECKPOINT_NAME


def _detector(generator, task=None) -> Detector:
    return Detector(generator, task or SoftargmaxTask("laplace-kl"), image_size=16)


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
    history = train_adversarial(_detector(generator, task), discriminator, _faces(8, 1), _faces(unlabelled, 2),
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
    history = train_adversarial(_detector(generator), discriminator, _faces(8, 3), None, settings, progress=False)
    assert history[-1]["d_real"] > 0.55
    assert history[-1]["d_fake"] < 0.45
    assert history[-1]["loss_discriminator"] < 0.6
    assert history[0]["loss_discriminator"] > math.log(2) - 0.05


def test_bad_settings_raise():
    with pytest.raises(ValueError):
        AdversarialSettings(epochs=0)
    with pytest.raises(ValueError, match="decay"):
        AdversarialSettings(decay_epochs=(0,))
    with pytest.raises(ValueError, match="no training batch"):
        train_adversarial(_detector(Recombinator(3, 16)), PatchGAN(3, 16), _faces(2, 0), None,
                          AdversarialSettings(batch_size=4), progress=False)
    with pytest.raises(ValueError, match="weight"):
        AdversarialStep(PatchGAN(3, 16), weight=-1.0)


def _run(checkpoint_dir, epochs, unlabelled=5):
    """A tiny adversarial run from fixed initial weights (dropout and D's input noise on), with 5
    unlabelled faces for batches of 4: the extra stream wraps around within an epoch. Both learning
    rates are halved after epoch 2."""
    torch.manual_seed(7)
    generator, discriminator = Recombinator(3, divisor=16, dropout=0.2), PatchGAN(3, divisor=16, noise=0.1)
    settings = AdversarialSettings(epochs=epochs, batch_size=4, lr=1e-3, d_lr=1e-3, weight=0.5, seed=3,
                                   records_per_epoch=2, decay_epochs=(2,), decay=0.5)
    history = train_adversarial(_detector(generator), discriminator, _faces(16, 1), _faces(unlabelled, 2), settings,
                                progress=False, checkpoint_dir=checkpoint_dir)
    return generator, discriminator, history


def _timeless(history):
    return [{k: v for k, v in r.items() if k not in ("seconds", "data_seconds", "images_per_s")} for r in history]


def test_interrupted_adversarial_run_resumes_bit_for_bit(tmp_path):
    straight_g, straight_d, straight_history = _run(tmp_path / "straight", epochs=3)
    _run(tmp_path / "stopped", epochs=1)
    state = checkpoints.load_checkpoint(tmp_path / "stopped" / CHECKPOINT_NAME, kind="training")
    assert state["epoch"] == 1 and set(state["update_step"]) == {"discriminator", "optimizer", "scheduler"}
    # after 3 epochs both rates were halved once (after epoch 2), the discriminator's too
    state = checkpoints.load_checkpoint(tmp_path / "straight" / CHECKPOINT_NAME, kind="training")
    assert state["update_step"]["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-4)
    assert state["optimizer"]["param_groups"][0]["lr"] == pytest.approx(5e-4)
    resumed_g, resumed_d, resumed_history = _run(tmp_path / "stopped", epochs=3)  # fresh networks, loaded
    for straight, resumed in ((straight_g, resumed_g), (straight_d, resumed_d)):
        a, b = straight.state_dict(), resumed.state_dict()
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), key
    assert _timeless(resumed_history) == _timeless(straight_history)
    # two records per epoch, the second at the epoch's end
    assert [r["epoch"] for r in straight_history] == [0.5, 1.0, 1.5, 2.0, 2.5, 3.0]
    # a resumed run must use the same adversarial settings
    with pytest.raises(ValueError, match="step"):
        _run(tmp_path / "stopped", epochs=4, unlabelled=6)


def test_nan_in_the_discriminator_loss_stops_the_run():
    torch.manual_seed(0)
    generator, discriminator = Recombinator(3, divisor=16), PatchGAN(3, divisor=16)
    with torch.no_grad():
        discriminator.layers[-1].bias.fill_(math.nan)  # D's logits, hence its loss, are NaN
    before = [p.detach().clone() for p in generator.parameters()]
    with pytest.raises(FloatingPointError, match="epoch 1, step 1 of 2: component 'discriminator' is nan"):
        train_adversarial(_detector(generator), discriminator, _faces(8, 1), None,
                          AdversarialSettings(epochs=1, batch_size=4), progress=False)
    # stopped before any update
    assert all(torch.equal(a, b) for a, b in zip(before, generator.parameters()))


def test_pair_rebuilds_from_its_architecture_record(tmp_path):
    torch.manual_seed(0)
    record = architecture(adversarial_pair, num_points=3, divisor=16, dropout=0.0, d_divisor=16, noise=0.1)
    pair = adversarial_pair(3, 16, 0.0, 16, 0.1)
    assert isinstance(pair, AdversarialPair) and isinstance(pair.discriminator, PatchGAN)
    detector = Detector(pair, SoftargmaxTask("laplace-kl"), image_size=16, architecture=record)
    images = torch.rand(2, 3, 16, 16)
    assert torch.equal(pair(images)["heatmaps"], pair.generator(images)["heatmaps"])
    detector.save(tmp_path / "pair.pt")
    loaded = Detector.load(tmp_path / "pair.pt")
    assert isinstance(loaded.model, AdversarialPair) and loaded.task == detector.task
    for key, value in pair.state_dict().items():
        assert torch.equal(value, loaded.model.state_dict()[key]), key
