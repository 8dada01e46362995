"""Position probes: black-image data, probing fixed-output models, NME tables and padding modes."""
import math

import pytest
import torch
from torch import nn

from landmarks.data.layouts import get_layout
from landmarks.evaluation.metrics import nme
from landmarks.models import heatmap_net, pipnet
from landmarks.models.backbones import ResNetBackbone
from landmarks.codecs.pip import decode_pip_detailed
from landmarks.data.views import BlackFaces
from landmarks.detector import Detector
from landmarks.pipnet.padding import PaddedMaxPool2d, WrappedConvTranspose2d, set_padding_mode
from landmarks.pipnet.position import nme_to_shapes, position_sensitivity, probe
from landmarks.data.synthetic import SyntheticFaces
from landmarks.codecs.tasks import CoordinateTask, HeatmapTask, PIPTask

LAYOUT = get_layout("300w")


def _shapes(count, seed=0, size=64.0):
    g = torch.Generator().manual_seed(seed)
    return 8 + (size - 16) * torch.rand(count, 68, 2, generator=g)


# --------------------------------------------------------------------------- BlackFaces
def test_black_faces_zero_images_and_keep_every_label():
    source = SyntheticFaces("studio", 32, length=3, seed=5)
    black = BlackFaces(source)
    assert len(black) == 3 and black.layout == source.layout
    for i in range(3):
        original, blank = source[i], black[i]
        assert blank["image"].shape == original["image"].shape and blank["image"].dtype == torch.float32
        assert torch.count_nonzero(blank["image"]) == 0
        assert original["image"].abs().sum() > 0
        for key in ("landmarks", "box", "visible"):
            assert torch.equal(blank[key], original[key])
        assert blank["index"] == original["index"]


def test_black_faces_level_gives_constant_grey_and_rejects_bad_levels():
    grey = BlackFaces(SyntheticFaces("studio", 32, length=1), level=0.5)[0]["image"]
    assert torch.all(grey == 0.5)
    with pytest.raises(ValueError):
        BlackFaces(SyntheticFaces("studio", 32, length=1), level=2.0)


# --------------------------------------------------------------------------- probe
class FixedOutputs(nn.Module):
    """Ignores the image and returns the same raw outputs for every image of the batch."""

    def __init__(self, outputs):
        super().__init__()
        self.outputs = outputs
        self.anchor = nn.Parameter(torch.zeros(1))

    def forward(self, images):
        return {k: v.expand(len(images), *v.shape[1:]).clone() for k, v in self.outputs.items()}


def test_probe_on_fixed_pip_maps_decodes_by_hand_and_reports_mean_peak_score():
    score = torch.zeros(1, 2, 4, 4)
    score[0, 0, 1, 2] = 3.0   # landmark 0: row 1, column 2
    score[0, 1, 3, 0] = 1.0   # landmark 1: row 3, column 0
    offset_x = torch.full((1, 2, 4, 4), 0.25)
    offset_y = torch.full((1, 2, 4, 4), 0.5)
    model = FixedOutputs({"score": score, "offset_x": offset_x, "offset_y": offset_y})
    model.train()
    result = probe(Detector(model, PIPTask(16)), torch.rand(5, 3, 64, 64), batch_size=2)
    expected = torch.tensor([[(2 + 0.25) * 16, (1 + 0.5) * 16], [(0 + 0.25) * 16, (3 + 0.5) * 16]])
    assert result.kind == "pip" and result.predictions.shape == (5, 2, 2)
    assert torch.allclose(result.predictions, expected.expand(5, 2, 2))
    assert torch.allclose(result.response, torch.full((5,), (3.0 + 1.0) / 2))
    assert result.nme is None
    assert model.training  # mode given back


def test_probe_on_fixed_heatmaps_uses_peak_values():
    heatmaps = torch.zeros(1, 2, 8, 8)
    heatmaps[0, 0, 2, 5] = 0.8    # both neighbours equal -> no quarter shift
    heatmaps[0, 1, 6, 1] = 0.4
    model = FixedOutputs({"heatmaps": heatmaps})
    result = probe(Detector(model, HeatmapTask(4)), torch.rand(3, 3, 32, 32))
    expected = torch.tensor([[(5 + 0.5) * 4, (2 + 0.5) * 4], [(1 + 0.5) * 4, (6 + 0.5) * 4]])
    assert result.kind == "heatmap"
    assert torch.allclose(result.predictions, expected.expand(3, 2, 2))
    assert torch.allclose(result.response, torch.full((3,), 0.6))


