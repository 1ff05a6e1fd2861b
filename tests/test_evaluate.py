"""``foveal.app.evaluation``: config schema, resume, sanity checks, escaping, detectors, transfer.

Small untrained models and a tiny suite keep these fast; the ``--quick`` run of the built-in
models and the browser check of its report are in ``test_evaluate_report.py``.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml
from pydantic import ValidationError
from torch import nn
from typer.testing import CliRunner

import foveal
from foveal.app.cli import app
from foveal.app.evaluation import (
    Report,
    build_config,
    evaluate,
    load_config_file,
    sanity_checks,
)
from foveal.app.jobs import format_validation_error

runner_module = importlib.import_module("foveal.app.evaluation.runner")

#: A suite of every family with the smallest settings (steps 2, one budget each).
TINY: dict[str, Any] = {
    "n": 10,
    "examples": 2,
    "pgd": {"linf": [4 / 255, 8 / 255], "l2": [0.5], "steps": 2},
    "dual": {"eps_fg": [4 / 255], "eps_bg": [20 / 255], "lambdas": [0.0, 1.0], "steps": 2},
    "sai": {"deltas": [4.0], "steps": 2, "transforms": [{"name": "bit-depth"}]},
    "perceptual": {"eps": [8 / 255], "steps": 2},
    "sip": {"eps": [8 / 255], "steps": 2},
}

#: Only the probe, clean accuracy and a PGD sweep.
PGD_ONLY: dict[str, Any] = {
    "n": 16,
    "pgd": {"linf": [2 / 255, 8 / 255], "l2": [], "steps": 2},
    "dual": {"enabled": False},
    "sai": {"enabled": False},
    "perceptual": {"enabled": False},
    "sip": {"enabled": False},
}


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return foveal.models.create("shapes-cnn", width=4).eval()


def _strip(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return [{k: v for k, v in r.items() if k not in runner_module.TIMING_FIELDS} for r in records]


# ----------------------------------------------------------------------------- config
@pytest.mark.parametrize(
    ("overrides", "names"),
    [
        ({"dual": {"eps_fgg": [0.1]}}, ["dual.eps_fgg", "unknown key"]),
        ({"pgd": {"steps": 0}}, ["pgd.steps", "greater than or equal to 1"]),
        ({"colour": "red"}, ["colour", "unknown key"]),
        ({"sai": {"transforms": [{"name": "jpg"}]}}, ["sai.transforms.0.name", "jpeg"]),
        (
            {"sai": {"transforms": [{"name": "jpeg", "params": {"quality": 0}}]}},
            ["sai.transforms.0", "quality"],
        ),
        ({"dual": {"eps_bg": ["x/255"]}}, ["dual.eps_bg.0", "fraction"]),
        ({"n": -3}, ["n", "greater than or equal to 1"]),
    ],
)
def test_config_errors_name_the_key(overrides: dict[str, Any], names: list[str]) -> None:
    with pytest.raises(ValidationError) as info:
        build_config(overrides)
    message = format_validation_error(info.value)
    for name in names:
        assert name in message, message


def test_config_presets_fractions_and_file_formats(tmp_path: Path) -> None:
    cfg = build_config({"pgd": {"linf": ["8/255"]}}, preset_name="quick")
    assert cfg.preset == "quick" and cfg.pgd.linf == [8 / 255]
    assert cfg.n == 48 and cfg.dual.lambdas == [0.0, 1.0]  # the rest of the quick preset
    assert build_config({"preset": "full"}).autoattack.enabled
    with pytest.raises(ValueError, match="preset must be one of"):
        build_config({"preset": "huge"})
    (tmp_path / "a.yaml").write_text("n: 12\ndual:\n  eps_fg: [0, 4/255]\n")
    (tmp_path / "a.toml").write_text('n = 12\n[dual]\neps_fg = [0, "4/255"]\n')
    (tmp_path / "a.json").write_text(json.dumps({"n": 12, "dual": {"eps_fg": [0, "4/255"]}}))
    for name in ("a.yaml", "a.toml", "a.json"):
        cfg = build_config(load_config_file(tmp_path / name))
        assert cfg.n == 12 and cfg.dual.eps_fg == [0.0, 4 / 255], name
    (tmp_path / "bad.toml").write_text("n = [")
    with pytest.raises(ValueError, match="not valid TOML"):
        load_config_file(tmp_path / "bad.toml")


def test_cli_rejects_a_bad_config_naming_the_key(tmp_path: Path) -> None:
    path = tmp_path / "bad.yaml"
    path.write_text(yaml.safe_dump({"sip": {"eps": [0.03], "stepz": 3}}))
    result = CliRunner().invoke(app, ["evaluate", "--config", str(path), "--out", str(tmp_path)])
    assert result.exit_code == 2
    assert "sip.stepz: unknown key" in result.output
    result = CliRunner().invoke(app, ["evaluate", "--quick", "--full"])
    assert result.exit_code == 2 and "exclude" in result.output


# ----------------------------------------------------------------------------- resume
def test_interrupted_run_resumes_without_recomputing(tmp_path: Path, monkeypatch) -> None:
    model = _net()
    real = runner_module.compute_cell
    calls: list[str] = []
    stop_after = 5

    def counting(cell, key, ctx):
        if stop_after is not None and len(calls) == stop_after:
            raise KeyboardInterrupt  # Ctrl-C while the next cell runs
        calls.append(key)
        return real(cell, key, ctx)

    monkeypatch.setattr(runner_module, "compute_cell", counting)
    first = evaluate({"net": model}, "shapes", config=TINY, out=tmp_path / "a", render=False)
    assert first.interrupted and len(first.results) == stop_after
    assert len(first.missing) == len(first.cells) - stop_after
    assert not (tmp_path / "a" / "report.html").exists()

    calls.clear()
    stop_after = None  # type: ignore[assignment]
    second = evaluate({"net": model}, "shapes", config=TINY, out=tmp_path / "a")
    assert not second.interrupted and second.complete
    assert len(calls) == len(second.cells) - 5  # finished cells were not recomputed
    assert set(calls).isdisjoint(first.records)

    calls.clear()
    whole = evaluate({"net": model}, "shapes", config=TINY, out=tmp_path / "b", render=False)
    assert len(calls) == len(whole.cells)
    assert _strip(second.results) == _strip(whole.results)

    # A rerun computes nothing; a truncated last line (a crash mid-write) is recomputed.
    calls.clear()
    evaluate({"net": model}, "shapes", config=TINY, out=tmp_path / "b", render=False)
    assert calls == []
    results = tmp_path / "b" / "results.jsonl"
    lines = results.read_text().splitlines()
    results.write_text("\n".join(lines[:-1]) + "\n" + lines[-1][:40])
    again = evaluate({"net": model}, "shapes", config=TINY, out=tmp_path / "b", render=False)
    assert len(calls) == 1 and again.complete


def test_report_reloads_and_rerenders(tmp_path: Path) -> None:
    report = evaluate({"net": _net()}, "shapes", config=TINY, out=tmp_path)
    for name in ("report.html", "summary.json", "results.jsonl", "suite.json"):
        assert (tmp_path / name).is_file(), name
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {"robust_accuracy.png", "lambda.png", "transforms.png"} <= figures
    assert len(list((tmp_path / "figures" / "examples").glob("*.png"))) >= 5
    loaded = Report.load(tmp_path)
    assert loaded.headline() == report.headline()
    assert loaded.accuracy("net", "pgd", norm="linf", eps=8 / 255) is not None
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["complete"] and summary["headline"][0]["model"] == "net"
    row = summary["headline"][0]
    assert row["pgd"]["cells"] == 3 and row["unsuspicious"]["cells"] >= 4
    (tmp_path / "report.html").unlink()
    loaded.render()
    assert (tmp_path / "report.html").is_file()
    assert "net" in loaded.table()
    with pytest.raises(ValueError, match=r"suite\.json"):
        Report.load(tmp_path / "figures")


# ----------------------------------------------------------------------------- sanity
class _ZeroGradient(nn.Module):
    """Quantises its input: the input gradient is exactly zero (gradient masking)."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(torch.round(x * 4) / 4)


