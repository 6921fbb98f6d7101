"""The topology package has no import cycle (no root).

The import graph is read from the source with `ast`, not from what Python happened to
import: every `import`/`from ... import` in a module counts, at module level or inside a
function (a lazy import only hides a cycle until that function runs), except those under
`if TYPE_CHECKING:` (never executed). `from a.b import c` is an edge to the module `a.b.c`
when that is a module of ours, else to `a.b`. The graph covers the whole `nettrace`
package, so a cycle that leaves topology and comes back (topology -> diagnosis -> topology)
is found too. Every topology module is also imported for real.
"""

from __future__ import annotations

import ast
import importlib
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parent.parent
PKG = ROOT / "nettrace"


def _modules() -> dict[str, pathlib.Path]:
    mods = {}
    for path in PKG.rglob("*.py"):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        mods[".".join(parts)] = path
    return mods


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    """ids of the import nodes under `if TYPE_CHECKING:`."""
    skip = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and (
                (isinstance(node.test, ast.Name) and node.test.id == "TYPE_CHECKING") or
                (isinstance(node.test, ast.Attribute) and node.test.attr == "TYPE_CHECKING")):
            for sub in node.body:
                skip.update(id(n) for n in ast.walk(sub))
    return skip


def _resolve(module: str, is_pkg: bool, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = module.split(".") if is_pkg else module.split(".")[:-1]
    base = base[:len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def import_graph() -> dict[str, set[str]]:
    mods = _modules()
    graph: dict[str, set[str]] = {m: set() for m in mods}
    for mod, path in mods.items():
        tree = ast.parse(path.read_text(), str(path))
        skip = _type_checking_nodes(tree)
        is_pkg = path.name == "__init__.py"
        for node in ast.walk(tree):
            if id(node) in skip:
                continue
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = _resolve(mod, is_pkg, node)
                for a in node.names:
                    sub = f"{base}.{a.name}"
                    targets.append(sub if sub in mods else base)
            for target in targets:
                # `import a.b.c` names a.b.c; the closest module of ours that it names
                while target and target not in mods:
                    target = target.rpartition(".")[0]
                if target and target != mod:
                    graph[mod].add(target)
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components with more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on: set[str] = set()
    out: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on.add(v)
        for w in sorted(graph[v]):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return out


TOPOLOGY = sorted(m for m in _modules() if m == "nettrace.topology" or
                  m.startswith("nettrace.topology."))


def test_cycle_finder_sees_a_lazy_import_cycle():
    """The checker itself: a cycle closed by an import inside a function is found."""
    graph = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(graph) == [["a", "b", "c"]]
    assert cycles({"a": {"b"}, "b": set()}) == []


def test_graph_reads_lazy_relative_and_type_checking_imports(tmp_path):
    src = ("from typing import TYPE_CHECKING\n"
           "import nettrace.topology.netns\n"
           "if TYPE_CHECKING:\n    from nettrace.topology.model import Lab\n"
           "def f():\n    from nettrace.topology.firewall import index, DNS_IP\n")
    tree = ast.parse(src)
    skip = _type_checking_nodes(tree)
    assert sum(1 for n in ast.walk(tree) if id(n) in skip and
               isinstance(n, ast.ImportFrom)) == 1
    node = ast.parse("from .base import Driver").body[0]
    assert _resolve("nettrace.topology.drivers", True, node) == "nettrace.topology.drivers.base"
    assert _resolve("nettrace.topology.drivers.bridge", False, node) == \
        "nettrace.topology.drivers.base"
    graph = import_graph()
    # a lazy (function-level) import is an edge: builder.up() imports the driver registry
    assert "nettrace.topology.drivers" in graph["nettrace.topology.builder"]
    # `from pkg import submodule` is an edge to the submodule, `from pkg import name` to pkg
    assert "nettrace.topology.firewall.index" in graph["nettrace.topology.firewall.layouts"]
    assert "nettrace.topology.firewall" in graph["nettrace.topology.dns"]


@pytest.mark.parametrize("module", TOPOLOGY)
def test_every_topology_module_imports(module):
    assert importlib.import_module(module).__name__ == module


def test_topology_package_has_no_import_cycle():
    assert len(TOPOLOGY) > 20
    found = [c for c in cycles(import_graph()) if any(m in TOPOLOGY for m in c)]
    assert found == [], "import cycles through the topology package:\n" + "\n".join(
        " <-> ".join(c) for c in found)


def test_drivers_never_import_the_builder():
    graph = import_graph()
    drivers = [m for m in graph if m.startswith("nettrace.topology.drivers")]
    assert len(drivers) >= 6
    for mod in drivers:
        assert "nettrace.topology.builder" not in graph[mod], mod


def test_registry_drivers_follow_the_protocols():
    """What the builder is handed by default: every driver name the lab format accepts has a
    Driver, and containers' namespaces a SandboxWiring (checked structurally)."""
    from nettrace.topology.drivers import DRIVERS, SANDBOXES
    from nettrace.topology.drivers.base import Driver, SandboxWiring
    from nettrace.topology.spec import DRIVERS as DRIVER_NAMES
    assert set(DRIVERS) == set(DRIVER_NAMES)
    for name, driver in DRIVERS.items():
        assert isinstance(driver, Driver), name
        assert not isinstance(driver, SandboxWiring), name
    assert isinstance(SANDBOXES, SandboxWiring)
    assert not isinstance(SANDBOXES, Driver)


if __name__ == "__main__":       # print every import cycle of the package (a debugging aid)
    for comp in cycles(import_graph()):
        print(" <-> ".join(comp))
