"""CropNet (fine-grained paper, Table 7) and the baseline + refinement-stage model."""
import pytest
import torch

from landmarks.models.cropnet import PAPER_LEVELS, CropNet, FineGrainedNet, finegrained_net


def test_cropnet_shapes_zero_start_and_size():
    net = CropNet(in_channels=6, num_points=5, selected=4, hidden=16)
    patches = torch.randn(3, 5, 6, 8, 8)
    out = net(patches)
    assert out.shape == (3, 5, 2) and torch.all(out == 0)
    assert net.selected_channels(patches).shape == (3, 5, 4, 8, 8)
    width = 4 * 5
    expected = (6 * 4 * 5                                   # grouped 1x1 selection: 4 C N
                + 2 * width                                 # batch norm
                + width * 16 * 9 + 2 * 16 + 16 * 16 * 9 + 2 * 16   # BasicBlock convs + BNs
                + width * 16 + 2 * 16                        # 1x1 shortcut + BN
                + 16 * 10 + 10)                             # FC to 2N
    assert sum(p.numel() for p in net.parameters()) == expected
    with pytest.raises(ValueError, match="CropNet expects"):
        net(torch.randn(3, 4, 6, 8, 8))


def test_channel_selection_stays_within_each_landmark():
    net = CropNet(in_channels=3, num_points=4, selected=2, hidden=8)
    patches = torch.randn(1, 4, 3, 8, 8)
    changed = patches.clone()
    changed[:, 2] += 5.0                                     # only landmark 2's patch changes
    diff = (net.selected_channels(changed) - net.selected_channels(patches)).abs().amax(dim=(0, 2, 3, 4))
    assert diff[2] > 0 and torch.all(diff[[0, 1, 3]] == 0)


def test_model_outputs_and_levels():
    model = finegrained_net(10, stages=3, hidden=16).eval()
    assert model.levels == PAPER_LEVELS and model.strides == (8, 4, 2)
    images = torch.rand(2, 3, 64, 64)
    out = model(images)
    assert out["points"].shape == (2, 4, 10, 2) and out["corrections"].shape == (2, 3, 10, 2)
    torch.testing.assert_close(out["points"][:, 0], out["coords"] * 64)
    # CropNet FC layers start at zero: every stage repeats the baseline
    assert torch.all(out["corrections"] == 0)
    torch.testing.assert_close(out["points"][:, 3], out["points"][:, 0])
    assert out["features_1"].shape[-1] == 8 and out["features_3"].shape[-1] == 32
    baseline = finegrained_net(10, stages=0)(images)
    assert baseline["points"].shape == (2, 1, 10, 2) and baseline["corrections"].shape == (2, 0, 10, 2)
    with pytest.raises(ValueError):
        finegrained_net(10, stages=4)
    with pytest.raises(ValueError, match="levels"):
        FineGrainedNet(10, levels=(7,))


def _trunk_gradient(model: FineGrainedNet, images: torch.Tensor, output: int) -> torch.Tensor:
    model.zero_grad()
    model(images)["points"][:, output].square().sum().backward()
    return torch.cat([p.grad.flatten() for p in model.backbone.layer1.parameters()])


@pytest.mark.parametrize("switches, same", [((False, False), True), ((True, False), False), ((False, True), False)])
def test_gradient_switches_reach_the_trunk(switches, same):
    torch.manual_seed(0)
    model = finegrained_net(5, stages=2, hidden=8, grad_features=switches[0], grad_locations=switches[1])
    for stage in model.stages:
        torch.nn.init.normal_(stage.fc.weight, std=0.1)
    model.train()
    images = torch.rand(3, 3, 32, 32)
    # layer1 feeds the head and stage 2's crops. With both switches off, stage 2's correction is a
    # function of detached inputs: the gradient of ||S_2||^2 on layer1 is the same with Delta_2 frozen.
    # With either switch on, Delta_2 sends its own gradient to layer1 (eq. 9 or eq. 16).
    g_full = _trunk_gradient(model, images, 2)
    model.zero_grad()
    out = model(images)
    stand_in = out["points"][:, 1] + out["corrections"][:, 1].detach()      # S_2 with Delta_2 frozen
    stand_in.square().sum().backward()
    g_frozen = torch.cat([p.grad.flatten() for p in model.backbone.layer1.parameters()])
    assert torch.allclose(g_full, g_frozen, atol=1e-6) == same


def test_frozen_baseline_keeps_trunk_head_and_statistics_while_the_stages_learn():
    torch.manual_seed(0)
    model = finegrained_net(num_points=4, depth=18, width=0.125, stages=2, hidden=8)
    model.freeze_baseline(True).train()
    assert not model.backbone.training and not model.head.training and model.stages[0].training
    assert "baseline frozen" in repr(model)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    trainable = [p for p in model.parameters() if p.requires_grad]
    optimiser = torch.optim.SGD(trainable, lr=0.1)
    for _ in range(3):
        out = model(torch.randn(4, 3, 64, 64))
        (out["points"][:, -1] - 1.0).square().sum().backward()
        optimiser.step()
        optimiser.zero_grad()
    after = model.state_dict()
    trunk = [k for k in before if k.startswith(("backbone.", "head."))]
    assert any("running_mean" in k for k in trunk)
    assert all(torch.equal(before[k], after[k]) for k in trunk), "trunk, head and batch-norm statistics fixed"
    assert any(not torch.equal(before[k], after[k]) for k in before if k.startswith("stages.")), "stages train"
    model.freeze_baseline(False).train()
    assert model.backbone.training and all(p.requires_grad for p in model.parameters())
