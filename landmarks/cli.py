"""The command line: ``python -m landmarks train | evaluate | predict``.

::

    python -m landmarks train --head pip --output pip.pt            # synthetic faces, quick profile
    python -m landmarks evaluate pip.pt --domain wild --size 500     # NME, FR@0.1, AUC@0.1
    python -m landmarks predict pip.pt face.jpg --box 40 60 200 220 --output face_landmarks.png
    python -m landmarks train --data folder --root my_faces/ --output faces.pt   # any folder of .pts-labelled photos
    python -m landmarks predict faces.pt photo.jpg --output drawn.png             # every face the cascade finds

Real data (a benchmark or ``--data folder``) trains with the profile's real-data recipe
(:meth:`landmarks.profile.Profile.for_real_data`: PIPNet's augmentation on crops cut with a margin
and decoded once, its model size and schedule) unless options say otherwise.

Every size and schedule default comes from :func:`landmarks.profile.current`, so
``LANDMARKS_PROFILE=full`` switches them all; options given on the command line win.
:func:`main` is the entry point (``python -m landmarks`` calls it); it returns 0 on success and
raises ``SystemExit(2)`` with a one-line message for bad input, as argparse does for bad options: a
missing file or dataset root, an unreadable, truncated or mislabelled file (named), a bad box, an
option value that cannot train, a device this machine lacks, an output that cannot be written
(checked before any work), a run that diverged, a resume that does not fit its checkpoint. When the
reader of the output goes away (``predict ... | head``) it ends quietly with status 1; Ctrl-C ends
it with one line (saying where a training run resumes from) and status 130.

Torch, OpenCV and matplotlib are imported inside the subcommands, so ``--help`` answers at once.
The option choices below are written out for the same reason; ``tests/test_cli.py`` checks them
against the library's own lists.
"""
from __future__ import annotations

import argparse
import dataclasses
import json
import shlex
import sys
import tempfile
import textwrap
import time
from pathlib import Path
from typing import Any, Sequence

import numpy as np

from landmarks import profile as profiles

#: The choices offered by the options (kept equal to the library's lists by the tests).
HEADS = ("pip", "heatmap", "coordinate")                        # detector.HEADS
DOMAINS = ("studio", "wild", "lowlight", "sketch")              # synthetic.DOMAINS
REAL_DATASETS = ("300w", "wflw", "cofw", "aflw")                # datasets.DATA_SOURCES
FOLDER = "folder"                                               # folders.load_folder
NORMS = ("inter-ocular", "inter-pupil", "box-size", "box-diagonal")  # metrics.NORMS
COORDINATE_LOSSES = ("l1", "l2", "iod-l2")
DEFAULT_STRIDES = {"pip": 32, "heatmap": 4, "coordinate": 32}
#: Seed offset of the synthetic validation faces of ``train`` (training faces use ``--seed``).
VALIDATION_SEED_OFFSET = 1
THRESHOLD = 0.1


class UsageError(Exception):
    """Bad input from the command line; reported in one line with exit status 2."""


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """Show defaults (except empty ones) and keep the epilog's line breaks."""

    def _get_help_string(self, action: argparse.Action) -> str:
        if action.default is None or action.default is False or action.default is argparse.SUPPRESS:
            return action.help or ""
        return super()._get_help_string(action)


# ------------------------------------------------------------------------------------ shared options
def _paragraph(text: str) -> str:
    """``text`` wrapped for a terminal (the raw-description formatter keeps line breaks as given)."""
    return textwrap.fill(text, 79)


def _add_data_source(parser: argparse.ArgumentParser, seed_default: int, seed_help: str) -> argparse._ArgumentGroup:
    """--data, --domain, --root and --seed: where the faces come from."""
    group = parser.add_argument_group("data")
    group.add_argument("--data", choices=("synthetic",) + REAL_DATASETS + (FOLDER,), default="synthetic",
                       help="faces rendered on the fly, a real benchmark read from --root, or 'folder': any "
                            "folder of images with a .pts beside each (or one .csv / .json of points)")
    group.add_argument("--domain", choices=DOMAINS, default="studio",
                       help="look of the synthetic faces (only with --data synthetic)")
    group.add_argument("--root", type=Path, metavar="PATH",
                       help="folder of the real dataset in its official layout, or with --data folder the "
                            "folder (with train/ and test/ inside, or not) or the .csv / .json file")
    group.add_argument("--layout", metavar="NAME|N",
                       help="--data folder only: the layout (300w, wflw, cofw, aflw) or the number of points of "
                            "a layout of your own (default: found from the point count)")
    group.add_argument("--seed", type=int, default=seed_default, help=seed_help)
    return group


