"""Reference models, trained on first use and cached: the models the report and reproductions use.

Nothing is downloaded. Each entry is a :class:`~foveal.app.jobs.TrainJob` (a validated recipe, not
code) plus, for the robust models, the entry it is fine-tuned from and (SIP-S) the robust
reference it takes its saliency from. :func:`pretrained` trains what is missing, in dependency
order, into ``<cache>/zoo/<data>/<entry>-<scale>-<hash>/`` where the hash covers the whole job
and the version of foveal, so a changed recipe never reuses a stale model. A run that was
interrupted resumes where it stopped (the trainer's exact resume).

Robust models are fine-tuned from the standard one for a few epochs with a 5-step inner PGD
(see ``docs/experiments/robust-training.md``): from random weights, Madry-AT with this small
CNN stays near chance for several epochs on this machine's budget.

``report-standard`` and ``report-madry``, the pair of ``foveal evaluate``, have their own scales.

Example:
    >>> sorted(ZOO["shapes"])[:4]
    ['detectors', 'detectors-96px', 'dual', 'fat']
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foveal.app.jobs import TrainJob, run_train_job

__all__ = ["SCALES", "ZOO", "ZooEntry", "pretrained", "zoo_path"]


@dataclass(frozen=True)
class ZooEntry:
    """One reference model: recipe overrides, the entry it starts from, its SIP reference and
    its own job overrides per scale (None: :data:`SCALES` and the per-scale ``eval_n``)."""

    description: str
    recipe: dict[str, Any] = field(default_factory=dict)
    training: dict[str, Any] = field(default_factory=dict)
    job: dict[str, Any] = field(default_factory=dict)
    init: str | None = None
    reference: str | None = None
    scales: dict[str, dict[str, Any]] | None = None


_FINE_TUNE = {"epochs": 4, "lr": 1e-3}
_DETECTORS_TRAINING = {"epochs": 4, "batch_size": 64, "lr": 3e-3}


def _robust(description: str, method: str, **recipe: Any) -> ZooEntry:
    """A robust model fine-tuned from ``standard`` with a 5-step inner PGD at Linf 8/255."""
    return ZooEntry(
        f"{description}, fine-tuned from `standard`",
        recipe={"method": method, "eps": 8 / 255, "steps": 5, **recipe},
        training=_FINE_TUNE,
        init="standard",
    )


ZOO: dict[str, dict[str, ZooEntry]] = {
    "shapes": {
        "standard": ZooEntry("standard training (the `foveal train` defaults)"),
        "surrogate": ZooEntry(
            "standard training, another seed and width (a transfer surrogate)",
            training={"seed": 1},
            job={"width": 24},
        ),
        "madry": _robust("Madry-AT, Linf 8/255", "madry"),
        "dual": _robust(
            "AT-Dual, 4/255 foreground + 20/255 background", "dual", eps=4 / 255, eps_bg=20 / 255
        ),
        "trades": _robust("TRADES (beta 6), Linf 8/255", "trades"),
        "fat": _robust("friendly AT, Linf 8/255", "fat"),
        "part": _robust("PART (8/255 on salient, 7/255 elsewhere)", "part"),
        "sip-h": _robust("SIP-AT (hard masks), Linf 8/255", "sip-h"),
        "standard-96px": ZooEntry(
            "`standard` fine-tuned at 96 pixels for 3 epochs on 2,000 images (steganalysis)",
            training={"epochs": 3, "batch_size": 64, "lr": 1e-3},
            job={"size": 96, "n_train": 2000, "n_test": 200},
            init="standard",
        ),
        "detectors": ZooEntry(
            "shapes-cnn, 6 epochs on 6,000 images (the detectors experiment's classifier)",
            training={**_DETECTORS_TRAINING, "epochs": 6},
            job={"arch": "shapes-cnn", "n_train": 6000, "n_test": 500},
        ),
        "detectors-96px": ZooEntry(
            "`detectors` fine-tuned at 96 pixels for 5 epochs on 1,000 images (steganalysis)",
            training={**_DETECTORS_TRAINING, "epochs": 5},
            job={"arch": "shapes-cnn", "size": 96, "n_train": 1000, "n_test": 500},
            init="detectors",
        ),
        "sip-s": ZooEntry(
            "SIP-AT (soft, salient pixels of the Madry model), fine-tuned from `standard`",
            recipe={"method": "sip-s", "eps": 8 / 255, "steps": 5},
            training=_FINE_TUNE,
            init="standard",
            reference="madry",
        ),
        "report-standard": ZooEntry(
            "the report's standard model (`foveal train --data shapes`; quick: 3 epochs)",
            scales={
                "default": {},
                "quick": {"n_train": 10_000, "n_test": 500, "training": {"epochs": 3}},
            },
        ),
        "report-madry": ZooEntry(
            "the report's Madry-AT model (PGD-3, Linf 8/255, 3 epochs from `report-standard`)",
            recipe={"method": "madry", "eps": 8 / 255, "steps": 3, "eval_n": 500},
            training={"epochs": 3, "lr": 1e-3},
            init="report-standard",
            scales={
                "default": {},
                "quick": {
                    "n_train": 4000,
                    "n_test": 500,
                    "training": {"epochs": 2},
                    "recipe": {"steps": 2, "eval_n": 200},
                },
            },
        ),
    },
    "digits": {
        "standard": ZooEntry("standard training (the `foveal train` defaults)"),
        "detectors": ZooEntry(
            "mnist-cnn, 4 epochs in batches of 64 (the detectors experiment's classifier)",
            training=_DETECTORS_TRAINING,
            job={"arch": "mnist-cnn", "n_test": 500},
        ),
    },
}

#: Job overrides per scale: ``default`` is the documented schedule; ``smoke`` is a seconds-long
#: version for tests (tiny data, one epoch, few steps), never for numbers.
SCALES: dict[str, dict[str, Any]] = {
    "default": {},
    "smoke": {"n_train": 256, "n_test": 64, "training": {"epochs": 1}, "recipe": {"steps": 2}},
}


def _scales(entry: ZooEntry) -> dict[str, dict[str, Any]]:
    return SCALES if entry.scales is None else entry.scales


def _job(data: str, name: str, scale: str, paths: dict[str, Path]) -> TrainJob:
    entry = _entry(data, name)
    if scale not in _scales(entry):
        raise ValueError(f"scale must be one of {sorted(_scales(entry))}; got {scale!r}")
    over = _scales(entry)[scale]
    training = {**entry.training, **over.get("training", {})}
    recipe = {**entry.recipe, **over.get("recipe", {})}
    if entry.recipe.get("method", "standard") == "standard":
        recipe = {}  # standard training takes no settings
    elif entry.scales is None:
        recipe["eval_n"] = 200 if scale == "default" else 0
    if entry.reference is not None:
        recipe["reference"] = str(paths[entry.reference])
    fields: dict[str, Any] = {"n_train": None, "n_test": None, **entry.job}
    fields.update({k: over[k] for k in ("n_train", "n_test") if k in over})
    return TrainJob(
        **fields,
        data=data,
        init=None if entry.init is None else str(paths[entry.init]),
        training=training,
        recipe=recipe,
    )


def _entry(data: str, name: str) -> ZooEntry:
    if data not in ZOO:
        raise ValueError(f"no reference models for data {data!r}; available: {sorted(ZOO)}")
    if name not in ZOO[data]:
        raise ValueError(
            f"unknown reference model {name!r} for {data!r}; available: {sorted(ZOO[data])}"
        )
    return ZOO[data][name]


def _order(data: str, name: str) -> list[str]:
    """``name`` and everything it depends on, dependencies first."""
    out: list[str] = []

    def visit(n: str) -> None:
        entry = _entry(data, n)
        for dep in (entry.init, entry.reference):
            if dep is not None and dep not in out:
                visit(dep)
        if n not in out:
            out.append(n)

    visit(name)
    return out


def zoo_path(
    data: str, name: str, *, scale: str = "default", cache: str | Path | None = None
) -> Path:
    """Where :func:`pretrained` keeps ``name`` (whether or not it is trained yet)."""
    import foveal
    from foveal.data import cache_dir

    root = Path(cache) if cache is not None else cache_dir() / "zoo"
    paths: dict[str, Path] = {}
    for n in _order(data, name):
        job = _job(data, n, scale, paths).model_dump(exclude={"out"})
        # Dependencies enter the hash by their directory names (which carry their own hashes),
        # not by absolute paths: a cache moved to another root keeps its models.
        if job.get("init"):
            job["init"] = Path(job["init"]).name
        if job["recipe"].get("reference"):
            job["recipe"]["reference"] = Path(job["recipe"]["reference"]).name
        blob = json.dumps({"job": job, "version": foveal.__version__}, sort_keys=True)
        digest = hashlib.sha256(blob.encode()).hexdigest()[:10]
        paths[n] = root / data / f"{n}-{scale}-{digest}"
    return paths[name]


def _finished(path: Path, epochs: int) -> bool:
    from foveal.models import CheckpointError, read_meta

    if not (path / "model.safetensors").exists():
        return False
    try:
        return int(read_meta(path).get("epochs_done", 0)) >= epochs
    except (CheckpointError, ValueError, TypeError):
        return False


def pretrained(
    name: str,
    *,
    data: str = "shapes",
    scale: str = "default",
    cache: str | Path | None = None,
    progress: bool = False,
    log: Callable[[str], None] | None = None,
) -> Path:
    """The checkpoint directory of reference model ``name``, training it (and its
    dependencies) first if needed.

    Args:
        name: an entry of ``ZOO[data]`` (e.g. ``"standard"``, ``"madry"``, ``"dual"``).
        data: the dataset (``"shapes"`` or ``"digits"``).
        scale: ``"default"`` or ``"smoke"`` (:data:`SCALES`; ``report-*``: or ``"quick"``).
        cache: root directory (default ``<foveal cache>/zoo``).
        progress: show the trainer's progress bars.
        log: called with a line before each training run (e.g. ``typer.echo``).

    Returns:
        The checkpoint directory (load it with :func:`foveal.models.load`).
    """
    target = zoo_path(data, name, scale=scale, cache=cache)
    paths: dict[str, Path] = {}
    for n in _order(data, name):
        paths[n] = zoo_path(data, n, scale=scale, cache=cache)
        job = _job(data, n, scale, paths).model_copy(update={"out": str(paths[n])})
        if _finished(paths[n], job.training.epochs):
            continue
        if log is not None:
            log(
                f"training reference model {data}/{n} ({_entry(data, n).description}) -> {paths[n]}"
            )
        resume = (paths[n] / "train_state.safetensors").exists()
        if run_train_job(job, resume=resume, progress=progress).interrupted:
            raise KeyboardInterrupt(f"training of {paths[n]} interrupted; run again to resume")
    return target
