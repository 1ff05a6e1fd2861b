"""``foveal saliency`` (maps, train-mask) and ``foveal explain`` on a tiny checkpoint."""

from __future__ import annotations

import json
from pathlib import Path

from safetensors.torch import load_file
from typer.testing import CliRunner

from foveal.app.cli import app


def test_maps_shortcut_and_subcommand(checkpoint: Path, tmp_path) -> None:
    runner = CliRunner()
    for args in (
        ["saliency", "--model", str(checkpoint), "--data", "shapes", "--method", "gradcam"],
        ["saliency", "maps", "--model", str(checkpoint), "--method", "gradient"],
    ):
        out = tmp_path / args[1]
        res = runner.invoke(app, [*args, "--n", "4", "--out", str(out)])
        assert res.exit_code == 0, res.output
        tensors = load_file(str(out / "maps.safetensors"))
        assert tensors["maps"].shape == (4, 1, 32, 32)
        assert float(tensors["maps"].min()) >= 0
        assert set(tensors["masks"].unique().tolist()) <= {0.0, 1.0}
        assert (out / "grid.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert json.loads((out / "maps.json").read_text())["n"] == 4


def test_cli_errors(checkpoint: Path, tmp_path) -> None:
    runner = CliRunner()
    res = runner.invoke(app, ["saliency", "maps", "--model", str(checkpoint),
                              "--method", "gradcamm", "--out", str(tmp_path)])  # fmt: skip
    assert res.exit_code == 2 and "did you mean" in res.output
    res = runner.invoke(app, ["saliency", "maps", "--model", str(tmp_path), "--out", str(tmp_path)])
    assert res.exit_code == 2 and "no foveal checkpoint" in res.output
    res = runner.invoke(app, ["explain", "--model", str(checkpoint), "--methods", "learned",
                              "--n", "4", "--n-tune", "4"])  # fmt: skip
    assert res.exit_code == 2 and "needs --masker" in res.output


def test_train_mask_then_explain(checkpoint: Path, tmp_path) -> None:
    runner = CliRunner()
    masker = tmp_path / "masker"
    res = runner.invoke(app, ["saliency", "train-mask", "--model", str(checkpoint), "--n", "32",
                              "--steps", "2", "--batch-size", "16", "--width", "4",
                              "--n-eval", "8", "--no-progress", "--out", str(masker)])  # fmt: skip
    assert res.exit_code == 0, res.output
    assert "centred blob" in res.output
    desc = json.loads((masker / "masker.json").read_text())
    assert desc["meta"]["classifier_arch"] == "shapes-cnn"
    out = tmp_path / "explain"
    res = runner.invoke(app, ["explain", "--model", str(checkpoint), "--methods",
                              "gradcam,center,learned", "--masker", str(masker), "--n", "12",
                              "--n-tune", "12", "--out", str(out)])  # fmt: skip
    assert res.exit_code == 0, res.output
    record = json.loads((out / "explain.json").read_text())
    assert [r["method"] for r in record["rows"]] == ["gradcam", "center", "learned"]
    for row in record["rows"]:
        for rule in ("value", "percent", "mean"):
            assert 0.0 <= row[rule] <= 1.0
        assert 0.0 <= row["pointing"] <= 1.0
    assert "| gradcam |" in (out / "explain.md").read_text()
