"""A new attack that needs per-batch masks, written with the engine's public hooks only.

``MaskedPGD`` moves only the pixels inside the masks given with each call: ``prepare`` reduces
the masks to one channel, ``threat_for`` builds the set from them. It is registered in
``ATTACKS`` for these tests only (and removed again, so the registry-wide tests never see it).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from foveal.attacks import ATTACKS, PGD, Context, Objective
from foveal.threats import Threat, frozen

CLASSES = 4
NAME = "masked-pgd-test"


pytestmark = pytest.mark.usefixtures("single_thread")


class MaskedPGD(PGD):
    """PGD that perturbs only the pixels inside ``masks`` (required with every call)."""

    name = NAME
    uses_masks = True

    @property
    def requires_masks(self) -> bool:
        return True

    def prepare(self, images: torch.Tensor, context: Context) -> Context:
        assert context.masks is not None  # the engine refuses calls without masks
        return dataclasses.replace(context, masks=context.masks.amax(1, keepdim=True))

    def threat_for(self, images: torch.Tensor, context: Context, threat: Threat | None) -> Threat:
        if threat is not None:
            raise TypeError(f"{type(self).__name__} builds its set from the masks; got {threat!r}")
        assert context.masks is not None
        return frozen(1 - context.masks, self.eps, self.norm)


class Net(nn.Module):
    """conv + BatchNorm + dropout: mode-sensitive, so restored modes are checked."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1)
        self.bn = nn.BatchNorm2d(4)
        self.drop = nn.Dropout(0.5)
        self.fc = nn.Linear(4 * 4 * 4, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h = F.avg_pool2d(F.relu(self.bn(self.conv(x))), 2)
        return self.fc(self.drop(h.flatten(1)))


@pytest.fixture
def registered() -> Iterator[type[MaskedPGD]]:
    cls = ATTACKS.register(NAME, help="test only: PGD inside the masks")(MaskedPGD)
    try:
        yield cls
    finally:
        ATTACKS.unregister(NAME)


def _setup(n: int = 4, dtype: torch.dtype = torch.float64, channels: int = 1):
    torch.manual_seed(0)
    model = Net().to(dtype)
    gen = torch.Generator().manual_seed(1)
    x = torch.rand(n, 3, 8, 8, generator=gen).to(dtype)
    x[:, 0, 0, 0] = 1.0  # a box corner
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    masks = (torch.rand(n, channels, 8, 8, generator=gen) > 0.5).to(dtype)
    return model, x, y, masks


@pytest.mark.parametrize("norm", ["linf", "l2"])
@pytest.mark.parametrize("channels", [1, 3])
def test_the_toy_attack_keeps_the_engine_guarantees(registered, norm: str, channels: int) -> None:
    model, x, y, masks = _setup(channels=channels)
    model.train()
    model.drop.eval()  # mixed modes must come back exactly
    state = {k: v.clone() for k, v in model.state_dict().items()}
    before = (x.clone(), y.clone(), masks.clone())
    eps = 8 / 255 if norm == "linf" else 0.5
    attack = ATTACKS.get(NAME)(model, eps=eps, norm=norm, steps=4, restarts=2, seed=3)
    assert attack.uses_masks and attack.requires_masks

    result = attack.run(x, y, masks=masks)
    out = result.adversarial

    # inside its set and [0,1]; pixels outside the masks untouched, inside moved
    inside = masks.amax(1, keepdim=True)
    assert float(out.min()) >= 0.0 and float(out.max()) <= 1.0
    assert bool(frozen(1 - inside, eps, norm).bind(x).contains(out - x, atol=1e-9).all())
    outside = (inside == 0).expand_as(x)
    assert torch.equal(out[outside], x[outside])
    assert float((out - x)[~outside].abs().max()) > 0
    assert set(result.norms) == {"free", "frozen"} and float(result.norms["frozen"].max()) == 0
    # inputs, model modes, parameters, buffers and gradients untouched
    assert all(torch.equal(a, b) for a, b in zip((x, y, masks), before, strict=True))
    assert model.training and model.bn.training and not model.drop.training
    assert all(torch.equal(v, state[k]) for k, v in model.state_dict().items())
    assert all(p.grad is None for p in model.parameters())
    # calling returns the images of run(); batched == per-sample
    torch.testing.assert_close(attack(x, y, masks=masks), out, atol=0, rtol=0)
    for i in range(len(x)):
        single = attack(x[i : i + 1], y[i : i + 1], masks=masks[i : i + 1])
        torch.testing.assert_close(single[0], out[i], atol=1e-10, rtol=0)


def test_missing_or_bad_masks_are_clear_errors(registered) -> None:
    model, x, y, masks = _setup()
    attack = MaskedPGD(model, steps=1)
    missing = r"MaskedPGD \('masked-pgd-test'\) requires masks.*got masks=None"
    with pytest.raises(ValueError, match=missing):
        attack(x, y)
    with pytest.raises(ValueError, match=r"masks must have shape \(4,1,8,8\) or \(4,3,8,8\).*"
                       r"got shape \(4, 1, 4, 4\)"):  # fmt: skip
        attack(x, y, masks=masks[..., :4, :4])
    with pytest.raises(ValueError, match=r"masks must be binary \(0/1\); found value 0.5"):
        attack.run(x, y, masks=masks * 0.5)
    with pytest.raises(TypeError, match=r"masks must be a torch.Tensor; got list"):
        attack(x, y, masks=[[1.0]])


def test_the_hooks_run_once_per_call_and_leave_the_attack_unchanged(registered) -> None:
    calls: list[str] = []

    class Counting(MaskedPGD):
        def prepare(self, images: torch.Tensor, context: Context) -> Context:
            calls.append("prepare")
            return super().prepare(images, context)

        def threat_for(
            self, images: torch.Tensor, context: Context, threat: Threat | None
        ) -> Threat:
            calls.append("threat_for")
            return super().threat_for(images, context, threat)

        def objective_for(self, images: torch.Tensor, context: Context) -> Objective:
            calls.append("objective_for")
            return super().objective_for(images, context)

    model, x, y, masks = _setup()
    attack = Counting(model, steps=3, restarts=3)
    config = dict(vars(attack))
    attack.run(x, y, masks=masks)
    assert calls == ["prepare", "threat_for", "objective_for"]
    assert vars(attack) == config  # no per-call state stored on the attack
    # two batches with different masks through one object: each gets its own set
    a = attack(x, y, masks=masks)
    b = attack(x, y, masks=1 - masks)
    assert torch.equal(a[(masks == 0).expand_as(x)], x[(masks == 0).expand_as(x)])
    assert torch.equal(b[(masks == 1).expand_as(x)], x[(masks == 1).expand_as(x)])


def test_registration_is_removed_again(registered) -> None:
    assert NAME in ATTACKS and ATTACKS.get(NAME) is MaskedPGD
    removed = ATTACKS.unregister(NAME)
    assert removed is MaskedPGD and NAME not in ATTACKS
    with pytest.raises(ValueError, match=r"unknown attack 'masked-pgd-test'"):
        ATTACKS.unregister(NAME)
    ATTACKS.register(NAME)(MaskedPGD)  # the fixture removes it


def test_the_context_is_frozen_and_sliced_per_sample() -> None:
    masks = torch.arange(4.0).view(4, 1, 1, 1).expand(4, 1, 2, 2)
    ctx = Context(masks=masks)
    with pytest.raises(dataclasses.FrozenInstanceError):
        ctx.masks = None  # type: ignore[misc]
    sub = ctx.subset(torch.tensor([3, 1]))
    assert sub.masks is not None and sub.masks[:, 0, 0, 0].tolist() == [3.0, 1.0]
    assert Context().subset(torch.tensor([0])).masks is None
