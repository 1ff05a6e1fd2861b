"""Registries drive everything chosen by name: recipes with their own settings, capability
attributes instead of name lists, threat builders in the library, and ``foveal list``."""

from __future__ import annotations

import importlib
import sys
from pathlib import Path

import pytest
import torch
from pydantic import ValidationError
from typer.testing import CliRunner

import foveal
from foveal.app.cli import app
from foveal.app.cli._app import parse_param
from foveal.app.cli.listing import KINDS, format_value, registry_of
from foveal.app.jobs import TrainJob, format_validation_error
from foveal.defenses import RECIPES, make_recipe
from foveal.defenses.adversarial import DualRecipe, FatRecipe, PartRecipe, SipRecipe, TradesRecipe
from foveal.registry import Registry
from foveal.threats import BUILDERS, RegionBudget, ThreatOptions

runner = CliRunner()

ALL_RECIPES = ["standard", "madry", "trades", "fat", "part", "dual", "sip-h", "sip-s", "gaussian"]


# ------------------------------------------------------------------------------------ recipes
def test_every_recipe_registers_its_own_settings() -> None:
    assert sorted(RECIPES.names()) == sorted(ALL_RECIPES)
    for name in RECIPES:
        settings = RECIPES.get(name)()
        assert settings.method == name
        assert type(settings).model_config.get("extra") == "forbid"
        for key, field in type(settings).model_fields.items():
            assert key == "method" or field.description, f"{name}.{key} has no description"


def test_settings_defaults_are_the_documented_ones() -> None:
    """The defaults ``foveal train`` has always used for each method."""
    adversarial = {"eps": 8 / 255, "norm": "linf", "steps": 10, "alpha": None, "fast": False,
                   "eval_n": 500, "eval_steps": 10}  # fmt: skip
    expected = {
        "standard": {},
        "madry": adversarial,
        "sip-h": adversarial,
        "trades": {**adversarial, "beta": 6.0},
        "part": {**adversarial, "eps_low": 7 / 255, "burn_in": 1},
        "dual": {**adversarial, "eps_bg": None},
        "sip-s": {**adversarial, "reference": None, "fraction": 0.5},
        "fat": {
            **adversarial,
            "tau_schedule": ((50 / 120, 0), (90 / 120, 1), (1.0, 2)),
            "omega": 0.001,
        },
        "gaussian": {"noise_sd": 0.25},
    }
    for name, values in expected.items():
        assert RECIPES.get(name)().model_dump(exclude={"method"}) == values, name


def test_settings_build_the_same_recipes_as_the_constructors() -> None:
    def same(a: object, b: object) -> None:
        assert type(a) is type(b)
        assert {k: v for k, v in vars(a).items() if k != "masker"} == {
            k: v for k, v in vars(b).items() if k != "masker"
        }

    trades = TradesRecipe(eps=4 / 255, steps=3, beta=2)
    same(make_recipe("trades", eps="4/255", steps=3, beta=2), trades)
    same(make_recipe("fat", epochs=12), FatRecipe(epochs=12))
    same(make_recipe("part", eps_low="2/255", burn_in=0), PartRecipe(eps_low=2 / 255, burn_in=0))
    same(make_recipe("dual", eps_bg="20/255"), DualRecipe(eps_bg=20 / 255))
    same(make_recipe("sip-h", fast=True), SipRecipe(fast=True))
    assert type(make_recipe("standard")) is foveal.training.Recipe
    assert make_recipe("gaussian").noise_sd == 0.25


def test_sip_s_resolves_its_reference(tmp_path: Path) -> None:
    model = foveal.models.create("shapes-cnn", width=4)
    foveal.models.save(model, tmp_path / "ref", {"arch": "shapes-cnn", "arch_kwargs": {"width": 4}})
    batch = foveal.data.load("shapes", n=4).batch(slice(0, 4))
    from_path = make_recipe("sip-s", reference=str(tmp_path / "ref"), fraction=0.3)
    from_model = make_recipe("sip-s", reference=model, fraction=0.3)
    assert from_path.describe() == from_model.describe()
    assert from_path.describe()["name"] == "sip-s"
    torch.testing.assert_close(from_path.masker(model, batch), from_model.masker(model, batch))


def test_recipe_settings_errors_name_the_key_and_the_value() -> None:
    with pytest.raises(
        ValueError, match=r"method 'madry' takes no setting 'beta' \(its settings: eps, norm"
    ):
        make_recipe("madry", beta=6)
    with pytest.raises(
        ValueError, match="eps_low must be a number or a fraction like 8/255; got 'x'"
    ):
        make_recipe("part", eps_low="x")
    with pytest.raises(ValueError, match="recipe 'fat' needs epochs="):
        make_recipe("fat")
    with pytest.raises(ValueError, match="recipe 'madry' takes no masker= object"):
        make_recipe("madry", masker=lambda model, batch: batch["mask"])


