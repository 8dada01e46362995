"""Augmentations keep image and landmarks in agreement, in the library's pixel convention."""
from __future__ import annotations

import pytest
import torch

from landmarks.data import transforms as T
from landmarks.data.coords import pixel_centres
from landmarks.data.layouts import W300, custom_layout

H, W = 64, 80
# Well inside the canvas and far apart, at sub-pixel positions.
DOTS = torch.tensor([[22.3, 17.7], [55.6, 24.2], [38.1, 44.9], [30.8, 33.4]])
SIGMA = 1.3


def render_dots(points: torch.Tensor, height: int = H, width: int = W) -> torch.Tensor:
    """A (3, H, W) image with one Gaussian blob centred exactly at each continuous (x, y)."""
    xs, ys = pixel_centres(height, width, torch.float64)
    d2 = (xs[None, None] - points[:, 0, None, None]) ** 2 + (ys[None, :, None] - points[:, 1, None, None]) ** 2
    image = torch.exp(-d2 / (2 * SIGMA**2)).sum(0).float()
    return image.expand(3, height, width).clone()


def blob_centroids(image: torch.Tensor, near: torch.Tensor, radius: float = 6.0) -> torch.Tensor:
    """Intensity-weighted centroid of the blob around each point of ``near``."""
    xs, ys = pixel_centres(image.shape[-2], image.shape[-1], torch.float64)
    gray = image.double().mean(0)
    out = []
    for x, y in near.double():
        weight = gray * (((xs[None] - x) ** 2 + (ys[:, None] - y) ** 2) < radius**2)
        out.append(torch.stack([(weight * xs[None]).sum(), (weight * ys[:, None]).sum()]) / weight.sum())
    return torch.stack(out).float()


def make_sample(points: torch.Tensor = DOTS, **extra) -> dict:
    return {"image": render_dots(points), "landmarks": points.clone(), **extra}


NO_PAIRS = custom_layout(len(DOTS))

GEOMETRIC = {
    "translate": lambda: T.RandomTranslate(8.0, p=1.0),
    "translate-fraction": lambda: T.RandomTranslate((0.1, 0.05), p=1.0),
    "rotate": lambda: T.RandomRotate((25.0, 25.0), p=1.0),
    "rotate-negative": lambda: T.RandomRotate((-17.5, -17.5), p=1.0),
    "scale-up": lambda: T.RandomScale((1.2, 1.2), p=1.0),
    "scale-down": lambda: T.RandomScale((0.8, 0.8), p=1.0),
    "flip": lambda: T.RandomHorizontalFlip(NO_PAIRS, p=1.0),
}


@pytest.mark.parametrize("name", sorted(GEOMETRIC))
def test_dots_follow_their_landmarks(name):
    torch.manual_seed(3)
    out = GEOMETRIC[name]()(make_sample())
    assert out["image"].shape == (3, H, W)
    assert not torch.allclose(out["landmarks"], DOTS, atol=0.5), "the transform should move the points"
    centroids = blob_centroids(out["image"], out["landmarks"])
    assert torch.allclose(centroids, out["landmarks"], atol=0.3), (centroids - out["landmarks"]).abs().max()


def test_fixed_parameters_give_expected_positions():
    sample = make_sample()
    centre = torch.tensor([W / 2, H / 2])
    scaled = T.RandomScale((1.5, 1.5), p=1.0)(sample)["landmarks"]
    assert torch.allclose(scaled, centre + 1.5 * (DOTS - centre), atol=1e-4)
    flipped = T.RandomHorizontalFlip(NO_PAIRS, p=1.0)(sample)["landmarks"]
    assert torch.allclose(flipped, torch.stack([W - DOTS[:, 0], DOTS[:, 1]], -1))  # x -> W - x, not W - 1 - x
    # 90 degrees counter-clockwise on screen (y down): (dx, dy) -> (dy, -dx) about the centre.
    turned = T.RandomRotate((90.0, 90.0), p=1.0)(sample)["landmarks"]
    d = DOTS - centre
    assert torch.allclose(turned, centre + torch.stack([d[:, 1], -d[:, 0]], -1), atol=1e-4)


def test_translate_shift_is_within_limits_and_in_pixels():
    torch.manual_seed(0)
    shifts = torch.stack([T.RandomTranslate(5.0, p=1.0)(make_sample())["landmarks"] - DOTS for _ in range(20)])
    assert torch.allclose(shifts[:, :1], shifts[:, 1:].mean(1, keepdim=True), atol=1e-4)  # one shift for all points
    assert shifts.abs().max() <= 5.0 and shifts.abs().max() > 2.0


