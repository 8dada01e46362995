"""fit() under torchrun: two CPU processes (gloo) end with the same model, and only rank 0 writes."""
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import torch.distributed as dist

from landmarks.training import checkpoints
from landmarks.training.loop import CHECKPOINT_NAME

SCRIPT = Path(__file__).with_name("toy_training.py")


@pytest.mark.skipif(not (dist.is_available() and dist.is_gloo_available()), reason="needs torch.distributed (gloo)")
def test_two_processes_end_with_equal_weights(tmp_path):
    env = {key: value for key, value in os.environ.items()
           if key not in ("RANK", "WORLD_SIZE", "LOCAL_RANK", "MASTER_ADDR", "MASTER_PORT")}
    env.update(OMP_NUM_THREADS="1", CUDA_VISIBLE_DEVICES="", LANDMARKS_PROFILE="quick")
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
               str(SCRIPT), "--out", str(tmp_path), "--epochs", "3"]
    finished = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
    assert finished.returncode == 0, finished.stdout[-3000:] + finished.stderr[-3000:]

    ranks = [torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in (0, 1)]
    assert [r["world_size"] for r in ranks] == ["2", "2"]
    # Each rank started from different random weights; DDP must make (and keep) them equal,
    # batch-norm running statistics included.
    for key, value in ranks[0]["state"].items():
        assert torch.equal(value, ranks[1]["state"][key]), key
    assert ranks[0]["history"] == ranks[1]["history"]  # losses averaged over ranks, metrics shared

    records = ranks[0]["history"]["records"]
    assert len(records) == 3 and records[-1]["loss_total"] < records[0]["loss_total"]
    assert all(r["images_per_s"] * r["seconds"] == pytest.approx(64, rel=1e-6) for r in records)  # both shards
    assert "val_nme" in records[-1]  # validated on rank 0, shared with rank 1

    # Only rank 0 wrote the checkpoint: one file, holding the final weights and world size 2.
    assert sorted(p.name for p in (tmp_path / "run").iterdir()) == [CHECKPOINT_NAME]
    state = checkpoints.load_checkpoint(tmp_path / "run" / CHECKPOINT_NAME, kind="training")
    assert state["config"]["world_size"] == 2 and state["epoch"] == 3
    for key, value in state["model"].items():
        assert torch.equal(value, ranks[0]["state"][key]), key
