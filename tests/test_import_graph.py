"""The repository's import graph: no cycles, and dependencies that point one way.

Every first-party module (each ``.py`` file under ``attiqa/``, ``isp/``, ``envs/``, ``rl/`` and
``experiments/``) is parsed with :mod:`ast`, nothing is imported. An edge ``a -> b`` is any
``import`` statement in ``a`` that names first-party module ``b``, **at module level and inside
functions alike** (a lazy import still couples the two modules: the issue's three cycles were
all function-level); only imports under ``if TYPE_CHECKING:`` are left out. ``import x.y`` and
``from x import y`` name ``x.y`` when that is a module, else ``x``; relative imports are resolved
against the importing package. Importing ``x.y`` also runs ``x/__init__.py``, but that implicit
step is not an edge (as in import-linter), so a package ``__init__`` that re-exports from its
submodules is not a cycle by itself.

Checks:

* no cycle anywhere (strongly connected components of more than one module);
* the package rule: ``experiments, rl -> envs -> isp, attiqa``; a module may import its own
  package and packages of lower layers only, and ``isp`` and ``attiqa`` never import each other;
* the scoring API (:mod:`attiqa.api`) imports no training code at module level (also checked by
  importing it in a fresh interpreter), and inside functions only the starter's
  ``ensure_starter`` (building the default model on first use).
"""
from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("rlisp_common", "attiqa", "isp", "envs", "rl", "experiments")
# higher layers may import lower ones (and themselves), never the reverse; equal layers never each other
LAYER = {"experiments": 3, "rl": 2, "envs": 1, "isp": 0, "attiqa": 0, "rlisp_common": -1}


def _module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts = parts[:-1]
    return ".".join(parts)


def _modules() -> dict[str, Path]:
    out = {}
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            if "__pycache__" not in path.parts:
                out[_module_name(path)] = path
    return out


def _is_type_checking(test: ast.expr) -> bool:
    return (isinstance(test, ast.Name) and test.id == "TYPE_CHECKING") or \
        (isinstance(test, ast.Attribute) and test.attr == "TYPE_CHECKING")


def _imports(tree: ast.Module):
    """Yields ``(node, at_module_level)`` for every import statement (not under ``TYPE_CHECKING``)."""

    def walk(node, in_function: bool):
        for child in ast.iter_child_nodes(node):
            if isinstance(child, ast.If) and _is_type_checking(child.test):
                for sub in child.orelse:
                    yield from walk(ast.Module(body=[sub], type_ignores=[]), in_function)
                continue
            if isinstance(child, (ast.Import, ast.ImportFrom)):
                yield child, not in_function
            inner = in_function or isinstance(child, (ast.FunctionDef, ast.AsyncFunctionDef, ast.Lambda))
            yield from walk(child, inner)

    yield from walk(tree, False)


def _resolve(name: str, modules: dict) -> str | None:
    """The longest prefix of ``name`` that is a first-party module."""
    parts = name.split(".")
    while parts:
        cand = ".".join(parts)
        if cand in modules:
            return cand
        parts.pop()
    return None


def import_graph(modules: dict[str, Path] | None = None) -> dict[str, dict[str, bool]]:
    """``{module: {imported module: at_module_level}}`` over first-party modules."""
    modules = modules or _modules()
    graph: dict[str, dict[str, bool]] = {}
    for mod, path in modules.items():
        edges: dict[str, bool] = {}
        is_pkg = path.name == "__init__.py"
        for node, top in _imports(ast.parse(path.read_text(encoding="utf-8"), str(path))):
            targets = []
            if isinstance(node, ast.Import):
                targets = [a.name for a in node.names]
            else:
                base = node.module or ""
                if node.level:
                    pkg = mod.split(".") if is_pkg else mod.split(".")[:-1]
                    pkg = pkg[:len(pkg) - (node.level - 1)]
                    base = ".".join(pkg + ([base] if base else []))
                targets = [f"{base}.{a.name}" if base else a.name for a in node.names]
            for t in targets:
                dst = _resolve(t, modules)
                if dst is not None and dst != mod:
                    edges[dst] = edges.get(dst, False) or top
        graph[mod] = edges
    return graph


