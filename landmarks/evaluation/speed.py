"""Inference speed: images per second of a detector *including* decoding (Table 8 of the ECCV draft of
PIPNet, :cite:p:`jin2020pipnet`).

A detector whose task is ``None`` times the network alone (the "bare trunk" row). Timings on a
shared machine are noisy; :func:`speed_rounds` interleaves the detectors in rounds and
:meth:`SpeedRounds.paired_ratio` compares them within each round (median over rounds)::

    measured = speed_rounds(head_models(), batches=(1,), size=256, seconds=0.5, rounds=5)
    measured.paired_ratio("bare trunk")   # {("PIP Net (stride 32)", 1): 0.97, ...}
"""
from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from typing import Any
from typing import Mapping

import torch

from landmarks.codecs.pip import neighbour_indices
from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask
from landmarks.data.shape_model import default_shape_model
from landmarks.detector import Detector
from landmarks.models import ResNetBackbone, coordinate_net, heatmap_net, pipnet


@torch.inference_mode()
def images_per_second(detector: Detector, batch: int, size: int, device: str = "cpu", seconds: float = 2.0,
                      warmup: bool = True, min_steps: int = 3) -> float:
    """Run ``detector`` (network and decoder, or the network alone when its task is ``None``) on
    random images for ``seconds`` and at least ``min_steps`` batches, after one untimed batch when
    ``warmup`` (first-call allocations and kernel selection)."""
    images = torch.rand(batch, 3, size, size, device=device)

    def step() -> None:
        outputs = detector.outputs(images)
        if detector.task is not None:
            detector.decode(outputs, images)

    if warmup:
        step()
    if device == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < min_steps:
        step()
        done += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return done * batch / (time.perf_counter() - start)


@dataclass
class SpeedRounds:
    """Images/s of every ``(name, batch)`` in every round of an interleaved measurement.

    A *round* times every detector back to back (for one batch size after another), so the
    measurements of one round saw the machine in about the same state. On a shared machine a burst
    of load can halve the rate of whatever runs during it; comparing models within a round
    (:meth:`ratios`) and taking the median over rounds (:meth:`paired_ratio`) keeps such bursts
    out of the comparison, where the best or mean rate per model would not.
    """

    rates: dict[tuple[str, int], list[float]]

    @property
    def rounds(self) -> int:
        return min(len(values) for values in self.rates.values())

    def best(self) -> dict[tuple[str, int], float]:
        """The highest rate of each ``(name, batch)`` over the rounds."""
        return {key: max(values) for key, values in self.rates.items()}

    def median(self) -> dict[tuple[str, int], float]:
        """The median rate of each ``(name, batch)`` over the rounds."""
        return {key: statistics.median(values) for key, values in self.rates.items()}

    def ratios(self, reference: str) -> dict[tuple[str, int], list[float]]:
        """Round by round, each rate divided by ``reference``'s rate at that batch in the same round."""
        names = {name for name, _ in self.rates}
        if reference not in names:
            raise KeyError(f"reference {reference!r} was not measured; measured: {sorted(names)}")
        return {(name, batch): [rate / base for rate, base in zip(values, self.rates[reference, batch])]
                for (name, batch), values in self.rates.items()}

    def paired_ratio(self, reference: str) -> dict[tuple[str, int], float]:
        """The median over rounds of :meth:`ratios`: each model's speed as a multiple of ``reference``'s."""
        return {key: statistics.median(values) for key, values in self.ratios(reference).items()}

    def table(self, reference: str, label: str = "model", ratio_label: str | None = None) -> str:
        """A text table: per model and batch size, the median images/s, the :meth:`paired_ratio` to
        ``reference`` and the lowest and highest round's ratio."""
        batches = sorted({batch for _, batch in self.rates})
        names = list(dict.fromkeys(name for name, _ in self.rates))
        width = max(len(label), *(len(name) for name in names)) + 2
        ratio_label = ratio_label or f"x {reference}"[:10]
        header = f"{label:{width}s}" + "".join(f"{f'batch {b}':>11s}{ratio_label:>11s}{'range':>12s}" for b in batches)
        rates, ratio, ratios = self.median(), self.paired_ratio(reference), self.ratios(reference)
        lines = [header, "-" * len(header)]
        for name in names:
            row = f"{name:{width}s}"
            for batch in batches:
                spread = ratios[name, batch]
                row += f"{rates[name, batch]:11.1f}{ratio[name, batch]:11.2f}{f'{min(spread):.2f}-{max(spread):.2f}':>12s}"
            lines.append(row)
        return "\n".join(lines)


def speed_rounds(detectors: Mapping[str, Detector], batches: tuple[int, ...] = (1,), size: int = 256,
                 device: str = "cpu", seconds: float = 2.0, rounds: int = 3, min_steps: int = 3) -> SpeedRounds:
    """Time every ``name -> detector`` at every batch size in ``rounds`` interleaved rounds.

    Every detector first runs one untimed batch of each size (warm-up). Then each round measures
    every detector once (:func:`images_per_second`: ``seconds`` and at least ``min_steps``
    batches), back to back; round ``r`` starts with the ``r``-th detector (the order rotates), so no
    detector always runs first or right after the slowest one.
    """
    if rounds < 1:
        raise ValueError(f"rounds must be at least 1, got {rounds}")
    names = list(detectors)
    rates: dict[tuple[str, int], list[float]] = {(name, b): [] for name in names for b in batches}
    for detector in detectors.values():
        detector.eval().to(device)
    for batch in batches:
        for detector in detectors.values():
            images_per_second(detector, batch, size, device, seconds=0.0, warmup=False, min_steps=1)
    for r in range(rounds):
        order = names[r % len(names):] + names[:r % len(names)]
        for batch in batches:
            for name in order:
                rates[name, batch].append(images_per_second(detectors[name], batch, size, device, seconds,
                                                            warmup=False, min_steps=min_steps))
    return SpeedRounds(rates)


