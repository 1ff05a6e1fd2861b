"""Real datasets read from a local root; nothing is ever downloaded.

========== ============================================================================
name       expected layout under ``root``
========== ============================================================================
mnist      ``MNIST/raw/{train,t10k}-{images-idx3,labels-idx1}-ubyte`` (torchvision layout)
cifar10    ``cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin`` (binary version) or
           ``cifar-10-batches-py/{data_batch_1..5,test_batch}`` (python version)
cifar100   ``cifar-100-binary/{train,test}.bin`` or ``cifar-100-python/{train,test}``
stl10      ``stl10_binary/{train,test}_{X,y}.bin`` (torchvision layout)
imagefolder ``{train,test}/<class>/<image>`` (e.g. ImageNet-10); classes sorted by name
cub200     ``CUB_200_2011/{images.txt,image_class_labels.txt,train_test_split.txt,
           bounding_boxes.txt,classes.txt,images/}`` and the segmentation masks in
           ``segmentations/<class dir>/<image>.png`` (or ``CUB_200_2011/segmentations``)
========== ============================================================================

The python versions of CIFAR are pickle files by format. They are read with a restricted
unpickler that accepts only plain containers and numpy arrays, so a tampered file cannot run
code. Images are resized to ``size`` when given (bilinear, antialiased; masks nearest).
"""

from __future__ import annotations

import io
import pickle
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F

from foveal.data.base import ArrayDataset
from foveal.data.registry import DATASETS, DatasetInfo

__all__ = ["DataRootError"]


class DataRootError(FileNotFoundError):
    """The local dataset files are missing; the message gives the expected layout."""


def _need_root(name: str, root: object, layout: str) -> Path:
    if root is None:
        raise DataRootError(
            f"dataset {name!r} is read from a local directory: pass root=... (--data-root); "
            f"expected layout: {layout}"
        )
    path = Path(str(root)).expanduser()
    if not path.is_dir():
        raise DataRootError(f"data root {str(path)!r} for {name!r} does not exist")
    return path


def _missing(name: str, path: Path, layout: str) -> DataRootError:
    return DataRootError(f"{name}: missing {str(path)!r}; expected layout under the root: {layout}")


def _resize(images: torch.Tensor, size: int | None, *, mode: str = "bilinear") -> torch.Tensor:
    if size is None or images.shape[-2:] == (size, size):
        return images
    x = images.float()
    if mode == "nearest":
        out = F.interpolate(x, size=(size, size), mode="nearest")
    else:
        out = F.interpolate(x, size=(size, size), mode="bilinear", antialias=True,
                            align_corners=False)  # fmt: skip
    return out.round().clamp(0, 255).to(images.dtype)


def _limit(n: int | None, *arrays: Any) -> tuple[Any, ...]:
    if n is None:
        return arrays
    return tuple(a[:n] for a in arrays)


# ------------------------------------------------------------------------------- MNIST
MNIST_LAYOUT = "MNIST/raw/{train,t10k}-images-idx3-ubyte and {train,t10k}-labels-idx1-ubyte"


def _load_mnist(*, split: str, n: int | None, size: int | None, root: object, seed: int):
    from torchvision.datasets import MNIST

    base = _need_root("mnist", root, MNIST_LAYOUT)
    try:
        ds = MNIST(str(base), train=split == "train", download=False)
    except RuntimeError:
        raise _missing("mnist", base / "MNIST" / "raw", MNIST_LAYOUT) from None
    images = ds.data.unsqueeze(1).to(torch.uint8)
    labels = ds.targets.long()
    images, labels = _limit(n, images, labels)
    images = _resize(images, size)
    return ArrayDataset(images, labels, classes=[str(i) for i in range(10)], name="mnist")


# ------------------------------------------------------------------------------- CIFAR
class _SafeUnpickler(pickle.Unpickler):
    """Only plain containers and numpy arrays: CIFAR's python batches need nothing else."""

    _ALLOWED: frozenset[tuple[str, str]] = frozenset(
        {
            ("numpy.core.multiarray", "_reconstruct"),
            ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"),
            ("numpy", "dtype"),
            ("numpy.core.multiarray", "scalar"),
            ("numpy._core.multiarray", "scalar"),
            ("_codecs", "encode"),
        }
    )

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._ALLOWED:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"refusing to load {module}.{name} from a dataset file")


def _read_py_batch(path: Path) -> dict[str, Any]:
    data = _SafeUnpickler(io.BytesIO(path.read_bytes()), encoding="latin1").load()
    return {k.decode() if isinstance(k, bytes) else k: v for k, v in data.items()}


