"""Shared fixtures: an isolated dataset cache and a small trained `shapes` model."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import torch
from hypothesis import settings

# Property tests replay the same examples on every run of the default suite (a red CI is then
# never a matter of luck); tests/test_properties_slow.py explores fresh examples.
settings.register_profile("foveal", derandomize=True, database=None, deadline=None)
settings.load_profile("foveal")

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
    """The default `foveal train --data shapes` model (~98% test accuracy; trained once, then
    cached on disk); returns (model, 500 test images). For the slow cross-check tests."""
    import foveal
    from foveal.app.jobs import TrainJob, run_train_job

    _, test = shapes_small
    cache = (
        Path(os.environ["FOVEAL_CACHE"]) / "models" / f"shapes-cnn-default-v{foveal.__version__}"
    )
    if not (cache / "model.safetensors").exists():
        torch.manual_seed(0)
        run_train_job(TrainJob(out=str(cache)))
    model = foveal.models.load(cache)
    model.eval()
    return model, test


@pytest.fixture(scope="module")
def single_thread():
    """One intra-op thread for modules of tiny tensors, where thread hand-offs dominate on a
    busy machine; use with ``pytestmark = pytest.mark.usefixtures("single_thread")``."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """An untrained width-4 `shapes-cnn` checkpoint (fast; for the command-line tests)."""
    import foveal

    torch.manual_seed(0)
    model = foveal.models.create("shapes-cnn", num_classes=10, width=4)
    path = tmp_path_factory.mktemp("ckpt") / "shapes-cnn-w4"
    meta = {
        "arch": "shapes-cnn",
        "arch_kwargs": {"width": 4},
        "num_classes": 10,
        "in_channels": 3,
        "dataset": "shapes",
    }
    foveal.models.save(model, path, meta)
    return path


#: Examples run by the slow property suite (tests/test_properties_slow.py), reported at the end.
_PROPERTY_EXAMPLES = [0]


@pytest.fixture(scope="session")
def property_examples() -> list[int]:
    return _PROPERTY_EXAMPLES


def pytest_terminal_summary(terminalreporter) -> None:
    if _PROPERTY_EXAMPLES[0]:
        terminalreporter.write_line(f"attack property examples run: {_PROPERTY_EXAMPLES[0]:,}")
