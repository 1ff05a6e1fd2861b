"""Every docstring example in the package runs and prints what it says (doctest)."""

from __future__ import annotations

import doctest
import importlib
import pkgutil

import pytest
import torch

import foveal

#: Modules that run code when imported rather than define it.
_SKIP = {"foveal.__main__"}


def _modules() -> list[str]:
    names = ["foveal"]
    for info in pkgutil.walk_packages(foveal.__path__, prefix="foveal."):
        if info.name not in _SKIP:
            names.append(info.name)
    return sorted(names)


def _examples() -> list[tuple[str, str]]:
    finder = doctest.DocTestFinder(exclude_empty=True)
    found = []
    for name in _modules():
        module = importlib.import_module(name)
        for test in finder.find(module, name):
            if test.examples and test.name.startswith(name):
                found.append((name, test.name))
    return found


EXAMPLES = _examples()


def test_the_package_has_docstring_examples() -> None:
    modules = {m for m, _ in EXAMPLES}
    assert len(EXAMPLES) >= 60
    for required in ("foveal.attacks.pgd", "foveal.threats.sets", "foveal.batching"):
        assert required in modules


@pytest.mark.parametrize(("module", "name"), EXAMPLES, ids=[n for _, n in EXAMPLES])
def test_docstring_example(module: str, name: str, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)  # examples that write files write them here
    torch.manual_seed(0)
    finder = doctest.DocTestFinder(exclude_empty=True)
    (test,) = [t for t in finder.find(importlib.import_module(module), module) if t.name == name]
    runner = doctest.DocTestRunner(optionflags=doctest.ELLIPSIS | doctest.NORMALIZE_WHITESPACE)
    threads = torch.get_num_threads()
    try:
        runner.run(test, out=lambda text: print(text, end=""))
    finally:
        torch.set_num_threads(threads)
    result = runner.summarize(verbose=False)
    assert result.failed == 0, f"{result.failed} of {result.attempted} examples failed in {name}"
