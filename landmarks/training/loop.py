"""The book's one training loop, the same for every head.

A *model* maps images ``(B, 3, H, W)`` to a dict of raw output tensors; a *task* (any object with
the two methods of :class:`Task`) knows what those outputs mean: it turns a batch into targets and a
loss, and decodes outputs into landmarks. :func:`fit` trains any model with any task::

    history = fit(detector, train_set, val_set, epochs=8, batch_size=32, lr=1e-3,
                  decay_epochs=(6,), checkpoint_dir="runs/pip")
    history.plot()
    results = evaluate(detector, test_set)   # landmarks.evaluation.loop: NME, FR@0.1, AUC@0.1

What :func:`fit` does
---------------------
- Adam (``lr``, ``weight_decay``) with step decay (``MultiStepLR``: the rate is multiplied by
  ``decay`` after each epoch in ``decay_epochs``).
- Seeding: at the start of epoch ``e`` on process ``rank`` the torch, NumPy and Python RNGs, and the
  generator that seeds the data-loading workers, are reseeded from ``(seed, e, rank)``; the order of
  the training samples is a permutation drawn from ``(seed, e)`` (``DistributedSampler``, also with a
  single process). PyTorch seeds torch, NumPy and ``random`` in every worker from that generator.
  The randomness of an epoch therefore depends on nothing that happened before it.
- Per-epoch history: the mean of every loss component, the learning rate, the epoch time, the
  time spent waiting for data, images per second and, with ``val_data``, NME / FR / AUC.
- NaN guard: a NaN or infinite loss stops the run with ``FloatingPointError`` naming epoch, step and
  component. Beside it a divergence guard watches the loss ``total`` (:meth:`StepContext.check`, so
  the default and any custom :class:`Step` alike): a finite value above ``DIVERGENCE_LIMIT`` (1e12),
  or, after ``DIVERGENCE_WARMUP`` steps of the call, more than ``DIVERGENCE_RATIO`` (1e3) times its
  running level (the median of the last ``DIVERGENCE_WINDOW`` values, when that median is positive),
  stops the run with :class:`DivergenceError` (a ``FloatingPointError``), as do non-finite
  validation predictions. Its message names epoch and step, the last good checkpoint (the one of the
  last finished epoch, which is left as it was) and suggests a lower learning rate. The guard only
  reads the losses, keeps nothing in checkpoints and starts afresh in a resumed call.
- ``checkpoint_dir``: ``last.pt`` is replaced atomically after every epoch; with ``resume=True`` a
  later call continues from it (and may ask for more epochs than the first one did; as many is a
  finished run: nothing is trained and the stored history is returned; fewer is refused). A resume
  with other settings (``data``, the fingerprint of the training data, among them) is refused with
  one line naming what differs.
- Progress: a tqdm bar per epoch (``epoch k/N``, this epoch's steps) whose postfix shows the loss
  and the projected time left of the call. After a warm-up step and 3 timed steps, if that
  projection exceeds ``PROJECTION_WARNING_S`` (an hour), one line says so, e.g. ``projected training
  time: about 73 h (60 epochs x 1200 steps at 3.6 s per step on cpu); these settings are meant for
  a GPU`` (written under the bar, or a warning with ``progress=False``).
- ``records_per_epoch=R``: the history gets ``R`` records per epoch, each with the loss means over
  its part of the epoch (``epoch`` is then fractional: 0.2, 0.4, ...); only the last is validated.
- ``amp=True`` on CUDA: ``torch.autocast`` in float16 with a ``GradScaler``. On the CPU it is
  ignored with a warning (bfloat16 autocast on CPUs without bfloat16 units is slower than float32
  and changes the numbers), so CPU runs stay float32 and reproducible.
- Launched by ``torchrun`` (``WORLD_SIZE > 1`` in the environment) the same call trains with
  ``DistributedDataParallel``: gloo on the CPU, NCCL on GPUs (one per process, ``LOCAL_RANK``),
  ``batch_size`` images *per process*, the loss means averaged over processes, buffers (batch-norm
  statistics) copied from rank 0 after every epoch, validation and checkpoints on rank 0 only.
  If one process raises (a NaN loss), torchrun stops the others.

What an *exact* resume needs
----------------------------
A run stopped after epoch ``k`` and resumed gives the same weights, bit for bit, as one that never
stopped, because each epoch's randomness is seeded from ``(seed, epoch, rank)`` and the checkpoint
holds everything else that changes (weights, Adam moments and step counts, scheduler, scaler). This
holds when the resumed call uses

- the same ``num_workers`` (which worker loads which sample, hence each sample's random
  augmentation, depends on it) and ``persistent_workers=False``: persistent workers keep their RNGs
  from the first epoch *of the call*, so after a resume they are seeded differently (sample order
  and weights-side state are still restored; only worker-side augmentation differs);
- the same device, thread count and library versions: on the CPU PyTorch's kernels are deterministic
  for a fixed number of threads; on CUDA pass ``deterministic=True`` and set the environment variable
  ``CUBLAS_WORKSPACE_CONFIG=:4096:8`` before CUDA starts;
- the same world size under ``torchrun`` (the configuration check refuses a different one).

The checkpoint also stores the RNG states at the end of the epoch, for inspection; resuming does not
need them because of the per-epoch seeding.

Other updates: a :class:`Step`
------------------------------
What :func:`fit` does with one batch is a :class:`Step`. The default computes the task's loss, runs
the backward pass and takes one step of fit's Adam. ``fit(..., step=...)`` replaces it with
something else that trains alongside the network, e.g. the generator-and-discriminator update of
:class:`landmarks.laplacekl.adversarial.AdversarialStep`, and keeps everything else of the loop:
the per-epoch seeding, the NaN guard (:meth:`StepContext.check`), the history, atomic per-epoch
checkpoints and exact resumption. A step may

- draw a second stream of data (``step.extra_data``, e.g. unlabelled images): ``batch_size``
  samples per training batch, in shuffled passes whose order is drawn from ``(seed, epoch)``, so
  that stream too restarts identically in every epoch, resumed or not;
- own more state than the network (a discriminator and its optimiser): ``state_dict()`` goes into
  every checkpoint and ``load_state_dict()`` gets it back on resumption;
- choose the network's optimiser (``optimizer()``, e.g. Adam with other betas) and log any number
  (``update`` returns the record's values of one batch; ``"loss_total"`` is required).
"""
from __future__ import annotations

