"""The trainer under ``torchrun`` with 2 CPU processes (gloo)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import torch

import foveal
from foveal.io import read_jsonl


def test_torchrun_two_processes_trains_and_writes_the_usual_checkpoint(tmp_path: Path) -> None:
    out = tmp_path / "ddp"
    cmd = [
        sys.executable, "-m", "torch.distributed.run", "--nproc_per_node=2", "--standalone",
        "-m", "foveal", "train", "--n-train", "200", "--n-test", "64", "--width", "4",
        "--batch-size", "25", "--epochs", "2", "--lr", "0.005", "--out", str(out),
    ]  # fmt: skip
    env = dict(os.environ, OMP_NUM_THREADS="1")
    done = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]
    # Rank 0 alone logs: one record per epoch, each with the held-out accuracy.
    records = read_jsonl(out / "metrics.jsonl")
    assert [r["epoch"] for r in records] == [1, 2]
    assert all("test_acc" in r for r in records)
    assert records[1]["loss"] < records[0]["loss"] + 0.5
    model = foveal.models.load(out)
    meta = foveal.models.read_meta(out)
    assert meta["epochs_done"] == 2 and meta["arch"] == "shapes-cnn"
    x = foveal.data.load("shapes", split="test", n=8).images
    assert torch.isfinite(model(x)).all()
    # Each process took 100 images per epoch: 4 steps of 25.
    assert (out / "train_state.safetensors").exists()
