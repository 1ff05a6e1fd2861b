"""Evaluation families: the plug-in interface of ``foveal evaluate``.

A *family* is one kind of cell (PGD, the dual attack, SAI-FGM, ...): a :class:`Family` subclass
registered with :func:`register` in :data:`~foveal.app.evaluation.config.FAMILIES`. It owns its
config section, its cells, their computation, their headline group, their sanity checks, their
charts and their section of the page; nothing else reads their settings. The built-in families
are the modules of :mod:`foveal.app.evaluation.families`; docs/evaluate.md, "Adding an
evaluation family", shows a new one.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar, Generic, Literal, TypeVar, cast

from foveal.app.evaluation.cells import CellContext
from foveal.app.evaluation.config import FAMILIES, EvaluateConfig, Section
from foveal.app.evaluation.results import Record, Results
from foveal.app.evaluation.sanity import Comparison, Point, SanityWarning

__all__ = ["HEADLINE_GROUPS", "Cell", "Curve", "Family", "families", "family", "register"]

#: The headline's groups: standard PGD, the unsuspicious attacks and AutoAttack.
HEADLINE_GROUPS = ("pgd", "unsuspicious", "autoattack")

S = TypeVar("S", bound=Section)
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
    """One kind of evaluation cell. Only :meth:`compute` is required; every other hook has a
    default that adds nothing.

    Attributes:
        name: its config key, ``Cell.family`` and the records' ``"family"``.
        order: run order (per model, then the suite-level cells): lower runs first.
        Section: the pydantic model of its config section (None: it has none).
        presets: the section's overrides per preset (``quick``, ``default``, ``full``).
        record_type: the class of its records.
        listed: whether its cells are listed in ``summary.json``.
    """

    name: ClassVar[str]
    order: ClassVar[int]
    Section: ClassVar[type[Section] | None] = None
    presets: ClassVar[dict[str, dict[str, Any]]] = {}
    record_type: ClassVar[type[Record]] = Record
    listed: ClassVar[bool] = True

    def section(self, config: EvaluateConfig) -> S:
        """This family's section of ``config``."""
        return cast(S, getattr(config, self.name))

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        """The cells of ``model`` (run per model, in family order)."""
        return []

    def suite_cells(
        self,
        config: EvaluateConfig,
        models: Sequence[str],
        sources: Sequence[str],
        *,
        has_masks: bool,
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
        """``(key, name, point)`` of each budget series of ``record`` (a scored record); the
        accuracy must not rise with the budget along a series; the key starts with the model."""
        return []

    def stronger(self, record: Record, records: Sequence[Record]) -> list[Comparison]:
        """For each cell among ``records`` whose set contains ``record``'s, the comparison
        that the weaker attack must not win (see :meth:`compare`)."""
        return []

    def curve(self, record: Record, config: EvaluateConfig) -> tuple[Curve, float] | None:
        """``record``'s line and budget on the robust-accuracy chart (None: not on it)."""
        return None

    def charts(self, results: Results, directory: Path) -> dict[str, Path]:
        """Draw this family's charts into ``directory``; returns name -> PNG path."""
        return {}

    def html(self, results: Results, figures: dict[str, Path]) -> str:
        """This family's section of ``report.html`` (escaped HTML; "" for none)."""
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