def _add_device(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--device", default="auto",
                       help="torch device, e.g. cpu, cuda, cuda:1; auto = cuda when available, else cpu")


def _add_compute(parser: argparse.ArgumentParser, settings: profiles.Profile) -> argparse._ArgumentGroup:
    """--batch-size, --num-workers and --device."""
    group = parser.add_argument_group("computation")
    group.add_argument("--batch-size", type=int, help=f"images per batch (default: {settings.batch_size}; "
                                                       f"training on real data: {settings.for_real_data().batch_size})")
    group.add_argument("--num-workers", type=int, default=settings.num_workers,
                       help="data-loading worker processes (0 = load in the main process)")
    _add_device(group)
    return group


def _add_model_file(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL.pt", help="a model file written by 'train'")


# ------------------------------------------------------------------------------------ parsers
def _train_parser(commands, settings: profiles.Profile) -> None:
    parser = commands.add_parser(
        "train", formatter_class=_Formatter, help="train a detector and save it",
        description=_paragraph("Train a detector and save it with its spec, history and final validation metrics. "
                    "Synthetic data validates on other faces of the same domain (seed + 1); a real "
                    "dataset trains on its 'train' split and validates on its 'test' split."),
        epilog="example:\n  python -m landmarks train --head pip --epochs 4 --checkpoint-dir runs/pip "
               "--output pip.pt\n  (running the same command again resumes from runs/pip/last.pt)")
    model = parser.add_argument_group("model")
    model.add_argument("--head", choices=HEADS, default="pip", help="what the network predicts")
    model.add_argument("--net-stride", type=int,
                       help="stride of the head's output maps (default: 32 for pip, 4 for heatmap; "
                            "unused by coordinate)")
    model.add_argument("--neighbours", type=int, default=10,
                       help="PIPNet neighbours per landmark (0 = plain PIP regression)")
    model.add_argument("--depth", type=int, choices=(18, 34, 50), default=18, help="ResNet depth of the trunk")
    real = settings.for_real_data()
    model.add_argument("--width", type=float,
                       help=f"channel multiplier of the trunk (default: {settings.width:g} synthetic, {real.width:g} real)")
    model.add_argument("--image-size", type=int,
                       help=f"side of the input crop in pixels (default: {settings.image_size} synthetic, "
                            f"{real.image_size} real)")
    model.add_argument("--coordinate-loss", choices=COORDINATE_LOSSES, default="l1",
                       help="loss of the coordinate head")
    model.add_argument("--pretrained", action="store_true",
                       help="start the trunk from ImageNet weights (downloads them; off by default)")
    data = _add_data_source(parser, 0, "seed of the synthetic training faces, the initial weights and the "
                                       "sample order (validation faces use seed + 1)")
    data.add_argument("--train-size", type=int,
                      help=f"training faces (default: {settings.train_images} synthetic, or the whole split; "
                           "fewer real ones are taken evenly spaced)")
    data.add_argument("--val-size", type=int,
                      help=f"validation faces (default: {settings.test_images} synthetic, or the whole "
                           "split; 0 = no validation; a folder without train/ and test/ holds out every 10th face)")
    data.add_argument("--augment", action=argparse.BooleanOptionalAction,
                      help="PIPNet's augmentation (flip, rotation, scale, translation, occlusion, blur, grayscale) "
                           "on crops cut with a margin (default: on for real data, off for synthetic faces)")
    data.add_argument("--cache-dir", type=Path, metavar="DIR",
                      help="keep the decoded face crops of real data in this folder (default: in memory, or a "
                           "folder in the system's temporary directory with --num-workers > 0)")
    schedule = _add_compute(parser, settings)
    schedule.title = "schedule"
    schedule.add_argument("--epochs", type=int,
                          help=f"total training epochs (default: {settings.epochs} synthetic, {real.epochs} real)")
    schedule.add_argument("--lr", type=float,
                          help=f"Adam's initial learning rate (default: {settings.learning_rate:g} synthetic, "
                               f"{real.learning_rate:g} real)")
    schedule.add_argument("--decay-epochs", type=int, nargs="*", metavar="EPOCH",
                          help=f"epochs after which the rate is multiplied by {settings.decay} (default: "
                               f"{list(settings.decay_epochs)} of {settings.epochs} synthetic, "
                               f"{list(real.decay_epochs)} of {real.epochs} real, moved in proportion when --epochs "
                               "changes)")
    schedule.add_argument("--amp", action="store_true", help="mixed precision (CUDA only; ignored on the CPU)")
    output = parser.add_argument_group("output")
    output.add_argument("--checkpoint-dir", type=Path, metavar="DIR",
                        help="save last.pt here after every epoch; the same command run again resumes from it")
    output.add_argument("--output", type=Path, default=Path("model.pt"), metavar="FILE",
                        help="model file to write (weights, spec, history, val metrics, this command)")
    output.add_argument("--quiet", action="store_true", help="no progress bar and no per-epoch lines")
    parser.set_defaults(run=run_train)


def _evaluate_parser(commands, settings: profiles.Profile) -> None:
    parser = commands.add_parser(
        "evaluate", formatter_class=_Formatter, help="measure NME, FR and AUC of a saved model",
        description=_paragraph("Evaluate a model file on synthetic faces or on a split of a real benchmark. "
                    f"Prints the NME (in %, with its normalisation), FR@{THRESHOLD} and AUC@{THRESHOLD}."),
        epilog="examples:\n  python -m landmarks evaluate pip.pt --domain wild --size 500\n"
               "  python -m landmarks evaluate pip.pt --data 300w --root data/300w --split challenge "
               "--json challenge.json\n"
               "  (--data folder evaluates on the folder's test/ part, or on all of it when it has none)")
    _add_model_file(parser)
    data = _add_data_source(parser, 2, "seed of the synthetic test faces (2: faces that a default "
                                       "'train' run neither trained nor validated on)")
    data.add_argument("--size", type=int, default=settings.test_images, help="number of synthetic test faces")
    data.add_argument("--split", default="test",
                      help="split of a real dataset: 300w train|common|challenge|full|test, wflw and cofw "
                           "train|test, aflw train|test|frontal")
    data.add_argument("--subset", help="WFLW only: keep the faces with this attribute (pose, expression, "
                                       "illumination, makeup, occlusion, blur)")
    data.add_argument("--flip", action="store_true",
                      help="test-time flip: average the predictions on each face and on its mirror image")
    _add_compute(parser, settings)
    output = parser.add_argument_group("output")
    output.add_argument("--norm", choices=NORMS, help="NME normalisation (default: the layout's benchmark one)")
    output.add_argument("--json", type=Path, metavar="FILE", help="also write the results to this JSON file")
    parser.set_defaults(run=run_evaluate)


def _predict_parser(commands) -> None:
    parser = commands.add_parser(
        "predict", formatter_class=_Formatter, help="landmarks of one face image",
        description=_paragraph("Find the faces in an image (OpenCV's face cascade) or take the one in --box, run the "
                    "model on each and print the landmarks in the original image's continuous pixel coordinates "
                    "(pixel j covers [j, j+1]; see landmarks.data.coords)."),
        epilog="examples:\n  python -m landmarks predict pip.pt photo.jpg --output drawn.png       # every face found\n"
               "  python -m landmarks predict pip.pt face.jpg --box 40 60 200 220 --format pts > face.pts")
    _add_model_file(parser)
    parser.add_argument("image", type=Path, metavar="IMAGE", help="image file (anything OpenCV reads)")
    crop = parser.add_argument_group("face crop")
    crop.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                      help="face box in pixel coordinates, the tight box around the face's landmarks (what the "
                           "face detector gives); default: every face the face detector finds")
    crop.add_argument("--whole-image", action="store_true",
                      help="the image is the face crop: use all of it, made square around its centre")
    crop.add_argument("--box-scale", type=float,
                      help="side of the square crop, centred on the face box, over the box's longer side (default: "
                           "the model's own crop convention, measured on its training crops and stored in its file)")
    output = parser.add_argument_group("output")
    output.add_argument("--format", choices=("xy", "pts"), default="xy",
                        help="xy: one 'x y' line per point; pts: a 300W .pts file (1-based coordinates); with "
                             "several faces, one block per face, each after a '# face K: box ...' line")
    crop.add_argument("--flip", action="store_true", help="test-time flip (mean of the face and its mirror image)")
    output.add_argument("--output", type=Path, metavar="FILE", help="save the image with the landmarks drawn (PNG)")
    _add_device(parser.add_argument_group("computation"))
    parser.set_defaults(run=run_predict)


