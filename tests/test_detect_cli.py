"""``foveal detect train | eval | matrix`` on a tiny digits checkpoint."""

from __future__ import annotations

import json

import pytest
import torch
from typer.testing import CliRunner

import foveal
from foveal.app.cli import app


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory) -> str:
    """A briefly trained mnist-cnn on 300 digits (enough for the attacks to succeed)."""
    torch.manual_seed(0)
    full = foveal.data.load("digits", split="train")  # stored sorted by class: take a subset
    data = full.subset(torch.randperm(len(full), generator=torch.Generator().manual_seed(0))[:300])
    model = foveal.models.create("mnist-cnn", num_classes=10, in_channels=1)
    opt = torch.optim.Adam(model.parameters(), lr=2e-3)
    model.train()
    for _ in range(3):
        for i in range(0, 300, 50):
            loss = torch.nn.functional.cross_entropy(
                model(data.images[i : i + 50]), data.labels[i : i + 50]
            )
            opt.zero_grad()
            loss.backward()
            opt.step()
    model.eval()
    path = tmp_path_factory.mktemp("ckpt") / "digits"
    foveal.models.save(model, path, {"arch": "mnist-cnn", "num_classes": 10, "in_channels": 1,
                                     "arch_kwargs": {"input_size": 28}})  # fmt: skip
    return str(path)


def test_train_then_eval(checkpoint: str, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "spd"
    res = runner.invoke(app, ["detect", "train", "--model", checkpoint, "--data", "digits",
                              "--detector", "spd", "--attack", "fgsm", "--n", "60",
                              "--n-calib", "40", "--fpr", "0.1", "--mask-steps", "3",
                              "--width", "0.25", "--epochs", "2", "--no-progress",
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    desc = json.loads((out / "detector.json").read_text())
    assert desc["detector"] == "spd" and desc["meta"]["attack"] == "fgsm"
    assert desc["calibration"] == {"fpr": 0.1, "n": 40}
    assert 0.0 <= desc["meta"]["attack_success"] <= 1.0
    res = runner.invoke(app, ["detect", "eval", "--detector", str(out), "--model", checkpoint,
                              "--data", "digits", "--attack", "fgsm,bim", "--n", "30",
                              "--no-progress", "--out", str(tmp_path / "eval")])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((tmp_path / "eval" / "eval.json").read_text())
    assert [r["attack"] for r in record["rows"]] == ["fgsm", "bim"]
    for r in record["rows"]:
        assert r["accuracy"] == pytest.approx(0.5 * (r["tpr"] + 1 - r["fpr"]))
    assert "| fgsm |" in res.output
    # An unsupervised detector trains from clean images alone.
    args = ["detect", "train", "--model", checkpoint, "--detector", "squeeze", "--n", "30"]
    res = runner.invoke(app, [*args, "--no-progress", "--out", str(tmp_path / "sq")])
    assert res.exit_code == 0, res.output


def test_matrix_writes_table_and_heatmap(checkpoint: str, tmp_path) -> None:
    runner = CliRunner()
    out = tmp_path / "matrix"
    res = runner.invoke(app, ["detect", "matrix", "--model", checkpoint, "--data", "digits",
                              "--detectors", "id,smd", "--attacks", "fgsm,deepfool",
                              "--n-train", "40", "--n-test", "20", "--mask-steps", "2",
                              "--width", "0.25", "--epochs", "1", "--no-progress",
                              "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((out / "matrix.json").read_text())
    assert record["detectors"] == ["id", "smd"] and record["attacks"] == ["fgsm", "deepfool"]
    assert set(record["results"]["smd"]["deepfool"]) == {"fgsm", "deepfool"}
    assert record["meta"]["attacks"]["fgsm"]["eps"] == pytest.approx(0.2)
    assert "**SMD**" in (out / "matrix.md").read_text()
    assert (out / "matrix.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_cli_errors(checkpoint: str, tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["detect", "train", "--model", checkpoint, "--detector", "spdd",
                              "--n", "4", "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 2 and "did you mean" in res.output
    res = runner.invoke(app, ["detect", "eval", "--detector", str(tmp_path), "--model", checkpoint])
    assert res.exit_code == 2 and "no detector" in res.output
    res = runner.invoke(app, ["detect", "matrix", "--model", str(tmp_path)])
    assert res.exit_code == 2 and "no foveal checkpoint" in res.output
    res = runner.invoke(app, ["detect", "matrix", "--model", checkpoint, "--attacks", "fgsn",
                              "--detectors", "id", "--n-train", "4", "--n-test", "4",
                              "--out", str(tmp_path / "m")])  # fmt: skip
    assert res.exit_code == 2 and "did you mean 'fgsm'" in res.output
