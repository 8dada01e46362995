"""The multi-stage, multi-loss task of the fine-grained detector and its per-stage evaluation."""
import pytest
import torch

from landmarks.finegrained.align_loss import align_loss
from landmarks.finegrained.stages import PAPER_SCHEME, FineGrainedTask, MemoryDataset, evaluate_stages, stage_table
from landmarks.data.layouts import get_layout
from landmarks.losses import iod_normalised_l2
from landmarks.evaluation.metrics import nme
from landmarks.models.cropnet import finegrained_net
from landmarks.data.synthetic import SyntheticFaces
from landmarks.training.loop import evaluate, fit


@pytest.fixture(scope="module")
def faces():
    return MemoryDataset(SyntheticFaces("studio", 64, length=12, seed=5))


def _fake_outputs(truth: torch.Tensor, size: int = 64):
    gen = torch.Generator().manual_seed(0)
    points = truth[:, None] + torch.randn(truth.shape[0], 4, *truth.shape[1:], generator=gen)
    features = {f"features_{k}": torch.randn(truth.shape[0], 3, size // s, size // s, generator=gen)
                for k, s in zip((1, 2, 3), (8, 4, 2))}
    return {"points": points, **features}


def test_memory_dataset_matches_source(faces):
    source = SyntheticFaces("studio", 64, length=12, seed=5)
    assert len(faces) == 12 and faces.layout == source.layout
    for key in ("image", "landmarks", "box"):
        torch.testing.assert_close(faces[7][key], source[7][key])


def test_loss_components_are_the_named_losses(faces):
    batch = {k: torch.stack([faces[i][k] for i in range(4)]) for k in ("image", "landmarks")}
    outputs = _fake_outputs(batch["landmarks"])
    task = FineGrainedTask(PAPER_SCHEME, weights=(1.0, 2.0, 3.0, 4.0))
    parts = task.loss(outputs, batch)
    assert list(parts) == ["stage0_iod-l2", "stage1_l2", "stage2_l1", "stage3_align", "total"]
    p, t = outputs["points"], batch["landmarks"]
    assert parts["stage0_iod-l2"].item() == pytest.approx(iod_normalised_l2(p[:, 0], t, "300w").item())
    assert parts["stage1_l2"].item() == pytest.approx(((p[:, 1] - t) / 64).square().sum(-1).mean().item())
    assert parts["stage2_l1"].item() == pytest.approx(((p[:, 2] - t) / 64).abs().sum(-1).mean().item())
    assert parts["stage3_align"].item() == pytest.approx(align_loss(outputs["features_3"], p[:, 3], t, 2.0).item())
    expected = sum(w * parts[k] for w, k in zip((1, 2, 3, 4), list(parts)[:4]))
    assert parts["total"].item() == pytest.approx(expected.item())
    torch.testing.assert_close(task.predict(outputs, batch), p[:, 3])
    task.smooth = False
    unsmoothed = align_loss(outputs["features_3"], p[:, 3], t, 2.0, smooth=False)
    assert task.loss(outputs, batch)["stage3_align"].item() == pytest.approx(unsmoothed.item())


def test_bad_configurations(faces):
    with pytest.raises(ValueError, match="unknown"):
        FineGrainedTask(("iod-l2", "huber"))
    with pytest.raises(ValueError, match="baseline"):
        FineGrainedTask(("align", "l2"))
    with pytest.raises(ValueError, match="weights"):
        FineGrainedTask(("iod-l2", "l2"), weights=(1.0,))
    batch = {k: torch.stack([faces[i][k] for i in range(2)]) for k in ("image", "landmarks")}
    with pytest.raises(ValueError, match="outputs"):
        FineGrainedTask(("iod-l2", "l2")).loss(_fake_outputs(batch["landmarks"]), batch)


def test_evaluate_stages_agrees_with_the_trainer(faces):
    torch.manual_seed(0)
    model = finegrained_net(68, stages=2, hidden=8)
    for stage in model.stages:
        torch.nn.init.normal_(stage.fc.weight, std=0.05)
    results = evaluate_stages(model, faces, batch_size=5)
    assert len(results["nme"]) == 3 and results["corrections"].shape == (12, 2, 68, 2)
    reference = evaluate(model, FineGrainedTask(("iod-l2", "l2", "l1")), faces, layout="300w", batch_size=5)
    assert results["nme"][2] == pytest.approx(reference["nme"], rel=1e-5)
    torch.testing.assert_close(results["per_image"][2], reference["per_image"])
    with torch.no_grad():
        images = torch.stack([faces[i]["image"] for i in range(12)])
        truth = torch.stack([faces[i]["landmarks"] for i in range(12)])
        baseline = model.eval()(images)["coords"] * 64
    torch.testing.assert_close(results["per_image"][0], nme(baseline, truth, get_layout("300w")))
    moved = results["points"][:, 2] - results["points"][:, 0]
    torch.testing.assert_close(moved, results["corrections"].sum(1), atol=1e-4, rtol=0)
    rows = stage_table(results, "m")
    assert [r["output"] for r in rows] == ["baseline", "stage 1", "stage 2"]


def test_a_few_training_steps_lower_the_loss(faces):
    torch.manual_seed(0)
    model = finegrained_net(68, stages=3, hidden=8)
    history = fit(model, FineGrainedTask(), faces, epochs=3, batch_size=6, lr=3e-3, progress=False)
    assert {"loss_stage0_iod-l2", "loss_stage3_align"} <= set(history.keys())
    totals = history.column("loss_total")
    assert totals[-1] < totals[0]
