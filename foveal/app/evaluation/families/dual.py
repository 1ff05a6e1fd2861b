"""``dual``: the dual-perturbation attack of Tong et al. 2020 (``eps_F`` on the object, ``eps_B`` on
the background, ``CE + lambda * S``): Linf, eps_F in {0, 2, 4, 8}/255 x eps_B in {0, 10, 20, 40}/255
at lambda 1 (its Fig. 5 / 15 settings), and the lambda sweep at {4/255, 20/255} (Fig. 3 / 15).
Charts: the eps_F x eps_B heatmap; the foreground score and accuracy against lambda."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any, ClassVar, Literal

from pydantic import Field

from foveal.app.evaluation.cells import CellContext, Run, attack_record
from foveal.app.evaluation.config import (
    Budget,
    EvaluateConfig,
    MaskSource,
    Section,
    Weight,
    budget_label,
)
from foveal.app.evaluation.families.pgd import INSIDE, containing_pgd
from foveal.app.evaluation.family import Cell, Curve, Family, mask_source, norm_label, register
from foveal.app.evaluation.render import heatmap, img, pyplot, save
from foveal.app.evaluation.results import Record, Results
from foveal.app.evaluation.sanity import Comparison, Point

__all__ = ["DualSection"]


class DualSection(Section):
    """Tong et al.'s (2020) dual-perturbation attack: an eps_F x eps_B grid and a lambda sweep."""

    enabled: bool = True
    norm: Literal["linf", "l2"] = "linf"
    eps_fg: list[Budget] = Field(default_factory=lambda: [e / 255 for e in (0, 2, 4, 8)])
    eps_bg: list[Budget] = Field(default_factory=lambda: [e / 255 for e in (0, 10, 20, 40)])
    lam: Weight = Field(1.0, description="lambda of the grid cells")
    lambdas: list[Weight] = Field(default_factory=lambda: [0.0, 0.1, 1.0, 10.0])
    sweep_eps_fg: Budget = 4 / 255
    sweep_eps_bg: Budget = 20 / 255
    steps: int = Field(10, ge=1)
    masks: MaskSource = "auto"


