"""The training loop on a toy problem whose answer is known: learning, seeding, resuming, failures."""
import math

import matplotlib
import pytest
import torch
from torch import nn

matplotlib.use("Agg")

from landmarks.training import checkpoints  # noqa: E402
from landmarks.data.layouts import custom_layout  # noqa: E402
from landmarks.data.synthetic import SyntheticFaces  # noqa: E402
from landmarks.detector import Detector  # noqa: E402
from landmarks.evaluation.loop import evaluate  # noqa: E402
from landmarks.training.loop import CHECKPOINT_NAME, History, Step, fit, loader_throughput  # noqa: E402
from toy_training import SIZE, ToyFaces, ToyModel, ToyTask  # noqa: E402

TIMING_KEYS = ("seconds", "data_seconds", "images_per_s")


def train_toy(checkpoint_dir=None, epochs=3, seed=0, task=None, **options):
    """The toy model (with dropout, and noise drawn in the dataset) trained with fixed settings."""
    torch.manual_seed(seed + 100)
    model = ToyModel(dropout=0.1)
    history = fit(Detector(model, task or ToyTask(), layout=None), ToyFaces(64, noise=0.05), ToyFaces(16, seed=1), epochs=epochs,
                  batch_size=16, lr=1e-2, decay_epochs=(2,), seed=seed, checkpoint_dir=checkpoint_dir,
                  progress=False, **options)
    return model, history


def assert_same_weights(a: nn.Module, b: nn.Module) -> None:
    state_a, state_b = a.state_dict(), b.state_dict()
    assert state_a.keys() == state_b.keys()
    for key in state_a:
        assert torch.equal(state_a[key], state_b[key]), key


def without_timings(history: History) -> list[dict]:
    return [{k: v for k, v in record.items() if k not in TIMING_KEYS} for record in history]


def test_loss_falls_and_history_records_every_epoch():
    torch.manual_seed(0)
    untrained = evaluate(Detector(ToyModel(), ToyTask(), layout=None), ToyFaces(16, seed=1))
    model, history = train_toy(epochs=5)
    losses = history.column("loss_total")
    assert len(history) == 5 and losses[-1] < 0.3 * losses[0]
    assert all(history.column(f"loss_{name}")[-1] > 0 for name in ("l1", "mse"))
    assert history.column("lr") == pytest.approx([1e-2, 1e-2, 1e-3, 1e-3, 1e-3])  # decayed after epoch 2
    assert history[-1]["val_nme"] < 0.5 * untrained["nme"]
    for record in history:
        assert record["images_per_s"] * record["seconds"] == pytest.approx(64)  # 4 full batches of 16
        assert 0 <= record["data_seconds"] <= record["seconds"]
        assert 0 <= record["val_fr"] <= 1 and 0 <= record["val_auc"] <= 1


def test_same_seed_same_run_other_seed_other_run():
    first, history = train_toy(epochs=2, seed=5)
    second, again = train_toy(epochs=2, seed=5)
    assert_same_weights(first, second)
    assert without_timings(history) == without_timings(again)
    third, _ = train_toy(epochs=2, seed=6)
    assert not torch.equal(first.net[-1].weight, third.net[-1].weight)


@pytest.mark.parametrize("num_workers", [0, 2])
def test_resumed_run_equals_uninterrupted_run(tmp_path, num_workers):
    straight, straight_history = train_toy(tmp_path / "straight", epochs=3, num_workers=num_workers)
    train_toy(tmp_path / "stopped", epochs=1, num_workers=num_workers)
    assert checkpoints.load_checkpoint(tmp_path / "stopped" / CHECKPOINT_NAME)["epoch"] == 1
    resumed, resumed_history = train_toy(tmp_path / "stopped", epochs=3, num_workers=num_workers)  # fresh objects
    assert_same_weights(straight, resumed)
    assert without_timings(resumed_history) == without_timings(straight_history)


def test_persistent_workers_give_reproducible_runs():
    first, _ = train_toy(epochs=2, num_workers=2, persistent_workers=True)
    second, _ = train_toy(epochs=2, num_workers=2, persistent_workers=True)
    assert_same_weights(first, second)


