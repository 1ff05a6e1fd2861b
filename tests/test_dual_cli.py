"""``foveal attack`` with the saliency-guided attacks: options, grid.png and clear errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from PIL import Image
from safetensors.torch import load_file
from typer.testing import CliRunner

import foveal
from foveal.app.cli import app

runner = CliRunner()
DATA = ["--data", "shapes", "--n", "6", "--size", "16", "--batch-size", "6"]


pytestmark = pytest.mark.usefixtures("single_thread")


def _run(checkpoint: Path, out: Path, *args: str):
    return runner.invoke(app, ["attack", "--model", str(checkpoint), "--out", str(out), *DATA,
                               *args])  # fmt: skip


def _grid(out: Path) -> tuple[int, int]:
    with Image.open(out / "grid.png") as im:
        return im.size


def test_dual_attack_with_its_own_options(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "dual"
    result = _run(checkpoint, out, "--attack", "dual", "--eps-fg", "2/255", "--eps-bg", "16/255",
                  "--lam", "1", "--steps", "2")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack"]["eps_fg"] == pytest.approx(2 / 255)
    assert summary["attack"]["lam"] == 1.0
    assert set(summary["norms"]) == {"foreground", "background"}
    assert summary["norms"]["foreground"]["max"] <= 2 / 255 + 1e-6
    assert _grid(out) == (6 * 18 + 2, 4 * 18 + 2)  # 6 columns, 4 rows of 16 px + 2 px gaps


def test_dual_attack_with_ground_truth_masks(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "gt"
    result = _run(checkpoint, out, "--attack", "dual", "--eps-fg", "0", "--eps-bg", "16/255",
                  "--steps", "2", "-p", "mask_source=ground-truth")  # fmt: skip
    assert result.exit_code == 0, result.output
    adv = load_file(str(out / "adversarial.safetensors"))["adversarial"]
    data = foveal.data.load("shapes", split="test", n=6, size=16)
    assert data.masks is not None
    fg = data.masks.expand_as(adv) > 0
    assert torch.equal(adv[fg], data.images[fg])  # eps_F = 0 on the true object


def test_sai_fgm_options(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "sai"
    result = _run(checkpoint, out, "--attack", "sai-fgm", "--delta", "4", "--phi", "0.33",
                  "--beta", "2", "--steps", "2", "-p", "size=3")  # fmt: skip
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack"]["delta"] == 4 and summary["attack"]["phi"] == pytest.approx(0.33)
    eps = foveal.attacks.sai_budget(4, (3, 16, 16))
    assert summary["norms"]["image"]["max"] <= eps + 1e-5
    assert (out / "grid.png").exists()


def test_perceptual_attack(checkpoint: Path, tmp_path: Path) -> None:
    out = tmp_path / "pb"
    result = _run(checkpoint, out, "--attack", "perceptual", "--eps", "8/255", "--steps", "2")
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["norms"]["image"]["max"] <= 8 / 255 + 1e-6
    assert (out / "grid.png").exists()


@pytest.mark.parametrize(
    ("args", "pattern"),
    [
        (["--attack", "sai-fgm", "--phi", "1.5"], "phi must lie in [0, 1]; got 1.5"),
        (["--attack", "sai-fgm", "-p", "size=0"], "size (superpixel side S) must be >= 1"),
        (["--attack", "dual", "--eps-fg", "-1"], "eps_fg must be a finite number >= 0; got -1"),
        (["--attack", "sai-fgm", "--lam", "1"], "does not take --lam"),
    ],
)
def test_bad_options_fail_clearly(checkpoint: Path, tmp_path: Path, args, pattern: str) -> None:
    result = _run(checkpoint, tmp_path / "bad", *args)
    assert result.exit_code != 0
    assert pattern in result.output
