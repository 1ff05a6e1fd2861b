"""Example grids (foveal.app.grids)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from foveal.app.grids import example_rows, write_grid


def test_rows_magnify_the_perturbation_and_fall_back_to_its_magnitude() -> None:
    x = torch.full((3, 3, 4, 4), 0.5)
    adv = x.clone()
    adv[:, :, 0, 0] += 0.01  # the largest change maps to 1, no change to 0.5
    adv[:, :, 1, 1] -= 0.005
    rows = example_rows(None, x, adv, k=2)
    assert [tuple(r.shape) for r in rows] == [(2, 3, 4, 4)] * 4
    magnified = rows[2]
    assert torch.allclose(magnified[:, :, 0, 0], torch.ones(2, 3))
    assert torch.allclose(magnified[:, :, 1, 1], torch.full((2, 3), 0.25))
    assert torch.allclose(magnified[:, :, 2, 2], torch.full((2, 3), 0.5))
    # No attack mask and no batch mask: the normalised perturbation magnitude, peak 1 at (0,0).
    assert rows[3][:, :, 0, 0].min() == 1.0 and rows[3][:, :, 3, 3].max() == 0.0


def test_rows_use_the_batch_mask_and_grey_images_become_rgb() -> None:
    x = torch.rand(2, 1, 5, 5)
    mask = torch.zeros(2, 1, 5, 5)
    mask[:, :, 1:3, 1:3] = 1
    rows = example_rows(None, x, x, {"mask": mask})
    assert all(r.shape == (2, 3, 5, 5) for r in rows)
    assert torch.equal(rows[3][:, 0:1], mask) and torch.equal(rows[0][:, 2:3], x)


def test_write_grid_places_each_row_and_column(tmp_path: Path) -> None:
    rows = [torch.zeros(2, 3, 3, 3), torch.ones(2, 3, 3, 3)]
    path = tmp_path / "grid.png"
    write_grid(rows, path, pad=1)
    img = np.asarray(Image.open(path))
    assert img.shape == (2 * 4 + 1, 2 * 4 + 1, 3)
    assert (img[1:4, 1:4] == 0).all() and (img[5:8, 5:8] == 255).all()
    assert (img[0] == 255).all()  # padding is white
    assert not list(tmp_path.glob(".grid.png.*"))  # no temporary file left behind


def test_write_grid_refuses_mismatched_rows(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="rows must"):
        write_grid([], tmp_path / "a.png")
    with pytest.raises(ValueError, match="one shape"):
        write_grid([torch.zeros(2, 3, 3, 3), torch.zeros(1, 3, 3, 3)], tmp_path / "a.png")
