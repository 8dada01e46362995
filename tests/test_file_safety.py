"""Files that are not what they should be: checkpoint targets that are not regular files, writes
killed half-way, configuration differences too big to print, ImageNet weights with a wrong hash or
with code in them, and binary bytes under an annotation file's name."""
import hashlib
import os
import signal
import stat
import subprocess
import sys
import textwrap
from pathlib import Path

import cv2
import numpy as np
import pytest
import torch
import torchvision

from landmarks.data.formats import read_pts, read_wflw_list
from landmarks.models.backbones import ResNetBackbone
from landmarks.training import checkpoints
from landmarks.training.checkpoints import (atomic_save, config_differences, describe_differences,
                                            remove_stale_temporaries)


def temporaries(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.endswith(".tmp"))


# --------------------------------------------------------------------------- atomic_save targets
def test_dev_null_is_never_replaced(monkeypatch):
    real_replace = os.replace

    def guarded(source, destination):  # should a regression get this far, /dev/null still survives
        if os.path.abspath(destination) == "/dev/null":
            raise AssertionError("atomic_save tried to rename a file over /dev/null")
        return real_replace(source, destination)

    monkeypatch.setattr(checkpoints.os, "replace", guarded)
    with pytest.raises(ValueError, match="^/dev/null: not a regular file; refusing to replace it"):
        atomic_save({"a": 1}, "/dev/null")
    assert os.path.exists("/dev/null") and stat.S_ISCHR(os.stat("/dev/null").st_mode)
    assert not [name for name in os.listdir("/dev") if name.startswith(".null.")]


def test_a_folder_or_a_fifo_at_the_path_is_refused_and_kept(tmp_path):
    folder = tmp_path / "last.pt"
    folder.mkdir()
    (folder / "inside").write_text("kept")
    with pytest.raises(ValueError, match="last.pt: not a regular file"):
        atomic_save({"a": 1}, folder)
    assert (folder / "inside").read_text() == "kept"
    fifo = tmp_path / "pipe.pt"
    os.mkfifo(fifo)
    with pytest.raises(ValueError, match="pipe.pt: not a regular file"):
        atomic_save({"a": 1}, fifo)
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert temporaries(tmp_path) == []


def test_a_parent_that_is_a_file_is_named(tmp_path):
    (tmp_path / "runs").write_text("not a folder")
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'runs'}: not a folder; cannot save the checkpoint"):
        atomic_save({"a": 1}, tmp_path / "runs" / "a" / "last.pt")
    assert (tmp_path / "runs").read_text() == "not a folder"


def test_a_symlink_is_followed_and_kept(tmp_path):
    target, link = tmp_path / "real.pt", tmp_path / "link.pt"
    atomic_save({"epoch": 1}, target)
    link.symlink_to(target)
    assert atomic_save({"epoch": 2}, link) == link
    assert link.is_symlink() and torch.load(target, weights_only=True) == {"epoch": 2}
    assert temporaries(tmp_path) == []


# --------------------------------------------------------------------------- interrupted writes
def test_stale_temporaries_of_dead_writers_are_removed(tmp_path):
    dead = subprocess.Popen(["sleep", "0"])
    dead.wait()
    alive = subprocess.Popen(["sleep", "30"])
    try:
        path = tmp_path / "last.pt"
        stale = tmp_path / f".last.pt.{dead.pid}.tmp"
        live = tmp_path / f".last.pt.{alive.pid}.tmp"
        other = tmp_path / f".other.pt.{dead.pid}.tmp"
        for file in (stale, live, other):
            file.write_bytes(b"half a checkpoint")
        assert remove_stale_temporaries(path) == [stale]
        stale.write_bytes(b"half a checkpoint")
        atomic_save({"epoch": 1}, path)
        assert temporaries(tmp_path) == sorted([live.name, other.name])
        assert torch.load(path, weights_only=True) == {"epoch": 1}
    finally:
        alive.kill()
        alive.wait()