def build_parser(settings: profiles.Profile | None = None) -> argparse.ArgumentParser:
    """The parser of all subcommands, with defaults from ``settings`` (the current profile)."""
    settings = settings or profiles.current()
    parser = argparse.ArgumentParser(
        prog="python -m landmarks", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Train, evaluate and run facial landmark detectors.",
        epilog=f"profile: {settings.name} (set {profiles.ENV_VARIABLE}=quick|full to change the defaults)\n"
               "run 'python -m landmarks COMMAND --help' for the options of a command")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    _train_parser(commands, settings)
    _evaluate_parser(commands, settings)
    _predict_parser(commands)
    return parser


# ------------------------------------------------------------------------------------ data and models
def _device(name: str) -> str:
    """The torch device ``--device`` names (``auto``: cuda when available, else cpu), checked to exist here."""
    import torch

    if name == "auto":
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        device = torch.device(name)
    except (RuntimeError, ValueError):
        raise UsageError(f"--device {name}: not a torch device; use auto, cpu, cuda or cuda:N") from None
    if device.type == "cuda":
        if not torch.cuda.is_available():
            raise UsageError(f"--device {name}: no CUDA GPU is available on this machine (torch.cuda.is_available() "
                             "is False); use --device cpu")
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise UsageError(f"--device {name}: this machine has {torch.cuda.device_count()} CUDA GPU(s)")
    elif device.type == "mps" and not torch.backends.mps.is_available():
        raise UsageError(f"--device {name}: Apple's MPS backend is not available on this machine")
    elif device.type not in ("cpu", "cuda", "mps"):
        raise UsageError(f"--device {name}: only cpu, cuda and mps devices are supported")
    return name


