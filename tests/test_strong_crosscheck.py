"""Cross-checks of the strong attacks against torchattacks and foolbox on a trained model.

Slow (uses the ``trained_shapes_model`` fixture); run with ``pytest -m slow``. Budgets 1/255 and
2/255 (Linf) keep robust accuracy of a standard model away from 0, so the comparisons mean
something. Each test prints its numbers (``pytest -s``).
"""

from __future__ import annotations

import pytest
import torch

from foveal.attacks import APGD, APGDDLR, CW, JSMA, PGD, AutoAttack, DeepFool, next_class_target

torchattacks = pytest.importorskip("torchattacks")

EPS = [1 / 255, 2 / 255]


def _accuracy(model, x, y, attack, batch: int = 250) -> float:
    correct = 0
    for lo in range(0, len(x), batch):
        xb, yb = x[lo : lo + batch], y[lo : lo + batch]
        adv = attack(xb, yb)
        with torch.no_grad():
            correct += int((model(adv).argmax(1) == yb).sum())
    return correct / len(x)


@pytest.mark.slow
@pytest.mark.parametrize("eps", EPS, ids=["1/255", "2/255"])
@pytest.mark.parametrize("loss", ["ce", "dlr"])
def test_apgd_matches_torchattacks(trained_shapes_model, eps: float, loss: str) -> None:
    model, test = trained_shapes_model
    x, y = test.images[:500], test.labels[:500]
    cls = APGD if loss == "ce" else APGDDLR
    ours = _accuracy(model, x, y, cls(model, eps=eps, steps=50, seed=0))
    torch.manual_seed(0)
    theirs = _accuracy(model, x, y, torchattacks.APGD(model, eps=eps, steps=50, loss=loss, seed=0))
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    print(
        f"APGD-{loss} eps {eps * 255:g}/255: clean {clean:.3f} foveal {ours:.3f} "
        f"torchattacks {theirs:.3f}"
    )
    assert ours < clean - 0.05
    assert abs(ours - theirs) <= 0.02


@pytest.mark.slow
@pytest.mark.parametrize("eps", EPS, ids=["1/255", "2/255"])
def test_ensemble_matches_torchattacks_autoattack(trained_shapes_model, eps: float) -> None:
    model, test = trained_shapes_model
    x, y = test.images[:100], test.labels[:100]
    ours = _accuracy(model, x, y, AutoAttack(model, eps=eps, seed=0))
    pgd = _accuracy(model, x, y, PGD(model, eps=eps, steps=20, alpha=eps / 4, seed=0))
    torch.manual_seed(0)
    ta = torchattacks.AutoAttack(model, eps=eps, version="standard", n_classes=10, seed=0)
    theirs = _accuracy(model, x, y, ta)
    print(
        f"AutoAttack eps {eps * 255:g}/255: foveal {ours:.3f} torchattacks {theirs:.3f} "
        f"foveal PGD-20 {pgd:.3f}"
    )
    assert ours <= theirs + 0.01
    assert ours <= pgd


def _correct(model, x, y):
    with torch.no_grad():
        keep = model(x).argmax(1) == y
    return x[keep], y[keep]


@pytest.mark.slow
@pytest.mark.parametrize("name", ["cw", "deepfool"])
def test_minimal_attacks_match_foolbox(trained_shapes_model, name: str) -> None:
    fb = pytest.importorskip("foolbox")
    model, test = trained_shapes_model
    x, y = _correct(model, test.images[:200], test.labels[:200])
    x, y = x[:60], y[:60]
    fmodel = fb.PyTorchModel(model, bounds=(0, 1))
    if name == "cw":
        ours = CW(model, steps=200).run(x, y)
        theirs_attack = fb.attacks.L2CarliniWagnerAttack(steps=200, binary_search_steps=9)
    else:
        ours = DeepFool(model).run(x, y)
        theirs_attack = fb.attacks.L2DeepFoolAttack(steps=50, candidates=10, overshoot=0.02)
    _, clipped, success = theirs_attack(fmodel, x, y, epsilons=None)
    their_norms = (clipped - x).flatten(1).norm(dim=1)
    our_norms = ours.norms["image"]
    both = ours.success & success
    ratio = float(our_norms[both].mean() / their_norms[both].mean())
    print(
        f"{name}: success foveal {float(ours.success.float().mean()):.3f} foolbox "
        f"{float(success.float().mean()):.3f}; mean L2 foveal {float(our_norms[both].mean()):.4f} "
        f"foolbox {float(their_norms[both].mean()):.4f} (ratio {ratio:.3f})"
    )
    assert float(ours.success.float().mean()) == float(success.float().mean())
    assert abs(ratio - 1) <= 0.10


@pytest.mark.slow
def test_jsma_l0_matches_torchattacks(trained_shapes_model) -> None:
    model, test = trained_shapes_model
    x, y = _correct(model, test.images[:100], test.labels[:100])
    x, y = x[:10], y[:10]
    target = next_class_target(y, 10)
    ours = JSMA(model, theta=1.0, gamma=0.1).run(x, y, target=target)
    ta = torchattacks.JSMA(model, theta=1.0, gamma=0.1)
    theirs = ta(x, y)  # torchattacks' untargeted default aims at (y + 1) % 10: the same target
    with torch.no_grad():
        their_success = model(theirs).argmax(1) == target
    our_l0 = (ours.adversarial != x).flatten(1).sum(1).float()
    their_l0 = (theirs != x).flatten(1).sum(1).float()
    both = ours.success & their_success
    ratio = float(our_l0[both].mean() / their_l0[both].mean())
    print(
        f"JSMA: success foveal {float(ours.success.float().mean()):.3f} torchattacks "
        f"{float(their_success.float().mean()):.3f}; mean L0 foveal "
        f"{float(our_l0[both].mean()):.1f} "
        f"torchattacks {float(their_l0[both].mean()):.1f} (ratio {ratio:.3f})"
    )
    assert bool(both.any())
    assert abs(ratio - 1) <= 0.10
