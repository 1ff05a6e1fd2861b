"""Superpixels on real ``shapes`` images: contiguous ids, merging monotone in beta, connectivity."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from scipy import ndimage

import foveal
from foveal.saliency import merge_similar, slic_superpixels, superpixel_means


@pytest.fixture(scope="module")
def images() -> torch.Tensor:
    return foveal.data.load("shapes", split="test", n=4).images


def _same_partition(a: np.ndarray, b: np.ndarray) -> bool:
    """Whether two label maps induce the same partition (up to renaming)."""
    pairs = set(zip(a.ravel().tolist(), b.ravel().tolist(), strict=True))
    return len(pairs) == len(np.unique(a)) == len(np.unique(b))


def test_ids_are_contiguous_from_zero(images: torch.Tensor) -> None:
    ids = slic_superpixels(images, size=4, beta=8)
    assert ids.shape == (4, 32, 32)
    assert ids.dtype == torch.int64
    for im in ids:
        k = int(im.max()) + 1
        assert set(im.unique().tolist()) == set(range(k))


@pytest.mark.parametrize("size", [3, 4, 8])
def test_beta_zero_changes_nothing(images: torch.Tensor, size: int) -> None:
    from skimage.segmentation import slic

    ids = slic_superpixels(images, size=size, beta=0)
    arr = images.permute(0, 2, 3, 1).double().numpy()
    for i in range(len(arr)):
        raw = slic(arr[i], n_segments=round(32 * 32 / size**2), compactness=10.0, start_label=0,
                   channel_axis=-1, sigma=0.0)  # fmt: skip
        assert _same_partition(raw, ids[i].numpy())


@pytest.mark.parametrize("size", [3, 5])
def test_larger_beta_never_increases_the_count(images: torch.Tensor, size: int) -> None:
    counts = []
    for beta in (0, 2, 8, 20, 60, 200, 500):
        ids = slic_superpixels(images, size=size, beta=beta)
        counts.append([int(im.max()) + 1 for im in ids])
    counts_arr = np.array(counts)
    assert (np.diff(counts_arr, axis=0) <= 0).all(), counts_arr
    assert (counts_arr[0] > counts_arr[-1]).all()  # merging does happen
    assert (counts_arr[-1] == 1).all()  # 500 exceeds any RGB distance (max ~441.7)


@pytest.mark.parametrize("beta", [0, 10, 40])
def test_each_region_is_connected(images: torch.Tensor, beta: float) -> None:
    ids = slic_superpixels(images, size=4, beta=beta).numpy()
    eight = np.ones((3, 3), dtype=bool)
    for im in ids:
        for k in range(int(im.max()) + 1):
            _, parts = ndimage.label(im == k, structure=eight)
            assert parts == 1


def test_merge_only_joins_similar_neighbours() -> None:
    # Three vertical stripes: 0 | 10 | 200 grey levels; labels are the stripes.
    image = np.zeros((4, 6, 3))
    image[:, 2:4] = 10
    image[:, 4:] = 200
    labels = np.repeat(np.array([[0, 0, 1, 1, 2, 2]]), 4, axis=0)
    merged = merge_similar(image, labels, beta=20)  # distance 10*sqrt(3) ~ 17.3 < 20
    assert len(np.unique(merged)) == 2
    assert merged[0, 0] == merged[0, 3] != merged[0, 5]
    assert len(np.unique(merge_similar(image, labels, beta=17))) == 3


def test_pool_equals_in_process(images: torch.Tensor) -> None:
    batch = images.repeat(2, 1, 1, 1)
    a = slic_superpixels(batch, size=4, beta=5, workers=1)
    b = slic_superpixels(batch, size=4, beta=5, workers=2)
    assert a.equal(b)
    assert a[:4].equal(a[4:])


def test_means_and_validation(images: torch.Tensor) -> None:
    ids = slic_superpixels(images[:1], size=8)
    means = superpixel_means(images[:1], ids)
    for k in range(int(ids.max()) + 1):
        sel = ids[0] == k
        torch.testing.assert_close(means[0][:, sel][:, 0], images[0][:, sel].mean(1))
    with pytest.raises(ValueError, match="size .* must be >= 1"):
        slic_superpixels(images, size=0.5)
    with pytest.raises(ValueError, match="beta must be >= 0"):
        slic_superpixels(images, beta=-1)
    with pytest.raises(ValueError, match=r"images must lie in \[0, 1\]"):
        slic_superpixels(images * 255)
