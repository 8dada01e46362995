"""The command line: help texts, a tiny train -> evaluate -> predict round trip, and its errors."""
import contextlib
import io
import json
import re
import subprocess
import sys

import cv2
import numpy as np
import pytest
import torch

from landmarks import cli
from landmarks.data.coords import from_one_based, to_one_based
from landmarks.data.datasets import DATA_SOURCES, LandmarkDataset
from landmarks.detector import HEADS, Detector
from landmarks.data.formats import read_pts, write_pts
from landmarks.evaluation.metrics import NORMS
from landmarks.models.backbones import RESNET_SPECS
from landmarks.data.synthetic import DOMAINS, SyntheticFaces

#: The options each subcommand must offer, written out from the specification of the command line.
OPTIONS = {
    "train": ["--head", "--net-stride", "--neighbours", "--depth", "--width", "--image-size", "--coordinate-loss",
              "--pretrained", "--data", "--domain", "--root", "--seed", "--train-size", "--val-size", "--epochs",
              "--batch-size", "--lr", "--decay-epochs", "--num-workers", "--device", "--amp", "--checkpoint-dir",
              "--output"],
    "evaluate": ["MODEL.pt", "--data", "--domain", "--root", "--seed", "--size", "--split", "--json", "--batch-size",
                 "--device"],
    "predict": ["MODEL.pt", "IMAGE", "--box", "--box-scale", "--format", "--output", "--device"],
}
TINY = ["--image-size", "64", "--width", "0.25", "--train-size", "16", "--val-size", "8", "--epochs", "1",
        "--batch-size", "8", "--device", "cpu", "--quiet"]


def run(argv):
    """``cli.main(argv)``'s return value and what it printed."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        code = cli.main(argv)
    return code, out.getvalue()


def fails(argv, capsys) -> str:
    """The error message of a command that must exit with status 2."""
    with pytest.raises(SystemExit) as stop:
        cli.main(argv)
    assert stop.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    return err


def subparser(command: str):
    """The argparse parser of one subcommand."""
    return cli.build_parser()._subparsers._group_actions[0].choices[command]


def points_of(text: str) -> np.ndarray:
    return np.array([[float(v) for v in line.split()] for line in text.strip().splitlines()])


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    folder = tmp_path_factory.mktemp("cli")
    code, out = run(["train", *TINY, "--output", str(folder / "tiny.pt")])
    assert code == 0
    return folder / "tiny.pt", out


@pytest.fixture(scope="module")
def face_png(tmp_path_factory):
    """A 96 x 128 PNG: a 96-pixel synthetic face with grey bars left and right."""
    face = SyntheticFaces("studio", 96, length=1, seed=7)[0]["image"].permute(1, 2, 0).numpy()
    rgb = np.full((96, 128, 3), 128, np.uint8)
    rgb[:, 16:112] = np.round(face * 255).astype(np.uint8)
    path = tmp_path_factory.mktemp("image") / "face.png"
    assert cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    return path, rgb


def expected_points(model_path, rgb, crop_box):
    """The model run on the dataset code's crop of ``crop_box`` and mapped back by the dataset."""
    detector = Detector.load(model_path)
    data = LandmarkDataset([rgb], np.zeros((1, 68, 2)), "300w", boxes=np.array([crop_box]), size=detector.image_size, check=False,
                           box_scale=1.0)
    np.testing.assert_allclose(data.crop_boxes[0], crop_box)  # already square: kept as it is
    sample = data[0]
    with torch.no_grad():
        image = sample["image"][None]
        crop_points = detector.task.predict(detector.model(image), {"image": image})[0]
    return data.to_original(crop_points.numpy(), 0)


def test_choices_match_the_library():
    assert cli.HEADS == HEADS
    assert set(cli.DOMAINS) == set(DOMAINS)
    assert set(cli.REAL_DATASETS) == set(DATA_SOURCES)
    assert set(cli.NORMS) == set(NORMS)
    depth = next(action for action in subparser("train")._actions if action.dest == "depth")
    assert set(depth.choices) == set(RESNET_SPECS)


