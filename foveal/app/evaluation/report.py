"""The :class:`Report`: the results of one evaluation, its headline, summary and rendering.

A report is rebuilt from two files of the output directory: ``suite.json`` (the effective
config, the models, the data and the list of cells with their keys, written when a run starts)
and ``results.jsonl`` (one record per finished cell). ``Report.load(out)`` therefore works in a
notebook, after an interrupted run (``complete`` is False and ``missing`` lists what is left),
and on results computed on another machine.

The headline (see docs/evaluate.md, "The headline") compares, per model, the per-image worst
case over the standard PGD cells within the headline budgets with the worst case over the
unsuspicious attacks (dual-perturbation with eps_F within the Linf budget, SIP and the
perceptual ball within the Linf budget, SAI-FGM within the delta budget): an image counts as
robust only if it is classified correctly clean and under every attack of the group.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foveal.app.evaluation.config import EvaluateConfig, budget_label
from foveal.app.evaluation.runner import RunStats, read_results
from foveal.app.evaluation.sanity import SanityWarning, sanity_checks
from foveal.app.evaluation.suite import UNSUSPICIOUS
from foveal.io import atomic_write_text

__all__ = ["SUITE_FILE", "Report"]

SUITE_FILE = "suite.json"
SUMMARY_FILE = "summary.json"
HTML_FILE = "report.html"


def _worst_case(records: list[dict[str, Any]], clean: str | None) -> float | None:
    """Fraction of images correct in ``clean`` and in every record's ``correct`` string."""
    strings = [r["correct"] for r in records if r.get("correct")]
    if clean:
        strings.append(clean)
    if not strings or not records:
        return None
    n = min(len(s) for s in strings)
    robust = sum(1 for i in range(n) if all(s[i] == "1" for s in strings))
    return robust / n if n else None


