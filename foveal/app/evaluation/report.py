"""The :class:`Report`: the results of one evaluation, its headline, sanity checks and summary.

A report is rebuilt from ``suite.json`` (the effective config, the models, the data and the
cells with their keys, written when a run starts) and ``results.jsonl`` (one record per finished
cell), so ``Report.load(out)`` works in a notebook, after an interrupted run (``missing`` lists
what is left) and on results computed elsewhere. A report only queries its records: the families
say which headline group a record belongs to and what to check;
:mod:`~foveal.app.evaluation.render` draws. The headline (docs/evaluate.md, "The headline")
compares, per model, the per-image worst case over the standard PGD cells within the headline
budgets with the worst case over the unsuspicious attacks.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from foveal.app.cache import CellCache
from foveal.app.evaluation.config import FAMILIES, EvaluateConfig, budget_label
from foveal.app.evaluation.family import HEADLINE_GROUPS, Family, family
from foveal.app.evaluation.render import pct, render
from foveal.app.evaluation.results import Record, Results
from foveal.app.evaluation.runner import RunStats
from foveal.app.evaluation.sanity import (
    Point,
    SanityWarning,
    comparison_warning,
    series_warning,
    tolerance,
)

__all__ = ["SUITE_FILE", "Report", "sanity_checks"]

SUITE_FILE = "suite.json"


_BARE: Family[Any] = Family()  # what is known of a family that is not registered: nothing


def _family(name: str) -> Family[Any]:
    return family(name) if name in FAMILIES else _BARE


def as_record(data: Mapping[str, Any] | Record) -> Record:
    """A record of its family's record type (a plain :class:`Record` for unknown families)."""
    return data if isinstance(data, Record) else _family(data["family"]).record_type.from_json(data)


def sanity_checks(records: Sequence[Mapping[str, Any] | Record], *, n: int) -> list[SanityWarning]:
    """All warnings for the records of one run (``n``: the number of evaluation images)."""
    tol, rs = tolerance(n), [as_record(r) for r in records]
    out = [w for r in rs for w in _family(r.family).warnings(r)]
    groups: dict[tuple[Any, ...], tuple[str, list[Point]]] = {}
    for r in (r for r in rs if r.accuracy is not None):
        for group, name, point in _family(r.family).series(r):
            groups.setdefault(group, (name, []))[1].append(point)
    out += [w for g, (name, p) in groups.items() if (w := series_warning(g[0], name, p, tol))]
    comparisons = [c for r in rs for c in _family(r.family).stronger(r, rs)]
    return out + [w for c in comparisons if (w := comparison_warning(c, tol))]


def _worst_case(records: list[Record], clean: str | None) -> float | None:
    """Fraction of images correct in ``clean`` and in every record's ``correct`` string."""
    strings = [r.correct for r in records if r.correct]
    if clean:
        strings.append(clean)
    if not strings or not records:
        return None
    n = min(len(s) for s in strings)
    robust = sum(1 for i in range(n) if all(s[i] == "1" for s in strings))
    return robust / n if n else None


@dataclass
class Report(Results):
    """Results of one evaluation (see the module docstring).

    Attributes (besides those of :class:`~foveal.app.evaluation.results.Results`):
        interrupted: the run that produced this report was interrupted.
        stats: what the run computed and skipped (``None`` for a loaded report).
    """

    interrupted: bool = False
    stats: RunStats | None = None
    _warnings: list[SanityWarning] | None = field(default=None, repr=False)

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
        records = {k: as_record(r) for k, r in CellCache(path).records().items()}
        return cls(path, config, suite, records)

    @property
    def warnings(self) -> list[SanityWarning]:
        """The sanity-check warnings of the finished cells."""
        if self._warnings is None:
            self._warnings = sanity_checks(self.results, n=self.n)
        return self._warnings

    # ------------------------------------------------------------------ headline
    def headline_groups(self, model: str) -> dict[str, list[Record]]:
        """The records of each headline group: ``pgd``, ``unsuspicious`` and ``autoattack``."""
        groups: dict[str, list[Record]] = {g: [] for g in HEADLINE_GROUPS}
        for r in self.select(model):
            group = _family(r.family).headline(r, self.config)
            if group is not None:
                groups[group].append(r)
        return groups

    def headline(self) -> list[dict[str, Any]]:
        """One row per model: clean accuracy, the per-image worst case under standard PGD and
        under the unsuspicious attacks, and the strongest single attack of each group."""
        rows = []
        for model in self.models:
            found = self.select(model, "clean")
            clean = found[0] if found else None
            row: dict[str, Any] = {
                "model": model,
                "clean_accuracy": clean.accuracy if clean else None,
            }
            for name, recs in self.headline_groups(model).items():
                scored = [r for r in recs if r.accuracy is not None]
                strongest = min(scored, key=lambda r: r.metrics["accuracy"], default=None)
                row[name] = {
                    "worst_case_accuracy": _worst_case(scored, clean.correct if clean else None),
                    "cells": len(scored),
                    "strongest": strongest.label if strongest else None,
                    "strongest_accuracy": strongest.metrics["accuracy"] if strongest else None,
                }
            pgd, uns = row["pgd"]["worst_case_accuracy"], row["unsuspicious"]["worst_case_accuracy"]
            row["gap"] = None if pgd is None or uns is None else pgd - uns
            rows.append(row)
        return rows

    # ------------------------------------------------------------------ outputs
    def summary(self) -> dict[str, Any]:
        """JSON-ready summary: data, models, headline, every cell's key numbers, warnings."""
        import foveal

        listed = [r for r in self.results if _family(r.family).listed]
        return {
            "foveal_version": foveal.__version__,
            "data": self.suite["data"],
            "models": self.suite["models"],
            "detectors": self.suite.get("detectors", []),
            "preset": self.config.preset,
            "complete": self.complete,
            "missing_cells": len(self.missing),
            "headline": self.headline(),
            "cells": [r.summary() for r in listed],
            "warnings": [w.as_dict() for w in self.warnings],
            "config": self.config.model_dump(mode="json"),
        }

    def table(self) -> str:
        """The headline as a plain-text table (for the terminal)."""
        h = self.config.headline
        pgd = f"PGD (Linf<={budget_label(h.linf_eps)}, L2<={h.l2_eps:g})"
        rows = [["model", "clean", pgd, "unsuspicious", "gap", "strongest unsuspicious attack"]]
        for row in self.headline():
            worst = [pct(row[g]["worst_case_accuracy"]) for g in ("pgd", "unsuspicious")]
            gap = "-" if row["gap"] is None else f"{100 * row['gap']:+.1f}"
            strongest = row["unsuspicious"]["strongest"] or "-"
            rows.append([row["model"], pct(row["clean_accuracy"]), *worst, gap, strongest])
        widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
        lines = [
            "  ".join(str(c).ljust(w) for c, w in zip(r, widths, strict=True)).rstrip()
            for r in rows
        ]
        lines.insert(1, "  ".join("-" * w for w in widths))
        return "\n".join(lines)

    def render(self, out: str | Path | None = None) -> Path:
        """Write the charts (``figures/*.png``), ``report.html`` and ``summary.json`` into
        ``out`` (default: the report's directory); returns the path of ``report.html``."""
        target = Path(out) if out is not None else self.out
        return render(self, self.headline(), self.warnings, self.summary(), target)
