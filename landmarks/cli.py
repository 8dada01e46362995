"""The command line: ``python -m landmarks train | evaluate | predict``.

::

    python -m landmarks train --head pip --output pip.pt            # synthetic faces, quick profile
    python -m landmarks evaluate pip.pt --domain wild --size 500     # NME, FR@0.1, AUC@0.1
    python -m landmarks predict pip.pt face.jpg --box 40 60 200 220 --output face_landmarks.png

Every size and schedule default comes from :func:`landmarks.profile.current`, so
``LANDMARKS_PROFILE=full`` switches them all; options given on the command line win.
:func:`main` is the entry point (``python -m landmarks`` calls it); it returns 0 on success and
raises ``SystemExit(2)`` with a one-line message for bad input (a missing file or dataset root,
an unreadable image, a bad box), as argparse does for bad options.

Torch, OpenCV and matplotlib are imported inside the subcommands, so ``--help`` answers at once.
The option choices below are written out for the same reason; ``tests/test_cli.py`` checks them
against the library's own lists.
"""
from __future__ import annotations

import argparse
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
    group.add_argument("--data", choices=("synthetic",) + REAL_DATASETS, default="synthetic",
                       help="faces rendered on the fly, or a real benchmark read from --root")
    group.add_argument("--domain", choices=DOMAINS, default="studio",
                       help="look of the synthetic faces (only with --data synthetic)")
    group.add_argument("--root", type=Path, metavar="PATH",
                       help="folder of the real dataset in its official layout (required unless --data synthetic)")
    group.add_argument("--seed", type=int, default=seed_default, help=seed_help)
    return group


def _add_device(group: argparse._ArgumentGroup) -> None:
    group.add_argument("--device", default="auto",
                       help="torch device, e.g. cpu, cuda, cuda:1; auto = cuda when available, else cpu")


def _add_compute(parser: argparse.ArgumentParser, settings: profiles.Profile) -> argparse._ArgumentGroup:
    """--batch-size, --num-workers and --device."""
    group = parser.add_argument_group("computation")
    group.add_argument("--batch-size", type=int, default=settings.batch_size, help="images per batch")
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
    model.add_argument("--width", type=float, default=settings.width, help="channel multiplier of the trunk")
    model.add_argument("--image-size", type=int, default=settings.image_size, help="side of the input crop in pixels")
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
                           "split; 0 = no validation)")
    schedule = _add_compute(parser, settings)
    schedule.title = "schedule"
    schedule.add_argument("--epochs", type=int, default=settings.epochs, help="total training epochs")
    schedule.add_argument("--lr", type=float, default=settings.learning_rate, help="Adam's initial learning rate")
    schedule.add_argument("--decay-epochs", type=int, nargs="*", default=list(settings.decay_epochs),
                          metavar="EPOCH", help=f"epochs after which the rate is multiplied by {settings.decay}")
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
               "--json challenge.json")
    _add_model_file(parser)
    data = _add_data_source(parser, 2, "seed of the synthetic test faces (2: faces that a default "
                                       "'train' run neither trained nor validated on)")
    data.add_argument("--size", type=int, default=settings.test_images, help="number of synthetic test faces")
    data.add_argument("--split", default="test",
                      help="split of a real dataset: 300w train|common|challenge|full|test, wflw and cofw "
                           "train|test, aflw train|test|frontal")
    data.add_argument("--subset", help="WFLW only: keep the faces with this attribute (pose, expression, "
                                       "illumination, makeup, occlusion, blur)")
    _add_compute(parser, settings)
    output = parser.add_argument_group("output")
    output.add_argument("--norm", choices=NORMS, help="NME normalisation (default: the layout's benchmark one)")
    output.add_argument("--json", type=Path, metavar="FILE", help="also write the results to this JSON file")
    parser.set_defaults(run=run_evaluate)


