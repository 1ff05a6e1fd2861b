"""The suite: the list of (model, attack, setting) cells a config describes, and their keys.

A :class:`~foveal.app.evaluation.family.Cell` is one unit of work and of storage: one attack at
one setting on one model (or, for ``transfer``, one attack crafted on a source model and
evaluated on every target). Its key digests everything its result depends on (the family, the
settings, the seed, the fingerprints of the model, the data, the targets and the detectors, and
the foveal version), so a finished cell is recognised in ``results.jsonl`` and never recomputed,
and a changed model or setting never reuses a stale result.

Order: per model, every family's cells in family order (``probe``, ``clean``, ``pgd``, ``dual``,
``sip``, ``sai``, ``perceptual``, ``autoattack``); then the suite-level cells (``transfer`` per
source model).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from typing import Any

from foveal.app.evaluation.config import EvaluateConfig
from foveal.app.evaluation.family import Cell, families, family

__all__ = ["build_suite", "cell_key"]


def build_suite(
    config: EvaluateConfig,
    models: Sequence[str],
    *,
    sources: Sequence[str] = (),
    has_masks: bool = True,
) -> list[Cell]:
    """All cells for ``models`` under ``config``; ``sources``: surrogate names for transfer.

    Raises:
        ValueError: a setting needs ground-truth masks that the data do not have.
    """
    found = families()
    cells = [c for m in models for f in found for c in f.cells(config, m, has_masks=has_masks)]
    for f in found:
        cells += f.suite_cells(config, models, sources, has_masks=has_masks)
    return cells


def cell_key(cell: Cell, fingerprints: dict[str, Any]) -> str:
    """The digest that identifies ``cell``'s result (see the module docstring).

    ``fingerprints`` holds ``models`` (name -> fingerprint), ``data``, ``detectors`` (list)
    and ``seed``; the family adds what else its cells depend on
    (:meth:`~foveal.app.evaluation.family.Family.key_payload`).
    """
    import foveal

    payload: dict[str, Any] = {
        "family": cell.family,
        "model": fingerprints["models"][cell.model],
        "settings": cell.settings,
        "data": fingerprints["data"],
        "seed": fingerprints["seed"],
        "version": foveal.__version__,
        **family(cell.family).key_payload(cell, fingerprints),
    }
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]
