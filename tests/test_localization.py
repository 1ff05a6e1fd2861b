"""Localisation metrics and the foreground score: closed forms and the shapes data."""

from __future__ import annotations

import pytest
import torch
from torch import nn

import foveal
from foveal.metrics import (
    DEFAULT_ALPHAS,
    box_iou,
    boxes_from_masks,
    foreground_score,
    insertion_deletion,
    localization_error,
    localization_sweep,
    pointing_game,
    select_alpha,
    threshold_maps,
)
from foveal.saliency import CenterBaseline, ForegroundScore, GroundTruth


def test_box_iou_closed_form() -> None:
    a = torch.tensor([[0, 0, 2, 2], [0, 0, 4, 4], [0, 0, 0, 0], [1, 1, 3, 3]])
    b = torch.tensor([[1, 0, 3, 2], [0, 0, 4, 4], [0, 0, 0, 0], [5, 5, 6, 6]])
    iou = box_iou(a, b)
    torch.testing.assert_close(iou, torch.tensor([2 / 6, 1.0, 0.0, 0.0]))


def test_boxes_from_masks_largest_vs_all() -> None:
    m = torch.zeros(1, 10, 10, dtype=torch.bool)
    m[0, 1:4, 1:4] = True  # 9 pixels
    m[0, 7, 8] = True  # 1 pixel
    assert boxes_from_masks(m, mode="largest").tolist() == [[1, 1, 4, 4]]
    assert boxes_from_masks(m, mode="all").tolist() == [[1, 1, 9, 8]]
    # diagonal neighbours belong to one 8-connected component
    d = torch.zeros(1, 5, 5, dtype=torch.bool)
    d[0, 0, 0] = d[0, 1, 1] = d[0, 2, 2] = True
    assert boxes_from_masks(d).tolist() == [[0, 0, 3, 3]]
    assert boxes_from_masks(torch.zeros(2, 4, 4)).tolist() == [[0, 0, 0, 0]] * 2


def test_ground_truth_masks_reproduce_the_dataset_boxes() -> None:
    ds = foveal.data.load("shapes", split="test", n=32)
    boxes = boxes_from_masks(ds.masks, mode="all")
    assert boxes.equal(ds.boxes)
    err, correct = localization_error(GroundTruth.from_dataset(ds)(ds.images), ds.boxes,
                                      rule="value", alpha=0.5, box="all")  # fmt: skip
    assert err == 0.0 and bool(correct.all())


def test_threshold_rules_closed_form() -> None:
    m = torch.tensor([[[[0.0, 1.0, 4.0, 9.0, 16.0]]]])
    assert threshold_maps(m, "value", 0.5).int().flatten().tolist() == [0, 0, 0, 1, 1]
    # sqrt of the normalised map: 0, .25, .5, .75, 1
    assert threshold_maps(m, "value", 0.5, sqrt=True).int().flatten().tolist() == [0, 0, 1, 1, 1]
    # mean = 6
    assert threshold_maps(m, "mean", 1.0).int().flatten().tolist() == [0, 0, 0, 1, 1]
    assert threshold_maps(m, "mean", 0.5).int().flatten().tolist() == [0, 0, 1, 1, 1]
    assert threshold_maps(m, "percent", 0.4).int().flatten().tolist() == [0, 0, 0, 1, 1]
    assert threshold_maps(m, "percent", 0.0).sum() == 0
    with pytest.raises(ValueError, match="rule must be one of"):
        threshold_maps(m, "otsu", 0.5)
    with pytest.raises(ValueError, match="alpha for rule 'value'"):
        threshold_maps(m, "value", 1.5)


def test_sweep_and_selection_on_a_blob() -> None:
    maps = torch.zeros(2, 1, 16, 16)
    maps[:, :, 4:12, 4:12] = 1.0
    maps[:, :, 6:10, 6:10] = 2.0  # a peak inside the object
    boxes = torch.tensor([[4, 4, 12, 12], [4, 4, 12, 12]])
    sweep = localization_sweep(maps, boxes, rule="value")
    assert set(sweep.errors) == set(DEFAULT_ALPHAS["value"])
    assert sweep.errors[0.25] == 0.0  # keeps the whole 8x8 object
    assert sweep.errors[0.75] == 1.0  # keeps only the 4x4 peak: IoU 0.25
    assert sweep.best_error == 0.0
    assert select_alpha(maps, boxes, rule="value") == sweep.best_alpha
    assert select_alpha(maps, boxes, rule="percent", alphas=[0.0625, 0.25, 0.5]) == 0.25


