"""The package's shape: the library never imports the application layer, and no import cycles.

The import graph is read from the source (every ``import`` and ``from ... import``, at any
depth, including imports inside functions), one node per module (a package's ``__init__`` is
the package's node). Importing a submodule implicitly imports its parent package; that
implicit edge is not counted (it is how Python packages work, not a dependency).
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1] / "foveal"


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT.parent).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    return {_module_name(p): p for p in sorted(ROOT.rglob("*.py"))}


def _resolve(target: str, known: dict[str, Path]) -> str | None:
    """The known module ``target`` names (itself, or the longest known prefix)."""
    while target and target not in known:
        target = target.rpartition(".")[0]
    return target or None


def import_graph() -> dict[str, set[str]]:
    """Module -> the foveal modules it imports (explicitly)."""
    known = _modules()
    graph: dict[str, set[str]] = {name: set() for name in known}
    for name, path in known.items():
        package = name if path.name == "__init__.py" else name.rpartition(".")[0]
        tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
        for node in ast.walk(tree):
            targets: list[str] = []
            if isinstance(node, ast.Import):
                targets = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    anchor = package.split(".")
                    anchor = anchor[: len(anchor) - (node.level - 1)]
                    base = ".".join([*anchor, base] if base else anchor)
                # ``from pkg import sub`` imports the submodule when there is one.
                targets = [
                    f"{base}.{alias.name}" if f"{base}.{alias.name}" in known else base
                    for alias in node.names
                ]
            for target in targets:
                if not target.startswith("foveal"):
                    continue
                resolved = _resolve(target, known)
                if resolved is not None and resolved != name:
                    graph[name].add(resolved)
    return graph


def find_cycle(graph: dict[str, set[str]]) -> list[str] | None:
    """One import cycle of ``graph`` as a list of modules (first == last), or None."""
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(node: str) -> list[str] | None:
        state[node] = 1
        stack.append(node)
        for nxt in sorted(graph[node]):
            if state.get(nxt) == 1:
                return [*stack[stack.index(nxt) :], nxt]
            if nxt not in state:
                found = visit(nxt)
                if found:
                    return found
        stack.pop()
        state[node] = 2
        return None

    for node in sorted(graph):
        if node not in state:
            found = visit(node)
            if found:
                return found
    return None


def test_the_graph_reader_sees_cycles_and_layers() -> None:
    graph = import_graph()
    # Known edges of the layering, so the reader cannot silently see nothing.
    assert "foveal.threats.base" in graph["foveal.threats.sets"]
    assert "foveal.attacks.base" in graph["foveal.attacks.pgd"]
    assert "foveal.app.cli._app" in graph["foveal.app.cli.attack"]
    assert find_cycle({"a": {"b"}, "b": {"c"}, "c": {"a"}}) == ["a", "b", "c", "a"]
    assert find_cycle({"a": {"b"}, "b": set()}) is None


def test_no_import_cycle_in_the_package() -> None:
    cycle = find_cycle(import_graph())
    assert cycle is None, "import cycle: " + " -> ".join(cycle or [])


def test_the_library_never_imports_the_application_layer() -> None:
    graph = import_graph()
    offenders = {
        module: sorted(t for t in targets if t.startswith("foveal.app"))
        for module, targets in graph.items()
        if not module.startswith("foveal.app") and module != "foveal.__main__"
    }
    assert {m: t for m, t in offenders.items() if t} == {}


def test_import_foveal_loads_the_core_only() -> None:
    code = (
        "import sys, foveal; "
        "print(sorted(m for m in sys.modules if m.startswith('foveal.app'))); "
        "print(sorted(m for m in sys.modules if m.startswith('foveal.') and m.count('.') == 1))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert out[0] == "[]"
    loaded = set(ast.literal_eval(out[1]))
    assert {"foveal.attacks", "foveal.threats", "foveal.data", "foveal.models"} <= loaded
    assert "foveal.app" not in loaded