import itertools
import math
import os
import random
import statistics
import time
import warnings
from collections import deque
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Iterator, Mapping, Protocol, Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler
from tqdm.auto import tqdm

from landmarks.data.layouts import Layout
from landmarks.evaluation.loop import evaluate, layout_for, loader as make_loader, predictions, to_device
from landmarks.training.checkpoints import (FORMAT, atomic_save, config_differences, describe_differences,
                                            load_checkpoint, normalise_config, provenance, remove_stale_temporaries)

if TYPE_CHECKING:
    from landmarks.detector import Detector, ModelSpec

__all__ = ["Task", "History", "Step", "StepContext", "fit", "train_spec", "loader_throughput", "seed_everything",
           "CHECKPOINT_NAME", "DivergenceError"]

#: File name of the training checkpoint inside ``checkpoint_dir``.
CHECKPOINT_NAME = "last.pt"
#: Settings that may change between a run and its resumption (the others must match the checkpoint).
RESUMABLE_CHANGES = ("epochs", "num_workers", "persistent_workers", "device", "amp", "deterministic",
                     "val_every", "records_per_epoch")
#: Divergence guard: a finite loss ``total`` above this stops the run at once.
DIVERGENCE_LIMIT = 1e12
#: Divergence guard: ``total`` more than this many times its running level stops the run ...
DIVERGENCE_RATIO = 1e3
#: ... the running level being the median of this many last values of ``total`` ...
DIVERGENCE_WINDOW = 50
#: ... once this many have been seen in the call.
DIVERGENCE_WARMUP = 8
#: A projected training time (seconds) above which fit says so once, early in the call.
PROJECTION_WARNING_S = 3600.0
#: Steps of the call before the projection: the first is a warm-up, the others are timed.
PROJECTION_STEPS = 4


class DivergenceError(FloatingPointError):
    """The loss ran away (far above its running level) or validation predicted non-finite points."""


class Task(Protocol):
    """What :func:`fit` and :func:`evaluate` need to know about a head."""

    def loss(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        """Scalar loss components; ``"total"`` is the one minimised, the others are logged."""

    def predict(self, outputs: dict[str, Tensor], batch: dict[str, Any]) -> Tensor:
        """Decoded landmarks ``(B, N, 2)`` in pixel coordinates of the batch's images."""


# ---------------------------------------------------------------------------------------- history
@dataclass
class History:
    """One record (a flat dict of numbers) per finished epoch.

    Keys: ``epoch`` (1-based), ``lr``, ``seconds`` (training part of the epoch), ``data_seconds``
    (of which waiting for the loader), ``images_per_s``, ``loss_<component>`` for every loss
    component and, on validated epochs, ``val_nme``, ``val_fr``, ``val_auc`` (fractions).
    """

    records: list[dict[str, float]] = field(default_factory=list)

    def append(self, record: Mapping[str, float]) -> None:
        self.records.append(dict(record))

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, index: int) -> dict[str, float]:
        return self.records[index]

    def __iter__(self) -> Iterator[dict[str, float]]:
        return iter(self.records)

    def keys(self) -> list[str]:
        """Every key that occurs, in order of first appearance."""
        return list(dict.fromkeys(key for record in self.records for key in record))

    def column(self, key: str) -> list[float]:
        """The values of ``key`` epoch by epoch (NaN where an epoch lacks it)."""
        return [float(record.get(key, math.nan)) for record in self.records]

    def to_dict(self) -> dict[str, list[dict[str, float]]]:
        return {"records": [dict(record) for record in self.records]}

    @classmethod
    def from_dict(cls, state: Mapping[str, Any] | None) -> "History":
        return cls([dict(record) for record in (state or {}).get("records", [])])

    def plot(self, ax=None, losses: Sequence[str] | None = None, metric: str = "val_nme"):
        """Loss components (log scale, left axis) and ``metric`` in percent (right axis) per epoch.

        Returns the left axes; the right one is ``ax.right`` when ``metric`` was drawn.
        """
        import matplotlib.pyplot as plt

        if ax is None:
            ax = plt.subplots(figsize=(6, 3.5))[1]
        epochs = self.column("epoch")
        names = losses if losses is not None else [k[5:] for k in self.keys() if k.startswith("loss_")]
        for name in names:
            ax.plot(epochs, self.column(f"loss_{name}"), marker="o", ms=3, label=f"loss {name}")
        ax.set_yscale("log")
        ax.set_xlabel("epoch")
        ax.set_ylabel("training loss")
        handles, labels = ax.get_legend_handles_labels()
        values = self.column(metric)
        if any(math.isfinite(v) for v in values):
            right = ax.twinx()
            right.plot(epochs, [100 * v for v in values], "k--", marker="s", ms=3, label=metric.replace("_", " "))
            right.set_ylabel(f"{metric.replace('_', ' ')} (%)")
            extra_handles, extra_labels = right.get_legend_handles_labels()
            handles, labels = handles + extra_handles, labels + extra_labels
            ax.right = right
        if handles:
            ax.legend(handles, labels, fontsize="small")
        return ax


