"""``foveal reproduce``: every reproduction runs end to end at the smoke scale and resumes."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from foveal.app.cli import app
from foveal.app.reproductions import EXPERIMENTS, reproduce
from foveal.io import read_jsonl

runner = CliRunner()
pytestmark = pytest.mark.usefixtures("single_thread")


def test_list_names_every_reproduction() -> None:
    res = runner.invoke(app, ["reproduce", "--list"])
    assert res.exit_code == 0, res.output
    for name in ("dual", "sai", "detect", "sip", "perceptual", "detectors"):
        assert name in EXPERIMENTS
        assert res.output.count(f"{name} ") >= 1
    res = runner.invoke(app, ["reproduce", "duall", "--smoke"])
    assert res.exit_code == 2 and "did you mean 'dual'" in res.output


@pytest.mark.parametrize("name", sorted(EXPERIMENTS.names()))
def test_smoke_run_writes_page_and_resumes(name: str, tmp_path: Path) -> None:
    docs, out = tmp_path / "docs", tmp_path / "out"
    res = runner.invoke(app, ["reproduce", name, "--smoke", "--docs", str(docs), "--out", str(out)])
    assert res.exit_code == 0, res.output
    page = (docs / f"{name}.md").read_text(encoding="utf-8")
    exp = EXPERIMENTS.get(name)
    # Every figure the page links exists.
    for line in page.splitlines():
        if line.startswith("!["):
            target = line.split("](", 1)[1].rstrip(")")
            assert (docs / target).is_file(), target
    if not exp.claims:  # an experiment: numbers only, no claims table, not in the index
        assert page.startswith(f"# Experiment `{name}`")
        assert "| | claim |" not in page.replace("|  |", "| |")
        assert not (docs / f"{name}.json").exists()
        index = docs / "README.md"
        assert not index.exists() or f"[{name}]" not in index.read_text(encoding="utf-8")
    else:
        assert page.startswith(f"# Reproduction `{name}`")
        assert "| | claim | paper | ours | holds? |" in page.replace("|  |", "| |")
        index_text = (docs / "README.md").read_text(encoding="utf-8")
        assert f"[{name}]({name}.md) (a)" in index_text
        summary = json.loads((docs / f"{name}.json").read_text(encoding="utf-8"))
        assert summary["scale"] == "smoke" and summary["compute_minutes"] >= 0
        assert [c["holds"] for c in summary["claims"]] == [
            {"yes": True, "**no**": False, "n/a": None}[line.rsplit("|", 2)[1].strip()]
            for line in page.splitlines()
            if line.startswith("| ")
            and line.split("|")[1].strip() in "abcdefgh"
            and len(line.split("|")[1].strip()) == 1
        ]
    records = read_jsonl(out / "results.jsonl")
    assert records and all("@" in r["key"] for r in records)
    # A second run reads every cell from the cache and computes none.
    again = reproduce(name, scale="smoke", out=out, docs=docs)
    # training records and the machine line are not cells
    cells = [r for r in records if not r["key"].startswith(("train/", "machine@"))]
    assert again.cells_run == 0 and again.cells_cached == len(cells)
    assert [c.key for c in again.claims] == [chr(ord("a") + i) for i in range(len(again.claims))]
    assert exp.cite in page


def test_interrupted_run_resumes_to_the_uninterrupted_results(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import foveal.app.reproductions.dual as dual_module

    real = dual_module.accuracy_under
    calls = {"n": 0}

    def flaky(*args, **kwargs):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return real(*args, **kwargs)

    monkeypatch.setattr(dual_module, "accuracy_under", flaky)
    with pytest.raises(KeyboardInterrupt):
        reproduce("dual", scale="smoke", out=tmp_path / "a", docs=None)
    done = [r for r in read_jsonl(tmp_path / "a" / "results.jsonl") if "machine@" not in r["key"]]
    assert len(done) == 2
    monkeypatch.setattr(dual_module, "accuracy_under", real)
    resumed = reproduce("dual", scale="smoke", out=tmp_path / "a", docs=None)
    assert resumed.cells_cached == 2
    fresh = reproduce("dual", scale="smoke", out=tmp_path / "b", docs=None)
    values = lambda d: {r["key"]: r["value"] for r in read_jsonl(tmp_path / d / "results.jsonl")}  # noqa: E731
    assert values("a") == values("b")
    assert [c.ours for c in resumed.claims] == [c.ours for c in fresh.claims]


def test_default_run_writes_nothing_outside_its_results_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)
    repro = reproduce("sip", scale="smoke", out=tmp_path / "out")
    assert repro.page == tmp_path / "out" / "sip.md" and repro.page.is_file()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
    assert (tmp_path / "out" / "README.md").is_file()  # the index of the claims run here