def test_run_interrupted_mid_epoch_resumes_from_the_last_checkpoint(tmp_path):
    straight, _ = train_toy(tmp_path / "straight", epochs=3)
    with pytest.raises(KeyboardInterrupt):
        train_toy(tmp_path / "stopped", epochs=3, task=ToyTask(interrupt_at=7))  # epoch 2, step 3 of 4
    assert sorted(p.name for p in (tmp_path / "stopped").iterdir()) == [CHECKPOINT_NAME]  # no temporary file
    state = checkpoints.load_checkpoint(tmp_path / "stopped" / CHECKPOINT_NAME, kind="training")
    assert (state["epoch"], state["step"], len(state["history"]["records"])) == (1, 4, 1)
    resumed, _ = train_toy(tmp_path / "stopped", epochs=3)
    assert_same_weights(straight, resumed)


def test_finished_run_is_not_trained_again(tmp_path):
    model, history = train_toy(tmp_path, epochs=2)
    task = ToyTask()
    again, again_history = train_toy(tmp_path, epochs=2, task=task)
    assert task.calls == 0
    assert_same_weights(model, again)
    assert again_history.records == history.records


def test_checkpoint_holds_what_a_resume_and_a_reader_need(tmp_path):
    train_toy(tmp_path, epochs=2, config={"head": "toy"})
    state = checkpoints.load_checkpoint(tmp_path / CHECKPOINT_NAME)  # weights_only=True load
    assert state["kind"] == "training" and state["epoch"] == 2 and state["step"] == 8
    assert {"model", "optimizer", "scheduler", "scaler", "history"} <= state.keys()
    assert set(state["rng"]) >= {"torch", "numpy", "python"}
    assert state["config"]["lr"] == 1e-2 and state["config"]["decay_epochs"] == [2]
    assert state["config"]["user"] == {"head": "toy"} and state["config"]["model"] == "ToyModel"
    assert state["scheduler"]["last_epoch"] == 2 and "pytest" in state["command"]


def test_resume_with_other_settings_is_refused(tmp_path):
    train_toy(tmp_path, epochs=1)
    with pytest.raises(ValueError, match=r"seed: stored 0, now 1"):
        train_toy(tmp_path, epochs=2, seed=1)
    with pytest.warns(UserWarning, match="overwritten"):
        _, history = train_toy(tmp_path, epochs=1, seed=1, resume=False)
    assert checkpoints.load_checkpoint(tmp_path / CHECKPOINT_NAME)["config"]["seed"] == 1 and len(history) == 1


def test_nan_loss_stops_the_run_naming_epoch_step_and_component():
    with pytest.raises(FloatingPointError, match=r"epoch 2, step 3 of 4: component 'mse' is nan"):
        train_toy(epochs=3, task=ToyTask(nan_at=7))


def test_amp_on_cpu_is_a_warned_no_op():
    reference, _ = train_toy(epochs=1)
    with pytest.warns(UserWarning, match="amp=True is ignored on the CPU"):
        mixed, _ = train_toy(epochs=1, amp=True)
    assert_same_weights(reference, mixed)


class OffsetTask(ToyTask):
    """Decodes every image of ``data`` to its ground truth (looked up by its pixels) shifted by a fixed
    vector, so the NME is known in advance."""

    def __init__(self, shift, data):
        super().__init__()
        self.shift = torch.tensor(shift)
        self.truth = {data[i]["image"].numpy().tobytes(): data[i]["landmarks"] for i in range(len(data))}

    def predict(self, outputs, batch):
        return torch.stack([self.truth[image.cpu().numpy().tobytes()] for image in batch["image"]]) + self.shift


