"""Backbones and heads: shapes worked out from the strides, torchvision parity, initialisation."""
from __future__ import annotations

import pytest
import torch
import torchvision
from torch import nn

from landmarks.models import (CoordinateHead, HeatmapHead, LandmarkModel, PIPHead, ResNetBackbone, coordinate_net,
                              heatmap_net, pipnet)

# ImageNet statistics written out here, independently of the library.
MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 3, 1, 1)


@pytest.fixture(autouse=True)
def _no_download(monkeypatch):
    """Any attempt to fetch weights from the network fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")
    monkeypatch.setattr(torchvision.models._api, "load_state_dict_from_url", refuse)
    monkeypatch.setattr(torch.hub, "load_state_dict_from_url", refuse)


@pytest.fixture(autouse=True)
def _seed():
    torch.manual_seed(0)


def _trunk_state(model: nn.Module) -> dict[str, torch.Tensor]:
    return {k: v for k, v in model.state_dict().items() if not k.startswith("fc.")}


def _randomise_bn_statistics(model: nn.Module) -> None:
    """Make BN running statistics and affine parameters non-trivial so that loading is really tested."""
    for m in model.modules():
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-0.5, 0.5)
            m.running_var.uniform_(0.5, 2.0)
            with torch.no_grad():
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)


def _torchvision_features(model: torchvision.models.ResNet, images: torch.Tensor) -> list[torch.Tensor]:
    """The five levels computed by hand from a torchvision ResNet."""
    x = (images - MEAN) / STD
    x = model.relu(model.bn1(model.conv1(x)))
    out = [x]
    x = model.maxpool(x)
    for layer in (model.layer1, model.layer2, model.layer3, model.layer4):
        x = layer(x)
        out.append(x)
    return out


# --------------------------------------------------------------------------- backbone

@pytest.mark.parametrize("depth, width, channels", [
    (18, 1.0, [64, 64, 128, 256, 512]),
    (18, 0.25, [16, 16, 32, 64, 128]),
    (50, 1.0, [64, 256, 512, 1024, 2048]),
    (50, 0.25, [16, 64, 128, 256, 512]),
])
def test_backbone_shapes(depth, width, channels):
    backbone = ResNetBackbone(depth, width).eval()
    assert backbone.channels == channels
    assert backbone.strides == [2, 4, 8, 16, 32]
    with torch.no_grad():
        features = backbone(torch.rand(2, 3, 64, 96))
    assert [tuple(f.shape) for f in features] == [(2, c, 64 // s, 96 // s) for c, s in zip(channels, [2, 4, 8, 16, 32])]


def test_backbone_odd_input_size_rounds_up():
    with torch.no_grad():
        features = ResNetBackbone(18, 0.25).eval()(torch.rand(1, 3, 70, 33))
    # conv / pool with padding: each stride-2 step maps n to ceil(n / 2)
    assert [tuple(f.shape[-2:]) for f in features] == [(35, 17), (18, 9), (9, 5), (5, 3), (3, 2)]


@pytest.mark.parametrize("depth", [18, 34, 50])
def test_parameter_names_match_torchvision(depth):
    reference = _trunk_state(getattr(torchvision.models, f"resnet{depth}")())
    ours = ResNetBackbone(depth).state_dict()
    assert list(ours) == list(reference)
    assert all(ours[k].shape == reference[k].shape for k in reference)


def test_local_state_dict_reproduces_torchvision(tmp_path):
    reference = torchvision.models.resnet18()
    _randomise_bn_statistics(reference)
    reference.eval()
    path = tmp_path / "resnet18.pth"
    torch.save(reference.state_dict(), path)  # includes fc.*, which the backbone ignores

    backbone = ResNetBackbone(18, pretrained=path).eval()
    images = torch.rand(2, 3, 64, 64)
    with torch.no_grad():
        ours = backbone(images)
        expected = _torchvision_features(reference, images)
    assert len(ours) == len(expected) == 5
    for a, b in zip(ours, expected):
        torch.testing.assert_close(a, b, rtol=0, atol=1e-6)
    # and the final level is what torchvision's own pooled forward starts from
    with torch.no_grad():
        logits = reference((images - MEAN) / STD)
        torch.testing.assert_close(reference.fc(ours[-1].mean((2, 3))), logits, rtol=1e-5, atol=1e-5)


def test_local_state_dict_with_wrong_width_raises(tmp_path):
    path = tmp_path / "r18.pth"
    torch.save(torchvision.models.resnet18().state_dict(), path)
    with pytest.raises(ValueError, match="r18.pth"):
        ResNetBackbone(18, width=0.25, pretrained=path)
    with pytest.raises(ValueError, match="no such"):
        ResNetBackbone(18, pretrained=tmp_path / "missing.pth")


def test_module_prefix_is_stripped():
    reference = torchvision.models.resnet18()
    state = {f"module.{k}": v for k, v in reference.state_dict().items()}
    backbone = ResNetBackbone(18)
    backbone.load_trunk_state_dict(state)
    assert torch.equal(backbone.layer3[1].conv2.weight, reference.layer3[1].conv2.weight)


def test_pretrained_needs_full_width():
    with pytest.raises(ValueError, match="width"):
        ResNetBackbone(18, width=0.25, pretrained=True)


def test_bad_arguments():
    with pytest.raises(ValueError, match="depth"):
        ResNetBackbone(101)
    with pytest.raises(ValueError, match=r"\(B, 3, H, W\)"):
        ResNetBackbone(18, 0.25)(torch.rand(3, 32, 32))


def test_pretrained_true_goes_through_torchvision_weights(monkeypatch):
    source = torchvision.models.resnet18()
    _randomise_bn_statistics(source)
    calls = []

    def fake_get_state_dict(self, *args, **kwargs):
        calls.append(self)
        return source.state_dict()

    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "get_state_dict", fake_get_state_dict)
    backbone = ResNetBackbone(18, pretrained=True)
    assert calls == [torchvision.models.ResNet18_Weights.IMAGENET1K_V1]
    loaded = backbone.state_dict()
    assert all(torch.equal(loaded[k], v) for k, v in _trunk_state(source).items())


def test_default_is_offline():
    # the autouse fixture turns any download into a failure
    assert pipnet(68, width=0.25).num_points == 68


# --------------------------------------------------------------------------- heads

@pytest.fixture(scope="module")
def features() -> dict[int, list[torch.Tensor]]:
    """Quarter-width ResNet-18 features (last level: 128 channels, stride 32) for 128 and 256 px."""
    torch.manual_seed(1)
    backbone = ResNetBackbone(18, 0.25).eval()
    with torch.no_grad():
        return {size: backbone(torch.rand(2, 3, size, size)) for size in (128, 256)}


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("net_stride", [16, 32, 64, 128])
def test_pip_head_shapes(features, size, net_stride):
    head = PIPHead(128, 68, num_neighbours=10, net_stride=net_stride)
    assert head.net_stride == net_stride and head.num_points == 68
    out = head(features[size])
    side = size // net_stride
    expected = {"score": 68, "offset_x": 68, "offset_y": 68, "neighbour_x": 680, "neighbour_y": 680}
    assert {k: tuple(v.shape) for k, v in out.items()} == {k: (2, c, side, side) for k, c in expected.items()}


def test_pip_head_extra_layers():
    # 32 -> 16: one deconvolution; 32 -> 64 / 128: one / two stride-2 convolutions; 32: none
    def count(head, kind):
        return sum(isinstance(m, kind) for m in head.modules())
    assert count(PIPHead(64, 5, net_stride=32), nn.BatchNorm2d) == 0
    assert count(PIPHead(64, 5, net_stride=16), nn.ConvTranspose2d) == 1
    assert count(PIPHead(64, 5, net_stride=64), nn.Conv2d) == 2    # + the 1x1 predictor
    assert count(PIPHead(64, 5, net_stride=128), nn.Conv2d) == 3
    with pytest.raises(ValueError, match="power of two"):
        PIPHead(64, 5, net_stride=24)


def test_pip_head_initialisation():
    head = PIPHead(512, 68, num_neighbours=10)
    weight, bias = head.predict.weight, head.predict.bias
    assert weight.shape == (68 * (3 + 2 * 10), 512, 1, 1)  # five 1x1 convs: N + N + N + N*nb + N*nb
    assert abs(weight.std().item() - 0.001) < 0.00003       # ~800k samples: relative error ~0.1 %
    assert abs(weight.mean().item()) < 0.00001
    assert torch.count_nonzero(bias) == 0


def test_pip_head_channel_order():
    # Zero weights and a distinct bias per output group reveal which channels feed which key.
    n, nb = 3, 2
    head = PIPHead(8, n, num_neighbours=nb)
    with torch.no_grad():
        head.predict.weight.zero_()
        head.predict.bias.copy_(torch.tensor([1.0] * n + [2.0] * n + [3.0] * n + [4.0] * n * nb + [5.0] * n * nb))
    out = head([torch.rand(1, 8, 4, 4)])
    for value, key in enumerate(["score", "offset_x", "offset_y", "neighbour_x", "neighbour_y"], start=1):
        assert torch.all(out[key] == value), key
        assert out[key].is_contiguous()


def test_pip_head_without_neighbours(features):
    out = PIPHead(128, 19, num_neighbours=0)(features[256])
    assert set(out) == {"score", "offset_x", "offset_y"}
    assert out["score"].shape == (2, 19, 8, 8)


@pytest.mark.parametrize("size", [128, 256])
@pytest.mark.parametrize("net_stride", [4, 2, 1])
def test_heatmap_head_shapes(features, size, net_stride):
    head = HeatmapHead(128, 68, in_stride=32, net_stride=net_stride, hidden=16)
    assert head.net_stride == net_stride
    assert sum(isinstance(m, nn.ConvTranspose2d) for m in head.modules()) == {4: 3, 2: 4, 1: 5}[net_stride]
    with torch.no_grad():
        out = head(features[size])
    assert list(out) == ["heatmaps"]
    assert out["heatmaps"].shape == (2, 68, size // net_stride, size // net_stride)


def test_heatmap_head_on_another_level(features):
    head = HeatmapHead(64, 5, in_stride=16, net_stride=4, hidden=8, level=3)  # layer3 of the 0.25 trunk
    assert head(features[128])["heatmaps"].shape == (2, 5, 32, 32)
    with pytest.raises(ValueError):
        HeatmapHead(128, 5, in_stride=32, net_stride=64)


def test_coordinate_head(features):
    head = CoordinateHead(128, 68)
    assert head.net_stride is None
    coords = head(features[128])["coords"]
    assert coords.shape == (2, 68, 2)
    # untrained: every point close to the image centre, in units of the image size
    # (weights N(0, 0.001) on ~128 pooled channels of size ~5 give a spread of a few hundredths)
    assert torch.allclose(coords, torch.full_like(coords, 0.5), atol=0.25)
    assert abs(coords.mean().item() - 0.5) < 0.05
    deep = CoordinateHead(128, 5, hidden=(32, 32))
    assert deep(features[256])["coords"].shape == (2, 5, 2)


@pytest.mark.parametrize("num_points", [5, 19])
def test_custom_number_of_points(num_points):
    images = torch.rand(2, 3, 128, 128)
    with torch.no_grad():
        pip = pipnet(num_points, width=0.25, num_neighbours=4).eval()(images)
        maps = heatmap_net(num_points, width=0.25, net_stride=4).eval()(images)
        coords = coordinate_net(num_points, width=0.25).eval()(images)
    assert pip["score"].shape == (2, num_points, 4, 4)
    assert pip["neighbour_y"].shape == (2, num_points * 4, 4, 4)
    assert maps["heatmaps"].shape == (2, num_points, 32, 32)
    assert coords["coords"].shape == (2, num_points, 2)


@pytest.mark.parametrize("build", [
    lambda: pipnet(19, width=0.25, net_stride=16),
    lambda: heatmap_net(19, width=0.25, net_stride=4),
    lambda: coordinate_net(19, width=0.25, hidden=(32,)),
])
def test_gradients_reach_the_backbone(build):
    model = build().train()
    out = model(torch.rand(2, 3, 64, 64))
    loss = sum((v * torch.randn_like(v)).sum() for v in out.values())
    loss.backward()
    for name in ("conv1", "layer1", "layer4"):
        grads = [p.grad for p in getattr(model.backbone, name).parameters()]
        assert all(g is not None and torch.isfinite(g).all() for g in grads), name
        assert any(g.abs().sum() > 0 for g in grads), name


def test_landmark_model_attributes_and_checks():
    model = pipnet(68, width=0.25, net_stride=64)
    assert (model.num_points, model.net_stride) == (68, 64)
    assert coordinate_net(5, width=0.25).net_stride is None
    backbone = ResNetBackbone(18, 0.25)
    with pytest.raises(ValueError, match="channels"):
        LandmarkModel(backbone, PIPHead(512, 68))
    with pytest.raises(ValueError, match="stride"):
        LandmarkModel(backbone, HeatmapHead(128, 68, in_stride=16, net_stride=4))
    # the model is exactly head(backbone(x))
    model = LandmarkModel(backbone, PIPHead(128, 3)).eval()
    images = torch.rand(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(model(images)["score"], model.head(backbone(images))["score"])
