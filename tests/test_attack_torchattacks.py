"""Cross-check against torchattacks: same PGD settings (Linf, L2), accuracy within 2 points.

Slow (uses the ``trained_shapes_model`` fixture); run with ``pytest -m slow``. 8/255 is the
acceptance setting; on a non-robust model both attacks reach 0% there, so 1/255 (where robust
accuracy is still far from 0) is also compared.
"""

from __future__ import annotations

import pytest
import torch

from foveal.attacks import PGD

torchattacks = pytest.importorskip("torchattacks")


@pytest.mark.slow
@pytest.mark.parametrize("eps", [8 / 255, 1 / 255], ids=["8/255", "1/255"])
def test_pgd_linf_robust_accuracy_matches_torchattacks(trained_shapes_model, eps: float) -> None:
    model, test = trained_shapes_model
    model.eval()
    x, y = test.images[:500], test.labels[:500]
    alpha, steps = eps / 4, 20
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    ours = PGD(model, eps=eps, alpha=alpha, steps=steps, seed=0)
    theirs = torchattacks.PGD(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    torch.manual_seed(0)
    accs = {}
    for name, attack in (("foveal", ours), ("torchattacks", theirs)):
        correct = 0
        for lo in range(0, len(x), 250):
            xb, yb = x[lo : lo + 250], y[lo : lo + 250]
            adv = attack(xb, yb)
            assert float((adv - xb).abs().max()) <= eps + 1e-6
            with torch.no_grad():
                correct += int((model(adv).argmax(1) == yb).sum())
        accs[name] = correct / len(x)
    print(
        f"eps {eps * 255:g}/255: clean {clean:.3f}  foveal PGD {accs['foveal']:.3f}  "
        f"torchattacks PGD {accs['torchattacks']:.3f}"
    )
    assert clean > 0.9, f"fixture model too weak to compare attacks (clean accuracy {clean})"
    assert accs["foveal"] < clean - 0.1, accs  # the attack does something
    assert abs(accs["foveal"] - accs["torchattacks"]) <= 0.02, accs


@pytest.mark.slow
@pytest.mark.parametrize("projection", ["rescale", "exact"])
def test_pgd_l2_robust_accuracy_matches_torchattacks(trained_shapes_model, projection: str) -> None:
    # The default L2 step is torchattacks' update ("rescale, then clip"); the exact projection
    # must not change the verdict either.
    model, test = trained_shapes_model
    model.eval()
    x, y = test.images[:500], test.labels[:500]
    eps, steps = 0.25, 20
    alpha = 2.5 * eps / steps
    ours = PGD(model, eps=eps, norm="l2", alpha=alpha, steps=steps, seed=0, projection=projection)
    theirs = torchattacks.PGDL2(model, eps=eps, alpha=alpha, steps=steps, random_start=True)
    torch.manual_seed(0)
    accs = {}
    for name, attack in (("foveal", ours), ("torchattacks", theirs)):
        adv = attack(x, y)
        assert float((adv - x).flatten(1).norm(dim=1).max()) <= eps + 1e-5
        with torch.no_grad():
            accs[name] = float((model(adv).argmax(1) == y).float().mean())
    with torch.no_grad():
        clean = float((model(x).argmax(1) == y).float().mean())
    print(
        f"L2 {eps} ({projection}): clean {clean:.3f}  foveal {accs['foveal']:.3f}  "
        f"torchattacks {accs['torchattacks']:.3f}"
    )
    assert accs["foveal"] < clean - 0.1, accs  # the attack does something
    assert abs(accs["foveal"] - accs["torchattacks"]) <= 0.02, accs