def test_probe_on_coordinates_has_nan_response_and_nme_to_the_mean_shape():
    size = 64
    mean_shape = _shapes(1, seed=3)[0]
    shift = torch.tensor([2.0, 0.0])
    coords = ((mean_shape + shift) / size)[None]
    images = SyntheticFaces("studio", size, length=3)
    result = probe(Detector(FixedOutputs({"coords": coords}), CoordinateTask()), images, mean_shape=mean_shape)
    assert result.kind == "coordinate"
    assert torch.all(torch.isnan(result.response))
    assert torch.allclose(result.predictions, (mean_shape + shift).expand(3, 68, 2), atol=1e-4)
    a, b = LAYOUT.outer_eye_corners
    iod = (mean_shape[a] - mean_shape[b]).norm()
    assert torch.allclose(result.nme, torch.full((3,), float(2.0 / iod)), atol=1e-5)


def test_probe_accepts_a_dataset_like_the_tensor_it_holds():
    data = SyntheticFaces("studio", 32, length=3, seed=1)
    images = torch.stack([data[i]["image"] for i in range(3)])
    torch.manual_seed(0)
    model = pipnet(68, width=0.25, net_stride=32, num_neighbours=0)
    detector = Detector(model, PIPTask(32))
    from_data, from_tensor = probe(detector, data, batch_size=2), probe(detector, images)
    assert torch.allclose(from_data.predictions, from_tensor.predictions, atol=1e-4)
    assert torch.allclose(from_data.response, from_tensor.response, atol=1e-6)


# --------------------------------------------------------------------------- nme_to_shapes
def test_nme_to_shapes_matches_pairwise_metric():
    pred, refs = _shapes(3, seed=1), _shapes(4, seed=2)
    table = nme_to_shapes(pred, refs, "300w")
    assert table.shape == (3, 4)
    for b in range(3):
        for m in range(4):
            assert torch.isclose(table[b, m], nme(pred[b], refs[m], LAYOUT)[0], rtol=1e-5)
    assert torch.allclose(nme_to_shapes(refs, refs).diagonal(), torch.zeros(4))


def test_nme_to_shapes_rejects_wrong_point_count():
    with pytest.raises(ValueError):
        nme_to_shapes(torch.zeros(2, 5, 2), _shapes(1))


# --------------------------------------------------------------------------- padding modes
def _tiny_net():
    """Conv (stride 1 and 2), a padded max-pool and a transposed conv: total stride 2."""
    torch.manual_seed(0)
    return nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2, padding=1),
                         nn.MaxPool2d(3, stride=2, padding=1), nn.ConvTranspose2d(4, 2, 4, stride=2, padding=1))


@pytest.mark.parametrize("mode", ["circular", "reflect", "replicate", "zeros"])
def test_set_padding_mode_sets_every_conv(mode):
    model = set_padding_mode(pipnet(68, width=0.25, net_stride=16, num_neighbours=0), mode)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    assert convs and all(m.padding_mode == mode for m in convs)
    pools = [m for m in model.modules() if isinstance(m, nn.MaxPool2d)]
    assert len(pools) == 1 and isinstance(pools[0], PaddedMaxPool2d) == (mode != "zeros")
    transposed = [m for m in model.modules() if isinstance(m, nn.ConvTranspose2d)]
    assert transposed and all(isinstance(m, WrappedConvTranspose2d) == (mode == "circular") for m in transposed)
    assert model(torch.rand(1, 3, 64, 64))["score"].shape == (1, 68, 4, 4)


def test_set_padding_mode_keeps_weights_and_state_dict_keys():
    model = heatmap_net(68, width=0.25, net_stride=8)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    set_padding_mode(model, "circular")
    after = model.state_dict()
    assert before.keys() == after.keys() and all(torch.equal(before[k], after[k]) for k in before)
    set_padding_mode(model, "zeros")
    assert not any(isinstance(m, (WrappedConvTranspose2d, PaddedMaxPool2d)) for m in model.modules())


def test_wrapped_transposed_conv_agrees_with_plain_one_away_from_the_border():
    plain = nn.ConvTranspose2d(3, 2, 4, stride=2, padding=1)
    wrapped = set_padding_mode(plain, "circular")
    assert isinstance(wrapped, WrappedConvTranspose2d)
    x = torch.randn(1, 3, 6, 6)
    a, b = plain(x), wrapped(x)
    assert a.shape == b.shape == (1, 2, 12, 12)
    assert torch.allclose(a[..., 1:-1, 1:-1], b[..., 1:-1, 1:-1], atol=1e-6)
    assert not torch.allclose(a, b, atol=1e-6)


def _rolled(x, shift):
    return x.roll((shift, shift), dims=(-2, -1))


@pytest.mark.parametrize("mode, equivariant", [("circular", True), ("zeros", False)])
def test_circular_padding_makes_a_conv_net_shift_equivariant(mode, equivariant):
    net = set_padding_mode(_tiny_net(), mode)
    x = torch.randn(2, 3, 16, 16)
    with torch.no_grad():
        out, out_shifted = net(x), net(_rolled(x, 4))
    assert out.shape == (2, 2, 8, 8)
    assert torch.allclose(_rolled(out, 2), out_shifted, atol=1e-5) == equivariant


