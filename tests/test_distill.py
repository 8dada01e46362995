"""Tests for chapter 5's pieces: transform ensembles (landmarks.pipnet.ensembles), dataset roles
(landmarks.data.views), pseudo-labels, the curriculum loss and self-training
(landmarks.pipnet.distillation), and the TSD / TMD splits (landmarks.book.ch05_distillation)."""
from __future__ import annotations

import math

import pytest
import torch
from torch import nn
from torch.utils.data import ConcatDataset, Dataset, Subset, default_collate

from landmarks.book.ch05_distillation import test_sets, tmd_split, tsd_split
from landmarks.codecs.pip import pip_targets
from landmarks.codecs.tasks import PIPTask
from landmarks.data import transforms as augment
from landmarks.data.layouts import custom_layout, get_layout
from landmarks.data.views import Labelled, PseudoLabelled, TestSet, Unlabelled, is_test_set
from landmarks.detector import Detector, ModelSpec
from landmarks.losses import pip_loss
from landmarks.pipnet.distillation import CurriculumPIPTask, coarse_score_loss, pseudo_label, self_train
from landmarks.pipnet.ensembles import (
    HorizontalFlip,
    Identity,
    Rotation,
    Translation,
    ablation_transforms,
    ensemble_predict,
    flips,
    no_transforms,
    rotations,
    translation_offsets,
    translations,
)

SIZE = 64
# Three points: 0 and 1 are a left/right pair (both drawn in channel 0), 2 lies on the axis (channel 1).
DOTS = custom_layout(3, name="dots-3", flip_pairs=[(0, 1)])


def dot_images(points: torch.Tensor, size: int = SIZE) -> torch.Tensor:
    """One bright pixel per point, at the pixel whose centre is the point (points at j + 0.5)."""
    b = points.shape[0]
    images = torch.zeros(b, 3, size, size)
    cols, rows = (points - 0.5).round().long().unbind(-1)
    for k, channel in enumerate((0, 0, 1)):
        images[torch.arange(b), channel, rows[:, k], cols[:, k]] = 1.0
    return images


def centroid(mass: torch.Tensor) -> torch.Tensor:
    """Intensity-weighted mean of pixel centres of (B, H, W) -> (B, 2)."""
    h, w = mass.shape[-2:]
    xs, ys = torch.arange(w) + 0.5, torch.arange(h) + 0.5
    total = mass.sum((-1, -2))
    return torch.stack([(mass.sum(-2) * xs).sum(-1) / total, (mass.sum(-1) * ys).sum(-1) / total], -1)


def find_dots(images: torch.Tensor) -> torch.Tensor:
    """An equivariant 'detector': point 0 / 1 = channel-0 mass left / right of the middle, 2 = channel 1."""
    w = images.shape[-1]
    left = torch.arange(w) < w / 2
    first = images[:, 0] * left
    second = images[:, 0] * ~left
    return torch.stack([centroid(first), centroid(second), centroid(images[:, 1])], 1)


POINTS = torch.tensor([[[20.5, 30.5], [44.5, 29.5], [32.5, 40.5]],
                       [[18.5, 22.5], [40.5, 24.5], [30.5, 36.5]]])


# --------------------------------------------------------------------------- translations
def test_translation_offsets_are_the_papers_eight_shifts_scaled():
    at_256 = translation_offsets(256)
    assert len(at_256) == 8 and len(set(at_256)) == 8
    assert sorted(max(abs(dx), abs(dy)) for dx, dy in at_256) == [20] * 4 + [30] * 4
    assert all(dx == 0 or dy == 0 for dx, dy in at_256)
    assert set(translation_offsets(64)) == {(5.0, 0.0), (-5.0, 0.0), (0.0, 5.0), (0.0, -5.0),
                                            (7.5, 0.0), (-7.5, 0.0), (0.0, 7.5), (0.0, -7.5)}


def test_integer_shift_copies_pixels_and_fills_with_zeros():
    images = torch.rand(2, 3, 5, 6)
    out = Translation(2, -1).images(images)
    expected = torch.zeros_like(images)
    expected[:, :, 0:4, 2:6] = images[:, :, 1:5, 0:4]  # right by 2, up by 1
    assert torch.equal(out, expected)
    assert torch.equal(Translation(0, 0).images(images), images)
    assert torch.equal(Translation(10, 0).images(images), torch.zeros_like(images))


