"""Shared fixtures: an isolated dataset cache and a small trained `shapes` model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch

REPO = Path(__file__).resolve().parents[1]
# Generated datasets and fixture models are cached inside the repository (git-ignored), so
# repeated test runs reuse them without touching the user's own cache.
os.environ.setdefault("FOVEAL_CACHE", str(REPO / ".cache" / "test"))


@pytest.fixture(autouse=True)
def _seed_and_threads():
    torch.manual_seed(0)
    yield


@pytest.fixture(scope="session")
def shapes_small():
    """(train, test) slices of `shapes` at 32 px: 2,000 / 500 images."""
    import foveal

    return (
        foveal.data.load("shapes", split="train", n=2000),
        foveal.data.load("shapes", split="test", n=500),
    )


@pytest.fixture(scope="session")
def trained_shapes_model(shapes_small):
    """A shapes-cnn trained on 2,000 images (cached on disk); returns (model, test data)."""
    import foveal
    from foveal.training import fit

    train, test = shapes_small
    cache = (
        Path(os.environ["FOVEAL_CACHE"]) / "models" / f"shapes-cnn-fixture-v{foveal.__version__}"
    )
    if (cache / "model.safetensors").exists():
        model = foveal.models.load(cache)
    else:
        torch.manual_seed(0)
        model = foveal.models.create("shapes-cnn", num_classes=10)
        fit(model, train, config={"epochs": 6, "batch_size": 64, "lr": 3e-3})
        foveal.models.save(model, cache, {"arch": "shapes-cnn", "num_classes": 10,
                                          "in_channels": 3, "dataset": "shapes"})  # fmt: skip
    model.eval()
    return model, test