def _check_output_file(path: Path | None, option: str) -> None:
    """``UsageError`` before any work when ``path`` cannot be written as a file: its folder is missing
    or not a folder, or ``path`` itself is a folder or another non-regular file (a device, a pipe)."""
    if path is None:
        return
    parent = path.parent if str(path.parent) else Path(".")
    if not parent.is_dir():
        what = "is not a folder" if parent.exists() else "does not exist"
        raise UsageError(f"{option} {path}: the folder {parent} {what}")
    if path.exists() and not path.is_file():
        what = "a folder" if path.is_dir() else "not a regular file"
        raise UsageError(f"{option} {path}: {what}; give the name of a file to write")


def _check_training_options(args: argparse.Namespace, settings: profiles.Profile) -> None:
    """``UsageError`` for sizes and rates that cannot train (before any data is read)."""
    positive = {"--epochs": settings.epochs, "--batch-size": settings.batch_size, "--image-size": settings.image_size,
                "--train-size": args.train_size}
    for option, value in positive.items():
        if value is not None and value < 1:
            raise UsageError(f"{option} {value}: it must be at least 1")
    if args.val_size is not None and args.val_size < 0:
        raise UsageError(f"--val-size {args.val_size}: it must be 0 (no validation) or more")
    if args.num_workers < 0:
        raise UsageError(f"--num-workers {args.num_workers}: it must be 0 or more")
    if not (settings.learning_rate > 0 and np.isfinite(settings.learning_rate)):
        raise UsageError(f"--lr {settings.learning_rate:g}: it must be a positive number")
    if not settings.width > 0:
        raise UsageError(f"--width {settings.width:g}: it must be positive")
    if args.checkpoint_dir is not None and args.checkpoint_dir.exists() and not args.checkpoint_dir.is_dir():
        raise UsageError(f"--checkpoint-dir {args.checkpoint_dir}: a file, not a folder")


def _check_source(args: argparse.Namespace) -> None:
    if args.data == "synthetic":
        if args.root is not None:
            raise UsageError("--root is for a real dataset; add --data 300w|wflw|cofw|aflw|folder")
        return
    if args.root is None:
        raise UsageError(f"--data {args.data} needs --root PATH, the dataset's folder")
    if not args.root.exists() or (args.data != FOLDER and not args.root.is_dir()):
        raise UsageError(f"dataset root not found: {args.root}")
    if args.layout is not None and args.data != FOLDER:
        raise UsageError(f"--layout is for --data folder; {args.data} has its own layout")