def _cifar(
    name: str, *, split: str, n: int | None, size: int | None, root: object, hundred: bool
) -> ArrayDataset:
    if hundred:
        layout = "cifar-100-binary/{train,test}.bin or cifar-100-python/{train,test}"
        bin_dir, py_dir = "cifar-100-binary", "cifar-100-python"
        bin_files = ["train.bin"] if split == "train" else ["test.bin"]
        py_files = ["train"] if split == "train" else ["test"]
    else:
        layout = "cifar-10-batches-bin/{data_batch_1..5,test_batch}.bin or cifar-10-batches-py/"
        bin_dir, py_dir = "cifar-10-batches-bin", "cifar-10-batches-py"
        names = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        bin_files, py_files = [f + ".bin" for f in names], names
    base = _need_root(name, root, layout)
    images, labels = [], []
    if (base / bin_dir).is_dir():
        rec = 3074 if hundred else 3073
        for f in bin_files:
            p = base / bin_dir / f
            if not p.exists():
                raise _missing(name, p, layout)
            raw = np.frombuffer(p.read_bytes(), dtype=np.uint8)
            if raw.size % rec:
                raise ValueError(f"{name}: {str(p)!r} is truncated ({raw.size} bytes)")
            raw = raw.reshape(-1, rec)
            labels.append(raw[:, 1 if hundred else 0].astype(np.int64))
            images.append(raw[:, rec - 3072 :].reshape(-1, 3, 32, 32))
    elif (base / py_dir).is_dir():
        for f in py_files:
            p = base / py_dir / f
            if not p.exists():
                raise _missing(name, p, layout)
            batch = _read_py_batch(p)
            key = "fine_labels" if hundred else "labels"
            labels.append(np.asarray(batch[key], dtype=np.int64))
            images.append(np.asarray(batch["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
    else:
        raise _missing(name, base / bin_dir, layout)
    x = torch.from_numpy(np.concatenate(images))
    y = torch.from_numpy(np.concatenate(labels))
    x, y = _limit(n, x, y)
    classes = [str(i) for i in range(100 if hundred else 10)]
    if not hundred:
        classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
                   "ship", "truck"]  # fmt: skip
    return ArrayDataset(_resize(x, size), y, classes=classes, name=name)


def _load_cifar10(*, split: str, n: int | None, size: int | None, root: object, seed: int):
    return _cifar("cifar10", split=split, n=n, size=size, root=root, hundred=False)


def _load_cifar100(*, split: str, n: int | None, size: int | None, root: object, seed: int):
    return _cifar("cifar100", split=split, n=n, size=size, root=root, hundred=True)


# ------------------------------------------------------------------------------- STL-10
STL_LAYOUT = "stl10_binary/{train,test}_X.bin and {train,test}_y.bin"


def _load_stl10(*, split: str, n: int | None, size: int | None, root: object, seed: int):
    base = _need_root("stl10", root, STL_LAYOUT)
    xp = base / "stl10_binary" / f"{split}_X.bin"
    yp = base / "stl10_binary" / f"{split}_y.bin"
    for p in (xp, yp):
        if not p.exists():
            raise _missing("stl10", p, STL_LAYOUT)
    raw = np.frombuffer(xp.read_bytes(), dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise ValueError(f"stl10: {str(xp)!r} is truncated ({raw.size} bytes)")
    # Stored column-major per channel: (N, 3, 96, 96) with H and W swapped.
    x = torch.from_numpy(raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2).copy())
    y = torch.from_numpy(np.frombuffer(yp.read_bytes(), dtype=np.uint8).astype(np.int64) - 1)
    if len(y) != len(x):
        raise ValueError(f"stl10: {len(x)} images but {len(y)} labels")
    x, y = _limit(n, x, y)
    classes = ["airplane", "bird", "car", "cat", "deer", "dog", "horse", "monkey", "ship",
               "truck"]  # fmt: skip
    return ArrayDataset(_resize(x, size), y, classes=classes, name="stl10")


# ------------------------------------------------------------------------------- folders
FOLDER_LAYOUT = "{train,test}/<class name>/<image file> (e.g. ImageNet-10)"


def _read_rgb(path: Path, size: int) -> torch.Tensor:
    from PIL import Image

    with Image.open(path) as im:
        im = im.convert("RGB").resize((size, size), Image.Resampling.BILINEAR)
        return torch.from_numpy(np.asarray(im, dtype=np.uint8).copy()).permute(2, 0, 1)


def _load_imagefolder(*, split: str, n: int | None, size: int | None, root: object, seed: int):
    base = _need_root("imagefolder", root, FOLDER_LAYOUT)
    folder = base / split
    if not folder.is_dir():
        raise _missing("imagefolder", folder, FOLDER_LAYOUT)
    from torchvision.datasets.folder import IMG_EXTENSIONS

    classes = sorted(d.name for d in folder.iterdir() if d.is_dir())
    if not classes:
        raise _missing("imagefolder", folder / "<class name>", FOLDER_LAYOUT)
    files: list[tuple[Path, int]] = []
    for k, c in enumerate(classes):
        for f in sorted((folder / c).rglob("*")):
            if f.suffix.lower() in IMG_EXTENSIONS:
                files.append((f, k))
    if not files:
        raise _missing("imagefolder", folder / classes[0] / "<image>", FOLDER_LAYOUT)
    if n is not None:
        rng = np.random.default_rng(seed)
        files = [files[i] for i in sorted(rng.permutation(len(files))[:n])]
    side = size or 224
    x = torch.stack([_read_rgb(f, side) for f, _ in files])
    y = torch.tensor([k for _, k in files], dtype=torch.long)
    return ArrayDataset(x, y, classes=classes, name="imagefolder")


# ------------------------------------------------------------------------------- CUB
CUB_LAYOUT = (
    "CUB_200_2011/{images.txt, image_class_labels.txt, train_test_split.txt, "
    "bounding_boxes.txt, classes.txt, images/<class>/<file>.jpg} and "
    "segmentations/<class>/<file>.png"
)


def _read_table(path: Path) -> list[list[str]]:
    if not path.exists():
        raise _missing("cub200", path, CUB_LAYOUT)
    return [line.split() for line in path.read_text().splitlines() if line.strip()]


def _load_cub(*, split: str, n: int | None, size: int | None, root: object, seed: int):
    from PIL import Image

    base = _need_root("cub200", root, CUB_LAYOUT)
    cub = base / "CUB_200_2011"
    if not cub.is_dir():
        raise _missing("cub200", cub, CUB_LAYOUT)
    images = {r[0]: r[1] for r in _read_table(cub / "images.txt")}
    labels = {r[0]: int(r[1]) - 1 for r in _read_table(cub / "image_class_labels.txt")}
    is_train = {r[0]: r[1] == "1" for r in _read_table(cub / "train_test_split.txt")}
    boxes = {r[0]: [float(v) for v in r[1:5]] for r in _read_table(cub / "bounding_boxes.txt")}
    classes = [" ".join(r[1:]) for r in _read_table(cub / "classes.txt")]
    seg_dirs = [base / "segmentations", cub / "segmentations"]
    seg_root = next((d for d in seg_dirs if d.is_dir()), None)
    if seg_root is None:
        raise _missing("cub200", seg_dirs[0], CUB_LAYOUT)
    ids = [i for i in images if is_train[i] == (split == "train")]
    if n is not None:
        ids = ids[:n]
    side = size or 224
    xs, ms, bs = [], [], []
    for i in ids:
        rel = images[i]
        img_path = cub / "images" / rel
        seg_path = seg_root / Path(rel).with_suffix(".png")
        if not img_path.exists():
            raise _missing("cub200", img_path, CUB_LAYOUT)
        if not seg_path.exists():
            raise _missing("cub200", seg_path, CUB_LAYOUT)
        with Image.open(img_path) as im:
            w0, h0 = im.size
        xs.append(_read_rgb(img_path, side))
        with Image.open(seg_path) as sm:
            seg = sm.convert("L").resize((side, side), Image.Resampling.NEAREST)
        # CUB masks are soft annotator votes (0..255); a pixel is foreground at >= half.
        ms.append(torch.from_numpy((np.asarray(seg) >= 128).astype(np.uint8))[None])
        x, y, w, h = boxes[i]
        sx, sy = side / w0, side / h0
        bs.append([round(x * sx), round(y * sy), round((x + w) * sx), round((y + h) * sy)])
    return ArrayDataset(
        torch.stack(xs), torch.tensor([labels[i] for i in ids]), masks=torch.stack(ms),
        boxes=torch.tensor(bs, dtype=torch.long), classes=classes, name="cub200",
    )  # fmt: skip


def _info(name: str, desc: str, fn: Callable[..., ArrayDataset], sizes: str, masks: bool) -> None:
    DATASETS.register(name, help=desc)(DatasetInfo(name, desc, fn, False, sizes, masks))


_info("mnist", "MNIST from a local root (torchvision layout)", _load_mnist,
      "60,000 / 10,000; 1x28x28", False)  # fmt: skip
_info("cifar10", "CIFAR-10 from a local root (binary or python version)", _load_cifar10,
      "50,000 / 10,000; 3x32x32", False)  # fmt: skip
_info("cifar100", "CIFAR-100 (fine labels) from a local root", _load_cifar100,
      "50,000 / 10,000; 3x32x32", False)  # fmt: skip
_info("stl10", "STL-10 labelled splits from a local root", _load_stl10,
      "5,000 / 8,000; 3x96x96", False)  # fmt: skip
_info("imagefolder", "any {train,test}/<class>/<image> tree, e.g. ImageNet-10",
      _load_imagefolder, "as found; resized to --size (224)", False)  # fmt: skip
_info("cub200", "CUB-200-2011 birds with segmentation masks and boxes", _load_cub,
      "5,994 / 5,794; resized to --size (224)", True)  # fmt: skip