# ---------------------------------------------------------------------------------------- seeding
def seed_everything(seed: int) -> None:
    """Seed Python's ``random``, NumPy's global RNG and torch (CPU and every GPU)."""
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _epoch_seed(seed: int, epoch: int, rank: int) -> int:
    """A 63-bit seed for one epoch of one process, well mixed by NumPy's ``SeedSequence``."""
    return int(np.random.SeedSequence([seed, epoch, rank]).generate_state(1, np.uint64)[0]) >> 1


def _stream_seeds(seed: int, epoch: int, rank: int) -> tuple[int, int]:
    """Seeds of a step's extra data in one epoch: the sample order (the same on every process, which
    each take their share of it) and the data-loading workers of this process."""
    order = int(np.random.SeedSequence([seed, epoch]).generate_state(1, np.uint32)[0])
    workers = int(np.random.SeedSequence([seed, epoch, rank, 1]).generate_state(1, np.uint64)[0]) >> 1
    return order, workers


def _rng_states() -> dict[str, Any]:
    """The current RNG states, in types ``torch.load(weights_only=True)`` accepts."""
    numpy_state = np.random.get_state()
    states = {"torch": torch.get_rng_state(), "python": random.getstate(),
              "numpy": [numpy_state[0], torch.from_numpy(numpy_state[1].astype(np.int64)), *numpy_state[2:]]}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


# ---------------------------------------------------------------------------------------- helpers
@dataclass(frozen=True)
class _Process:
    """This process's place in a (possibly single-process) run."""

    rank: int = 0
    local_rank: int = 0
    world_size: int = 1

    @property
    def main(self) -> bool:
        return self.rank == 0

    @property
    def distributed(self) -> bool:
        return self.world_size > 1


def _start_process_group(device: str | torch.device) -> tuple[_Process, torch.device, bool]:
    """Read torchrun's environment; join (or start) the process group when ``WORLD_SIZE > 1``.

    Returns the process description, the device this process trains on and whether this call
    started the group (and so must end it).
    """
    world_size = int(os.environ.get("WORLD_SIZE", "1"))
    device = torch.device(device)
    if world_size == 1:
        return _Process(), device, False
    process = _Process(int(os.environ["RANK"]), int(os.environ.get("LOCAL_RANK", "0")), world_size)
    if device.type == "cuda":
        device = torch.device("cuda", process.local_rank)
        torch.cuda.set_device(device)
    started = not dist.is_initialized()
    if started:
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return process, device, started


def _check_losses(losses: Mapping[str, Tensor], epoch: int, step: int, steps: int,
                  required: Sequence[str] = ("total",)) -> dict[str, float]:
    """The loss components as floats; ``FloatingPointError`` if any is NaN or infinite."""
    missing = [name for name in required if name not in losses]
    if missing:
        raise KeyError(f"the loss returned {sorted(losses)}; it must contain {missing}")
    values = torch.stack([value.detach().float().reshape(()) for value in losses.values()]).cpu().tolist()
    record = dict(zip(losses, values))
    bad = [name for name, value in record.items() if not math.isfinite(value)]
    if bad:
        culprit = next((name for name in bad if name != "total"), bad[0])
        shown = ", ".join(f"{name}={value:.4g}" for name, value in record.items())
        raise FloatingPointError(f"non-finite loss in epoch {epoch + 1}, step {step + 1} of {steps}: "
                                 f"component {culprit!r} is {record[culprit]} ({shown})")
    return record


