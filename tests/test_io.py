"""JSON-lines results survive a crash that cut the last line short."""

from __future__ import annotations

from pathlib import Path

import pytest

from foveal.io import append_jsonl, read_jsonl


def test_truncated_line_is_skipped_and_later_records_survive(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    append_jsonl(path, {"key": "a", "value": 1})
    with open(path, "a", encoding="utf-8") as fh:
        fh.write('{"key": "b", "val')  # a crash in the middle of a write
    assert read_jsonl(path) == [{"key": "a", "value": 1}]
    append_jsonl(path, {"key": "c", "value": 3})
    assert read_jsonl(path) == [{"key": "a", "value": 1}, {"key": "c", "value": 3}]


def test_corrupt_complete_line_is_an_error(tmp_path: Path) -> None:
    path = tmp_path / "results.jsonl"
    path.write_text('{"key": 1}\n{"key": oops}\n{"key": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match="line 2 is not valid JSON"):
        read_jsonl(path)
