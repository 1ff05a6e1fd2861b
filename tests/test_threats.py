"""Perturbation sets: projections against closed forms, membership, sampling, validation."""

from __future__ import annotations

import math

import pytest
import torch

from foveal import threats as T
from foveal.threats import project_l2_box


def _images(n: int = 3, c: int = 3, h: int = 6, w: int = 6, seed: int = 0) -> torch.Tensor:
    return torch.rand(n, c, h, w, generator=torch.Generator().manual_seed(seed))


def _fg(n: int = 3, h: int = 6, w: int = 6) -> torch.Tensor:
    mask = torch.zeros(n, 1, h, w)
    mask[..., 1:4, 2:5] = 1
    return mask


# ---------------------------------------------------------------- closed forms
def test_l2_projection_of_a_known_vector_inside_a_wide_box() -> None:
    v = torch.tensor([[3.0, 4.0, 0.0]])
    box = torch.full_like(v, 10.0)
    out = project_l2_box(v, -box, box, torch.tensor([1.0]))
    torch.testing.assert_close(out, torch.tensor([[0.6, 0.8, 0.0]]))


def test_l2_projection_with_a_saturated_coordinate() -> None:
    # The box caps the first coordinate at 0.1; the rest of the radius goes to the second:
    # d = (0.1, t*4) with 0.01 + 16 t^2 = 1  ->  t = sqrt(0.99)/4.
    v = torch.tensor([[3.0, 4.0]], dtype=torch.float64)
    lo = torch.tensor([[-1.0, -1.0]], dtype=torch.float64)
    hi = torch.tensor([[0.1, 1.0]], dtype=torch.float64)
    out = project_l2_box(v, lo, hi, torch.tensor([1.0], dtype=torch.float64))
    expected = torch.tensor([[0.1, math.sqrt(0.99)]], dtype=torch.float64)
    torch.testing.assert_close(out, expected)


def test_l2_projection_inside_the_set_is_the_identity() -> None:
    v = torch.tensor([[0.1, -0.2, 0.05]])
    out = project_l2_box(v, -torch.ones_like(v), torch.ones_like(v), torch.tensor([1.0]))
    assert torch.equal(out, v)


def test_l2_projection_matches_bisection_and_is_optimal() -> None:
    gen = torch.Generator().manual_seed(1)
    n, d = 64, 40
    x = torch.rand(n, d, generator=gen, dtype=torch.float64)
    v = torch.randn(n, d, generator=gen, dtype=torch.float64)
    eps = torch.rand(n, generator=gen, dtype=torch.float64) * 2
    out = project_l2_box(v, -x, 1 - x, eps)
    lo_t, hi_t = torch.zeros(n, dtype=torch.float64), torch.ones(n, dtype=torch.float64)
    for _ in range(200):
        mid = (lo_t + hi_t) / 2
        big = torch.clamp(mid[:, None] * v, -x, 1 - x).norm(dim=1) > eps
        hi_t, lo_t = torch.where(big, mid, hi_t), torch.where(big, lo_t, mid)
    reference = torch.clamp(lo_t[:, None] * v, -x, 1 - x)
    torch.testing.assert_close(out, reference, atol=1e-9, rtol=0)
    # Optimality: no random member of the set is closer to v.
    for _ in range(20):
        other = project_l2_box(out + 0.05 * torch.randn(n, d, generator=gen, dtype=v.dtype), -x,
                               1 - x, eps)  # fmt: skip
        assert bool(((other - v).norm(dim=1) >= (out - v).norm(dim=1) - 1e-9).all())


def test_linf_projection_is_the_clamp_of_ball_and_box() -> None:
    x = torch.tensor([0.0, 0.02, 0.5, 0.99, 1.0]).view(1, 1, 1, 5)
    delta = torch.tensor([-0.5, -0.5, 0.5, 0.5, 0.5]).view(1, 1, 1, 5)
    out = T.Linf(0.1).bind(x).project(delta)
    expected = torch.tensor([0.0, -0.02, 0.1, 0.01, 0.0]).view(1, 1, 1, 5)
    torch.testing.assert_close(out, expected)


def test_eps_map_projection_and_zero_budget_pixels() -> None:
    x = torch.full((1, 2, 2, 2), 0.5)
    eps_map = torch.tensor([[[[0.1, 0.0], [0.3, 0.05]]]])
    bound = T.EpsMap(eps_map).bind(x)
    out = bound.project(torch.ones_like(x))
    torch.testing.assert_close(out, eps_map.expand_as(x))
    out = bound.project(-torch.ones_like(x))
    torch.testing.assert_close(out, -eps_map.expand_as(x))
    assert bool(bound.contains(out).all())
    assert not bool(bound.contains(out * 1.1).all())


