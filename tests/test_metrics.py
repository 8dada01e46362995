"""Metrics against values worked out by hand."""
from __future__ import annotations

import math

import pytest
import torch

from landmarks.data.layouts import AFLW, W300, custom_layout
from landmarks.evaluation.metrics import auc, ced, failure_rate, landmark_boxes, nme, normalising_distance, summarise

# Three points: two "eye corners" (0, 1) and a third (2).
TRI = custom_layout(3, name="tri", flip_pairs=[(0, 1)], outer_eye_corners=(0, 1), pupils=(0, 1))

# Face 0: corners (0, 0) and (4, 0) -> inter-ocular 4.
#   errors: point 0 exact (0), point 1 off by (3, 4) (5), point 2 off by (0, -1) (1)
#   mean error (0 + 5 + 1) / 3 = 2  -> NME 2 / 4 = 0.5
# Face 1: corners (10, 10) and (12, 10) -> inter-ocular 2.
#   errors: point 0 off by (1, 0) (1), points 1, 2 exact -> mean 1/3 -> NME (1/3) / 2 = 1/6
TARGET = torch.tensor([[[0.0, 0.0], [4.0, 0.0], [2.0, 3.0]],
                       [[10.0, 10.0], [12.0, 10.0], [11.0, 12.0]]])
PRED = TARGET + torch.tensor([[[0.0, 0.0], [3.0, 4.0], [0.0, -1.0]],
                              [[1.0, 0.0], [0.0, 0.0], [0.0, 0.0]]])


def test_nme_by_hand():
    assert torch.allclose(nme(PRED, TARGET, TRI), torch.tensor([0.5, 1 / 6]))
    assert torch.allclose(nme(PRED[0], TARGET[0], TRI), torch.tensor([0.5]))  # a single (N, 2) face
    assert torch.equal(nme(TARGET, TARGET, TRI), torch.zeros(2))


def test_nme_with_visible_mask():
    # Face 0 without point 1: (0 + 1) / 2 = 0.5 -> / 4 = 0.125.
    # Face 1 without point 0: (0 + 0) / 2 = 0   -> 0.
    visible = torch.tensor([[True, False, True], [False, True, True]])
    assert torch.allclose(nme(PRED, TARGET, TRI, visible=visible), torch.tensor([0.125, 0.0]))
    with pytest.raises(ValueError, match=r"\[1\]"):
        nme(PRED, TARGET, TRI, visible=torch.tensor([[True, True, True], [False, False, False]]))


def test_inter_ocular_and_inter_pupil_on_300w():
    torch.manual_seed(0)
    points = torch.rand(5, 68, 2) * 200
    iod = normalising_distance(points, W300, "inter-ocular")
    assert torch.allclose(iod, (points[:, 36] - points[:, 45]).norm(dim=-1))
    assert torch.equal(normalising_distance(points, W300), iod)  # 300W default is inter-ocular
    centres = points[:, 36:42].mean(1), points[:, 42:48].mean(1)
    assert torch.allclose(normalising_distance(points, W300, "inter-pupil"), (centres[0] - centres[1]).norm(dim=-1))


def test_box_norms():
    # Box 30 wide and 40 high: size sqrt(30 * 40) = sqrt(1200); diagonal sqrt(900 + 1600) = 50.
    boxes = torch.tensor([[10.0, 20.0, 40.0, 60.0], [0.0, 0.0, 10.0, 10.0]])
    size = normalising_distance(TARGET, TRI, "box-size", boxes)
    assert torch.allclose(size, torch.tensor([math.sqrt(1200.0), 10.0]))
    diag = normalising_distance(TARGET, TRI, "box-diagonal", boxes)
    assert torch.allclose(diag, torch.tensor([50.0, math.sqrt(200.0)]))
    # NME of face 0 by box size: mean error 2 / sqrt(1200).
    assert torch.allclose(nme(PRED, TARGET, TRI, "box-size", boxes)[0], torch.tensor(2 / math.sqrt(1200.0)))