def test_centre_baseline_error_on_shapes_is_between_0_and_1() -> None:
    ds = foveal.data.load("shapes", split="test", n=64)
    maps = CenterBaseline()(ds.images)
    err_gt = localization_sweep(GroundTruth.from_dataset(ds)(ds.images), ds.boxes).best_error
    err_c = localization_sweep(maps, ds.boxes, rule="percent").best_error
    assert err_gt == 0.0
    assert 0.0 < err_c < 1.0


def test_pointing_game() -> None:
    maps = torch.zeros(3, 1, 20, 20)
    maps[0, 0, 5, 5] = 1  # inside
    maps[1, 0, 5, 15] = 1  # 5 px from the object's right edge (x=10)
    maps[2, 0, 19, 19] = 1  # far
    masks = torch.zeros(3, 1, 20, 20)
    masks[:, :, 2:9, 2:11] = 1
    assert pointing_game(maps, masks, tolerance=0).tolist() == [True, False, False]
    assert pointing_game(maps, masks, tolerance=5).tolist() == [True, True, False]
    with pytest.raises(ValueError, match="masks must have the shape"):
        pointing_game(maps, masks[:2])


class _CountModel(nn.Module):
    """Logit of class 0 = 10 * mean of channel 0 over the left half; class 1 fixed at 0."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = 10 * x[:, 0, :, : x.shape[-1] // 2].mean(dim=(1, 2))
        return torch.stack([s, torch.zeros_like(s)], dim=1)


def test_insertion_deletion_prefers_the_right_order() -> None:
    model = _CountModel()
    x = torch.ones(1, 1, 4, 4)
    good = torch.zeros(1, 1, 4, 4)
    good[..., :2] = 1.0  # the pixels the model uses come first
    bad = 1.0 - good
    target = torch.tensor([0])
    del_good = insertion_deletion(model, x, good, target, mode="deletion", steps=8)
    del_bad = insertion_deletion(model, x, bad, target, mode="deletion", steps=8)
    ins_good = insertion_deletion(model, x, good, target, mode="insertion", steps=8,
                                  baseline="zeros")  # fmt: skip
    ins_bad = insertion_deletion(model, x, bad, target, mode="insertion", steps=8,
                                 baseline="zeros")  # fmt: skip
    assert float(del_good) < float(del_bad)
    assert float(ins_good) > float(ins_bad)
    # Closed form for the bad deletion order: the probability stays at sigmoid(10) for the
    # first half of the curve, then falls linearly in logit space.
    p_full = torch.sigmoid(torch.tensor(10.0))
    assert float(del_bad) > 0.5 * float(p_full)
    with pytest.raises(ValueError, match="mode must be"):
        insertion_deletion(model, x, good, target, mode="both")


def test_foreground_score() -> None:
    d = torch.tensor([[[[0.1, 0.2], [0.3, 0.4]]]])
    fg = torch.tensor([[[[0.0, 1.0], [0.0, 1.0]]]])
    torch.testing.assert_close(foreground_score(d, fg), torch.tensor([0.6]))
    torch.testing.assert_close(foreground_score(d * 7, fg), torch.tensor([0.6]))
    torch.testing.assert_close(foreground_score(d, fg.expand(1, 3, 2, 2)), torch.tensor([0.6]))
    with pytest.raises(ValueError, match="binary"):
        foreground_score(d, fg * 0.5)
    with pytest.raises(ValueError, match="foreground must have shape"):
        foreground_score(d, fg[..., :1])
    # Differentiable through the spectral-residual density, and consistent with it.
    ds = foveal.data.load("shapes", split="test", n=4)
    x = ds.images.clone().requires_grad_(True)
    score = ForegroundScore()(x, ds.masks)
    assert score.shape == (4,)
    assert bool(((score > 0) & (score < 1)).all())
    score.sum().backward()
    assert x.grad is not None and float(x.grad.abs().sum()) > 0
