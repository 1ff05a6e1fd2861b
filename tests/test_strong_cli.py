"""``foveal attack`` with the strong attacks: every one runs from the registry with its options."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from typer.testing import CliRunner

import foveal
from foveal.app.cli import app

runner = CliRunner()
DATA = ["--data", "shapes", "--n", "6", "--size", "16", "--batch-size", "6"]


pytestmark = pytest.mark.usefixtures("single_thread")


CASES = {
    "apgd-ce": ["--eps", "4/255", "--steps", "3"],
    "apgd-dlr": ["--eps", "4/255", "--steps", "3", "--threat", "frozen"],
    "square": ["--eps", "4/255", "--param", "n_queries=5"],
    "autoattack": ["--eps", "4/255", "--steps", "2", "-p", "n_targets=2", "-p", "n_queries=3"],
    "cw": ["--norm", "l2", "--threat", "box", "--steps", "5", "-p", "search_steps=2"],
    "deepfool": ["--norm", "l2", "--threat", "box", "--steps", "3"],
    "jsma": ["--threat", "box", "-p", "gamma=0.02", "--target-offset", "1"],
}


@pytest.mark.parametrize("name", list(CASES))
def test_strong_attack_runs_from_the_cli(checkpoint: Path, tmp_path: Path, name: str) -> None:
    out = tmp_path / name
    args = ["attack", "--model", str(checkpoint), "--out", str(out), *DATA, "--attack", name]
    result = runner.invoke(app, [*args, *CASES[name]])
    assert result.exit_code == 0, result.output
    summary = json.loads((out / "summary.json").read_text())
    assert summary["attack"]["attack"] == name
    adv = load_file(str(out / "adversarial.safetensors"))["adversarial"]
    data = foveal.data.load("shapes", split="test", n=6, size=16)
    assert float(adv.min()) >= 0 and float(adv.max()) <= 1
    if "--threat" not in CASES[name]:
        assert float((adv - data.images).abs().max()) <= 4 / 255 + 1e-6
    if name == "apgd-dlr":  # frozen foreground: masked pixels unchanged
        fg = data.masks.expand_as(adv).bool() if data.masks is not None else None
        assert fg is not None and torch.equal(adv[fg], data.images[fg])
