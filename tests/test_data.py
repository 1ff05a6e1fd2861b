"""Datasets: `shapes` properties, `digits`, and the real-dataset readers on tiny fake copies."""

from __future__ import annotations

import pickle
from pathlib import Path

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

import foveal
from foveal.data.real import DataRootError
from foveal.data.shapes import SHAPE_CLASSES, generate_shapes, render_shape


# ------------------------------------------------------------------------------ shapes
@settings(max_examples=12, deadline=None)
@given(seed=st.integers(0, 10_000), size=st.sampled_from([32, 48, 64]))
def test_shapes_samples_are_valid(seed: int, size: int) -> None:
    arr = generate_shapes(6, size=size, seed=seed, return_alpha=True, workers=1)
    assert arr.images.dtype == np.uint8 and arr.images.shape == (6, 3, size, size)
    assert set(np.unique(arr.masks)) <= {0, 1}
    assert arr.alphas is not None
    for i in range(6):
        m, a = arr.masks[i, 0].astype(bool), arr.alphas[i, 0]
        # The mask is the drawn shape: alpha >= 0.5 exactly, and its area matches the rendered
        # (anti-aliased) area up to the boundary pixels.
        np.testing.assert_array_equal(m, a >= 0.5)
        boundary = ((a > 0) & (a < 1)).sum()
        assert abs(m.sum() - a.sum()) <= 0.5 * boundary + 1
        # Object covers roughly 15-50% of the image (shrunk shapes may fall a little below).
        frac = a.sum() / size**2
        assert 0.08 <= frac <= 0.52, frac
        # Box encloses the mask tightly: every mask pixel inside, every box edge touched.
        x0, y0, x1, y1 = arr.boxes[i]
        ys, xs = np.nonzero(m)
        assert (x0, y0, x1, y1) == (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1)
        assert m[:, x0].any() and m[:, x1 - 1].any() and m[y0].any() and m[y1 - 1].any()
        assert 0 <= arr.labels[i] < len(SHAPE_CLASSES)


def test_shapes_same_seed_same_data_and_prefix_property() -> None:
    a = generate_shapes(20, seed=3, workers=1)
    b = generate_shapes(20, seed=3, workers=1)
    c = generate_shapes(8, seed=3, workers=1)
    d = generate_shapes(20, seed=4, workers=1)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.masks, b.masks)
    np.testing.assert_array_equal(a.images[:8], c.images)
    assert not np.array_equal(a.images, d.images)


def test_shapes_parallel_equals_serial() -> None:
    a = generate_shapes(600, seed=1, workers=1)
    b = generate_shapes(600, seed=1, workers=2)
    np.testing.assert_array_equal(a.images, b.images)
    np.testing.assert_array_equal(a.boxes, b.boxes)


def test_shapes_train_and_test_splits_differ() -> None:
    tr = foveal.data.load("shapes", split="train", n=50)
    te = foveal.data.load("shapes", split="test", n=50)
    assert not torch.equal(tr.images_uint8, te.images_uint8)


def test_shapes_dataset_item_and_range() -> None:
    ds = foveal.data.load("shapes", split="train", n=40)
    assert len(ds) == 40 and ds.num_classes == 10 and ds.classes[0] == "circle"
    item = ds[3]
    assert item["image"].shape == (3, 32, 32) and item["mask"].shape == (1, 32, 32)
    assert 0.0 <= float(item["image"].min()) and float(item["image"].max()) <= 1.0
    b = ds.batch([0, 5, 7])
    assert torch.equal(b["image"][1], ds[5]["image"])
    assert torch.equal(b["box"][2], ds.boxes[7])
    # Labels carry no information in the background: all classes appear in a small sample.
    assert len(torch.unique(foveal.data.load("shapes", n=200).labels)) == 10


def test_shapes_class_balance() -> None:
    counts = np.bincount(generate_shapes(1000, seed=0, workers=1).labels, minlength=10)
    assert counts.min() > 70 and counts.max() < 130


@pytest.mark.parametrize("size", [64, 96, 224])
def test_shapes_larger_sizes(size: int) -> None:
    ds = foveal.data.load("shapes", split="test", n=3, size=size)
    assert ds.image_shape == (3, size, size)
    assert ds.masks is not None and float(ds.masks.mean()) > 0.05


def test_render_shape_area_is_requested_area() -> None:
    for label in range(10):
        a = render_shape(label, 64, area=0.3, angle=0.4, centre=(32, 32))
        assert abs(a.sum() / 64**2 - 0.3) < 0.02, SHAPE_CLASSES[label]


