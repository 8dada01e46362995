"""Differentiable bilinear crops (fine-grained paper, eq. 5-7, 9, 12)."""
import math

import pytest
import torch

from landmarks.finegrained.crops import crop_eq5, crop_patches, patch_offsets, to_map_index


def test_matches_direct_eq5_on_random_maps():
    gen = torch.Generator().manual_seed(0)
    features = torch.randn(2, 3, 11, 13, generator=gen, dtype=torch.float64)
    stride = 2.0
    # points inside, near and past the border (image pixels: map is 26 x 22 px)
    points = torch.rand(2, 5, 2, generator=gen, dtype=torch.float64) * torch.tensor([34.0, 30.0]) - 4.0
    patches = crop_patches(features, points, (4, 5), stride)
    assert patches.shape == (2, 5, 3, 4, 5)
    for b in range(2):
        for n in range(5):
            x, y = (points[b, n] / stride - 0.5).tolist()
            expected = crop_eq5(features[b], y, x, (4, 5))
            torch.testing.assert_close(patches[b, n], expected, atol=1e-12, rtol=0)


def test_linear_map_is_reproduced_exactly_inside():
    # bilinear interpolation of I_nm = a n + b m + c is exact: V_qp = a y_q + b x_p + c (eq. 5-7)
    a, b, c = 0.7, -0.3, 2.0
    n = torch.arange(20, dtype=torch.float64)[:, None]
    m = torch.arange(24, dtype=torch.float64)[None, :]
    features = (a * n + b * m + c)[None, None]
    point = torch.tensor([[[21.3, 17.9]]], dtype=torch.float64)   # image pixels at stride 2
    patch = crop_patches(features, point, 3, stride=2)[0, 0, 0]
    x, y = 21.3 / 2 - 0.5, 17.9 / 2 - 0.5
    for q in range(3):
        for p in range(3):
            assert patch[q, p].item() == pytest.approx(a * (y - 1 + q) + b * (x - 1 + p) + c, abs=1e-12)


def test_offsets_are_centred():
    offsets = patch_offsets((2, 3), torch.float64)
    assert offsets[..., 0].tolist() == [[-1, 0, 1]] * 2
    assert offsets[..., 1].tolist() == [[-0.5] * 3, [0.5] * 3]
    assert to_map_index(torch.tensor([4.0]), 4).item() == 0.5


def test_gradcheck_features_and_locations():
    gen = torch.Generator().manual_seed(1)
    features = torch.randn(2, 2, 6, 7, generator=gen, dtype=torch.float64, requires_grad=True)
    points = (torch.rand(2, 3, 2, generator=gen, dtype=torch.float64) * 10 + 2).requires_grad_()
    assert torch.autograd.gradcheck(lambda f, p: crop_patches(f, p, 3, 2.0), (features, points), eps=1e-6, atol=1e-7)


def test_location_gradient_is_eq12():
    gen = torch.Generator().manual_seed(2)
    features = torch.randn(1, 1, 8, 8, generator=gen, dtype=torch.float64)
    stride = 4.0
    x_idx, y_idx = 3.3, 4.6
    point = torch.tensor([[[(x_idx + 0.5) * stride, (y_idx + 0.5) * stride]]], dtype=torch.float64, requires_grad=True)
    value = crop_patches(features, point, 1, stride)[0, 0, 0, 0, 0]
    value.backward()
    I = features[0, 0]
    fy, cy, fx, cx = math.floor(y_idx), math.ceil(y_idx), math.floor(x_idx), math.ceil(x_idx)
    y_d, y_u = 1 - (y_idx - fy), 1 - (cy - y_idx)                        # eq. 13-14
    d_dx = -I[fy, fx] * y_d + I[fy, cx] * y_d - I[cy, fx] * y_u + I[cy, cx] * y_u   # eq. 12
    x_d, x_u = 1 - (x_idx - fx), 1 - (cx - x_idx)
    d_dy = -I[fy, fx] * x_d + I[cy, fx] * x_d - I[fy, cx] * x_u + I[cy, cx] * x_u   # eq. 12 for y
    # the point is in image pixels: d/dx_pixel = d/dx_index / stride
    torch.testing.assert_close(point.grad[0, 0], torch.stack([d_dx, d_dy]) / stride)


def test_feature_gradient_is_eq9():
    features = torch.zeros(1, 1, 5, 5, dtype=torch.float64, requires_grad=True)
    point = torch.tensor([[[2.25 + 0.5, 1.5 + 0.5]]], dtype=torch.float64)   # x = 2.25, y = 1.5 (index units)
    crop_patches(features, point, 1, 1.0).sum().backward()
    expected = torch.zeros(5, 5, dtype=torch.float64)
    expected[1, 2], expected[1, 3], expected[2, 2], expected[2, 3] = 0.375, 0.125, 0.375, 0.125
    torch.testing.assert_close(features.grad[0, 0], expected)


def test_border_reads_zeros():
    features = torch.ones(1, 1, 6, 6, dtype=torch.float64, requires_grad=True)
    # half a cell left of the first column: half its weight lies outside the map
    edge = torch.tensor([[[0.0, 3.5]]], dtype=torch.float64)
    assert crop_patches(features, edge, 1)[0, 0, 0, 0, 0].item() == pytest.approx(0.5)
    # a patch entirely outside: zeros, and no gradient to the map or the location
    far = torch.tensor([[[-20.0, 3.5]]], dtype=torch.float64, requires_grad=True)
    patch = crop_patches(features, far, 3)
    assert torch.all(patch == 0)
    patch.sum().backward()
    assert torch.all(features.grad == 0) and torch.all(far.grad == 0)


def test_gradient_switches():
    features = torch.randn(1, 2, 6, 6, requires_grad=True)
    points = torch.tensor([[[3.3, 2.7]]], requires_grad=True)
    out = crop_patches(features, points, 2, grad_features=False)
    out.square().sum().backward()
    assert features.grad is None and points.grad is not None
    points.grad = None
    out = crop_patches(features, points, 2, grad_locations=False)
    out.square().sum().backward()
    assert points.grad is None and features.grad is not None


def test_bad_input():
    with pytest.raises(ValueError, match="features"):
        crop_patches(torch.zeros(3, 4, 4), torch.zeros(3, 1, 2))
    with pytest.raises(ValueError, match="points"):
        crop_patches(torch.zeros(2, 1, 4, 4), torch.zeros(3, 1, 2))
    with pytest.raises(ValueError, match="patch size"):
        crop_patches(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2), 0)
    with pytest.raises(ValueError, match="stride"):
        crop_patches(torch.zeros(1, 1, 4, 4), torch.zeros(1, 1, 2), 2, stride=0)