def test_evaluate_gives_hand_computed_errors():
    data = ToyFaces(10, seed=2)
    model = ToyModel().train()
    results = evaluate(Detector(model, OffsetTask([0.3, 0.4], data), layout=None), data, batch_size=4)  # 0.5 px off, inter-ocular norm
    eye_distance = torch.stack([(data[i]["landmarks"][0] - data[i]["landmarks"][1]).norm() for i in range(10)])
    assert results["norm"] == "inter-ocular" and model.training
    torch.testing.assert_close(results["per_image"], 0.5 / eye_distance)
    torch.testing.assert_close(results["predictions"][3], data[3]["landmarks"] + torch.tensor([0.3, 0.4]))
    box_layout = custom_layout(5, default_norm="box-size")
    boxed = evaluate(Detector(model, OffsetTask([0.3, 0.4], data), layout=None), data, layout=box_layout)  # box 8 x 8: NME 0.5 / 8
    assert boxed["nme"] == pytest.approx(0.5 / SIZE) and boxed["fr"] == 0.0
    assert boxed["auc"] == pytest.approx(1 - 0.5 / SIZE / 0.1)
    failing = evaluate(Detector(model, OffsetTask([0.0, 1.0], data), layout=None), data, layout=box_layout)  # NME 0.125 > 0.1
    assert failing["fr"] == 1.0 and failing["auc"] == 0.0
    with pytest.raises(ValueError, match="layout"):
        evaluate(Detector(model, OffsetTask([0.0, 0.0], data), layout=None), [data[0], data[1]])


def test_failed_write_leaves_the_previous_checkpoint(tmp_path, monkeypatch):
    path = checkpoints.atomic_save({"value": torch.tensor(1)}, tmp_path / "file.pt")

    def broken_save(obj, handle):
        handle.write(b"half a checkpoint")
        raise OSError("disk full")

    monkeypatch.setattr(checkpoints.torch, "save", broken_save)
    with pytest.raises(OSError, match="disk full"):
        checkpoints.atomic_save({"value": torch.tensor(2)}, path)
    assert torch.load(path, weights_only=True)["value"] == 1
    assert [p.name for p in tmp_path.iterdir()] == ["file.pt"]


def test_loader_throughput_counts_images_per_second():
    rate = loader_throughput(ToyFaces(40), batch_size=8, batches=3)
    assert math.isfinite(rate) and rate > 0
    with pytest.raises(ValueError, match="no batch"):
        loader_throughput(ToyFaces(8), batch_size=8, batches=3)


def test_history_round_trip_and_plot():
    _, history = train_toy(epochs=2)
    assert History.from_dict(history.to_dict()).records == history.records
    ax = history.plot()
    assert len(ax.get_lines()) == 3 and len(ax.right.get_lines()) == 1  # total, l1, mse | NME
    assert ax.right.get_lines()[0].get_ydata()[-1] == pytest.approx(100 * history[-1]["val_nme"])


class TinyCNN(nn.Module):
    def __init__(self, points=68):
        super().__init__()
        self.points = points
        self.net = nn.Sequential(nn.Conv2d(3, 8, 3, 2, 1), nn.BatchNorm2d(8), nn.ReLU(), nn.Conv2d(8, 16, 3, 2, 1),
                                 nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(16, 2 * points))

    def forward(self, images):
        return {"coords": torch.sigmoid(self.net(images)).reshape(-1, self.points, 2)}


class CoordTask:
    def loss(self, outputs, batch):
        l1 = (outputs["coords"] - batch["landmarks"] / batch["image"].shape[-1]).abs().mean()
        return {"total": l1}

    def predict(self, outputs, batch):
        return outputs["coords"] * batch["image"].shape[-1]


def test_synthetic_faces_with_a_tiny_cnn(tmp_path):
    torch.manual_seed(0)
    model = TinyCNN()
    history = fit(Detector(model, CoordTask(), layout=None), SyntheticFaces(size=32, length=32), SyntheticFaces(size=32, length=8, seed=1),
                  epochs=2, batch_size=8, lr=3e-3, checkpoint_dir=tmp_path, progress=True)
    assert history[-1]["loss_total"] < history[0]["loss_total"]
    assert 0 < history[-1]["val_nme"] < 1  # the 300W layout (inter-ocular) comes from the dataset
    assert checkpoints.load_checkpoint(tmp_path / CHECKPOINT_NAME)["epoch"] == 2


