"""Standard training with exact resume, atomic checkpoints and pluggable recipes.

One loop serves every recipe: a :class:`Recipe` turns a batch into a loss (standard training:
cross-entropy on clean images; adversarial recipes in :mod:`foveal.defenses` run an inner
attack first). The loop owns everything else: seeded shuffling, the learning-rate schedule,
per-epoch evaluation, a JSON-lines log, atomic checkpoints and resume.

Determinism and resume: epoch ``e`` shuffles with a generator seeded by ``(seed, e)`` and
re-seeds torch's global generator at the epoch start; a checkpoint stores the model, the
optimizer state, the global RNG state, the position (epoch, batch) and the history, so a run
stopped at an epoch boundary — or by Ctrl-C in the middle of an epoch — and resumed ends with
the same weights as an uninterrupted run, for every recipe (the inner attacks of robust recipes
draw from the global generator). Ctrl-C asks the loop to stop after the running batch and saves
the exact position there (a second Ctrl-C stops at once: the running batch is then redone from
the generator state at its start, unless the interrupt landed inside the optimizer update, in
which case the last saved state is kept). The learning rate is a closed-form function of the
step, so no scheduler state is needed.

Crash consistency: at the end of an epoch the loadable checkpoint is exported first, then the
training state is saved (one atomic file), then ``metrics.jsonl`` is rewritten from the state's
history. A kill at any point leaves a state that resumes exactly; ``--resume`` re-exports a
checkpoint that is behind the state and rewrites the log, so ``metrics.jsonl`` never repeats or
misses an epoch. An output directory is locked while a run writes into it
(:class:`foveal.io.DirectoryLock`): a second run on it fails at once, naming the first.

Distributed data parallel: started under ``torchrun --nproc_per_node=N`` the same code trains
with :class:`torch.nn.parallel.DistributedDataParallel` (gloo on CPU, nccl on GPU). Every
process draws the same permutation and takes its own shard (padded to equal length, like
``DistributedSampler``); rank 0 alone evaluates, logs and writes checkpoints, in the same format.

Recipes are registered in :data:`RECIPES` by name, each with its own validated settings class
(:class:`RecipeSettings`: unknown keys are errors, budgets accept fractions such as ``"8/255"``);
``RECIPES.get(name).model_validate(settings).build(epochs=...)`` makes the recipe. ``standard``
is registered here, the adversarial recipes in :mod:`foveal.defenses.adversarial` and
``gaussian`` in :mod:`foveal.defenses.smoothing`; importing :mod:`foveal.defenses` registers
them all.

Files in ``out_dir``: ``train_state.safetensors`` (everything needed to resume, one atomic
file), ``model.safetensors`` + ``model.json`` (the checkpoint that :func:`foveal.models.load`
reads) and ``metrics.jsonl`` (one record per epoch).
"""

from __future__ import annotations

import abc
import json
import logging
import math
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Annotated, Any, Literal

import torch
import torch.nn.functional as F
from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationInfo,
    model_validator,
)
from pydantic_core import PydanticCustomError
from safetensors import SafetensorError
from safetensors.torch import load_file, save_file
from torch import nn

from foveal._validation import check_eps, parse_fraction
from foveal.batching import predict
from foveal.data.base import ArrayDataset
from foveal.io import DirectoryLock, atomic_path, atomic_write_text, remove_stale_temporaries
from foveal.registry import Registry
from foveal.threats import parse_norm

__all__ = [
    "RECIPES",
    "Budget",
    "NormName",
    "Recipe",
    "RecipeSettings",
    "StandardRecipe",
    "StandardSettings",
    "TrainConfig",
    "TrainResult",
    "Trainer",
    "accuracy",
    "fit",
    "init_distributed",
    "lr_at",
]

log = logging.getLogger(__name__)

STATE_FILE = "train_state.safetensors"
METRICS_FILE = "metrics.jsonl"


class TrainConfig(BaseModel):
    """Validated training hyper-parameters (unknown keys are errors)."""

    model_config = ConfigDict(extra="forbid")

    epochs: int = Field(8, ge=1, description="number of passes over the training data")
    batch_size: int = Field(128, ge=1)
    lr: float = Field(3e-3, gt=0, description="peak learning rate")
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    momentum: float = Field(0.9, ge=0, lt=1, description="SGD momentum")
    weight_decay: float = Field(0.0, ge=0)
    schedule: Literal["constant", "cosine", "onecycle"] = "onecycle"
    warmup: float = Field(0.15, ge=0, lt=1, description="warm-up fraction (onecycle)")
    seed: int = 0
    eval_batch_size: int = Field(512, ge=1)