def test_flip_twice_is_identity():
    torch.manual_seed(1)
    points = torch.rand(68, 2) * torch.tensor([W, H])
    sample = {"image": torch.rand(3, H, W), "landmarks": points, "visible": torch.rand(68) > 0.3}
    flip = T.RandomHorizontalFlip(W300, p=1.0)
    twice = flip(flip(sample))
    assert torch.equal(twice["image"], sample["image"])
    assert torch.allclose(twice["landmarks"], points, atol=1e-5)
    assert torch.equal(twice["visible"], sample["visible"])


def test_flip_relabels_300w_eye_corners():
    torch.manual_seed(2)
    points = torch.rand(68, 2) * torch.tensor([W, H])
    visible = torch.ones(68, dtype=torch.bool)
    visible[45] = False
    out = T.RandomHorizontalFlip(W300, p=1.0)({"image": torch.rand(3, H, W), "landmarks": points, "visible": visible})
    # The new image-left outer corner (36) is the mirror of the old image-right one (45), and vice versa.
    assert torch.allclose(out["landmarks"][36], torch.stack([W - points[45, 0], points[45, 1]]))
    assert torch.allclose(out["landmarks"][45], torch.stack([W - points[36, 0], points[36, 1]]))
    assert torch.allclose(out["landmarks"][8], torch.stack([W - points[8, 0], points[8, 1]]))  # chin: unpaired
    assert not out["visible"][36] and out["visible"][45]


def test_flip_rejects_wrong_layout():
    with pytest.raises(ValueError, match="layout"):
        T.RandomHorizontalFlip(W300, p=1.0)(make_sample())


ALL = {
    **GEOMETRIC,
    "occlusion": lambda: T.RandomOcclusion(0.5, p=0.0),
    "blur": lambda: T.RandomGaussianBlur(3.0, p=0.0),
    "gray": lambda: T.RandomGrayscale(p=0.0),
    "jitter": lambda: T.RandomColorJitter(0.4, 0.4, 0.4, 0.1, p=0.0),
}


@pytest.mark.parametrize("name", sorted(ALL))
def test_p_zero_is_identity(name):
    transform = ALL[name]()
    transform.p = 0.0
    sample = make_sample(visible=torch.ones(len(DOTS), dtype=torch.bool), box=torch.tensor([10.0, 5.0, 70.0, 60.0]))
    out = transform(sample)
    assert out is not sample
    for key in sample:
        assert torch.equal(out[key], sample[key]), key


def test_input_sample_is_not_modified():
    sample = make_sample(visible=torch.ones(len(DOTS), dtype=torch.bool))
    before = {k: v.clone() for k, v in sample.items()}
    T.Compose([T.RandomOcclusion(1.0, p=1.0, fill=1.0), T.RandomHorizontalFlip(NO_PAIRS, p=1.0)])(sample)
    for key in sample:
        assert torch.equal(sample[key], before[key]), key


def test_same_seed_same_result():
    sample = {"image": torch.rand(3, 96, 96), "landmarks": torch.rand(68, 2) * 96,
              "visible": torch.ones(68, dtype=torch.bool), "box": torch.tensor([8.0, 8.0, 88.0, 88.0])}
    pipeline = T.pipnet_augmentation(W300, size=96)
    runs = []
    for _ in range(2):
        torch.manual_seed(123)
        runs.append([pipeline(sample) for _ in range(6)])
    gens = [T.pipnet_augmentation(W300, size=96, generator=torch.Generator().manual_seed(7)) for _ in range(2)]
    runs_gen = [[g(sample) for _ in range(6)] for g in gens]
    for first, second in (runs, runs_gen):
        for a, b in zip(first, second):
            for key in a:
                assert torch.equal(a[key], b[key]), key
    assert any(not torch.equal(r["landmarks"], sample["landmarks"]) for r in runs[0])


def test_points_leaving_the_canvas_are_not_clamped():
    points = torch.tensor([[5.0, 5.0], [-3.0, 70.0], [40.0, 32.0]])
    box = torch.tensor([2.0, 3.0, 78.0, 62.0])
    sample = {"image": torch.rand(3, H, W), "landmarks": points, "box": box}
    centre = torch.tensor([W / 2, H / 2])
    out = T.RandomScale((2.0, 2.0), p=1.0)(sample)
    assert torch.allclose(out["landmarks"], centre + 2 * (points - centre), atol=1e-4)  # (-30, -22), (-46, 108), ...
    assert torch.allclose(out["box"], torch.tensor([-36.0, -26.0, 116.0, 92.0]), atol=1e-4)
    flipped = T.RandomHorizontalFlip(custom_layout(3), p=1.0)(sample)
    assert torch.allclose(flipped["landmarks"][1], torch.tensor([W + 3.0, 70.0]))
    torch.manual_seed(4)
    moved = T.RandomTranslate(60.0, p=1.0)(sample)["landmarks"] - points
    assert torch.allclose(moved, moved[2].expand(3, 2), atol=1e-4)
    T.check_keypoints_unclamped()