# ---------------------------------------------------------------------------------------- steps
@dataclass
class StepContext:
    """What a :class:`Step` works with, set up by :func:`fit`.

    ``net`` is the network as trained (wrapped in ``DistributedDataParallel`` under torchrun; the
    wrapper is set after :meth:`Step.bind`), ``model`` the bare one; ``task`` the task whose loss is
    minimised; ``optimizer`` and ``scaler`` fit's own (for ``model``'s parameters). ``epoch``,
    ``index`` and ``steps`` say where the loop is (0-based epoch and batch, batches per epoch).
    """

    net: nn.Module
    model: nn.Module
    task: Task
    optimizer: torch.optim.Optimizer
    scaler: torch.amp.GradScaler
    device: torch.device
    use_amp: bool
    process: _Process
    epoch: int = 0
    index: int = 0
    steps: int = 0
    #: The last checkpoint written or resumed from and its finished epochs (for the divergence message).
    checkpoint: Path | None = None
    checkpoint_epoch: int | None = None
    _totals: deque = field(default_factory=lambda: deque(maxlen=DIVERGENCE_WINDOW), repr=False)
    _seen: int = field(default=0, repr=False)

    def forward(self, images: Tensor) -> dict[str, Tensor]:
        """The network's outputs (under float16 autocast with ``amp``, returned in float32)."""
        with torch.autocast(self.device.type, dtype=torch.float16, enabled=self.use_amp):
            outputs = self.net(images)
        if self.use_amp:
            outputs = {key: value.float() for key, value in outputs.items()}
        return outputs

    def check(self, losses: Mapping[str, Tensor], required: Sequence[str] = ("total",)) -> dict[str, float]:
        """The components as floats; ``FloatingPointError`` naming epoch, batch and the first
        non-finite component, :class:`DivergenceError` if ``total`` ran away (see the module text;
        call it before the update the components drive)."""
        record = _check_losses(losses, self.epoch, self.index, self.steps, required)
        if "total" in record:
            self._watch(record["total"])
        return record

    def _watch(self, total: float) -> None:
        """The divergence guard: compare ``total`` with the median of the recent values, then keep it."""
        level = statistics.median(self._totals) if self._totals else math.nan
        relative = level > 0 and self._seen >= DIVERGENCE_WARMUP and total > DIVERGENCE_RATIO * level
        if relative or abs(total) > DIVERGENCE_LIMIT:
            compared = (f"{total / level:.3g} x its running level {level:.4g} (median of the last "
                        f"{len(self._totals)} steps)" if level > 0 else "")
            if not relative:
                compared = f"beyond the limit {DIVERGENCE_LIMIT:g}" + (f", {compared}" if compared else "")
            raise DivergenceError(self.diverged(f"epoch {self.epoch + 1}, step {self.index + 1} of {self.steps}",
                                                f"loss 'total' is {total:.4g}, {compared}"))
        self._totals.append(total)
        self._seen += 1

    def diverged(self, where: str, what: str) -> str:
        """The message of a :class:`DivergenceError`: where, what, the last good checkpoint, advice."""
        if self.checkpoint is not None and self.checkpoint_epoch is not None:
            kept = f"the last good checkpoint is {self.checkpoint} (epoch {self.checkpoint_epoch})"
        else:
            kept = "no checkpoint was written"
        lr = self.optimizer.param_groups[0]["lr"]
        return (f"training diverged in {where}: {what}; {kept}; try a lower learning rate than lr={lr:g} "
                f"(in a new run: another checkpoint_dir or resume=False)")

    def minimise(self, loss: Tensor) -> None:
        """One step of fit's optimiser on ``loss``: zero the gradients, backward (scaled), step."""
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(loss).backward()
        self.scaler.step(self.optimizer)
        self.scaler.update()

    def synchronise(self, module: nn.Module, parameters: bool = True) -> None:
        """Under torchrun, copy rank 0's parameters (and buffers) of ``module`` to every process."""
        if self.process.distributed:
            for tensor in [*(module.parameters() if parameters else []), *module.buffers()]:
                dist.broadcast(tensor.data, src=0)

    def average_gradients(self, module: nn.Module) -> None:
        """Under torchrun, average the gradients of ``module`` (not the DDP-wrapped network) over processes."""
        if self.process.distributed:
            for parameter in module.parameters():
                if parameter.grad is not None:
                    dist.all_reduce(parameter.grad)
                    parameter.grad /= self.process.world_size


class Step:
    """What :func:`fit` does with one training batch; this default is its usual update.

    Default: ``outputs = net(images)``, the task's loss components (checked for NaN), backward and
    one step of fit's Adam; the record gets ``loss_<component>``. A subclass overrides what differs.
    :func:`fit` calls :meth:`optimizer` and :meth:`bind` once, then (after loading a checkpoint's
    :meth:`state_dict` when it resumes) per epoch :meth:`start_epoch`, :meth:`update` for every
    batch and :meth:`end_epoch`.
    """

    #: A second dataset drawn alongside the training data (``None``: none): :meth:`update` receives a
    #: batch of it (``batch_size`` samples) with every training batch, as ``extra``.
    extra_data: Dataset | None = None

    def optimizer(self, parameters: Sequence[nn.Parameter], lr: float, weight_decay: float) -> torch.optim.Optimizer:
        """The optimiser of the network's parameters (fit adds the step decay)."""
        return torch.optim.Adam(parameters, lr=lr, weight_decay=weight_decay)

    def bind(self, context: StepContext) -> None:
        """Set up what the step owns (move it to ``context.device``, make its optimisers)."""

    def start_epoch(self, context: StepContext) -> None:
        """Called after the network is put in training mode, before the first batch of an epoch."""

    def update(self, context: StepContext, batch: dict[str, Any], extra: dict[str, Any] | None) -> dict[str, float]:
        """Update on one batch; returns the values to average into the history (``"loss_total"`` required)."""
        losses = context.task.loss(context.forward(batch["image"]), batch)
        values = context.check(losses)
        context.minimise(losses["total"])
        return {f"loss_{name}": value for name, value in values.items()}

    def end_epoch(self, context: StepContext) -> None:
        """Called after the last batch of an epoch (e.g. to share batch-norm statistics between processes)."""

    def state_dict(self) -> dict[str, Any]:
        """What a checkpoint must hold besides the network and fit's optimiser to resume exactly."""
        return {}

    def load_state_dict(self, state: Mapping[str, Any]) -> None:
        """Restore :meth:`state_dict` (after :meth:`bind`)."""

    def config(self) -> dict[str, Any]:
        """Settings of the step that a resumed run must share (stored in the checkpoint)."""
        return {}


def _extra_batches(data: Dataset, batch_size: int, seed: int, epoch: int, process: _Process, num_workers: int,
                   pin_memory: bool) -> Iterator[dict[str, Any]]:
    """Endless batches of ``data`` for one epoch: shuffled passes, pass ``k`` in the order
    ``DistributedSampler`` draws from ``(seed, epoch)`` and ``k`` (each process takes its share)."""
    order_seed, worker_seed = _stream_seeds(seed, epoch, process.rank)
    sampler = DistributedSampler(data, num_replicas=process.world_size, rank=process.rank, shuffle=True,
                                 seed=order_seed)
    generator = torch.Generator().manual_seed(worker_seed)
    batches = make_loader(data, batch_size, sampler=sampler, num_workers=num_workers, pin_memory=pin_memory,
                          drop_last=len(sampler) >= batch_size, generator=generator)
    for cycle in itertools.count():
        sampler.set_epoch(cycle)
        yield from batches


