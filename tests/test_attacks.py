"""The attack engine and the classic attacks.

The property tests run every registered attack (``foveal.attacks.ATTACKS``) on every
perturbation set below, so an attack is covered the moment it is registered. An attack whose
constructor needs other keyword arguments, or which supports only some sets, opts in by adding an
:class:`AttackSpec` to ``SPECS``.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
import torch
import torch.nn.functional as F
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from torch import nn

from foveal import threats as T
from foveal.attacks import (
    APGD,
    APGDDLR,
    APGDT,
    ATTACKS,
    BIM,
    FGSM,
    MIM,
    PGD,
    Attack,
    CrossEntropy,
    DualPerturbation,
    Margin,
    ObjectiveContext,
    sweep,
)

# ---------------------------------------------------------------- fixtures and tables
CLASSES = 5


pytestmark = pytest.mark.usefixtures("single_thread")


class TinyNet(nn.Module):
    """Conv + BatchNorm + Dropout + linear on 3x8x8: fast, and mode-sensitive (BN, dropout)."""

    def __init__(self, classes: int = CLASSES) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 6, 3, padding=1)
        self.bn = nn.BatchNorm2d(6)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(6 * 4 * 4, classes)
        with torch.no_grad():
            self.bn.running_mean.uniform_(-0.2, 0.2)
            self.bn.running_var.uniform_(0.5, 1.5)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(self.drop(h.flatten(1)))


def tiny_model(dtype: torch.dtype = torch.float32, seed: int = 0) -> TinyNet:
    torch.manual_seed(seed)
    return TinyNet().to(dtype)


def _mask(n: int, gen: torch.Generator, channels: int = 1) -> torch.Tensor:
    return (torch.rand(n, channels, 8, 8, generator=gen) > 0.5).double()


def _three_regions(x: torch.Tensor, gen: torch.Generator) -> T.Threat:
    n = x.shape[0]
    ids = torch.randint(0, 3, (n, 3, 8, 8), generator=gen)  # channel-wise regions (N,C,H,W)
    masks = {f"r{k}": (ids == k).double() for k in range(3)}
    eps = {"r0": torch.rand(n, generator=gen).double(), "r1": 0.0, "r2": 0.3}
    return T.RegionBudget(masks, eps, "l2")


#: Perturbation sets every attack is tested on: name -> factory(x, generator) -> Threat.
THREATS: dict[str, Callable[[torch.Tensor, torch.Generator], T.Threat]] = {
    "linf": lambda x, g: T.Linf(8 / 255),
    "l2": lambda x, g: T.L2(0.5),
    "linf-per-sample": lambda x, g: T.Linf(torch.rand(len(x), generator=g).double() * 0.1),
    "dual-linf": lambda x, g: T.dual(_mask(len(x), g), 4 / 255, 20 / 255),
    "dual-l2": lambda x, g: T.dual(_mask(len(x), g), 0.2, 0.8, "l2"),
    "frozen-linf": lambda x, g: T.frozen(_mask(len(x), g), 8 / 255),
    "frozen-l2": lambda x, g: T.frozen(_mask(len(x), g, channels=3), 0.5, "l2"),
    "eps-map": lambda x, g: T.EpsMap(
        torch.rand(len(x), 1, 8, 8, generator=g).double() * 0.1 * _mask(len(x), g)
    ),
    "regions3-l2": _three_regions,
}


@dataclass(frozen=True)
class AttackSpec:
    """How the property tests build an attack: constructor kwargs and the sets it supports."""

    kwargs: dict[str, Any] = field(default_factory=dict)
    threats: tuple[str, ...] = tuple(THREATS)


#: Fast defaults, passed where the constructor accepts them.
DEFAULT_KWARGS: dict[str, Any] = {"steps": 3, "restarts": 2, "seed": 11, "random_start": True}

#: Random start and restarts for the superpixel attacks (their default start is zero).
SAI_START: dict[str, Any] = {"random_start": True, "restarts": 2, "seed": 11}

#: Per-attack opt-ins (attacks not listed use DEFAULT_KWARGS and every set).
SPECS: dict[str, AttackSpec] = {
    "mim": AttackSpec(kwargs={"steps": 3, "mu": 0.9, "restarts": 2, "seed": 3}),
    # saliency-guided attacks (Tong et al. 2020, Dong et al. 2020, Elliott et al. 2019): the SA*
    # family restricts a ball or a single-budget region set to its own superpixel subspace (sets
    # with several non-zero budgets are refused; Grad-CAM crop: TinyNet has no GAP head for CAM;
    # S = 3 on 8x8 images).
    "dual": AttackSpec(kwargs={"steps": 3, "lam": 1.0, "restarts": 2, "seed": 11}),
    **{
        name: AttackSpec(
            kwargs={"steps": steps, "attention": "gradcam", "size": 3.0, **SAI_START},
            threats=("l2", "linf", "linf-per-sample", "frozen-l2", "frozen-linf"),
        )
        for name, steps in (("sai-fgm", 3), ("sa-fgm", 1), ("m-sai-fgm", 3))
    },
    "perceptual": AttackSpec(kwargs={"steps": 3, "random_start": True, "restarts": 2, "seed": 11}),
    # strong attacks: minimal-perturbation ones bounded by a few sets (balls, frozen pixels,
    # regions), the others on every set; few steps / queries keep the cost small
    "cw": AttackSpec(
        kwargs={"steps": 4, "search_steps": 2, "initial_const": 1.0},
        threats=("linf", "l2", "frozen-linf", "dual-l2"),
    ),
    "deepfool": AttackSpec(kwargs={"steps": 3}, threats=("linf", "l2", "frozen-linf", "dual-l2")),
    "jsma": AttackSpec(kwargs={"gamma": 0.05}, threats=("linf", "frozen-linf", "eps-map", "l2")),
    "apgd-ce": AttackSpec(kwargs={"steps": 4, "restarts": 2, "seed": 11}),
    "apgd-dlr": AttackSpec(kwargs={"steps": 4, "seed": 11}),
    "apgd-t": AttackSpec(kwargs={"steps": 3, "n_targets": 2, "seed": 11}),
    "square": AttackSpec(kwargs={"n_queries": 6, "seed": 11}),
    "autoattack": AttackSpec(kwargs={"steps": 2, "n_targets": 2, "n_queries": 4, "seed": 11}),
}


#: Iterative attacks also run with ``projection="exact"`` (name suffix ``+exact``): MIM's own
#: direction and PGD's fused step take different code paths.
EXACT = ("pgd", "mim", "dual")


def build_attack(name: str, model: nn.Module) -> Attack:
    name, _, variant = name.partition("+")
    extra = {"projection": "exact"} if variant == "exact" else {}
    cls = ATTACKS.get(name)
    if name in SPECS:
        return cls(model, **SPECS[name].kwargs, **extra)
    accepted = inspect.signature(cls).parameters
    return cls(model, **{k: v for k, v in DEFAULT_KWARGS.items() if k in accepted}, **extra)


CASES = [
    pytest.param(a, t, id=f"{a}-{t}")
    for a in [*ATTACKS.names(), *(f"{r}+exact" for r in EXACT)]
    for t in (SPECS[a.partition("+")[0]].threats if a.partition("+")[0] in SPECS else THREATS)
]


# ---------------------------------------------------------------- property tests
#: The drawn inputs of a property case (the slow suite draws larger batches from the same kinds).
SEEDS = st.integers(0, 2**16)
DTYPES = st.sampled_from([torch.float32, torch.float64])


# The default suite replays the same examples on every run (derandomize); the slow suite
# (tests/test_properties_slow.py) explores fresh ones.
@pytest.mark.parametrize(("attack_name", "threat_name"), CASES)
@settings(
    max_examples=8,
    deadline=None,
    derandomize=True,
    database=None,
    suppress_health_check=[HealthCheck.too_slow],
)
@given(seed=SEEDS, n=st.integers(1, 3), dtype=DTYPES, targeted=st.booleans())
def test_attack_properties(
    attack_name: str, threat_name: str, seed: int, n: int, dtype: torch.dtype, targeted: bool
) -> None:
    check_attack_properties(attack_name, threat_name, seed, n, dtype, targeted)


def check_attack_properties(
    attack_name: str, threat_name: str, seed: int, n: int, dtype: torch.dtype, targeted: bool
) -> None:
    """Every property an attack's output must have on one drawn batch: shape, dtype and device
    kept; inputs, model modes and gradients untouched; in [0, 1], inside the set, zero-budget
    pixels unchanged; bookkeeping agrees with the model; ``attack(...)`` equals ``run(...)``;
    batched equals per-sample in float64."""
    gen = torch.Generator().manual_seed(seed)
    model = tiny_model(dtype, seed % 7)
    model.train()
    model.drop.eval()  # mixed modes must come back exactly
    x = torch.rand(n, 3, 8, 8, generator=gen).to(dtype)
    x[:, 0, 0, 0] = 0.0  # box corners
    x[:, 1, 0, 0] = 1.0
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    target = (y + 1) % CLASSES if targeted else None
    threat = THREATS[threat_name](x, gen)
    x_before, y_before = x.clone(), y.clone()
    attack = build_attack(attack_name, model)

    result = attack.run(x, y, target=target, threat=threat)
    out = result.adversarial

    # shape / dtype / device kept; inputs untouched; model modes and gradients untouched
    assert out.shape == x.shape and out.dtype == x.dtype and out.device == x.device
    assert torch.equal(x, x_before) and torch.equal(y, y_before)
    assert model.training and model.conv.training and not model.drop.training
    assert all(p.grad is None for p in model.parameters())
    # in [0,1], inside the set, zero-budget pixels exactly unchanged
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    bound = threat.bind(x)
    assert bool(bound.contains(out - x, atol=1e-5).all())
    frozen = (bound.budget == 0).expand_as(x)
    assert torch.equal(out[frozen], x[frozen])
    # bookkeeping agrees with the model
    with torch.no_grad():
        model.eval()
        pred = model(out).argmax(1)
        model.train()
        model.drop.eval()
    assert torch.equal(result.predictions, pred)
    expected = pred == target if targeted else pred != y
    assert torch.equal(result.success, expected)
    for name, norms in result.norms.items():
        assert name in bound.regions and norms.shape == (n,)
    # calling returns the same images as run()
    torch.testing.assert_close(attack(x, y, target=target, threat=threat), out, atol=0, rtol=0)
    # batched == per-sample (float64 avoids last-bit differences between batch sizes)
    if dtype == torch.float64:
        for i in range(n):
            single = attack(
                x[i : i + 1],
                y[i : i + 1],
                target=None if target is None else target[i : i + 1],
                threat=threat.subset([i]),
            )
            torch.testing.assert_close(single[0], out[i], atol=1e-10, rtol=0)


# ---------------------------------------------------------------- reference algorithms
def _linear_model(seed: int = 0, dtype: torch.dtype = torch.float64) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, CLASSES)).to(dtype)


def _grad(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    x = x.clone().requires_grad_(True)
    F.cross_entropy(model(x), y, reduction="sum").backward()
    assert x.grad is not None
    return x.grad


def _data(n: int = 4, seed: int = 0, lo: float = 0.0, hi: float = 1.0):
    gen = torch.Generator().manual_seed(seed)
    x = lo + (hi - lo) * torch.rand(n, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    return x, y


def test_fgsm_linf_equals_the_closed_form_step() -> None:
    model = _linear_model()
    x, y = _data()
    eps = 0.05
    expected = (x + eps * _grad(model, x, y).sign()).clamp(0, 1)
    torch.testing.assert_close(FGSM(model, eps=eps)(x, y), expected, atol=1e-12, rtol=0)


def test_fgm_l2_equals_the_normalised_gradient_step_away_from_the_box() -> None:
    model = _linear_model()
    x, y = _data(lo=0.3, hi=0.7)
    g = _grad(model, x, y)
    expected = x + 0.5 * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(FGSM(model, eps=0.5, norm="l2")(x, y), expected)


def test_pgd_linf_matches_a_plain_loop() -> None:
    model = _linear_model(1)
    x, y = _data(seed=1)
    eps, alpha, steps = 8 / 255, 2 / 255, 5
    adv = x.clone()
    for _ in range(steps):
        adv = adv + alpha * _grad(model, adv, y).sign()
        adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
    ours = PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=False)(x, y)
    torch.testing.assert_close(ours, adv, atol=1e-12, rtol=0)


def test_bim_l2_is_i_fgm_with_normalised_steps() -> None:
    model = _linear_model(2)
    x, y = _data(seed=2, lo=0.3, hi=0.7)
    eps, steps = 0.4, 4
    alpha = eps / steps
    adv = x.clone()
    for _ in range(steps):
        g = _grad(model, adv, y)
        adv = adv + alpha * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        d = adv - x
        adv = x + d * (eps / d.flatten(1).norm(dim=1)).clamp(max=1).view(-1, 1, 1, 1)
    ours = BIM(model, eps=eps, norm="l2", steps=steps)(x, y)
    torch.testing.assert_close(ours, adv, atol=1e-10, rtol=0)


def test_pgd_l2_default_step_matches_the_torchattacks_update() -> None:
    # "rescale, then clip" (torchattacks' PGDL2, robustness, AutoAttack), from zero, with
    # pixels near the box edges so that the clip is active.
    model = _linear_model(4)
    x, y = _data(seed=4)
    eps, alpha, steps = 0.5, 0.2, 5
    adv = x.clone()
    for _ in range(steps):
        g = _grad(model, adv, y)
        adv = adv + alpha * g / g.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
        d = adv - x
        d = d * (eps / d.flatten(1).norm(dim=1)).clamp(max=1).view(-1, 1, 1, 1)
        adv = (x + d).clamp(0, 1)
    ours = PGD(model, eps=eps, norm="l2", alpha=alpha, steps=steps, random_start=False)(x, y)
    torch.testing.assert_close(ours, adv, atol=1e-10, rtol=0)
    assert float((adv - x).flatten(1).norm(dim=1).max()) <= eps
    # the exact projection uses the whole budget where "rescale, then clip" stops short
    exact = PGD(
        model, eps=eps, norm="l2", alpha=alpha, steps=steps, random_start=False, projection="exact"
    )(x, y)
    clipped = ((adv == 0) | (adv == 1)).flatten(1).any(1)
    assert bool(clipped.any())
    norms = (exact - x).flatten(1).norm(dim=1)
    assert torch.allclose(norms[clipped], torch.full_like(norms[clipped], eps), atol=1e-6)
    assert bool(((adv - x).flatten(1).norm(dim=1)[clipped] < eps - 1e-4).all())


def test_projection_must_be_exact_or_rescale() -> None:
    with pytest.raises(
        ValueError,
        match=r"projection must be one of \('exact', 'rescale'\); "
        r"got 'fast'",
    ):
        PGD(tiny_model(), projection="fast")


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_mim_uses_per_sample_l1_normalised_momentum(norm: str) -> None:
    model = _linear_model(3)
    x, y = _data(seed=3, lo=0.3, hi=0.7)
    eps, steps, mu = (16 / 255 if norm == "linf" else 0.5), 4, 0.8
    alpha = eps / steps
    adv, g_acc = x.clone(), torch.zeros_like(x)
    for _ in range(steps):
        g = _grad(model, adv, y)
        g_acc = mu * g_acc + g / g.abs().flatten(1).sum(1).view(-1, 1, 1, 1)
        if norm == "linf":
            adv = adv + alpha * g_acc.sign()
            adv = (x + (adv - x).clamp(-eps, eps)).clamp(0, 1)
        else:
            adv = adv + alpha * g_acc / g_acc.flatten(1).norm(dim=1).view(-1, 1, 1, 1)
            d = adv - x
            adv = x + d * (eps / d.flatten(1).norm(dim=1)).clamp(max=1).view(-1, 1, 1, 1)
    ours = MIM(model, eps=eps, norm=norm, steps=steps, mu=mu)(x, y)
    torch.testing.assert_close(ours, adv, atol=1e-10, rtol=0)


def test_region_steps_scale_with_each_regions_budget() -> None:
    model = _linear_model(4)
    x, y = _data(seed=4, lo=0.3, hi=0.7)
    fg = torch.zeros(4, 1, 8, 8, dtype=torch.float64)
    fg[..., 2:6, 2:6] = 1
    out = FGSM(model).run(x, y, threat=T.dual(fg, 0.01, 0.1))
    delta = out.adversarial - x
    torch.testing.assert_close(delta.abs() * fg, 0.01 * fg.expand_as(x), atol=1e-12, rtol=0)
    torch.testing.assert_close(delta.abs() * (1 - fg), 0.1 * (1 - fg).expand_as(x), atol=1e-12,
                               rtol=0)  # fmt: skip


# ---------------------------------------------------------------- engine behaviour
def test_targeted_attack_reaches_the_target() -> None:
    model = _linear_model(5)
    x, y = _data(n=6, seed=5)
    target = (y + 2) % CLASSES
    result = PGD(model, eps=1.0, steps=30).run(x, y, target=target)
    assert bool(result.success.all())
    assert torch.equal(result.predictions, target)


def test_untargeted_success_lowers_accuracy_monotonically_in_eps() -> None:
    model = tiny_model(torch.float64)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(32, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = model.eval()(x).argmax(1)  # all clean-correct
    res = sweep(PGD(model, steps=10), x, y, [0.0, 0.01, 0.05, 0.3])
    assert res.success.shape == (4, 32) and res.predictions.shape == (4, 32)
    assert res.clean_accuracy == 1.0
    assert float(res.robust_accuracy[0]) == 1.0 and not bool(res.success[0].any())
    acc = res.robust_accuracy.tolist()
    assert acc == sorted(acc, reverse=True) and acc[-1] < 0.5
    torch.testing.assert_close(res.robust_accuracy, 1 - res.success.float().mean(1))


def test_sweep_over_sets() -> None:
    model = tiny_model(torch.float64)
    x = torch.rand(8, 3, 8, 8, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (8,))
    fg = (torch.rand(8, 1, 8, 8) > 0.5).double()
    res = sweep(BIM(model, steps=3), x, y, [T.dual(fg, 0.0, e) for e in (0.0, 0.1)])
    assert res.budgets[0].startswith("RegionBudget(")
    assert res.as_dict()["robust_accuracy"] == [float(a) for a in res.robust_accuracy]


def test_restarts_keep_the_per_sample_best() -> None:
    model = tiny_model(torch.float64)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(16, 3, 8, 8, generator=gen, dtype=torch.float64)
    y = torch.randint(0, CLASSES, (16,), generator=gen)
    one = PGD(model, eps=0.02, steps=2, seed=5, objective="margin").run(x, y)
    many = PGD(model, eps=0.02, steps=2, seed=5, restarts=4, objective="margin").run(x, y)
    assert bool((many.success | ~one.success).all())  # never lose a success
    assert bool((many.loss >= one.loss - 1e-12).all())  # margin: success <=> loss > 0
    assert bool((many.loss > one.loss).any())


def test_seed_controls_the_random_start() -> None:
    model = tiny_model()
    x = torch.rand(4, 3, 8, 8)
    y = torch.zeros(4, dtype=torch.long)
    a = PGD(model, steps=1, seed=1)(x, y)
    assert torch.equal(a, PGD(model, steps=1, seed=1)(x, y))
    assert not torch.equal(a, PGD(model, steps=1, seed=2)(x, y))
    assert not torch.equal(
        PGD(model, steps=1, seed=None)(x, y), PGD(model, steps=1, seed=None)(x, y)
    )


def test_mode_restored_after_an_error() -> None:
    model = tiny_model()
    model.train()
    x = torch.rand(2, 3, 8, 8)
    with pytest.raises(ValueError, match="labels must be < the number of classes"):
        PGD(model, steps=1)(x, torch.tensor([0, 7]))
    assert model.training and model.bn.training and model.drop.training


def test_objectives_compose_and_callables_follow_the_sign_convention() -> None:
    model = _linear_model(6)
    x, y = _data(seed=6)
    with torch.no_grad():
        z = model(x)
    ctx = ObjectiveContext(model, x, x * 0, x, z, y, False)
    combo = CrossEntropy() + 0.5 * Margin()
    torch.testing.assert_close(combo(ctx), CrossEntropy()(ctx) + 0.5 * Margin()(ctx))
    tctx = ObjectiveContext(model, x, x * 0, x, z, y, True)
    torch.testing.assert_close(Margin()(tctx), -Margin()(ctx))
    margin = Margin()(ctx)
    top_other = z.scatter(1, y[:, None], -math.inf).amax(1)
    torch.testing.assert_close(margin, top_other - z.gather(1, y[:, None]).squeeze(1))
    assert float(Margin(kappa=0.1)(ctx).max()) <= 0.1

    def ce(logits: torch.Tensor, labels: torch.Tensor) -> torch.Tensor:
        return F.cross_entropy(logits, labels, reduction="none")

    for target in (None, (y + 1) % CLASSES):
        a = PGD(model, steps=3, objective=ce)(x, y, target=target)
        b = PGD(model, steps=3, objective="ce")(x, y, target=target)
        torch.testing.assert_close(a, b, atol=0, rtol=0)


# ---------------------------------------------------------------- validation
@pytest.mark.parametrize(
    ("call", "error", "pattern"),
    [
        (
            lambda a, x, y: a(x * 255, y),
            ValueError,
            r"images must lie in \[0, 1\]; observed min=.*, max=2\d\d.*divide by 255",
        ),
        (
            lambda a, x, y: a(x.masked_fill(x > 0.9, math.nan), y),
            ValueError,
            r"images contains NaN",
        ),
        (lambda a, x, y: a(x, y + CLASSES), ValueError, r"labels must be < the number of classes"),
        (lambda a, x, y: a(x, y, target=y + 9), ValueError, r"target must be < .*observed max=1\d"),
        (
            lambda a, x, y: a(x, y[:2]),
            ValueError,
            r"labels must have shape \(4,\); got shape \(2,\)",
        ),
        (lambda a, x, y: a(x, y.float()), TypeError, r"labels must be an integer tensor"),
        (
            lambda a, x, y: a(x, y, threat=T.dual(torch.ones(4, 1, 4, 4), 0.1, 0.1)),
            ValueError,
            r"masks\['foreground'\] must have shape \(4,1,8,8\).*got shape \(4, 1, 4, 4\)",
        ),
        (lambda a, x, y: a(x, y, threat="linf"), TypeError, r"threat must be a foveal.threats"),
    ],
    ids=[
        "0-255",
        "nan",
        "label-range",
        "target-range",
        "label-shape",
        "label-dtype",
        "mask",
        "threat",
    ],
)
def test_bad_inputs_raise_naming_the_argument(call, error, pattern) -> None:
    model = tiny_model()
    x = torch.rand(4, 3, 8, 8)
    y = torch.randint(0, CLASSES, (4,))
    with pytest.raises(error, match=pattern):
        call(PGD(model, steps=1), x, y)


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda m: PGD(m, eps=-0.1), r"eps must be a finite number >= 0; got -0.1"),
        (lambda m: PGD(m, steps=0), r"steps must be an integer >= 1; got 0"),
        (lambda m: PGD(m, restarts=0), r"restarts must be an integer >= 1; got 0"),
        (lambda m: PGD(m, alpha=0.1, rel_alpha=0.1), r"give alpha .* or rel_alpha"),
        (lambda m: PGD(m, norm="l1"), r"norm must be 'linf' or 'l2'; got 'l1'"),
        (lambda m: PGD(m, objective="hinge"), r"unknown objective 'hinge'"),
        (lambda m: MIM(m, mu=-1.0), r"mu must be a finite number >= 0; got -1"),
    ],
)
def test_bad_hyperparameters(make, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make(tiny_model())


def test_objective_must_be_per_sample() -> None:
    model = tiny_model()
    with pytest.raises(ValueError, match=r"per-sample values of shape \(2,\); got \(\)"):
        PGD(model, steps=1, objective=lambda z, t: F.cross_entropy(z, t))(
            torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
        )


def test_registry_lists_the_classic_attacks() -> None:
    assert {"fgsm", "bim", "mim", "pgd"} <= set(ATTACKS.names())
    for name in ATTACKS:
        assert ATTACKS.get(name).name == name
    with pytest.raises(ValueError, match="did you mean 'pgd'"):
        ATTACKS.get("pgdd")


# ---------------------------------------------------------------- one call shape for every attack
@pytest.mark.parametrize("name", ATTACKS.names())
def test_every_attack_is_called_through_the_engine(name: str) -> None:
    cls = ATTACKS.get(name)
    assert cls.__call__ is Attack.__call__ and cls.run is Attack.run
    assert "masks" in inspect.signature(cls.run).parameters


@pytest.mark.parametrize("name", [n for n in ATTACKS.names() if not ATTACKS.get(n).uses_masks])
def test_masks_given_to_an_attack_that_does_not_read_them_are_refused(name: str) -> None:
    attack = build_attack(name, tiny_model())
    x, y = torch.rand(2, 3, 8, 8), torch.tensor([0, 1])
    masks = torch.ones(2, 1, 8, 8)
    pattern = rf"\('{name}'\) does not read masks; got masks=\(2, 1, 8, 8\).*threat=frozen\("
    with pytest.raises(TypeError, match=pattern):
        attack(x, y, masks=masks)
    with pytest.raises(TypeError, match=r"threat=dual\(masks, eps_fg, eps_bg\)"):
        attack.run(x, y, masks=masks)


def test_class_defaults_replace_redeclared_constructors() -> None:
    model = tiny_model()
    pgd, bim = PGD(model), BIM(model)
    assert pgd.random_start and pgd.rel_alpha == pytest.approx(2.5 / 10)
    assert not bim.random_start and bim.rel_alpha == pytest.approx(1 / 10)
    assert not PGD(model, random_start=False).random_start
    assert FGSM(model).steps == 1 and FGSM(model).rel_alpha == 1.0
    assert "steps" not in inspect.signature(FGSM).parameters
    assert "random_start" not in inspect.signature(BIM).parameters
    assert DualPerturbation(model).random_start and DualPerturbation(model).steps == 10
    assert isinstance(APGD(model).objective, CrossEntropy)
    assert repr(APGDDLR(model).objective) == repr(APGDT(model).objective) == "DLR()"
    assert APGD(model).random_start and APGDT(model).random_start