def lr_at(config: TrainConfig, step: int, total: int) -> float:
    """Learning rate at global ``step`` of ``total`` (closed form, no scheduler state)."""
    t = min(max(step / max(total, 1), 0.0), 1.0)
    if config.schedule == "constant":
        return config.lr
    if config.schedule == "cosine":
        return config.lr * 0.5 * (1 + math.cos(math.pi * t))
    w = config.warmup
    if t < w:
        return config.lr * (0.1 + 0.9 * t / w)
    return config.lr * 0.5 * (1 + math.cos(math.pi * (t - w) / (1 - w)))


class Recipe:
    """How a batch becomes a loss. Subclasses (adversarial recipes) override :meth:`loss`.

    ``loss`` receives the model in train mode and a batch dict (``image``, ``label`` and, when
    the data have them, ``mask`` and ``box``); it returns the scalar loss and a dict of floats
    to average into the epoch's log.
    """

    name = "standard"

    def loss(
        self, model: nn.Module, batch: dict[str, torch.Tensor], *, epoch: int
    ) -> tuple[torch.Tensor, dict[str, float]]:
        logits = model(batch["image"])
        loss = F.cross_entropy(logits, batch["label"])
        acc = (logits.argmax(1) == batch["label"]).float().mean()
        return loss, {"loss": float(loss.detach()), "train_acc": float(acc)}

    def evaluate(
        self, model: nn.Module, data: ArrayDataset, *, batch_size: int
    ) -> dict[str, float]:
        """Extra held-out metrics (adversarial recipes add robust accuracy)."""
        return {}

    def describe(self) -> dict[str, Any]:
        return {"name": self.name}


StandardRecipe = Recipe


# ---------------------------------------------------------------------- recipe settings
def _budget(value: object, info: ValidationInfo) -> object:
    """Budgets: fractions such as ``"8/255"`` are parsed; negative or non-finite values are
    errors naming the setting and the value."""
    name = info.field_name or "value"
    if isinstance(value, str):
        value = parse_fraction(value, name)
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        check_eps(value, name)
    return value


def _norm(value: object) -> object:
    return parse_norm(value) if isinstance(value, (str, int, float)) else value


#: A finite budget >= 0 (``8/255``, ``"8/255"`` or ``0.03``).
Budget = Annotated[float, BeforeValidator(_budget), Field(ge=0)]
#: ``"linf"`` or ``"l2"`` (``"inf"``, ``2`` and other spellings are normalised).
NormName = Annotated[Literal["linf", "l2"], BeforeValidator(_norm)]


class RecipeSettings(BaseModel):
    """A training recipe's validated settings; :meth:`build` makes the :class:`Recipe`.

    Every recipe registers its own subclass in :data:`RECIPES` under its name, which is also
    the subclass's ``method`` field (``method: Literal["madry"] = "madry"``). Unknown keys are
    errors that name the key and list the settings the recipe takes.
    """

    model_config = ConfigDict(extra="forbid", frozen=True)

    method: str = Field(description="the recipe's registered name")

    @model_validator(mode="before")
    @classmethod
    def _known_keys(cls, data: Any) -> Any:
        if isinstance(data, Mapping):
            unknown = [str(k) for k in data if k not in cls.model_fields]
            if unknown:
                method = cls.model_fields["method"].default
                known = [k for k in cls.model_fields if k != "method"]
                its = f"its settings: {', '.join(known)}" if known else "it has no settings"
                text = f"method {method!r} takes no setting {', '.join(map(repr, unknown))} ({its})"
                raise PydanticCustomError("unknown_setting", "{message}", {"message": text})
        return data

    @abc.abstractmethod
    def build(self, *, epochs: int | None = None) -> Recipe:
        """The recipe these settings describe (``epochs``: the run's length, for schedules)."""


#: Name -> the recipe's settings class (``.build()`` makes the recipe). Complete once
#: :mod:`foveal.defenses` is imported (:func:`foveal.defenses.recipe_settings` does it).
RECIPES: Registry[type[RecipeSettings]] = Registry("training recipe")


@RECIPES.register("standard", help="cross-entropy on the clean images")
class StandardSettings(RecipeSettings):
    """Standard training: no settings."""

    method: Literal["standard"] = "standard"

    def build(self, *, epochs: int | None = None) -> Recipe:
        return Recipe()