def test_shapes_cache_is_reused(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("FOVEAL_CACHE", str(tmp_path))
    a = foveal.data.load("shapes", split="test", n=10)
    files = list((tmp_path / "shapes").glob("*.safetensors"))
    assert len(files) == 1
    b = foveal.data.load("shapes", split="test", n=10)
    assert torch.equal(a.images_uint8, b.images_uint8)
    foveal.data.load("shapes", split="test", n=10, size=48)
    assert len(list((tmp_path / "shapes").glob("*.safetensors"))) == 2


# ------------------------------------------------------------------------------ bad input
def test_bad_dataset_arguments() -> None:
    with pytest.raises(ValueError, match="unknown dataset 'shapez'.*did you mean 'shapes'"):
        foveal.data.load("shapez")
    with pytest.raises(ValueError, match="size must be >= 8 pixels; got 4"):
        foveal.data.load("shapes", size=4)
    with pytest.raises(ValueError, match="shapes needs size >= 16 pixels; got 12"):
        foveal.data.load("shapes", size=12)
    with pytest.raises(ValueError, match="split must be 'train' or 'test'; got 'val'"):
        foveal.data.load("shapes", split="val")
    with pytest.raises(ValueError, match="n must be >= 1; got 0"):
        foveal.data.load("shapes", n=0)
    with pytest.raises(ValueError, match="digits images are 28x28; got size=32"):
        foveal.data.load("digits", size=32)


@pytest.mark.parametrize("name", ["mnist", "cifar10", "cifar100", "stl10", "imagefolder", "cub200"])
def test_real_dataset_without_root_names_the_layout(name: str, tmp_path: Path) -> None:
    with pytest.raises(DataRootError, match="expected layout"):
        foveal.data.load(name)
    with pytest.raises(DataRootError, match="missing|does not exist"):
        foveal.data.load(name, root=tmp_path)
    with pytest.raises(DataRootError, match="does not exist"):
        foveal.data.load(name, root=tmp_path / "nowhere")


# ------------------------------------------------------------------------------ digits
def test_digits_split_and_masks() -> None:
    tr = foveal.data.load("digits", split="train")
    te = foveal.data.load("digits", split="test")
    assert (len(tr), len(te)) == (4000, 1000)
    assert tr.image_shape == (1, 28, 28)
    # Stratified: every class has close to 10% in both splits.
    for ds in (tr, te):
        frac = torch.bincount(ds.labels, minlength=10).float() / len(ds)
        assert float(frac.min()) > 0.07 and float(frac.max()) < 0.13
    assert tr.masks is not None
    np.testing.assert_array_equal(tr.masks.numpy(), (tr.images_uint8 > 127).numpy())
    x0, _, _, y1 = tr.boxes[0].tolist()
    m = tr.masks[0, 0]
    assert bool(m[:, x0].any()) and bool(m[y1 - 1].any()) and float(m[:, :x0].sum()) == 0


# ------------------------------------------------------------------------------ fakes
def _cifar_records(n: int, label_bytes: int, rng: np.random.Generator) -> tuple[bytes, np.ndarray]:
    labels = rng.integers(0, 10, size=(n, label_bytes)).astype(np.uint8)
    pixels = rng.integers(0, 256, size=(n, 3072)).astype(np.uint8)
    return np.concatenate([labels, pixels], axis=1).tobytes(), pixels


def test_cifar10_binary_fake(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    d = tmp_path / "cifar-10-batches-bin"
    d.mkdir()
    first = None
    for i in range(1, 6):
        raw, pixels = _cifar_records(4, 1, rng)
        (d / f"data_batch_{i}.bin").write_bytes(raw)
        first = pixels if first is None else first
    raw, _ = _cifar_records(3, 1, rng)
    (d / "test_batch.bin").write_bytes(raw)
    tr = foveal.data.load("cifar10", root=tmp_path)
    te = foveal.data.load("cifar10", root=tmp_path, split="test")
    assert (len(tr), len(te)) == (20, 3) and tr.classes[0] == "airplane"
    np.testing.assert_array_equal(tr.images_uint8[0].numpy().reshape(-1), first[0])
    assert foveal.data.load("cifar10", root=tmp_path, size=16).image_shape == (3, 16, 16)
    (d / "test_batch.bin").write_bytes(raw[:-5])
    with pytest.raises(ValueError, match="truncated"):
        foveal.data.load("cifar10", root=tmp_path, split="test")


def test_cifar_python_fake_and_malicious_pickle(tmp_path: Path) -> None:
    d = tmp_path / "cifar-100-python"
    d.mkdir()
    rng = np.random.default_rng(1)
    data = rng.integers(0, 256, size=(5, 3072)).astype(np.uint8)
    for split in ("train", "test"):
        with open(d / split, "wb") as fh:
            pickle.dump({b"data": data, b"fine_labels": [1, 2, 3, 4, 99]}, fh)
    ds = foveal.data.load("cifar100", root=tmp_path)
    assert len(ds) == 5 and int(ds.labels[-1]) == 99
    np.testing.assert_array_equal(ds.images_uint8[2].numpy().reshape(-1), data[2])

    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    with open(d / "test", "wb") as fh:
        pickle.dump({b"data": Evil(), b"fine_labels": [0]}, fh)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load builtins.print"):
        foveal.data.load("cifar100", root=tmp_path, split="test")


def test_cifar100_binary_fake(tmp_path: Path) -> None:
    d = tmp_path / "cifar-100-binary"
    d.mkdir()
    raw, _ = _cifar_records(6, 2, np.random.default_rng(2))
    (d / "train.bin").write_bytes(raw)
    ds = foveal.data.load("cifar100", root=tmp_path)
    fine = np.frombuffer(raw, np.uint8).reshape(6, 3074)[:, 1]
    np.testing.assert_array_equal(ds.labels.numpy(), fine)


def _write_idx(path: Path, arr: np.ndarray) -> None:
    code = {1: 0x0801, 3: 0x0803}[arr.ndim]
    header = code.to_bytes(4, "big") + b"".join(int(s).to_bytes(4, "big") for s in arr.shape)
    path.write_bytes(header + arr.astype(np.uint8).tobytes())


def test_mnist_idx_fake(tmp_path: Path) -> None:
    raw = tmp_path / "MNIST" / "raw"
    raw.mkdir(parents=True)
    rng = np.random.default_rng(3)
    for prefix, n in (("train", 7), ("t10k", 3)):
        _write_idx(raw / f"{prefix}-images-idx3-ubyte", rng.integers(0, 256, (n, 28, 28)))
        _write_idx(raw / f"{prefix}-labels-idx1-ubyte", rng.integers(0, 10, (n,)))
    tr = foveal.data.load("mnist", root=tmp_path)
    te = foveal.data.load("mnist", root=tmp_path, split="test", n=2)
    assert (len(tr), len(te)) == (7, 2) and tr.image_shape == (1, 28, 28)


def test_stl10_fake(tmp_path: Path) -> None:
    d = tmp_path / "stl10_binary"
    d.mkdir()
    x = np.random.default_rng(4).integers(0, 256, (2, 3, 96, 96)).astype(np.uint8)
    # STL-10 stores each channel column-major.
    (d / "train_X.bin").write_bytes(x.transpose(0, 1, 3, 2).tobytes())
    (d / "train_y.bin").write_bytes(bytes([1, 10]))
    ds = foveal.data.load("stl10", root=tmp_path)
    np.testing.assert_array_equal(ds.images_uint8.numpy(), x)
    assert ds.labels.tolist() == [0, 9]


def test_imagefolder_fake(tmp_path: Path) -> None:
    from PIL import Image

    for split in ("train", "test"):
        for c in ("cat", "dog"):
            (tmp_path / split / c).mkdir(parents=True)
            for i in range(2):
                Image.new("RGB", (40, 30), (200 if c == "cat" else 10, i * 50, 0)).save(
                    tmp_path / split / c / f"{i}.png"
                )
    ds = foveal.data.load("imagefolder", root=tmp_path, size=16)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 1, 1]
    assert ds.image_shape == (3, 16, 16)
    assert int(ds.images_uint8[0, 0].float().mean()) == 200


def test_cub_fake_with_masks_and_boxes(tmp_path: Path) -> None:
    from PIL import Image

    cub = tmp_path / "CUB_200_2011"
    (cub / "images" / "001.Bird").mkdir(parents=True)
    (tmp_path / "segmentations" / "001.Bird").mkdir(parents=True)
    rows = []
    for i in (1, 2, 3):
        Image.new("RGB", (80, 40), (i * 60, 0, 0)).save(cub / "images" / "001.Bird" / f"b{i}.jpg")
        seg = np.zeros((40, 80), np.uint8)
        seg[10:30, 20:60] = 255
        Image.fromarray(seg).save(tmp_path / "segmentations" / "001.Bird" / f"b{i}.png")
        rows.append(i)
    (cub / "images.txt").write_text("".join(f"{i} 001.Bird/b{i}.jpg\n" for i in rows))
    (cub / "image_class_labels.txt").write_text("".join(f"{i} 1\n" for i in rows))
    (cub / "train_test_split.txt").write_text("1 1\n2 1\n3 0\n")
    (cub / "bounding_boxes.txt").write_text("".join(f"{i} 20.0 10.0 40.0 20.0\n" for i in rows))
    (cub / "classes.txt").write_text("1 001.Bird\n")
    tr = foveal.data.load("cub200", root=tmp_path, size=40)
    te = foveal.data.load("cub200", root=tmp_path, size=40, split="test")
    assert (len(tr), len(te)) == (2, 1)
    assert tr.masks is not None and tr.boxes is not None
    # Box (20,10,40,20) in an 80x40 image scaled to 40x40: x by 0.5, y by 1.
    assert tr.boxes[0].tolist() == [10, 10, 30, 30]
    assert float(tr.masks[0, 0, 20, 20]) == 1.0 and float(tr.masks[0, 0, 2, 2]) == 0.0
    (tmp_path / "segmentations" / "001.Bird" / "b3.png").unlink()
    with pytest.raises(DataRootError, match="b3.png"):
        foveal.data.load("cub200", root=tmp_path, split="test")