def test_dual_linf_is_an_eps_map_of_the_two_budgets() -> None:
    x = torch.full((3, 3, 6, 6), 0.5)
    fg = _fg()
    bound = T.dual(fg, 0.01, 0.2).bind(x)
    out = bound.project(torch.ones_like(x))
    expected = (0.01 * fg + 0.2 * (1 - fg)).expand_as(x)
    torch.testing.assert_close(out, expected)
    norms = bound.norms(out)
    torch.testing.assert_close(norms["foreground"], torch.full((3,), 0.01))
    torch.testing.assert_close(norms["background"], torch.full((3,), 0.2))


def test_region_l2_balls_are_separate() -> None:
    x = torch.full((3, 3, 6, 6), 0.5)
    fg = _fg()
    bound = T.dual(fg, 0.1, 0.3, norm="l2").bind(x)
    out = bound.project(torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(0)))
    fg_norm = (out * fg).flatten(1).norm(dim=1)
    bg_norm = (out * (1 - fg)).flatten(1).norm(dim=1)
    torch.testing.assert_close(fg_norm, torch.full((3,), 0.1))
    torch.testing.assert_close(bg_norm, torch.full((3,), 0.3))
    # Each region's part is the projection of that region's part alone.
    v = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(0))
    alone = project_l2_box((v * fg).flatten(1), (-x).flatten(1), (1 - x).flatten(1),
                           torch.full((3,), 0.1)).view_as(x)  # fmt: skip
    torch.testing.assert_close(out * fg, alone)


def test_l2_projection_with_a_superset_of_candidates_is_unchanged() -> None:
    # The ``within`` hint (a superset of the coordinates outside the box) is a speed-up only.
    gen = torch.Generator().manual_seed(5)
    x = torch.rand(6, 300, generator=gen, dtype=torch.float64)
    x[:, :40] = (x[:, :40] > 0.5).double()  # saturated pixels
    v = torch.randn(6, 300, generator=gen, dtype=torch.float64) * 0.2
    eps = torch.tensor([0.0, 0.1, 0.5, 1.0, 3.0, 50.0], dtype=torch.float64)
    lo, hi = -x, 1 - x
    plain = project_l2_box(v, lo, hi, eps)
    reach = float(v.abs().max())
    idx = (torch.minimum(x, 1 - x).view(-1) < reach).nonzero().squeeze(1)
    within = (idx, lo.reshape(-1)[idx], hi.reshape(-1)[idx])
    assert torch.equal(project_l2_box(v, lo, hi, eps, within=within), plain)
    assert bool((plain.norm(dim=1) <= eps).all())


@pytest.mark.parametrize("threat", ["l2", "dual-l2"])
def test_projection_of_its_own_output_is_returned_and_edits_are_reprojected(threat: str) -> None:
    x = _images()
    spec = T.L2(0.3) if threat == "l2" else T.dual(_fg(), 0.1, 0.4, norm="l2")
    bound = spec.bind(x)
    v = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(1))
    once = bound.project_(v.clone())
    assert bound.project_(once) is once  # a member: the projection is the identity
    once.mul_(3.0)  # an in-place edit leaves the set; it must be projected again
    again = bound.project_(once)
    assert bool(bound.contains(again, atol=0.0).all())
    torch.testing.assert_close(again, bound.project(once))


def test_rescale_then_clip_closed_form_and_regions() -> None:
    x = _images()
    v = torch.randn(3, 3, 6, 6, generator=torch.Generator().manual_seed(2))
    bound = T.L2(0.4).bind(x)
    expected = v * (0.4 / v.flatten(1).norm(dim=1)).clamp(max=1).view(-1, 1, 1, 1)
    expected = (x + expected).clamp(0, 1) - x
    torch.testing.assert_close(bound.rescale_(v.clone()), expected, atol=1e-6, rtol=0)
    # members are unchanged
    inside = bound.project(v)
    assert torch.equal(bound.rescale_(inside.clone()), inside)
    # one ball per region, members without tolerance, frozen pixels untouched
    fg = _fg()
    regions = T.dual(fg, 0.0, 0.5, norm="l2").bind(x)
    out = regions.rescale_(v.clone() * 5)
    assert bool(regions.contains(out, atol=0.0).all())
    assert torch.equal(out * fg, torch.zeros_like(out))
    part = v * 5 * (1 - fg)
    part = part * (0.5 / part.flatten(1).norm(dim=1)).clamp(max=1).view(-1, 1, 1, 1)
    torch.testing.assert_close(out, (x + part).clamp(0, 1) - x, atol=1e-6, rtol=0)


