"""Reference models: trained on first use in dependency order, cached by recipe, resumable."""

from __future__ import annotations

from pathlib import Path

import pytest

import foveal
from foveal.app.zoo import ZOO, pretrained, zoo_path


def test_pretrained_trains_dependencies_once(tmp_path: Path) -> None:
    lines: list[str] = []
    path = pretrained("sip-s", scale="smoke", cache=tmp_path, log=lines.append)
    # sip-s is fine-tuned from `standard` and takes its saliency from `madry`.
    assert [line.split()[3] for line in lines] == [
        "shapes/standard",
        "shapes/madry",
        "shapes/sip-s",
    ]
    meta = foveal.models.read_meta(path)
    assert meta["init"] == str(zoo_path("shapes", "standard", scale="smoke", cache=tmp_path))
    assert meta["epochs_done"] == 1
    model = foveal.models.load(path)
    assert model(foveal.data.load("shapes", split="test", n=2).images).shape == (2, 10)
    stamp = (path / "model.safetensors").stat().st_mtime_ns
    again: list[str] = []
    assert pretrained("sip-s", scale="smoke", cache=tmp_path, log=again.append) == path
    assert again == []  # nothing retrained
    assert (path / "model.safetensors").stat().st_mtime_ns == stamp


def test_paths_depend_on_recipe_and_scale(tmp_path: Path) -> None:
    a = zoo_path("shapes", "madry", scale="smoke", cache=tmp_path)
    b = zoo_path("shapes", "madry", scale="default", cache=tmp_path)
    c = zoo_path("shapes", "dual", scale="smoke", cache=tmp_path)
    assert len({a, b, c}) == 3
    assert a == zoo_path("shapes", "madry", scale="smoke", cache=tmp_path)


def test_unknown_entries_are_named() -> None:
    with pytest.raises(ValueError, match="unknown reference model 'madri'"):
        pretrained("madri")
    with pytest.raises(ValueError, match="no reference models for data 'cifar10'"):
        pretrained("standard", data="cifar10")
    with pytest.raises(ValueError, match="scale must be one of"):
        zoo_path("shapes", "standard", scale="huge")
    assert "standard" in ZOO["digits"]


def test_paths_do_not_depend_on_the_cache_root(tmp_path: Path) -> None:
    # Fine-tuned entries name their dependencies (init, SIP reference) by hashed directory
    # name, not absolute path, so a relocated cache keeps every model.
    for name in ("standard", "madry", "sip-h"):
        a = zoo_path("shapes", name, cache=tmp_path / "a")
        b = zoo_path("shapes", name, cache=tmp_path / "elsewhere" / "b")
        assert a.name == b.name and a.parent != b.parent
    # ... while a different dependency still changes the name.
    assert zoo_path("shapes", "madry").name != zoo_path("shapes", "madry", scale="smoke").name


def test_the_report_pair_has_its_own_schedules(tmp_path: Path, monkeypatch) -> None:
    from types import SimpleNamespace

    from foveal.app import zoo
    from foveal.app.jobs import TrainJob

    # The jobs (and so the weights) of `foveal evaluate`'s built-in pair.
    madry = {"method": "madry", "eps": 8 / 255}
    default_madry = {"training": {"epochs": 3, "lr": 1e-3}, "recipe": {**madry, "steps": 3}}
    quick_madry = {"training": {"epochs": 2, "lr": 1e-3}, "recipe": {**madry, "steps": 2}}
    quick_madry["recipe"]["eval_n"] = 200
    expected = {
        "default": (TrainJob(), TrainJob(**default_madry)),
        "quick": (
            TrainJob(n_train=10_000, n_test=500, training={"epochs": 3}),
            TrainJob(n_train=4000, n_test=500, **quick_madry),
        ),
    }
    for scale, (standard, madry_job) in expected.items():
        std_path = zoo_path("shapes", "report-standard", scale=scale, cache=tmp_path)
        paths = {"report-standard": std_path}
        assert zoo._job("shapes", "report-standard", scale, paths) == standard
        job = zoo._job("shapes", "report-madry", scale, paths)
        assert job == madry_job.model_copy(update={"init": str(std_path)})
    with pytest.raises(ValueError, match="scale must be one of"):
        zoo_path("shapes", "report-madry", scale="smoke")
    # An interrupted training stops the chain (the next call resumes it).
    monkeypatch.setattr(zoo, "run_train_job", lambda *a, **k: SimpleNamespace(interrupted=True))
    with pytest.raises(KeyboardInterrupt, match="run again to resume"):
        pretrained("report-madry", scale="quick", cache=tmp_path)