@register
class Dual(Family[DualSection]):
    """Dual-perturbation attack: eps_F on the object, eps_B on the background (Tong et al. 2020)."""

    name = "dual"
    order = 30
    Section = DualSection
    presets: ClassVar[dict[str, dict[str, Any]]] = {
        "quick": {
            "eps_fg": [0.0, 4 / 255],
            "eps_bg": [4 / 255, 20 / 255],
            "lambdas": [0.0, 1.0],
            "steps": 5,
        }
    }

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        d = self.section(config)
        if not d.enabled:
            return []
        masks = mask_source(d.masks, has_masks)
        out: list[Cell] = []

        def add(ef: float, eb: float, lam: float, examples: bool) -> None:
            s = dict(norm=d.norm, eps_fg=ef, eps_bg=eb, lam=lam, steps=d.steps, masks=masks)
            fg, bg = budget_label(ef, d.norm), budget_label(eb, d.norm)
            label = f"dual {norm_label(d.norm)} eps_F={fg} eps_B={bg} lam={lam:g}"
            if all(c.settings != s for c in out):
                out.append(Cell(self.name, model, s, label, examples=examples))

        for ef in d.eps_fg:
            for eb in d.eps_bg:
                if ef == 0 and eb == 0:
                    continue  # no perturbation: the clean cell (the heatmap shows it there)
                add(ef, eb, d.lam, ef == d.sweep_eps_fg and eb == d.sweep_eps_bg)
        shown = any(c.examples for c in out)
        for lam in d.lambdas:
            add(d.sweep_eps_fg, d.sweep_eps_bg, lam, not shown and lam == d.lam)
        if not any(c.examples for c in out) and out:
            first = out[0]
            out[0] = Cell(first.family, first.model, first.settings, first.label, examples=True)
        return out

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        from foveal.attacks import DualPerturbation

        args = {k: v for k, v in cell.settings.items() if k != "masks"}  # the attack's
        attack = DualPerturbation(ctx.models[cell.model], **args, seed=ctx.seed)
        masks = ctx.salient(cell.settings["masks"])
        run = Run.of(ctx, attack, masks)
        return attack_record(ctx, cell, key, attack, run, masks, extra={"masks": masks})

    def headline(self, record: Record, config: EvaluateConfig) -> str | None:
        s, h = record.settings, config.headline
        limit = h.linf_eps if s["norm"] == "linf" else h.l2_eps
        return "unsuspicious" if s["eps_fg"] <= limit + 1e-9 else None

    def series(self, record: Record) -> list[tuple[tuple[Any, ...], str, Point]]:
        s, norm = record.settings, record.settings["norm"]
        fixed = (s["lam"], s["steps"], s["masks"], norm)
        fg, bg = budget_label(s["eps_fg"], norm), budget_label(s["eps_bg"], norm)
        return [
            (
                (record.model, self.name, "fg", s["eps_bg"], *fixed),
                f"dual (eps_B={bg}, lam={s['lam']:g})",
                self.point(record, s["eps_fg"], f"eps_F={fg}"),
            ),
            (
                (record.model, self.name, "bg", s["eps_fg"], *fixed),
                f"dual (eps_F={fg}, lam={s['lam']:g})",
                self.point(record, s["eps_bg"], f"eps_B={bg}"),
            ),
        ]

    def stronger(self, record: Record, records: Sequence[Record]) -> list[Comparison]:
        s = record.settings
        if s["norm"] != "linf":
            return []
        pgd = containing_pgd(records, record.model, "linf", max(s["eps_fg"], s["eps_bg"]))
        return self.compare(record, pgd, INSIDE)

    def curve(self, record: Record, config: EvaluateConfig) -> tuple[Curve, float] | None:
        s, d = record.settings, self.section(config)
        if s["norm"] != "linf" or abs(s["eps_bg"] - d.sweep_eps_bg) > 1e-9:
            return None
        if abs(s["lam"] - d.lam) > 1e-9:
            return None
        note = f"dual: eps_F at eps_B = {budget_label(d.sweep_eps_bg)}"
        return Curve("dual eps_F", "linf", "#d62728", 2, clean=False, note=note), s["eps_fg"] * 255

    # ---------------------------------------------------------------- charts
    def charts(self, results: Results, directory: Path) -> dict[str, Path]:
        drawn = {"dual_heatmap": self._heatmap, "lambda": self._lambda_chart}
        return {n: p for n, fn in drawn.items() if (p := fn(results, directory / f"{n}.png"))}

    def html(self, results: Results, figures: dict[str, Path]) -> str:
        alts = {
            "dual_heatmap": "eps_F x eps_B heatmap",
            "lambda": "foreground score and accuracy vs lambda",
        }
        title = "<h2>Dual-perturbation attack (foreground / background budgets)</h2>"
        images = [img(figures[n], alt) for n, alt in alts.items() if n in figures]
        return title + "".join(images)

    def _grid(self, results: Results, model: str) -> tuple[list[float], list[float], Any] | None:
        import numpy as np

        d = self.section(results.config)
        fgs, bgs = sorted(set(d.eps_fg)), sorted(set(d.eps_bg))
        grid = np.full((len(fgs), len(bgs)), np.nan)
        for r in results.select(model, self.name, lam=d.lam, norm=d.norm):
            s, acc = r.settings, r.accuracy
            if s["eps_fg"] in fgs and s["eps_bg"] in bgs and acc is not None:
                grid[fgs.index(s["eps_fg"]), bgs.index(s["eps_bg"])] = 100 * acc
        clean = results.accuracy(model, "clean")
        if 0.0 in fgs and 0.0 in bgs and clean is not None:  # no perturbation at all
            grid[fgs.index(0.0), bgs.index(0.0)] = 100 * clean
        if int(np.isfinite(grid).sum()) < 2:
            return None
        return fgs, bgs, grid

    def _heatmap(self, results: Results, path: Path) -> Path | None:
        """Accuracy over the eps_F x eps_B grid, one panel per model."""
        grids = {m: g for m in results.models if (g := self._grid(results, m)) is not None}
        if not grids:
            return None
        plt = pyplot()
        d = self.section(results.config)
        k = len(grids)
        fig, axes = plt.subplots(1, k, figsize=(4.6 * k + 1.2, 4.2), squeeze=False)
        image = None
        for i, (ax, (model, (fgs, bgs, grid))) in enumerate(
            zip(axes[0], grids.items(), strict=True)
        ):
            labels = [[budget_label(b, d.norm) for b in v] for v in (bgs, fgs)]
            image = heatmap(ax, grid, *labels, origin="lower", fontsize=10)
            ax.set_xlabel("background budget eps_B")
            if i == 0:
                ax.set_ylabel("foreground budget eps_F")
            ax.set_title(model)
        fig.colorbar(image, ax=axes[0].tolist(), label="robust accuracy (%)", shrink=0.9)
        fig.suptitle(f"Dual-perturbation attack: accuracy over eps_F x eps_B (lambda = {d.lam:g})")
        return save(fig, path)

    def _lambda_chart(self, results: Results, path: Path) -> Path | None:
        """Foreground score and accuracy against lambda (Tong et al. 2020, Fig. 3)."""
        d = self.section(results.config)
        series: dict[str, list[tuple[float, float, float | None, float | None]]] = {}
        for model in results.models:
            for r in results.select(model, self.name, eps_fg=d.sweep_eps_fg, eps_bg=d.sweep_eps_bg):
                m, lam = r.metrics, r.settings["lam"]
                scores = (m.get("foreground_score"), m.get("foreground_score_clean"))
                if r.accuracy is not None:
                    series.setdefault(model, []).append((lam, 100 * r.accuracy, *scores))
        series = {k: sorted(v) for k, v in series.items() if len({p[0] for p in v}) >= 2}
        if not series:
            return None
        plt = pyplot()
        lams = sorted({p[0] for v in series.values() for p in v})
        pos = {lam: i for i, lam in enumerate(lams)}
        fig, (left, right) = plt.subplots(1, 2, figsize=(11, 4.2))
        clean_scores = [p[3] for v in series.values() for p in v if p[3] is not None]
        if clean_scores:  # the clean images and their masks are the same for every model
            left.axhline(clean_scores[0], color="#666666", linestyle=":", label="clean images")
        for i, (model, points) in enumerate(series.items()):
            xs = [pos[p[0]] for p in points]
            fs = [p[2] for p in points]
            if all(v is not None for v in fs):
                left.plot(xs, fs, marker="o", color=f"C{i}", label=model)
            right.plot(xs, [p[1] for p in points], marker="o", color=f"C{i}", label=model)
        for ax in (left, right):
            ax.set_xticks(range(len(lams)), [f"{lam:g}" for lam in lams])
            ax.set_xlabel("salience weight lambda")
            ax.legend(fontsize=8, frameon=False)
        left.set_ylabel("foreground score")
        left.set_title(
            "Foreground score of the adversarial images (higher: background less salient)"
        )
        right.set_ylabel("robust accuracy (%)")
        right.set_ylim(-3, 103)
        right.set_title("Accuracy under the dual attack")
        fig.suptitle(
            f"Salience control at eps_F = {budget_label(d.sweep_eps_fg, d.norm)}, "
            f"eps_B = {budget_label(d.sweep_eps_bg, d.norm)}"
        )
        fig.tight_layout()
        return save(fig, path)
