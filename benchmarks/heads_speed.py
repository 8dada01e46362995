"""Images per second of each detection head on the same ResNet trunk (PIPNet paper, Table 8).

Measures, in one run on this machine, the bare trunk and the full models *including decoding*
(PIP Net also merges its neighbour votes): PIP Net at net stride 32, Map Net at strides 4, 2 and
1, and Coord Net, at batch sizes 1 and 16. Prints a table with each model's ratio to the bare trunk.

    python benchmarks/heads_speed.py                 # ResNet-18, 256 x 256, CPU
    python benchmarks/heads_speed.py --device cuda --width 1.0 --size 256
"""
from __future__ import annotations

import argparse
import time

import torch

from landmarks.models import ResNetBackbone, coordinate_net, heatmap_net, pipnet
from landmarks.pip import neighbour_indices
from landmarks.shape_model import default_shape_model
from landmarks.tasks import CoordinateTask, HeatmapTask, PIPTask


def build(num_points: int, depth: int, width: float):
    """``name -> (model, task or None)``; the task decodes the raw outputs into landmarks."""
    face = torch.as_tensor(default_shape_model().mean, dtype=torch.float32)
    neighbours = neighbour_indices(face, 10)
    return {
        "bare trunk": (ResNetBackbone(depth, width), None),
        "PIP Net (stride 32)": (pipnet(num_points, depth, width, net_stride=32), PIPTask(32, neighbours)),
        "Map Net (stride 4)": (heatmap_net(num_points, depth, width, net_stride=4), HeatmapTask(4)),
        "Map Net (stride 2)": (heatmap_net(num_points, depth, width, net_stride=2), HeatmapTask(2)),
        "Map Net (stride 1)": (heatmap_net(num_points, depth, width, net_stride=1), HeatmapTask(1)),
        "Coord Net": (coordinate_net(num_points, depth, width), CoordinateTask()),
    }


@torch.inference_mode()
def images_per_second(model, task, batch: int, size: int, device: str, seconds: float) -> float:
    images = torch.rand(batch, 3, size, size, device=device)
    sample = {"image": images}

    def step():
        outputs = model(images)
        if task is not None:
            task.predict(outputs, sample)

    step()  # warm-up
    if device == "cuda":
        torch.cuda.synchronize()
    done, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds or done < 3:
        step()
        done += 1
    if device == "cuda":
        torch.cuda.synchronize()
    return done * batch / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=18, help="ResNet depth (18, 34 or 50)")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier of the trunk")
    parser.add_argument("--size", type=int, default=256, help="input side in pixels")
    parser.add_argument("--points", type=int, default=68, help="number of landmarks")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds; the best counts")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = {name: (m.eval().to(args.device), t) for name, (m, t) in build(args.points, args.depth, args.width).items()}
    print(f"ResNet-{args.depth} x{args.width} at {args.size} px on {args.device} "
          f"({torch.get_num_threads()} threads); images/s including decoding\n")
    header = f"{'model':22s}" + "".join(f"{f'batch {b}':>12s}{'ratio':>8s}" for b in args.batches)
    print(header + "\n" + "-" * len(header))
    # Rounds interleave the models, so a burst of load on the machine hits all of them alike;
    # each model keeps its best round.
    rates = {(name, b): 0.0 for name in models for b in args.batches}
    for _ in range(args.rounds):
        for batch in args.batches:
            for name, (model, task) in models.items():
                rate = images_per_second(model, task, batch, args.size, args.device, args.seconds)
                rates[name, batch] = max(rates[name, batch], rate)
    for name in models:
        row = f"{name:22s}"
        for batch in args.batches:
            rate = rates[name, batch]
            row += f"{rate:12.1f}{rate / rates['bare trunk', batch]:8.2f}"
        print(row, flush=True)


if __name__ == "__main__":
    main()
