"""Perceptual-ball attack (Elliott et al. 2019): feasibility, best iterate, batching, saliency."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from foveal import threats as T
from foveal.attacks import ATTACKS, PerceptualBall, perceptual_layers
from foveal.saliency import PerturbationMagnitude

CLASSES = 4


pytestmark = pytest.mark.usefixtures("single_thread")


class Net(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.block1 = nn.Sequential(nn.Conv2d(3, 6, 3, padding=1), nn.ReLU())
        self.block2 = nn.Sequential(nn.Conv2d(6, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8 * 6 * 6, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.avg_pool2d(self.block2(self.block1(x)), 2).flatten(1))


def _setup(n: int = 4, seed: int = 0):
    torch.manual_seed(seed)
    model = Net().double()
    gen = torch.Generator().manual_seed(seed)
    x = torch.rand(n, 3, 12, 12, generator=gen, dtype=torch.float64)
    with torch.no_grad():
        y = model(x).argmax(1)
    return model, x, y


def test_default_layer_is_the_last_conv_block_and_names_resolve() -> None:
    model = Net()
    assert perceptual_layers(model) == [model.block2]
    assert perceptual_layers(model, ["block1", "block2.0"]) == [model.block1, model.block2[0]]
    with pytest.raises((ValueError, AttributeError, KeyError)):
        perceptual_layers(model, ["nope"])


def test_iterates_stay_in_the_linf_box_and_the_best_is_returned() -> None:
    model, x, y = _setup()
    eps = 8 / 255
    losses = []
    for steps in (1, 3, 8):
        attack = PerceptualBall(model, eps=eps, steps=steps, layers=["block1"])
        adv = attack(x, y)
        d = adv - x
        assert float(d.abs().max()) <= eps + 1e-12
        assert float(adv.min()) >= 0 and float(adv.max()) <= 1
        losses.append(attack.loss(x, adv, y))
    start = PerceptualBall(model, layers=["block1"]).loss(x, x, y)
    # the best iterate over a longer run is never worse (the evaluations extend a prefix)
    assert bool((losses[0] <= start + 1e-12).all())
    assert bool((losses[1] <= losses[0] + 1e-12).all())
    assert bool((losses[2] <= losses[1] + 1e-12).all())
    assert bool((losses[2] < start).all())


def test_attack_flips_the_margin_and_batched_equals_per_sample() -> None:
    model, x, y = _setup(n=5)
    attack = PerceptualBall(model, eps=0.3, steps=15, lam_perceptual=0.1)
    result = attack.run(x, y)
    assert result.success_rate >= 0.8
    for i in range(5):
        single = attack(x[i : i + 1], y[i : i + 1])
        torch.testing.assert_close(single[0], result.adversarial[i], atol=1e-10, rtol=0)


def test_targeted_attack_moves_toward_the_target() -> None:
    model, x, y = _setup(n=4)
    target = (y + 1) % CLASSES
    result = PerceptualBall(model, eps=0.5, steps=20, lam_perceptual=0.0).run(x, y, target=target)
    assert result.success_rate >= 0.75


def test_other_sets_pass_through() -> None:
    model, x, y = _setup()
    threat = T.L2(0.3)
    adv = PerceptualBall(model, steps=4)(x, y, threat=threat)
    assert bool(threat.bind(x).contains(adv - x, atol=1e-9).all())


def test_perturbation_magnitude_saliency_takes_the_attack_built_by_the_caller() -> None:
    model, x, y = _setup(n=2)
    by_name = PerturbationMagnitude(model, attack=ATTACKS.get("perceptual")(model, steps=3))
    maps = by_name(x, target=y)
    assert maps.shape == (2, 1, 12, 12) and float(maps.max()) > 0
    direct = PerturbationMagnitude(model, attack=PerceptualBall(model, steps=3))(x, target=y)
    torch.testing.assert_close(maps, direct)
    with pytest.raises(TypeError, match=r"build a named attack first"):
        PerturbationMagnitude(model, attack="perceptual")


@pytest.mark.parametrize(
    ("kwargs", "pattern"),
    [
        ({"eps": -0.1}, r"eps must be a finite number >= 0; got -0.1"),
        ({"steps": 0}, r"steps must be an integer >= 1; got 0"),
        ({"lam_perceptual": -1}, r"lam_perceptual must be a finite number >= 0; got -1"),
        ({"target_margin": float("nan")}, r"target_margin must be finite"),
        ({"layers": []}, r"layers must name at least one layer"),
    ],
)
def test_bad_arguments(kwargs: dict, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        PerceptualBall(Net(), **kwargs)