def _predict_parser(commands) -> None:
    parser = commands.add_parser(
        "predict", formatter_class=_Formatter, help="landmarks of one face image",
        description=_paragraph("Crop a face out of an image, run the model and print its landmarks in the original "
                    "image's continuous pixel coordinates (pixel j covers [j, j+1]; see landmarks.data.coords)."),
        epilog="example:\n  python -m landmarks predict pip.pt face.jpg --box 40 60 200 220 --format pts "
               "--output drawn.png > face.pts")
    _add_model_file(parser)
    parser.add_argument("image", type=Path, metavar="IMAGE", help="image file (anything OpenCV reads)")
    crop = parser.add_argument_group("face crop")
    crop.add_argument("--box", type=float, nargs=4, metavar=("X0", "Y0", "X1", "Y1"),
                      help="face box in pixel coordinates (default: the whole image, made square around its centre)")
    crop.add_argument("--box-scale", type=float, default=1.1,
                      help="side of the square crop over the longer side of --box")
    output = parser.add_argument_group("output")
    output.add_argument("--format", choices=("xy", "pts"), default="xy",
                        help="xy: one 'x y' line per point; pts: a 300W .pts file (1-based coordinates)")
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
    import torch

    return ("cuda" if torch.cuda.is_available() else "cpu") if name == "auto" else name


def _check_source(args: argparse.Namespace) -> None:
    if args.data == "synthetic":
        if args.root is not None:
            raise UsageError("--root is for a real dataset; add --data 300w|wflw|cofw|aflw")
        return
    if args.root is None:
        raise UsageError(f"--data {args.data} needs --root PATH, the dataset's folder")
    if not args.root.is_dir():
        raise UsageError(f"dataset root not found: {args.root}")


def _real_dataset(args: argparse.Namespace, split: str, size: int, subset: str | None = None):
    from landmarks.data import datasets

    loaders = {"300w": datasets.load_300w, "wflw": datasets.load_wflw, "cofw": datasets.load_cofw,
               "aflw": datasets.load_aflw}
    options = {"subset": subset} if subset is not None else {}
    if subset is not None and args.data != "wflw":
        raise UsageError(f"--subset is for WFLW only, not {args.data}")
    return loaders[args.data](args.root, split=split, size=size, **options)


def _limited(data, count: int | None):
    """``count`` items of ``data`` spread evenly over it (all of them when ``count`` is None)."""
    from torch.utils.data import Subset

    if count is None or count >= len(data):
        return data
    if count < 0:
        raise UsageError(f"sizes must be >= 0, got {count}")
    return Subset(data, np.linspace(0, len(data) - 1, count).round().astype(int).tolist())


def _training_data(args: argparse.Namespace, settings: profiles.Profile):
    """Training set, validation set (or None), layout name and a description of the data."""
    _check_source(args)
    if args.data == "synthetic":
        from landmarks.data.synthetic import SyntheticFaces

        train_size = settings.train_images if args.train_size is None else args.train_size
        val_size = settings.test_images if args.val_size is None else args.val_size
        train = SyntheticFaces(args.domain, args.image_size, train_size, args.seed)
        val = SyntheticFaces(args.domain, args.image_size, val_size, args.seed + VALIDATION_SEED_OFFSET)
        return train, val if val_size > 0 else None, "300w", f"synthetic {args.domain} faces"
    train = _limited(_real_dataset(args, "train", args.image_size), args.train_size)
    val = _limited(_real_dataset(args, "test", args.image_size), args.val_size)
    return train, val if len(val) > 0 else None, args.data, f"{args.data} at {args.root}"


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
    detector, record = Detector.load_with_record(path)
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
    from landmarks.data.layouts import get_layout
    from landmarks.detector import ModelSpec
    from landmarks.training.loop import train_spec

    settings = profiles.current(image_size=args.image_size, width=args.width, epochs=args.epochs,
                                batch_size=args.batch_size, learning_rate=args.lr,
                                decay_epochs=tuple(args.decay_epochs), num_workers=args.num_workers)
    train, val, layout, description = _training_data(args, settings)
    spec = ModelSpec(head=args.head, num_points=get_layout(layout).num_points, depth=args.depth,
                     width=args.width, image_size=args.image_size,
                     net_stride=args.net_stride or DEFAULT_STRIDES[args.head], num_neighbours=args.neighbours,
                     coordinate_loss=args.coordinate_loss, layout=layout, pretrained=args.pretrained)
    start = time.perf_counter()
    detector, history = train_spec(spec, train, val, schedule=settings.schedule(), seed=args.seed,
                                   checkpoint_dir=args.checkpoint_dir, progress=not args.quiet,
                                   device=_device(args.device), amp=args.amp)
    seconds = time.perf_counter() - start
    metrics: dict[str, Any] = {"data": description, "train_images": len(train)}
    if val is not None:
        last = history[-1]
        metrics.update(nme=last["val_nme"], fr=last["val_fr"], auc=last["val_auc"], images=len(val),
                       norm=get_layout(layout).default_norm, threshold=THRESHOLD)
    detector.save(args.output, history, metrics=metrics, command=command)
    print(f"trained {spec.head} ({spec.image_size} px, width {spec.width}) on {len(train)} {description} "
          f"for {settings.epochs} epoch{'s' if settings.epochs != 1 else ''} in {seconds:.1f} s")
    if val is not None:
        print("validation " + ", ".join(_metric_lines(metrics)))
    print(f"saved {args.output}")
    return 0


