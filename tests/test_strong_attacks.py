"""Strong attacks (C&W, DeepFool, JSMA, APGD, Square, the ensemble): closed forms and behaviour.

The registry-wide property tests (tests/test_attacks.py) already check membership, untouched
inputs and batched == per-sample for each of them; these tests check that each attack does what
its paper says on models whose answer is known.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import pytest
import tomllib
import torch
from torch import nn

from foveal import threats as T
from foveal.attacks import (
    APGD,
    APGDDLR,
    CW,
    DLR,
    JSMA,
    PGD,
    AutoAttack,
    DeepFool,
    ObjectiveContext,
    Square,
    next_class_target,
    random_target,
)
from foveal.attacks.apgd import apgd_checkpoints
from foveal.attacks.square import pseudo_gaussian

REPO = Path(__file__).resolve().parents[1]


pytestmark = pytest.mark.usefixtures("single_thread")


def _linear(classes: int = 2, seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return nn.Sequential(nn.Flatten(), nn.Linear(3 * 8 * 8, classes)).double()


def _interior(n: int = 4, seed: int = 0) -> torch.Tensor:
    gen = torch.Generator().manual_seed(seed)
    return 0.4 + 0.2 * torch.rand(n, 3, 8, 8, generator=gen, dtype=torch.float64)


def _boundary_distance(model: nn.Module, x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exact L2 distance to the decision boundary of a 2-class linear model."""
    lin = model[1]
    w = (lin.weight[1] - lin.weight[0]).detach()
    with torch.no_grad():
        z = model(x)
    f = (z[:, 1] - z[:, 0]).abs()
    return f / w.norm()


# ---------------------------------------------------------------- minimal-perturbation attacks
def test_deepfool_l2_is_exact_on_a_linear_model() -> None:
    model = _linear()
    x = _interior()
    with torch.no_grad():
        y = model(x).argmax(1)
    result = DeepFool(model, overshoot=0.02).run(x, y)
    assert bool(result.success.all())
    expected = 1.02 * (_boundary_distance(model, x, y) + 1e-4)  # + 1e-4: the authors' code
    torch.testing.assert_close(result.norms["image"], expected, rtol=1e-6, atol=1e-9)


def test_cw_finds_near_minimal_l2_perturbations() -> None:
    model = _linear(seed=1)
    x = _interior(seed=1)
    with torch.no_grad():
        y = model(x).argmax(1)
    result = CW(model, steps=300, search_steps=9).run(x, y)
    assert bool(result.success.all())
    optimal = _boundary_distance(model, x, y)
    ratio = result.norms["image"] / optimal
    assert bool((ratio >= 1 - 1e-6).all()), ratio  # nothing beats the exact optimum
    assert bool((ratio <= 1.05).all()), ratio  # and C&W gets within 5% of it


def test_cw_inside_a_bounding_set_reports_success_only_there() -> None:
    model = _linear(seed=1)
    x = _interior(n=8, seed=1)
    with torch.no_grad():
        y = model(x).argmax(1)
    optimal = _boundary_distance(model, x, y)
    eps = float(optimal.median())
    result = CW(model, eps=eps, steps=200).run(x, y)
    assert bool((result.norms["image"] <= eps + 1e-6).all())
    assert not bool((result.success & (optimal > eps)).any())  # nothing beyond the set counts
    easy = optimal < 0.9 * eps
    assert bool(easy.any()) and bool(result.success[easy].all())


def test_jsma_reaches_the_target_within_the_distortion_cap_and_spares_frozen_pixels() -> None:
    model = _linear(classes=5, seed=2)
    x = _interior(n=6, seed=2) * 0.5
    with torch.no_grad():
        y = model(x).argmax(1)
    target = next_class_target(y, 5)
    salient = torch.zeros(6, 1, 8, 8, dtype=torch.float64)
    salient[..., :4, :] = 1
    result = JSMA(model, gamma=0.5).run(x, y, target=target, threat=T.frozen(salient, 1.0))
    changed = (result.adversarial != x).flatten(1).sum(1)
    assert bool((changed <= 0.5 * 192).all()) and bool((changed % 2 == 0).all())
    assert bool(result.success.all()) and torch.equal(result.predictions, target)
    assert torch.equal(result.adversarial * salient, x * salient)
    # theta = 1 saturates every changed feature
    moved = result.adversarial != x
    assert bool((result.adversarial[moved] == 1.0).all())


