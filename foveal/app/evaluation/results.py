"""The records of one evaluation and the queries over them.

A :class:`Record` is one finished cell, serialised by :meth:`~Record.to_json` to its line of
``results.jsonl`` (and readable as that JSON object: ``record["metrics"]``); a family whose
cells store more fields subclasses it. :class:`Results` selects records by model, family and
setting; :class:`~foveal.app.evaluation.report.Report` adds the headline and the checks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from foveal.app.evaluation.config import EvaluateConfig

__all__ = ["Record", "Results"]

R = TypeVar("R", bound="Record")


@dataclass
class Record(Mapping[str, Any]):
    """One finished cell: the cell (:class:`~foveal.app.evaluation.family.Cell`), its key,
    example file (False: none), seed, number of images and foveal version, its ``metrics``,
    ``correct`` (per image ``"1"`` if classified correctly; cells with per-image results),
    ``detection`` (per detector, with detectors) and the timing fields."""

    family: str
    model: str
    label: str = ""
    settings: dict[str, Any] = field(default_factory=dict)
    metrics: dict[str, Any] = field(default_factory=dict)
    key: str = ""
    examples: bool | str | None = False
    seed: int = 0
    n: int = 0
    foveal_version: str = ""
    correct: str | None = None
    detection: dict[str, Any] | None = None
    seconds: float = 0.0
    finished: str = ""

    def to_json(self) -> dict[str, Any]:
        """The record as ``results.jsonl`` stores it (``correct``, ``detection``: if set)."""
        out = dataclasses.asdict(self)
        return {k: v for k, v in out.items() if v is not None or k == "examples"}

    @classmethod
    def from_json(cls: type[R], data: Mapping[str, Any]) -> R:
        """The record of a JSON object (fields this class does not know are ignored)."""
        names = {f.name for f in dataclasses.fields(cls)}
        return cls(**{k: v for k, v in data.items() if k in names})

    @property
    def accuracy(self) -> float | None:
        return None if self.metrics.get("accuracy") is None else float(self.metrics["accuracy"])

    def summary(self) -> dict[str, Any]:
        """The cell's entry in ``summary.json``."""
        keys = ("model", "family", "label", "settings", "detection")
        item = {k: getattr(self, k) for k in keys if getattr(self, k) is not None}
        return item | {
            k: self.metrics.get(k) for k in ("accuracy", "success_rate", "foreground_score")
        }

    # The JSON view: record["metrics"], record.get("detection"), dict(record).
    def __getitem__(self, name: str) -> Any:
        return self.to_json()[name]

    def __iter__(self) -> Iterator[str]:
        return iter(self.to_json())

    def __len__(self) -> int:
        return len(self.to_json())


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) or isinstance(b, float):
        try:
            return abs(float(a) - float(b)) < 1e-9
        except (TypeError, ValueError):
            return False
    return bool(a == b)


@dataclass
class Results:
    """The records of one evaluation (by key), its output directory, its effective config and
    its suite (``suite.json``: models, data, cells)."""

    out: Path
    config: EvaluateConfig
    suite: dict[str, Any]
    records: dict[str, Record]

    @property
    def cells(self) -> list[dict[str, Any]]:
        """Every cell of the suite (``key``, ``family``, ``model``, ``settings``, ``label``)."""
        return list(self.suite["cells"])

    @property
    def results(self) -> list[Record]:
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
        """Names of the surrogate (transfer source) models."""
        return [m["name"] for m in self.suite["models"] if m["role"] == "surrogate"]

    @property
    def detectors(self) -> list[str]:
        return [d["name"] for d in self.suite.get("detectors", [])]

    @property
    def n(self) -> int:
        return int(self.suite["data"]["n"])

    def select(
        self, model: str | None = None, family: str | None = None, **settings: Any
    ) -> list[Record]:
        """Finished records matching ``model``, ``family`` and every given setting."""
        return [
            r
            for r in self.results
            if (model is None or r.model == model)
            and (family is None or r.family == family)
            and all(k in r.settings and _same(r.settings[k], v) for k, v in settings.items())
        ]

    def accuracy(self, model: str, family: str, **settings: Any) -> float | None:
        """Robust accuracy of the one finished cell matching the arguments (None if absent).

        Example: ``report.accuracy("madry", "pgd", norm="linf", eps=8/255)``.
        """
        found = self.select(model, family, **settings)
        return found[0].accuracy if found else None
