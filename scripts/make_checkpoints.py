"""Train and store the book's models (``make checkpoints``).

Each model of :data:`landmarks.experiments.BOOK_MODELS` is trained with the library's own loop in
the current profile (``LANDMARKS_PROFILE``, quick by default), evaluated on the book's test faces,
and saved with its weights, history, metrics and this command under
``landmarks/assets/checkpoints/<profile>/``. A model whose stored settings already match is
skipped, so the script resumes where it stopped; ``--retrain`` trains everything again.

    python scripts/make_checkpoints.py [--only pip_s32 heatmap_s4] [--retrain]
"""
from __future__ import annotations

import argparse
import time

import torch

from landmarks.experiments import BOOK_MODELS, book_model, checkpoint_root
from landmarks.profile import current


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=sorted(BOOK_MODELS), help="train only these models")
    parser.add_argument("--retrain", action="store_true", help="train even when a matching checkpoint exists")
    args = parser.parse_args()
    profile = current()
    torch.set_num_threads(max(1, torch.get_num_threads()))
    print(f"profile {profile.name}: {profile.image_size} px, width {profile.width}, {profile.epochs} epochs, "
          f"{profile.train_images} training faces -> {checkpoint_root() / profile.name}")
    for name in args.only or BOOK_MODELS:
        start = time.perf_counter()
        _, _, _, stored = book_model(name, profile, progress=True, retrain=args.retrain)
        metrics = stored["metrics"]
        print(f"{name:12s} NME {100 * metrics['nme']:.2f} %  FR {100 * metrics['fr']:.1f} %  "
              f"AUC {metrics['auc']:.3f}  ({time.perf_counter() - start:.0f} s)", flush=True)


if __name__ == "__main__":
    main()