def _cycles(graph: dict[str, dict[str, bool]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan, iterative)."""
    index, low, on_stack, stack, out, counter = {}, {}, set(), [], [], [0]
    for root in graph:
        if root in index:
            continue
        work = [(root, iter(sorted(graph[root])))]
        index[root] = low[root] = counter[0]
        counter[0] += 1
        stack.append(root)
        on_stack.add(root)
        while work:
            node, it = work[-1]
            nxt = next(it, None)
            if nxt is not None:
                if nxt not in index:
                    index[nxt] = low[nxt] = counter[0]
                    counter[0] += 1
                    stack.append(nxt)
                    on_stack.add(nxt)
                    work.append((nxt, iter(sorted(graph.get(nxt, {})))))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            work.pop()
            if work:
                low[work[-1][0]] = min(low[work[-1][0]], low[node])
            if low[node] == index[node]:
                comp = []
                while True:
                    m = stack.pop()
                    on_stack.discard(m)
                    comp.append(m)
                    if m == node:
                        break
                if len(comp) > 1:
                    out.append(sorted(comp))
    return out


def _path_in(graph, comp: list[str]) -> str:
    """One concrete cycle through a component, for the failure message."""
    start, members = comp[0], set(comp)
    prev, frontier = {start: None}, [start]
    while frontier:
        node = frontier.pop(0)
        for nxt in sorted(graph[node]):
            if nxt == start:
                chain = [node]
                while prev[chain[-1]] is not None:
                    chain.append(prev[chain[-1]])
                return " -> ".join([*reversed(chain), start])
            if nxt in members and nxt not in prev:
                prev[nxt] = node
                frontier.append(nxt)
    return ", ".join(comp)


@pytest.fixture(scope="module")
def graph():
    return import_graph()


def test_the_walker_sees_lazy_and_relative_imports(tmp_path):
    """The parser itself: function-level, relative and TYPE_CHECKING imports, and a planted cycle."""
    pkg = tmp_path / "attiqa"
    (pkg / "sub").mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "sub" / "__init__.py").write_text("from .b import x\n")
    (pkg / "sub" / "b.py").write_text("def f():\n    from attiqa.c import y\nx = 1\n")
    (pkg / "c.py").write_text("from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    import attiqa.d\n"
                              "import attiqa.sub.b as bb\ny = 2\n")
    (pkg / "d.py").write_text("")
    modules = {_module_name_at(tmp_path, p): p for p in sorted(pkg.rglob("*.py"))}
    g = import_graph(modules)
    assert g["attiqa.sub"] == {"attiqa.sub.b": True}
    assert g["attiqa.sub.b"] == {"attiqa.c": False}  # found inside the function, marked as lazy
    assert g["attiqa.c"] == {"attiqa.sub.b": True}  # the TYPE_CHECKING import is left out
    assert _cycles(g) == [["attiqa.c", "attiqa.sub.b"]]


def _module_name_at(root: Path, path: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def test_graph_covers_every_package(graph):
    assert {m.split(".")[0] for m in graph} == set(PACKAGES)
    assert "attiqa.training.starter.build" in graph["attiqa.api"]  # a function-level edge is seen


def test_no_import_cycles(graph):
    cycles = _cycles(graph)
    assert not cycles, "import cycles:\n" + "\n".join(_path_in(graph, c) for c in cycles)


def test_dependencies_point_one_way(graph):
    bad = []
    for src, edges in graph.items():
        a = src.split(".")[0]
        for dst in edges:
            b = dst.split(".")[0]
            if a != b and LAYER[a] <= LAYER[b]:
                bad.append(f"{src} -> {dst}")
    assert not bad, "imports against `experiments, rl -> envs -> isp, attiqa` (isp and attiqa never import " \
                    "each other):\n" + "\n".join(bad)


def _closure(graph, start: str, module_level_only: bool) -> set[str]:
    seen, todo = set(), [start]
    while todo:
        m = todo.pop()
        for dst, top in graph.get(m, {}).items():
            if (top or not module_level_only) and dst not in seen:
                seen.add(dst)
                todo.append(dst)
    return seen


def test_scoring_api_imports_no_training_code(graph):
    eager = _closure(graph, "attiqa.api", module_level_only=True)
    assert not [m for m in eager if m.startswith("attiqa.training")], sorted(eager)
    lazy = {m for m in graph["attiqa.api"] if m.startswith("attiqa.training")}
    assert lazy == {"attiqa.training.starter.build"}  # only to build the default model on first use
    code = ("import sys, attiqa, attiqa.api; from attiqa import create_metric; "
            "print(sorted(m for m in sys.modules if m.startswith('attiqa.training')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == "[]", out.stdout