def test_box_moves_with_the_image():
    sample = make_sample(box=torch.tensor([20.0, 10.0, 60.0, 40.0]))
    flipped = T.RandomHorizontalFlip(NO_PAIRS, p=1.0)(sample)["box"]
    assert torch.allclose(flipped, torch.tensor([W - 60.0, 10.0, W - 20.0, 40.0]))
    # Box centre (40, 25) is (0, -7) from the image centre (40, 32); a quarter turn counter-clockwise
    # on screen sends it to (-7, 0), i.e. (33, 32), and swaps width 40 and height 30.
    turned = T.RandomRotate((90.0, 90.0), p=1.0)(sample)["box"]
    assert torch.allclose(turned, torch.tensor([18.0, 12.0, 48.0, 52.0]), atol=1e-4)


def test_occlusion_marks_covered_points_invisible():
    torch.manual_seed(5)
    grid = torch.stack(torch.meshgrid(torch.arange(4, W, 8.0), torch.arange(4, H, 8.0), indexing="xy"), -1)
    points = grid.reshape(-1, 2) + 0.25
    visible = torch.ones(len(points), dtype=torch.bool)
    visible[::7] = False
    occlude = T.RandomOcclusion(0.6, p=1.0, fill=1.0)
    hidden_any = False
    for _ in range(10):
        out = occlude({"image": torch.zeros(3, H, W), "landmarks": points, "visible": visible})
        painted = out["image"][0] == 1.0
        assert painted.any() and torch.equal(out["image"][0], out["image"][2])
        under = painted[points[:, 1].long(), points[:, 0].long()]
        assert torch.equal(out["visible"], visible & ~under)
        assert torch.equal(out["landmarks"], points)
        hidden_any |= bool((visible & under).any())
    assert hidden_any
    rows, cols = painted.nonzero().unbind(1)
    assert painted[rows.min():rows.max() + 1, cols.min():cols.max() + 1].all()  # a filled rectangle
    assert rows.max() - rows.min() + 1 <= 0.6 * H and cols.max() - cols.min() + 1 <= 0.6 * W


def test_occlusion_without_visible_adds_none():
    out = T.RandomOcclusion(0.5, p=1.0)(make_sample())
    assert "visible" not in out


def test_grayscale_gives_equal_channels():
    image = torch.rand(3, H, W)
    out = T.RandomGrayscale(p=1.0)({"image": image, "landmarks": DOTS})
    assert out["image"].shape == image.shape
    assert torch.equal(out["image"][0], out["image"][1]) and torch.equal(out["image"][1], out["image"][2])
    assert not torch.equal(out["image"], image)


def test_blur_keeps_dots_at_their_landmarks():
    torch.manual_seed(6)
    out = T.RandomGaussianBlur(2.0, p=1.0)(make_sample())
    assert torch.equal(out["landmarks"], DOTS)
    assert out["image"].max() < make_sample()["image"].max()
    assert torch.allclose(blob_centroids(out["image"], DOTS, radius=8), DOTS, atol=0.3)


def test_color_jitter_changes_only_the_image():
    torch.manual_seed(8)
    sample = {"image": torch.rand(3, H, W), "landmarks": DOTS}
    out = T.RandomColorJitter(0.4, 0.4, 0.4, 0.1, p=1.0)(sample)
    assert out["image"].shape == sample["image"].shape and not torch.equal(out["image"], sample["image"])
    assert 0.0 <= out["image"].min() and out["image"].max() <= 1.0
    assert torch.equal(out["landmarks"], DOTS)


def test_uint8_images_are_supported():
    torch.manual_seed(9)
    image = (render_dots(DOTS) * 255).round().to(torch.uint8)
    sample = {"image": image, "landmarks": DOTS.clone(), "visible": torch.ones(len(DOTS), dtype=torch.bool)}
    out = T.pipnet_augmentation(NO_PAIRS, size=(H, W))(sample)
    assert out["image"].dtype == torch.uint8 and out["image"].shape == image.shape
    rotated = T.RandomRotate((20.0, 20.0), p=1.0)(sample)
    assert torch.allclose(blob_centroids(rotated["image"].float(), rotated["landmarks"]), rotated["landmarks"], atol=0.3)


