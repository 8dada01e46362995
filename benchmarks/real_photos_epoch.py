"""Does an epoch on real photos cost more than its training steps? Cached crops against decoding.

Writes large JPEG photos (``--megapixels``, 1.2 by default: 300W's median), each with a synthetic
face somewhere in a textured scene and a ``.pts`` beside it, and loads them with
:func:`landmarks.data.folders.load_folder` as the command line's real-data recipe does (PIPNet's
augmentation on crops cut with a margin). Then, in interleaved rounds, it times

- **steps alone**: the same number of training steps on one batch held in memory;
- **cached epoch**: a whole epoch through the ``DataLoader`` (the crops cached in memory by an
  earlier epoch, augmentation on every access) with a training step on every batch;
- **uncached epoch**: the same epoch decoding every JPEG again (the library before the cache).

and prints the median of each and the ratio of each epoch to the steps alone. The target of the
real-faces issue: a cached epoch within 1.2x of its steps.

    python benchmarks/real_photos_epoch.py                     # the quick profile's real-data recipe
    python benchmarks/real_photos_epoch.py --photos 96 --rounds 5
"""
from __future__ import annotations

import argparse
import statistics
import tempfile
from pathlib import Path

import numpy as np
import torch

from landmarks.book.demo_data import write_face_photos
from landmarks.data.cache import CropCache
from landmarks.data.folders import load_folder
from landmarks.data.transforms import real_data_augmentation
from landmarks.detector import ModelSpec, build_detector, training_landmarks
from landmarks.evaluation.speed import epoch_against_steps
from landmarks.profile import current


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--photos", type=int, default=64, help="photos written (one epoch)")
    parser.add_argument("--megapixels", type=float, default=1.2, help="size of each photo")
    parser.add_argument("--rounds", type=int, default=3, help="interleaved rounds (medians are reported)")
    parser.add_argument("--folder", type=Path, help="write the photos here (default: a temporary folder)")
    args = parser.parse_args()
    recipe = current().for_real_data()
    size, batch_size = recipe.image_size, recipe.batch_size
    with tempfile.TemporaryDirectory() as scratch:
        folder = args.folder or Path(scratch)
        folder.mkdir(parents=True, exist_ok=True)
        write_face_photos(folder, args.photos, args.megapixels)
        megabytes = np.mean([p.stat().st_size for p in folder.glob('*.jpg')]) / 1e6
        augment = real_data_augmentation("300w", size)
        cached = load_folder(folder, size=size, transform=augment, margin=recipe.crop_margin, cache=CropCache())
        uncached = load_folder(folder, size=size, transform=augment, margin=recipe.crop_margin)
        spec = ModelSpec("pip", width=recipe.width, image_size=size, net_stride=32)
        shapes = training_landmarks(cached)
        [cached[k] for k in range(len(cached))]  # fills the cache; every epoch below reads it
        print(f"profile {recipe.name}, real-data recipe: PIP net, width {recipe.width:g}, {size} px, batch {batch_size}, "
              f"{torch.get_num_threads()} threads; {args.photos} photos of {args.megapixels:g} MP "
              f"({megabytes:.2f} MB each), crop margin {recipe.crop_margin:g}, augmentation on\n")
        times: dict[str, list[float]] = {"steps alone": [], "cached epoch": [], "uncached epoch": []}
        ratios: dict[str, list[float]] = {"steps alone": [], "cached epoch": [], "uncached epoch": []}
        torch.manual_seed(0)
        detector = build_detector(spec, shapes)
        for _ in range(args.rounds):
            for name, data in (("cached epoch", cached), ("uncached epoch", uncached)):
                measured = epoch_against_steps(detector, data, batch_size)
                times[name].append(measured["epoch"])
                ratios[name].append(measured["epoch"] / measured["steps alone"])
                times["steps alone"].append(measured["steps alone"])
                ratios["steps alone"].append(1.0)
        images = int(measured["steps"]) * batch_size
        print(f"{'':16s}{'seconds':>9s}{'images/s':>10s}{'x steps':>9s}{'range of x':>13s}")
        for name, values in times.items():
            middle = statistics.median(values)
            print(f"{name:16s}{middle:9.2f}{images / middle:10.1f}{statistics.median(ratios[name]):9.2f}"
                  f"{f'{min(ratios[name]):.2f}-{max(ratios[name]):.2f}':>13s}", flush=True)
        print(f"\n{images} images per epoch; the cache holds {len(cached.cache)} crops "
              f"({sum(c.nbytes for c in cached.cache._memory.values()) / 1e6:.0f} MB)")

if __name__ == "__main__":
    main()
