"""Adversarial-training recipes: inner examples inside each recipe's set, learning, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import torch.nn.functional as F

import foveal
from foveal.attacks import PGD
from foveal.defenses import make_recipe
from foveal.defenses.adversarial import (
    DualRecipe,
    FatRecipe,
    PartRecipe,
    SipRecipe,
    TradesRecipe,
    top_k_masker,
)
from foveal.threats import EpsMap
from foveal.training import TrainConfig, Trainer, fit

EPS = 8 / 255


@pytest.fixture(scope="module")
def data():
    return foveal.data.load("shapes", n=96), foveal.data.load("shapes", split="test", n=32)


@pytest.fixture(scope="module")
def batch(data):
    return data[0].batch(slice(0, 16))


def _model(seed: int = 0) -> torch.nn.Module:
    torch.manual_seed(seed)
    return foveal.models.create("shapes-cnn", width=4)


@pytest.mark.parametrize("name", ["madry", "trades", "fat", "madry-fast", "trades-fast"])
def test_ball_recipes_stay_in_the_ball(name: str, batch) -> None:
    base, _, fast = name.partition("-")
    kwargs = {"epochs": 4} if base == "fat" else {}
    recipe = make_recipe(base, eps=EPS, steps=3, fast=bool(fast), **kwargs)
    x = batch["image"]
    x_adv = recipe.inner(_model(), batch, epoch=0)
    assert float((x_adv - x).abs().max()) <= EPS + 1e-6
    assert 0.0 <= float(x_adv.min()) and float(x_adv.max()) <= 1.0
    assert float((x_adv - x).abs().max()) > EPS / 2  # it did move


def test_sip_leaves_salient_pixels_untouched(batch) -> None:
    x, mask = batch["image"], batch["mask"]
    x_adv = SipRecipe(eps=EPS, steps=3).inner(_model(), batch, epoch=0)
    salient = mask.expand_as(x).bool()
    assert torch.equal(x_adv[salient], x[salient])
    assert float((x_adv - x)[~salient].abs().max()) > EPS / 2


def test_sip_s_masks_hold_half_the_gradient_mass(batch) -> None:
    reference = _model(1)
    masker = top_k_masker(reference)
    m = masker(reference, batch)
    assert m.shape == (16, 1, 32, 32) and set(torch.unique(m).tolist()) <= {0.0, 1.0}
    x_adv = SipRecipe(eps=EPS, steps=2, masker=masker).inner(_model(), batch, epoch=0)
    frozen = m.expand_as(x_adv).bool()
    assert torch.equal(x_adv[frozen], batch["image"][frozen])


def test_dual_respects_region_budgets(batch) -> None:
    x, fg = batch["image"], batch["mask"].expand_as(batch["image"]).bool()
    x_adv = DualRecipe(eps=4 / 255, eps_bg=20 / 255, steps=3).inner(_model(), batch, epoch=0)
    d = x_adv - x
    assert float(d[fg].abs().max()) <= 4 / 255 + 1e-6
    assert float(d[~fg].abs().max()) <= 20 / 255 + 1e-6
    assert float(d[~fg].abs().max()) > 4 / 255  # the background really uses its budget


def test_part_uses_a_per_pixel_eps_map_after_burn_in(batch) -> None:
    recipe = PartRecipe(eps=EPS, eps_low=2 / 255, burn_in=1, steps=3)
    model = _model()
    burn = recipe.inner(model, batch, epoch=0)
    assert float((burn - batch["image"]).abs().max()) > 2 / 255 + 1e-3  # plain ball at first
    threat = recipe.threat(model, batch, epoch=1)
    assert isinstance(threat, EpsMap)
    eps_map = threat.eps_map
    x_adv = recipe.inner(model, batch, epoch=1)
    d = (x_adv - batch["image"]).abs()
    assert bool((d <= eps_map + 1e-6).all())
    assert sorted(torch.unique(eps_map).tolist()) == pytest.approx([2 / 255, EPS])
    # Important pixels (a minority: above mean + std of the CAM) carry the full budget.
    assert 0.0 < float((eps_map == EPS).float().mean()) < 0.5
    assert float(d[eps_map < EPS].max()) <= 2 / 255 + 1e-6


def test_fat_tau_schedule_scales_to_the_run() -> None:
    fat = FatRecipe(epochs=12)
    assert [fat.tau(e) for e in range(12)] == [0] * 5 + [1] * 4 + [2] * 3


@pytest.mark.parametrize("name", ["madry", "trades", "fat", "part", "dual", "sip-h"])
def test_one_epoch_lowers_the_adversarial_loss(name: str, data) -> None:
    train, _ = data
    kwargs = {"epochs": 1} if name == "fat" else {}
    if name == "part":
        kwargs["burn_in"] = 0
    recipe = make_recipe(name, eps=2 / 255, steps=2, eval_n=0, **kwargs)
    model = _model()
    # One epoch over six copies of the fixed batch: 24 steps, enough for BatchNorm's running
    # statistics (used in eval mode by the probe) to follow the weights.
    fixed_data = train.subset(torch.arange(64).repeat(6))
    fixed = train.batch(slice(0, 64))
    probe = PGD(model, eps=2 / 255, steps=3, seed=0)

    def adv_loss() -> float:
        x_adv = probe(fixed["image"], fixed["label"])
        with torch.no_grad():
            model.eval()
            return float(F.cross_entropy(model(x_adv), fixed["label"]))

    before = adv_loss()
    fit(model, fixed_data, recipe=recipe, config={"epochs": 1, "batch_size": 16, "lr": 1e-2,
                                                 "schedule": "constant"})  # fmt: skip
    assert adv_loss() < before - 0.05


def test_adversarial_resume_equals_uninterrupted(data, tmp_path: Path) -> None:
    train, test = data
    cfg = {"epochs": 2, "batch_size": 32}
    ref = fit(_model(), train, recipe=TradesRecipe(steps=2, eval_n=8), config=cfg,
              eval_data=test)  # fmt: skip

    class Kill(Exception):
        pass

    trainer = Trainer(_model(), train, config=TrainConfig(**cfg), eval_data=test,
                      recipe=TradesRecipe(steps=2, eval_n=8), out_dir=tmp_path)  # fmt: skip

    def kill(t: Trainer) -> None:
        if t.epoch == 1 and t.batch == 1:
            raise Kill

    trainer.on_step = kill
    with pytest.raises(Kill):
        trainer.run()
    resumed = fit(_model(5), train, recipe=TradesRecipe(steps=2, eval_n=8), config=cfg,
                  eval_data=test, out_dir=tmp_path, resume=True)  # fmt: skip
    for k, v in ref.model.state_dict().items():
        torch.testing.assert_close(resumed.model.state_dict()[k], v, msg=k)
    assert resumed.history[-1]["pgd10_linf_acc"] == ref.history[-1]["pgd10_linf_acc"]


def test_recipe_errors(data) -> None:
    with pytest.raises(ValueError, match="sip-s needs reference="):
        make_recipe("sip-s")
    with pytest.raises(ValueError, match="part uses a per-pixel Linf eps map; got norm='l2'"):
        make_recipe("part", norm="l2")
    with pytest.raises(ValueError, match="unknown training recipe 'madri'"):
        make_recipe("madri")
    with pytest.raises(ValueError, match="eps must be a finite number >= 0; got -1"):
        make_recipe("madry", eps=-1)
    cifar_like = foveal.data.ArrayDataset(
        (torch.rand(4, 3, 32, 32) * 255).to(torch.uint8), torch.tensor([0, 1, 2, 3])
    )
    with pytest.raises(ValueError, match="needs data with foreground masks"):
        make_recipe("dual").inner(_model(), cifar_like.batch([0, 1]), epoch=0)
