"""fit's guards: a diverging run, a resume that does not fit its checkpoint, a run too long for the device."""
import io
import re
import warnings

import pytest
import torch
from tqdm import tqdm

from landmarks.data.synthetic import SyntheticFaces
from landmarks.detector import Detector, ModelSpec
from landmarks.profile import Profile
from landmarks.training import checkpoints, loop
from landmarks.training.loop import CHECKPOINT_NAME, DivergenceError, Step, fit, train_spec
from toy_training import ToyFaces, ToyModel, ToyTask

TINY = Profile(name="tiny", image_size=64, width=0.25, train_images=16, test_images=8, epochs=1, batch_size=8,
               learning_rate=1e-3)


def train_toy(checkpoint_dir=None, epochs=3, task=None, lr=1e-2, **options):
    """The toy model trained as in test_train (4 steps of 16 images per epoch, validation on 16)."""
    torch.manual_seed(100)
    model = ToyModel(dropout=0.1)
    history = fit(Detector(model, task or ToyTask(), layout=None), ToyFaces(64, noise=0.05), ToyFaces(16, seed=1),
                  epochs=epochs, batch_size=16, lr=lr, decay_epochs=(2,), checkpoint_dir=checkpoint_dir,
                  progress=options.pop("progress", False), **options)
    return model, history


def spike_task(spike_at, factor=1e5):
    """The toy task (so that its checkpoints resume with a plain one), its total multiplied by
    ``factor`` (finite) at call ``spike_at``."""
    task = ToyTask()
    plain = task.loss

    def loss(outputs, batch):
        losses = plain(outputs, batch)
        if task.calls == spike_at:
            losses["total"] = losses["total"] * factor
        return losses

    task.loss = loss
    return task


def nan_predictions():
    """The toy task predicting NaN landmarks."""
    task = ToyTask()
    task.predict = lambda outputs, batch: outputs["coords"] * float("nan")
    return task


# ---------------------------------------------------------------------------------------- divergence
def test_a_runaway_learning_rate_stops_the_run_as_diverged():
    with pytest.raises(DivergenceError) as caught:  # lr=1e6: the loss reaches ~1e30 and stays finite
        train_toy(epochs=3, lr=1e6)
    message = str(caught.value)
    assert isinstance(caught.value, FloatingPointError) and "DivergenceError" in loop.__all__
    assert message.startswith("training diverged in epoch 1, step 2 of 4: loss 'total' is ")
    assert "no checkpoint was written" in message and "lower learning rate than lr=1e+06" in message


def test_a_loss_spike_stops_the_run_and_keeps_the_last_good_checkpoint(tmp_path):
    # call 11 = epoch 3, step 3: a total 1e5 times the usual one, far below any absolute limit
    with pytest.raises(DivergenceError, match=r"training diverged in epoch 3, step 3 of 4: loss 'total' is "
                                              r"\S+, \S+ x its running level \S+ \(median of the last 10 steps\); "
                                              r"the last good checkpoint is .*last\.pt \(epoch 2\); "
                                              r"try a lower learning rate"):
        train_toy(tmp_path / "spiked", epochs=3, task=spike_task(spike_at=11))
    assert [p.name for p in (tmp_path / "spiked").iterdir()] == [CHECKPOINT_NAME]
    state = checkpoints.load_checkpoint(tmp_path / "spiked" / CHECKPOINT_NAME, kind="training")
    assert state["epoch"] == 2 and len(state["history"]["records"]) == 2  # nothing saved after the error
    # the guard is only a check: resuming from that checkpoint gives the uninterrupted run, bit for bit
    straight, straight_history = train_toy(tmp_path / "straight", epochs=3)
    resumed, resumed_history = train_toy(tmp_path / "spiked", epochs=3)
    for key, value in straight.state_dict().items():
        assert torch.equal(value, resumed.state_dict()[key]), key
    assert straight_history.column("loss_total") == resumed_history.column("loss_total")


class OffsetStep(Step):
    """The default update; the total it checks is shifted by ``offset`` and jumps by ``jump`` at
    ``jump_at``; a component besides the total is huge."""

    def __init__(self, offset, jump_at, jump):
        self.offset, self.jump_at, self.jump, self.calls = offset, jump_at, jump, 0

    def update(self, context, batch, extra):
        self.calls += 1
        losses = context.task.loss(context.forward(batch["image"]), batch)
        shown = losses["total"].detach() + self.offset + (self.jump if self.calls == self.jump_at else 0.0)
        values = context.check({"total": shown, "other": torch.tensor(1e20)})
        context.minimise(losses["total"])
        return {f"loss_{name}": value for name, value in values.items()}


def test_only_the_total_is_guarded_and_only_against_a_positive_level():
    # totals near -1 (a level <= 0) may jump to +500 and other components may be huge ...
    _, history = train_toy(epochs=3, step=OffsetStep(offset=-1.5, jump_at=10, jump=500.0))
    assert len(history) == 3 and history[-1]["loss_other"] == pytest.approx(1e20)
    # ... but a positive level is guarded, also in a custom step
    with pytest.raises(DivergenceError, match=r"epoch 3, step 2 of 4: loss 'total' is"):
        train_toy(epochs=3, step=OffsetStep(offset=0.0, jump_at=10, jump=1e4))


def test_non_finite_validation_predictions_are_divergence(tmp_path):
    train_toy(tmp_path, epochs=1)
    before = (tmp_path / CHECKPOINT_NAME).read_bytes()
    with pytest.raises(DivergenceError, match=r"^training diverged in epoch 2: the validation predictions of 16 of 16 "
                                              r"images are not finite; the last good checkpoint is .*last\.pt "
                                              r"\(epoch 1\); try a lower learning rate"):
        train_toy(tmp_path, epochs=3, task=nan_predictions())  # the resumed call validates epoch 2 first
    assert (tmp_path / CHECKPOINT_NAME).read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == [CHECKPOINT_NAME]


