"""Dual-perturbation attack (Tong et al. 2020): PGD equivalence, region budgets, salience, EOT."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from foveal import threats as T
from foveal.attacks import (
    PGD,
    CrossEntropy,
    DualPerturbation,
    ExpectationOverNoise,
    ObjectiveContext,
    SalienceTerm,
    sweep,
)
from foveal.saliency import foreground_score, half_range, spectral_residual

CLASSES = 4


pytestmark = pytest.mark.usefixtures("single_thread")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.fc = nn.Linear(4 * 4 * 4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.avg_pool2d(F.relu(self.conv(x)), 4).flatten(1))


def _setup(n: int = 4, dtype: torch.dtype = torch.float64, seed: int = 0):
    torch.manual_seed(seed)
    model = Net().to(dtype)
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 16, 16, generator=gen).to(dtype)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    fg = torch.zeros(n, 1, 16, 16, dtype=dtype)
    fg[..., 4:12, 3:13] = 1
    return model, x, y, fg


@pytest.mark.parametrize("eps", [4 / 255, 12 / 255])
def test_equal_budgets_and_no_salience_is_plain_pgd(eps: float) -> None:
    model, x, y, fg = _setup()
    dual_adv = DualPerturbation(model, eps_fg=eps, eps_bg=eps, lam=0.0, steps=5, seed=3)(
        x, y, masks=fg
    )
    pgd_adv = PGD(model, eps=eps, steps=5, seed=3)(x, y)
    torch.testing.assert_close(dual_adv, pgd_adv, atol=0, rtol=0)


def test_l2_with_no_salience_is_pgd_on_the_dual_set() -> None:
    model, x, y, fg = _setup()
    a = DualPerturbation(model, eps_fg=0.3, eps_bg=0.9, norm="l2", lam=0.0, steps=4)(x, y, masks=fg)
    b = PGD(model, norm="l2", steps=4)(x, y, threat=T.dual(fg, 0.3, 0.9, "l2"))
    torch.testing.assert_close(a, b, atol=0, rtol=0)


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_per_region_norms_stay_within_their_budgets(norm: str) -> None:
    model, x, y, fg = _setup(n=6)
    e_fg, e_bg = (2 / 255, 16 / 255) if norm == "linf" else (0.2, 1.0)
    result = DualPerturbation(model, eps_fg=e_fg, eps_bg=e_bg, norm=norm, steps=6).run(
        x, y, masks=fg
    )
    d = result.adversarial - x
    fg_part, bg_part = (d * fg).flatten(1), (d * (1 - fg)).flatten(1)
    size = (lambda t: t.abs().amax(1)) if norm == "linf" else (lambda t: t.norm(dim=1))
    assert bool((size(fg_part) <= e_fg + 1e-9).all()) and bool((size(bg_part) <= e_bg + 1e-9).all())
    # the attack uses its budgets: the background moves well past the foreground's budget
    assert float(size(bg_part).max()) > 2 * e_fg
    torch.testing.assert_close(result.norms["foreground"], size(fg_part))
    assert float(result.adversarial.min()) >= 0 and float(result.adversarial.max()) <= 1


def test_absolute_region_steps() -> None:
    model, x, y, fg = _setup()
    attack = DualPerturbation(
        model, eps_fg=0.05, eps_bg=0.2, lam=0.0, steps=1, alpha_fg=0.01, alpha_bg=0.03,
        random_start=False,
    )  # fmt: skip
    x = 0.25 + 0.5 * x  # away from the box
    d = attack(x, y, masks=fg) - x
    torch.testing.assert_close(d.abs() * fg, 0.01 * fg.expand_as(d), atol=1e-12, rtol=0)
    torch.testing.assert_close(d.abs() * (1 - fg), 0.03 * (1 - fg).expand_as(d), atol=1e-12,
                               rtol=0)  # fmt: skip


def test_default_masks_are_the_half_range_of_the_fixation_density() -> None:
    model, x, y, _ = _setup()
    fg = DualPerturbation(model).foreground(x)
    torch.testing.assert_close(fg, half_range(spectral_residual(x)).to(x.dtype))
    with pytest.raises(ValueError, match=r"mask_source='ground-truth' needs ground-truth masks"):
        DualPerturbation(model, mask_source="ground-truth")(x, y)


def test_salience_term_is_the_foreground_score_and_the_attack_raises_it() -> None:
    model, x, y, fg = _setup(n=6, dtype=torch.float32)
    ctx = ObjectiveContext(model, x, x * 0, x, model(x), y, False)
    torch.testing.assert_close(SalienceTerm(fg)(ctx), foreground_score(spectral_residual(x), fg))
    scores = []
    for lam in (0.0, 50.0):
        adv = DualPerturbation(model, eps_fg=2 / 255, eps_bg=32 / 255, lam=lam, steps=10)(
            x, y, masks=fg
        )
        scores.append(float(foreground_score(spectral_residual(adv), fg).mean()))
    assert scores[1] > scores[0] + 0.01


def test_eot_averages_over_noise_and_keeps_the_output_noise_free() -> None:
    model, x, y, fg = _setup(n=3)
    attack = DualPerturbation(model, lam=0.5, steps=3, eot_samples=4, eot_sigma=0.1, seed=2)
    out = attack.run(x, y, masks=fg)
    assert bool(T.dual(fg, 4 / 255, 20 / 255).bind(x).contains(out.adversarial - x).all())
    # deterministic and batch-independent (noise from per-image generators)
    torch.testing.assert_close(attack(x, y, masks=fg), out.adversarial, atol=0, rtol=0)
    single = attack(x[1:2], y[1:2], masks=fg[1:2])
    torch.testing.assert_close(single[0], out.adversarial[1], atol=1e-10, rtol=0)
    # the EOT objective is the mean of the term over the draws
    ctx = ObjectiveContext(model, x, x * 0, x, model(x), y, False)
    eot = ExpectationOverNoise(CrossEntropy(), sigma=1e-9, samples=3)
    torch.testing.assert_close(eot(ctx), CrossEntropy()(ctx), atol=1e-6, rtol=0)


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"eps_fg": -0.1}, r"eps_fg must be a finite number >= 0; got -0.1"),
        ({"eps_bg": float("nan")}, r"eps_bg must be a finite number >= 0"),
        ({"alpha_fg": 0.1}, r"give both alpha_fg and alpha_bg"),
        ({"mask_source": "human"}, r"mask_source must be one of .*got 'human'"),
        ({"eot_samples": -1}, r"eot_samples must be an integer >= 0; got -1"),
        ({"lam": float("inf")}, r"lam must be a finite number; got inf"),
    ],
)
def test_bad_arguments(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        DualPerturbation(Net(), **kwargs)


def test_ground_truth_masks_reach_every_run_of_a_sweep() -> None:
    model, x, y, fg = _setup()
    attack = DualPerturbation(model, lam=0.5, steps=2, mask_source="ground-truth")
    assert attack.uses_masks and attack.requires_masks
    assert DualPerturbation.uses_masks and not DualPerturbation(model).requires_masks
    res = sweep(attack, x, y, [T.Linf(2 / 255), T.dual(fg, 2 / 255, 8 / 255)], masks=fg)
    expected = attack.run(x, y, threat=T.dual(fg, 2 / 255, 8 / 255), masks=fg)
    assert torch.equal(res.success[1], expected.success)
    with pytest.raises(ValueError, match=r"mask_source='ground-truth' needs ground-truth masks"):
        sweep(attack, x, y, [T.Linf(2 / 255)])


def test_bad_masks_name_the_argument() -> None:
    model, x, y, fg = _setup()
    with pytest.raises(ValueError, match=r"masks must have shape \(4,1,16,16\)"):
        DualPerturbation(model)(x, y, masks=fg[:, :, :8])
    with pytest.raises(ValueError, match=r"masks must be binary"):
        DualPerturbation(model)(x, y, masks=fg * 0.5)
