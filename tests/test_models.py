"""Architectures, the Normalized wrapper and checkpoints."""

from __future__ import annotations

import json
import pickle
from pathlib import Path

import pytest
import torch
from safetensors.torch import save_file
from torch import nn

import foveal
from foveal.models import CheckpointError, Normalized, get_layer, unwrap


@pytest.mark.parametrize(
    ("arch", "shape", "classes"),
    [
        ("shapes-cnn", (2, 3, 32, 32), 10),
        ("shapes-cnn", (2, 3, 64, 64), 7),
        ("mnist-cnn", (2, 1, 28, 28), 10),
        ("cifar-cnn", (2, 3, 32, 32), 10),
        ("assira-cnn", (1, 3, 112, 112), 2),
        ("resnet18", (2, 3, 32, 32), 5),
        ("resnet34", (1, 3, 32, 32), 100),
    ],
)
def test_architectures_forward(arch: str, shape: tuple[int, ...], classes: int) -> None:
    kwargs = {"input_size": shape[-1]} if arch.endswith("cnn") and arch != "shapes-cnn" else {}
    model = foveal.models.create(arch, num_classes=classes, in_channels=shape[1], **kwargs)
    model.eval()
    out = model(torch.rand(shape))
    assert out.shape == (shape[0], classes)
    assert torch.isfinite(out).all()
    # The default CAM layer exists and is a block of convolutions.
    layer = get_layer(model, foveal.models.default_layer(arch))
    assert any(isinstance(m, nn.Conv2d) for m in layer.modules())


def test_resnet_small_input_stem() -> None:
    net = unwrap(foveal.models.create("resnet18"))
    assert net.conv1.kernel_size == (3, 3) and net.conv1.stride == (1, 1)
    assert net.conv1.padding == (1, 1) and isinstance(net.maxpool, nn.Identity)


def test_smd_spd_cnns_have_dropout_06() -> None:
    for arch in ("cifar-cnn", "assira-cnn"):
        drops = [
            m for m in unwrap(foveal.models.create(arch)).modules() if isinstance(m, nn.Dropout)
        ]
        assert drops and all(d.p == 0.6 for d in drops)


def test_normalized_applies_mean_and_std() -> None:
    inner = nn.Identity()
    model = Normalized(inner, mean=[0.5, 0.25], std=[0.5, 0.25])
    x = torch.tensor([1.0, 0.5]).reshape(1, 2, 1, 1)
    torch.testing.assert_close(model(x).flatten(), torch.tensor([1.0, 1.0]))
    with pytest.raises(ValueError, match="std must be > 0"):
        Normalized(inner, mean=[0.0], std=[0.0])
    with pytest.raises(ValueError, match="same length; got 2 and 3"):
        Normalized(inner, mean=[0.0, 0.0], std=[1.0, 1.0, 1.0])


def test_bad_model_arguments() -> None:
    with pytest.raises(ValueError, match="unknown architecture 'resnet19'.*did you mean"):
        foveal.models.create("resnet19")
    with pytest.raises(ValueError, match="num_classes must be >= 2; got 1"):
        foveal.models.create("shapes-cnn", num_classes=1)
    with pytest.raises(ValueError, match="layer 'nope' not found"):
        get_layer(foveal.models.create("shapes-cnn"), "nope")


def _meta(**extra: object) -> dict:
    return {"arch": "shapes-cnn", "num_classes": 4, "in_channels": 3, "mean": [0.1, 0.2, 0.3],
            "std": [0.5, 0.5, 0.5], "dataset": "shapes", **extra}  # fmt: skip


def test_checkpoint_round_trip(tmp_path: Path) -> None:
    model = foveal.models.create("shapes-cnn", num_classes=4, mean=[0.1, 0.2, 0.3], std=[0.5] * 3)
    model.eval()
    x = torch.rand(3, 3, 32, 32)
    foveal.models.save(model, tmp_path / "ck", _meta(metrics={"test_acc": 0.5}))
    assert (tmp_path / "ck" / "model.json").exists()
    loaded = foveal.models.load(tmp_path / "ck")
    assert not loaded.training
    torch.testing.assert_close(loaded(x), model(x), rtol=0, atol=0)
    meta = json.loads((tmp_path / "ck" / "model.json").read_text())
    assert meta["metrics"] == {"test_acc": 0.5} and meta["foveal_version"] == foveal.__version__
    # The weights file alone is self-describing, and the json file path works too.
    assert foveal.models.read_meta(tmp_path / "ck" / "model.safetensors")["arch"] == "shapes-cnn"
    foveal.models.load(tmp_path / "ck" / "model.json")
    assert not list((tmp_path / "ck").glob("*.tmp"))


def test_checkpoint_lazy_architecture_round_trip(tmp_path: Path) -> None:
    model = foveal.models.create("mnist-cnn", in_channels=1, input_size=28)
    model.eval()
    foveal.models.save(model, tmp_path, {"arch": "mnist-cnn", "in_channels": 1, "num_classes": 10,
                                         "arch_kwargs": {"input_size": 28}})  # fmt: skip
    x = torch.rand(2, 1, 28, 28)
    torch.testing.assert_close(foveal.models.load(tmp_path)(x), model(x))


def test_load_rejects_non_checkpoints(tmp_path: Path) -> None:
    with pytest.raises(CheckpointError, match="no foveal checkpoint at .*expected a directory"):
        foveal.models.load(tmp_path)
    pkl = tmp_path / "model.pt"
    with open(pkl, "wb") as fh:
        pickle.dump({"weights": [1, 2, 3]}, fh)
    with pytest.raises(CheckpointError, match="looks like a pickle; foveal never unpickles"):
        foveal.models.load(pkl)
    torch.save({"w": torch.zeros(2)}, tmp_path / "torch.pth")
    with pytest.raises(CheckpointError, match="not a foveal checkpoint"):
        foveal.models.load(tmp_path / "torch.pth")
    txt = tmp_path / "notes.txt"
    txt.write_text("hello")
    with pytest.raises(CheckpointError, match="not a foveal checkpoint"):
        foveal.models.load(txt)


def test_load_rejects_truncated_and_foreign_safetensors(tmp_path: Path) -> None:
    model = foveal.models.create("shapes-cnn", num_classes=4)
    foveal.models.save(model, tmp_path / "ck", _meta())
    weights = tmp_path / "ck" / "model.safetensors"
    data = weights.read_bytes()
    weights.write_bytes(data[: len(data) // 2])
    with pytest.raises(CheckpointError, match="truncated or corrupt|cannot read the weights"):
        foveal.models.load(tmp_path / "ck")
    weights.write_bytes(b"\x00\x01garbage")
    with pytest.raises(CheckpointError, match="truncated or corrupt"):
        foveal.models.load(tmp_path / "ck")
    foreign = tmp_path / "foreign"
    foreign.mkdir()
    save_file({"w": torch.zeros(2)}, str(foreign / "model.safetensors"))
    with pytest.raises(CheckpointError, match="not a foveal checkpoint .no 'foveal' metadata"):
        foveal.models.load(foreign)


def test_load_rejects_mismatched_weights(tmp_path: Path) -> None:
    model = foveal.models.create("shapes-cnn", num_classes=4)
    foveal.models.save(model, tmp_path, _meta(num_classes=7))
    with pytest.raises(CheckpointError, match="weights do not fit architecture 'shapes-cnn'"):
        foveal.models.load(tmp_path)