def train_settings(args: argparse.Namespace) -> profiles.Profile:
    """The profile's settings for this ``train`` command: the real-data recipe for real data
    (:meth:`~landmarks.profile.Profile.for_real_data`), then every option given on the command line;
    decay epochs given by neither are moved in proportion to ``--epochs``."""
    base = profiles.current()
    settings = base if args.data == "synthetic" else base.for_real_data()
    given = {"image_size": args.image_size, "width": args.width, "epochs": args.epochs,
             "batch_size": args.batch_size, "learning_rate": args.lr, "num_workers": args.num_workers}
    settings_given = {key: value for key, value in given.items() if value is not None}
    decays = (tuple(args.decay_epochs) if args.decay_epochs is not None
              else settings.decays_for(settings_given.get("epochs", settings.epochs)))
    augment = settings.augment if args.augment is None else args.augment
    return dataclasses.replace(settings, **settings_given, decay_epochs=decays, augment=augment,
                               crop_margin=settings.crop_margin if augment else 0.0)


def _folder_part(args: argparse.Namespace, part: str) -> Path | None:
    """``root/train`` or ``root/test`` when the folder is split that way."""
    root = args.root
    if root.is_dir() and (root / "train").is_dir() and (root / "test").is_dir():
        return root / part
    return None


def _real_dataset(args: argparse.Namespace, split: str, size: int, subset: str | None = None, **crops: Any):
    """A split of a benchmark, or of a folder (its train/ or test/ part, else all of it)."""
    from landmarks.data import datasets

    if args.data == FOLDER:
        from landmarks.data.folders import load_folder

        if subset is not None:
            raise UsageError("--subset is for WFLW only, not a folder")
        layout = int(args.layout) if args.layout is not None and args.layout.isdigit() else args.layout
        return load_folder(_folder_part(args, split) or args.root, layout, size=size, **crops)
    loaders = {"300w": datasets.load_300w, "wflw": datasets.load_wflw, "cofw": datasets.load_cofw,
               "aflw": datasets.load_aflw}
    options = {"subset": subset} if subset is not None else {}
    if subset is not None and args.data != "wflw":
        raise UsageError(f"--subset is for WFLW only, not {args.data}")
    return loaders[args.data](args.root, split=split, size=size, **options, **crops)


def _limited(data, count: int | None):
    """``count`` items of ``data`` spread evenly over it (all of them when ``count`` is None)."""
    from torch.utils.data import Subset

    if count is None or count >= len(data):
        return data
    if count < 0:
        raise UsageError(f"sizes must be >= 0, got {count}")
    return Subset(data, np.linspace(0, len(data) - 1, count).round().astype(int).tolist())


def _training_data(args: argparse.Namespace, settings: profiles.Profile):
    """Training set, validation set (or None), layout and a description of the data."""
    _check_source(args)
    if args.data == "synthetic":
        from landmarks.data.synthetic import SyntheticFaces
        from landmarks.data.transforms import Augmented, real_data_augmentation

        train_size = settings.train_images if args.train_size is None else args.train_size
        val_size = settings.test_images if args.val_size is None else args.val_size
        train = SyntheticFaces(args.domain, settings.image_size, train_size, args.seed)
        if settings.augment:
            train = Augmented(train, real_data_augmentation("300w", settings.image_size))
        val = SyntheticFaces(args.domain, settings.image_size, val_size, args.seed + VALIDATION_SEED_OFFSET)
        return train, val if val_size > 0 else None, train.layout, f"synthetic {args.domain} faces"
    from landmarks.data.cache import CropCache
    from landmarks.data.transforms import real_data_augmentation
    from torch.utils.data import Subset

    # one cache for every worker process: in memory without workers, else a folder (workers start
    # anew each epoch, and each would decode and hold its own copy of every crop)
    folder = args.cache_dir or (None if settings.num_workers == 0 else Path(tempfile.gettempdir()) / "landmarks-crops")
    cache = CropCache(folder)
    probe = _real_dataset(args, "train", settings.image_size)
    transform = real_data_augmentation(probe.layout, settings.image_size) if settings.augment else None
    train = _real_dataset(args, "train", settings.image_size, transform=transform, margin=settings.crop_margin,
                          cache=cache)
    if args.data == FOLDER and _folder_part(args, "test") is None:
        from landmarks.data.folders import split_every

        kept, held = split_every(len(train))
        val = Subset(_real_dataset(args, "train", settings.image_size, cache=cache), held)
        train = Subset(train, kept)
        train.layout = val.layout = probe.layout
        description = f"faces of the folder {args.root} (every 10th held out for validation)"
    else:
        val = _real_dataset(args, "test", settings.image_size, cache=cache)
        description = (f"faces of the folder {_folder_part(args, 'train')}" if args.data == FOLDER
                       else f"{args.data} at {args.root}")
    train, val = _limited(train, args.train_size), _limited(val, args.val_size)
    return train, val if len(val) > 0 else None, probe.layout, description


