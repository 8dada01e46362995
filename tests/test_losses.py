"""Each loss against a value worked out by hand on a tiny tensor."""
from __future__ import annotations

import pytest
import torch

from landmarks.data.layouts import custom_layout
from landmarks.losses import coordinate_l1, coordinate_l2, heatmap_mse, iod_normalised_l2, pip_loss
from landmarks.codecs.pip import pip_targets

# --------------------------------------------------------------------------- pip_loss
# Image 4 x 4 at stride 2 -> 2 x 2 maps; neighbours 0 <-> 1 (nb = 1).
# Landmark 0 at (1, 3):   u = (0.5, 1.5)  -> cell (0, 1), offset (0.5, 0.5)
# Landmark 1 at (3, 0.5): u = (1.5, 0.25) -> cell (1, 0), offset (0.5, 0.25)
# Neighbour targets: 1 seen from cell (0, 1) = (1.5, -0.75); 0 seen from cell (1, 0) = (-0.5, 1.5).
POINTS = torch.tensor([[[1.0, 3.0], [3.0, 0.5]]])
NEIGHBOURS = torch.tensor([[1], [0]])


def constant_outputs() -> dict[str, torch.Tensor]:
    out = {"score": torch.full((1, 2, 2, 2), 0.5), "offset_x": torch.full((1, 2, 2, 2), 0.25),
           "offset_y": torch.zeros(1, 2, 2, 2), "neighbour_x": torch.ones(1, 2, 2, 2),
           "neighbour_y": torch.zeros(1, 2, 2, 2)}
    # Values away from the ground-truth cells must not count in the offset terms.
    out["offset_x"][0, 0, 0, 0] = 100.0
    out["neighbour_y"][0, 1, 1, 1] = -100.0
    return out


def test_pip_loss_by_hand():
    targets = pip_targets(POINTS, 4, 2, NEIGHBOURS)
    # score: every one of the 8 cells is off by 0.5 -> mean of 0.25 = 0.25
    # offset: x |0.25 - 0.5|, |0.25 - 0.5| -> 0.25;  y |0 - 0.5|, |0 - 0.25| -> 0.375;  sum 0.625
    # neighbour: x |1 - 1.5|, |1 + 0.5| -> 1.0;  y |0 + 0.75|, |0 - 1.5| -> 1.125;  sum 2.125
    # total: 10 * 0.25 + 1 * (0.625 + 2.125) = 5.25
    loss = pip_loss(constant_outputs(), targets)
    expected = {"score": 0.25, "offset": 0.625, "neighbour": 2.125, "total": 5.25}
    assert {k: round(v.item(), 6) for k, v in loss.items()} == expected
    # alpha 2, beta 0.5: 2 * 0.25 + 0.5 * 2.75 = 1.875
    assert pip_loss(constant_outputs(), targets, alpha=2.0, beta=0.5)["total"].item() == pytest.approx(1.875)
    # Without cell_index the ground-truth cells are read off the target score maps: same numbers.
    no_index = {k: v for k, v in targets.items() if k != "cell_index"}
    assert pip_loss(constant_outputs(), no_index)["total"].item() == pytest.approx(5.25)


def test_pip_loss_without_neighbours():
    # Same as above with no neighbour maps: 10 * 0.25 + 0.625 = 3.125.
    targets = pip_targets(POINTS, 4, 2)
    outputs = {k: v for k, v in constant_outputs().items() if not k.startswith("neighbour")}
    loss = pip_loss(outputs, targets)
    assert loss["neighbour"].item() == 0.0
    assert loss["total"].item() == pytest.approx(3.125)
    with pytest.raises(ValueError, match="only the outputs"):
        pip_loss(constant_outputs(), targets)


def test_pip_loss_is_zero_on_its_targets_and_offsets_get_gradient_only_at_the_cells():
    targets = pip_targets(POINTS, 4, 2, NEIGHBOURS)
    perfect = {k: targets[k].clone().requires_grad_(True) for k in
               ("score", "offset_x", "offset_y", "neighbour_x", "neighbour_y")}
    assert pip_loss(perfect, targets)["total"].item() == 0.0
    outputs = {k: v.clone().requires_grad_(True) for k, v in constant_outputs().items()}
    pip_loss(outputs, targets)["total"].backward()
    # d|o - t|/do = sign(o - t) / (B N) = -1/2 at each ground-truth cell, 0 elsewhere.
    expected = torch.zeros(1, 2, 2, 2)
    expected[0, 0, 1, 0] = expected[0, 1, 0, 1] = -0.5
    assert torch.equal(outputs["offset_x"].grad, expected)
    assert (outputs["score"].grad != 0).all()  # the score term covers every cell


# --------------------------------------------------------------------------- the other losses
def test_heatmap_mse_by_hand():
    # (1 + 4 + 9 + 16) / 4 = 7.5
    pred = torch.tensor([[[[1.0, 2.0], [3.0, 4.0]]]])
    assert heatmap_mse(pred, torch.zeros_like(pred)).item() == 7.5


def test_coordinate_losses_by_hand():
    # Point errors (0, 0) and (3, -4): L1 per point 0 and 7 -> 3.5; squared L2 per point 0 and 25 -> 12.5.
    target = torch.tensor([[[1.0, 1.0], [2.0, 5.0]]])
    pred = torch.tensor([[[1.0, 1.0], [5.0, 1.0]]])
    assert coordinate_l1(pred, target).item() == 3.5
    assert coordinate_l2(pred, target).item() == 12.5
    with pytest.raises(ValueError):
        coordinate_l1(pred, target[:, :1])


TRI = custom_layout(3, name="tri", outer_eye_corners=(0, 1))
# Face 0: eye corners (0, 0), (4, 0) -> IOD 4; errors 0, 5, 1.  Face 1: corners (10, 10), (12, 10) -> IOD 2;
# errors 1, 0, 0.
TARGET = torch.tensor([[[0.0, 0.0], [4.0, 0.0], [2.0, 3.0]], [[10.0, 10.0], [12.0, 10.0], [11.0, 12.0]]])
PRED = TARGET + torch.tensor([[[0.0, 0.0], [3.0, 4.0], [0.0, -1.0]], [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])


def test_iod_normalised_l2_by_hand():
    # Distances: face 0 mean (0 + 5 + 1) / 3 = 2 -> / 4 = 0.5; face 1 mean 1/3 -> / 2 = 1/6; mean 1/3.
    assert iod_normalised_l2(PRED, TARGET, TRI).item() == pytest.approx(1 / 3)
    # Squared: face 0 (0 + 25 + 1) / 3 / 4 = 13/6; face 1 (1 + 0 + 0) / 3 / 2 = 1/6; mean 7/6.
    assert iod_normalised_l2(PRED, TARGET, TRI, squared=True).item() == pytest.approx(7 / 6)


def test_iod_normalised_l2_gradient_is_finite_at_zero_error():
    pred = TARGET.clone().requires_grad_(True)
    iod_normalised_l2(pred, TARGET, TRI).backward()
    assert torch.isfinite(pred.grad).all()


def test_iod_normalised_l2_zero_iod_raises():
    degenerate = TARGET.clone()
    degenerate[1, 1] = degenerate[1, 0]  # both eye corners at (10, 10)
    with pytest.raises(ValueError, match="zero"):
        iod_normalised_l2(PRED, degenerate, TRI)
    with pytest.raises(ValueError, match="eye corners"):
        iod_normalised_l2(PRED, TARGET, custom_layout(3))
