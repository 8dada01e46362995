"""How fast the synthetic data renders: faces (and non-face images) per second on one core.

Run ``python benchmarks/synthetic_rate.py`` (options: ``--count``, ``--sizes``). Prints a plain
table with one row per domain / non-face kind and one column per image size. Each figure is
the best of three timed passes over ``--count`` consecutive items (rendering plus conversion
to tensors, as ``DataLoader`` would call ``__getitem__``).
"""
from __future__ import annotations

import argparse
import time

import cv2
import torch

from landmarks.data.synthetic import DOMAINS, NON_FACE_KINDS, NonFaceImages, SyntheticFaces


def items_per_second(dataset, count: int, repeats: int = 3) -> float:
    """Best rate over ``repeats`` passes reading items ``0 .. count - 1``."""
    dataset[0]  # warm-up: caches, lazy imports
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        for index in range(count):
            dataset[index]
        best = min(best, time.perf_counter() - start)
    return count / best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--count", type=int, default=300, help="items per timed pass")
    parser.add_argument("--sizes", type=int, nargs="+", default=[128, 256])
    args = parser.parse_args()
    cv2.setNumThreads(1)
    torch.set_num_threads(1)

    rows = [(f"face/{name}", lambda size, name=name: SyntheticFaces(name, size=size, length=args.count))
            for name in DOMAINS]
    rows += [(f"nonface/{kind}", lambda size, kind=kind: NonFaceImages(kind, size=size, length=args.count))
             for kind in NON_FACE_KINDS]
    header = f"{'dataset':<18}" + "".join(f"{f'{s} px /s':>12}" for s in args.sizes)
    print(header)
    print("-" * len(header))
    for name, make in rows:
        rates = [items_per_second(make(size), args.count) for size in args.sizes]
        print(f"{name:<18}" + "".join(f"{r:>12.0f}" for r in rates))


if __name__ == "__main__":
    main()
