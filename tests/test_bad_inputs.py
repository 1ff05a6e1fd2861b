"""The bad-input catalogue: what a hostile or careless user may pass, and the error it gets.

Each case is one row: a name, a call (API or CLI) and the error expected — its type and a
pattern that must name the argument (or file and key) and the observed value. A CLI case must
exit non-zero with one line on stderr and no traceback.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from safetensors.torch import load_file, save_file

import foveal
from foveal.models import CheckpointError


@dataclass(frozen=True)
class Case:
    name: str
    call: Callable[[Path], Any]
    error: type[BaseException]
    match: str

    def __repr__(self) -> str:
        return self.name


# ------------------------------------------------------------------------------ checkpoints
def _checkpoint(tmp: Path, **changes: Any) -> Path:
    """A tiny checkpoint whose stored description has ``changes`` applied (None deletes)."""
    model = foveal.models.create("shapes-cnn", num_classes=4, width=4)
    meta = {
        "arch": "shapes-cnn",
        "arch_kwargs": {"width": 4},
        "num_classes": 4,
        "in_channels": 3,
        "input_shape": [3, 16, 16],
        "mean": [0.5, 0.5, 0.5],
        "std": [0.25, 0.25, 0.25],
    }
    out = tmp / "ck"
    foveal.models.save(model, out, meta)
    weights = out / "model.safetensors"
    stored = json.loads((out / "model.json").read_text())
    for key, value in changes.items():
        if value is None:
            stored.pop(key, None)
        else:
            stored[key] = value
    tensors = load_file(str(weights))
    save_file(tensors, str(weights), metadata={"foveal": json.dumps(stored)})
    return out


def _load(**changes: Any) -> Callable[[Path], Any]:
    return lambda tmp: foveal.models.load(_checkpoint(tmp, **changes))


def _ck(name: str, match: str, **changes: Any) -> Case:
    return Case(name, _load(**changes), CheckpointError, match)


CHECKPOINT_CASES = [
    _ck("meta-num-classes-text", r"'num_classes'.*'abc'", num_classes="abc"),
    _ck("meta-num-classes-one", r"'num_classes'.*1", num_classes=1),
    _ck("meta-arch-kwargs-text", r"'arch_kwargs'.*'width=8'", arch_kwargs="width=8"),
    _ck("meta-width-huge", r"'arch_kwargs.*width.*200000", arch_kwargs={"width": 200_000}),
    _ck("meta-width-mismatch", r"do not fit.*shape", arch_kwargs={"width": 8}),
    _ck("meta-arch-unknown", r"'arch'.*resnet9000", arch="resnet9000"),
    _ck("meta-arch-missing", r"lacks the architecture", arch=None),
    _ck("meta-in-channels-huge", r"'in_channels'.*1000000", in_channels=10**6),
    _ck("meta-mean-length", r"mean.*one value per input channel", mean=[0.5]),
    _ck("meta-std-zero", r"std.*> 0", std=[0.0, 1.0, 1.0]),
    _ck("meta-input-shape", r"'input_shape'", input_shape=[3, 16]),
    _ck("meta-not-object", r"."),  # replaced below
]


def _not_an_object(tmp: Path) -> Any:
    out = _checkpoint(tmp)
    weights = out / "model.safetensors"
    save_file(load_file(str(weights)), str(weights), metadata={"foveal": "[1, 2]"})
    return foveal.models.load(out)


CHECKPOINT_CASES[-1] = Case(
    "meta-not-object", _not_an_object, CheckpointError, r"lacks the architecture|JSON object"
)

CASES = CHECKPOINT_CASES


@pytest.mark.parametrize("case", CASES, ids=repr)
def test_bad_input_gets_a_clear_error(case: Case, tmp_path: Path) -> None:
    with pytest.raises(case.error, match=case.match):
        case.call(tmp_path)


def test_huge_checkpoint_description_is_refused_without_allocating(tmp_path: Path) -> None:
    import resource

    before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    with pytest.raises(CheckpointError):
        foveal.models.load(_checkpoint(tmp_path, arch_kwargs={"width": 60_000}))
    grown_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss - before
    assert grown_kb < 200_000  # a real width-60000 model would need tens of GB


def test_catalogue_is_listed() -> None:
    names = [c.name for c in CASES]
    assert len(names) == len(set(names))
    assert all(c.match for c in CASES)