class _Softmax(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net(x).softmax(1)


class _Randomized(nn.Module):
    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.net = net

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.net((x + 0.2 * torch.randn_like(x)).clamp(0, 1))


@pytest.mark.parametrize(
    ("wrapper", "check"),
    [
        (_ZeroGradient, "vanishing-gradients"),
        (_Softmax, "probabilities"),
        (_Randomized, "randomized-model"),
    ],
)
def test_sanity_checks_fire_on_broken_models(tmp_path: Path, wrapper, check: str) -> None:
    net = _net()
    report = evaluate(
        {"broken": wrapper(net), "healthy": net},
        "shapes",
        config=PGD_ONLY,
        out=tmp_path,
        render=False,
    )
    fired = {(w.check, w.model) for w in report.warnings}
    assert (check, "broken") in fired
    probe_checks = {"vanishing-gradients", "probabilities", "randomized-model"}
    assert not {c for c, m in fired if m == "healthy" and c in probe_checks}
    assert all(w.anchor.startswith("docs/evaluate.md#") for w in report.warnings)


def _record(model: str, family: str, label: str, accuracy: float, **settings: Any) -> dict:
    return {
        "model": model,
        "family": family,
        "label": label,
        "settings": settings,
        "metrics": {"accuracy": accuracy},
    }


def test_sanity_checks_on_records() -> None:
    records = [
        _record("m", "pgd", "PGD Linf 4/255", 0.30, norm="linf", eps=4 / 255),
        _record("m", "pgd", "PGD Linf 8/255", 0.50, norm="linf", eps=8 / 255),  # rises
        _record("m", "sip", "SIP 8/255", 0.10, norm="linf", eps=8 / 255),  # beats PGD 8/255
        _record("m", "pgd", "PGD L2 1", 0.40, norm="l2", eps=1.0),
        _record("m", "sai", "I-FGM delta=4", 0.41, attack="i-fgm", delta=4.0),  # within noise
    ]
    records[-1]["metrics"]["l2_budget"] = 0.87
    checks = {w.check: w for w in sanity_checks(records, n=200)}
    assert set(checks) == {"accuracy-rises-with-eps", "weaker-attack-wins"}
    assert "8/255" in checks["accuracy-rises-with-eps"].message
    assert "SIP 8/255" in checks["weaker-attack-wins"].message
    transfer = {
        "model": "sur",
        "family": "transfer",
        "label": "transfer PGD from sur",
        "settings": {"attack": "pgd", "eps": 8 / 255, "targets": ["m"]},
        "targets": {"m": {"accuracy": 0.2}},
    }
    fired = sanity_checks([*records[:2], transfer], n=200)
    assert any(w.check == "weaker-attack-wins" and "black-box" in w.message for w in fired)


# ----------------------------------------------------------------------------- escaping
def test_report_escapes_every_string(tmp_path: Path) -> None:
    name = '<script>alert("x")</script>'
    config = {**PGD_ONLY, "pgd": {"linf": [8 / 255], "l2": [], "steps": 1}}
    report = evaluate({name: _net()}, "shapes", config=config, out=tmp_path)
    page = (tmp_path / "report.html").read_text()
    assert "<script" not in page
    assert "&lt;script&gt;alert(&quot;x&quot;)&lt;/script&gt;" in page
    assert report.models == [name]
    assert name in report.table()


# ----------------------------------------------------------------------------- detectors, transfer
class _Flags:
    """A stand-in detector: flags images whose mean differs from 0.5 by more than 0.1."""

    def detect(self, images: torch.Tensor) -> torch.Tensor:
        return (images.mean(dim=(1, 2, 3)) - 0.5).abs() > 0.1


def test_detectors_and_transfer_matrix(tmp_path: Path) -> None:
    config = {
        **PGD_ONLY,
        "pgd": {"linf": [8 / 255], "l2": [], "steps": 1},
        "examples": 2,
        "transfer": {"attacks": ["pgd"], "steps": 1},
    }
    report = evaluate(
        {"target": _net(0)},
        "shapes",
        config=config,
        out=tmp_path,
        surrogates={"source": _net(1)},
        detectors={"flags": _Flags()},
    )
    pgd = report.select("target", "pgd")[0]
    assert 0.0 <= pgd["detection"]["flags"]["rate"] <= 1.0
    probe = report.select("target", "probe")[0]
    assert "false_positive_rate" in probe["detection"]["flags"]
    transfer = report.select(family="transfer")
    assert {r["model"] for r in transfer} == {"source", "target"}
    assert all("target" in r["targets"] for r in transfer)
    assert report.surrogates == ["source"] and report.detectors == ["flags"]
    figures = {p.name for p in (tmp_path / "figures").glob("*.png")}
    assert {"transfer_pgd.png", "detection.png"} <= figures
    with pytest.raises(TypeError, match="detect"):
        evaluate(
            {"t": _net()}, "shapes", config=config, out=tmp_path / "x", detectors={"bad": object()}
        )


def test_detector_directory_needs_the_detectors_package(tmp_path: Path, monkeypatch) -> None:
    import sys

    from foveal.app.evaluation.models import resolve_detectors

    monkeypatch.setitem(sys.modules, "foveal.detectors", None)  # as if it were not installed
    (tmp_path / "det").mkdir()
    with pytest.raises(ValueError, match=r"foveal\.detectors"):
        resolve_detectors([str(tmp_path / "det")])


# ----------------------------------------------------------------------------- docs
def test_docs_config_example_is_valid_and_every_check_has_an_anchor() -> None:
    import re

    from foveal.app.evaluation.sanity import CHECKS

    page = (Path(__file__).resolve().parents[1] / "docs" / "evaluate.md").read_text()
    (example,) = re.findall(r"```yaml\n(.*?)```", page, flags=re.S)
    cfg = build_config(yaml.safe_load(example))
    assert cfg == build_config({})  # the example spells out the defaults
    for check in CHECKS:
        assert f'<a id="{check}"></a>' in page and f"### {check}" in page


def test_models_that_do_not_fit_the_data_fail_early(tmp_path: Path) -> None:
    few = foveal.models.create("shapes-cnn", width=4, num_classes=3)
    with pytest.raises(ValueError, match="'few' has 3 outputs"):
        evaluate({"few": few}, "shapes", config=PGD_ONLY, out=tmp_path)
    grey = foveal.models.create("shapes-cnn", width=4, in_channels=1)
    with pytest.raises(ValueError, match="'grey' cannot classify the evaluation images"):
        evaluate({"grey": grey}, "shapes", config=PGD_ONLY, out=tmp_path)
    with pytest.raises(ValueError, match="built-in models are shapes classifiers"):
        evaluate(None, "digits", config=PGD_ONLY, out=tmp_path)


def test_cli_run_interrupt_and_resume(tmp_path: Path, monkeypatch) -> None:
    ckpt = tmp_path / "tiny"
    foveal.models.save(_net(), ckpt, {"arch": "shapes-cnn", "arch_kwargs": {"width": 4}})
    config = tmp_path / "tiny.yaml"
    config.write_text(yaml.safe_dump({**PGD_ONLY, "n": 8}))
    args = ["evaluate", "--model", str(ckpt), "--config", str(config), "--out", str(tmp_path / "o")]
    real = runner_module.compute_cell
    calls = []

    def interrupt_third(cell, key, ctx):
        if len(calls) == 2:
            raise KeyboardInterrupt
        calls.append(key)
        return real(cell, key, ctx)

    monkeypatch.setattr(runner_module, "compute_cell", interrupt_third)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 130
    assert "2 of 4 cells are saved" in result.output and "resume" in result.output
    monkeypatch.setattr(runner_module, "compute_cell", real)
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "2 cells computed, 2 reused" in result.output and "tiny" in result.output
    assert (tmp_path / "o" / "report.html").is_file()


def test_paired_significance_of_sanity_differences() -> None:
    from foveal.app.evaluation.sanity import significant

    assert significant("0000011111", "1111111111")  # 5 images only the first gets wrong
    assert not significant("0001111111", "1110001111")  # 3 vs 3: chance
    assert not significant("0111111111", "1111111111")  # one image is not evidence
    assert significant(None, "1111")  # without per-image results only the tolerance applies
    records = [
        _record("m", "pgd", "PGD Linf 4/255", 0.3, norm="linf", eps=4 / 255),
        _record("m", "pgd", "PGD Linf 8/255", 0.5, norm="linf", eps=8 / 255),
    ]
    records[0]["correct"] = "1110000000" * 2  # 30% ...
    records[1]["correct"] = "0001100000" * 2  # ... 20%: no rise at all
    records[1]["metrics"]["accuracy"] = 0.2
    assert sanity_checks(records, n=20) == []
    records[1]["correct"] = "1111100000" * 2  # 50%, a superset of the 4/255 survivors
    records[1]["metrics"]["accuracy"] = 0.5
    assert [w.check for w in sanity_checks(records, n=20)] == ["accuracy-rises-with-eps"]
