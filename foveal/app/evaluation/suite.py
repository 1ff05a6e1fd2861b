"""The suite: the list of (model, attack, setting) cells a config describes.

A :class:`Cell` is one unit of work and of storage: one attack at one setting on one model (or,
for ``transfer``, one attack crafted on a source model and evaluated on every target). Its key
digests everything its result depends on (the family, the settings, the seed, the fingerprints
of the model, the data, the targets and the detectors, and the foveal version), so a finished
cell is recognised in ``results.jsonl`` and never recomputed, and a changed model or setting
never reuses a stale result.

Families (in run order per model): ``probe`` (sanity probes), ``clean``, ``pgd``, ``dual``
(grid, then the lambda sweep), ``sip``, ``sai`` (SAI-FGM and I-FGM, with the transforms),
``perceptual``, ``autoattack``; then ``transfer`` per source model.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from foveal.app.evaluation.config import EvaluateConfig, budget_label

__all__ = ["FAMILIES", "UNSUSPICIOUS", "Cell", "build_suite", "cell_key"]

#: Every family, in report order.
FAMILIES = (
    "probe",
    "clean",
    "pgd",
    "dual",
    "sip",
    "sai",
    "perceptual",
    "autoattack",
    "transfer",
)

#: Families whose perturbations are built to go unnoticed (the headline's "unsuspicious" side).
UNSUSPICIOUS = ("dual", "sip", "sai", "perceptual")


@dataclass(frozen=True)
class Cell:
    """One (model, attack, setting) of the suite.

    Attributes:
        family: one of :data:`FAMILIES`.
        model: name of the attacked model (the source model for ``transfer``).
        settings: JSON-ready attack settings (everything but the seed and the data).
        label: human-readable description, e.g. ``"dual Linf eps_F=4/255 eps_B=20/255 lam=1"``.
        examples: whether this cell saves an example grid.
    """

    family: str
    model: str
    settings: dict[str, Any] = field(default_factory=dict)
    label: str = ""
    examples: bool = False

    def describe(self) -> dict[str, Any]:
        return {
            "family": self.family,
            "model": self.model,
            "settings": self.settings,
            "label": self.label,
            "examples": self.examples,
        }


def cell_key(cell: Cell, fingerprints: dict[str, Any]) -> str:
    """The digest that identifies ``cell``'s result (see the module docstring).

    ``fingerprints`` holds ``models`` (name -> fingerprint), ``data``, ``detectors`` (list),
    ``seed`` and ``version``.
    """
    import foveal

    models = fingerprints["models"]
    payload: dict[str, Any] = {
        "family": cell.family,
        "model": models[cell.model],
        "settings": cell.settings,
        "data": fingerprints["data"],
        "seed": fingerprints["seed"],
        "version": foveal.__version__,
    }
    if cell.family == "transfer":
        payload["targets"] = [models[t] for t in cell.settings["targets"]]
    if cell.family not in ("clean",):
        payload["detectors"] = fingerprints.get("detectors", [])
    text = json.dumps(payload, sort_keys=True)
    return hashlib.sha256(text.encode()).hexdigest()[:20]


def _closest(values: Sequence[float], target: float) -> float | None:
    return min(values, key=lambda v: (abs(v - target), v)) if values else None


def _mask_source(choice: str, has_masks: bool) -> str:
    if choice == "auto":
        return "ground-truth" if has_masks else "fixation"
    if choice == "ground-truth" and not has_masks:
        raise ValueError(
            "masks: 'ground-truth' needs a dataset with foreground masks (e.g. shapes); use "
            "'fixation' or 'auto'"
        )
    return choice


def _norm_label(norm: str) -> str:
    return "Linf" if norm == "linf" else "L2"


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
    cells: list[Cell] = []
    head = config.headline
    for m in models:
        cells.append(Cell("probe", m, {}, "sanity probe"))
        cells.append(Cell("clean", m, {}, "clean"))
        cells.extend(_pgd_cells(config, m))
        cells.extend(_dual_cells(config, m, has_masks))
        if config.sip.enabled:
            s = config.sip
            masks = _mask_source(s.masks, has_masks)
            show = _closest([e for e in s.eps if e <= head.linf_eps] or s.eps, head.linf_eps)
            for eps in s.eps:
                cells.append(
                    Cell(
                        "sip",
                        m,
                        {"norm": "linf", "eps": eps, "steps": s.steps, "masks": masks},
                        f"SIP (salient pixels frozen) Linf {budget_label(eps)}",
                        examples=eps == show,
                    )
                )
        cells.extend(_sai_cells(config, m))
        if config.perceptual.enabled:
            p = config.perceptual
            show = _closest(p.eps, head.linf_eps)
            for eps in p.eps:
                cells.append(
                    Cell(
                        "perceptual",
                        m,
                        {"eps": eps, "steps": p.steps},
                        f"perceptual ball Linf {budget_label(eps)}",
                        examples=eps == show,
                    )
                )
        if config.autoattack.enabled:
            a = config.autoattack
            ref = head.linf_eps if a.norm == "linf" else head.l2_eps
            show = _closest(a.eps, ref)
            for eps in a.eps:
                cells.append(
                    Cell(
                        "autoattack",
                        m,
                        {"norm": a.norm, "eps": eps, "steps": a.steps, "n_queries": a.n_queries},
                        f"AutoAttack {_norm_label(a.norm)} {budget_label(eps, a.norm)}",
                        examples=eps == show,
                    )
                )
    if sources:
        t = config.transfer
        masks = _mask_source(config.dual.masks, has_masks)
        for source in [*sources, *models]:
            for attack in t.attacks:
                if attack == "pgd":
                    settings: dict[str, Any] = {"attack": "pgd", "eps": t.eps, "steps": t.steps}
                    label = f"transfer PGD Linf {budget_label(t.eps)} from {source}"
                else:
                    settings = {
                        "attack": "dual",
                        "eps_fg": t.eps_fg,
                        "eps_bg": t.eps_bg,
                        "lam": config.dual.lam,
                        "steps": t.steps,
                        "masks": masks,
                    }
                    label = (
                        f"transfer dual eps_F={budget_label(t.eps_fg)} "
                        f"eps_B={budget_label(t.eps_bg)} from {source}"
                    )
                settings["targets"] = list(models)
                cells.append(Cell("transfer", source, settings, label))
    return cells


def _pgd_cells(config: EvaluateConfig, m: str) -> list[Cell]:
    p = config.pgd
    if not p.enabled:
        return []
    out = []
    for norm, budgets, ref in (
        ("linf", p.linf, config.headline.linf_eps),
        ("l2", p.l2, config.headline.l2_eps),
    ):
        show = _closest(budgets, ref)
        for eps in budgets:
            out.append(
                Cell(
                    "pgd",
                    m,
                    {"norm": norm, "eps": eps, "steps": p.steps, "restarts": p.restarts},
                    f"PGD {_norm_label(norm)} {budget_label(eps, norm)}",
                    examples=eps == show,
                )
            )
    return out


def _dual_cells(config: EvaluateConfig, m: str, has_masks: bool) -> list[Cell]:
    d = config.dual
    if not d.enabled:
        return []
    masks = _mask_source(d.masks, has_masks)
    settings_seen: list[dict[str, Any]] = []
    out = []

    def add(ef: float, eb: float, lam: float, examples: bool) -> None:
        s = {
            "norm": d.norm,
            "eps_fg": ef,
            "eps_bg": eb,
            "lam": lam,
            "steps": d.steps,
            "masks": masks,
        }
        if s in settings_seen:
            return
        settings_seen.append(s)
        label = (
            f"dual {_norm_label(d.norm)} eps_F={budget_label(ef, d.norm)} "
            f"eps_B={budget_label(eb, d.norm)} lam={lam:g}"
        )
        out.append(Cell("dual", m, s, label, examples=examples))

    for ef in d.eps_fg:
        for eb in d.eps_bg:
            if ef == 0 and eb == 0:
                continue  # no perturbation: the clean cell (the heatmap shows it there)
            show = ef == d.sweep_eps_fg and eb == d.sweep_eps_bg
            add(ef, eb, d.lam, show)
    shown = any(c.examples for c in out)
    for lam in d.lambdas:
        add(d.sweep_eps_fg, d.sweep_eps_bg, lam, not shown and lam == d.lam)
    if not any(c.examples for c in out) and out:
        first = out[0]
        out[0] = Cell(first.family, first.model, first.settings, first.label, examples=True)
    return out


def _sai_cells(config: EvaluateConfig, m: str) -> list[Cell]:
    s = config.sai
    if not s.enabled:
        return []
    transforms = [t.model_dump() for t in s.transforms]
    show = _closest(s.deltas, config.headline.sai_delta)
    out = []
    for delta in s.deltas:
        common = {"delta": delta, "steps": s.steps, "transforms": transforms}
        out.append(
            Cell(
                "sai",
                m,
                {"attack": "sai-fgm", **common, "size": s.size, "beta": s.beta, "phi": s.phi},
                f"SAI-FGM delta={delta:g}",
                examples=delta == show,
            )
        )
        if s.baseline:
            out.append(
                Cell(
                    "sai",
                    m,
                    {"attack": "i-fgm", **common},
                    f"I-FGM delta={delta:g}",
                    examples=delta == show,
                )
            )
    return out
