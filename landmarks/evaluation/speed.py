"""Inference speed: images per second of a model *including* decoding (PIPNet paper, Table 8)."""
from __future__ import annotations

import time
from typing import Any, Mapping

import torch
from torch import nn

from landmarks.models import ResNetBackbone, coordinate_net, heatmap_net, pipnet
from landmarks.codecs.pip import neighbour_indices
from landmarks.data.shape_model import default_shape_model
from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask


@torch.inference_mode()
def images_per_second(model: nn.Module, task: Any, batch: int, size: int, device: str = "cpu",
                      seconds: float = 2.0) -> float:
    """Run ``model`` (and ``task.predict`` when a task is given) on random images for ``seconds``."""
    images = torch.rand(batch, 3, size, size, device=device)
    sample = {"image": images}

    def step() -> None:
        outputs = model(images)
        if task is not None:
            task.predict(outputs, sample)

    step()  # warm-up: first-call allocations and kernel selection
    if device == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < 3:
        step()
        done += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return done * batch / (time.perf_counter() - start)


def speed_table(models: Mapping[str, tuple[nn.Module, Any]], batches: tuple[int, ...] = (1,), size: int = 256,
                device: str = "cpu", seconds: float = 2.0, rounds: int = 3) -> dict[tuple[str, int], float]:
    """Best images/s of every ``name -> (model, task)`` at every batch size.

    Rounds interleave the models, so a burst of load on the machine hits all of them alike, and
    each model keeps its best round.
    """
    rates = {(name, b): 0.0 for name in models for b in batches}
    for model, _ in models.values():
        model.eval().to(device)
    for _ in range(rounds):
        for batch in batches:
            for name, (model, task) in models.items():
                rates[name, batch] = max(rates[name, batch],
                                         images_per_second(model, task, batch, size, device, seconds))
    return rates


def head_models(num_points: int = 68, depth: int = 18, width: float = 1.0) -> dict[str, tuple[nn.Module, Any]]:
    """The bare trunk and the heads of Table 8, untrained: ``name -> (model, task or None)``.

    Speed does not depend on the weights; the task decodes (and, for PIP Net, merges neighbours).
    """
    if num_points == 68:
        face = torch.as_tensor(default_shape_model().mean, dtype=torch.float32)
    else:  # any other layout: a fixed random face is enough to time the neighbour merging
        face = torch.rand(num_points, 2, generator=torch.Generator().manual_seed(0))
    nb = min(10, num_points - 1)
    neighbours = neighbour_indices(face, nb)
    return {
        "bare trunk": (ResNetBackbone(depth, width), None),
        "PIP Net (stride 32)": (pipnet(num_points, depth, width, 32, nb), PIPTask(32, neighbours)),
        "Map Net (stride 4)": (heatmap_net(num_points, depth, width, net_stride=4), HeatmapTask(4)),
        "Map Net (stride 2)": (heatmap_net(num_points, depth, width, net_stride=2), HeatmapTask(2)),
        "Map Net (stride 1)": (heatmap_net(num_points, depth, width, net_stride=1), HeatmapTask(1)),
        "Coord Net": (coordinate_net(num_points, depth, width), CoordinateTask()),
    }