@pytest.mark.parametrize("offset", [(3.0, -4.0), (7.5, 0.0), (-2.25, 5.5)])
def test_a_dot_moves_with_its_landmark(offset):
    images = dot_images(POINTS)
    shift = Translation(*offset)
    moved = shift.images(images)
    torch.testing.assert_close(find_dots(moved), shift.points(POINTS, (SIZE, SIZE)), atol=1e-4, rtol=0)
    assert torch.allclose(moved.sum((-1, -2)), images.sum((-1, -2)), atol=1e-5)  # nothing lost in the frame


# --------------------------------------------------------------------------- inverses
@pytest.mark.parametrize("transform", [Identity(), Translation(5.0, -7.5), HorizontalFlip.for_layout("300w"),
                                       Rotation(17.0), Rotation(-90.0)])
def test_each_inverse_undoes_the_forward_map_on_points(transform):
    points = torch.rand(4, 68, 2) * 128
    size = (128, 96)
    back = transform.inverse_points(transform.points(points, size), size)
    torch.testing.assert_close(back, points, atol=1e-4, rtol=0)


def test_flip_twice_is_the_identity_and_relabels_pairs():
    flip = HorizontalFlip.for_layout("300w")
    points = torch.randint(0, 800, (3, 68, 2)) / 8.0  # multiples of 1/8: 100 - x is exact in float
    assert torch.equal(flip.points(flip.points(points, (100, 100)), (100, 100)), points)
    flipped = flip.points(points, (100, 100))
    # Jaw point 0 of the mirrored face is the mirror image of the original jaw point 16 (x -> W - x).
    assert torch.equal(flipped[:, 0, 0], 100 - points[:, 16, 0]) and torch.equal(flipped[:, 0, 1], points[:, 16, 1])
    assert torch.equal(flipped[:, 30, 0], 100 - points[:, 30, 0])  # nose tip stays itself


def test_flip_and_rotation_move_dots_with_landmarks():
    images = dot_images(POINTS)
    flip = HorizontalFlip.for_layout(DOTS)
    torch.testing.assert_close(find_dots(flip.images(images)), flip.points(POINTS, (SIZE, SIZE)))
    quarter = Rotation(90.0)  # pixel centres land on pixel centres about the centre of an even image
    turned = quarter.images(images)
    # A quarter turn counter-clockwise on screen: a point right of the centre goes above it.
    assert torch.allclose(quarter.points(torch.tensor([[[42.0, 32.0]]]), (SIZE, SIZE)), torch.tensor([[[32.0, 22.0]]]))
    expected = quarter.points(POINTS, (SIZE, SIZE))
    mass = torch.stack([centroid(turned[:, 1])], 1)
    torch.testing.assert_close(mass[:, 0], expected[:, 2], atol=1e-3, rtol=0)
    small = Rotation(12.0)
    torch.testing.assert_close(centroid(small.images(images)[:, 1]), small.points(POINTS, (SIZE, SIZE))[:, 2],
                               atol=0.05, rtol=0)


# --------------------------------------------------------------------------- one engine with the augmentation
WARP_SIZE = (40, 48)  # (height, width): not square, not a power of two


def _augmented(transform, image, points):
    """What a landmarks.data.transforms sample transform does to one image and its points."""
    out = transform({"image": image, "landmarks": points})
    return out["image"], out["landmarks"]


@pytest.mark.parametrize("view, same, whole", [
    (Translation(6.0, -3.0), lambda s: augment._affine(s, translate=(6.0, -3.0)), True),
    (Translation(2.5, 1.25), lambda s: augment._affine(s, translate=(2.5, 1.25)), False),
    (Rotation(17.0), augment.RandomRotate((17.0, 17.0), p=1.0), False),
    (Rotation(-90.0), augment.RandomRotate((-90.0, -90.0), p=1.0), False),
    (HorizontalFlip.for_layout("300w"), augment.RandomHorizontalFlip(get_layout("300w"), p=1.0), True),
])
def test_the_views_warp_and_move_points_as_the_augmentation_does(view, same, whole):
    g = torch.Generator().manual_seed(0)
    images = torch.rand(2, 3, *WARP_SIZE, generator=g)
    points = torch.rand(2, 68, 2, generator=g) * torch.tensor([WARP_SIZE[1], WARP_SIZE[0]], dtype=torch.float32)
    warped = view.images(images)  # the whole batch at once
    # Where the augmentation's warp of a white image stays white, every source pixel lies in the frame;
    # at the border it blends its fill in once more than zero padding does (torchvision's fill=0 mask).
    inside = _augmented(same, torch.ones(3, *WARP_SIZE), points[0])[0] > 1 - 1e-5
    for i in range(2):
        image, moved = _augmented(same, images[i], points[i])
        torch.testing.assert_close(view.points(points[i], WARP_SIZE), moved, atol=1e-4, rtol=0)
        if whole:  # whole-pixel shifts and flips: the same image everywhere (the augmentation samples a
            # whole-pixel shift bilinearly, exact up to float rounding of its grid; the view copies pixels)
            torch.testing.assert_close(warped[i], image, atol=1e-5, rtol=0)
        else:
            assert inside.float().mean() > 0.5
            torch.testing.assert_close(warped[i][inside], image[inside], atol=1e-5, rtol=0)