@pytest.mark.parametrize("mode, equivariant", [("circular", True), ("zeros", False)])
def test_stem_max_pool_handling(mode, equivariant):
    # The pool alone on a non-negative map: -inf padding breaks equivariance, circular keeps it.
    pool = set_padding_mode(nn.Sequential(nn.MaxPool2d(3, stride=2, padding=1)), mode)
    x = torch.rand(1, 1, 8, 8)
    assert torch.allclose(_rolled(pool(x), 1), pool(_rolled(x, 2))) == equivariant


def test_circular_resnet_and_heads_are_equivariant_to_shifts_of_the_total_stride():
    torch.manual_seed(0)
    x = torch.rand(1, 3, 64, 64)
    trunk = set_padding_mode(ResNetBackbone(18, 0.25), "circular").eval()
    heat = set_padding_mode(heatmap_net(68, width=0.25, net_stride=4), "circular").eval()
    with torch.no_grad():
        features, shifted = trunk(x), trunk(_rolled(x, 32))
        for level, stride in zip(features, trunk.strides):
            assert torch.allclose(_rolled(level, 32 // stride), shifted[trunk.strides.index(stride)], atol=1e-4)
        maps, maps_shifted = heat(x)["heatmaps"], heat(_rolled(x, 32))["heatmaps"]
    assert torch.allclose(_rolled(maps, 8), maps_shifted, rtol=1e-4, atol=1e-10)


# --------------------------------------------------------------------------- black images, trained
def _train_on_black(mode, steps=3):
    # BatchNorm is kept in eval mode (fixed statistics): with circular padding a black batch has
    # (almost) zero variance in every channel, and batch statistics would blow float noise up to
    # inf / NaN within a step. The chapter's training must do the same (or use GroupNorm).
    torch.manual_seed(0)
    data = BlackFaces(SyntheticFaces("studio", 64, length=4, seed=7))
    batch = {k: torch.stack([data[i][k] for i in range(4)]) for k in ("image", "landmarks")}
    model = set_padding_mode(pipnet(68, width=0.25, net_stride=32, num_neighbours=0), mode).eval()
    task = PIPTask(32)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3)
    for _ in range(steps):
        optimiser.zero_grad()
        loss = task.loss(model(batch["image"]), batch)["total"]
        assert torch.isfinite(loss)
        loss.backward()
        optimiser.step()
    return model, task, batch


def test_circular_detector_trained_on_black_images_has_flat_maps_and_one_cell():
    model, task, batch = _train_on_black("circular")
    sensitivity = position_sensitivity(Detector(model, task), 64)
    assert sensitivity.period == 1
    assert torch.all(sensitivity.roll_difference < 1e-5) and torch.all(sensitivity.spatial_std < 1e-5)
    with torch.no_grad():
        decoded = decode_pip_detailed(model.eval()(batch["image"][:1]), 64, 32)
    assert torch.all(decoded.cell == 0)  # a flat map's arg-max is a tie, broken at the first cell


def test_zero_padded_detector_on_black_images_has_position_dependent_maps():
    model, task, _ = _train_on_black("zeros")
    sensitivity = position_sensitivity(Detector(model, task), 64)
    assert torch.all(sensitivity.roll_difference > 1e-3) and torch.all(sensitivity.spatial_std > 0)


def test_position_sensitivity_of_a_coordinate_head_is_nan():
    from landmarks.models import coordinate_net

    result = position_sensitivity(Detector(coordinate_net(68, width=0.25), CoordinateTask()), 32, levels=(0.0,))
    assert math.isnan(float(result.roll_difference[0])) and result.predictions.shape == (1, 68, 2)


def test_pull_to_mean_counts_misses_that_fall_back_on_the_mean_shape():
    from landmarks.pipnet.position import pull_to_mean

    layout = get_layout("300w")
    truth = torch.rand(2, layout.num_points, 2) * 20 + 54
    truth[:, 36], truth[:, 45] = torch.tensor([44.0, 50.0]), torch.tensor([84.0, 50.0])  # IOD 40 px
    shape = truth[0].clone() + 30.0        # the "mean shape": 30 px right and down of face 0
    pred = truth.clone()
    pred[0, :10] = shape[:10] + 1.0        # ten misses of face 0 land near the mean shape
    pred[1, :4] = truth[1, :4] - 30.0      # four misses of face 1 land away from it
    pull = pull_to_mean(pred, truth, shape, layout, threshold=0.2)   # 0.2 * 40 = 8 px
    assert int(pull.large.sum()) == 14 and bool(pull.large[0, :10].all()) and bool(pull.large[1, :4].all())
    assert pull.closer_to_mean == pytest.approx(10 / 14)
    assert pull.prediction_to_mean == pytest.approx(2 ** 0.5, abs=1e-4)  # 10 of the 14 are sqrt(2) px away
    clean = pull_to_mean(truth, truth, shape, layout)
    assert not clean.large.any() and math.isnan(clean.closer_to_mean)
    with pytest.raises(ValueError, match="must be equal"):
        pull_to_mean(pred[:1], truth, shape, layout)
