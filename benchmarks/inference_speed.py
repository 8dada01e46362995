"""Inference on a CPU: the default memory layout, channels-last (what ``Detector.predict`` uses there)
and the exported ONNX graph in onnxruntime, network and decoding together.

PIP Net (net stride 32, 10 neighbours) on a full-width ResNet-18 at 256 px by default, batch sizes
1 and 16, timed in interleaved rounds (:func:`landmarks.evaluation.speed.speed_rounds`); the table
gives median images/s and each variant's speed as a multiple of the default layout's within each
round (median, lowest and highest round). onnxruntime is skipped when the ``onnx`` extra is missing.

    python benchmarks/inference_speed.py
    python benchmarks/inference_speed.py --head heatmap --stride 4 --width 0.5 --size 128
"""
from __future__ import annotations

import argparse
import tempfile
from pathlib import Path

import torch

from landmarks.detector import ModelSpec, build_detector
from landmarks.evaluation.speed import inference_variants, speed_rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--head", default="pip", choices=["pip", "heatmap", "coordinate"])
    parser.add_argument("--stride", type=int, default=32, help="net stride of the head")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier of the trunk")
    parser.add_argument("--size", type=int, default=256, help="input side in pixels")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16])
    parser.add_argument("--seconds", type=float, default=2.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    args = parser.parse_args()
    torch.manual_seed(0)
    spec = ModelSpec(args.head, width=args.width, image_size=args.size, net_stride=args.stride,
                     num_neighbours=10 if args.head == "pip" else 0)
    detector = build_detector(spec, torch.rand(50, 68, 2) * args.size * 0.8 + args.size * 0.1)
    try:
        import onnxruntime  # noqa: F401
        have_onnx = True
    except ImportError:
        have_onnx = False
        print("onnxruntime not installed (pip install 'landmarks[onnx]'): timing PyTorch only")
    with tempfile.TemporaryDirectory() as folder, torch.inference_mode(False):
        found = inference_variants(detector, Path(folder) / "model.onnx" if have_onnx else None)
        with torch.inference_mode():
            measured = speed_rounds(found, tuple(args.batches), args.size, "cpu", args.seconds, args.rounds)
    print(f"{args.head} head, ResNet-18 x{args.width:g} at {args.size} px on the CPU ({torch.get_num_threads()} threads); "
          f"images/s including decoding, {measured.rounds} rounds\n")
    print(measured.table("default layout", label="variant", ratio_label="x default"), flush=True)


if __name__ == "__main__":
    main()