# --------------------------------------------------------------------------- ensembles
def test_translation_ensemble_of_an_equivariant_detector_is_its_prediction():
    images = dot_images(POINTS)
    calls = []

    def predict(batch):
        calls.append(batch.shape[0])
        return find_dots(batch)

    transforms = translations(SIZE)  # 5 and 7.5 px: integer and fractional shifts
    mean, every = ensemble_predict(predict, images, transforms)
    assert calls == [len(transforms) * 2]  # one batched call for all 8 x 2 copies
    assert every.shape == (8, 2, 3, 2)
    torch.testing.assert_close(mean, POINTS, atol=1e-4, rtol=0)
    torch.testing.assert_close(every, POINTS.expand_as(every), atol=1e-4, rtol=0)
    calls.clear()
    chunked, _ = ensemble_predict(predict, images, transforms, chunk_size=5)
    assert calls == [5, 5, 5, 1]
    torch.testing.assert_close(chunked, mean)


def test_flip_ensemble_and_ablation_sets():
    mean, every = ensemble_predict(find_dots, dot_images(POINTS), flips(DOTS))
    assert every.shape[0] == 2
    torch.testing.assert_close(mean, POINTS)
    assert len(no_transforms()) == 1 and len(rotations()) == 4
    assert [len(ablation_transforms(n, 128)) for n in ("none", "flip", "rotation", "translation")] == [1, 2, 4, 8]
    with pytest.raises(ValueError):
        ablation_transforms("scaling", 128)


# --------------------------------------------------------------------------- pseudo-labels
class DotFaces(Dataset):
    layout = DOTS

    def __len__(self):
        return 2

    def __getitem__(self, i):
        return {"image": dot_images(POINTS[i:i + 1])[0], "landmarks": POINTS[i] + 100.0,  # wrong on purpose
                "box": torch.tensor([0.0, 0.0, SIZE, SIZE])}


class DotModel(nn.Module):
    def forward(self, images):
        return {"points": find_dots(images)}


class PassTask:
    def predict(self, outputs, batch):
        return outputs["points"]


def dot_detector() -> Detector:
    """The equivariant dot finder as a detector (no weights: its network reads the dots directly)."""
    return Detector(DotModel(), PassTask(), layout=DOTS)


def test_a_detector_ensemble_goes_through_the_inference_loop_in_chunks():
    detector = dot_detector().train()
    mean, every = ensemble_predict(detector, dot_images(POINTS), translations(SIZE), chunk_size=5)
    torch.testing.assert_close(mean, POINTS, atol=1e-4, rtol=0)
    assert every.shape == (8, 2, 3, 2)
    assert detector.model.training  # evaluation mode only while predicting


def test_pseudo_labels_come_from_the_ensemble_and_are_served_flagged():
    detector = dot_detector().train()
    labels = pseudo_label(detector, Unlabelled(DotFaces()), translations(SIZE), batch_size=1)
    torch.testing.assert_close(labels, POINTS, atol=1e-4, rtol=0)
    assert detector.model.training  # mode given back
    pseudo = PseudoLabelled(Unlabelled(DotFaces()), labels)
    mixed = ConcatDataset([Labelled(DotFaces()), pseudo])
    batch = default_collate([mixed[i] for i in range(4)])
    assert batch["pseudo"].tolist() == [False, False, True, True]
    torch.testing.assert_close(batch["landmarks"][2:], POINTS, atol=1e-4, rtol=0)
    torch.testing.assert_close(batch["box"][2, :2], POINTS[0].min(0).values, atol=1e-4, rtol=0)
    assert "landmarks" not in Unlabelled(DotFaces())[0]


