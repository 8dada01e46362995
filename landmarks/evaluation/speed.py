"""Inference speed: images per second of a detector *including* decoding ({cite:p}`jin2021pipnet`, Table 8).

A detector whose task is ``None`` times the network alone (the "bare trunk" row).
"""
from __future__ import annotations

import time
from typing import Mapping

import torch

from landmarks.codecs.pip import neighbour_indices
from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask
from landmarks.data.shape_model import default_shape_model
from landmarks.detector import Detector
from landmarks.models import ResNetBackbone, coordinate_net, heatmap_net, pipnet


@torch.inference_mode()
def images_per_second(detector: Detector, batch: int, size: int, device: str = "cpu", seconds: float = 2.0) -> float:
    """Run ``detector`` (network and decoder, or the network alone when its task is ``None``) on
    random images for ``seconds``."""
    images = torch.rand(batch, 3, size, size, device=device)

    def step() -> None:
        outputs = detector.outputs(images)
        if detector.task is not None:
            detector.decode(outputs, images)

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


def speed_table(detectors: Mapping[str, Detector], batches: tuple[int, ...] = (1,), size: int = 256,
                device: str = "cpu", seconds: float = 2.0, rounds: int = 3) -> dict[tuple[str, int], float]:
    """Best images/s of every ``name -> detector`` at every batch size.

    Rounds interleave the detectors, so a burst of load on the machine hits all of them alike, and
    each keeps its best round.
    """
    rates = {(name, b): 0.0 for name in detectors for b in batches}
    for detector in detectors.values():
        detector.eval().to(device)
    for _ in range(rounds):
        for batch in batches:
            for name, detector in detectors.items():
                rates[name, batch] = max(rates[name, batch], images_per_second(detector, batch, size, device, seconds))
    return rates


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