def test_train_job_validates_the_recipe_against_its_method() -> None:
    job = TrainJob(recipe={"method": "trades", "eps": "4/255", "beta": 3})
    assert job.recipe.eps == 4 / 255 and job.recipe.beta == 3
    dump = job.model_dump()
    assert dump["recipe"] == {"method": "trades", "eps": 4 / 255, "norm": "linf", "steps": 10,
                              "alpha": None, "fast": False, "eval_n": 500, "eval_steps": 10,
                              "beta": 3.0}  # fmt: skip
    assert TrainJob(**dump).model_dump() == dump  # the dump is a valid job again
    assert TrainJob().model_dump()["recipe"] == {"method": "standard"}
    for recipe, message in [
        ({"method": "madry", "beta": 3}, "recipe: method 'madry' takes no setting 'beta'"),
        ({"eps": 0.1}, "recipe: method 'standard' takes no setting 'eps' (it has no settings)"),
        ({"method": "madri"}, "recipe: unknown training recipe 'madri'; did you mean 'madry'"),
        ({"method": "dual", "eps_bg": -1}, "eps_bg must be a finite number >= 0; got -1"),
        ({"method": "madry", "steps": 0}, "recipe.steps: Input should be greater than or equal"),
    ]:
        with pytest.raises(ValidationError) as info:
            TrainJob(recipe=recipe)
        assert message in format_validation_error(info.value)


# -------------------------------------------------------------------------------- foveal train
TINY = ["--n-train", "64", "--n-test", "16", "--width", "4", "--batch-size", "32", "--epochs", "1"]


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--method", "madry", "--beta", "3"], "method 'madry' takes no setting 'beta'"),
        (["--eps", "8/255"], "method 'standard' takes no setting 'eps'"),
        (["--method", "trades", "-p", "gamma=1"], "method 'trades' takes no setting 'gamma'"),
        (["--method", "madry", "--eps", "4/255", "-p", "eps=2/255"], "given twice: --eps and -p"),
        (["--method", "madry", "-p", "eps"], "--param must look like KEY=VALUE; got 'eps'"),
        (["--method", "part", "--norm", "l2"], "part uses a per-pixel Linf eps map"),
    ],
)
def test_train_recipe_options_are_validated(args: list[str], message: str, tmp_path: Path) -> None:
    result = runner.invoke(app, ["train", *args, "--out", str(tmp_path / "m")])
    assert result.exit_code == 2, result.output
    assert message in result.output
    assert "Traceback" not in result.output


def test_train_param_reaches_the_recipe(tmp_path: Path) -> None:
    out = tmp_path / "m"
    args = ["train", *TINY, "--method", "madry", "--steps", "1", "-p", "eps=2/255", "-p",
            "eval_n=0", "--out", str(out)]  # fmt: skip
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    recipe = foveal.models.read_meta(out)["recipe"]
    assert recipe["name"] == "madry" and recipe["eps"] == 2 / 255 and recipe["steps"] == 1


def test_parse_param() -> None:
    assert parse_param("eps=8/255") == ("eps", 8 / 255)
    assert parse_param("burn-in=2") == ("burn_in", 2)
    assert parse_param("reference=runs/m") == ("reference", "runs/m")
    assert parse_param("alpha=none") == ("alpha", None)


# ------------------------------------------------------------------------------- capabilities
def test_detectors_declare_what_they_need() -> None:
    from foveal.detectors import DETECTORS

    needs_masker = {n for n in DETECTORS if DETECTORS.get(n).needs_masker}
    supervised = {n for n in DETECTORS if DETECTORS.get(n).needs_adversarial}
    assert needs_masker == {"smd", "spd"}
    assert supervised == {"id", "jsd", "smd", "spd", "steganalysis"}
    assert {n for n in DETECTORS if DETECTORS.get(n).takes_labels} == {"odds"}
    assert not DETECTORS.get("id").needs_model and DETECTORS.get("jsd").needs_model


def test_saliency_methods_declare_what_they_take() -> None:
    from foveal.saliency import METHODS

    assert {n for n in METHODS if METHODS.get(n).takes_layer} == {"gradcam", "cam"}
    assert {n for n in METHODS if METHODS.get(n).takes_masker} == {"learned"}


