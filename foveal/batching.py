"""One way to go over data in batches: iterate, move to a device, apply, and put the parts together.

Every loop over a dataset in foveal (the command line, the evaluation suite, the reproductions,
the detectors, training's accuracy) goes through :func:`map_batches` (or :func:`iter_batches`
when it keeps no output), so batch boundaries, device moves and the concatenation of results are
written once.

A *batch* is a dict of tensors with the keys of :class:`foveal.data.ArrayDataset` items:
``"image"`` (N,C,H,W) in [0,1], ``"label"`` (N,) and, where the data have them, ``"mask"``
(N,1,H,W) and ``"box"`` (N,4); ``"index"`` holds each image's position in the data.

Data may be:

- a dataset with a ``batch(indices)`` method (:class:`~foveal.data.ArrayDataset`);
- a mapping of tensors with a common first dimension (``{"image": x, "label": y}``);
- a sequence ``(images, labels[, masks])`` of tensors;
- any ``torch.utils.data.Dataset`` whose items are dicts with those keys or
  ``(image, label[, mask])`` tuples, read through a ``DataLoader`` (``workers`` processes);
- an iterable of ready batches (e.g. a ``DataLoader``), used as it comes.

Written here: the data forms above are foveal's own conventions; ``DataLoader`` does the
reading.

Example:
    >>> import torch
    >>> x, y = torch.rand(5, 3, 4, 4), torch.arange(5)
    >>> out = map_batches(lambda b: b["image"].mean((1, 2, 3)), (x, y), batch_size=2)
    >>> out.shape
    torch.Size([5])
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import torch
from torch import nn

__all__ = ["Batch", "concat", "iter_batches", "map_batches", "predict"]

#: One batch: ``image``, ``label`` and optionally ``mask``, ``box``, ``index`` tensors.
Batch = dict[str, torch.Tensor]

T = TypeVar("T")

_KEYS = ("image", "label", "mask")


def _check_batch_size(batch_size: object) -> int:
    if isinstance(batch_size, bool) or not isinstance(batch_size, int) or batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1; got {batch_size!r}")
    return batch_size


def _as_mapping(data: Any) -> Mapping[str, torch.Tensor] | None:
    """Tensors of ``data`` when it is a mapping or a (images, labels[, masks]) sequence."""
    if isinstance(data, Mapping):
        tensors = {k: v for k, v in data.items() if isinstance(v, torch.Tensor)}
        if "image" not in tensors:
            raise ValueError(f"data given as a mapping needs an 'image' tensor; got {sorted(data)}")
    elif (
        isinstance(data, (tuple, list))
        and 1 <= len(data) <= 3
        and all(isinstance(t, torch.Tensor) for t in data)
    ):
        tensors = dict(zip(_KEYS, data, strict=False))
    else:
        return None
    n = tensors["image"].shape[0]
    for key, value in tensors.items():
        if value.shape[0] != n:
            raise ValueError(
                f"data[{key!r}] has {value.shape[0]} rows but data['image'] has {n}; every "
                "tensor must have one row per image"
            )
    return tensors


def _item_batch(items: list[Any]) -> Batch:
    """Collate dataset items (dicts or (image, label[, mask]) tuples) into a batch."""
    first = items[0]
    if isinstance(first, Mapping):
        return {k: torch.stack([torch.as_tensor(it[k]) for it in items]) for k in first}
    if isinstance(first, (tuple, list)):
        columns = list(zip(*items, strict=True))
        return {
            k: torch.stack([torch.as_tensor(v) for v in col])
            for k, col in zip(_KEYS, columns, strict=False)
        }
    raise TypeError(
        f"dataset items must be dicts or (image, label[, mask]) tuples; got {type(first).__name__}"
    )


def _to(batch: Mapping[str, Any], device: torch.device | str | None) -> Batch:
    out: Batch = {}
    for k, v in batch.items():
        if not isinstance(v, torch.Tensor):
            v = torch.as_tensor(v)
        out[k] = v if device is None else v.to(device, non_blocking=True)
    return out


def iter_batches(
    data: Any,
    batch_size: int = 256,
    *,
    device: torch.device | str | None = None,
    stop: int | None = None,
    workers: int = 0,
) -> Iterator[Batch]:
    """Batches of ``data`` (see the module docstring for the accepted forms), in order.

    Args:
        data: the data.
        batch_size: images per batch (the last one may be smaller).
        device: move every tensor of a batch there (None: leave where it is).
        stop: use only the first ``stop`` images.
        workers: ``DataLoader`` worker processes for a plain ``Dataset``.

    Yields:
        dicts of tensors with an ``"index"`` entry (position of each image in ``data``).
    """
    size = _check_batch_size(batch_size)
    tensors = _as_mapping(data)
    if tensors is not None or hasattr(data, "batch"):
        n = len(tensors["image"]) if tensors is not None else len(data)
        n = n if stop is None else min(n, int(stop))
        for lo in range(0, n, size):
            hi = min(lo + size, n)
            if tensors is not None:
                raw: Mapping[str, Any] = {k: v[lo:hi] for k, v in tensors.items()}
            else:
                raw = data.batch(slice(lo, hi))
            batch = _to(raw, device)
            batch.setdefault("index", torch.arange(lo, hi, device=batch["image"].device))
            yield batch
        return
    if isinstance(data, torch.utils.data.Dataset) and hasattr(data, "__getitem__"):
        n = len(data)  # type: ignore[arg-type]
        n = n if stop is None else min(n, int(stop))
        subset = torch.utils.data.Subset(data, range(n)) if n < len(data) else data  # type: ignore[arg-type]
        loader: Iterable[Any] = torch.utils.data.DataLoader(
            subset, batch_size=size, shuffle=False, num_workers=workers, collate_fn=_item_batch
        )
    elif isinstance(data, Iterable):
        loader = data
    else:
        raise TypeError(
            "data must be a dataset with batch(), a torch Dataset, a mapping or tuple of tensors, "
            f"or an iterable of batches; got {type(data).__name__}"
        )
    seen = 0
    for raw_batch in loader:
        if isinstance(raw_batch, Mapping):
            batch = _to(raw_batch, device)
        elif isinstance(raw_batch, (tuple, list)):
            batch = _to(dict(zip(_KEYS, raw_batch, strict=False)), device)
        else:
            raise TypeError(
                f"batches must be dicts or (images, labels[, masks]) tuples; got "
                f"{type(raw_batch).__name__}"
            )
        k = batch["image"].shape[0]
        if stop is not None and seen + k > stop:
            batch = {key: v[: stop - seen] for key, v in batch.items()}
            k = stop - seen
        batch.setdefault("index", torch.arange(seen, seen + k, device=batch["image"].device))
        seen += k
        yield batch
        if stop is not None and seen >= stop:
            return


def concat(parts: Sequence[Any]) -> Any:
    """Join per-batch outputs along their first dimension.

    Tensors are concatenated; dicts, tuples, lists and dataclasses are joined field by field;
    ``None`` stays ``None``; other values (numbers, strings) must agree and are kept once.
    """
    if not parts:
        return None
    first = parts[0]
    if isinstance(first, torch.Tensor):
        return torch.cat([p.reshape(p.shape or (1,)) if p.ndim == 0 else p for p in parts])
    if first is None:
        return None
    if isinstance(first, Mapping):
        return {k: concat([p[k] for p in parts]) for k in first}
    if dataclasses.is_dataclass(first) and not isinstance(first, type):
        fields = {
            f.name: concat([getattr(p, f.name) for p in parts]) for f in dataclasses.fields(first)
        }
        return type(first)(**fields)
    if isinstance(first, (tuple, list)):
        return type(first)(concat([p[i] for p in parts]) for i in range(len(first)))
    return first


def map_batches(
    fn: Callable[[Batch], T],
    data: Any,
    *,
    batch_size: int = 256,
    device: torch.device | str | None = None,
    stop: int | None = None,
    workers: int = 0,
    progress: bool = False,
    desc: str | None = None,
    on_first: Callable[[Batch, T], None] | None = None,
    keep: bool = True,
) -> Any:
    """``fn(batch)`` on every batch of ``data``, outputs joined with :func:`concat`.

    Args:
        fn: called with each batch (a dict of tensors, see the module docstring).
        data, batch_size, device, stop, workers: as :func:`iter_batches`.
        progress: show a progress bar (tqdm), ``desc`` its label.
        on_first: called once with the first batch and its output (e.g. to save example
            images without keeping every batch).
        keep: join and return the outputs (False: return None, keep nothing).

    Returns:
        The joined outputs: a tensor, a dict / tuple / dataclass of tensors, ... (None when
        ``keep`` is False or the data are empty).
    """
    batches: Iterable[Batch] = iter_batches(
        data, batch_size, device=device, stop=stop, workers=workers
    )
    bar = None
    if progress:
        from tqdm.auto import tqdm

        total = None
        try:
            n = len(data) if not isinstance(data, (Mapping, tuple, list)) else None
            if n is not None:
                n = n if stop is None else min(n, stop)
                total = -(-n // batch_size)
        except TypeError:
            total = None
        bar = tqdm(batches, total=total, desc=desc, unit="batch", dynamic_ncols=True)
        batches = bar
    outputs: list[T] = []
    try:
        for i, batch in enumerate(batches):
            out = fn(batch)
            if i == 0 and on_first is not None:
                on_first(batch, out)
            if keep:
                outputs.append(out)
    finally:
        if bar is not None:
            bar.close()
    return concat(outputs) if keep else None


def predict(
    model: nn.Module,
    data: Any,
    *,
    batch_size: int = 512,
    device: torch.device | str | None = None,
    stop: int | None = None,
) -> torch.Tensor:
    """Predicted classes (N,) of ``model`` in eval mode (restored afterwards), without gradients.

    ``data`` may also be a bare image tensor (N,C,H,W).
    """
    from foveal._modes import eval_mode

    if isinstance(data, torch.Tensor):
        data = {"image": data}
    if device is None:
        param = next(iter(model.parameters()), None)
        device = None if param is None else param.device

    def step(batch: Batch) -> torch.Tensor:
        return model(batch["image"]).argmax(1)

    with eval_mode(model), torch.no_grad():
        out = map_batches(step, data, batch_size=batch_size, device=device, stop=stop)
    return out if out is not None else torch.zeros(0, dtype=torch.long)