def test_target_helpers_never_return_the_label() -> None:
    y = torch.tensor([0, 1, 2, 6])
    assert next_class_target(y, 7).tolist() == [1, 2, 3, 0]
    t = random_target(y.repeat(50), 7, generator=torch.Generator().manual_seed(0))
    assert bool((t != y.repeat(50)).all()) and int(t.max()) < 7 and len(set(t.tolist())) == 7
    with pytest.raises(ValueError, match=r"labels must be < the number of classes \(3\)"):
        next_class_target(y, 3)


# ---------------------------------------------------------------- APGD
def test_apgd_checkpoints_follow_the_paper() -> None:
    assert apgd_checkpoints(100) == [22, 41, 57, 70, 80, 87, 93, 99]
    assert apgd_checkpoints(10)[:3] == [3, 5, 6]


def test_dlr_closed_form_and_scale_invariance() -> None:
    z = torch.tensor([[4.0, 2.0, 1.0, 0.0, -1.0]])
    y = torch.tensor([1])
    ctx = ObjectiveContext(nn.Identity(), z, z, z, z, y, False)
    assert float(DLR()(ctx)) == pytest.approx((4.0 - 2.0) / (4.0 - 1.0))
    scaled = ObjectiveContext(nn.Identity(), z, z, z, 7 * z, y, False)
    assert float(DLR()(scaled)) == pytest.approx(float(DLR()(ctx)))
    t = torch.tensor([3])
    tctx = ObjectiveContext(nn.Identity(), z, z, z, z, t, True)
    assert float(DLR()(tctx)) == pytest.approx((0.0 - 4.0) / (4.0 - (1.0 + 0.0) / 2))