WRITER = textwrap.dedent("""
    import sys, time
    import torch
    from landmarks.training.checkpoints import atomic_save

    class Slow:
        def __reduce__(self):  # called while torch.save pickles, with the temporary file open
            print("writing", flush=True)
            time.sleep(60)
            return (int, (0,))

    atomic_save({"epoch": 1}, sys.argv[1])
    atomic_save({"epoch": 2, "weights": torch.zeros(100_000), "slow": Slow()}, sys.argv[1])
""")


def test_sigterm_during_a_save_leaves_the_old_file_and_no_temporary(tmp_path):
    path = tmp_path / "last.pt"
    writer = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, text=True,
                              env={**os.environ, "OMP_NUM_THREADS": "1"})
    try:
        assert writer.stdout.readline().strip() == "writing"
        assert temporaries(tmp_path) == [f".last.pt.{writer.pid}.tmp"]  # the write is under way
        writer.send_signal(signal.SIGTERM)
        assert writer.wait(timeout=60) == -signal.SIGTERM  # still terminated by the signal
    finally:
        writer.kill()
        writer.wait()
    assert temporaries(tmp_path) == []
    assert torch.load(path, weights_only=True) == {"epoch": 1}


# --------------------------------------------------------------------------- config differences
def run_config(neighbours, domain):
    return {"lr": 0.001, "epochs": 3, "data": {"domain": domain, "size": 64},
            "user": {"detector": {"task": {"kind": "pip", "fields": {"neighbours": neighbours, "k": 10}}}}}


def test_a_refusal_names_the_nested_paths_in_one_short_line():
    table = np.arange(680).reshape(68, 10)
    stored, current = run_config(table.tolist(), "studio"), run_config((table[::-1]).tolist(), "wild")
    differences = config_differences(stored, current, ignore=("epochs",))
    assert list(differences) == ["data.domain", "user.detector.task.fields.neighbours"]
    assert differences["data.domain"] == ("studio", "wild")
    message = describe_differences(differences)
    assert message == ("data.domain: stored 'studio', now 'wild'; user.detector.task.fields.neighbours: "
                       "stored a list of 68 items, now a list of 68 items")
    assert len(message) < 200


def test_ignore_missing_keys_and_many_differences():
    stored = {"epochs": 3, "data": {"domain": "a"}, **{f"k{i}": i for i in range(7)}}
    current = {"epochs": 4, "data": {}, **{f"k{i}": i + 1 for i in range(7)}}
    differences = config_differences(stored, current, ignore=("epochs", "k6"))
    assert differences == {"data.domain": ("a", None), **{f"k{i}": (i, i + 1) for i in range(6)}}
    assert describe_differences(differences) == ("data.domain: stored 'a', now None; k0: stored 0, now 1; "
                                                 "k1: stored 1, now 2; k2: stored 2, now 3; k3: stored 3, now 4; "
                                                 "and 2 more")
    assert config_differences({"data": {"x": 1}}, {"data": {"x": 1}}) == {}
    long = "x" * 41
    assert describe_differences({"a": ({"p": 1, "q": 2, "r": long}, long)}) == (
        "a: stored a dict of 3 keys, now a string of 41 characters")


# --------------------------------------------------------------------------- ImageNet weights
RESNET18_URL = torchvision.models.ResNet18_Weights.IMAGENET1K_V1.url


@pytest.fixture
def hub(tmp_path, monkeypatch):
    """An empty torch hub cache in ``tmp_path``; any download fails the test."""
    def refuse(*args, **kwargs):
        raise AssertionError("tried to download weights")

    monkeypatch.setattr(torch.hub, "_hub_dir", str(tmp_path))
    monkeypatch.setattr(torch.hub, "download_url_to_file", refuse)
    (tmp_path / "checkpoints").mkdir()
    return tmp_path / "checkpoints"