# ---------------------------------------------------------------------------------------- fit
def fit(detector: "Detector", train_data: Dataset, val_data: Dataset | None = None, *, epochs: int,
        batch_size: int, lr: float, decay_epochs: Sequence[int] = (), decay: float = 0.1, weight_decay: float = 0.0,
        seed: int = 0, checkpoint_dir: str | Path | None = None, resume: bool = True, num_workers: int = 0,
        persistent_workers: bool = False, drop_last: bool = True, device: str | torch.device = "cpu",
        amp: bool = False, deterministic: bool = False, layout: str | Layout | None = None, norm: str | None = None,
        val_every: int = 1, progress: bool = True, config: Mapping[str, Any] | None = None,
        frozen_batchnorm: bool = False, loss: Task | None = None, step: Step | None = None,
        records_per_epoch: int = 1, data: Mapping[str, Any] | None = None) -> History:
    """Train ``detector``'s network in place on ``train_data`` for ``epochs`` epochs; return the history.

    Args:
        detector: a :class:`~landmarks.detector.Detector`; its network is moved to ``device``, its task
            computes the loss and decodes the validation predictions.
        train_data, val_data: datasets of sample dicts (``"image"``, ``"landmarks"``, ``"box"``, ...).
        epochs: total number of epochs of the run (a resumed run counts the epochs already done: as
            many as the checkpoint holds trains nothing and returns its history, fewer is refused).
        batch_size: images per step and process; lr, decay_epochs, decay, weight_decay: Adam with
            step decay after the listed epochs.
        seed: seeds sample order, augmentation and any randomness of the model (see the module text).
        checkpoint_dir: where ``last.pt`` goes after every epoch; ``resume`` continues from it.
        num_workers, persistent_workers: data-loading processes (``pin_memory`` is used on CUDA).
        drop_last: skip the last incomplete batch of an epoch (batch norm dislikes tiny batches).
        amp: mixed precision on CUDA (ignored with a warning on the CPU).
        deterministic: ``torch.use_deterministic_algorithms`` for the duration of the call.
        layout, norm: for the validation NME (layout defaults to ``val_data.layout``).
        val_every: validate every ``val_every`` epochs and after the last one.
        progress: a tqdm bar and one summary line per epoch (rank 0 only).
        config: extra settings to store in checkpoints (the model's and data's description);
            a resumed run must pass the same.
        frozen_batchnorm: keep every batch-norm layer in evaluation mode (its running statistics
            fixed, its scale and shift still trained). Needed when all images of a batch are alike,
            e.g. the black-image experiment, where batch statistics have no variance and batch norm
            divides by sqrt(eps).
        loss: a task whose ``loss`` is minimised instead of the detector's own (e.g. the curriculum
            loss of PIPNet's self-training); validation still decodes with the detector's task.
        step: what to do with one batch (default :class:`Step`: the loss, backward, one step of
            Adam); see "Other updates" in the module text.
        records_per_epoch: history records per epoch (more than one: loss curves of short runs).
        data: a fingerprint of the training data (e.g. ``{"kind": "synthetic", "split": "train",
            "size": 200, "seed": 0}``), stored in checkpoints: a resume with another is refused.

    Raises:
        FloatingPointError: a loss component became NaN or infinite; :class:`DivergenceError` (a
            subclass) when the loss ran away or validation predicted non-finite landmarks.
        ValueError: the checkpoint in ``checkpoint_dir`` was made with other settings, or holds more
            finished epochs than ``epochs``.
    """
    model, task = detector.model, loss if loss is not None else detector.task
    if records_per_epoch < 1:
        raise ValueError(f"records_per_epoch must be >= 1, got {records_per_epoch}")
    process, device, started_group = _start_process_group(device)
    previous_determinism = (torch.are_deterministic_algorithms_enabled(),
                            torch.is_deterministic_algorithms_warn_only_enabled())
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)
        torch.backends.cudnn.benchmark = False
    try:
        settings = dict(epochs=epochs, batch_size=batch_size, lr=lr, decay_epochs=list(decay_epochs), decay=decay,
                        weight_decay=weight_decay, seed=seed, drop_last=drop_last, world_size=process.world_size,
                        model=type(model).__name__, task=type(task).__name__, num_workers=num_workers,
                        persistent_workers=persistent_workers, device=str(device), amp=amp,
                        deterministic=deterministic, val_every=val_every, frozen_batchnorm=frozen_batchnorm,
                        records_per_epoch=records_per_epoch, user=normalise_config(config))
        if data is not None:  # absent otherwise, so that checkpoints from before the fingerprint still resume
            settings["data"] = normalise_config(data)
        if step is not None:
            settings["step"] = normalise_config({"class": f"{type(step).__module__}:{type(step).__qualname__}",
                                                 **step.config()})
        return _fit(detector, task, step if step is not None else Step(), train_data, val_data, settings, process,
                    device,
                    checkpoint_dir=Path(checkpoint_dir) if checkpoint_dir is not None else None, resume=resume,
                    layout=layout, norm=norm, progress=progress)
    finally:
        torch.use_deterministic_algorithms(previous_determinism[0], warn_only=previous_determinism[1])
        if started_group:
            dist.destroy_process_group()