@torch.no_grad()
def accuracy(model: nn.Module, data: ArrayDataset, *, batch_size: int = 512) -> float:
    """Clean accuracy of ``model`` on ``data`` (eval mode, restored afterwards)."""
    if len(data) == 0:
        return 0.0
    pred = predict(model, data, batch_size=batch_size)
    return int((pred.cpu() == data.labels).sum()) / len(data)


@dataclass
class TrainResult:
    model: nn.Module
    history: list[dict[str, Any]] = field(default_factory=list)
    interrupted: bool = False
    seconds: float = 0.0


def _make_optimizer(model: nn.Module, cfg: TrainConfig) -> torch.optim.Optimizer:
    params = [p for p in model.parameters() if p.requires_grad]
    if cfg.optimizer == "sgd":
        return torch.optim.SGD(
            params, lr=cfg.lr, momentum=cfg.momentum, weight_decay=cfg.weight_decay, nesterov=True
        )
    if cfg.optimizer == "adamw":
        return torch.optim.AdamW(params, lr=cfg.lr, weight_decay=cfg.weight_decay)
    return torch.optim.Adam(params, lr=cfg.lr, weight_decay=cfg.weight_decay)


def _flatten_optimizer(opt: torch.optim.Optimizer) -> tuple[dict[str, torch.Tensor], dict]:
    sd = opt.state_dict()
    tensors: dict[str, torch.Tensor] = {}
    plain: dict[str, dict[str, Any]] = {}
    for pid, st in sd["state"].items():
        for k, v in st.items():
            if isinstance(v, torch.Tensor):
                tensors[f"optim.{pid}.{k}"] = v.detach().cpu().contiguous().clone()
            else:
                plain.setdefault(str(pid), {})[k] = v
    return tensors, {"param_groups": sd["param_groups"], "plain": plain}


def _unflatten_optimizer(tensors: dict[str, torch.Tensor], info: dict) -> dict[str, Any]:
    state: dict[int, dict[str, Any]] = {}
    for key, v in tensors.items():
        if key.startswith("optim."):
            _, pid, k = key.split(".", 2)
            state.setdefault(int(pid), {})[k] = v
    for pid, kv in info["plain"].items():
        state.setdefault(int(pid), {}).update(kv)
    return {"state": state, "param_groups": info["param_groups"]}


def init_distributed() -> tuple[int, int]:
    """Join the process group that ``torchrun`` describes; returns ``(rank, world_size)``.

    Outside ``torchrun`` (no ``WORLD_SIZE`` > 1 in the environment) this is ``(0, 1)``.
    """
    import torch.distributed as dist

    if dist.is_available() and dist.is_initialized():
        return dist.get_rank(), dist.get_world_size()
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1 or not dist.is_available():
        return 0, 1
    backend = "nccl" if torch.cuda.is_available() else "gloo"
    if backend == "nccl":
        torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", "0")))
    dist.init_process_group(backend)
    return dist.get_rank(), dist.get_world_size()


def _barrier(world: int) -> None:
    if world > 1:
        import torch.distributed as dist

        dist.barrier()


