"""``foveal attack``: outputs, per-region norms, threat builders and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors import safe_open
from safetensors.torch import load_file
from typer.testing import CliRunner

import foveal
from foveal.app.cli import app

runner = CliRunner()
DATA = ["--data", "shapes", "--n", "12", "--size", "16", "--batch-size", "5"]


pytestmark = pytest.mark.usefixtures("single_thread")


def _run(checkpoint: Path, out: Path, *args: str):
    return runner.invoke(app, ["attack", "--model", str(checkpoint), "--out", str(out), *DATA,
                               *args])  # fmt: skip


def test_pgd_linf_writes_images_and_summary(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "pgd"
    result = _run(checkpoint, out, "--attack", "pgd", "--norm", "linf", "--eps", "8/255",
                  "--steps", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    assert "robust accuracy" in result.output
    summary = json.loads((out / "summary.json").read_text())
    tensors = load_file(str(out / "adversarial.safetensors"))
    data = foveal.data.load("shapes", split="test", n=12, size=16)
    adv = tensors["adversarial"]
    assert adv.shape == (12, 3, 16, 16) and adv.dtype == torch.float32
    assert float((adv - data.images).abs().max()) <= 8 / 255 + 1e-6
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    assert torch.equal(tensors["labels"], data.labels)
    robust = float((tensors["predictions"] == tensors["labels"]).float().mean())
    clean = float((tensors["clean_predictions"] == tensors["labels"]).float().mean())
    assert summary["robust_accuracy"] == pytest.approx(robust)
    assert summary["clean_accuracy"] == pytest.approx(clean)
    assert summary["success_rate"] == pytest.approx(float(tensors["success"].float().mean()))
    assert summary["attack"]["attack"] == "pgd" and summary["attack"]["steps"] == 3
    assert 0 < summary["norms"]["image"]["max"] <= 8 / 255 + 1e-6
    with safe_open(str(out / "adversarial.safetensors"), framework="pt") as fh:
        assert json.loads(fh.metadata()["foveal"])["data"]["n"] == 12


def test_dual_threat_reports_per_region_norms(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "dual"
    result = _run(checkpoint, out, "--attack", "pgd", "--threat", "dual", "--eps-fg", "2/255",
                  "--eps-bg", "16/255", "--steps", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    norms = json.loads((out / "summary.json").read_text())["norms"]
    assert set(norms) == {"foreground", "background"}
    assert 0 < norms["foreground"]["max"] <= 2 / 255 + 1e-6
    assert 2 / 255 < norms["background"]["max"] <= 16 / 255 + 1e-6


def test_frozen_threat_keeps_the_object(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "frozen"
    result = _run(checkpoint, out, "--attack", "bim", "--threat", "frozen", "--norm", "l2",
                  "--eps", "0.5", "--steps", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    adv = load_file(str(out / "adversarial.safetensors"))["adversarial"]
    data = foveal.data.load("shapes", split="test", n=12, size=16)
    mask = data.masks.expand_as(adv).bool()
    assert torch.equal(adv[mask], data.images[mask])
    assert float((adv - data.images)[~mask].abs().max()) > 0


def test_extra_attack_parameters_and_targeting(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "mim"
    result = _run(checkpoint, out, "--attack", "mim", "-p", "mu=0.5", "--steps", "2",
                  "--target-offset", "3")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack"]["mu"] == 0.5 and summary["targeted"] is True
    tensors = load_file(str(out / "adversarial.safetensors"))
    hit = tensors["predictions"] == (tensors["labels"] + 3) % 10
    assert torch.equal(tensors["success"].bool(), hit)


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--eps", "-1"], "eps must be a finite number >= 0; got -1"),
        (["--eps", "eight"], "--eps must be a number or a fraction like 8/255; got 'eight'"),
        (["--norm", "l7"], "--norm must be 'linf' or 'l2'; got 'l7'"),
        (["--attack", "pgdd"], "unknown attack 'pgdd'; did you mean 'pgd'"),
        (["--attack", "fgsm", "--steps", "3"], "attack 'fgsm' does not take --steps"),
        (["-p", "gamma=2"], "attack 'pgd' does not take --gamma"),
        (["-p", "gamma"], "--param must look like KEY=VALUE; got 'gamma'"),
        (["--threat", "dual"], "threat 'dual' needs eps_fg and eps_bg"),
        (["--threat", "cone"], "unknown threat 'cone'"),
    ],
)
def test_bad_options_fail_with_a_clear_message(
    checkpoint: Path, tmp_path: Path, args: list[str], message: str
) -> None:
    result = _run(checkpoint, tmp_path / "bad", *args)
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert not (tmp_path / "bad" / "summary.json").exists()


def test_missing_checkpoint(tmp_path: Path) -> None:
    result = _run(tmp_path / "nothing", tmp_path / "o")
    assert result.exit_code == 2 and "no foveal checkpoint" in result.output
