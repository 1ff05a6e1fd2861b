"""The built-in ``objects`` dataset: deterministic, exact masks and boxes, and the premises."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from foveal.data.objects import OBJECT_CLASSES, generate_objects
from foveal.saliency.fixation import spectral_residual
from foveal.saliency.score import foreground_score


@pytest.fixture(scope="module")
def sample():
    return generate_objects(24, size=64, seed=3, split=1, workers=1)


def test_samples_are_deterministic_and_prefix_stable(sample) -> None:
    again = generate_objects(24, size=64, seed=3, split=1, workers=1)
    assert np.array_equal(sample.images, again.images)
    first = generate_objects(5, size=64, seed=3, split=1, workers=1)
    assert np.array_equal(first.images, sample.images[:5])
    assert np.array_equal(first.labels, sample.labels[:5])
    other = generate_objects(5, size=64, seed=3, split=0, workers=1)
    assert not np.array_equal(other.images, first.images)


def test_masks_boxes_and_labels_agree(sample) -> None:
    assert sample.images.dtype == np.uint8 and sample.images.shape == (24, 3, 64, 64)
    assert set(np.unique(sample.masks)) <= {0, 1}
    assert ((sample.labels >= 0) & (sample.labels < len(OBJECT_CLASSES))).all()
    for m, (x0, y0, x1, y1) in zip(sample.masks[:, 0], sample.boxes, strict=True):
        ys, xs = np.nonzero(m)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert 0.05 * 64 * 64 <= m.sum() <= 0.6 * 64 * 64


def test_generation_leaves_the_thread_count_alone() -> None:
    before = torch.get_num_threads()
    generate_objects(1, size=32, workers=1)
    assert torch.get_num_threads() == before


def test_bad_sizes_are_refused() -> None:
    with pytest.raises(ValueError, match="size >= 32.*16"):
        generate_objects(1, size=16)
    with pytest.raises(ValueError, match="n must be >= 0.*-1"):
        generate_objects(-1)


def test_the_fixation_model_looks_at_the_object(sample) -> None:
    """The dual attack's premise: the mean foreground score under spectral residual is well
    above the object's share of the image (about 0.3) and above 0.5 (``shapes``: 0.18-0.44)."""
    x = torch.from_numpy(sample.images).float() / 255
    fg = torch.from_numpy(sample.masks).float()
    scores = foreground_score(spectral_residual(x), fg)
    area = fg.mean((1, 2, 3))
    assert float(scores.mean()) > 0.6
    assert float((scores - area).mean()) > 0.2
