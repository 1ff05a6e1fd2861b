"""Adding an evaluation family is one module: a ``Family`` subclass and its registration.

The toy family here, ``noise``, measures accuracy under uniform random noise of a few Linf sizes
(a baseline no defence should fail). It brings its own config section and preset, computes its
cells into records, counts in the headline's unsuspicious group, declares a budget series for
the sanity checks and adds a section to the page; nothing else in ``foveal.app.evaluation``
knows about it.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any, ClassVar

import pytest
import torch
from pydantic import Field, ValidationError

import foveal
from foveal.app.evaluation import FAMILIES, Cell, Curve, Family, Report, evaluate, register
from foveal.app.evaluation.cells import CellContext, bool_string, mean
from foveal.app.evaluation.config import Budget, EvaluateConfig, Section, budget_label, build_config
from foveal.app.evaluation.render import e
from foveal.app.evaluation.results import Record, Results
from foveal.app.evaluation.sanity import Point
from foveal.app.jobs import format_validation_error


class NoiseSection(Section):
    """Uniform random noise (off unless enabled)."""

    enabled: bool = False
    eps: list[Budget] = Field(default_factory=lambda: [8 / 255])


class Noise(Family[NoiseSection]):
    """Accuracy under uniform random noise in the Linf ball."""

    name, order, Section = "noise", 65, NoiseSection
    presets: ClassVar[dict[str, dict[str, Any]]] = {"quick": {"eps": [2 / 255, 8 / 255]}}

    def cells(self, config: EvaluateConfig, model: str, *, has_masks: bool) -> list[Cell]:
        s = self.section(config)
        labels = {eps: f"noise Linf {budget_label(eps)}" for eps in s.eps}
        return [Cell(self.name, model, {"eps": eps}, labels[eps]) for eps in s.eps if s.enabled]

    def compute(self, ctx: CellContext, cell: Cell, key: str) -> Record:
        generator = torch.Generator().manual_seed(ctx.seed)
        noise = (torch.rand(ctx.images.shape, generator=generator) * 2 - 1) * cell.settings["eps"]
        correct = (
            ctx.predict(ctx.models[cell.model], (ctx.images + noise).clamp(0, 1)) == ctx.labels
        )
        return ctx.record(
            cell, key, metrics={"accuracy": mean(correct)}, correct=bool_string(correct)
        )

    def headline(self, record: Record, config: EvaluateConfig) -> str | None:
        return "unsuspicious"

    def series(self, record: Record) -> list[tuple[tuple[Any, ...], str, Point]]:
        eps = record.settings["eps"]
        return [((record.model, self.name), "noise", self.point(record, eps, budget_label(eps)))]

    def curve(self, record: Record, config: EvaluateConfig) -> tuple[Curve, float] | None:
        return Curve("noise", "linf", "#8c564b", 5), record.settings["eps"] * 255

    def html(self, results: Results, figures: dict[str, Path]) -> str:
        rows = "".join(
            f"<li>{e(r.model)}: {e(r.label)}</li>" for r in results.select(family="noise")
        )
        return f"<h2>Random noise</h2><ul>{rows}</ul>"


@pytest.fixture
def noise() -> Iterator[None]:
    register(Noise)
    yield
    FAMILIES.unregister("noise")


CONFIG: dict[str, Any] = {
    "n": 12,
    "examples": 0,
    "pgd": {"linf": [8 / 255], "l2": [], "steps": 1},
    "dual": {"enabled": False},
    "sai": {"enabled": False},
    "perceptual": {"enabled": False},
    "sip": {"enabled": False},
    "noise": {"enabled": True, "eps": [4 / 255, 16 / 255]},
}


def test_a_new_family_is_one_module(noise: None, tmp_path: Path) -> None:
    torch.manual_seed(0)
    net = foveal.models.create("shapes-cnn", width=4).eval()
    report = evaluate({"net": net}, "shapes", config=CONFIG, out=tmp_path)

    # Its cells ran and stored records like every other family's.
    records = report.select("net", "noise")
    assert [r.label for r in records] == ["noise Linf 4/255", "noise Linf 16/255"]
    lines = [json.loads(line) for line in (tmp_path / "results.jsonl").read_text().splitlines()]
    stored = {r["key"]: r for r in lines if r["family"] == "noise"}
    for r in records:
        assert stored[r.key] == r.to_json() and r.settings == stored[r.key]["settings"]
        assert len(r.correct or "") == 12 and 0.0 <= (r.accuracy or 0.0) <= 1.0
        assert r.accuracy == pytest.approx(r.correct.count("1") / 12)

    # It counts in the headline's unsuspicious group (and nowhere else).
    (row,) = report.headline()
    assert row["unsuspicious"]["cells"] == 2 and row["pgd"]["cells"] == 1
    worst = [min(a, b) for a, b in zip(*(r.correct for r in records), strict=True)]
    clean = report.select("net", "clean")[0].correct or ""
    expected = sum(w == c == "1" for w, c in zip(worst, clean, strict=True)) / 12
    assert row["unsuspicious"]["worst_case_accuracy"] == pytest.approx(expected)
    assert row["unsuspicious"]["strongest"] in {r.label for r in records}

    # Its section is on the page, and a reloaded report says the same.
    page = (tmp_path / "report.html").read_text()
    assert "<h2>Random noise</h2>" in page and "net: noise Linf 16/255" in page
    loaded = Report.load(tmp_path)
    assert loaded.headline() == report.headline()
    assert [r.to_json() for r in loaded.select(family="noise")] == [r.to_json() for r in records]
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert sum(c["family"] == "noise" for c in summary["cells"]) == 2


def test_a_new_family_brings_its_config_section(noise: None) -> None:
    assert build_config({}, preset_name="quick").noise.eps == [2 / 255, 8 / 255]  # its preset
    assert build_config({"noise": {"eps": ["4/255"]}}).noise.eps == [4 / 255]
    with pytest.raises(ValidationError) as info:
        build_config({"noise": {"epz": [0.1]}})
    assert "noise.epz: unknown key" in format_validation_error(info.value)


def test_an_unregistered_family_is_gone() -> None:
    assert "noise" not in FAMILIES
    with pytest.raises(ValidationError) as info:
        build_config({"noise": {"enabled": True}})
    assert "noise: unknown key" in format_validation_error(info.value)
