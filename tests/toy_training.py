"""A toy landmark problem for the trainer's tests, and the script that torchrun runs in test_distributed.

The "faces" are 8 x 8 random images whose 5 landmarks are a fixed linear function of the pixels,
so a linear model can learn them exactly. Run as a script (under torchrun) it trains the toy model
with DistributedDataParallel and saves each rank's final state dict and history.
"""
from __future__ import annotations

import argparse
import os
import sys
from pathlib import Path

import torch
from torch import nn
from torch.utils.data import Dataset

from landmarks.data.layouts import custom_layout

SIZE = 8
POINTS = 5
LAYOUT = custom_layout(POINTS, name="toy-5", outer_eye_corners=(0, 1))
MEAN_SHAPE = torch.tensor([[2.0, 3.0], [6.0, 3.0], [4.0, 4.5], [3.0, 6.0], [5.0, 6.0]])


class ToyFaces(Dataset):
    """Images in [0, 1] and landmarks ``MEAN_SHAPE + W (image - 0.5)``.

    ``noise > 0`` adds Gaussian noise to the image from the *global* torch RNG (the way an
    augmentation would) before the landmarks are computed, so the labels stay exact.
    """

    layout = LAYOUT

    def __init__(self, length: int = 64, seed: int = 0, noise: float = 0.0) -> None:
        self.length, self.seed, self.noise = length, seed, noise
        self.weights = torch.randn(2 * POINTS, 3 * SIZE * SIZE, generator=torch.Generator().manual_seed(99)) * 0.05

    def __len__(self) -> int:
        return self.length

    def __getitem__(self, index: int) -> dict:
        image = torch.rand(3, SIZE, SIZE, generator=torch.Generator().manual_seed(self.seed * 100_003 + index))
        if self.noise:
            image = (image + self.noise * torch.randn_like(image)).clamp(0, 1)
        landmarks = MEAN_SHAPE + (self.weights @ (image.flatten() - 0.5)).reshape(POINTS, 2)
        return {"image": image, "landmarks": landmarks, "box": torch.tensor([0.0, 0.0, SIZE, SIZE]), "index": index}


class ToyModel(nn.Module):
    """Flatten -> (BatchNorm) -> Linear -> ReLU -> Dropout -> Linear; coordinates in image-size units."""

    def __init__(self, hidden: int = 32, dropout: float = 0.0, batch_norm: bool = False) -> None:
        super().__init__()
        features = 3 * SIZE * SIZE
        self.net = nn.Sequential(nn.Flatten(), nn.BatchNorm1d(features) if batch_norm else nn.Identity(),
                                 nn.Linear(features, hidden), nn.ReLU(), nn.Dropout(dropout),
                                 nn.Linear(hidden, 2 * POINTS))

    def forward(self, images: torch.Tensor) -> dict[str, torch.Tensor]:
        return {"coords": self.net(images).reshape(-1, POINTS, 2)}


class ToyTask:
    """L1 + MSE on normalised coordinates; can inject a NaN or an interruption at a given call."""

    def __init__(self, nan_at: int | None = None, interrupt_at: int | None = None) -> None:
        self.calls, self.nan_at, self.interrupt_at = 0, nan_at, interrupt_at

    def loss(self, outputs: dict, batch: dict) -> dict[str, torch.Tensor]:
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt("simulated interruption")
        error = outputs["coords"] - batch["landmarks"] / SIZE
        l1, mse = error.abs().mean(), error.pow(2).mean()
        if self.calls == self.nan_at:
            mse = mse * float("nan")
        return {"total": l1 + mse, "l1": l1, "mse": mse}

    def predict(self, outputs: dict, batch: dict) -> torch.Tensor:
        return outputs["coords"] * SIZE


def main(argv: list[str] | None = None) -> None:
    """torchrun entry: train the toy model with DDP and save ``rank<r>.pt`` in ``--out``."""
    from landmarks.detector import Detector
    from landmarks.training.loop import fit

    parser = argparse.ArgumentParser()
    parser.add_argument("--out", required=True)
    parser.add_argument("--epochs", type=int, default=3)
    args = parser.parse_args(argv)
    torch.set_num_threads(1)
    torch.manual_seed(int(os.environ["RANK"]))  # different initial weights on purpose: DDP must equalise them
    model = ToyModel(dropout=0.1, batch_norm=True)
    history = fit(Detector(model, ToyTask(), layout=None), ToyFaces(64, noise=0.05), ToyFaces(16, seed=1), epochs=args.epochs,
                  batch_size=8, lr=1e-2, decay_epochs=(2,), seed=3, checkpoint_dir=Path(args.out) / "run",
                  progress=False)
    torch.save({"state": model.state_dict(), "history": history.to_dict(), "world_size": os.environ["WORLD_SIZE"]},
               Path(args.out) / f"rank{os.environ['RANK']}.pt")


if __name__ == "__main__":
    sys.exit(main())