def test_apgd_is_at_least_as_strong_as_pgd_and_respects_region_budgets() -> None:
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.Tanh(), nn.Flatten(), nn.Linear(8 * 64, 5)
    ).double()
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(64, 3, 8, 8, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    fg = (torch.rand(64, 1, 8, 8, generator=gen) > 0.5).double()
    threat = T.dual(fg, 0.0, 0.03)
    pgd = PGD(model, steps=20).run(x, y, threat=threat)
    apgd = APGD(model, steps=20).run(x, y, threat=threat)
    apgd_dlr = APGDDLR(model, steps=20).run(x, y, threat=threat)
    assert 0 < float(apgd.success.float().mean()) < 1
    assert float(apgd.success.float().mean()) >= float(pgd.success.float().mean())
    assert float(apgd_dlr.success.float().mean()) > 0
    for result in (apgd, apgd_dlr):
        assert torch.equal(result.adversarial * fg, x * fg)  # foreground frozen (budget 0)
        assert float(((result.adversarial - x) * (1 - fg)).abs().max()) <= 0.03 + 1e-12


# ---------------------------------------------------------------- Square and the ensemble
class _Quantised(nn.Module):
    """A linear model behind a zero-gradient quantiser: gradient-based attacks see nothing."""

    def __init__(self) -> None:
        super().__init__()
        torch.manual_seed(3)
        self.fc = nn.Linear(3 * 8 * 8, 4).double()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        q = (x * 8).round() / 8  # round() has zero gradient everywhere
        return self.fc(q.flatten(1)) * 5


def test_square_breaks_a_gradient_masked_model_where_apgd_cannot() -> None:
    model = _Quantised()
    x = _interior(n=8, seed=4)
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 0.2
    grad_based = APGD(model, eps=eps, steps=5).run(x, y)
    assert not bool(grad_based.success.any())
    square = Square(model, eps=eps, n_queries=200).run(x, y)
    assert float(square.success.float().mean()) >= 0.5
    assert float((square.adversarial - x).abs().max()) <= eps + 1e-12


def test_square_l2_stays_in_region_balls() -> None:
    model = _linear(classes=5, seed=5)
    x = _interior(n=4, seed=5)
    with torch.no_grad():
        y = model(x).argmax(1)
    fg = torch.zeros(4, 1, 8, 8, dtype=torch.float64)
    fg[..., 2:6, 2:6] = 1
    threat = T.dual(fg, 0.1, 1.0, "l2")
    result = Square(model, norm="l2", n_queries=60).run(x, y, threat=threat)
    assert bool(threat.bind(x).contains(result.adversarial - x).all())
    assert float(result.norms["background"].min()) > 0.5  # the search uses the budget


def test_pseudo_gaussian_is_centre_peaked_and_unit_norm() -> None:
    b = pseudo_gaussian(6, 6)
    assert float(b.norm()) == pytest.approx(1.0)
    assert float(b[2:4, 2:4].min()) == float(b.max()) and float(b[0, 0]) == float(b.min())


def test_ensemble_is_the_worst_case_of_its_members_and_logs(caplog) -> None:
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(3, 8, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(8 * 64, 5)
    ).double()
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(48, 3, 8, 8, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    eps = 0.01
    ensemble = AutoAttack(model, eps=eps, steps=10, n_targets=3, n_queries=50)
    with caplog.at_level(logging.INFO, logger="foveal.attacks.ensemble"):
        result = ensemble.run(x, y)
    robust = 1 - float(result.success.float().mean())
    messages = [r.getMessage() for r in caplog.records]
    assert any("after apgd-ce" in m for m in messages) and any(
        "max linf norm" in m for m in messages
    )
    pgd = PGD(model, eps=eps, steps=10).run(x, y)
    apgd = APGD(model, eps=eps, steps=10).run(x, y)
    assert 0 < robust < 1
    assert robust <= 1 - float(pgd.success.float().mean())
    assert robust <= 1 - float(apgd.success.float().mean())
    assert float((result.adversarial - x).abs().max()) <= eps + 1e-12
    assert ensemble.members == ["apgd-ce", "apgd-t", "square"]
    rand = AutoAttack(model, eps=eps, version="rand", steps=3, eot_iter=2)
    assert rand.members == ["apgd-ce", "apgd-dlr"]


def test_bad_hyperparameters_name_the_argument() -> None:
    model = _linear()
    cases = [
        (lambda: CW(model, search_steps=0), r"search_steps must be an integer >= 1; got 0"),
        (lambda: DeepFool(model, candidates=1), r"candidates must be an integer >= 2; got 1"),
        (lambda: JSMA(model, gamma=1.5), r"gamma must be in \(0, 1\]; got 1.5"),
        (lambda: JSMA(model, theta=0.0), r"theta must be a non-zero number; got 0.0"),
        (lambda: APGD(model, rho=2.0), r"rho must be in \(0, 1\]; got 2.0"),
        (lambda: Square(model, p_init=0.0), r"p_init must be a finite number > 0; got 0.0"),
        (lambda: AutoAttack(model, version="plus"), r"version must be one of .*; got 'plus'"),
    ]
    for make, pattern in cases:
        with pytest.raises(ValueError, match=pattern):
            make()


# ---------------------------------------------------------------- packaging and extras
def test_core_dependencies_never_pull_torchattacks_or_art() -> None:
    project = tomllib.loads((REPO / "pyproject.toml").read_text())["project"]
    core = " ".join(project["dependencies"]).lower()
    for name in ("torchattacks", "adversarial-robustness-toolbox", "requests"):
        assert name not in core, name
    extras = project["optional-dependencies"]
    assert any("torchattacks" in dep for dep in extras["torchattacks"])
    assert any("adversarial-robustness-toolbox" in dep for dep in extras["art"])


def test_external_adapter_names_the_missing_extra(monkeypatch) -> None:
    from foveal.attacks.external import ARTAttack, TorchattacksAttack

    monkeypatch.setitem(sys.modules, "torchattacks", None)
    with pytest.raises(ImportError, match=r"pip install foveal\[torchattacks\]"):
        TorchattacksAttack(_linear(), attack="FAB")
    monkeypatch.setitem(sys.modules, "art.attacks.evasion", None)
    with pytest.raises(ImportError, match=r"pip install foveal\[art\]"):
        ARTAttack(_linear(), attack="DeepFool", num_classes=2)
