"""The multi-stage, multi-loss task of the fine-grained detector, its detector and its per-stage evaluation."""
import dataclasses

import pytest
import torch

from landmarks.data.layouts import get_layout
from landmarks.data.synthetic import SyntheticFaces
from landmarks.data.views import MemoryDataset
from landmarks.detector import Detector
from landmarks.evaluation.loop import evaluate
from landmarks.evaluation.metrics import nme
from landmarks.finegrained.align_loss import align_loss
from landmarks.finegrained.stages import (PAPER_SCHEME, FineGrainedTask, evaluate_stages, finegrained_detector,
                                         stage_table)
from landmarks.losses import iod_normalised_l2
from landmarks.models.cropnet import FineGrainedNet
from landmarks.training.loop import fit


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


def _perturbed_detector(losses=("iod-l2", "l2", "l1"), **options) -> Detector:
    """A fine-grained detector whose stages move the estimate (their FC layers start at zero)."""
    torch.manual_seed(0)
    detector = finegrained_detector(losses, image_size=64, hidden=8, **options)
    for stage in detector.model.stages:
        torch.nn.init.normal_(stage.fc.weight, std=0.05)
    return detector


def test_detector_pairs_the_network_with_the_task():
    detector = finegrained_detector(("iod-l2", "l1", "align"), depth=18, width=0.25, patch_size=6, image_size=64,
                                    hidden=8, grad_locations=False)
    model, task = detector.model, detector.task
    assert isinstance(model, FineGrainedNet) and model.num_stages == 2 and model.patch_size == 6
    assert model.stages[0].fc.in_features == 8 and model.grad_features and not model.grad_locations
    assert task.losses == ("iod-l2", "l1", "align") and task.patch_size == 6
    assert detector.image_size == 64 and detector.layout.name == "300w"
    assert finegrained_detector(("iod-l2",)).model.num_stages == 0


def test_detector_file_rebuilds_the_same_detector(tmp_path, faces):
    detector = _perturbed_detector(PAPER_SCHEME)
    detector.task.smooth = False
    path = detector.save(tmp_path / "fg.pt")
    loaded = Detector.load(path)
    assert dataclasses.asdict(loaded.task) == dataclasses.asdict(detector.task)
    assert loaded.model.levels == detector.model.levels and loaded.image_size == 64
    images = torch.stack([faces[i]["image"] for i in range(4)])
    torch.testing.assert_close(loaded.predict(images), detector.predict(images))


def test_evaluate_stages_agrees_with_the_evaluation_loop(faces):
    detector = _perturbed_detector()
    results = evaluate_stages(detector, faces, batch_size=5)
    assert len(results["nme"]) == 3 and results["corrections"].shape == (12, 2, 68, 2)
    assert detector.model.training, "the network is given back in the mode it came in"
    reference = evaluate(detector, faces, batch_size=5)
    assert results["nme"][2] == pytest.approx(reference["nme"], rel=1e-5)
    torch.testing.assert_close(results["per_image"][2], reference["per_image"])
    with torch.no_grad():
        images = torch.stack([faces[i]["image"] for i in range(12)])
        truth = torch.stack([faces[i]["landmarks"] for i in range(12)])
        baseline = detector.model.eval()(images)["coords"] * 64
    torch.testing.assert_close(results["per_image"][0], nme(baseline, truth, get_layout("300w")))
    torch.testing.assert_close(results["truth"], truth)
    moved = results["points"][:, 2] - results["points"][:, 0]
    torch.testing.assert_close(moved, results["corrections"].sum(1), atol=1e-4, rtol=0)
    iod = (truth[:, 45] - truth[:, 36]).norm(dim=-1)
    torch.testing.assert_close(results["corrections_iod"], results["corrections"] / iod[:, None, None, None])
    rows = stage_table(results, "m")
    assert [r["output"] for r in rows] == ["baseline", "stage 1", "stage 2"]
    assert rows[2]["NME (%)"] == pytest.approx(100 * reference["nme"], rel=1e-5)


def test_a_few_training_steps_lower_the_loss(faces):
    torch.manual_seed(0)
    detector = finegrained_detector(image_size=64, hidden=8)
    history = fit(detector, faces, epochs=3, batch_size=6, lr=3e-3, progress=False)
    assert {"loss_stage0_iod-l2", "loss_stage3_align"} <= set(history.keys())
    totals = history.column("loss_total")
    assert totals[-1] < totals[0]