def run_evaluate(args: argparse.Namespace, command: str) -> int:
    """``evaluate``: NME / FR / AUC of a model file on a test set."""
    from landmarks.evaluation.loop import evaluate

    detector, _ = _load(args.model, _device(args.device))
    data, description = _evaluation_data(args, detector)
    if len(data) == 0:
        raise UsageError(f"no test faces in {description}")
    results = evaluate(detector, data, layout=detector.layout, batch_size=args.batch_size, norm=args.norm,
                       num_workers=args.num_workers, threshold=THRESHOLD)
    report = {"model": str(args.model), "data": description, "images": len(data), "norm": results["norm"],
              "threshold": THRESHOLD, **{key: results[key] for key in ("nme", "fr", "auc")}}
    head = detector.spec.head if detector.spec is not None else type(detector.task).__name__
    print(f"{args.model} ({head}, {detector.layout.num_points} points) on {description}")
    print("\n".join(_metric_lines(report)))
    if args.json is not None:
        args.json.write_text(json.dumps(report, indent=2) + "\n")
    return 0


def _check_box(box: Sequence[float] | None, box_scale: float) -> None:
    if box is not None:
        x0, y0, x1, y1 = box
        if not (np.isfinite(box).all() and x1 > x0 and y1 > y0):
            raise UsageError(f"bad --box {x0:g} {y0:g} {x1:g} {y1:g}: need X1 > X0 and Y1 > Y0")
    if not box_scale > 0:
        raise UsageError(f"bad --box-scale {box_scale:g}: it must be positive")


def _pts_text(points: np.ndarray) -> str:
    """``points`` as the text of a 1-based ``.pts`` file (written by :func:`formats.write_pts`)."""
    from landmarks.data.coords import to_one_based
    from landmarks.data.formats import write_pts

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "points.pts"
        write_pts(path, to_one_based(points))
        return path.read_text()


def _save_drawing(image: np.ndarray, points: np.ndarray, layout: str, path: Path) -> None:
    """The image with the landmarks drawn, rendered by matplotlib's Agg canvas at about image resolution."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    from landmarks.data.layouts import get_layout
    from landmarks.plots.figures import show_landmarks

    height, width = image.shape[:2]
    zoom = max(1.0, 512 / max(height, width))  # small images are enlarged so the markers stay readable
    figure = Figure(figsize=(zoom * width / 100, zoom * height / 100), dpi=100)
    FigureCanvasAgg(figure)
    show_landmarks(image, pred=points, layout=get_layout(layout), ax=figure.add_axes((0, 0, 1, 1)))
    figure.savefig(path)


def run_predict(args: argparse.Namespace, command: str) -> int:
    """``predict``: landmarks of one image, printed (and drawn with --output)."""
    from landmarks.data.datasets import read_image

    detector, _ = _load(args.model, _device(args.device))
    _check_box(args.box, args.box_scale)
    image = read_image(args.image)
    detector.box_scale = args.box_scale
    points = detector.predict([image], boxes=None if args.box is None else [args.box])[0].double().numpy()
    if args.format == "pts":
        sys.stdout.write(_pts_text(points))
    else:
        print("\n".join(f"{x:.3f} {y:.3f}" for x, y in points))
    if args.output is not None:
        _save_drawing(image, points, detector.layout, args.output)
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
        return args.run(args, shlex.join(["python", "-m", "landmarks", *argv]))
    except (UsageError, ValueError, FileNotFoundError) as error:  # the library's "bad input" errors
        _fail(args.command, error)
