"""Maskers: closed-form maps, a brute-force reference for the top-k mass rule, Regions."""

from __future__ import annotations

import itertools

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from foveal.saliency import (
    MASKERS,
    Binarize,
    GroundTruthMasker,
    HalfRange,
    Percentile,
    Regions,
    TopKMass,
    binarize,
    half_range,
    percentile,
    top_k_mass,
)


def _brute_force_min_k(values: list[float], fraction: float) -> int:
    """Smallest size of ANY subset whose sum reaches fraction * total (exhaustive)."""
    total = sum(values)
    need = fraction * total
    for k in range(len(values) + 1):
        for subset in itertools.combinations(values, k):
            if sum(subset) >= need:
                return k
    raise AssertionError("unreachable: the full set always reaches the target")


@settings(max_examples=150, deadline=None)
@given(
    st.lists(st.integers(min_value=0, max_value=20), min_size=1, max_size=9),
    st.sampled_from([0.5, 0.25, 0.75, 1.0]),
)
def test_top_k_mass_matches_brute_force(values: list[int], fraction: float) -> None:
    maps = torch.tensor(values, dtype=torch.float32).view(1, 1, 1, -1)
    mask = top_k_mass(maps, fraction).flatten()
    kept = [v for v, m in zip(values, mask.tolist(), strict=True) if m == 1.0]
    assert set(mask.tolist()) <= {0.0, 1.0}
    # The kept elements hold at least the fraction of the mass...
    assert sum(kept) >= fraction * sum(values)
    # ...and no smaller set does.
    assert len(kept) == _brute_force_min_k([float(v) for v in values], fraction)


@settings(max_examples=60, deadline=None)
@given(st.lists(st.floats(min_value=-5, max_value=5), min_size=4, max_size=12))
def test_top_k_mass_uses_absolute_values_and_largest_elements(values: list[float]) -> None:
    even = values[: len(values) // 2 * 2]
    maps = torch.tensor(even, dtype=torch.float64).view(1, 1, 2, -1)
    flat = maps.flatten().abs()
    mask = top_k_mass(maps).flatten().bool()
    if mask.any() and (~mask).any():
        # Every kept element is at least as large as every dropped one.
        assert float(flat[mask].min()) >= float(flat[~mask].max())


def test_top_k_mass_batched_and_channels() -> None:
    maps = torch.tensor(
        [[[[4.0, 1.0], [3.0, 2.0]]], [[[0.0, 0.0], [0.0, 0.0]]], [[[1.0, 1.0], [1.0, 1.0]]]]
    )
    out = top_k_mass(maps)
    assert out[0].flatten().tolist() == [1, 0, 1, 0]  # 4 + 3 >= 5 (half of 10); 4 alone < 5
    assert out[1].sum() == 0  # no mass: nothing selected
    assert out[2].sum() == 2  # equal values: the first two in order
    per_channel = top_k_mass(torch.tensor([[[[9.0]], [[1.0]], [[-8.0]]]]))
    assert per_channel.flatten().tolist() == [1, 0, 0]  # 9 >= 9 = half of 18


def test_half_range_closed_form() -> None:
    ramp = torch.arange(10, dtype=torch.float32).view(1, 1, 1, 10)  # t = 4.5
    assert half_range(ramp).flatten().tolist() == [0] * 5 + [1] * 5
    shifted = ramp + 100  # threshold is per image: 104.5
    both = half_range(torch.cat([ramp, shifted]))
    assert both[0].equal(both[1])
    assert half_range(torch.full((1, 1, 3, 3), 2.0)).sum() == 0  # constant: nothing above t
    # strict ">": a value exactly at t is background
    assert half_range(torch.tensor([[[[0.0, 1.0, 2.0]]]])).flatten().tolist() == [0, 0, 1]


@pytest.mark.parametrize(
    ("phi", "expected"),
    [
        (0.0, [1, 1, 1, 1, 1]),
        (0.25, [0, 1, 1, 1, 1]),
        (0.5, [0, 0, 1, 1, 1]),
        (1.0, [0, 0, 0, 0, 1]),
    ],
)
def test_binarize_closed_form(phi: float, expected: list[int]) -> None:
    maps = torch.tensor([[[[10.0, 12.0, 14.0, 16.0, 18.0]]]])  # normalised 0, .25, .5, .75, 1
    assert binarize(maps, phi).flatten().tolist() == expected


def test_binarize_validates_phi() -> None:
    with pytest.raises(ValueError, match="phi must lie in"):
        binarize(torch.rand(1, 1, 2, 2), 1.5)
    with pytest.raises(ValueError, match="phi must be a finite number >= 0"):
        Binarize(phi=-0.1)
    assert binarize(torch.full((1, 1, 2, 2), 3.0), 0.0).sum() == 4
    assert binarize(torch.full((1, 1, 2, 2), 3.0), 0.2).sum() == 0


def test_percentile_counts() -> None:
    maps = torch.arange(20, dtype=torch.float32).view(1, 1, 4, 5)
    for p, k in ((0, 0), (10, 2), (25, 5), (33, 7), (100, 20)):
        m = percentile(maps, p)
        assert int(m.sum()) == k
        if k:
            assert float(maps[m.bool()].min()) == 20 - k
    with pytest.raises(ValueError, match="percent must lie in"):
        percentile(maps, 120)


def test_regions_and_masker_classes() -> None:
    maps = torch.rand(3, 1, 6, 6, generator=torch.Generator().manual_seed(0))
    for name in MASKERS.names():
        if name == "ground-truth":
            masker = MASKERS.get(name)((maps > 0.5).float())
        else:
            masker = MASKERS.get(name)()
        regions = masker(maps)
        assert isinstance(regions, Regions)
        assert regions.foreground.shape == maps.shape
        torch.testing.assert_close(regions.foreground + regions.background, torch.ones_like(maps))
        assert set(regions.foreground.unique().tolist()) <= {0.0, 1.0}
    r = HalfRange()(maps)
    assert r.swap().foreground.equal(r.background)
    wide = r.expand(3)
    assert wide.foreground.shape == (3, 3, 6, 6)
    assert wide.foreground[:, 2].equal(r.foreground[:, 0])
    torch.testing.assert_close(r.fraction(), r.foreground.flatten(1).mean(1))
    assert TopKMass(fraction=0.5).mask(maps).equal(top_k_mass(maps))
    assert Percentile(percent=10).mask(maps).sum() == 3 * 4  # ceil(3.6) per image
    with pytest.raises(ValueError, match="complement"):
        Regions(r.foreground, r.foreground)
    with pytest.raises(ValueError, match="binary"):
        Regions.from_foreground(maps)


def test_ground_truth_masker_checks_shapes() -> None:
    masks = torch.zeros(2, 1, 4, 4)
    masks[:, :, 1:3, 1:3] = 1
    regions = GroundTruthMasker(masks)(torch.rand(2, 1, 4, 4))
    assert regions.foreground.equal(masks)
    with pytest.raises(ValueError, match="masks must have shape"):
        GroundTruthMasker(masks)(torch.rand(3, 1, 4, 4))
    with pytest.raises(ValueError, match="must have shape"):
        half_range(torch.rand(4, 4))