@dataclass
class Report:
    """Results of one evaluation (see the module docstring).

    Attributes:
        out: the output directory.
        config: the effective :class:`~foveal.app.evaluation.config.EvaluateConfig`.
        suite: the content of ``suite.json`` (models, data, cells).
        records: finished cells' records by key.
        interrupted: the run that produced this report was interrupted.
        stats: what the run computed and skipped (``None`` for a loaded report).
    """

    out: Path
    config: EvaluateConfig
    suite: dict[str, Any]
    records: dict[str, dict[str, Any]]
    interrupted: bool = False
    stats: RunStats | None = None
    _warnings: list[SanityWarning] | None = field(default=None, repr=False)

    # ------------------------------------------------------------------ loading
    @classmethod
    def load(cls, out: str | Path) -> Report:
        """Rebuild the report of output directory ``out`` from its files.

        Raises:
            ValueError: ``out`` holds no ``suite.json`` (no evaluation ran there).
        """
        path = Path(out)
        suite_path = path / SUITE_FILE
        if not suite_path.is_file():
            raise ValueError(
                f"{str(path)!r} holds no {SUITE_FILE}; it is not the output of foveal evaluate"
            )
        suite = json.loads(suite_path.read_text(encoding="utf-8"))
        config = EvaluateConfig(**suite["config"])
        return cls(path, config, suite, read_results(path))

    # ------------------------------------------------------------------ access
    @property
    def cells(self) -> list[dict[str, Any]]:
        """The suite's cells (``key``, ``family``, ``model``, ``settings``, ``label``)."""
        return list(self.suite["cells"])

    @property
    def results(self) -> list[dict[str, Any]]:
        """Records of the finished cells, in suite order."""
        return [self.records[c["key"]] for c in self.cells if c["key"] in self.records]

    @property
    def missing(self) -> list[dict[str, Any]]:
        """Cells not computed yet."""
        return [c for c in self.cells if c["key"] not in self.records]

    @property
    def complete(self) -> bool:
        return not self.missing

    @property
    def models(self) -> list[str]:
        """Names of the evaluated models (surrogates excluded)."""
        return [m["name"] for m in self.suite["models"] if m["role"] == "model"]

    @property
    def surrogates(self) -> list[str]:
        return [m["name"] for m in self.suite["models"] if m["role"] == "surrogate"]

    @property
    def detectors(self) -> list[str]:
        return [d["name"] for d in self.suite.get("detectors", [])]

    @property
    def n(self) -> int:
        return int(self.suite["data"]["n"])

    @property
    def warnings(self) -> list[SanityWarning]:
        """The sanity-check warnings of the finished cells."""
        if self._warnings is None:
            self._warnings = sanity_checks(self.results, n=self.n)
        return self._warnings

    def select(
        self, model: str | None = None, family: str | None = None, **settings: Any
    ) -> list[dict[str, Any]]:
        """Finished records matching ``model``, ``family`` and every given setting."""
        out = []
        for r in self.results:
            if model is not None and r["model"] != model:
                continue
            if family is not None and r["family"] != family:
                continue
            s = r.get("settings", {})
            if all(k in s and _same(s[k], v) for k, v in settings.items()):
                out.append(r)
        return out

    @staticmethod
    def transform_results(record: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
        """``(label, results)`` of a ``sai`` record's transforms, in the config's order (the
        first entry, ``none``, is the plain model)."""
        from foveal.app.evaluation.config import TransformSpec

        stored = record.get("transforms") or {}
        labels = [TransformSpec(**t).label for t in record["settings"].get("transforms", [])]
        labels += [lb for lb in stored if lb not in labels]
        plain = {k: record.get("metrics", {}).get(k) for k in ("accuracy", "success_rate")}
        return [("none", plain)] + [(lb, stored[lb]) for lb in labels if lb in stored]

    def accuracy(self, model: str, family: str, **settings: Any) -> float | None:
        """Robust accuracy of the one finished cell matching the arguments (None if absent).

        Example: ``report.accuracy("madry", "pgd", norm="linf", eps=8/255)``.
        """
        found = self.select(model, family, **settings)
        if not found:
            return None
        value = found[0].get("metrics", {}).get("accuracy")
        return None if value is None else float(value)

    # ------------------------------------------------------------------ headline
    def _clean(self, model: str) -> dict[str, Any] | None:
        found = self.select(model, "clean")
        return found[0] if found else None

    def headline_groups(self, model: str) -> dict[str, list[dict[str, Any]]]:
        """The records of each headline group: ``pgd``, ``unsuspicious`` and ``autoattack``."""
        h = self.config.headline
        groups: dict[str, list[dict[str, Any]]] = {"pgd": [], "unsuspicious": [], "autoattack": []}
        for r in self.select(model):
            s, fam = r.get("settings", {}), r["family"]
            if fam in ("pgd", "autoattack"):
                limit = h.linf_eps if s["norm"] == "linf" else h.l2_eps
                if s["eps"] <= limit + 1e-9:
                    groups[fam].append(r)
            elif fam in UNSUSPICIOUS:
                if fam == "dual":
                    limit = h.linf_eps if s["norm"] == "linf" else h.l2_eps
                    ok = s["eps_fg"] <= limit + 1e-9
                elif fam == "sai":
                    ok = s["attack"] == "sai-fgm" and s["delta"] <= h.sai_delta + 1e-9
                else:
                    ok = s["eps"] <= h.linf_eps + 1e-9
                if ok:
                    groups["unsuspicious"].append(r)
        return groups

    def headline(self) -> list[dict[str, Any]]:
        """One row per model: clean accuracy, the per-image worst case under standard PGD and
        under the unsuspicious attacks, and the strongest single attack of each group."""
        rows = []
        for model in self.models:
            clean = self._clean(model)
            clean_string = clean.get("correct") if clean else None
            row: dict[str, Any] = {
                "model": model,
                "clean_accuracy": clean["metrics"]["accuracy"] if clean else None,
            }
            for name, recs in self.headline_groups(model).items():
                scored = [r for r in recs if r.get("metrics", {}).get("accuracy") is not None]
                strongest = min(scored, key=lambda r: r["metrics"]["accuracy"], default=None)
                row[name] = {
                    "worst_case_accuracy": _worst_case(scored, clean_string),
                    "cells": len(scored),
                    "strongest": strongest["label"] if strongest else None,
                    "strongest_accuracy": strongest["metrics"]["accuracy"] if strongest else None,
                }
            pgd, uns = row["pgd"]["worst_case_accuracy"], row["unsuspicious"]["worst_case_accuracy"]
            row["gap"] = None if pgd is None or uns is None else pgd - uns
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ outputs
    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: data, models, headline, every cell's key numbers, warnings."""
        import foveal

        cells = []
        for r in self.results:
            if r["family"] == "probe":
                continue
            m = r.get("metrics", {})
            item: dict[str, Any] = {
                "model": r["model"],
                "family": r["family"],
                "label": r["label"],
                "settings": r.get("settings", {}),
                "accuracy": m.get("accuracy"),
                "success_rate": m.get("success_rate"),
                "foreground_score": m.get("foreground_score"),
            }
            for extra in ("transforms", "detection"):
                if extra in r:
                    item[extra] = r[extra]
            if "targets" in r:
                item["targets"] = {
                    t: {k: v for k, v in res.items() if k != "correct"}
                    for t, res in r["targets"].items()
                }
            cells.append(item)
        return {
            "foveal_version": foveal.__version__,
            "data": self.suite["data"],
            "models": self.suite["models"],
            "detectors": self.suite.get("detectors", []),
            "preset": self.config.preset,
            "complete": self.complete,
            "missing_cells": len(self.missing),
            "headline": self.headline(),
            "cells": cells,
            "warnings": [w.as_dict() for w in self.warnings],
            "config": self.config.model_dump(mode="json"),
        }

    def table(self) -> str:
        """The headline as a plain-text table (for the terminal)."""
        h = self.config.headline
        header = [
            "model",
            "clean",
            f"PGD (Linf<={budget_label(h.linf_eps)}, L2<={h.l2_eps:g})",
            "unsuspicious",
            "gap",
            "strongest unsuspicious attack",
        ]
        rows = [header]
        for row in self.headline():
            rows.append(
                [
                    row["model"],
                    _pct(row["clean_accuracy"]),
                    _pct(row["pgd"]["worst_case_accuracy"]),
                    _pct(row["unsuspicious"]["worst_case_accuracy"]),
                    "-" if row["gap"] is None else f"{100 * row['gap']:+.1f}",
                    row["unsuspicious"]["strongest"] or "-",
                ]
            )
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(header))]
        lines = [
            "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def render(self, out: str | Path | None = None) -> Path:
        """Write the charts (``figures/*.png``), ``report.html`` and ``summary.json`` into
        ``out`` (default: the report's directory); returns the path of ``report.html``."""
        from foveal.app.evaluation.html import render_html

        target = Path(out) if out is not None else self.out
        target.mkdir(parents=True, exist_ok=True)
        figures = _render_figures(self, target / "figures")
        summary = self.summary()
        summary["figures"] = {k: str(v.relative_to(target)) for k, v in figures.items()}
        atomic_write_text(target / SUMMARY_FILE, json.dumps(summary, indent=2) + "\n")
        html_path = target / HTML_FILE
        atomic_write_text(html_path, render_html(self, figures))
        return html_path


def _render_figures(report: Report, directory: Path) -> dict[str, Path]:
    from foveal.app.evaluation import charts

    directory.mkdir(parents=True, exist_ok=True)
    return charts.render_all(report, directory)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) < 1e-9
        except (TypeError, ValueError):
            return False
    return bool(a == b)


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{100 * value:.1f}%"