def test_box_norm_needs_boxes_and_landmark_boxes_helps():
    points = torch.rand(2, 19, 2) * 100
    with pytest.raises(ValueError, match="boxes"):
        nme(points, points, AFLW)  # AFLW defaults to box-size
    # Tight boxes of TARGET: face 0 spans x 0..4, y 0..3 -> size sqrt(12).
    boxes = landmark_boxes(TARGET)
    assert torch.equal(boxes[0], torch.tensor([0.0, 0.0, 4.0, 3.0]))
    assert torch.allclose(normalising_distance(TARGET, TRI, "box-size", boxes)[0], torch.tensor(math.sqrt(12.0)))


def test_zero_distance_raises_with_indices():
    target = TARGET.clone()
    target[1, 1] = target[1, 0]  # face 1: eye corners coincide
    with pytest.raises(ValueError, match=r"images \[1\]"):
        nme(PRED, target, TRI)
    with pytest.raises(ValueError, match=r"images \[0\]"):
        normalising_distance(TARGET, TRI, "box-size", torch.tensor([[5.0, 5.0, 5.0, 9.0], [0.0, 0.0, 1.0, 1.0]]))
    with pytest.raises(ValueError, match=r"images \[1\]"):
        normalising_distance(TARGET, TRI, "box-size", torch.tensor([[0.0, 0.0, 1.0, 1.0], [0.0, 0.0, float("nan"), 1.0]]))
    with pytest.raises(ValueError, match=r"\[0\]"):
        bad = TARGET.clone()
        bad[0, 2, 0] = float("inf")
        normalising_distance(bad, TRI)


def test_unknown_norm_and_shape_mismatch():
    with pytest.raises(ValueError, match="unknown norm"):
        normalising_distance(TARGET, TRI, "face-width")
    with pytest.raises(ValueError):
        nme(PRED[:, :2], TARGET[:, :2], TRI)
    with pytest.raises(ValueError, match="no outer eye corners"):
        normalising_distance(TARGET, custom_layout(3), "inter-ocular")


def test_failure_rate_is_strictly_greater():
    nmes = torch.tensor([0.1, 0.1000001, 0.05, 0.3])
    assert failure_rate(nmes) == pytest.approx(0.5)  # 0.1 itself is not a failure
    assert failure_rate([0.01, 0.02], 0.015) == pytest.approx(0.5)


def test_auc_extremes():
    assert auc(torch.zeros(7)) == pytest.approx(1.0)
    assert auc(torch.full((7,), 0.25)) == pytest.approx(0.0)
    assert auc(torch.zeros(7), steps=1000) == pytest.approx(1.0)
    assert auc(torch.full((7,), 0.25), steps=1000) == pytest.approx(0.0)


def test_auc_by_hand():
    # CED up to 0.1 of errors {0, 0.02, 0.05, 0.2}: each error e adds max(0, 0.1 - e) of area,
    # 0.1 + 0.08 + 0.05 + 0 = 0.23; over 4 faces and divided by 0.1: 0.23 / 4 / 0.1 = 0.575.
    nmes = torch.tensor([0.0, 0.02, 0.05, 0.2])
    assert auc(nmes) == pytest.approx(0.575)
    assert auc(nmes, steps=1000) == pytest.approx(0.575, abs=2e-3)  # trapezoid on a fine grid
    # With threshold 0.05: 0.05 + 0.03 + 0 + 0 = 0.08 -> 0.08 / 4 / 0.05 = 0.4.
    assert auc(nmes, threshold=0.05) == pytest.approx(0.4)


def test_ced_curve():
    nmes = torch.tensor([0.0, 0.02, 0.05, 0.2])
    x, y = ced(nmes, threshold=0.1, steps=10)
    assert torch.allclose(x, torch.linspace(0, 0.1, 11, dtype=torch.float64))
    assert y[0] == 0.25 and y[-1] == 0.75  # 0 counts at x = 0; 0.2 never does
    assert y[2] == 0.5  # x = 0.02 includes the error equal to it
    assert (y.diff() >= 0).all()


def test_summarise():
    out = summarise(torch.tensor([0.0, 0.02, 0.05, 0.2]))
    assert out == pytest.approx({"nme": 0.0675, "fr": 0.25, "auc": 0.575})


def test_empty_or_nan_errors_raise():
    with pytest.raises(ValueError):
        auc(torch.tensor([]))
    with pytest.raises(ValueError):
        summarise(torch.tensor([0.1, float("nan")]))
