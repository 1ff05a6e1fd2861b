"""``evaluate(...)``: the evaluation suite as one call, returning a :class:`Report`."""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import torch

from foveal.app.evaluation.cells import CellContext
from foveal.app.evaluation.config import EvaluateConfig, build_config, load_config_file
from foveal.app.evaluation.family import build_suite, cell_key
from foveal.app.evaluation.models import (
    LoadedModel,
    ModelsLike,
    data_fingerprint,
    default_models,
    resolve_detectors,
    resolve_models,
)
from foveal.app.evaluation.report import SUITE_FILE, Report
from foveal.app.evaluation.runner import run_cells
from foveal.data import ArrayDataset
from foveal.io import atomic_write_text

__all__ = ["evaluate"]

ConfigLike = EvaluateConfig | Mapping[str, Any] | str | os.PathLike[str] | None


def _config(config: ConfigLike, preset: str | None) -> EvaluateConfig:
    if isinstance(config, EvaluateConfig):
        if preset is not None and preset != config.preset:
            raise ValueError(
                f"preset={preset!r} conflicts with the given EvaluateConfig (preset "
                f"{config.preset!r}); build the config with that preset instead"
            )
        return config
    if isinstance(config, (str, os.PathLike)):
        raw: Mapping[str, Any] = load_config_file(Path(config))
    else:
        raw = config or {}
    return build_config(raw, preset_name=preset)


def _load_data(cfg: EvaluateConfig, data: str | ArrayDataset | None, size: int | None) -> Any:
    import foveal

    if isinstance(data, ArrayDataset):
        if len(data) < cfg.n:
            raise ValueError(f"n={cfg.n} but the dataset holds only {len(data)} images")
        return data.subset(slice(0, cfg.n)) if len(data) > cfg.n else data
    name = cfg.data if data is None else data
    root = cfg.data_root
    return foveal.data.load(name, split=cfg.split, n=cfg.n, size=cfg.size or size, root=root)


def _model_size(models: Sequence[LoadedModel]) -> int | None:
    for m in models:
        shape = m.meta.get("input_shape")
        if isinstance(shape, (list, tuple)) and shape:
            return int(shape[-1])
    return None


def _check_compatible(
    models: Sequence[LoadedModel], images: torch.Tensor, labels: torch.Tensor
) -> None:
    """Fail early, naming the model, when a model cannot classify the evaluation images."""
    from foveal._modes import eval_mode

    x = images[:2]
    top = int(labels.max()) if labels.numel() else 0
    for m in models:
        try:
            with eval_mode(m.module), torch.no_grad():
                logits = m.module(x)
        except RuntimeError as exc:
            raise ValueError(
                f"model {m.name!r} cannot classify the evaluation images of shape "
                f"{tuple(x.shape[1:])}: {exc}"
            ) from None
        if not isinstance(logits, torch.Tensor) or logits.ndim != 2:
            shape = tuple(logits.shape) if isinstance(logits, torch.Tensor) else type(logits)
            raise ValueError(f"model {m.name!r} must return logits (N, classes); got {shape}")
        if logits.shape[1] <= top:
            raise ValueError(
                f"model {m.name!r} has {logits.shape[1]} outputs but the data have label {top}"
            )


