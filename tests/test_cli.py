"""The command line: train / info / datasets / models, and clear errors for bad input."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from typer.testing import CliRunner

import foveal
from foveal.app.cli import app
from foveal.io import read_jsonl

runner = CliRunner()
TINY = ["--n-train", "96", "--n-test", "32", "--width", "4", "--batch-size", "32"]


def test_help_lists_commands() -> None:
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    for cmd in ("train", "datasets", "models", "info", "demo"):
        assert cmd in result.output


def test_datasets_and_models_lists() -> None:
    out = runner.invoke(app, ["datasets"]).output
    assert "shapes" in out and "10,000 train / 2,000 test" in out and "cub200" in out
    out = runner.invoke(app, ["models"]).output
    assert "resnet18" in out and "shapes-cnn" in out


def test_train_then_info(tmp_path: Path) -> None:
    out = tmp_path / "m"
    result = runner.invoke(app, ["train", *TINY, "--epochs", "1", "--out", str(out)])
    assert result.exit_code == 0, result.output
    assert "test accuracy" in result.output
    model = foveal.models.load(out)
    assert model(foveal.data.load("shapes", n=2).images).shape == (2, 10)
    info = runner.invoke(app, ["info", str(out)])
    assert info.exit_code == 0 and '"arch": "shapes-cnn"' in info.output
    assert '"epochs_done": 1' in info.output


def test_train_with_config_file(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("training:\n  epochs: 1\n  lr: 0.002\nwidth: 4\nn_train: 64\nn_test: 16\n")
    result = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "m")])
    assert result.exit_code == 0, result.output
    assert foveal.models.read_meta(tmp_path / "m")["training"]["lr"] == 0.002


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--data", "imagenet"], "unknown dataset 'imagenet'"),
        (["--arch", "resnet19"], "unknown architecture 'resnet19'"),
        (["--data", "cifar10"], "pass root=... (--data-root)"),
        (["--epochs", "0"], "training.epochs: Input should be greater than or equal to 1"),
        (["--optimizer", "rmsprop"], "training.optimizer"),
    ],
)
def test_train_bad_input_is_a_clear_error(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert message in result.output


def test_config_file_rejects_unknown_keys(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.yaml"
    cfg.write_text("training:\n  epochs: 1\n  learning_rate: 0.1\n")
    result = runner.invoke(app, ["train", "--config", str(cfg), "--out", str(tmp_path / "m")])
    assert result.exit_code == 2
    assert "training.learning_rate: unknown key" in result.output
    cfg.write_text("- just\n- a list\n")
    result = runner.invoke(app, ["train", "--config", str(cfg)])
    assert result.exit_code == 2 and "must hold a mapping" in result.output


def test_info_on_a_non_checkpoint(tmp_path: Path) -> None:
    (tmp_path / "x.pkl").write_bytes(b"\x80\x04junk")
    result = runner.invoke(app, ["info", str(tmp_path / "x.pkl")])
    assert result.exit_code == 2 and "foveal never unpickles" in result.output


def test_ctrl_c_saves_and_resume_finishes(tmp_path: Path) -> None:
    out = tmp_path / "run"
    cmd = [sys.executable, "-m", "foveal", "train", "--n-train", "2000", "--n-test", "32",
           "--width", "4", "--batch-size", "16", "--epochs", "2", "--out", str(out)]  # fmt: skip
    env = dict(os.environ, PYTHONUNBUFFERED="1")
    # A shell running this suite in the background may have SIGINT ignored, and the child would
    # inherit that: restore the default so that Python turns the signal into KeyboardInterrupt.
    proc = subprocess.Popen(
        cmd,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        env=env,
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    deadline = time.time() + 120
    while not (out / "train_state.safetensors").exists() and time.time() < deadline:
        time.sleep(0.2)  # the first epoch has ended
    proc.send_signal(signal.SIGINT)
    output = proc.communicate(timeout=120)[0].decode()
    assert proc.returncode == 130, output
    assert "rerun with --resume" in output
    done = subprocess.run([*cmd, "--resume"], capture_output=True, text=True, env=env, timeout=300)
    assert done.returncode == 0, done.stdout + done.stderr
    assert [r["epoch"] for r in read_jsonl(out / "metrics.jsonl")] == [1, 2]


def test_train_init_from_a_checkpoint(tmp_path: Path) -> None:
    first = tmp_path / "a"
    assert runner.invoke(app, ["train", *TINY, "--epochs", "1", "--out", str(first)]).exit_code == 0
    second = tmp_path / "b"
    args = ["train", *TINY, "--epochs", "1", "--lr", "1e-9", "--schedule", "constant"]
    result = runner.invoke(app, [*args, "--init", str(first), "--out", str(second)])
    assert result.exit_code == 0, result.output
    # With a vanishing learning rate the weights stay those of the initial checkpoint.
    a, b = foveal.models.load(first), foveal.models.load(second)
    for (k, va), vb in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        if "running" not in k and "num_batches" not in k:
            assert (va - vb).abs().max() < 1e-6, k
    assert foveal.models.read_meta(second)["init"] == str(first)
    bad = runner.invoke(app, [*args, "--arch", "resnet18", "--init", str(first), "--out",
                              str(tmp_path / "c")])  # fmt: skip
    assert bad.exit_code == 2 and "is a 'shapes-cnn'; this job trains a 'resnet18'" in bad.output


def test_demo_uses_a_cached_model_and_reports_robustness(tmp_path: Path) -> None:
    model_dir = tmp_path / "shapes-cnn"
    args = ["train", *TINY, "--epochs", "1", "--out", str(model_dir)]
    assert runner.invoke(app, args).exit_code == 0
    result = runner.invoke(app, ["demo", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "using the cached model" in result.output
    assert "shapes test accuracy:" in result.output
    assert "accuracy under PGD-10 Linf 4/255:" in result.output
    assert "accuracy under dual 4/255 object + 20/255 background:" in result.output