@pytest.mark.parametrize("frozen", [False, True])
def test_frozen_batchnorm_keeps_running_statistics_but_trains_the_affine_part(frozen):
    torch.manual_seed(0)
    model = ToyModel(batch_norm=True)
    norm = model.net[1]
    norm.weight.data.fill_(1.5)  # away from the default, so a step visibly moves it
    before = (norm.running_mean.clone(), norm.running_var.clone(), norm.weight.detach().clone())
    fit(Detector(model, ToyTask(), layout=None), ToyFaces(32), epochs=1, batch_size=8, lr=1e-2, progress=False, frozen_batchnorm=frozen)
    stats_unchanged = torch.equal(norm.running_mean, before[0]) and torch.equal(norm.running_var, before[1])
    assert stats_unchanged == frozen
    assert not torch.equal(norm.weight.detach(), before[2])  # the scale is trained either way


# ---------------------------------------------------------------------------------------- update steps
def test_records_per_epoch_split_the_history_not_the_training():
    whole, _ = train_toy(epochs=2)
    split, history = train_toy(epochs=2, records_per_epoch=2)  # 4 batches per epoch: 2 records of 2 batches
    assert_same_weights(whole, split)
    assert history.column("epoch") == [0.5, 1.0, 1.5, 2.0]
    assert all(r["images_per_s"] * r["seconds"] == pytest.approx(32) for r in history)
    assert ["val_nme" in r for r in history] == [False, True, False, True]  # the end of every epoch
    with pytest.raises(ValueError, match="records_per_epoch"):
        train_toy(epochs=1, records_per_epoch=0)


class CountingStep(Step):
    """fit's default update, plus a second data stream whose batches it records and a counter kept in
    checkpoints; its optimiser is SGD."""

    def __init__(self, extra_data):
        self.extra_data, self.updates, self.seen = extra_data, 0, []

    def optimizer(self, parameters, lr, weight_decay):
        return torch.optim.SGD(parameters, lr=lr)

    def update(self, context, batch, extra):
        self.updates += 1
        self.seen.append((context.epoch, extra["index"].tolist()))
        return {**super().update(context, batch, extra), "extra_mean": float(extra["image"].mean())}

    def state_dict(self):
        return {"updates": self.updates}

    def load_state_dict(self, state):
        self.updates = state["updates"]

    def config(self):
        return {"extra": len(self.extra_data)}


def test_a_custom_step_keeps_seeding_checkpoints_and_exact_resumption(tmp_path):
    straight_step = CountingStep(ToyFaces(10, seed=5))
    straight, history = train_toy(tmp_path / "straight", epochs=3, step=straight_step)
    assert straight_step.updates == 12 and history.column("extra_mean")[0] > 0
    # batches of 16 from 10 extra samples: whole shuffled passes of 10, a new order every pass ...
    first_epoch = [indices for epoch, indices in straight_step.seen if epoch == 0]
    assert all(sorted(indices) == list(range(10)) for indices in first_epoch)
    assert len({tuple(indices) for indices in first_epoch}) > 1
    # ... and the same order as any other run's in the same epoch (seeded by seed and epoch only)
    stopped_step = CountingStep(ToyFaces(10, seed=5))
    train_toy(tmp_path / "stopped", epochs=1, step=stopped_step)
    assert stopped_step.seen == straight_step.seen[:4]
    resumed_step = CountingStep(ToyFaces(10, seed=5))
    resumed, resumed_history = train_toy(tmp_path / "stopped", epochs=3, step=resumed_step)
    assert resumed_step.updates == 12 and resumed_step.seen == straight_step.seen[4:]
    assert_same_weights(straight, resumed)
    assert without_timings(resumed_history) == without_timings(history)
    # the default Adam would have given other weights; a step of other settings does not resume
    adam, _ = train_toy(epochs=3)
    assert not torch.equal(adam.net[-1].weight, straight.net[-1].weight)
    with pytest.raises(ValueError, match="step"):
        train_toy(tmp_path / "stopped", epochs=4, step=CountingStep(ToyFaces(11, seed=5)))
