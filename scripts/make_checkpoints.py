"""Train and store the book's models (``make checkpoints``).

Two kinds of stored model live under ``landmarks/assets/checkpoints/<profile>/``:

- the detectors of :data:`landmarks.experiments.BOOK_MODELS` (chapters 2-3), trained with the
  library's own loop on the book's studio faces;
- the recipes of :mod:`landmarks.book` (one module per chapter, see :mod:`landmarks.recipes`).

Each is trained in the current profile (``LANDMARKS_PROFILE``, quick by default), evaluated, and
saved with its weights, history, metrics and this command. A model whose stored settings already
match is skipped, so the script resumes where it stopped; ``--retrain`` trains again.

    python scripts/make_checkpoints.py [--only pip_s32 black_zero] [--chapter 04] [--retrain] [--list]
"""
from __future__ import annotations

import argparse
import time

import torch

from landmarks.experiments import BOOK_MODELS, book_model, checkpoint_root
from landmarks.profile import current
from landmarks.recipes import cook, load_all


def _line(name: str, metrics: dict, seconds: float) -> str:
    shown = "  ".join(f"{key} {value:.4g}" for key, value in metrics.items())
    return f"{name:24s} {shown}  ({seconds:.0f} s)"


def main() -> None:
    recipes = load_all()
    names = [*BOOK_MODELS, *recipes]
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help="make only these models")
    parser.add_argument("--chapter", nargs="+", help="make only the recipes of these chapters (e.g. 04 05)")
    parser.add_argument("--retrain", action="store_true", help="train even when a matching checkpoint exists")
    parser.add_argument("--list", action="store_true", help="list the stored models and exit")
    args = parser.parse_args()
    profile = current()
    if args.list:
        for name in names:
            chapter = recipes[name][0] if name in recipes else "02-03"
            print(f"{chapter:6s} {name}")
        return
    selected = args.only or names
    if args.chapter:
        selected = [name for name in selected if name in recipes and recipes[name][0] in args.chapter]
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"profile {profile.name}: {profile.image_size} px, width {profile.width}, {profile.epochs} epochs, "
          f"{profile.train_images} training faces -> {checkpoint_root() / profile.name}")
    for name in selected:
        start = time.perf_counter()
        if name in BOOK_MODELS:
            _, _, _, stored = book_model(name, profile, progress=True, retrain=args.retrain)
        else:
            _, stored = cook(recipes[name][1](profile), profile, retrain=args.retrain)
        print(_line(name, stored["metrics"], time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()
