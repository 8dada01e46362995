"""Images per second of each detection head on the same ResNet trunk (Table 8 of the PIPNet ECCV draft).

Measures, in one run on this machine, the bare trunk and the full models *including decoding*
(PIP Net also merges its neighbour votes): PIP Net at net stride 32, Map Net at strides 4, 2 and
1, and Coord Net, at batch sizes 1 and 16. The models are timed in interleaved rounds (every model
back to back in each round); the table gives each model's median images/s over the rounds and its
speed as a multiple of the bare trunk's, the median over rounds of the ratio within each round, with
the lowest and highest round's ratio (on a busy machine these spread widely).

    python benchmarks/heads_speed.py                 # ResNet-18, 256 x 256, CPU
    python benchmarks/heads_speed.py --device cuda --width 1.0 --size 256
"""
from __future__ import annotations

import argparse
import torch

from landmarks.evaluation.speed import head_models, speed_rounds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--depth", type=int, default=18, help="ResNet depth (18, 34 or 50)")
    parser.add_argument("--width", type=float, default=1.0, help="channel multiplier of the trunk")
    parser.add_argument("--size", type=int, default=256, help="input side in pixels")
    parser.add_argument("--points", type=int, default=68, help="number of landmarks")
    parser.add_argument("--batches", type=int, nargs="+", default=[1, 16], help="batch sizes")
    parser.add_argument("--seconds", type=float, default=3.0, help="time per measurement")
    parser.add_argument("--rounds", type=int, default=5, help="interleaved rounds (medians are reported)")
    parser.add_argument("--min-steps", type=int, default=3, help="least batches per measurement")
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    torch.manual_seed(0)
    models = head_models(args.points, args.depth, args.width)
    print(f"ResNet-{args.depth} x{args.width} at {args.size} px on {args.device} "
          f"({torch.get_num_threads()} threads); images/s including decoding\n")
    measured = speed_rounds(models, tuple(args.batches), args.size, args.device, args.seconds, args.rounds,
                            args.min_steps)
    print(measured.table("bare trunk", ratio_label="x trunk"), flush=True)


if __name__ == "__main__":
    main()