def test_fused_l2_step_equals_step_along_the_ascent() -> None:
    x = _images()
    grad = torch.randn_like(x)
    grad[0] = 0.0  # a zero gradient stays a zero step
    delta = torch.randn_like(x) * 0.01
    eps = torch.tensor([0.2, 0.0, 0.5])
    bound = T.L2(eps).bind(x)
    for step in (torch.tensor(0.05), 0.3 * bound.budget):
        expected = delta + step * bound.ascent(grad)
        torch.testing.assert_close(bound.ascend_(delta.clone(), grad, step), expected)
    assert torch.equal(bound.ascend_(delta.clone(), grad, torch.tensor(0.05))[0], delta[0])


@pytest.mark.parametrize("norm", ["linf", "l2"])
def test_frozen_pixels_never_move(norm: str) -> None:
    x = _images()
    fg = _fg()
    bound = T.frozen(fg, 0.5, norm).bind(x)
    delta = bound.project(torch.randn_like(x))
    assert bool((delta * fg == 0).all())
    assert float((delta * (1 - fg)).abs().sum()) > 0
    sample = bound.sample(torch.Generator().manual_seed(0))
    assert bool((sample * fg == 0).all())
    assert bool(bound.contains(sample).all())
    direction = bound.ascent(torch.randn_like(x))
    assert bool((direction * fg == 0).all())


def test_l2_ascent_masks_before_normalising() -> None:
    x = _images()
    fg = _fg()
    grad = torch.randn_like(x)
    grad[..., 1:4, 2:5] *= 1000.0  # a huge gradient on the (frozen) foreground
    direction = T.frozen(fg, 0.5, "l2").bind(x).ascent(grad)
    free = grad * (1 - fg)
    torch.testing.assert_close(direction, free / free.flatten(1).norm(dim=1).view(-1, 1, 1, 1))
    torch.testing.assert_close(direction.flatten(1).norm(dim=1), torch.ones(3))


def test_linf_ascent_is_the_sign() -> None:
    x = _images()
    grad = torch.randn_like(x)
    assert torch.equal(T.Linf(0.1).bind(x).ascent(grad), grad.sign())


def test_per_sample_eps() -> None:
    x = torch.full((3, 1, 2, 2), 0.5)
    eps = torch.tensor([0.0, 0.1, 0.2])
    out = T.Linf(eps).bind(x).project(torch.ones_like(x))
    torch.testing.assert_close(out.flatten(1).amax(1), eps)
    out = T.L2(eps).bind(x).project(torch.ones_like(x))
    torch.testing.assert_close(out.flatten(1).norm(dim=1), eps)


@pytest.mark.parametrize(
    "make",
    [
        lambda x: T.Linf(0.1),
        lambda x: T.L2(0.7),
        lambda x: T.dual(_fg(), 0.02, 0.2),
        lambda x: T.dual(_fg(), 0.2, 0.9, "l2"),
        lambda x: T.frozen(_fg(), 0.1),
        lambda x: T.EpsMap(torch.rand(3, 3, 6, 6) * 0.1),
    ],
    ids=["linf", "l2", "dual-linf", "dual-l2", "frozen", "eps-map"],
)
def test_samples_are_members_and_differ_across_seeds(make) -> None:
    x = _images()
    x[0, 0, 0, 0], x[0, 0, 0, 1] = 0.0, 1.0  # box corners
    bound = make(x).bind(x)
    a = bound.sample(torch.Generator().manual_seed(0))
    b = bound.sample(torch.Generator().manual_seed(1))
    assert bool(bound.contains(a, atol=1e-6).all()) and bool(bound.contains(b, atol=1e-6).all())
    assert not torch.equal(a, b)
    assert torch.equal(a, bound.sample(torch.Generator().manual_seed(0)))
    # Projection is idempotent on members.
    torch.testing.assert_close(bound.project(a), a, atol=1e-7, rtol=0)


def test_per_sample_generators_make_rows_independent_of_the_batch() -> None:
    x = _images()
    bound = T.L2(0.5).bind(x)
    gens = [torch.Generator().manual_seed(s) for s in (5, 6, 7)]
    batched = bound.sample(gens)
    alone = T.L2(0.5).bind(x[1:2]).sample([torch.Generator().manual_seed(6)])
    torch.testing.assert_close(batched[1:2], alone)


def test_contains_rejects_box_violations_and_nan() -> None:
    x = torch.full((1, 1, 2, 2), 0.95)
    bound = T.Linf(0.1).bind(x)
    assert not bool(bound.contains(torch.full_like(x, 0.08)).all())  # 1.03 > 1
    assert bool(bound.contains(torch.full_like(x, 0.05)).all())
    nan = torch.full_like(x, 0.01)
    nan[0, 0, 0, 0] = math.nan
    assert not bool(bound.contains(nan).all())


