"""The machinery of ``foveal reproduce``: experiment specs, cached cells, claims and the page.

An :class:`Experiment` is data: a name, the paper it checks, its parameters per scale (plain
values, validated against the experiment's declared keys) and a function that, given a
:class:`Context`, computes cells and returns :class:`Claim` rows. Every cell's result is
appended atomically to ``results.jsonl`` under a key that includes the scale's parameters, so an
interrupted run resumes where it stopped and a finished run re-renders its page in seconds.
Models come from :mod:`foveal.app.zoo` (trained on first use, cached).
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import torch
from torch import nn

from foveal.app.cache import CellCache
from foveal.io import atomic_write_text
from foveal.registry import Registry

__all__ = ["EXPERIMENTS", "Claim", "Context", "Experiment", "Reproduction"]


@dataclass
class Claim:
    """One row of the claims table.

    Attributes:
        key: short id within the experiment (``"a"``, ``"b"``, ...).
        text: the claim, in words.
        paper: what the paper reports (figure, table, number).
        ours: what this run measured, in words and numbers.
        holds: True / False, or None when the row is a figure or could not be evaluated.
        note: why a claim does not hold here (scale, data, budget), or how to read it.
    """

    key: str
    text: str
    paper: str
    ours: str
    holds: bool | None
    note: str = ""


@dataclass(frozen=True)
class Experiment:
    """A reproduction: parameters per scale and the function that computes its claims."""

    name: str
    #: the paper by author and year, e.g. ``"Tong et al. 2020"``
    cite: str
    title: str
    paper: str
    scales: dict[str, dict[str, Any]]
    run: Callable[[Context], list[Claim]]
    summary: str = ""
    #: True for a reproduction (a claims table, listed in the index of every claim); False for
    #: an experiment that reports numbers only (its ``run`` returns no claims).
    claims: bool = True


EXPERIMENTS: Registry[Experiment] = Registry("reproduction")


@dataclass
class Reproduction:
    """What :func:`foveal.app.reproductions.reproduce` returns."""

    experiment: Experiment
    scale: str
    claims: list[Claim]
    seconds: float
    page: Path | None
    out_dir: Path
    cells_run: int
    cells_cached: int
    compute_seconds: float = 0.0
    training_seconds: float = 0.0
    machine: str = ""


def _digest(obj: Any) -> str:
    return hashlib.sha256(json.dumps(obj, sort_keys=True, default=str).encode()).hexdigest()[:12]


@dataclass
class Context:
    """What an experiment's ``run`` gets: parameters, cached cells, models, data, outputs."""

    experiment: Experiment
    scale: str
    params: dict[str, Any]
    out_dir: Path
    figures_dir: Path
    data_root: str | None = None
    progress: bool = False
    log: Callable[[str], None] = lambda line: None
    sections: list[tuple[str, str]] = field(default_factory=list)
    cells_run: int = 0
    cells_cached: int = 0

    def __post_init__(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        self.cache = CellCache(self.out_dir)
        self._tag = _digest({"scale": self.scale, "params": self.params})

    # -------------------------------------------------------------- cells
    def cell(self, name: str, fn: Callable[[], Any]) -> Any:
        """``fn()`` once per (name, scale, parameters): cached in ``results.jsonl``.

        ``fn`` must return JSON data (numbers, strings, lists, dicts). A cell interrupted
        before it finished is recomputed on the next run; finished cells never are.
        """
        key = f"{name}@{self._tag}"
        if key in self.cache:
            self.cells_cached += 1
            return self.cache.cell(key, fn)

        def before() -> None:
            self._record_machine()
            self.log(f"  {self.experiment.name}: {name}")
            torch.manual_seed(0)

        value = self.cache.cell(key, fn, before=before)
        self.cells_run += 1
        return value

    def _record_machine(self) -> None:
        """Record where the results are computed (once per scale and parameters)."""
        key = f"machine@{self._tag}"
        if key not in self.cache:
            self.cache.put({"key": key, "value": machine(), "seconds": 0.0})

    @property
    def machine(self) -> str:
        """The machine line of the run that computed the results (this one if none did)."""
        found = self.cache.get(f"machine@{self._tag}")
        return str(found["value"]) if found is not None else machine()

    def compute_seconds(self) -> tuple[float, float]:
        """(all, training) seconds of this scale's cells as first computed (cached or not)."""
        seconds = {k: float(r.get("seconds", 0.0)) for k, r in self.cache.records().items()}
        cells = sum(v for k, v in seconds.items() if k.endswith(f"@{self._tag}"))
        training = sum(
            v for k, v in seconds.items() if k.startswith("train/") and k.endswith(f"@{self.scale}")
        )
        return cells + training, training

    # -------------------------------------------------------------- inputs
    def model(self, entry: str, *, data: str = "shapes") -> nn.Module:
        """A reference model from :mod:`foveal.app.zoo` at this run's scale, in eval mode."""
        import foveal
        from foveal.app.zoo import pretrained

        scale = "smoke" if self.scale == "smoke" else "default"
        start = time.perf_counter()
        trained: list[str] = []

        def log(line: str) -> None:
            trained.append(line)
            self.log(line)

        path = pretrained(entry, data=data, scale=scale, progress=self.progress, log=log)
        if trained:  # training ran in this call: its time counts towards this reproduction
            seconds = round(time.perf_counter() - start, 3)
            # Keyed by the scale, not the parameters: the models depend on the scale only.
            key = f"train/{data}/{entry}@{self.scale}"
            self.cache.put({"key": key, "value": seconds, "seconds": seconds})
        model = foveal.models.load(path)
        model.eval()
        return model

    def data(self, *, split: str = "test", n: int | None = None, data: str = "shapes",
             size: int | None = None) -> Any:  # fmt: skip
        """The first ``n`` images of a split (``--data-root`` applies to real datasets)."""
        import foveal

        return foveal.data.load(data, split=split, n=n, size=size, root=self.data_root)

    # -------------------------------------------------------------- outputs
    def figure(self, name: str) -> Path:
        """The path for figure ``name`` (PNG) beside the page."""
        self.figures_dir.mkdir(parents=True, exist_ok=True)
        return self.figures_dir / f"{name}.png"

    def section(self, title: str, markdown: str) -> None:
        """A titled block of markdown for the page (tables, figures, notes), in order."""
        self.sections.append((title, markdown))


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table; floats are shown with one decimal (percentages) unless formatted."""

    def fmt(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.1f}"
        return str(v).replace("|", "\\|")

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(fmt(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def holds_mark(holds: bool | None) -> str:
    return {True: "yes", False: "**no**", None: "n/a"}[holds]


def machine() -> str:
    """One line describing where the run happened."""
    cpu = platform.processor() or platform.machine()
    return (
        f"{os.cpu_count()} CPU cores ({cpu}), {torch.get_num_threads()} torch thread(s), "
        f"torch {torch.__version__}, Python {platform.python_version()}"
    )


def render_page(repro: Reproduction, sections: list[tuple[str, str]], figures_rel: str) -> str:
    """The markdown page of a finished reproduction (or of an experiment without claims)."""
    exp = repro.experiment
    kind = "Reproduction" if exp.claims else "Experiment"
    lines = [
        f"# {kind} `{exp.name}`: {exp.title}",
        "",
        f"Paper: {exp.paper} ({exp.cite}).",
        "",
    ]
    if exp.summary:
        lines += [exp.summary, ""]
    lines += [
        f"Command: `foveal reproduce {exp.name}"
        + ("" if repro.scale == "default" else f" --{repro.scale}")
        + f"`. Scale `{repro.scale}`; parameters:",
        "",
        "```json",
        json.dumps(exp.scales[repro.scale], indent=2, sort_keys=True),
        "```",
        "",
        f"Measured on {repro.machine or machine()}. "
        f"Compute time {repro.compute_seconds / 60:.1f} min "
        f"(every result as first computed, including {repro.training_seconds / 60:.1f} min "
        "training the reference models this experiment was first to need; models shared with "
        "an earlier reproduction come from the cache). This rendering took "
        f"{repro.seconds / 60:.1f} min ({repro.cells_run} results computed, "
        f"{repro.cells_cached} read from the cache).",
        "",
    ]
    if exp.claims:
        lines += [
            "## Claims",
            "",
            table(
                ["", "claim", "paper", "ours", "holds?"],
                [[c.key, c.text, c.paper, c.ours, holds_mark(c.holds)] for c in repro.claims],
            ),
            "",
        ]
    notes = [c for c in repro.claims if c.note]
    if notes:
        lines += ["Notes:", ""]
        lines += [f"- ({c.key}) {c.note}" for c in notes]
        lines.append("")
    for title, body in sections:
        lines += [f"## {title}", "", body.replace("{figures}", figures_rel), ""]
    return "\n".join(lines).rstrip() + "\n"


def write_page(path: Path, text: str) -> None:
    atomic_write_text(path, text)


def claims_json(repro: Reproduction) -> dict[str, Any]:
    """The machine-readable summary written beside the page (``NAME.json``)."""
    exp = repro.experiment
    return {
        "name": exp.name,
        "cite": exp.cite,
        "title": exp.title,
        "scale": repro.scale,
        "machine": repro.machine or machine(),
        "compute_minutes": round(repro.compute_seconds / 60, 2),
        "training_minutes": round(repro.training_seconds / 60, 2),
        "claims": [
            {"key": c.key, "text": c.text, "paper": c.paper, "ours": c.ours, "holds": c.holds}
            for c in repro.claims
        ],
    }


def render_index(summaries: list[dict[str, Any]]) -> str:
    """``README.md`` of the reproductions directory: every claim in one table."""
    lines = [
        "# Reproductions",
        "",
        "Each page re-runs one paper's key experiments at CPU scale on the built-in data "
        "(`foveal reproduce NAME`); this table collects every claim. `n/a` marks figures and "
        "rows reported without a pass/fail test.",
        "",
    ]
    rows = []
    for s in sorted(summaries, key=lambda d: d["name"]):
        for c in s["claims"]:
            rows.append(
                [
                    f"[{s['name']}]({s['name']}.md) ({c['key']})",
                    c["text"],
                    c["paper"],
                    c["ours"],
                    holds_mark(c["holds"]),
                ]
            )
    lines.append(table(["experiment", "claim", "paper", "ours", "holds?"], rows))
    lines += ["", "| experiment | paper | scale | compute (min) | of which training | machine |",
              "|---|---|---|---|---|---|"]  # fmt: skip
    for s in sorted(summaries, key=lambda d: d["name"]):
        # older summaries name the paper under "seed"
        cite = s.get("cite", s.get("seed", ""))
        lines.append(
            f"| [{s['name']}]({s['name']}.md) | {cite} | {s['scale']} | "
            f"{s['compute_minutes']:.1f} | {s['training_minutes']:.1f} | {s['machine']} |"
        )
    held = sum(1 for s in summaries for c in s["claims"] if c["holds"] is True)
    failed = sum(1 for s in summaries for c in s["claims"] if c["holds"] is False)
    lines += [
        "",
        f"{held} claims hold and {failed} do not at this scale; each page says why. Compute times "
        "are as measured on the machine of each row; other jobs running at the same time "
        "inflate them.",
    ]
    return "\n".join(lines) + "\n"