def test_chapter_settings_come_from_the_profile():
    from landmarks.book import STORE
    from landmarks.book.ch09_cropnet import BASELINE, VARIANTS, Settings, settings
    from landmarks.profile import PROFILES

    quick, full = settings(PROFILES["quick"]), settings(PROFILES["full"])
    assert quick == Settings(image_size=PROFILES["quick"].image_size)
    # the paper's (Sect. 6.6): batch 64, weight decay 5e-4, 128-channel CropNet block, the baseline with
    # Adam 1e-4 and the stages end to end with 5e-4, both decayed by 0.3
    assert (full.image_size, full.batch_size, full.baseline_lr, full.joint_lr, full.decay, full.weight_decay,
            full.hidden, full.width) == (256, 64, 1e-4, 5e-4, 0.3, 5e-4, 128, 0.25)
    assert quick.hidden == 128 and full.joint_epochs > 0
    assert full.train.length == 20000 and full.test.seed == 101 and quick.train.seed == 100
    assert STORE[BASELINE].keep == "all"
    for name, variant in VARIANTS.items():
        detector = STORE[name].build(PROFILES["quick"])
        assert detector.task.losses == variant.losses and detector.image_size == quick.image_size
        assert detector.model.num_stages == len(variant.losses) - 1
        assert (detector.model.grad_features, detector.model.grad_locations) == \
            (variant.grad_features, variant.grad_locations)
        assert STORE[name].requires == (() if name == BASELINE else (BASELINE,))
        request = STORE[name].settings(PROFILES["full"])["settings"]
        assert request["baseline_epochs"] == full.baseline_epochs
        # the later phases do not define the baseline: changing them keeps the stored baselines
        assert ("stage_epochs" in request) == (name != BASELINE)


def _tiny_profile(**later):
    from dataclasses import replace

    from landmarks.profile import PROFILES

    return replace(PROFILES["quick"], image_size=64, chapters={"09": dict(
        train_images=24, test_images=6, baseline_epochs=2, baseline_decay_epochs=(1,), stage_epochs=2,
        stage_decay_epochs=(1,), batch_size=12, hidden=8, **later)})


def test_a_refined_model_starts_from_its_stored_baseline_exactly(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDMARKS_STORE", str(tmp_path))
    from landmarks.book import STORE
    from landmarks.book.ch09_cropnet import BASELINE, start_from_baseline

    tiny = _tiny_profile()
    start = start_from_baseline("fg_multiloss", tiny, seed=1, progress=False)   # trains the baseline first
    baseline = STORE.load(BASELINE, seed=1, profile=tiny).detector.model.eval()
    images = torch.rand(3, 3, 64, 64)
    with torch.no_grad():
        expected, out = baseline(images)["points"][:, 0], start.model.eval()(images)
    for k in range(out["points"].shape[1]):            # every output S_0..S_3 is the baseline's estimate
        torch.testing.assert_close(out["points"][:, k], expected, rtol=0, atol=0)


def test_chapter_training_runs_every_phase_and_scores_every_output(tmp_path, monkeypatch):
    monkeypatch.setenv("LANDMARKS_STORE", str(tmp_path))
    from landmarks.book import STORE
    from landmarks.book.ch09_cropnet import BASELINE, evaluate, train

    tiny = _tiny_profile(joint_epochs=1)
    trained = train("fg_multiloss_joint", tiny, seed=3, progress=False)
    history = trained.history
    assert history.column("epoch") == [1.0, 2.0, 3.0] and history.column("phase") == [0.0, 0.0, 1.0]
    assert trained.detector.task.smooth, "the detector keeps its task; only the joint phase's loss is unsmoothed"
    assert all(p.requires_grad for p in trained.detector.model.parameters()), "the baseline is released"
    baseline = STORE.load(BASELINE, seed=3, profile=tiny).detector.model
    moved = [not torch.equal(a, b.float()) for a, b in zip(trained.detector.model.backbone.parameters(),
                                                          baseline.backbone.parameters())]
    assert any(moved), "the joint phase trains the trunk too"
    metrics = evaluate(trained.detector.eval(), tiny)
    assert set(metrics) == {"nme", "fr", "auc", "nme/stage0", "nme/stage1", "nme/stage2", "nme/stage3"}
    assert metrics["nme"] == metrics["nme/stage3"]
    again = train("fg_multiloss_joint", tiny, seed=3, progress=False)
    for a, b in zip(trained.detector.model.parameters(), again.detector.model.parameters()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    stages_only = train("fg_multiloss", tiny, seed=3, progress=False)           # no joint phase
    assert stages_only.history.column("phase") == [0.0, 0.0]
    frozen = STORE.load(BASELINE, seed=3, profile=tiny).detector.model
    for a, b in zip(stages_only.detector.model.backbone.parameters(), frozen.backbone.parameters()):
        torch.testing.assert_close(a, b.float(), rtol=0, atol=0)                 # the trunk did not move
