"""Evaluation families, the plug-in interface of ``foveal evaluate``, and the suite they make.

A *family* is one kind of cell (PGD, the dual attack, SAI-FGM, ...): a :class:`Family` subclass
registered with :func:`register` in :data:`~foveal.app.evaluation.config.FAMILIES`. It owns its
config section, its cells, their computation, their headline group, their sanity checks, their
charts and their section of the page; nothing else reads their settings. The built-in families
are the modules of :mod:`foveal.app.evaluation.families`; docs/evaluate.md, "Adding an
evaluation family", shows a new one.

The suite (:func:`build_suite`): per model, every family's cells in family order (``probe``,
``clean``, ``pgd``, ``dual``, ``sip``, ``sai``, ``perceptual``, ``autoattack``), then the
suite-level cells (``transfer``). A :class:`Cell` is one unit of work and of storage; its key
(:func:`cell_key`) digests everything its result depends on (the family, the settings, the seed,
the fingerprints of the model, the data, the targets and the detectors, the foveal version), so
a finished cell is never recomputed and a changed model or setting never reuses a stale result.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from foveal.app.evaluation.cells import CellContext
from foveal.app.evaluation.config import FAMILIES, EvaluateConfig, Section
from foveal.app.evaluation.results import Record, Results
from foveal.app.evaluation.sanity import Comparison, Point, SanityWarning

__all__ = ["Cell", "Curve", "Family", "build_suite", "cell_key", "families", "family", "register"]

#: The headline's groups: standard PGD, the unsuspicious attacks and AutoAttack.
HEADLINE_GROUPS = ("pgd", "unsuspicious", "autoattack")

S = TypeVar("S", bound=Section)
#: A family's section overrides per preset.
Presets = dict[str, dict[str, Any]]
F = TypeVar("F", bound="type[Family[Any]]")


@dataclass(frozen=True)
class Cell:
    """One (model, attack, setting) of the suite: one unit of work and of storage.

    Attributes:
        family: the name of its :class:`Family`.
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


@dataclass(frozen=True)
class Curve:
    """A line of the robust-accuracy chart: its panel (``linf`` or ``l2`` budgets), colour and
    rank in the panel (marker, legend order); ``clean``: it starts at budget 0 with the clean
    accuracy; ``note``: how to read its budget axis (added to the axis label)."""

    name: str
    panel: Literal["linf", "l2"]
    color: str
    rank: int
    clean: bool = True
    note: str = ""


class Family(Generic[S]):
    """One kind of evaluation cell: ``name`` (its config key and records' ``"family"``),
    ``order`` (run order, lower first), ``Section`` (the pydantic model of its config section),
    ``presets`` (the section's overrides per preset), ``record_type`` and ``listed`` (its cells
    are in ``summary.json``). Only :meth:`compute` is required; the other hooks add nothing."""

    name: ClassVar[str]
    order: ClassVar[int]
    Section: ClassVar[type[Section] | None] = None
    presets: ClassVar[Presets] = {}
    record_type: ClassVar[type[Record]] = Record
    listed: ClassVar[bool] = True

    def section(self, config: EvaluateConfig) -> S:
        """This family's section of ``config``."""
        return cast(S, getattr(config, self.name))

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        """The cells of ``model`` (run per model, in family order)."""
        return []

    def suite_cells(
        self, config: EvaluateConfig, models: list[str], sources: list[str], has_masks: bool
    ) -> list[Cell]:
        """Cells that involve several models (run after every model's cells)."""
        return []

    def key_payload(self, cell: Cell, fingerprints: dict[str, Any]) -> dict[str, Any]:
        """What ``cell``'s key digests besides family, model, settings, data, seed, version."""
        return {"detectors": fingerprints.get("detectors", [])}

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        """Run ``cell`` and return its record (without the timing fields)."""
        raise NotImplementedError

    def headline(self, record: Record, config: EvaluateConfig) -> str | None:
        """The headline group of ``record`` (one of :data:`HEADLINE_GROUPS`) or None."""
        return None

    def warnings(self, record: Record) -> list[SanityWarning]:
        """Model-level sanity warnings that ``record`` shows."""
        return []

    def series(self, record: Record) -> list[tuple[tuple[Any, ...], str, Point]]:
        """``(key, name, point)`` per budget series of scored ``record`` (keys: model first)."""
        return []

    def stronger(self, record: Record, records: Sequence[Record]) -> list[Comparison]:
        """``record`` against each cell of ``records`` whose set contains its (:meth:`compare`)."""
        return []

    def curve(self, record: Record, config: EvaluateConfig) -> tuple[Curve, float] | None:
        """``record``'s line and budget on the robust-accuracy chart (None: not on it)."""
        return None

    def charts(self, results: Results, directory: Path) -> dict[str, Path]:
        """Draw this family's charts (it has records) into ``directory``: name -> PNG path."""
        return {}

    def html(self, results: Results, figures: dict[str, Path]) -> str:
        """This family's section of ``report.html`` (it has records), escaped HTML."""
        return ""

    # ---------------------------------------------------------------- helpers
    @staticmethod
    def point(record: Record, budget: float, text: str) -> Point:
        return Point(budget, record.accuracy or 0.0, text, record.correct)

    @staticmethod
    def compare(record: Record, stronger: Record | None, why: str) -> list[Comparison]:
        """``record`` (the weaker attack) against ``stronger``, if ``record`` has an accuracy."""
        if record.accuracy is None:
            return []
        return [
            Comparison(record.model, record.label, record.accuracy, record.correct, stronger, why)
        ]


def register(cls: F) -> F:
    """Class decorator: register an instance of the :class:`Family` subclass ``cls`` under
    ``cls.name`` (``FAMILIES.unregister(name)`` removes it)."""
    FAMILIES.register(cls.name, help=(cls.__doc__ or "").strip().split("\n")[0])(cls())
    return cls


def family(name: str) -> Family[Any]:
    """The registered family ``name`` (raises with the closest names if there is none)."""
    return cast(Family[Any], FAMILIES.get(name))


def families() -> list[Family[Any]]:
    """Every registered family in run order."""
    return sorted((family(n) for n in FAMILIES), key=lambda f: f.order)


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
        cells += f.suite_cells(config, list(models), list(sources), has_masks)
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


def closest(values: Sequence[float], target: float) -> float | None:
    """The value nearest ``target`` (the smaller one on a tie; None for no values)."""
    return min(values, key=lambda v: (abs(v - target), v)) if values else None


def mask_source(choice: str, has_masks: bool) -> str:
    """``auto`` resolved: the data's masks when they exist, else the fixation masks."""
    if choice == "auto":
        return "ground-truth" if has_masks else "fixation"
    if choice == "ground-truth" and not has_masks:
        raise ValueError(
            "masks: 'ground-truth' needs a dataset with foreground masks (e.g. shapes); use "
            "'fixation' or 'auto'"
        )
    return choice


def norm_label(norm: str) -> str:
    return "Linf" if norm == "linf" else "L2"