@pytest.mark.parametrize("command", sorted(OPTIONS))
def test_help_explains_every_option(command, capsys):
    with pytest.raises(SystemExit) as stop:
        cli.main([command, "--help"])
    assert stop.value.code == 0
    text = capsys.readouterr().out
    for option in OPTIONS[command]:
        assert option in text, option
    assert "example" in text
    for action in subparser(command)._actions:
        assert action.help, action.option_strings or action.dest


def test_profile_switch_changes_the_defaults(monkeypatch):
    def settings(*argv):
        return cli.train_settings(cli.build_parser().parse_args(["train", *argv]))

    monkeypatch.setenv("LANDMARKS_PROFILE", "quick")
    quick, real = settings(), settings("--data", "300w")
    monkeypatch.setenv("LANDMARKS_PROFILE", "full")
    full = settings()
    assert (quick.image_size, quick.epochs, quick.augment) == (128, 8, False)
    assert (full.image_size, full.width, full.epochs, full.batch_size, full.decay_epochs) == (256, 1.0, 60, 16, (30, 50))
    monkeypatch.setenv("LANDMARKS_PROFILE", "quick")
    # the real-data recipe: half width, 30 epochs decayed after 20 and 27, augmentation on crops with a margin
    assert (real.width, real.epochs, real.decay_epochs, real.augment, real.crop_margin) == (0.5, 30, (20, 27), True, 0.25)
    assert settings("--epochs", "3").epochs == 3
    # the decays move with --epochs (at the same fractions of the run) unless given
    assert settings("--data", "300w", "--epochs", "60").decay_epochs == (40, 54)
    assert settings("--epochs", "16").decay_epochs == (12,)
    assert settings("--epochs", "16", "--decay-epochs", "5").decay_epochs == (5,)
    assert settings("--data", "300w", "--no-augment").crop_margin == 0.0


def test_evaluate_reproduces_the_stored_validation_nme(trained, tmp_path):
    path, train_out = trained
    detector, stored = Detector.load_with_record(path)
    spec = detector.spec
    assert (spec.image_size, spec.width, spec.head) == (64, 0.25, "pip")
    assert stored["command"].startswith("python -m landmarks train") and "--val-size 8" in stored["command"]
    shown = f"NME (inter-ocular): {100 * stored['metrics']['nme']:.3f} %"
    assert shown in train_out
    # the validation faces of 'train --seed 0' are the synthetic faces of seed 1
    code, out = run(["evaluate", str(path), "--seed", "1", "--size", "8", "--batch-size", "4", "--device", "cpu",
                     "--json", str(tmp_path / "result.json")])
    assert code == 0
    assert shown in out and "images: 8" in out and "FR@0.1" in out and "AUC@0.1" in out
    report = json.loads((tmp_path / "result.json").read_text())
    assert report["nme"] == pytest.approx(stored["metrics"]["nme"], abs=1e-6)
    assert (report["images"], report["norm"]) == (8, "inter-ocular")


def test_predict_whole_image_matches_the_model_and_draws(trained, face_png, tmp_path):
    path, _ = trained
    image, rgb = face_png
    drawing = tmp_path / "drawn.png"
    code, out = run(["predict", str(path), str(image), "--whole-image", "--device", "cpu", "--output", str(drawing)])
    assert code == 0
    points = points_of(out)
    assert points.shape == (68, 2)
    # a 128 x 96 image made square around its centre (64, 48): side 128
    np.testing.assert_allclose(points, expected_points(path, rgb, [0.0, -16.0, 128.0, 112.0]), atol=1e-3)
    written = cv2.imread(str(drawing))
    assert written is not None and written.shape[1] > written.shape[0]  # landscape, like the image