def test_subset_slices_per_sample_state() -> None:
    fg = _fg()
    eps = torch.tensor([0.1, 0.2, 0.3])
    sub = T.dual(fg, eps, 0.5).subset([2])
    x = torch.full((1, 3, 6, 6), 0.5)
    out = sub.bind(x).project(torch.ones_like(x))
    assert float(out[0, 0, 2, 3]) == pytest.approx(0.3)


# ---------------------------------------------------------------- validation
def test_incomplete_partition_is_rejected_with_location() -> None:
    fg = _fg()
    bg = 1 - fg
    bg[0, 0, 0, 0] = 0
    with pytest.raises(ValueError, match=r"1 pixel positions are in no region.*sample 0"):
        T.RegionBudget({"fg": fg, "bg": bg}, {"fg": 0.1, "bg": 0.1})


def test_overlapping_partition_is_rejected() -> None:
    fg = _fg()
    with pytest.raises(ValueError, match=r"in two or more regions"):
        T.RegionBudget({"fg": fg, "bg": torch.ones_like(fg)}, {"fg": 0.1, "bg": 0.1})


def test_mask_shape_mismatch_names_the_mask() -> None:
    threat = T.dual(torch.zeros(3, 1, 5, 5), 0.1, 0.2)
    with pytest.raises(ValueError, match=r"masks\['foreground'\] must have shape .*\(3, 1, 5, 5\)"):
        threat.bind(_images())


def test_non_binary_mask_is_rejected() -> None:
    with pytest.raises(ValueError, match=r"must be binary.*0.5"):
        T.dual(torch.full((1, 1, 4, 4), 0.5), 0.1, 0.1)


@pytest.mark.parametrize(
    ("make", "pattern"),
    [
        (lambda: T.Linf(-0.1), r"eps must be a finite number >= 0; got -0.1"),
        (lambda: T.L2(math.nan), r"eps must be a finite number >= 0; got nan"),
        (lambda: T.Linf(torch.tensor([0.1, -0.2])), r"eps must be >= 0; observed min=-0.2"),
        (lambda: T.dual(_fg(), -1.0, 0.1), r"eps\['foreground'\] must be a finite number >= 0"),
        (lambda: T.EpsMap(torch.full((1, 1, 2, 2), -0.5)), r"eps_map must be >= 0; .*-0.5"),
        (lambda: T.ball("l3", 0.1), r"norm must be 'linf' or 'l2'; got 'l3'"),
        (
            lambda: T.RegionBudget({"a": torch.ones(1, 1, 2, 2)}, {"b": 0.1}),
            r"one budget per region",
        ),
    ],
    ids=["neg", "nan", "neg-tensor", "neg-region", "neg-map", "norm", "keys"],
)
def test_bad_budgets_name_argument_and_value(make, pattern: str) -> None:
    with pytest.raises(ValueError, match=pattern):
        make()


def test_per_sample_eps_length_must_match_batch() -> None:
    with pytest.raises(ValueError, match=r"eps has 2 per-sample values but the batch has 3"):
        T.Linf(torch.tensor([0.1, 0.2])).bind(_images())


def test_images_out_of_range_rejected_by_bind() -> None:
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]; observed min=0, max=255"):
        T.Linf(0.1).bind(torch.tensor([0.0, 255.0]).view(1, 1, 1, 2))


def test_delta_shape_checked() -> None:
    bound = T.Linf(0.1).bind(_images())
    with pytest.raises(ValueError, match=r"delta must have the shape"):
        bound.contains(torch.zeros(1, 3, 6, 6))


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
def test_l2_box_projection_is_a_member_without_tolerance(dtype: torch.dtype) -> None:
    # Saturated pixels (0/1 images), large and small budgets: the result must lie in the ball
    # and the box exactly, as computed by torch's own norm (no atol).
    from foveal.threats.geometry import project_l2_box

    gen = torch.Generator().manual_seed(3)
    for trial in range(150):
        d = int(torch.randint(2, 6000, (1,), generator=gen))
        x = torch.rand(8, d, generator=gen, dtype=dtype)
        if trial % 2 == 0:
            x = (x > 0.5).to(dtype)
        scale = float(torch.rand(1, generator=gen)) * 30
        v = torch.randn(8, d, generator=gen, dtype=dtype) * scale / d**0.5
        eps = torch.rand(8, generator=gen, dtype=dtype) * scale
        out = project_l2_box(v, -x, 1 - x, eps)
        assert bool((out.norm(dim=1) <= eps).all()), trial
        assert bool(((x + out >= 0) & (x + out <= 1)).all()), trial