def test_threat_builders_live_in_the_library() -> None:
    x = torch.rand(2, 3, 8, 8)
    fg = torch.zeros(2, 1, 8, 8)
    fg[..., 2:6, 2:6] = 1
    options = ThreatOptions(norm="l2", eps=0.5, eps_fg=0.1, eps_bg=1.0)
    assert sorted(BUILDERS.names()) == ["ball", "box", "dual", "frozen"]
    assert isinstance(BUILDERS.get("dual")({"image": x, "mask": fg}, options), RegionBudget)
    assert BUILDERS.get("box")({"image": x}, options).eps == pytest.approx((3 * 8 * 8) ** 0.5)
    with pytest.raises(ValueError, match="threat 'dual' needs eps_fg and eps_bg; got eps_fg=None"):
        BUILDERS.get("dual")({"image": x, "mask": fg}, ThreatOptions(norm="linf", eps=0.1))
    with pytest.raises(ValueError, match="threat 'frozen' needs a batch with foreground masks"):
        BUILDERS.get("frozen")({"image": x}, options)
    with pytest.raises(ValueError, match="eps_bg must be a finite number >= 0; got -1"):
        ThreatOptions(norm="linf", eps=0.1, eps_bg=-1)
    with pytest.raises(ValueError, match="norm must be 'linf' or 'l2'; got 'l7'"):
        ThreatOptions(norm="l7", eps=0.1)
    assert "foveal.attacks" not in _imports_of("foveal.threats.builders")


def _imports_of(module: str) -> set[str]:
    """Modules imported at the top level of ``module``'s source."""
    import ast

    spec = importlib.util.find_spec(module)
    assert spec is not None and spec.origin is not None
    tree = ast.parse(Path(spec.origin).read_text(encoding="utf-8"))
    found: set[str] = set()
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.module:
            found.add(node.module)
        elif isinstance(node, ast.Import):
            found.update(a.name for a in node.names)
    return found


# -------------------------------------------------------------------------------- foveal list
def _all_registries() -> list[Registry]:
    """Every Registry reachable from a loaded foveal module (the CLI imports them all)."""
    for kind in KINDS:
        registry_of(kind)  # import what the list command imports
    seen: dict[int, Registry] = {}
    for name, module in list(sys.modules.items()):
        if not name.startswith("foveal") or module is None:
            continue
        for value in vars(module).values():
            if isinstance(value, Registry):
                seen[id(value)] = value
    return list(seen.values())


def test_list_covers_every_registry_and_every_name() -> None:
    listed = {id(r): kind for kind in KINDS if (r := registry_of(kind)) is not None}
    registries = _all_registries()
    assert len(registries) >= 11
    forgotten = [r.kind for r in registries if id(r) not in listed]
    assert not forgotten, f"registries missing from `foveal list`: {forgotten}"
    everything = runner.invoke(app, ["list"])
    assert everything.exit_code == 0, everything.output
    for registry in registries:
        kind = listed[id(registry)]
        assert f"{kind}:" in everything.output
        one = runner.invoke(app, ["list", kind])
        assert one.exit_code == 0, one.output
        names = {line.split()[0] for line in one.output.splitlines() if line.strip()}
        assert names == set(registry.names()), kind
        for name in registry.names():
            assert f"  {name} " in everything.output or f"  {name}\n" in everything.output


def test_list_shows_recipe_settings_and_new_entries() -> None:
    out = runner.invoke(app, ["list", "recipes"]).output
    madry = next(line for line in out.splitlines() if line.startswith("madry "))
    assert "PGD adversarial training (Madry et al. 2018)" in madry
    assert "eps=8/255 norm=linf steps=10 alpha=None fast=False eval_n=500 eval_steps=10" in madry
    assert "eps_low=7/255 burn_in=1" in out and "noise_sd=0.25" in out

    @BUILDERS.register("everywhere", help="a test entry")
    def _everywhere(batch: object, options: ThreatOptions) -> object:
        return None

    try:
        assert "everywhere  a test entry" in runner.invoke(app, ["list", "threats"]).output
    finally:
        BUILDERS.unregister("everywhere")
    assert "everywhere" not in BUILDERS


def test_list_errors_and_values() -> None:
    result = runner.invoke(app, ["list", "attack"])
    assert result.exit_code == 2 and "unknown kind 'attack'; choose from attacks" in result.output
    assert format_value(7 / 255) == "7/255" and format_value(0.6) == "0.6"
    assert format_value(6.0) == "6" and format_value(True) == "True"


def test_help_texts_point_to_foveal_list() -> None:
    for command in (["attack"], ["train"], ["detect"], ["saliency"]):
        result = runner.invoke(app, [*command, "--help"])
        assert "foveal list" in " ".join(result.output.split()), command