def test_test_sets_are_never_pseudo_labelled():
    test = TestSet(DotFaces())
    for data in (test, Subset(test, [0]), ConcatDataset([DotFaces(), test])):
        assert is_test_set(data)
        with pytest.raises(ValueError, match="never made from labelled test images"):
            pseudo_label(dot_detector(), data, no_transforms())
    with pytest.raises(ValueError):
        PseudoLabelled(test, POINTS)
    flagged = DotFaces()
    flagged.is_test = True
    with pytest.raises(ValueError):
        pseudo_label(dot_detector(), flagged, no_transforms())
    assert not is_test_set(DotFaces())


# --------------------------------------------------------------------------- curriculum
SCORE = torch.tensor([[0.1, 0.2, 0.0, 0.3],
                      [0.5, 0.0, 0.9, 0.1],
                      [0.0, 0.0, 0.2, 0.0],
                      [0.4, 0.0, 0.0, 0.6]])[None, None]
TARGET = torch.zeros(1, 1, 4, 4)
TARGET[0, 0, 1, 2] = 1.0


def test_coarse_score_loss_by_hand():
    assert coarse_score_loss(SCORE, SCORE.clone(), 2) == 0
    # 2 x 2 maxima: 0.5, 0.9 / 0.4, 0.6 against 0, 1 / 0, 0.
    assert math.isclose(coarse_score_loss(SCORE, TARGET, 2).item(), (0.25 + 0.01 + 0.16 + 0.36) / 4, rel_tol=1e-6)
    # 4 x 4 is the map itself: the plain mean squared error.
    assert math.isclose(coarse_score_loss(SCORE, TARGET, 4).item(), 0.97 / 16, rel_tol=1e-6)
    assert math.isclose(coarse_score_loss(SCORE, TARGET, 8).item(), 0.97 / 16, rel_tol=1e-6)


def _pip_outputs(b, n, h, w, requires_grad=False):
    g = torch.Generator().manual_seed(0)
    keys = ("score", "offset_x", "offset_y")
    return {k: torch.rand(b, n, h, w, generator=g).requires_grad_(requires_grad) for k in keys}


def test_curriculum_task_supervises_pseudo_labels_through_coarse_scores_only():
    base = PIPTask(net_stride=8)
    task = CurriculumPIPTask(base, (2,))
    landmarks = torch.tensor([[[5.0, 6.0], [20.0, 27.0]], [[30.0, 3.0], [12.0, 12.0]]])
    image = torch.zeros(2, 3, 32, 32)
    outputs = _pip_outputs(2, 2, 4, 4, requires_grad=True)
    labelled = task.loss(outputs, {"image": image, "landmarks": landmarks, "pseudo": torch.tensor([False, False])})
    plain = pip_loss(outputs, pip_targets(landmarks, 32, 8), 10.0, 1.0)["total"]
    torch.testing.assert_close(labelled["total"], plain)

    pseudo = task.loss(outputs, {"image": image, "landmarks": landmarks, "pseudo": torch.tensor([True, True])})
    target = pip_targets(landmarks, 32, 8)["score"]
    torch.testing.assert_close(pseudo["total"], 10.0 * coarse_score_loss(outputs["score"], target, 2))
    pseudo["total"].backward()
    assert outputs["offset_x"].grad is None or not outputs["offset_x"].grad.any()

    mixed = task.loss(outputs, {"image": image, "landmarks": landmarks, "pseudo": torch.tensor([False, True])})
    first = pip_loss({k: v[:1] for k, v in outputs.items()}, pip_targets(landmarks[:1], 32, 8))["total"]
    second = 10.0 * coarse_score_loss(outputs["score"][1:], target[1:], 2)
    torch.testing.assert_close(mixed["total"], (first + second) / 2)


