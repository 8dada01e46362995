"""Train and store the book's experiments (``make checkpoints``).

Every experiment of :mod:`landmarks.book` (one module per chapter, registered in
:data:`landmarks.book.STORE`) is trained in the current profile (``LANDMARKS_PROFILE``, quick by
default) under each of the profile's seeds, evaluated, and stored: its results (every seed) in
``landmarks/assets/results/<profile>/<name>.json``, the weights of the seeds it keeps in
``landmarks/assets/checkpoints/<profile>/``. Experiments whose stored results are up to date are
skipped, so the script resumes where it stopped; ``--retrain`` trains them again.

Several processes can share the work: ``--shard 1/2`` and ``--shard 2/2`` take disjoint halves of
the selected experiments (an experiment that another one starts from is trained by whichever
process needs it first; the other waits for it). On a 2-core machine run each with
``OMP_NUM_THREADS=1``::

    python scripts/make_checkpoints.py --list
    python scripts/make_checkpoints.py [--only pip_s32 black_zeros] [--chapter 04 05] [--retrain]
    OMP_NUM_THREADS=1 python scripts/make_checkpoints.py --shard 1/2 & OMP_NUM_THREADS=1 python scripts/make_checkpoints.py --shard 2/2

or on disjoint seeds of the same experiments (``--seeds 0 2`` and ``--seeds 1``); two processes given
the same seeds share them too, one seed each at a time.
"""
from __future__ import annotations

import argparse
import time

from landmarks.book import STORE
from landmarks.profile import current


def _line(name: str, results, seconds: float) -> str:
    shown = "  ".join(f"{key} {results.mean(key):.4g}" + (f" +- {results.std(key):.2g}" if len(results.seeds) > 1 else "")
                      for key in list(results.metrics)[:6])
    return f"{name:30s} seeds {results.seeds}  {shown}  ({seconds:.0f} s)"


def _shard(text: str) -> tuple[int, int]:
    index, _, count = text.partition("/")
    try:
        index, count = int(index), int(count)
    except ValueError:
        raise argparse.ArgumentTypeError(f"--shard K/N with integers, got {text!r}") from None
    if not 1 <= index <= count:
        raise argparse.ArgumentTypeError(f"--shard K/N needs 1 <= K <= N, got {text!r}")
    return index, count


def ordered(names: list[str]) -> list[str]:
    """``names`` with every experiment after the ones it requires (when they are selected too)."""
    done: list[str] = []

    def visit(name: str) -> None:
        if name in done or name not in names:
            return
        for required in STORE[name].requires:
            visit(required)
        done.append(name)

    for name in names:
        visit(name)
    return done


def main() -> None:
    names = STORE.names()
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--only", nargs="+", choices=names, metavar="NAME", help="make only these experiments")
    parser.add_argument("--chapter", nargs="+", help="make only the experiments of these chapters (e.g. 04 05)")
    parser.add_argument("--shard", type=_shard, metavar="K/N", help="make the K-th of N disjoint subsets")
    parser.add_argument("--seeds", nargs="+", type=int, metavar="K",
                        help="make only these of the profile's seeds (another process makes the others)")
    parser.add_argument("--retrain", action="store_true", help="train even when the stored results are up to date")
    parser.add_argument("--list", action="store_true", help="list the experiments and their state, and exit")
    args = parser.parse_args()
    profile = current()
    selected = args.only or [n for n in names if not STORE[n].chapter.endswith("-full") or profile.name == "full"]
    if args.chapter:
        selected = [name for name in selected if STORE[name].chapter in args.chapter]
    selected = ordered(selected)
    if args.shard:
        index, count = args.shard
        selected = selected[index - 1::count]
    if args.list:
        for name in selected:
            experiment = STORE[name]
            print(f"{experiment.chapter:8s} {name:30s} seeds {list(experiment.seeds_for(profile))}  "
                  f"{STORE.status(name, profile)}")
        return
    print(f"profile {profile.name}: {profile.image_size} px, width {profile.width}, {profile.epochs} epochs, "
          f"seeds {list(profile.seeds)} -> {STORE.root}")
    for name in selected:
        start = time.perf_counter()
        results = STORE.results(name, profile, progress=True, retrain=args.retrain, seeds=args.seeds)
        print(_line(name, results, time.perf_counter() - start), flush=True)


if __name__ == "__main__":
    main()
