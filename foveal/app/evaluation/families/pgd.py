"""PGD and the attacks inside its balls: ``pgd`` (Linf and L2 over the usual budgets of the
literature around 8/255 and 0.5), ``autoattack`` (``full`` only; Redgrave & Czajka's (2024) budgets
Linf 1, 2, 4, 8 /255), ``sip`` (PGD with the salient pixels frozen, Redgrave & Czajka 2024) and
``perceptual`` (the perceptual ball of Elliott et al. 2019, Linf 8/255 with 20 L-BFGS steps). A
cell's settings are its attack's arguments."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar, Literal, TypeVar

from pydantic import Field

from foveal.app.evaluation.cells import CellContext, Run, attack_record
from foveal.app.evaluation.config import Budget, EvaluateConfig, MaskSource, Section, budget_label
from foveal.app.evaluation.family import (
    Cell,
    Curve,
    Family,
    Presets,
    closest,
    mask_source,
    norm_label,
    register,
)
from foveal.app.evaluation.results import Record
from foveal.app.evaluation.sanity import Comparison, Point

__all__ = ["INSIDE", "containing_pgd"]

S = TypeVar("S", bound=Section)
INSIDE = "its perturbations lie inside the stronger attack's set"


class PGDSection(Section):
    """PGD over an eps grid, Linf and L2 (the standard Lp evaluation)."""

    enabled: bool = True
    linf: list[Budget] = Field(default_factory=lambda: [e / 255 for e in (1, 2, 4, 8, 16)])
    l2: list[Budget] = Field(default_factory=lambda: [0.25, 0.5, 1.0, 2.0])
    steps: int = Field(10, ge=1)
    restarts: int = Field(1, ge=1)


class AutoAttackSection(Section):
    """AutoAttack-style worst-case ensemble (``--full``)."""

    enabled: bool = False
    norm: Literal["linf", "l2"] = "linf"
    eps: list[Budget] = Field(default_factory=lambda: [e / 255 for e in (1, 2, 4, 8)])
    steps: int = Field(100, ge=1)
    n_queries: int = Field(5000, ge=1)


class SipSection(Section):
    """PGD with the salient pixels frozen (the SIP set of Redgrave & Czajka 2024)."""

    enabled: bool = True
    eps: list[Budget] = Field(default_factory=lambda: [4 / 255, 8 / 255])
    steps: int = Field(10, ge=1)
    masks: MaskSource = "auto"


class PerceptualSection(Section):
    """The perceptual-ball attack of Elliott et al. 2019."""

    enabled: bool = True
    eps: list[Budget] = Field(default_factory=lambda: [8 / 255])
    steps: int = Field(20, ge=1)


def containing_pgd(records: Sequence[Record], model: str, norm: str, bound: float) -> Record | None:
    """The scored PGD cell of ``model`` and ``norm`` with the smallest budget >= ``bound``."""
    fits = [
        r
        for r in records
        if r.family == "pgd" and r.model == model and r.accuracy is not None
        if r.settings["norm"] == norm and r.settings["eps"] >= bound - 1e-9
    ]
    return min(fits, key=lambda r: r.settings["eps"]) if fits else None


class _Budgets(Family[S]):
    """Cells over an ``eps`` grid of attack ``attack`` (a class of :mod:`foveal.attacks`), in
    headline group ``group`` within the headline budget of their norm, one budget series and
    one chart line (``CURVES[norm]``) per norm."""

    attack: ClassVar[str]
    group: ClassVar[str] = "unsuspicious"
    CURVES: ClassVar[dict[str, Curve]]

    def grid(self, model: str, eps: list[float], show: Any, label: str, **kw: Any) -> list[Cell]:
        """One cell per budget (``show``: the budget whose cell keeps examples)."""
        norm = kw.get("norm", "linf")
        return [
            Cell(self.name, model, {"eps": e, **kw}, label + budget_label(e, norm), e == show)
            for e in eps
        ]

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        import foveal.attacks

        kind = getattr(foveal.attacks, self.attack)
        attack = kind(ctx.models[cell.model], **cell.settings, seed=ctx.seed)
        return attack_record(ctx, cell, key, attack, Run.of(ctx, attack))

    def headline(self, record: Record, config: EvaluateConfig) -> str | None:
        s, h = record.settings, config.headline
        limit = h.l2_eps if s.get("norm") == "l2" else h.linf_eps
        return self.group if s["eps"] <= limit + 1e-9 else None

    def series(self, record: Record) -> list[tuple[tuple[Any, ...], str, Point]]:
        eps = record.settings["eps"]
        return [((record.model, self.name), self.name, self.point(record, eps, budget_label(eps)))]

    def curve(self, record: Record, config: EvaluateConfig) -> tuple[Curve, float] | None:
        eps, l2 = record.settings["eps"], record.settings.get("norm") == "l2"
        return self.CURVES["l2" if l2 else "linf"], eps if l2 else eps * 255  # Linf in /255

    def stronger(self, record: Record, records: Sequence[Record]) -> list[Comparison]:
        pgd = containing_pgd(records, record.model, "linf", record.settings["eps"])
        return self.compare(record, pgd, INSIDE)


class _Lp(_Budgets[S]):
    """Linf and L2 grids; one series per norm."""

    def series(self, record: Record) -> list[tuple[tuple[Any, ...], str, Point]]:
        s = record.settings
        point = self.point(record, s["eps"], budget_label(s["eps"], s["norm"]))
        return [((record.model, self.name, s["norm"]), f"{self.attack} {s['norm']}", point)]

    def lp(self, model: str, norm: str, eps: list[float], ref: float, **kw: Any) -> list[Cell]:
        """A grid of ``norm`` budgets; the one nearest ``ref`` keeps examples."""
        label = f"{self.attack} {norm_label(norm)} "
        return self.grid(model, eps, closest(eps, ref), label, norm=norm, **kw)


@register
class PGD(_Lp[PGDSection]):
    """PGD from a random start, Linf and L2 (Madry et al.)."""

    name, order, attack, group = "pgd", 20, "PGD", "pgd"
    Section = PGDSection
    presets: ClassVar[Presets] = {
        "quick": {"linf": [4 / 255, 8 / 255], "l2": [0.5, 1.0], "steps": 5}
    }
    CURVES: ClassVar[dict[str, Curve]] = {
        "linf": Curve("PGD Linf", "linf", "#1f77b4", 0),
        "l2": Curve("PGD L2", "l2", "#1f77b4", 0),
    }

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        p, h = self.section(config), config.headline
        kw = {"steps": p.steps, "restarts": p.restarts}
        linf = self.lp(model, "linf", p.linf, h.linf_eps, **kw)
        return linf + self.lp(model, "l2", p.l2, h.l2_eps, **kw) if p.enabled else []

    def stronger(self, record: Record, records: Sequence[Record]) -> list[Comparison]:
        s = record.settings
        same = [
            a
            for a in records
            if a.family == "autoattack" and a.model == record.model
            if a.settings["norm"] == s["norm"] and abs(a.settings["eps"] - s["eps"]) < 1e-9
        ]
        why = "AutoAttack includes a stronger PGD (APGD)"
        return self.compare(record, same[0] if same else None, why)


@register
class AutoAttack(_Lp[AutoAttackSection]):
    """APGD-CE, APGD-T and Square, the per-image worst case (``--full``)."""

    name, order, attack, group = "autoattack", 70, "AutoAttack", "autoattack"
    Section = AutoAttackSection
    presets: ClassVar[Presets] = {"full": {"enabled": True}}
    CURVES: ClassVar[dict[str, Curve]] = {
        "linf": Curve("AutoAttack Linf", "linf", "#17becf", 1),
        "l2": Curve("AutoAttack L2", "l2", "#17becf", 1),
    }

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        a, h = self.section(config), config.headline
        ref = h.linf_eps if a.norm == "linf" else h.l2_eps
        kw = {"steps": a.steps, "n_queries": a.n_queries}
        return self.lp(model, a.norm, a.eps, ref, **kw) if a.enabled else []

    def stronger(self, record: Record, records: Sequence[Record]) -> list[Comparison]:
        return []


@register
class Sip(_Budgets[SipSection]):
    """PGD with the salient pixels frozen (Redgrave & Czajka 2024)."""

    name, order, attack = "sip", 40, "PGD"
    Section = SipSection
    presets: ClassVar[Presets] = {"quick": {"eps": [8 / 255], "steps": 5}}
    CURVES: ClassVar[dict[str, Curve]] = {"linf": Curve("SIP (frozen)", "linf", "#2ca02c", 3)}

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        s, limit = self.section(config), config.headline.linf_eps
        if not s.enabled:
            return []
        show = closest([e for e in s.eps if e <= limit] or s.eps, limit)
        kw = {"norm": "linf", "steps": s.steps, "masks": mask_source(s.masks, has_masks)}
        return self.grid(model, s.eps, show, "SIP (salient pixels frozen) Linf ", **kw)

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        from foveal.attacks import PGD
        from foveal.threats import frozen

        s = cell.settings
        salient = ctx.salient(s["masks"])
        attack = PGD(
            ctx.models[cell.model], eps=s["eps"], norm=s["norm"], steps=s["steps"], seed=ctx.seed
        )

        def call(batch: dict[str, Any]) -> Any:
            threat = frozen(batch["mask"], s["eps"], s["norm"])
            return attack.run(batch["image"], batch["label"], threat=threat)

        run = Run.of(ctx, attack, salient, call)
        return attack_record(ctx, cell, key, attack, run, salient)


@register
class Perceptual(_Budgets[PerceptualSection]):
    """Perceptual-ball attack (Elliott et al. 2019)."""

    name, order, attack = "perceptual", 60, "PerceptualBall"
    Section = PerceptualSection
    presets: ClassVar[Presets] = {"quick": {"eps": [8 / 255], "steps": 5}}
    CURVES: ClassVar[dict[str, Curve]] = {"linf": Curve("perceptual", "linf", "#9467bd", 4)}

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        p, label = self.section(config), "perceptual ball Linf "
        show = closest(p.eps, config.headline.linf_eps)
        return self.grid(model, p.eps, show, label, steps=p.steps) if p.enabled else []