def _fingerprint(args: argparse.Namespace, settings: profiles.Profile, train_size: int, val_size: int) -> dict[str, Any]:
    """What identifies the training data of a run, stored in its checkpoint: a resume on other data is refused."""
    return {"kind": args.data, "root": str(args.root.resolve()) if args.root is not None else None, "split": "train",
            "domain": args.domain if args.data == "synthetic" else None, "layout": args.layout, "size": train_size,
            "val_size": val_size, "seed": args.seed, "augment": settings.augment, "margin": settings.crop_margin}


def _evaluation_data(args: argparse.Namespace, detector):
    """The test set in the detector's layout and a description of it."""
    _check_source(args)
    layout = detector.layout.name
    if args.data == "synthetic":
        from landmarks.data.synthetic import SyntheticFaces

        if layout not in ("300w", "aflw"):
            raise UsageError(f"synthetic faces have 68 (or 19) points; the model predicts layout {layout!r}")
        data = SyntheticFaces(args.domain, detector.image_size, args.size, args.seed, layout=layout)
        return data, f"synthetic {args.domain} faces (seed {args.seed})"
    if args.data == FOLDER:
        part = _folder_part(args, "test")
        data = _real_dataset(args, "test", detector.image_size)
        if data.layout.num_points != detector.layout.num_points:
            raise UsageError(f"the model predicts {detector.layout.num_points} points; {args.root} has "
                             f"{data.layout.num_points}")
        return data, f"the folder {part or args.root}"
    if args.data != layout:
        raise UsageError(f"the model predicts the {layout!r} layout; {args.data} data has another one")
    data = _real_dataset(args, args.split, detector.image_size, args.subset)
    subset = f" ({args.subset})" if args.subset else ""
    return data, f"{args.data} {args.split} split{subset} at {args.root}"


def _load(path: Path, device: str):
    """The detector in ``path`` on ``device`` and the rest of its file's record."""
    from landmarks.detector import Detector

    if not path.is_file():
        raise UsageError(f"model file not found: {path}")
    try:
        detector, record = Detector.load_with_record(path)
    except KeyError as error:  # a layout or class name this version does not know
        raise UsageError(f"{path}: {error.args[0] if error.args else error}") from None
    if detector.image_size is None or detector.layout is None:
        raise UsageError(f"{path}: the detector records no input size or layout, so it cannot be run on files")
    return detector.to(device), record


def _metric_lines(metrics: dict[str, Any]) -> list[str]:
    return [f"NME ({metrics['norm']}): {100 * metrics['nme']:.3f} %",
            f"FR@{THRESHOLD}: {100 * metrics['fr']:.2f} %",
            f"AUC@{THRESHOLD}: {metrics['auc']:.4f}",
            f"images: {metrics['images']}"]


