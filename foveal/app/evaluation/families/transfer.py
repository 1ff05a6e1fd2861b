"""``transfer``: PGD and dual examples computed on each surrogate (and each evaluated model),
evaluated on every evaluated model (Tong et al. 2020, App. D); only with surrogates. Records hold
``targets`` (per target: accuracy, clean accuracy, success rate, per-image correctness) and the
source's own accuracy. Chart: a source x target accuracy matrix per attack."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from pydantic import Field

from foveal.app.evaluation.cells import CellContext, Run, bool_string, mean
from foveal.app.evaluation.config import Budget, EvaluateConfig, Section, budget_label
from foveal.app.evaluation.families.pgd import containing_pgd
from foveal.app.evaluation.family import Cell, Family, family, mask_source, register
from foveal.app.evaluation.render import e, heatmap, img, pct, pyplot, save, table
from foveal.app.evaluation.results import Record, Results
from foveal.app.evaluation.sanity import Comparison

__all__ = ["TransferRecord", "TransferSection"]


_ATTACKS: tuple[Literal["pgd", "dual"], ...] = ("pgd", "dual")


class TransferSection(Section):
    """Transfer from surrogate checkpoints (used only when surrogates are given)."""

    attacks: list[Literal["pgd", "dual"]] = Field(default_factory=lambda: list(_ATTACKS))
    eps: Budget = 8 / 255
    eps_fg: Budget = 4 / 255
    eps_bg: Budget = 20 / 255
    steps: int = Field(10, ge=1)


@dataclass
class TransferRecord(Record):
    """A ``transfer`` record: per target model, its results on the source's examples."""

    targets: dict[str, Any] = field(default_factory=dict)

    def summary(self) -> dict[str, Any]:
        targets = {
            t: {k: v for k, v in res.items() if k != "correct"} for t, res in self.targets.items()
        }
        return {**super().summary(), "targets": targets}


@register
class Transfer(Family[TransferSection]):
    """Transfer of PGD and dual examples from each source model to every evaluated model."""

    name = "transfer"
    order = 80
    Section = TransferSection
    record_type = TransferRecord

    def suite_cells(
        self, config: EvaluateConfig, models: list[str], sources: list[str], has_masks: bool
    ) -> list[Cell]:
        if not sources:
            return []
        t = self.section(config)
        dual = family("dual").section(config)  # the dual cells' lambda and masks
        masks = mask_source(dual.masks, has_masks)
        fg, bg = budget_label(t.eps_fg), budget_label(t.eps_bg)
        kinds = {  # attack -> (settings, label)
            "pgd": ({"eps": t.eps}, f"transfer PGD Linf {budget_label(t.eps)}"),
            "dual": (
                {"eps_fg": t.eps_fg, "eps_bg": t.eps_bg, "lam": dual.lam, "masks": masks},
                f"transfer dual eps_F={fg} eps_B={bg}",
            ),
        }
        return [
            Cell(
                self.name,
                source,
                {"attack": a, **kinds[a][0], "steps": t.steps, "targets": list(models)},
                f"{kinds[a][1]} from {source}",
            )
            for source in [*sources, *models]
            for a in t.attacks
        ]

    def key_payload(self, cell: Cell, fingerprints: dict[str, Any]) -> dict[str, Any]:
        targets = [fingerprints["models"][t] for t in cell.settings["targets"]]
        return {**super().key_payload(cell, fingerprints), "targets": targets}

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        from foveal.attacks import PGD, DualPerturbation

        s = cell.settings
        args = {k: v for k, v in s.items() if k not in ("attack", "masks", "targets")}
        kind = PGD if s["attack"] == "pgd" else DualPerturbation
        attack = kind(ctx.models[cell.model], **args, seed=ctx.seed)
        run = Run.of(ctx, attack, ctx.salient(s["masks"]) if "masks" in s else None)
        y = ctx.labels
        targets: dict[str, Any] = {}
        for name in s["targets"]:
            ok = ctx.predict(ctx.models[name], run.adversarial) == y
            clean_ok = ctx.clean_predictions(name) == y
            targets[name] = {
                "accuracy": mean(ok),
                "clean_accuracy": mean(clean_ok),
                "success_rate": mean(~ok[clean_ok]),
                "correct": bool_string(ok),
            }
        metrics = {"source_accuracy": mean(run.predictions == y)}
        return ctx.record(cell, key, TransferRecord, metrics=metrics, targets=targets)

    def stronger(self, record: Record, records: Sequence[Record]) -> list[Comparison]:
        s = record.settings
        bound = s["eps"] if s["attack"] == "pgd" else max(s["eps_fg"], s["eps_bg"])
        why = "white-box PGD on the target itself should be stronger than transfer"
        return [
            Comparison(
                t,
                f"black-box {record.label}",
                float(res["accuracy"]),
                res.get("correct"),
                containing_pgd(records, t, "linf", bound),
                why,
            )
            for t, res in getattr(record, "targets", {}).items()
            if t != record.model and res.get("accuracy") is not None
        ]

    # ---------------------------------------------------------------- report
    def charts(self, results: Results, directory: Path) -> dict[str, Path]:
        """One source x target accuracy matrix per transfer attack."""
        import numpy as np

        records = results.select(family=self.name)
        out: dict[str, Path] = {}
        for attack in sorted({r.settings["attack"] for r in records}):
            recs = [r for r in records if r.settings["attack"] == attack]
            sources, targets = [r.model for r in recs], results.models
            grid = np.full((len(sources), len(targets)), np.nan)
            for i, r in enumerate(recs):
                for j, t in enumerate(targets):
                    res = getattr(r, "targets", {}).get(t)
                    if res and res.get("accuracy") is not None:
                        grid[i, j] = 100 * res["accuracy"]
            plt = pyplot()
            fig, ax = plt.subplots(figsize=(1.8 * len(targets) + 3, 0.7 * len(sources) + 2))
            image = heatmap(ax, grid, targets, sources)
            ax.set_xlabel("target model (evaluated)")
            ax.set_ylabel("source model (attacked)")
            fig.colorbar(image, ax=ax, label="target accuracy (%)")
            ax.set_title(f"Transfer matrix: {recs[0].label.split(' from ')[0]}")
            out[f"transfer_{attack}"] = save(fig, directory / f"transfer_{attack}.png")
        return out

    def html(self, results: Results, figures: dict[str, Path]) -> str:
        recs = results.select(family=self.name)
        out = [
            "<h2>Transfer from surrogate models</h2>",
            '<p class="note">Rows: the model the attack was computed on; columns: the evaluated '
            "model's accuracy on those images (the diagonal is white-box).</p>",
            *(img(path, name) for name, path in figures.items() if name.startswith("transfer_")),
        ]
        rows = [
            [e(r.label)]
            + [e(pct((r.targets.get(t) or {}).get("accuracy"))) for t in results.models]
            for r in recs
            if isinstance(r, TransferRecord)
        ]
        out.append(table(["attack (source)", *[e(t) for t in results.models]], rows))
        return "".join(out)
