"""The code in the docs runs: every python block of docs/attacks.md, in order, on a tiny model."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
import torch

DOCS = Path(__file__).resolve().parents[1] / "docs"


def _blocks(path: Path) -> list[str]:
    return re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)


def test_attacks_doc_examples_run() -> None:
    blocks = _blocks(DOCS / "attacks.md")
    assert len(blocks) >= 3
    code = "\n".join(blocks)
    # The docs load a trained checkpoint; a small untrained model exercises the same calls.
    code = code.replace(
        'foveal.models.load("runs/model")', 'foveal.models.create("shapes-cnn", width=4)'
    )
    code = code.replace('split="test", n=64)', 'split="test", n=8)')  # keep the test fast
    torch.manual_seed(0)
    namespace: dict[str, object] = {}
    try:
        exec(compile(code, str(DOCS / "attacks.md"), "exec"), namespace)
    except Exception as exc:  # pragma: no cover - the failure message is the point
        pytest.fail(f"docs/attacks.md example failed: {type(exc).__name__}: {exc}")
    x = namespace["x"]
    assert isinstance(x, torch.Tensor) and x.shape[0] == 8