# ------------------------------------------------------------------------------------ subcommands
def run_train(args: argparse.Namespace, command: str) -> int:
    """``train``: build the spec, train it (resumably), save it and print the final metrics."""
    from landmarks.detector import ModelSpec
    from landmarks.training.loop import train_spec

    from landmarks.data.layouts import get_layout

    settings = train_settings(args)
    _check_training_options(args, settings)
    _check_output_file(args.output, "--output")
    device = _device(args.device)
    if settings.for_gpu and device == "cpu":
        sys.stderr.write(f"note: the {settings.name} profile ({profiles.ENV_VARIABLE}={settings.name}) has the papers' "
                         f"settings ({settings.epochs} epochs at {settings.image_size} px) and is meant for a GPU; on this "
                         "CPU its projected time is printed after the first steps (the quick profile: unset "
                         f"{profiles.ENV_VARIABLE})\n")
    train, val, layout, description = _training_data(args, settings)
    if len(train) == 0:
        raise UsageError(f"no training faces in {description}")
    layout = get_layout(layout)
    spec = ModelSpec(head=args.head, num_points=layout.num_points, depth=args.depth,
                     width=settings.width, image_size=settings.image_size,
                     net_stride=args.net_stride or DEFAULT_STRIDES[args.head], num_neighbours=args.neighbours,
                     coordinate_loss=args.coordinate_loss, layout=layout.name, pretrained=args.pretrained)
    start = time.perf_counter()
    detector, history = train_spec(spec, train, val, schedule=settings.schedule(), seed=args.seed,
                                   checkpoint_dir=args.checkpoint_dir, progress=not args.quiet,
                                   device=device, amp=args.amp, layout=layout,
                                   data=_fingerprint(args, settings, len(train), len(val) if val is not None else 0))
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {"data": description, "train_images": len(train), "augment": settings.augment}
    if val is not None:
        last = history[-1]
        metrics.update(nme=last["val_nme"], fr=last["val_fr"], auc=last["val_auc"], images=len(val),
                       norm=layout.default_norm, threshold=THRESHOLD)
    detector.save(args.output, history, metrics=metrics, command=command)
    augmented = ", augmented" if settings.augment else ""
    print(f"trained {spec.head} ({spec.image_size} px, width {spec.width:g}) on {len(train)} {description} "
          f"for {settings.epochs} epoch{'s' if settings.epochs != 1 else ''}{augmented} in {seconds:.1f} s")
    if val is not None:
        print("validation " + ", ".join(_metric_lines(metrics)))
    print(f"saved {args.output}")
    return 0


def run_evaluate(args: argparse.Namespace, command: str) -> int:
    """``evaluate``: NME / FR / AUC of a model file on a test set."""
    from landmarks.evaluation.loop import evaluate

    _check_output_file(args.json, "--json")
    detector, _ = _load(args.model, _device(args.device))
    data, description = _evaluation_data(args, detector)
    if len(data) == 0:
        raise UsageError(f"no test faces in {description}")
    batch_size = args.batch_size or profiles.current().batch_size
    results = evaluate(detector, data, layout=data.layout if args.data == FOLDER else detector.layout,
                       batch_size=batch_size, norm=args.norm, num_workers=args.num_workers, threshold=THRESHOLD,
                       flip=args.flip)
    report = {"model": str(args.model), "data": description, "images": len(data), "norm": results["norm"],
              "threshold": THRESHOLD, "flip": args.flip, **{key: results[key] for key in ("nme", "fr", "auc")}}
    head = detector.spec.head if detector.spec is not None else type(detector.task).__name__
    flipped = ", test-time flip" if args.flip else ""
    print(f"{args.model} ({head}, {detector.layout.num_points} points{flipped}) on {description}")
    print("\n".join(_metric_lines(report)))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _check_box(box: Sequence[float] | None, box_scale: float | None) -> None:
    if box is not None:
        x0, y0, x1, y1 = box
        if not (np.isfinite(box).all() and x1 > x0 and y1 > y0):
            raise UsageError(f"bad --box {x0:g} {y0:g} {x1:g} {y1:g}: need X1 > X0 and Y1 > Y0")
    if box_scale is not None and not box_scale > 0:
        raise UsageError(f"bad --box-scale {box_scale:g}: it must be positive")


def _pts_text(points: np.ndarray) -> str:
    """``points`` as the text of a 1-based ``.pts`` file (written by :func:`formats.write_pts`)."""
    from landmarks.data.coords import to_one_based
    from landmarks.data.formats import write_pts

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "points.pts"
        write_pts(path, to_one_based(points))
        return path.read_text()


