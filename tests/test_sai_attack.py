"""SA-FGM / SAI-FGM / M-SAI-FGM (Dong et al. 2020) and the superpixel subspace they live in."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from foveal import threats as T
from foveal.attacks import MSAIFGM, SAFGM, SAIFGM, sai_budget
from foveal.threats import Superpixel

CLASSES = 4


pytestmark = pytest.mark.usefixtures("single_thread")


class GapNet(nn.Module):
    """conv -> ReLU -> global average pool -> linear: CAM applies."""

    def __init__(self) -> None:
        super().__init__()
        self.features = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.ReLU())
        self.fc = nn.Linear(8, CLASSES)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.fc(F.adaptive_avg_pool2d(self.features(x), 1).flatten(1))


def _setup(n: int = 3, seed: int = 0, dtype: torch.dtype = torch.float64):
    torch.manual_seed(seed)
    model = GapNet().to(dtype)
    gen = torch.Generator().manual_seed(seed)
    x = (0.2 + 0.6 * torch.rand(n, 3, 16, 16, generator=gen)).to(dtype)
    x[:, :, :4, :4] = 0.98  # a bright corner the box can clip
    y = torch.randint(0, CLASSES, (n,), generator=gen)
    return model, x, y


@pytest.mark.parametrize("cls", [SAFGM, SAIFGM, MSAIFGM])
@pytest.mark.parametrize("channels", ["per-channel", "shared"])
def test_perturbation_is_superpixel_constant_cropped_and_on_the_budget(cls, channels) -> None:
    model, x, y = _setup()
    attack = cls(model, delta=4, size=3.0, beta=2.0, channels=channels)
    spec = attack.subspace(x)
    ids, crop = spec.ids, spec.mask
    assert crop is not None and 0 < float(crop.mean()) < 1
    out = attack(x, y)
    d = out - x
    eps = sai_budget(4, x.shape)
    assert spec.eps == pytest.approx(eps)
    # zero outside the attention crop
    assert float((d * (1 - crop)).abs().max()) == 0.0
    # constant inside every (merged) superpixel, per channel or shared across channels
    for i in range(len(x)):
        for k in ids[i].unique():
            cell = (ids[i] == k) & (crop[i, 0] > 0)
            if cell.any():
                values = d[i][:, cell]
                spread = (
                    values.amax(1) - values.amin(1)
                    if channels == "per-channel"
                    else (values.max() - values.min())
                )
                assert float(spread.max()) <= 1e-12
    # L2 norm equals the budget unless the box clipped a cell
    norms = d.flatten(1).norm(dim=1)
    bound = spec.bind(x)
    coef = bound.coefficients(d)
    clipped = ((coef - bound.lo).abs() < 1e-12) | ((coef - bound.hi).abs() < 1e-12)
    clipped = (clipped & (bound.counts > 0) & (coef != 0)).flatten(1).any(1)
    assert bool((norms <= eps + 1e-9).all())
    assert bool(((norms - eps).abs() < 1e-9)[~clipped].all())
    assert bool((norms > 0.5 * eps).all())
    assert bool(bound.contains(d).all())


def test_noise_gradient_flows_through_the_mapping() -> None:
    model, x, _ = _setup(n=2)
    attack = SAIFGM(model, size=3.0)
    bound = attack.subspace(x).bind(x)
    noise = torch.randn(2, 3, bound.cells, dtype=x.dtype)
    pixel_grad = torch.randn_like(x)
    g = attack._noise_gradient(bound, noise, pixel_grad)
    # reference: finite differences of <pixel_grad, fill(scaled(noise))>
    h = 1e-6
    for idx in [(0, 0, 0), (1, 2, 1), (0, 1, bound.cells - 1)]:
        bump = torch.zeros_like(noise)
        bump[idx] = h

        def f(nz: torch.Tensor) -> float:
            return float((pixel_grad * bound.fill(attack.scaled(bound, nz))).sum())

        fd = (f(noise + bump) - f(noise - bump)) / (2 * h)
        assert g[idx].item() == pytest.approx(fd, rel=1e-4, abs=1e-8)


@pytest.mark.parametrize("mode", ["max", "avg"])
def test_pooled_pixel_gradient_variants(mode: str) -> None:
    model, x, y = _setup(n=2)
    attack = SAIFGM(model, size=3.0, gradient=mode)
    bound = attack.subspace(x).bind(x)
    pixel_grad = torch.randn_like(x)
    g = attack._noise_gradient(bound, torch.zeros(2, 3, bound.cells, dtype=x.dtype), pixel_grad)
    ids = attack.subspace(x).ids
    crop = bound.mask[:, 0] > 0
    k = int(ids[0][crop[0]][0])
    cell = (ids[0] == k) & crop[0]
    values = pixel_grad[0, 1][cell]
    expected = values.mean() if mode == "avg" else values[values.abs().argmax()]
    assert g[0, 1, k].item() == pytest.approx(expected.item(), rel=1e-10)
    out = attack.run(x, y)
    assert bool(bound.contains(out.adversarial - x, atol=1e-9).all())


def test_superpixel_projection_is_exact() -> None:
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(2, 3, 6, 6, generator=gen, dtype=torch.float64)
    ids = torch.randint(0, 4, (2, 6, 6), generator=gen)
    crop = (torch.rand(2, 1, 6, 6, generator=gen) > 0.3).double()
    for norm, eps in (("l2", 0.4), ("linf", 0.05)):
        bound = Superpixel(ids, eps, norm=norm, mask=crop).bind(x)
        v = torch.randn(2, 3, 6, 6, generator=gen, dtype=torch.float64)
        p = bound.project(v)
        assert bool(bound.contains(p).all())
        # no feasible point of the subspace (random feasible samples, and p scaled toward 0)
        # is closer to v than p
        dist = (v - p).flatten(1).norm(dim=1)
        for _ in range(200):
            q = bound.sample(torch.Generator().manual_seed(_))
            assert bool(((v - q).flatten(1).norm(dim=1) >= dist - 1e-12).all())
        for t in (0.5, 0.9):
            assert bool(((v - t * p).flatten(1).norm(dim=1) >= dist - 1e-12).all())


def test_ball_threats_become_the_attacks_own_subspace() -> None:
    model, x, y = _setup(n=2)
    out = SAIFGM(model, size=3.0).run(x, y, threat=T.Linf(8 / 255))
    d = out.adversarial - x
    assert float(d.abs().max()) <= 8 / 255 + 1e-12 and float(d.abs().max()) > 0


@pytest.mark.parametrize("cls", [SAFGM, SAIFGM, MSAIFGM])
@pytest.mark.parametrize(("norm", "eps"), [("l2", 0.6), ("linf", 8 / 255)])
@pytest.mark.parametrize("channels", [1, 3])
def test_a_single_budget_region_set_restricts_the_crop(cls, norm, eps, channels) -> None:
    model, x, y = _setup(n=3)
    gen = torch.Generator().manual_seed(1)
    salient = (torch.rand(3, channels, 16, 16, generator=gen) > 0.6).to(x.dtype)
    threat = T.frozen(salient, eps, norm)
    attack = cls(model, size=3.0)
    out = attack.run(x, y, threat=threat).adversarial
    d = out - x
    # frozen pixels never move (a pixel with any frozen channel stays whole)
    frozen_pixel = salient.amax(1, keepdim=True).expand_as(x) > 0
    assert torch.equal(out[frozen_pixel], x[frozen_pixel])
    # nothing moves outside the attention crop either, and the budget of the set holds
    crop = attack.crop(x)
    assert crop is not None
    assert float((d * (1 - crop)).abs().max()) == 0.0
    assert bool(threat.bind(x).contains(d, atol=1e-9).all())
    size = d.flatten(1).norm(dim=1) if norm == "l2" else d.flatten(1).abs().amax(1)
    assert bool((size <= eps + 1e-9).all()) and float(size.max()) > 0.5 * eps
    # the subspace is the attack's own, cropped to the free pixels, with the set's budget
    spec = attack.subspace(x, threat)
    assert spec.norm == norm and spec.eps == pytest.approx(eps)
    assert spec.mask is not None
    torch.testing.assert_close(spec.mask, crop * (1 - salient.amax(1, keepdim=True)))
    # batched == per-sample
    for i in range(len(x)):
        single = attack(x[i : i + 1], y[i : i + 1], threat=threat.subset([i]))
        torch.testing.assert_close(single[0], out[i], atol=1e-10, rtol=0)


def test_multi_budget_sets_are_refused_with_the_reason() -> None:
    model, x, y = _setup(n=2)
    fg = torch.zeros(2, 1, 16, 16, dtype=x.dtype)
    fg[..., 4:12, 4:12] = 1
    attack = SAIFGM(model, size=3.0)
    accepted = r"accepted: a Superpixel set, an L2 / Linf ball, or a RegionBudget with exactly one"
    for threat in (T.dual(fg, 2 / 255, 16 / 255), T.EpsMap(fg * 4 / 255 + 1 / 255)):
        with pytest.raises(ValueError, match=r"Scale_eps scales the noise vector onto one sphere"):
            attack(x, y, threat=threat)
        with pytest.raises(ValueError, match=accepted):
            attack.run(x, y, threat=threat)
    with pytest.raises(ValueError, match=r"regions \['foreground', 'background'\] have non-zero"):
        attack(x, y, threat=T.dual(fg, 2 / 255, 16 / 255))


def test_masks_are_refused_with_a_pointer_to_the_sets() -> None:
    model, x, y = _setup(n=2)
    masks = torch.ones(2, 1, 16, 16, dtype=x.dtype)
    assert not SAIFGM.uses_masks and not SAIFGM(model).requires_masks
    with pytest.raises(TypeError, match=r"SAIFGM \('sai-fgm'\) does not read masks; got masks="):
        SAIFGM(model)(x, y, masks=masks)


@pytest.mark.parametrize(
    ("kwargs", "error", "pattern"),
    [
        ({"phi": 1.5}, ValueError, r"phi must lie in \[0, 1\]; got 1.5"),
        ({"phi": -0.1}, ValueError, r"phi must be a finite number >= 0; got -0.1"),
        ({"size": 0.5}, ValueError, r"size \(superpixel side S\) must be >= 1 pixel; got 0.5"),
        ({"delta": -4}, ValueError, r"delta must be a finite number >= 0; got -4"),
        ({"eps": -0.5}, ValueError, r"eps must be a finite number >= 0; got -0.5"),
        ({"eps": 0.5, "delta": 4}, ValueError, r"give delta .* or eps"),
        ({"beta": -1}, ValueError, r"beta must be a finite number >= 0; got -1"),
        ({"gradient": "sum"}, ValueError, r"gradient must be one of .*got 'sum'"),
        ({"channels": "rgb"}, ValueError, r"channels must be one of .*got 'rgb'"),
        ({"attention": "saliency"}, ValueError, r"attention must be 'cam', 'gradcam'"),
    ],
)
def test_bad_arguments(kwargs: dict, error: type, pattern: str) -> None:
    with pytest.raises(error, match=pattern):
        SAIFGM(GapNet(), **kwargs)


def test_bad_superpixel_sets() -> None:
    with pytest.raises(ValueError, match=r"ids must have shape \(N,H,W\)"):
        Superpixel(torch.zeros(2, 1, 4, 4, dtype=torch.long))
    with pytest.raises(TypeError, match=r"ids must be an integer tensor"):
        Superpixel(torch.zeros(2, 4, 4))
    with pytest.raises(ValueError, match=r"eps must be a finite number >= 0; got -1"):
        Superpixel(torch.zeros(2, 4, 4, dtype=torch.long), -1.0)
    with pytest.raises(ValueError, match=r"ids must have shape \(2,8,8\) to match images"):
        Superpixel(torch.zeros(2, 4, 4, dtype=torch.long)).bind(torch.rand(2, 3, 8, 8))


def test_budget_in_paper_units() -> None:
    assert sai_budget(4, (3, 299, 299)) == pytest.approx(4 / 255 * math.sqrt(3 * 299 * 299))