def test_predict_box_and_pts_format(trained, face_png, tmp_path):
    (path, _), (image, rgb) = trained, face_png
    box = ["16", "8", "112", "88"]  # 96 x 80, centre (64, 48); x 1.2 -> a 115.2-pixel square
    code, xy = run(["predict", str(path), str(image), "--box", *box, "--box-scale", "1.2", "--device", "cpu"])
    assert code == 0
    np.testing.assert_allclose(points_of(xy), expected_points(path, rgb, [6.4, -9.6, 121.6, 105.6]), atol=1e-3)
    code, pts = run(["predict", str(path), str(image), "--box", *box, "--box-scale", "1.2", "--format", "pts",
                     "--device", "cpu"])
    (tmp_path / "face.pts").write_text(pts)
    np.testing.assert_allclose(from_one_based(read_pts(tmp_path / "face.pts", 68)), points_of(xy), atol=1e-3)


def test_train_and_evaluate_on_a_300w_folder(tmp_path):
    """A folder in 300W's layout (synthetic faces with 1-based .pts files) goes through both commands."""
    faces = SyntheticFaces("studio", 64, length=18, seed=3)
    folders = ["afw", "helen/trainset", "lfpw/trainset", "helen/testset", "lfpw/testset", "ibug"]
    for k in range(len(faces)):
        folder = tmp_path / "300w" / folders[k % len(folders)]
        folder.mkdir(parents=True, exist_ok=True)
        face = faces[k]
        rgb = np.round(face["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        cv2.imwrite(str(folder / f"{k}.png"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        write_pts(folder / f"{k}.pts", to_one_based(face["landmarks"].double().numpy()))
    model = tmp_path / "real.pt"
    root = ["--data", "300w", "--root", str(tmp_path / "300w")]
    code, out = run(["train", *root, *TINY[:4], "--epochs", "1", "--batch-size", "4", "--train-size", "4",
                     "--val-size", "3", "--device", "cpu", "--quiet", "--output", str(model)])
    assert code == 0 and "images: 3" in out  # 3 of the 9 faces of the 'test' split (3 folders x 3 faces)
    code, out = run(["evaluate", str(model), *root, "--split", "challenge", "--device", "cpu"])
    assert code == 0 and "300w challenge split" in out and "images: 3" in out


def test_bad_input_exits_2_naming_the_problem(trained, face_png, tmp_path, capsys):
    model, image = str(trained[0]), str(face_png[0])
    missing = tmp_path / "no_face.jpg"
    assert str(missing) in fails(["predict", model, str(missing)], capsys)
    assert "no_root" in fails(["evaluate", model, "--data", "300w", "--root", str(tmp_path / "no_root")], capsys)
    assert "--root" in fails(["train", "--data", "wflw"], capsys)
    assert "--box" in fails(["predict", model, image, "--box", "50", "10", "20", "40"], capsys)
    assert "missing.pt" in fails(["evaluate", str(tmp_path / "missing.pt")], capsys)
    not_an_image = tmp_path / "notes.png"
    not_an_image.write_text("hello")
    assert "notes.png" in fails(["predict", model, str(not_an_image)], capsys)


def test_module_entry_point():
    result = subprocess.run([sys.executable, "-m", "landmarks", "--help"], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0
    assert re.search(r"train .*\n.*evaluate .*\n.*predict", result.stdout)


def _write_folder(root, count, seed=5, size=64):
    """Synthetic faces saved as a folder of JPEGs with a 1-based .pts beside each."""
    faces = SyntheticFaces("studio", size, length=count, seed=seed)
    root.mkdir(parents=True, exist_ok=True)
    for k in range(count):
        face = faces[k]
        rgb = np.round(face["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
        cv2.imwrite(str(root / f"face_{k:02d}.jpg"), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
        write_pts(root / f"face_{k:02d}.pts", to_one_based(face["landmarks"].double().numpy()))
    return root


def test_train_on_any_folder_holds_out_every_tenth_face_and_augments(tmp_path):
    root = _write_folder(tmp_path / "faces", 20)
    model = tmp_path / "folder.pt"
    code, out = run(["train", "--data", "folder", "--root", str(root), "--image-size", "64", "--width", "0.25",
                     "--epochs", "1", "--batch-size", "6", "--device", "cpu", "--quiet", "--output", str(model)])
    assert code == 0
    assert "on 18 faces of the folder" in out and "every 10th held out" in out and ", augmented" in out
    assert "images: 2" in out
    detector, record = Detector.load_with_record(model)
    assert detector.layout.name == "300w" and record["metrics"]["augment"] is True
    code, out = run(["evaluate", str(model), "--data", "folder", "--root", str(root), "--flip", "--device", "cpu"])
    assert code == 0 and "images: 20" in out and "test-time flip" in out
    # a folder with train/ and test/ inside uses them; --layout declares a layout by its point count
    split = tmp_path / "split"
    _write_folder(split / "train", 8, seed=6)
    _write_folder(split / "test", 3, seed=7)
    code, out = run(["train", "--data", "folder", "--root", str(split), "--layout", "68", "--no-augment",
                     "--image-size", "64", "--width", "0.25", "--epochs", "1", "--batch-size", "4", "--device", "cpu",
                     "--quiet", "--output", str(tmp_path / "split.pt")])
    assert code == 0 and "on 8 faces of the folder" in out and "images: 3" in out and "augmented" not in out


def test_predict_finds_the_face_of_a_photo_off_centre(trained, tmp_path, capsys):
    from importlib import resources

    photo = cv2.imread(str(resources.files("landmarks") / "assets" / "photos" / "astronaut.jpg"))
    canvas = np.full((600, 1000, 3), 90, np.uint8)
    canvas[44:556, 440:952] = photo
    path = tmp_path / "photo.jpg"
    cv2.imwrite(str(path), canvas)
    code, out = run(["predict", str(trained[0]), str(path), "--device", "cpu", "--output", str(tmp_path / "d.png")])
    assert code == 0
    header, *lines = out.strip().splitlines()
    assert header.startswith("# face 1 of 1: box ") and len(lines) == 68
    box = np.array([float(v) for v in header.split("box ")[1].split()])
    assert 600 < box[0] < 640 and 700 < box[2] < 740  # the face, right of centre (at about x 615-710)
    points = points_of("\n".join(lines))
    crop = Detector.load(trained[0]).crop_boxes(box)[0]  # the crop convention of its synthetic training crops
    assert 1.6 < (crop[2] - crop[0]) / (box[2] - box[0]) < 2.4
    assert ((points >= crop[:2] - 1e-3) & (points <= crop[2:] + 1e-3)).all()  # inside the crop around the face
    blank = tmp_path / "blank.png"
    cv2.imwrite(str(blank), np.full((120, 160, 3), 128, np.uint8))
    assert "no face found" in fails(["predict", str(trained[0]), str(blank)], capsys)
    assert "either --box or --whole-image" in fails(["predict", str(trained[0]), str(blank), "--whole-image",
                                                     "--box", "1", "2", "30", "40"], capsys)


# ------------------------------------------------------------------------------------ failures (issue 16)
@pytest.mark.parametrize("options, message", [
    (["--device", "banana"], "--device banana: not a torch device"),
    (["--epochs", "0"], "--epochs 0: it must be at least 1"),
    (["--train-size", "0"], "--train-size 0: it must be at least 1"),
    (["--batch-size", "0"], "--batch-size 0: it must be at least 1"),
    (["--val-size", "-1"], "--val-size -1: it must be 0"),
    (["--lr", "-1"], "--lr -1: it must be a positive number"),
])
def test_bad_training_options_exit_2_in_one_line_before_any_work(options, message, tmp_path, capsys):
    output = tmp_path / "never.pt"
    assert message in fails(["train", *TINY, *options, "--output", str(output)], capsys)
    assert not output.exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="this machine has a GPU")
def test_cuda_without_a_gpu_is_a_usage_error(tmp_path, capsys):
    assert "no CUDA GPU is available" in fails(["train", *TINY, "--device", "cuda"], capsys)
    assert "no CUDA GPU" in fails(["evaluate", str(tmp_path / "m.pt"), "--device", "cuda:1"], capsys)


def test_outputs_and_checkpoint_folders_are_checked_before_training(trained, face_png, tmp_path, capsys):
    model, image = str(trained[0]), str(face_png[0])
    a_file = tmp_path / "a_file"
    a_file.write_text("taken")
    assert "--checkpoint-dir" in fails(["train", *TINY, "--checkpoint-dir", str(a_file)], capsys)
    assert "the folder" in fails(["train", *TINY, "--output", str(tmp_path / "missing" / "m.pt")], capsys)
    assert "not a regular file" in fails(["train", *TINY, "--output", "/dev/null"], capsys)
    assert "a folder" in fails(["train", *TINY, "--output", str(tmp_path)], capsys)
    assert "--json" in fails(["evaluate", model, "--json", str(tmp_path / "no" / "r.json")], capsys)
    assert "--output" in fails(["predict", model, image, "--whole-image", "--output", str(tmp_path / "no" / "d.png")],
                               capsys)
    assert a_file.read_text() == "taken"


def test_predict_refuses_a_box_outside_the_image_and_a_one_pixel_image(trained, face_png, tmp_path, capsys):
    model, image = str(trained[0]), str(face_png[0])
    assert "outside the image of 128 x 96" in fails(["predict", model, image, "--box", "500", "500", "600", "600"],
                                                   capsys)
    tiny = tmp_path / "tiny.png"
    cv2.imwrite(str(tiny), np.zeros((1, 1, 3), np.uint8))
    assert "at least 8" in fails(["predict", model, str(tiny), "--whole-image"], capsys)


def test_a_model_whose_head_record_does_not_fit_its_weights_exits_2(trained, face_png, tmp_path, capsys):
    state = torch.load(trained[0], weights_only=True)
    state["config"]["detector"]["codec"] = {"task": "landmarks.codecs.tasks:HeatmapTask", "fields": {"net_stride": 4}}
    torch.save(state, tmp_path / "mixed.pt")
    assert "mixed.pt: the stored decoder HeatmapTask" in fails(
        ["predict", str(tmp_path / "mixed.pt"), str(face_png[0]), "--whole-image"], capsys)


def test_binary_junk_named_pts_names_the_file(tmp_path, capsys):
    root = _write_folder(tmp_path / "faces", 4)
    (root / "face_01.pts").write_bytes(bytes(range(256)))
    assert "face_01.pts: not a text .pts file" in fails(["train", *TINY, "--data", "folder", "--root", str(root)],
                                                        capsys)


def test_a_truncated_photo_is_an_error_naming_it(trained, tmp_path, capsys):
    rgb = np.round(SyntheticFaces("studio", 128, 1, 3)[0]["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    whole = tmp_path / "whole.jpg"
    cv2.imwrite(str(whole), rgb)
    cut = tmp_path / "cut.jpg"
    cut.write_bytes(whole.read_bytes()[: whole.stat().st_size // 3])
    assert "cut.jpg: truncated JPEG" in fails(["predict", str(trained[0]), str(cut), "--whole-image"], capsys)


def test_a_closed_pipe_ends_predict_quietly(trained, face_png):
    """``predict ... | head``: the reader leaves; no BrokenPipeError traceback."""
    process = subprocess.Popen([sys.executable, "-m", "landmarks", "predict", str(trained[0]), str(face_png[0]),
                                "--whole-image", "--device", "cpu"], stdout=subprocess.PIPE, stderr=subprocess.PIPE)
    process.stdout.close()  # before the interpreter has even started: every write meets a closed pipe
    err = process.stderr.read().decode()
    process.wait(timeout=120)
    assert err == "" and process.returncode == 1


def test_a_diverging_run_exits_2_naming_epoch_and_step_and_keeps_its_checkpoint(tmp_path, capsys):
    checkpoints = tmp_path / "run"
    options = [*TINY, "--train-size", "32", "--batch-size", "4", "--checkpoint-dir", str(checkpoints)]
    code, _ = run(["train", *options, "--output", str(tmp_path / "good.pt")])
    assert code == 0
    before = (checkpoints / "last.pt").read_bytes()
    message = fails(["train", *options, "--epochs", "2", "--lr", "1e6", "--output", str(tmp_path / "bad.pt")], capsys)
    assert "cannot resume" in message and "lr" in message  # another rate is another run ...
    message = fails(["train", *options, "--epochs", "2", "--lr", "1e6", "--checkpoint-dir", str(tmp_path / "fresh"),
                     "--output", str(tmp_path / "bad.pt")], capsys)
    assert re.search(r"diverged in epoch 1, step \d+ of 8", message) and "lower learning rate" in message
    assert not (tmp_path / "bad.pt").exists() and (checkpoints / "last.pt").read_bytes() == before


def test_resume_on_other_data_or_with_fewer_epochs_is_refused_in_one_short_line(tmp_path, capsys):
    checkpoints = ["--checkpoint-dir", str(tmp_path / "run"), "--head", "heatmap", "--net-stride", "4"]
    options = [*TINY, "--epochs", "2", *checkpoints]
    code, _ = run(["train", *options, "--output", str(tmp_path / "m.pt")])
    assert code == 0
    message = fails(["train", *options, "--domain", "wild", "--output", str(tmp_path / "w.pt")], capsys)
    assert "data.domain: stored 'studio', now 'wild'" in message and len(message) < 300
    message = fails(["train", *options, "--train-size", "12", "--output", str(tmp_path / "w.pt")], capsys)
    assert "data.size: stored 16, now 12" in message and len(message) < 300
    message = fails(["train", *TINY, "--epochs", "1", *checkpoints, "--output", str(tmp_path / "w.pt")], capsys)
    assert "holds 2 finished epochs, more than epochs=1" in message
    assert not (tmp_path / "w.pt").exists()


def test_the_full_profile_on_a_cpu_says_it_is_meant_for_a_gpu(monkeypatch, tmp_path, capsys):
    monkeypatch.setenv("LANDMARKS_PROFILE", "full")
    code, _ = run(["train", *TINY, "--num-workers", "0", "--output", str(tmp_path / "m.pt")])
    assert code == 0
    assert "is meant for a GPU" in capsys.readouterr().err


def test_predict_cuts_the_crop_the_model_was_trained_on_around_a_tight_box(trained, tmp_path):
    """A synthetic face placed in a larger photo: its landmark box (what the face detector gives) is
    cut with the model's crop convention, so the points equal those of the training-style crop."""
    detector = Detector.load(trained[0])
    face = SyntheticFaces("studio", 64, 1, 11)[0]
    rgb = np.full((200, 240, 3), 100, np.uint8)
    rgb[60:124, 90:154] = np.round(face["image"].permute(1, 2, 0).numpy() * 255).astype(np.uint8)
    path = tmp_path / "scene.png"
    cv2.imwrite(str(path), cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR))
    low, high = face["landmarks"].double().numpy().min(0), face["landmarks"].double().numpy().max(0)
    box = [90 + low[0], 60 + low[1], 90 + high[0], 60 + high[1]]
    code, out = run(["predict", str(trained[0]), str(path), "--box", *map(str, box), "--device", "cpu"])
    assert code == 0
    crop = detector.crop_boxes(np.array(box))[0]
    np.testing.assert_allclose(points_of(out), expected_points(trained[0], rgb, crop), atol=1e-3)


def test_ctrl_c_says_where_the_run_resumes_from(tmp_path, monkeypatch, capsys):
    checkpoints = tmp_path / "run"
    code, _ = run(["train", *TINY, "--checkpoint-dir", str(checkpoints), "--output", str(tmp_path / "m.pt")])
    assert code == 0

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr("landmarks.training.loop.train_spec", interrupted)
    code, _ = run(["train", *TINY, "--epochs", "2", "--checkpoint-dir", str(checkpoints), "--output",
                   str(tmp_path / "m.pt")])
    err = capsys.readouterr().err
    assert code == 130 and "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert "interrupted" in err and "last.pt holds the last finished epoch: run the same command to resume" in err