def serve_as_resnet18(monkeypatch, hub: Path, content: bytes) -> Path:
    """Put ``content`` in the cache under a name carrying its true hash, and point ResNet-18's url at it."""
    path = hub / f"resnet18-{hashlib.sha256(content).hexdigest()[:8]}.pth"
    path.write_bytes(content)
    monkeypatch.setattr(torchvision.models.ResNet18_Weights, "url",
                        property(lambda self: f"https://download.pytorch.org/models/{path.name}"))
    return path


def test_a_cached_imagenet_file_whose_hash_differs_from_its_name_is_refused(hub, monkeypatch):
    assert RESNET18_URL.endswith("/resnet18-f37072fd.pth")
    source = torchvision.models.resnet18()
    torch.save(source.state_dict(), hub / "resnet18-f37072fd.pth")  # random weights, not ImageNet's
    with pytest.raises(ValueError, match=r"resnet18-f37072fd.pth: SHA-256 \w+\.\.\. does not start with 'f37072fd'"):
        ResNetBackbone(18, pretrained=True)
    # the same bytes under a name with their own hash load, weights-only
    buffer = (hub / "resnet18-f37072fd.pth").read_bytes()
    serve_as_resnet18(monkeypatch, hub, buffer)
    backbone = ResNetBackbone(18, pretrained=True)
    assert torch.equal(backbone.layer2[0].conv1.weight, source.layer2[0].conv1.weight)


class _Payload:
    """Unpickling this runs ``open(marker, "w")``: a file that holds code."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (open, (str(self.marker), "w"))


def test_imagenet_weights_that_would_run_code_are_refused(hub, monkeypatch, tmp_path):
    import io
    marker = tmp_path / "code-ran"
    buffer = io.BytesIO()
    torch.save({"conv1.weight": _Payload(marker)}, buffer)
    path = serve_as_resnet18(monkeypatch, hub, buffer.getvalue())
    with pytest.raises(ValueError, match=rf"{path.name}: not a weights-only state dict, refusing to load it "
                                         r"\(Unsupported global"):
        ResNetBackbone(18, pretrained=True)
    assert not marker.exists()


# --------------------------------------------------------------------------- binary annotation files
def png_bytes() -> bytes:
    ok, encoded = cv2.imencode(".png", np.zeros((8, 8, 3), np.uint8))
    assert ok
    return encoded.tobytes()


@pytest.mark.parametrize("content", [np.random.default_rng(0).bytes(300), png_bytes()], ids=["random", "png"])
def test_binary_bytes_under_an_annotation_name_are_named_not_text(tmp_path, content):
    (tmp_path / "face.pts").write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'face.pts'}: not a text \.pts file"):
        read_pts(tmp_path / "face.pts")
    (tmp_path / "list.txt").write_bytes(content)
    with pytest.raises(ValueError, match=rf"^{tmp_path / 'list.txt'}: not a text WFLW list file"):
        read_wflw_list(tmp_path / "list.txt")


def test_an_interruption_inside_torch_save_stays_an_interruption(tmp_path, monkeypatch):
    """Ctrl-C inside ``torch.save``: torch's zip writer raises a RuntimeError of its own on the way
    out (``unexpected pos 118464 vs 118360``, seen from the command line); the caller still gets the
    KeyboardInterrupt, the old file and no temporary."""
    path = tmp_path / "last.pt"
    atomic_save({"epoch": 1}, path)

    def interrupted_save(obj, handle):  # what torch.save does when Ctrl-C lands in write_record
        handle.write(b"half a record")
        try:
            raise KeyboardInterrupt
        finally:
            raise RuntimeError("[enforce fail at inline_container.cc:672] . unexpected pos 118464 vs 118360")

    monkeypatch.setattr(torch, "save", interrupted_save)
    with pytest.raises(KeyboardInterrupt):
        atomic_save({"epoch": 2}, path)
    monkeypatch.undo()
    assert torch.load(path, weights_only=True) == {"epoch": 1} and temporaries(tmp_path) == []