def _fit(detector: "Detector", task: Task, update: Step, train_data: Dataset, val_data: Dataset | None,
         settings: dict[str, Any],
         process: _Process, device: torch.device, *, checkpoint_dir: Path | None, resume: bool,
         layout: str | Layout | None, norm: str | None, progress: bool) -> History:
    s, model = settings, detector.model
    use_amp = s["amp"] and device.type == "cuda"
    if s["amp"] and not use_amp:
        warnings.warn("amp=True is ignored on the CPU: training in float32 (see landmarks.training.loop)", stacklevel=3)
    val_layout = layout_for(layout, val_data, detector) if val_data is not None else None

    model.to(device)
    parameters = [p for p in model.parameters() if p.requires_grad]
    optimizer = update.optimizer(parameters, s["lr"], s["weight_decay"])
    scheduler = torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=s["decay_epochs"], gamma=s["decay"])
    scaler = torch.amp.GradScaler(device.type, enabled=use_amp)
    history, start_epoch, step = History(), 0, 0
    context = StepContext(model, model, task, optimizer, scaler, device, use_amp, process)
    update.bind(context)

    path = checkpoint_dir / CHECKPOINT_NAME if checkpoint_dir is not None else None
    if path is not None and process.main:
        remove_stale_temporaries(path)  # what writers killed outright (kill -9) left beside last.pt
    if path is not None and path.exists():
        if resume:
            state = load_checkpoint(path, kind="training", map_location=device)
            # first: fewer epochs also move the decay epochs, which would be named instead
            if state["epoch"] > s["epochs"]:
                raise ValueError(f"{path}: holds {state['epoch']} finished epochs, more than epochs={s['epochs']}; "
                                 f"give epochs >= {state['epoch']}, or another checkpoint_dir")
            differences = config_differences(state["config"], s, ignore=RESUMABLE_CHANGES)
            if differences:
                # other data is reason enough, and what depends on it (a neighbour table) would only lengthen the line
                shown = {key: value for key, value in differences.items() if key.split(".")[0] == "data"} or differences
                more = f"; and {len(differences) - len(shown)} more" if len(shown) < len(differences) else ""
                raise ValueError(f"{path}: cannot resume: {describe_differences(shown)}{more}; "
                                 f"use another checkpoint_dir or resume=False")
            if state["config"]["num_workers"] != s["num_workers"]:
                warnings.warn(f"resuming with num_workers={s['num_workers']} instead of "
                              f"{state['config']['num_workers']}: augmentation will not repeat exactly", stacklevel=3)
            model.load_state_dict(state["model"])
            optimizer.load_state_dict(state["optimizer"])
            scheduler.load_state_dict(state["scheduler"])
            scaler.load_state_dict(state["scaler"])
            update.load_state_dict(state.get("update_step") or {})
            history, start_epoch, step = History.from_dict(state["history"]), state["epoch"], state["step"]
            context.checkpoint, context.checkpoint_epoch = path, start_epoch
        elif process.main:
            warnings.warn(f"resume=False: {path} will be overwritten by a new run", stacklevel=3)

    net = model
    if process.distributed:
        net = nn.parallel.DistributedDataParallel(model, device_ids=[device.index] if device.type == "cuda" else None)
    context.net = net
    sampler = DistributedSampler(train_data, num_replicas=process.world_size, rank=process.rank, shuffle=True,
                                 seed=s["seed"])
    generator = torch.Generator()
    batches = make_loader(train_data, s["batch_size"], sampler=sampler, num_workers=s["num_workers"],
                     persistent_workers=s["persistent_workers"], pin_memory=device.type == "cuda",
                     drop_last=s["drop_last"], generator=generator)
    steps = context.steps = len(batches)
    extra_data = update.extra_data if update.extra_data is not None and len(update.extra_data) > 0 else None
    if steps == 0:
        raise ValueError(f"no training batch: {len(sampler)} samples per process, batch_size={s['batch_size']}, "
                         f"drop_last={s['drop_last']}")

    bar = tqdm(total=steps, disable=not (progress and process.main), dynamic_ncols=True, leave=True)
    clock = _Projection(bar, max(s["epochs"] - start_epoch, 0), steps, device, report=process.main,
                        written=progress and process.main)
    try:
        for epoch in range(start_epoch, s["epochs"]):
            bar.reset(total=steps)
            bar.set_description(f"epoch {epoch + 1}/{s['epochs']}")
            seed_everything(_epoch_seed(s["seed"], epoch, process.rank))
            generator.manual_seed(_epoch_seed(s["seed"], epoch, process.rank))
            sampler.set_epoch(epoch)
            context.epoch = epoch
            extra = None if extra_data is None else _extra_batches(
                extra_data, s["batch_size"], s["seed"], epoch, process, s["num_workers"], device.type == "cuda")
            lr = optimizer.param_groups[0]["lr"]
            try:
                parts = _train_epoch(context, update, batches, extra, clock, s.get("frozen_batchnorm", False),
                                     s.get("records_per_epoch", 1))
            finally:
                if extra is not None:
                    extra.close()
            update.end_epoch(context)
            step += steps
            scheduler.step()
            if process.distributed:  # every rank ends the epoch with rank 0's buffers (batch-norm statistics)
                for buffer in model.buffers():
                    dist.broadcast(buffer, src=0)
            last = epoch + 1 == s["epochs"]
            records = [{"epoch": epoch + 1 if len(parts) == 1 and fraction == 1 else epoch + fraction, "lr": lr, **part}
                       for fraction, part in parts]
            if val_data is not None and ((epoch + 1) % s["val_every"] == 0 or last):
                records[-1].update(_validate(detector, val_data, val_layout, norm, s, context))
            for record in records:
                history.append(record)
            if path is not None and process.main:
                atomic_save({"format": FORMAT, "kind": "training", "epoch": epoch + 1, "step": step,
                             "model": model.state_dict(), "optimizer": optimizer.state_dict(),
                             "scheduler": scheduler.state_dict(), "scaler": scaler.state_dict(),
                             "update_step": update.state_dict(), "rng": _rng_states(), "history": history.to_dict(),
                             "config": s, **provenance()}, path)
                context.checkpoint, context.checkpoint_epoch = path, epoch + 1
            if process.distributed:
                dist.barrier()
            if progress and process.main:
                for record in records:
                    bar.write(_summary_line(record, s["epochs"]))
    finally:
        bar.close()
    return history