# ---------------------------------------------------------------------------------------- resume checks
def fingerprint(domain):
    return {"kind": "synthetic", "root": None, "split": "train", "domain": domain, "size": 16, "seed": 0}


@pytest.mark.parametrize("head", ["coordinate", "pip"])
def test_resume_on_other_data_is_refused_in_one_short_line(tmp_path, head):
    spec = ModelSpec.from_profile(TINY, head=head, net_stride=16 if head == "pip" else 32,
                                  num_neighbours=4 if head == "pip" else 0)

    def train(domain, epochs=1, data=True, folder="run"):
        faces = SyntheticFaces(domain, 64, length=16, seed=0)
        return train_spec(spec, faces, schedule={**TINY.schedule(), "epochs": epochs}, progress=False,
                          checkpoint_dir=tmp_path / folder, data=fingerprint(domain) if data else None)

    train("studio")
    state = checkpoints.load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME)
    assert state["config"]["data"] == fingerprint("studio")
    with pytest.raises(ValueError) as caught:
        train("wild", epochs=2)
    message = str(caught.value)
    assert "cannot resume: data.domain: stored 'studio', now 'wild'" in message
    assert "\n" not in message and len(message) < 300, message
    _, history = train("studio", epochs=2)  # the same data resumes
    assert len(history) == 2
    # a checkpoint without a fingerprint (written before it existed) resumes when none is given
    train("studio", data=False, folder="old")
    assert "data" not in checkpoints.load_checkpoint(tmp_path / "old" / CHECKPOINT_NAME)["config"]
    _, history = train("studio", epochs=2, data=False, folder="old")
    assert len(history) == 2


def test_fewer_epochs_than_the_checkpoint_holds_are_refused(tmp_path):
    _, history = train_toy(tmp_path, epochs=3)
    with pytest.raises(ValueError) as caught:
        train_toy(tmp_path, epochs=2)
    assert str(caught.value) == (f"{tmp_path / CHECKPOINT_NAME}: holds 3 finished epochs, more than epochs=2; "
                                 f"give epochs >= 3, or another checkpoint_dir")
    task = ToyTask()
    _, again = train_toy(tmp_path, epochs=3, task=task)  # as many: nothing to train, the stored history
    assert task.calls == 0 and again.records == history.records


# ---------------------------------------------------------------------------------------- progress
class RecordingBar(tqdm):
    """A real tqdm bar writing to a string, recording what the loop asks of it."""

    made = []

    def __init__(self, *args, **kwargs):
        kwargs.update(file=io.StringIO(), disable=False)
        self.events = []
        super().__init__(*args, **kwargs)
        RecordingBar.made.append(self)

    def reset(self, total=None):
        self.events.append(("reset", self.n, total))
        super().reset(total=total)

    def set_description(self, desc=None, refresh=True):
        self.events.append(("description", desc))
        super().set_description(desc, refresh)

    def close(self):
        self.events.append(("close", self.n, self.total))
        super().close()


def test_the_progress_bar_counts_the_steps_of_each_epoch(tmp_path, monkeypatch):
    RecordingBar.made = []
    monkeypatch.setattr(loop, "tqdm", RecordingBar)
    train_toy(tmp_path, epochs=1, progress=True)
    train_toy(tmp_path, epochs=3, progress=True)  # resumed: epochs 2 and 3
    events = RecordingBar.made[-1].events
    assert [e for e in events if e[0] != "description"] == [("reset", 0, 4), ("reset", 4, 4), ("close", 4, 4)]
    assert [e[1] for e in events if e[0] == "description"] == ["epoch 2/3", "epoch 3/3"]


def test_a_long_projected_run_is_announced_once(monkeypatch, capsys):
    monkeypatch.setattr(loop, "PROJECTION_WARNING_S", 0.0)  # every run is "long"
    line = (r"projected training time: about \S+ (s|min|h) \(3 epochs x 4 steps at \S+ s per step on cpu\); "
            r"these settings are meant for a GPU")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_toy(epochs=3)
    messages = [str(w.message) for w in caught if "projected" in str(w.message)]
    assert len(messages) == 1 and re.fullmatch(line, messages[0]), messages
    capsys.readouterr()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_toy(epochs=3, progress=True)
    written = [text for text in capsys.readouterr().out.splitlines() if "projected" in text]
    assert len(written) == 1 and re.fullmatch(line, written[0]), written
    assert not [w for w in caught if "projected" in str(w.message)]
    monkeypatch.setattr(loop, "PROJECTION_WARNING_S", 3600.0)  # a short run says nothing
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        train_toy(epochs=3)
    assert not [w for w in caught if "projected" in str(w.message)]


def test_a_run_removes_the_temporaries_of_killed_writers_at_its_start(tmp_path, monkeypatch):
    """A ``kill -9`` during a save leaves ``.last.pt.<pid>.tmp``; the next run removes it before its
    first epoch (checked by failing that epoch's first step)."""
    import subprocess

    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    stale = tmp_path / f".{CHECKPOINT_NAME}.{dead.pid}.tmp"
    stale.write_bytes(b"x" * 1000)
    with pytest.raises(DivergenceError):
        train_toy(tmp_path, epochs=1, task=spike_task(1, factor=1e20))
    assert not stale.exists() and not (tmp_path / CHECKPOINT_NAME).exists()