class Trainer:
    """The training loop (see the module docstring). Most users call :func:`fit`."""

    def __init__(
        self,
        model: nn.Module,
        train_data: ArrayDataset,
        *,
        config: TrainConfig | None = None,
        recipe: Recipe | None = None,
        eval_data: ArrayDataset | None = None,
        out_dir: str | os.PathLike[str] | None = None,
        meta: dict[str, Any] | None = None,
        progress: bool = False,
        device: str | torch.device | None = None,
    ) -> None:
        if len(train_data) == 0:
            raise ValueError("train_data is empty")
        self.config = config or TrainConfig()
        self.recipe = recipe or Recipe()
        self.model = model
        self.train_data = train_data
        self.eval_data = eval_data
        self.out_dir = Path(out_dir) if out_dir is not None else None
        self.meta = dict(meta or {})
        self.progress = progress
        self.rank, self.world = init_distributed()
        if device is None and self.world > 1 and torch.cuda.is_available():
            device = f"cuda:{os.environ.get('LOCAL_RANK', '0')}"
        self.device = torch.device(device) if device else next(model.parameters()).device
        self.model.to(self.device)
        # ``net`` is what the recipe calls (DDP-wrapped when distributed); ``model`` is saved.
        self.net: nn.Module = model
        if self.world > 1:
            from torch.nn.parallel import DistributedDataParallel

            ids = [self.device.index] if self.device.type == "cuda" else None
            self.net = DistributedDataParallel(model, device_ids=ids)
        self.progress = progress and self.rank == 0
        self.optimizer = _make_optimizer(model, self.config)
        self.epoch = 0  # completed epochs
        self.batch = 0  # batches done inside the current epoch
        self.rng_state: torch.Tensor | None = None
        self.history: list[dict[str, Any]] = []
        self.on_step: Callable[[Trainer], None] | None = None
        self._stop_requested = False
        self._batch_rng = torch.get_rng_state()
        # Where the loop is: "compute" (a batch before its update), "update" (parameters or
        # the epoch's files changing), "done" (between batches).
        self._phase = "done"

    # ------------------------------------------------------------------ state
    @property
    def is_main(self) -> bool:
        return self.rank == 0

    @property
    def steps_per_epoch(self) -> int:
        shard = math.ceil(len(self.train_data) / self.world)
        return math.ceil(shard / self.config.batch_size)

    def _state_path(self) -> Path:
        assert self.out_dir is not None
        return self.out_dir / STATE_FILE

    def save_state(self) -> None:
        """Write the resumable state atomically (model, optimizer, RNG, position)."""
        if self.out_dir is None or not self.is_main:
            return
        tensors = {
            f"model.{k}": v.detach().cpu().contiguous().clone()
            for k, v in self.model.state_dict().items()
        }
        opt_tensors, opt_info = _flatten_optimizer(self.optimizer)
        tensors.update(opt_tensors)
        tensors["rng.cpu"] = (
            self.rng_state if self.rng_state is not None else torch.get_rng_state()
        ).clone()
        info = {
            "epoch": self.epoch,
            "batch": self.batch,
            "config": self.config.model_dump(),
            "recipe": self.recipe.describe(),
            "optimizer": opt_info,
            "n_train": len(self.train_data),
            "meta": self.meta,
            "history": self.history,
        }
        with atomic_path(self._state_path()) as tmp:
            save_file(tensors, str(tmp), metadata={"foveal_train_state": json.dumps(info)})

    def load_state(self) -> bool:
        """Restore from ``out_dir``; returns False when there is nothing to resume."""
        if self.out_dir is None or not self._state_path().exists():
            return False
        path = self._state_path()
        try:
            from safetensors import safe_open

            with safe_open(str(path), framework="pt") as fh:
                header = fh.metadata() or {}
            tensors = load_file(str(path))
        except (SafetensorError, OSError) as exc:
            raise ValueError(f"{path}: not a readable training state ({exc})") from None
        if "foveal_train_state" not in header:
            raise ValueError(f"{path}: not a foveal training state")
        info = json.loads(header["foveal_train_state"])
        saved_cfg = TrainConfig(**info["config"])
        diff = {
            k: (v, getattr(self.config, k))
            for k, v in saved_cfg.model_dump().items()
            if getattr(self.config, k) != v
        }
        if set(diff) == {"epochs"}:
            log.warning(
                "resuming with epochs=%d instead of %d: the learning-rate schedule changes, so "
                "the result differs from a run started with %d epochs",
                self.config.epochs, saved_cfg.epochs, self.config.epochs,
            )  # fmt: skip
        elif diff:
            raise ValueError(
                f"cannot resume from {path}: the training config differs (saved, now): {diff}"
            )
        if info.get("n_train") != len(self.train_data):
            raise ValueError(
                f"cannot resume from {path}: it was trained on {info.get('n_train')} images, "
                f"now {len(self.train_data)}"
            )
        self.model.load_state_dict(
            {k[len("model.") :]: v for k, v in tensors.items() if k.startswith("model.")}
        )
        self.optimizer.load_state_dict(_unflatten_optimizer(tensors, info["optimizer"]))
        self.epoch, self.batch = int(info["epoch"]), int(info["batch"])
        if not self.meta:
            self.meta = dict(info.get("meta") or {})
        self.rng_state = tensors["rng.cpu"]
        self.history = [r for r in info.get("history", []) if r.get("epoch", 0) <= self.epoch]
        if self.is_main:  # a kill may have left the log or the exported model behind the state
            self._write_metrics()
            if self.epoch > 0 and self.history and self._exported_epochs() != self.epoch:
                self.export(self.history[-1])
        return True

    def _write_metrics(self) -> None:
        """Rewrite ``metrics.jsonl`` from the history (one line per finished epoch)."""
        if self.out_dir is not None and self.is_main:
            lines = "".join(json.dumps(r, sort_keys=True) + "\n" for r in self.history)
            atomic_write_text(self.out_dir / METRICS_FILE, lines)

    def _exported_epochs(self) -> int | None:
        """``epochs_done`` of the exported checkpoint (None if there is none)."""
        from foveal.models import CheckpointError, read_meta

        assert self.out_dir is not None
        try:
            return int(read_meta(self.out_dir).get("epochs_done", -1))
        except (CheckpointError, TypeError, ValueError):
            return None

    def export(self, metrics: dict[str, Any] | None = None) -> None:
        """Write the loadable checkpoint (``model.safetensors`` + ``model.json``)."""
        if self.out_dir is None:
            return
        from foveal.models import save

        if "arch" not in self.meta or not self.is_main:
            # Without the architecture the weights could not be rebuilt: keep only the state.
            return
        meta = dict(self.meta)
        meta["recipe"] = self.recipe.describe()
        meta["training"] = self.config.model_dump()
        meta["epochs_done"] = self.epoch
        meta["metrics"] = metrics or (self.history[-1] if self.history else {})
        save(self.model, self.out_dir, meta)

    # ------------------------------------------------------------------ loop
    def _batches(self, epoch: int) -> Iterator[tuple[int, torch.Tensor]]:
        gen = torch.Generator().manual_seed(self.config.seed * 1_000_003 + epoch)
        perm = torch.randperm(len(self.train_data), generator=gen)
        if self.world > 1:  # equal shards, padded by wrapping around (as DistributedSampler)
            total = math.ceil(len(perm) / self.world) * self.world
            perm = torch.cat([perm, perm[: total - len(perm)]])[self.rank :: self.world]
        bs = self.config.batch_size
        for b in range(self.steps_per_epoch):
            yield b, perm[b * bs : (b + 1) * bs]

    def run(self) -> TrainResult:
        """Train until ``config.epochs``; Ctrl-C saves the exact position and returns."""
        cfg = self.config
        total = cfg.epochs * self.steps_per_epoch
        start = time.perf_counter()
        bar = None
        if self.progress:
            from tqdm.auto import tqdm

            bar = tqdm(total=total, initial=self.epoch * self.steps_per_epoch + self.batch,
                       desc="train", unit="batch", dynamic_ncols=True)  # fmt: skip
        interrupted = False
        restore = self._catch_sigint()
        try:
            while self.epoch < cfg.epochs:
                self._run_epoch(total, bar)
        except _Stop:  # Ctrl-C, honoured between two batches: the position is exact
            interrupted = True
            self.rng_state = torch.get_rng_state()
            self.save_state()
            log.warning(
                "interrupted at epoch %d, batch %d; state saved, resume to continue",
                self.epoch + 1, self.batch,
            )  # fmt: skip
        except KeyboardInterrupt:
            interrupted = True
            if self._phase == "update":  # weights half updated: keep the last saved state
                log.warning(
                    "interrupted inside an optimizer update; the last saved state (epoch %d) "
                    "is kept, resume to continue from there",
                    self.epoch,
                )
            else:
                # Mid-batch: redo the running batch from the generator state at its start.
                self.rng_state = (
                    self._batch_rng if self._phase == "compute" else torch.get_rng_state()
                )
                self.save_state()
                log.warning(
                    "interrupted at epoch %d, batch %d; state saved, resume to continue",
                    self.epoch + 1, self.batch,
                )  # fmt: skip
        finally:
            restore()
            if bar is not None:
                bar.close()
        return TrainResult(self.model, list(self.history), interrupted, time.perf_counter() - start)

    def _catch_sigint(self) -> Callable[[], None]:
        """Make the first Ctrl-C a request to stop after the running batch (the second one
        interrupts at once); returns the function that restores the previous handler."""
        import signal
        import threading

        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        previous = signal.getsignal(signal.SIGINT)

        def request_stop(signum: int, frame: Any) -> None:
            self._stop_requested = True
            signal.signal(signal.SIGINT, previous)
            log.warning("stopping after this batch (Ctrl-C again to stop now)")

        def restore() -> None:
            signal.signal(signal.SIGINT, previous)

        signal.signal(signal.SIGINT, request_stop)
        return restore

    def _should_stop(self) -> bool:
        """Whether Ctrl-C asked to stop (agreed by every process under torchrun)."""
        stop = self._stop_requested
        if self.world > 1:
            import torch.distributed as dist

            flag = torch.tensor([1.0 if stop else 0.0], device=self.device)
            dist.all_reduce(flag)
            stop = bool(flag.item() > 0)
        return stop

    def _run_epoch(self, total: int, bar: Any) -> None:
        cfg, epoch = self.config, self.epoch
        if self.batch == 0 or self.rng_state is None:
            torch.manual_seed(cfg.seed * 1_000_003 + epoch + 1 + 7919 * self.rank)
        else:
            torch.set_rng_state(self.rng_state)
        self.rng_state = None
        self.model.train()
        sums: dict[str, float] = {}
        count = 0
        for b, idx in self._batches(epoch):
            if b < self.batch:
                continue
            if self._should_stop():
                raise _Stop
            self._batch_rng = torch.get_rng_state()
            self._phase = "compute"
            batch = {k: v.to(self.device) for k, v in self.train_data.batch(idx).items()}
            lr = lr_at(cfg, epoch * self.steps_per_epoch + b, total)
            for group in self.optimizer.param_groups:
                group["lr"] = lr
            loss, stats = self.recipe.loss(self.net, batch, epoch=epoch)
            if not torch.isfinite(loss):
                raise FloatingPointError(
                    f"the training loss is {float(loss)} at epoch {epoch + 1}, batch {b} (lr "
                    f"{lr:.3g}); lower the learning rate or check the data"
                )
            self.optimizer.zero_grad(set_to_none=True)
            loss.backward()
            self._phase = "update"
            self.optimizer.step()
            self.batch = b + 1
            self._phase = "done"
            for k, v in stats.items():
                sums[k] = sums.get(k, 0.0) + v * len(idx)
            count += len(idx)
            if bar is not None:
                bar.update(1)
                shown = stats["loss"] if "loss" in stats else float(loss.detach())
                bar.set_postfix(epoch=epoch + 1, loss=f"{shown:.3f}")
            if self.on_step is not None:
                self.on_step(self)
        record: dict[str, Any] = {"epoch": epoch + 1, "lr": lr}
        # Averages cover the batches run in this process (all of them unless resumed mid-epoch).
        record.update({k: v / max(count, 1) for k, v in sums.items()})
        if self.eval_data is not None and self.is_main:
            record["test_acc"] = accuracy(
                self.model, self.eval_data, batch_size=cfg.eval_batch_size
            )
            record.update(
                self.recipe.evaluate(self.model, self.eval_data, batch_size=cfg.eval_batch_size)
            )
        self._phase = "update"  # the epoch's bookkeeping: not interruptible half way
        self.epoch, self.batch = epoch + 1, 0
        self.history.append(record)
        if self.out_dir is not None and self.is_main:
            # Export first: a kill before the state is saved redoes (deterministically) this
            # epoch and exports again; the log is rebuilt from the state's history.
            self.export(record)
            self.rng_state = None
            self.save_state()
            self._write_metrics()
        self._phase = "done"
        _barrier(self.world)
        log.info("epoch %d: %s", epoch + 1, record)


