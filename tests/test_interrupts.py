"""Nothing lost, nothing mixed: Ctrl-C, kills at every write, and two runs on one directory.

- SIGINT (a real signal, delivered to this process) during training of every recipe family,
  then ``resume``: the weights equal an uninterrupted run's bit for bit;
- a second Ctrl-C in the middle of a batch (after the inner attack drew from the generator):
  the batch is redone from its starting state, still bit for bit;
- a kill (``os._exit``) at each write of a run, then ``resume``: the same final weights, an
  exported model that matches them, and a log with every epoch exactly once;
- a second run on a directory that a live process holds is refused, naming that process.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
import torch

import foveal
from foveal.defenses import make_recipe
from foveal.io import DirectoryLock, DirectoryLocked
from foveal.training import Recipe, TrainConfig, Trainer, fit

CFG = {"epochs": 2, "batch_size": 16, "lr": 3e-3}
META = {"arch": "shapes-cnn", "arch_kwargs": {"width": 4}, "num_classes": 10, "in_channels": 3}


@pytest.fixture(scope="module")
def train():
    return foveal.data.load("shapes", n=64)


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return foveal.models.create("shapes-cnn", width=4)


def _recipe(name: str) -> Recipe:
    if name == "standard":
        return Recipe()
    if name == "gaussian":
        from foveal.defenses.smoothing import GaussianNoiseRecipe

        return GaussianNoiseRecipe(0.25)
    kwargs: dict[str, Any] = {"eps": 4 / 255, "steps": 2, "eval_n": 0}
    if name == "fat":
        kwargs["epochs"] = CFG["epochs"]
    if name == "part":
        kwargs["burn_in"] = 1
    if name == "sip-s":
        kwargs["reference"] = _model(3).eval()
    return make_recipe(name, **kwargs)


RECIPES = ["standard", "madry", "trades", "fat", "part", "dual", "sip-h", "sip-s", "gaussian"]


def _assert_same_weights(a: torch.nn.Module, b: torch.nn.Module) -> None:
    for (k, v), w in zip(a.state_dict().items(), b.state_dict().values(), strict=True):
        assert torch.equal(v, w), k


@pytest.mark.parametrize("name", RECIPES)
def test_sigint_then_resume_equals_uninterrupted(name: str, train, tmp_path: Path) -> None:
    ref = fit(_model(), train, config=CFG, recipe=_recipe(name))
    trainer = Trainer(_model(), train, config=TrainConfig(**CFG), recipe=_recipe(name),
                      out_dir=tmp_path, meta=META)  # fmt: skip

    def ctrl_c(t: Trainer) -> None:
        if t.epoch == 0 and t.batch == 2:
            os.kill(os.getpid(), signal.SIGINT)  # handled: the loop stops after this batch

    trainer.on_step = ctrl_c
    result = trainer.run()
    assert result.interrupted and (trainer.epoch, trainer.batch) == (0, 2)
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler  # handler restored
    resumed = fit(_model(9), train, config=CFG, recipe=_recipe(name), out_dir=tmp_path,
                  resume=True)  # fmt: skip
    _assert_same_weights(resumed.model, ref.model)


@pytest.mark.parametrize("name", ["madry", "dual", "sip-s"])
def test_interrupt_inside_the_inner_attack_redoes_the_batch(
    name: str, train, tmp_path: Path
) -> None:
    ref = fit(_model(), train, config=CFG, recipe=_recipe(name))
    recipe = _recipe(name)
    inner = recipe.inner
    calls = {"n": 0}

    def interrupted_inner(*args: Any, **kwargs: Any) -> torch.Tensor:
        calls["n"] += 1
        out = inner(*args, **kwargs)  # the attack has drawn its random start
        if calls["n"] == 6:
            raise KeyboardInterrupt
        return out

    recipe.inner = interrupted_inner  # type: ignore[method-assign]
    trainer = Trainer(_model(), train, config=TrainConfig(**CFG), recipe=recipe,
                      out_dir=tmp_path, meta=META)  # fmt: skip
    assert trainer.run().interrupted
    assert (trainer.epoch, trainer.batch) == (1, 1)  # 4 batches per epoch: the 6th is (1, 1)
    resumed = fit(_model(9), train, config=CFG, recipe=_recipe(name), out_dir=tmp_path,
                  resume=True)  # fmt: skip
    _assert_same_weights(resumed.model, ref.model)


_KILL_SCRIPT = textwrap.dedent(
    """
    import os, sys
    import torch
    import foveal
    from foveal.training import fit

    kill_at = int(sys.argv[2])
    real_replace = os.replace
    count = {"n": 0}

    def replace(src, dst):
        count["n"] += 1
        if count["n"] == kill_at:
            os._exit(137)  # killed from outside: no cleanup, no flush
        real_replace(src, dst)

    os.replace = replace
    torch.manual_seed(0)
    model = foveal.models.create("shapes-cnn", width=4)
    data = foveal.data.load("shapes", n=64)
    meta = {"arch": "shapes-cnn", "arch_kwargs": {"width": 4}, "num_classes": 10,
            "in_channels": 3}
    fit(model, data, config={"epochs": 2, "batch_size": 16, "lr": 3e-3}, out_dir=sys.argv[1],
        meta=meta)
    print("writes", count["n"])
    """
)


def test_kill_at_each_write_then_resume(train, tmp_path: Path) -> None:
    ref = fit(_model(), train, config=CFG)
    run = [sys.executable, "-c", _KILL_SCRIPT]
    done = subprocess.run([*run, str(tmp_path / "whole"), "0"], capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    writes = int(done.stdout.split()[-1])
    assert writes >= 6  # export (2 files), state and log per epoch
    for k in range(1, writes + 1):
        out = tmp_path / f"kill-{k}"
        killed = subprocess.run([*run, str(out), str(k)], capture_output=True, text=True)
        assert killed.returncode == 137, killed.stderr
        saved = (out / "train_state.safetensors").exists()
        # Without a saved state the run starts again from its initial weights.
        resumed = fit(_model(9 if saved else 0), train, config=CFG, out_dir=out, resume=saved,
                      meta=META)  # fmt: skip
        _assert_same_weights(resumed.model, ref.model)
        epochs = [json.loads(line)["epoch"] for line in (out / "metrics.jsonl").open()]
        assert epochs == [1, 2], (k, epochs)
        exported = foveal.models.load(out)
        assert foveal.models.read_meta(out)["epochs_done"] == 2
        _assert_same_weights(exported, ref.model)
        assert not [p.name for p in out.iterdir() if p.name.endswith(".tmp")]


def test_a_second_run_on_a_held_directory_is_refused(train, tmp_path: Path) -> None:
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from foveal.io import DirectoryLock; "
            "lock = DirectoryLock(sys.argv[1], purpose='foveal train').acquire(); "
            "print('held', flush=True); time.sleep(60)",
            str(tmp_path),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "held"
        with pytest.raises(DirectoryLocked, match=rf"PID {holder.pid}: foveal train"):
            fit(_model(), train, config=CFG, out_dir=tmp_path)
        assert not (tmp_path / "metrics.jsonl").exists()  # nothing was written
    finally:
        holder.kill()
        holder.wait()
    # Once the holder is gone (killed: no clean-up), the directory is free again.
    with DirectoryLock(tmp_path, purpose="check"):
        pass