def evaluate(
    models: ModelsLike = None,
    data: str | ArrayDataset | None = None,
    *,
    config: ConfigLike = None,
    preset: str | None = None,
    out: str | os.PathLike[str] = "runs/evaluate",
    surrogates: ModelsLike = None,
    detectors: Sequence[Any] | Mapping[str, Any] | None = None,
    device: str | torch.device = "cpu",
    progress: bool = False,
    render: bool = True,
) -> Report:
    """Run the unsuspicious-robustness suite and return its :class:`Report`.

    Every (model, attack, setting) cell is appended to ``out/results.jsonl`` as soon as it is
    finished; calling again with the same arguments skips the finished cells (resume). Ctrl-C
    keeps every finished cell and returns a report with ``interrupted=True`` (not rendered).

    Args:
        models: checkpoint directories, ``nn.Module`` objects, or a mapping name -> either;
            ``None`` (and an empty ``config.models``): the built-in standard and Madry-trained
            ``shapes`` CNNs, trained on first use and cached.
        data: a dataset name or an :class:`~foveal.data.ArrayDataset` (default:
            ``config.data``); the first ``config.n`` images are used.
        config: an :class:`EvaluateConfig`, a mapping of overrides, or a YAML/JSON/TOML file
            (see docs/evaluate.md); unknown keys raise ``pydantic.ValidationError``.
        preset: ``"quick"``, ``"default"`` or ``"full"`` (default: the config's, else
            ``"default"``).
        out: output directory (``suite.json``, ``results.jsonl``, ``examples/``, and after
            rendering ``figures/``, ``report.html``, ``summary.json``).
        surrogates: source models for the transfer matrix (same forms as ``models``).
        detectors: objects with ``detect(images) -> bool (N,)`` or directories saved by
            ``foveal.detectors`` (optional).
        device: torch device for models and data.
        progress: show a progress bar (and the default models' training progress).
        render: write the charts, ``report.html`` and ``summary.json`` at the end.

    Returns:
        The :class:`Report` (``report.headline()``, ``report.warnings``, ``report.render()``),
        e.g. ``print(evaluate(preset="quick", out="runs/quick").table())``.
    """
    cfg = _config(config, preset)
    out_dir = Path(out)
    model_specs: ModelsLike = models
    if model_specs is None and cfg.models:
        model_specs = list(cfg.models)
    if model_specs is None:
        name = data if isinstance(data, str) else cfg.data if data is None else data.name
        if name != "shapes":
            raise ValueError(
                f"the built-in models are shapes classifiers; give the models to evaluate on "
                f"{name!r} (--model CKPT)"
            )
        built_in = default_models(quick=cfg.preset == "quick", progress=progress)
        model_specs = {k: str(v) for k, v in built_in.items()}
    loaded = resolve_models(model_specs, device=device)
    if not loaded:
        raise ValueError("no models to evaluate")
    surrogate_specs = surrogates if surrogates is not None else (list(cfg.surrogates) or None)
    sources = resolve_models(surrogate_specs, device=device, role="surrogate")
    clash = {m.name for m in loaded} & {s.name for s in sources}
    sources = [replace(s, name=f"surrogate-{s.name}") if s.name in clash else s for s in sources]
    detector_specs = detectors if detectors is not None else (list(cfg.detectors) or None)
    dets = resolve_detectors(detector_specs, model=loaded[0].module)
    dataset = _load_data(cfg, data, _model_size(loaded))
    masks, images, labels = dataset.masks, dataset.images.to(device), dataset.labels.to(device)
    _check_compatible([*loaded, *sources], images, labels)
    names, has_masks = [m.name for m in loaded], masks is not None
    cells = build_suite(cfg, names, sources=[s.name for s in sources], has_masks=has_masks)
    fingerprints = {
        "models": {m.name: m.fingerprint for m in [*loaded, *sources]},
        "data": data_fingerprint(dataset),
        "detectors": [d.fingerprint for d in dets],
        "seed": cfg.seed,
    }
    keys = [cell_key(c, fingerprints) for c in cells]
    suite = {
        "config": cfg.model_dump(mode="json"),
        "models": [
            {"name": m.name, "role": role, "source": m.source, "fingerprint": m.fingerprint}
            for role, group in (("model", loaded), ("surrogate", sources))
            for m in group
        ],
        "detectors": [
            {"name": d.name, "source": d.source, "fingerprint": d.fingerprint} for d in dets
        ],
        "data": {
            "name": dataset.name,
            "split": cfg.split,
            "n": len(dataset),
            "image_shape": list(dataset.image_shape),
            "has_masks": masks is not None,
            "fingerprint": fingerprints["data"],
        },
        "cells": [{"key": k, **c.describe()} for c, k in zip(cells, keys, strict=True)],
    }
    out_dir.mkdir(parents=True, exist_ok=True)
    atomic_write_text(out_dir / SUITE_FILE, json.dumps(suite, indent=2) + "\n")
    ctx = CellContext(
        models={m.name: m.module for m in [*loaded, *sources]},
        images=images,
        labels=labels,
        masks=None if masks is None else masks.to(device),
        seed=cfg.seed,
        batch_size=cfg.batch_size,
        examples=cfg.examples,
        out=out_dir,
        detectors=dets,
    )
    stats = run_cells(cells, keys, ctx, progress=progress)
    report = Report.load(out_dir)
    report.interrupted = stats.interrupted
    report.stats = stats
    if render and not stats.interrupted:
        report.render()
    return report