def _train_epoch(context: StepContext, update: Step, loader: DataLoader, extra: Iterator[dict[str, Any]] | None,
                 clock: "_Projection", frozen_batchnorm: bool = False,
                 parts: int = 1) -> list[tuple[float, dict[str, float]]]:
    """One pass over ``loader``; for each of ``parts`` consecutive parts of it, the fraction of the
    epoch done at its end and its record: value means, times and throughput (over all processes)."""
    net = context.net
    net.train()
    if frozen_batchnorm:
        for module in net.modules():
            if isinstance(module, nn.modules.batchnorm._BatchNorm):
                module.eval()
    update.start_epoch(context)
    steps = len(loader)
    marks = {round(steps * (k + 1) / parts) for k in range(parts)}
    results: list[tuple[float, dict[str, float]]] = []
    sums: dict[str, float] = {}
    images, data_seconds = 0, 0.0
    start = waiting = time.perf_counter()
    clock.start_epoch()
    for index, batch in enumerate(loader):
        extra_batch = next(extra) if extra is not None else None
        data_seconds += time.perf_counter() - waiting
        batch = to_device(batch, context.device)
        if extra_batch is not None:
            extra_batch = to_device(extra_batch, context.device)
        context.index = index
        values = update.update(context, batch, extra_batch)
        if "loss_total" not in values:
            raise KeyError(f"{type(update).__name__}.update returned {sorted(values)}; it must contain 'loss_total'")
        count = len(batch["image"])
        images += count
        for name, value in values.items():
            sums[name] = sums.get(name, 0.0) + value * count
        clock.step(values["loss_total"])
        if index + 1 in marks:
            results.append(((index + 1) / steps, _part_record(sums, images, time.perf_counter() - start,
                                                              data_seconds, context)))
            sums, images, data_seconds = {}, 0, 0.0
            start = time.perf_counter()
        waiting = time.perf_counter()
    return results


class _Projection:
    """The progress bar's steps and the projected time of the call.

    The first step of the call is a warm-up and the first of every epoch waits for the loader to
    start, so neither is timed; after ``PROJECTION_STEPS - 1`` timed steps the projection of the
    whole call is reported once if it exceeds ``PROJECTION_WARNING_S``, and the bar's postfix
    shows the time left from then on.
    """

    def __init__(self, bar, epochs: int, steps: int, device: torch.device, report: bool, written: bool) -> None:
        self.bar, self.epochs, self.steps, self.device = bar, epochs, steps, device
        self.report, self.written = report, written
        self.done = self.timed = 0
        self.seconds = 0.0
        self.mark: float | None = None
        self.reported = False

    def start_epoch(self) -> None:
        self.mark = None

    def step(self, loss: float) -> None:
        now = time.perf_counter()
        self.done += 1
        if self.mark is not None and self.done > 1:
            self.timed += 1
            self.seconds += now - self.mark
        self.mark = now
        self.bar.update()
        postfix = {"loss": f"{loss:.4g}"}
        if self.timed:
            per_step = self.seconds / self.timed
            postfix["left"] = _duration(per_step * (self.epochs * self.steps - self.done))
            if not self.reported and self.timed >= PROJECTION_STEPS - 1:
                self.reported = True
                self._project(per_step)
        self.bar.set_postfix(postfix, refresh=False)

    def _project(self, per_step: float) -> None:
        total = per_step * self.epochs * self.steps
        if not self.report or per_step * (self.epochs * self.steps - self.done) <= PROJECTION_WARNING_S:
            return
        shown = f"{per_step:.2g}" if per_step < 10 else f"{per_step:.0f}"
        line = (f"projected training time: about {_duration(total)} ({self.epochs} epochs x {self.steps} steps "
                f"at {shown} s per step on {self.device.type})")
        if self.device.type == "cpu":
            line += "; these settings are meant for a GPU"
        if self.written:
            self.bar.write(line)
        else:
            warnings.warn(line, stacklevel=6)  # at the call of fit


def _duration(seconds: float) -> str:
    """``"73 h"``, ``"2.5 h"``, ``"12 min"``, ``"40 s"``, ``"0.02 s"``."""
    if seconds >= 36000:
        return f"{seconds / 3600:.0f} h"
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 60:
        return f"{seconds / 60:.0f} min"
    return f"{seconds:.0f} s" if seconds >= 10 else f"{seconds:.2g} s"


