"""The trainer: learning, exact resume, Ctrl-C, atomic files, validated configs."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from pydantic import ValidationError

import foveal
from foveal.io import read_jsonl
from foveal.training import TrainConfig, Trainer, accuracy, fit, lr_at

CFG = {"epochs": 3, "batch_size": 32, "lr": 3e-3}
META = {"arch": "shapes-cnn", "arch_kwargs": {"width": 4}, "num_classes": 10, "in_channels": 3}


@pytest.fixture(scope="module")
def tiny():
    return (foveal.data.load("shapes", n=160), foveal.data.load("shapes", split="test", n=64))


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return foveal.models.create("shapes-cnn", width=4)


def _params(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {k: v.clone() for k, v in model.state_dict().items()}


class _Kill(Exception):
    """Stands for a process killed from outside (nothing gets saved)."""


def test_training_lowers_the_loss(tiny) -> None:
    train, _ = tiny
    result = fit(_model(), train, config={"epochs": 4, "batch_size": 32, "lr": 5e-3})
    losses = [h["loss"] for h in result.history]
    assert losses[-1] < losses[0] - 0.1


def test_same_seed_same_weights(tiny) -> None:
    train, _ = tiny
    a = fit(_model(), train, config={**CFG, "epochs": 1}).model
    b = fit(_model(), train, config={**CFG, "epochs": 1}).model
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        torch.testing.assert_close(v, w, rtol=0, atol=0, msg=k)


def test_resume_after_kill_equals_uninterrupted(tiny, tmp_path: Path) -> None:
    train, test = tiny
    ref = fit(_model(), train, config=CFG, eval_data=test, out_dir=tmp_path / "ref")

    trainer = Trainer(_model(), train, config=TrainConfig(**CFG), eval_data=test,
                      out_dir=tmp_path / "run", meta=META)  # fmt: skip

    def kill_in_epoch_2(t: Trainer) -> None:
        if t.epoch == 1 and t.batch == 2:
            raise _Kill

    trainer.on_step = kill_in_epoch_2
    with pytest.raises(_Kill):
        trainer.run()
    assert [r["epoch"] for r in read_jsonl(tmp_path / "run" / "metrics.jsonl")] == [1]

    resumed = fit(_model(seed=123), train, config=CFG, eval_data=test, out_dir=tmp_path / "run",
                  resume=True)  # fmt: skip
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, msg=k)
    assert [r["epoch"] for r in resumed.history] == [1, 2, 3]
    assert resumed.history[-1]["test_acc"] == pytest.approx(ref.history[-1]["test_acc"])
    # The exported checkpoint loads and matches.
    loaded = foveal.models.load(tmp_path / "run")
    x = test.images[:4]
    torch.testing.assert_close(loaded(x), ref.model.eval()(x))


def test_ctrl_c_mid_epoch_saves_and_resumes_exactly(tiny, tmp_path: Path) -> None:
    train, _ = tiny
    ref = fit(_model(), train, config=CFG)
    trainer = Trainer(_model(), train, config=TrainConfig(**CFG), out_dir=tmp_path)

    def ctrl_c(t: Trainer) -> None:
        if t.epoch == 1 and t.batch == 3:
            raise KeyboardInterrupt

    trainer.on_step = ctrl_c
    result = trainer.run()
    assert result.interrupted and trainer.batch == 3
    resumed = fit(_model(seed=7), train, config=CFG, out_dir=tmp_path, resume=True)
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, msg=k)


def test_resume_refuses_a_different_config(tiny, tmp_path: Path) -> None:
    train, _ = tiny
    fit(_model(), train, config={**CFG, "epochs": 1}, out_dir=tmp_path)
    with pytest.raises(FileExistsError, match="already holds a training run"):
        fit(_model(), train, config={**CFG, "epochs": 1}, out_dir=tmp_path)
    with pytest.raises(ValueError, match="config differs.*'lr'"):
        fit(_model(), train, config={**CFG, "epochs": 1, "lr": 0.1}, out_dir=tmp_path, resume=True)


def test_config_validation_names_the_key() -> None:
    with pytest.raises(ValidationError, match="epochs"):
        TrainConfig(epochs=0)
    with pytest.raises(ValidationError, match="learning_rate"):
        TrainConfig(learning_rate=0.1)  # type: ignore[call-arg]
    with pytest.raises(ValidationError, match="optimizer"):
        TrainConfig(optimizer="rmsprop")  # type: ignore[arg-type]


def test_lr_schedules() -> None:
    cfg = TrainConfig(lr=1.0, schedule="onecycle", warmup=0.2)
    assert lr_at(cfg, 0, 100) == pytest.approx(0.1)
    assert lr_at(cfg, 20, 100) == pytest.approx(1.0)
    assert lr_at(cfg, 100, 100) == pytest.approx(0.0, abs=1e-9)
    assert lr_at(TrainConfig(lr=0.5, schedule="constant"), 50, 100) == 0.5
    assert lr_at(TrainConfig(lr=1.0, schedule="cosine"), 50, 100) == pytest.approx(0.5)


def test_accuracy_restores_mode(tiny) -> None:
    _, test = tiny
    model = _model()
    model.train()
    acc = accuracy(model, test)
    assert model.training and 0.0 <= acc <= 1.0


@pytest.mark.slow
def test_default_shapes_training_reaches_95_percent(tmp_path: Path) -> None:
    from foveal.app.jobs import TrainJob, run_train_job

    result = run_train_job(TrainJob(out=str(tmp_path)))
    assert result.history[-1]["test_acc"] >= 0.95
