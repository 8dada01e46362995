"""Does data loading keep up with training? Images/s of the loader alone vs a training step.

Renders synthetic faces through a ``DataLoader`` with 0, 1 and 2 worker processes and compares the
rate with one optimisation step of a book model (forward, loss, backward, Adam) on ready batches.
If the loader is not clearly faster than the step, training waits for data.

    python benchmarks/loader_vs_step.py [--head pip] [--batch-size 32]
"""
from __future__ import annotations

import argparse
import time

import torch

from landmarks.detector import ModelSpec, build_detector, training_landmarks
from landmarks.profile import current
from landmarks.data.synthetic import SyntheticFaces
from landmarks.training.loop import loader_throughput


def step_throughput(spec: ModelSpec, data, batch_size: int, steps: int) -> float:
    """Images/s of training steps on one batch held in memory (no data loading at all)."""
    detector = build_detector(spec, training_landmarks(data, 200)).train()
    model, task = detector.model, detector.task
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    samples = [data[i] for i in range(batch_size)]
    batch = {key: torch.stack([s[key] for s in samples]) for key in ("image", "landmarks")}

    def step() -> None:
        optimiser.zero_grad()
        task.loss(model(batch["image"]), batch)["total"].backward()
        optimiser.step()

    step()
    start = time.perf_counter()
    for _ in range(steps):
        step()
    return steps * batch_size / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", default="pip", choices=["pip", "heatmap", "coordinate"])
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--batches", type=int, default=15, help="batches timed per measurement")
    parser.add_argument("--domain", default="studio")
    args = parser.parse_args()
    profile = current()
    data = SyntheticFaces(args.domain, profile.image_size, length=args.batch_size * (args.batches + 2) * 3)
    spec = ModelSpec.from_profile(profile, head=args.head, net_stride=32 if args.head == "pip" else 4)
    print(f"profile {profile.name}: {profile.image_size} px, width {profile.width}, batch {args.batch_size}, "
          f"{torch.get_num_threads()} threads")
    for workers in (0, 1, 2):
        rate = loader_throughput(data, args.batch_size, num_workers=workers, batches=args.batches)
        print(f"loader alone, {workers} workers: {rate:8.1f} images/s", flush=True)
    rate = step_throughput(spec, data, args.batch_size, args.batches)
    print(f"training step ({args.head} head), data in memory: {rate:8.1f} images/s")


if __name__ == "__main__":
    main()