class _Stop(Exception):
    """Ctrl-C asked the loop to stop between two batches."""


def fit(
    model: nn.Module,
    train_data: ArrayDataset,
    *,
    config: TrainConfig | dict[str, Any] | None = None,
    recipe: Recipe | None = None,
    eval_data: ArrayDataset | None = None,
    out_dir: str | os.PathLike[str] | None = None,
    meta: dict[str, Any] | None = None,
    resume: bool = False,
    progress: bool = False,
) -> TrainResult:
    """Train ``model`` on ``train_data``; see :class:`Trainer` and the module docstring.

    Example:
        >>> import foveal
        >>> data = foveal.data.load("shapes", n=256)
        >>> model = foveal.models.create("shapes-cnn", width=8)
        >>> result = fit(model, data, config={"epochs": 1, "batch_size": 64})
        >>> len(result.history)
        1
    """
    cfg = config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))
    trainer = Trainer(
        model, train_data, config=cfg, recipe=recipe, eval_data=eval_data, out_dir=out_dir,
        meta=meta, progress=progress,
    )  # fmt: skip
    lock = None
    if out_dir is not None and trainer.is_main:
        lock = DirectoryLock(out_dir, purpose="training").acquire()
        remove_stale_temporaries(out_dir)  # left by a process killed while writing
    try:
        if out_dir is not None and not resume and (Path(out_dir) / STATE_FILE).exists():
            raise FileExistsError(
                f"{out_dir} already holds a training run; pass resume=True (--resume) to continue "
                f"it or choose another directory"
            )
        if resume:
            trainer.load_state()
        return trainer.run()
    finally:
        if lock is not None:
            lock.release()