def test_pipnet_preset_parameters():
    preset = T.pipnet_augmentation(W300, size=128)
    kinds = [type(t) for t in preset.transforms]
    assert kinds == [T.RandomTranslate, T.RandomOcclusion, T.RandomHorizontalFlip, T.RandomRotate,
                     T.RandomGaussianBlur, T.RandomGrayscale]
    translate, occlusion, flip, rotate, blur, _ = preset.transforms
    assert translate.max_shift == (15.0, 15.0) and translate.p == 0.5
    assert occlusion.p == 0.5 and flip.p == 0.5 and flip.layout is W300
    assert rotate.degrees == (-30.0, 30.0) and rotate.p == 0.5
    assert blur.p == 0.3
    assert "RandomHorizontalFlip(p=0.5, layout='300w')" in repr(preset)


def test_invalid_arguments():
    with pytest.raises(ValueError):
        T.RandomRotate(10, p=1.5)
    with pytest.raises(ValueError):
        T.RandomScale((1.2, 0.8))
    with pytest.raises(ValueError):
        T.RandomOcclusion(0.0)


def test_other_keys_pass_through():
    sample = make_sample(index=3, name="face-3")
    out = T.pipnet_augmentation(NO_PAIRS, size=(H, W))(sample)
    assert out["index"] == 3 and out["name"] == "face-3"


def test_augmented_view_applies_the_transform_on_every_access_and_keeps_the_layout():
    from landmarks.data.synthetic import SyntheticFaces
    from landmarks.data.transforms import Augmented, geometric_augmentation

    faces = SyntheticFaces("studio", 64, length=3, seed=1)
    calls = []
    view = Augmented(faces, lambda sample: calls.append(sample["index"]) or {**sample, "seen": True})
    assert len(view) == 3 and view.layout is faces.layout
    assert view[2]["seen"] and calls == [2]
    torch.manual_seed(0)
    moved = [Augmented(faces, geometric_augmentation(faces.layout, 64))[0]["landmarks"] for _ in range(8)]
    assert any(not torch.allclose(m, faces[0]["landmarks"]) for m in moved), "random geometry moves the points"


@pytest.mark.parametrize("seed", range(4))
def test_random_affine_moves_image_and_points_by_one_map(seed):
    """One warp (OpenCV) for the image, the map read off torchvision's key-point kernel for the points:
    the blobs stay under the points, and the box is the box around the moved corners."""
    transform = T.RandomAffine(8.0, 25.0, (0.8, 1.2), 1.0, 1.0, 1.0, generator=torch.Generator().manual_seed(seed))
    box = torch.tensor([20.0, 15.0, 60.0, 50.0])
    out = transform(make_sample(box=box))
    assert not torch.allclose(out["landmarks"], DOTS)
    assert torch.allclose(blob_centroids(out["image"], out["landmarks"]), out["landmarks"], atol=0.3)
    # the same draw through torchvision's own image kernel (T._affine) gives the same points
    again = T.RandomAffine(8.0, 25.0, (0.8, 1.2), 1.0, 1.0, 1.0, generator=torch.Generator().manual_seed(seed))
    draws = []
    again.uniform = lambda lo, hi, draw=again.uniform: draws.append(draw(lo, hi)) or draws[-1]
    again(make_sample())
    _, _, _, dx, dy, angle, scale = draws
    reference = T._affine(make_sample(box=box), angle=-angle, translate=(dx, dy), scale=scale)
    torch.testing.assert_close(out["landmarks"], reference["landmarks"], atol=1e-4, rtol=0)
    torch.testing.assert_close(out["box"], reference["box"], atol=1e-4, rtol=0)
    assert (out["image"] - reference["image"]).abs().mean() < 0.01


def test_random_affine_parts_have_their_own_chances_and_the_real_data_preset():
    never = T.RandomAffine(8.0, 25.0, (0.8, 1.2), 0.0, 0.0, 0.0)
    sample = make_sample()
    assert never(sample)["image"] is sample["image"]
    preset = T.real_data_augmentation(W300, size=128)
    kinds = [type(t) for t in preset.transforms]
    assert kinds == [T.RandomOcclusion, T.RandomHorizontalFlip, T.RandomAffine, T.RandomGaussianBlur,
                     T.RandomGrayscale]
    affine = preset.transforms[2]
    assert affine.max_shift == (15.0, 15.0) and affine.degrees == (-30.0, 30.0) and affine.scale == (0.9, 1.1)
    assert affine.chances == (0.5, 0.5, 0.5)