def _part_record(sums: Mapping[str, float], images: int, seconds: float, data_seconds: float,
                 context: StepContext) -> dict[str, float]:
    """Means of the summed values over the images of one part of an epoch, with its times (summed
    over processes; the times are the mean per process)."""
    names = list(sums)
    totals = torch.tensor([sums[name] for name in names] + [images, seconds, data_seconds], dtype=torch.float64)
    if context.process.distributed:
        totals = totals.to(context.device)
        dist.all_reduce(totals)
        totals = totals.cpu()
        totals[-2:] /= context.process.world_size  # mean time per process
    images, seconds, data_seconds = totals[-3:].tolist()
    record = {name: value / images for name, value in zip(names, totals.tolist())}
    record.update(seconds=seconds, data_seconds=data_seconds, images_per_s=images / seconds)
    return record


def _validate(detector: "Detector", data: Dataset, layout: Layout, norm: str | None, s: Mapping[str, Any],
              context: StepContext) -> dict[str, float]:
    """Validation metrics on rank 0, shared with the other ranks; :class:`DivergenceError` (on every
    rank) if the network predicts non-finite landmarks."""
    process = context.process
    metrics: list[Any] = [None]
    if process.main:
        try:
            results = evaluate(detector, data, layout, s["batch_size"], norm, s["num_workers"])
            metrics = [{f"val_{key}": results[key] for key in ("nme", "fr", "auc")}]
        except ValueError:  # the metrics refuse non-finite errors: are the predictions to blame?
            bad = images = 0
            for _, _, points in predictions(detector, data, s["batch_size"], s["num_workers"]):
                images += len(points)
                bad += int((~torch.isfinite(points).flatten(1).all(1)).sum())
            if not bad:
                raise
            metrics = [context.diverged(f"epoch {context.epoch + 1}", f"the validation predictions of {bad} of "
                                        f"{images} images are not finite")]
    if process.distributed:
        dist.broadcast_object_list(metrics, src=0)
    if isinstance(metrics[0], str):
        raise DivergenceError(metrics[0])
    return metrics[0]


def _summary_line(record: Mapping[str, float], epochs: int) -> str:
    epoch = record["epoch"]   # fractional with several records per epoch
    shown = f"{epoch:g}" if float(epoch).is_integer() else f"{epoch:.2f}"
    parts = [f"epoch {shown}/{epochs}", f"loss {record['loss_total']:.4g}"]
    if "val_nme" in record:
        parts.append(f"val NME {100 * record['val_nme']:.2f}% FR {100 * record['val_fr']:.1f}% "
                     f"AUC {record['val_auc']:.3f}")
    parts.append(f"lr {record['lr']:.2g}  {record['seconds']:.1f}s  {record['images_per_s']:.0f} img/s")
    return "  ".join(parts)


# ---------------------------------------------------------------------------------------- data loading
def loader_throughput(dataset: Dataset, batch_size: int, num_workers: int = 0, batches: int = 20,
                      pin_memory: bool = False, warmup: int = 1) -> float:
    """Images per second delivered by a ``DataLoader`` over ``dataset`` alone (no model).

    The first ``warmup`` batches (worker start-up) are not timed; the next ``batches`` are (fewer if
    the dataset runs out). Compare with ``images_per_s`` of a training epoch: if the loader is not
    much faster, training waits for data (see also the history's ``data_seconds``).
    """
    iterator = iter(make_loader(dataset, batch_size, num_workers=num_workers, pin_memory=pin_memory))
    for _ in range(warmup):
        next(iterator, None)
    images, start = 0, time.perf_counter()
    for _, batch in zip(range(batches), iterator):
        images += len(batch["image"])
    seconds = time.perf_counter() - start
    if images == 0:
        raise ValueError(f"no batch left to time: {len(dataset)} samples, batch_size={batch_size}, warmup={warmup}")
    return images / seconds


# ---------------------------------------------------------------------------------------- from a spec
def train_spec(spec: "ModelSpec", train_data: Dataset, val_data: Dataset | None = None, *,
               schedule: Mapping[str, Any], seed: int = 0, modifiers: Sequence[tuple[Any, Mapping[str, Any]]] = (),
               progress: bool = True, data: Mapping[str, Any] | None = None,
               **fit_options: Any) -> tuple["Detector", History]:
    """Build the detector of ``spec`` (neighbours from the training faces' mean face), initialised
    under ``seed``, and train it with ``schedule`` (``profile.schedule()``, keyword arguments of
    :func:`fit`) and the same seed for the data order. A :class:`~landmarks.data.layouts.Layout` given
    as ``layout`` (e.g. one of your own) becomes the detector's as well as the validation's. ``data``:
    a fingerprint of ``train_data`` (e.g. ``{"kind": "synthetic", "root": None, "split": "train",
    "domain": "studio", "size": 200, "seed": 0}``) kept in the checkpoints, so that a resume on other
    data is refused, whatever the head. The detector's crop convention (``box_scale``, ``box_shift``)
    is measured on the training crops (:func:`~landmarks.detector.crop_convention`), so that
    :meth:`~landmarks.detector.Detector.predict` cuts the same crop around a face box. Returns the
    detector and its history."""
    from landmarks.detector import CONVENTION_SAMPLES, build_detector, crop_convention, training_landmarks

    shapes = training_landmarks(train_data) if spec.head == "pip" else None
    scale, shift = crop_convention(shapes if shapes is not None else training_landmarks(train_data, CONVENTION_SAMPLES),
                                   spec.image_size)
    torch.manual_seed(seed)
    detector = build_detector(spec, shapes, modifiers=modifiers, layout=fit_options.get("layout"), box_scale=scale,
                              box_shift=shift)
    options = {**dict(schedule), **fit_options}
    history = fit(detector, train_data, val_data, seed=seed, progress=progress, config=detector.config(),
                  data=data, **options)
    return detector, history