# --------------------------------------------------------------------------- scenarios and self-training
def test_tsd_and_tmd_splits():
    labelled, unlabelled = tsd_split("studio", 0.25, 16, seed=1, image_size=32)
    assert (len(labelled), len(unlabelled)) == (4, 12)
    assert not set(labelled.indices) & set(unlabelled.dataset.indices)
    assert "landmarks" not in unlabelled[0]
    tests = test_sets(["studio"], 4, seed=2, image_size=32, train_seed=1)
    assert isinstance(tests["studio"], TestSet) and tests["studio"].dataset.seed != labelled.dataset.seed
    with pytest.raises(ValueError):
        test_sets(["studio"], 4, seed=1, train_seed=1)
    lab, unlab = tmd_split(["studio"], ["wild", "sketch"], (3, 2), seed=1, image_size=32)
    assert (len(lab), len(unlab)) == (3, 4)
    assert {d.domain.name for d in unlab.dataset.datasets} == {"wild", "sketch"}
    with pytest.raises(ValueError):
        tmd_split(["studio"], ["studio"], (3, 2), seed=1)


def _tiny(batch_size: int) -> dict:
    """A one-epoch schedule for the self-training tests (keyword arguments of fit)."""
    return dict(epochs=1, batch_size=batch_size, lr=1e-3)


def test_self_train_two_rounds_with_curriculum():
    labelled, unlabelled = tsd_split("studio", 0.5, 32, seed=3, image_size=64)
    spec = ModelSpec(head="pip", image_size=64, width=0.25, net_stride=16, num_neighbours=2)
    rounds = self_train(spec, labelled, unlabelled, schedule=_tiny(8), rounds=2, curriculum=True)
    assert [r.train_size for r in rounds] == [16, 32]
    assert all(isinstance(r.detector, Detector) for r in rounds)
    assert rounds[0].pseudo_labels is None and rounds[1].pseudo_labels.shape == (16, 68, 2)
    assert isinstance(rounds[1].loss, CurriculumPIPTask) and rounds[1].pools == (2,)
    assert isinstance(rounds[1].detector.task, PIPTask)  # the detector decodes plainly
    history = rounds[1].history
    assert len(history) == 1 and "loss_coarse" in history[0]
    assert history[0]["images_per_s"] > 0
    with pytest.raises(ValueError):
        self_train(spec, labelled, TestSet(unlabelled), schedule=_tiny(8), rounds=1)


def test_self_train_without_curriculum_uses_the_plain_task_and_given_transforms():
    labelled, unlabelled = tsd_split("wild", 0.5, 16, seed=4, image_size=32)
    spec = ModelSpec(head="pip", image_size=32, width=0.25, net_stride=16, num_neighbours=0)
    schedule = _tiny(4)
    rounds = self_train(spec, labelled, unlabelled, schedule=schedule, rounds=2, transforms=flips("300w"))
    assert [r.train_size for r in rounds] == [8, 16]
    assert rounds[1].loss is None and rounds[1].pools is None
    assert "loss_coarse" not in rounds[1].history[0]
    assert torch.isfinite(rounds[1].pseudo_labels).all()
    # A shared round-0 detector replaces round 0's training and gives the same later rounds.
    again = self_train(spec, labelled, unlabelled, schedule=schedule, rounds=2, transforms=flips("300w"),
                       initial=rounds[0].detector)
    assert again[0].detector is rounds[0].detector and again[0].history is None
    torch.testing.assert_close(again[1].pseudo_labels, rounds[1].pseudo_labels)
    for (name, a), b in zip(again[1].detector.model.state_dict().items(),
                            rounds[1].detector.model.state_dict().values()):
        torch.testing.assert_close(a, b, msg=name)
    with pytest.raises(ValueError, match="PIP head"):
        self_train(ModelSpec(head="heatmap", image_size=32, width=0.25, net_stride=4), labelled, unlabelled,
                   schedule=schedule, curriculum=True)


def test_self_train_augments_every_training_sample_but_never_the_images_it_pseudo_labels():
    labelled, unlabelled = tsd_split("studio", 0.5, 16, seed=2, image_size=32)
    spec = ModelSpec(head="pip", image_size=32, width=0.25, net_stride=16, num_neighbours=0)
    seen = []

    def augment(sample):
        seen.append(bool(sample.get("pseudo", False)))
        return sample

    rounds = self_train(spec, labelled, unlabelled, schedule=_tiny(4), rounds=2, transforms=flips("300w"),
                        augment=augment)
    # round 0: 8 labelled samples; round 1: 8 labelled + 8 pseudo-labelled; nothing else passes through it
    assert len(seen) == 8 + 16 and sum(seen) == 8
    plain = self_train(spec, labelled, unlabelled, schedule=_tiny(4), rounds=2, transforms=flips("300w"))
    torch.testing.assert_close(rounds[1].pseudo_labels, plain[1].pseudo_labels)