def speed_table(detectors: Mapping[str, Detector], batches: tuple[int, ...] = (1,), size: int = 256,
                device: str = "cpu", seconds: float = 2.0, rounds: int = 3,
                summary: str = "best") -> dict[tuple[str, int], float]:
    """Images/s of every ``name -> detector`` at every batch size, over interleaved rounds
    (:func:`speed_rounds`): each detector's best round (``summary="best"``) or its median round
    (``"median"``). For ratios between models use :meth:`SpeedRounds.paired_ratio` instead.
    """
    measured = speed_rounds(detectors, batches, size, device, seconds, rounds)
    if summary == "best":
        return measured.best()
    if summary == "median":
        return measured.median()
    raise ValueError(f"summary must be 'best' or 'median', got {summary!r}")


def head_models(num_points: int = 68, depth: int = 18, width: float = 1.0) -> dict[str, Detector]:
    """The bare trunk and the heads of Table 8, untrained: ``name -> Detector`` (the trunk's task is ``None``).

    Speed does not depend on the weights; the task decodes (and, for PIP Net, merges neighbours).
    """
    if num_points == 68:
        face = torch.as_tensor(default_shape_model().mean, dtype=torch.float32)
    else:  # any other layout: a fixed random face is enough to time the neighbour merging
        face = torch.rand(num_points, 2, generator=torch.Generator().manual_seed(0))
    nb = min(10, num_points - 1)
    neighbours = neighbour_indices(face, nb)
    networks = {
        "bare trunk": (ResNetBackbone(depth, width), None),
        "PIP Net (stride 32)": (pipnet(num_points, depth, width, 32, nb), PIPTask(32, neighbours)),
        "Map Net (stride 4)": (heatmap_net(num_points, depth, width, net_stride=4), HeatmapTask(4)),
        "Map Net (stride 2)": (heatmap_net(num_points, depth, width, net_stride=2), HeatmapTask(2)),
        "Map Net (stride 1)": (heatmap_net(num_points, depth, width, net_stride=1), HeatmapTask(1)),
        "Coord Net": (coordinate_net(num_points, depth, width), CoordinateTask()),
    }
    return {name: Detector(model, task, layout=None) for name, (model, task) in networks.items()}


# ------------------------------------------------------------------------------ inference variants
class _Timed:
    """What :func:`speed_rounds` times: ``outputs`` then ``decode``, here the whole of a prediction."""

    task = True

    def __init__(self, run) -> None:
        self.run = run

    def eval(self) -> "_Timed":
        return self

    def to(self, device) -> "_Timed":
        return self

    def outputs(self, images: torch.Tensor):
        return self.run(images)

    def decode(self, outputs, images: torch.Tensor):
        return outputs


def inference_variants(detector: Detector, onnx_path=None) -> dict[str, Any]:
    """``name -> timed object`` for :func:`speed_rounds`: ``detector`` on the CPU in PyTorch's default
    memory layout and in channels-last (a copy of its weights; what :meth:`Detector.predict` uses on a
    CPU), and, with ``onnx_path``, the graph :meth:`Detector.export_onnx` writes there, in onnxruntime."""
    from landmarks.detector import build_network

    detector.eval().to("cpu")
    found: dict[str, Any] = {"default layout": _Timed(lambda images: detector.landmarks(images))}
    copy = Detector(build_network(detector.architecture), detector.task, detector.image_size, detector.layout)
    copy.model.load_state_dict(detector.model.state_dict())
    copy.model.eval().to(memory_format=torch.channels_last)
    found["channels-last"] = _Timed(lambda images: copy.landmarks(images.contiguous(memory_format=torch.channels_last)))
    if onnx_path is not None:
        import onnxruntime

        session = onnxruntime.InferenceSession(str(detector.export_onnx(onnx_path)), providers=["CPUExecutionProvider"])
        found["onnxruntime"] = _Timed(lambda images: session.run(["landmarks"], {"images": images.numpy()})[0])
    return found


# ------------------------------------------------------------------------------ an epoch against its steps
def epoch_against_steps(detector: Detector, data, batch_size: int, lr: float = 1e-4) -> dict[str, float]:
    """Seconds of one training epoch over ``data`` (a ``DataLoader`` in the main process, one Adam step
    per full batch) and of as many steps on one batch held in memory: their ratio is what data
    loading adds to an epoch. Trains ``detector`` (use a throwaway one)."""
    from landmarks.evaluation.loop import loader

    model, task = detector.model.train(), detector.task
    optimiser = torch.optim.Adam(model.parameters(), lr=lr)

    def step(batch) -> None:
        optimiser.zero_grad()
        task.loss(model(batch["image"]), batch)["total"].backward()
        optimiser.step()

    start, steps, first = time.perf_counter(), 0, None
    for batch in loader(data, batch_size, drop_last=True):
        step(batch)
        first = first or batch
        steps += 1
    epoch = time.perf_counter() - start
    if first is None:
        raise ValueError(f"no full batch of {batch_size} in {len(data)} samples")
    start = time.perf_counter()
    for _ in range(steps):
        step(first)
    return {"epoch": epoch, "steps alone": time.perf_counter() - start, "steps": float(steps)}
