"""Tests of the shape model and the synthetic faces (fast: a few hundred small renders)."""
from __future__ import annotations

from dataclasses import replace

import numpy as np
import pytest
import torch

from landmarks.data.layouts import convert
from landmarks.data.shape_model import ShapeModel, place_in_image
from landmarks.data.synthetic import (
    DOMAINS, NON_FACE_KINDS, Domain, NonFaceImages, Occluder, SyntheticFaces, domain_statistics, render_face,
    sample_face_params,
)
from landmarks.data.synthetic.stats import luma

JAW, EYES, LIPS = list(range(0, 17)), list(range(36, 48)), list(range(48, 60))


@pytest.fixture(scope="module")
def model() -> ShapeModel:
    return ShapeModel.load()


def clean_studio_params(index: int, **changes):
    """Studio parameters without blur, noise or occluders (and any ``changes``)."""
    params = sample_face_params(np.random.default_rng([11, index]), "studio")
    return replace(params, blur=0.0, noise=0.0, occluders=(), **changes)


def bilinear(image: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Sample a 2-D ``image`` at continuous pixel coordinates ``points`` (..., 2) (centre of pixel j at j + 0.5)."""
    x, y = points[..., 0] - 0.5, points[..., 1] - 0.5
    x0, y0 = np.floor(x).astype(int), np.floor(y).astype(int)
    fx, fy = x - x0, y - y0
    h, w = image.shape
    at = lambda yy, xx: image[np.clip(yy, 0, h - 1), np.clip(xx, 0, w - 1)]  # noqa: E731
    top = at(y0, x0) * (1 - fx) + at(y0, x0 + 1) * fx
    bottom = at(y0 + 1, x0) * (1 - fx) + at(y0 + 1, x0 + 1) * fx
    return top * (1 - fy) + bottom * fy


def gradient_magnitude(grey: np.ndarray) -> np.ndarray:
    gy, gx = np.gradient(grey)
    return np.hypot(gx, gy)


def inside_polygon(points: np.ndarray, polygon: np.ndarray) -> np.ndarray:
    """Even-odd test of ``points`` (n, 2) against a closed ``polygon`` (m, 2)."""
    x, y = points[:, None, 0], points[:, None, 1]
    a, b = polygon, np.roll(polygon, -1, axis=0)
    crosses = (a[:, 1] > y) != (b[:, 1] > y)
    t = (y - a[:, 1]) / np.where(b[:, 1] == a[:, 1], 1e-12, b[:, 1] - a[:, 1])
    return (crosses & (x < a[:, 0] + t * (b[:, 0] - a[:, 0]))).sum(1) % 2 == 1


# ---------------------------------------------------------------- shape model
def test_shape_model_mean_and_orthonormal_modes(model):
    assert model.mean.shape == (68, 2) and model.modes.shape == (30, 68, 2) and model.std.shape == (30,)
    np.testing.assert_allclose(model.sample(np.zeros(30)), model.mean)
    np.testing.assert_allclose(model.sample([]), model.mean)  # missing coefficients are zero
    flat = model.modes.reshape(30, -1)
    np.testing.assert_allclose(flat @ flat.T, np.eye(30), atol=1e-3)
    assert np.all(np.diff(model.std) <= 1e-9), "modes sorted by decreasing spread"


def test_shape_model_sampling_and_projection(model):
    b = np.random.default_rng(0).standard_normal(30)
    np.testing.assert_allclose(model.project(model.sample(b)), b, atol=1e-3)
    shapes = model.sample_random(np.random.default_rng(1), 5, clip=1.0)
    assert shapes.shape == (5, 68, 2)
    assert np.all(np.abs(np.array([model.project(s) for s in shapes])) <= 1.0 + 1e-3)
    eyes = model.mean[45] - model.mean[36]
    assert abs(np.hypot(*eyes) - 1.0) < 1e-3 and abs(eyes[1]) < 1e-3


def test_shape_model_rejects_other_files(tmp_path):
    bad = tmp_path / "model.json"
    bad.write_text('{"mean": [[0, 0]]}')
    with pytest.raises(ValueError, match="model.json"):
        ShapeModel.load(bad)


def test_yaw_and_pitch_modes_move_the_nose(model):
    assert model.sample([3.0])[30, 0] > model.mean[30, 0] + 0.2  # b0 > 0: nose to the image right
    assert model.sample([0.0, 3.0])[30, 1] < model.mean[30, 1] - 0.1  # b1 > 0: nose tip rises


def test_place_in_image_is_a_similarity(model):
    placed = place_in_image(model.mean, scale=40.0, roll_deg=90.0, centre=(64.0, 64.0))
    assert abs(np.hypot(*(placed[45] - placed[36])) - 40.0) < 0.1
    assert placed[45, 1] > placed[36, 1] + 39  # positive roll turns clockwise on screen: right eye goes down
    np.testing.assert_allclose(placed.mean(0), [64.0, 64.0], atol=1e-6)


# ---------------------------------------------------------------- dataset format and determinism
def test_sample_format():
    sample = SyntheticFaces("studio", size=96, length=10)[3]
    assert set(sample) == {"image", "landmarks", "box", "visible", "index", "domain"}
    assert sample["image"].shape == (3, 96, 96) and sample["image"].dtype == torch.float32
    assert sample["image"].is_contiguous()
    assert 0.0 <= float(sample["image"].min()) and float(sample["image"].max()) <= 1.0
    assert sample["landmarks"].shape == (68, 2) and sample["landmarks"].dtype == torch.float32
    assert sample["box"].shape == (4,) and sample["box"].dtype == torch.float32
    assert sample["visible"].shape == (68,) and sample["visible"].dtype == torch.bool
    assert sample["index"] == 3 and sample["domain"] == "studio"
    lm = sample["landmarks"]
    torch.testing.assert_close(sample["box"], torch.cat([lm.min(0).values, lm.max(0).values]))


def test_deterministic_from_seed_and_index():
    a, b = SyntheticFaces("wild", length=10, seed=5), SyntheticFaces("wild", length=10, seed=5)
    for key in ("image", "landmarks", "visible"):
        assert torch.equal(a[4][key], b[4][key])
    assert torch.equal(a[4]["image"], a[4]["image"])  # reading twice (reused buffers) changes nothing
    assert not torch.equal(a[4]["image"], a[5]["image"])
    assert not torch.equal(a[4]["landmarks"], SyntheticFaces("wild", length=10, seed=6)[4]["landmarks"])
    assert torch.equal(a[-1]["image"], a[9]["image"])
    with pytest.raises(IndexError):
        a[10]


def test_studio_landmarks_inside_the_image():
    faces = SyntheticFaces("studio", size=128, length=60, seed=2)
    for i in range(len(faces)):
        sample = faces[i]
        lm = sample["landmarks"]
        assert float(lm.min()) > 2.0 and float(lm.max()) < 126.0, f"item {i}"
        assert bool(sample["visible"].all())


def test_transform_is_applied_last():
    def tag(sample):
        return {**sample, "image": sample["image"] * 0, "tagged": True}

    sample = SyntheticFaces("studio", length=3, transform=tag)[0]
    assert sample["tagged"] and float(sample["image"].abs().max()) == 0.0


def test_domains_and_layouts_are_checked():
    with pytest.raises(ValueError, match="underwater"):
        SyntheticFaces("underwater")
    with pytest.raises(ValueError, match="wflw"):
        SyntheticFaces("studio", layout="wflw")
    with pytest.raises(ValueError, match="nonsense"):
        SyntheticFaces("studio", layout="nonsense")
    custom = replace(DOMAINS["studio"], name="tiny", face_size=(0.2, 0.2))
    sample = SyntheticFaces(custom, length=2)[0]
    assert sample["domain"] == "tiny"
    eyes = sample["landmarks"][45] - sample["landmarks"][36]
    assert 0.15 * 128 < float(eyes.norm()) < 0.3 * 128
    with pytest.raises(ValueError):
        Domain(name="bad", backgrounds=("moon",))


def test_aflw_layout_is_the_conversion_of_the_68_points():
    full = SyntheticFaces("wild", length=20, seed=1)
    short = SyntheticFaces("wild", length=20, seed=1, layout="aflw")
    for i in range(20):
        a, b = full[i], short[i]
        assert b["landmarks"].shape == (19, 2) and b["visible"].shape == (19,)
        torch.testing.assert_close(b["landmarks"], convert(a["landmarks"], "300w", "aflw"))
        assert torch.equal(b["visible"][18], a["visible"][8])  # chin
        assert bool(b["visible"][7]) == bool(a["visible"][36:42].all())  # eye centre from six points
        torch.testing.assert_close(b["box"], a["box"])


# ---------------------------------------------------------------- landmarks on the drawn boundaries
def test_landmarks_sit_on_strong_image_gradients():
    rng = np.random.default_rng(0)
    at_landmarks, at_random = [], []
    for index in range(12):
        face = render_face(clean_studio_params(index), 128)
        grey = luma(torch.from_numpy(face.image.transpose(2, 0, 1).copy())[None])[0].numpy()
        magnitude = gradient_magnitude(grey)
        lm = face.landmarks.astype(np.float64)
        at_landmarks.append(bilinear(magnitude, lm[JAW + EYES + LIPS]))
        region = np.concatenate([lm[0:17], lm[26:16:-1]])  # jaw, then the brows back
        candidates = rng.uniform(region.min(0), region.max(0), (4000, 2))
        at_random.append(bilinear(magnitude, candidates[inside_polygon(candidates, region)][:200]))
    ratio = np.concatenate(at_landmarks).mean() / np.concatenate(at_random).mean()
    assert ratio > 3.0, f"landmark / random gradient ratio {ratio:.2f}"


def test_jaw_boundary_crosses_the_landmarks():
    """Along the jaw normal, the colour crosses half-way from face to backdrop at the landmark."""
    backdrop = ((0.1, 0.2, 0.9), (0.1, 0.2, 0.9))
    steps = np.linspace(-3.0, 3.0, 61)
    errors = []
    for index in range(16):
        params = clean_studio_params(index, hair_style="none", ears=False, background="plain",
                                     background_colours=backdrop, light_strength=0.0, yaw=0.0, roll_deg=0.0)
        face = render_face(params, 128)
        lm = face.landmarks.astype(np.float64)
        tangent = lm[2:17] - lm[0:15]  # around points 1..15
        normal = np.stack([tangent[:, 1], -tangent[:, 0]], 1) / np.linalg.norm(tangent, axis=1, keepdims=True)
        samples = lm[1:16, None] + steps[:, None] * normal[:, None]
        profiles = np.stack([bilinear(face.image[..., c].astype(np.float64), samples) for c in range(3)], -1)
        for profile in profiles[[0, 1, 2, 3, 11, 12, 13, 14]]:  # points 1-4 and 12-15 border the backdrop
            one_side, other_side = profile[:10].mean(0), profile[-10:].mean(0)
            level = (profile - 0.5 * (one_side + other_side)) @ (one_side - other_side)
            k = np.nonzero((level[:-1] > 0) & (level[1:] <= 0))[0]
            if len(k) == 1:
                k = k[0]
                errors.append(steps[k] + (steps[1] - steps[0]) * level[k] / (level[k] - level[k + 1]))
    errors = np.array(errors)
    assert len(errors) > 100
    assert abs(errors.mean()) < 0.1, f"systematic offset {errors.mean():.3f} px"
    assert np.median(np.abs(errors)) < 0.15 and np.abs(errors).max() < 0.6, (np.median(np.abs(errors)), np.abs(errors).max())


# ---------------------------------------------------------------- occluders
def test_occluded_points_are_marked_invisible():
    base = clean_studio_params(3, roll_deg=0.0, offset=(0.0, 0.0))
    plain = render_face(base, 128)
    assert plain.visible.all()
    glasses = render_face(replace(base, occluders=(Occluder("sunglasses", (0.05, 0.05, 0.05), size=0.26),)), 128)
    assert not glasses.visible[36:48].any()
    assert glasses.visible[list(range(3, 14)) + list(range(48, 68))].all()
    np.testing.assert_array_equal(glasses.landmarks, plain.landmarks)
    hidden = ~glasses.visible
    darker = glasses.image.mean(2) < plain.image.mean(2) - 0.05
    lm = np.floor(glasses.landmarks).astype(int)
    assert darker[lm[hidden, 1], lm[hidden, 0]].all()


def test_wild_faces_have_some_occlusion():
    faces = SyntheticFaces("wild", length=40, seed=0)
    hidden = [int((~faces[i]["visible"]).sum()) for i in range(40)]
    assert sum(h > 0 for h in hidden) >= 10


# ---------------------------------------------------------------- domains differ
def test_domains_differ_measurably():
    stats = {}
    for name in DOMAINS:
        faces = SyntheticFaces(name, size=96, length=40, seed=4)
        stats[name] = domain_statistics([faces[i] for i in range(40)])
    studio, wild, low, sketch = stats["studio"], stats["wild"], stats["lowlight"], stats["sketch"]
    assert low["brightness"] < 0.5 * studio["brightness"]
    assert low["contrast"] < 0.6 * studio["contrast"]
    assert low["noise"] > 5 * studio["noise"]
    assert wild["edge_density"] > 1.1 * studio["edge_density"]
    assert wild["colourfulness"] > 1.3 * studio["colourfulness"]
    assert sketch["colourfulness"] < 0.3 * studio["colourfulness"]
    assert sketch["brightness"] > studio["brightness"]


def test_one_factor_at_a_time():
    params = clean_studio_params(0, roll_deg=0.0)
    left, right = (render_face(replace(params, yaw=b), 96) for b in (-3.0, 3.0))
    assert right.landmarks[30, 0] - left.landmarks[30, 0] > 5.0  # the nose moves, the rest stays put
    closed, open_ = (render_face(replace(params, mouth_open=m), 96) for m in (-1.0, 1.0))
    assert abs(closed.landmarks[66, 1] - closed.landmarks[62, 1]) < 1e-3
    assert open_.landmarks[66, 1] - open_.landmarks[62, 1] > 5.0
    blink = render_face(replace(params, eye_open=0.0), 96)
    assert abs(blink.landmarks[37, 1] - blink.landmarks[41, 1]) < 1e-3


# ---------------------------------------------------------------- non-face images
@pytest.mark.parametrize("kind", NON_FACE_KINDS)
def test_non_face_images(kind):
    images = NonFaceImages(kind, size=64, length=8, seed=1)
    sample = images[2]
    assert set(sample) == {"image", "index", "kind"} and sample["kind"] == kind
    image = sample["image"]
    assert image.shape == (3, 64, 64) and image.dtype == torch.float32
    assert 0.0 <= float(image.min()) and float(image.max()) <= 1.0
    assert torch.equal(image, NonFaceImages(kind, size=64, length=8, seed=1)[2]["image"])
    if kind == "black":
        assert float(image.abs().max()) == 0.0
    elif kind == "noise":
        assert float(image.std()) > 0.25
    else:
        assert float(image.std()) > 0.02 and not torch.equal(image, images[3]["image"])
    with pytest.raises(ValueError):
        NonFaceImages("faces")