def _save_drawing(image: np.ndarray, faces: Sequence[np.ndarray], layout: Any, path: Path) -> None:
    """The image with every face's landmarks drawn, rendered by matplotlib's Agg canvas at about image
    resolution; ``layout`` is the detector's own (a layout of your own is registered under no name)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from landmarks.plots.figures import show_landmarks

    height, width = image.shape[:2]
    zoom = max(1.0, 512 / max(height, width))  # small images are enlarged so the markers stay readable
    figure = Figure(figsize=(zoom * width / 100, zoom * height / 100), dpi=100)
    FigureCanvasAgg(figure)
    axes = figure.add_axes((0, 0, 1, 1))
    for points in faces:
        show_landmarks(image, pred=points, layout=layout, ax=axes)  # points draw above every image
    figure.savefig(path)


def _face_boxes(args: argparse.Namespace, image: np.ndarray) -> np.ndarray | None:
    """The boxes to predict: --box, none (--whole-image) or every face the face detector finds."""
    if args.box is not None:
        if args.whole_image:
            raise UsageError("give either --box or --whole-image, not both")
        return np.asarray([args.box], dtype=np.float64)
    if args.whole_image:
        return None
    from landmarks.data.face_detection import detect_faces

    boxes = detect_faces(image)
    if len(boxes) == 0:
        raise UsageError(f"{args.image}: no face found (OpenCV's frontal-face cascade); give the face with "
                         "--box X0 Y0 X1 Y1, or --whole-image if the image is the face crop")
    return boxes


def run_predict(args: argparse.Namespace, command: str) -> int:
    """``predict``: landmarks of every face in one image, printed (and drawn with --output)."""
    from landmarks.data.datasets import read_image

    _check_box(args.box, args.box_scale)
    _check_output_file(args.output, "--output")
    detector, _ = _load(args.model, _device(args.device))
    image = read_image(args.image)
    boxes = _face_boxes(args, image)
    if args.box_scale is not None:  # a crop of your own: this side, centred on the box
        detector.box_scale, detector.box_shift = args.box_scale, (0.0, 0.0)
    count = 1 if boxes is None else len(boxes)
    points = detector.predict([image] * count, boxes=boxes, flip=args.flip).double().numpy()
    blocks = []
    for k, face in enumerate(points):
        header = ""
        if args.box is None and not args.whole_image:
            header = f"# face {k + 1} of {count}: box " + " ".join(f"{v:.1f}" for v in boxes[k]) + "\n"
        body = _pts_text(face) if args.format == "pts" else "".join(f"{x:.3f} {y:.3f}\n" for x, y in face)
        blocks.append(header + body)
    sys.stdout.write("".join(blocks))
    if args.output is not None:
        _save_drawing(image, list(points), detector.layout, args.output)
    return 0


# ------------------------------------------------------------------------------------ entry point
def _fail(command: str | None, error: BaseException) -> None:
    message = " ".join(str(error).split()) or type(error).__name__
    prefix = f"python -m landmarks {command}" if command else "python -m landmarks"
    sys.stderr.write(f"{prefix}: error: {message}\n")
    raise SystemExit(2)


def main(argv: Sequence[str] | None = None) -> int:
    """Run one subcommand; 0 on success, ``SystemExit(2)`` with a one-line message on bad input."""
    argv = list(sys.argv[1:] if argv is None else argv)
    try:
        parser = build_parser()
    except ValueError as error:  # a bad LANDMARKS_PROFILE
        _fail(None, error)
    args = parser.parse_args(argv)
    try:
        code = args.run(args, shlex.join(["python", "-m", "landmarks", *argv]))
        sys.stdout.flush()  # a closed pipe shows here, not in the interpreter's last flush
        return code
    except BrokenPipeError:  # the reader of our output left (``| head``): end quietly, as cat does
        _silence_stdout()
        return 1
    except KeyboardInterrupt:  # Ctrl-C: one line, and where a training run can go on from
        checkpoint = getattr(args, "checkpoint_dir", None)
        resume = ""
        if checkpoint is not None and (checkpoint / "last.pt").is_file():
            resume = f"; {checkpoint / 'last.pt'} holds the last finished epoch: run the same command to resume"
        sys.stderr.write(f"python -m landmarks {args.command}: interrupted{resume}\n")
        return 130
    # the library's "bad input" errors, and a run that diverged (FloatingPointError: NaN or a blow-up)
    except (UsageError, ValueError, FileNotFoundError, IsADirectoryError, NotADirectoryError,
            PermissionError, FloatingPointError) as error:
        _fail(args.command, error)


def _silence_stdout() -> None:
    """Point stdout at /dev/null, so that Python's final flush of a closed pipe raises nothing more."""
    import os

    try:
        null = os.open(os.devnull, os.O_WRONLY)
        os.dup2(null, sys.stdout.fileno())
    except (OSError, ValueError):  # stdout is not a real file (a test's capture): nothing will flush to the pipe
        pass
