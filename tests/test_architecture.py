"""The package's import graph: no cycle, and no import from a lower layer to a higher one.

Layers, from the bottom: core <- io <- net <- workflows <- cli.  ``config``,
``errors``, ``_lazy``, ``_gc``, ``_imports`` and the package itself (``rtforge/__init__``: the
version and the errors) are the base every layer may import; they import
only each other, but for the geometry types the package re-exports lazily
from core.  ``__main__`` is the top.  Every module under ``src/rtforge`` is parsed, and every import
counts: at module level, inside functions, under ``TYPE_CHECKING``, relative
ones, the names a package exports lazily (``_lazy.lazy_exports``, resolved
to the module that defines them) and strings that name one of our modules
(the forkserver's preload, a logger's name).
"""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from pathlib import Path

import rtforge

SRC = Path(rtforge.__file__).resolve().parent

#: Rank of each layer: a module may import modules of its own rank or below.
LAYERS = {"config": 0, "errors": 0, "_lazy": 0, "_gc": 0, "_imports": 0, "core": 1, "io": 2,
          "net": 3, "workflows": 4, "cli": 5, "__main__": 6}
#: A string that may name one of our modules (or a name in one).
_DOTTED = re.compile(r"^rtforge(\.[A-Za-z_]\w*)+$")


def module_names(root: Path, package: str) -> dict[str, Path]:
    """Every module under ``root`` (the folder of ``package``) by dotted name."""
    names = {}
    for path in sorted(root.rglob("*.py")):
        parts = [package, *path.relative_to(root).with_suffix("").parts]
        if parts[-1] == "__init__":
            parts.pop()
        names[".".join(parts)] = path
    return names


def _lazy_table(tree: ast.Module) -> dict[str, str]:
    """Name -> submodule of a package's ``lazy_exports(__name__, TABLE, globals())`` call."""
    dicts = {t.id: node.value for node in tree.body if isinstance(node, (ast.Assign, ast.AnnAssign))
             for t in (node.targets if isinstance(node, ast.Assign) else [node.target])
             if isinstance(t, ast.Name) and isinstance(node.value, ast.Dict)}
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and getattr(node.func, "id", "") == "lazy_exports":
            table = node.args[1]
            table = dicts.get(table.id, table) if isinstance(table, ast.Name) else table
            return {k.value: v.value for k, v in zip(table.keys, table.values, strict=True)}
    return {}


def _imports(tree: ast.Module, name: str, is_package: bool) -> Iterator[tuple[str, str | None]]:
    """(module, imported name or None) for every import, and (string, "") for strings."""
    docstrings = {id(node.body[0].value) for node in ast.walk(tree)
                  if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef,
                                       ast.AsyncFunctionDef))
                  and node.body and isinstance(node.body[0], ast.Expr)
                  and isinstance(node.body[0].value, ast.Constant)}
    package = name if is_package else name.rpartition(".")[0]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            for alias in node.names:
                yield alias.name, None
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")
                anchor = anchor[:len(anchor) - (node.level - 1)]
                base = ".".join(anchor + ([base] if base else []))
            for alias in node.names:
                yield base, alias.name
        elif (isinstance(node, ast.Constant) and isinstance(node.value, str)
              and id(node) not in docstrings and _DOTTED.match(node.value)):
            yield node.value, ""
    for submodule in _lazy_table(tree).values():
        yield f"{package}.{submodule}", None


def import_graph(root: Path, package: str) -> dict[str, set[str]]:
    """Module -> the modules of ``package`` it imports (names resolved to their modules)."""
    paths = module_names(root, package)
    trees = {name: ast.parse(path.read_text(encoding="utf-8")) for name, path in paths.items()}
    lazy = {name: _lazy_table(tree) for name, tree in trees.items()
            if paths[name].name == "__init__.py"}

    def resolve(module: str, attr: str | None) -> str | None:
        if attr == "":  # a string: our module, or a name in one; anything else is no import
            return module if module in paths else (
                module.rpartition(".")[0] if module.count(".") > 1
                and module.rpartition(".")[0] in paths else None)
        if attr is not None:
            if f"{module}.{attr}" in paths:  # from package import submodule
                return f"{module}.{attr}"
            if attr in lazy.get(module, {}):  # a lazily exported name: its defining module
                return f"{module}.{lazy[module][attr]}"
        while module and module not in paths:  # "rtforge.x.y.attr" in a string
            module = module.rpartition(".")[0]
        return module or None

    graph: dict[str, set[str]] = {}
    for name, tree in trees.items():
        edges = set()
        for module, attr in _imports(tree, name, paths[name].name == "__init__.py"):
            if module == package or module.startswith(package + "."):
                target = resolve(module, attr)
                if target is not None and target != name:
                    edges.add(target)
        graph[name] = edges
    return graph


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan), each sorted."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(v: str) -> None:
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in sorted(graph.get(v, ())):
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            component = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                component.append(w)
                if w == v:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for v in sorted(graph):
        if v not in index:
            visit(v)
    return sorted(found)


def rank(module: str) -> int:
    """The layer of ``rtforge.LAYER...``; the package itself is in the base."""
    parts = module.split(".")
    return LAYERS[parts[1]] if len(parts) > 1 else 0


def climbs(graph: dict[str, set[str]], root: Path, package: str) -> list[tuple[str, str]]:
    """Imports from a lower layer to a higher one (the package's lazy re-exports excepted)."""
    facade = {f"{package}.{module}" for module in
              _lazy_table(ast.parse((root / "__init__.py").read_text(encoding="utf-8"))).values()}
    return sorted((a, b) for a, edges in graph.items() for b in edges
                  if rank(b) > rank(a) and not (a == package and b in facade))


def test_the_import_graph_has_no_cycle_and_no_climb() -> None:
    graph = import_graph(SRC, "rtforge")
    assert len(graph) > 100 and graph["rtforge.cli.reslice"]  # it did find the modules
    assert cycles(graph) == []
    assert climbs(graph, SRC, "rtforge") == []


def test_every_top_level_module_has_a_layer() -> None:
    top = {p.stem if p.is_file() else p.name for p in SRC.iterdir()
           if (p.suffix == ".py" or (p / "__init__.py").exists())}
    assert top - {"__init__"} == set(LAYERS)


def test_the_graph_sees_every_kind_of_import(tmp_path) -> None:
    # A cycle through a function-level import, and climbs through TYPE_CHECKING, a relative
    # import, a lazily exported name and a module named in a string.
    pkg = tmp_path / "rtforge"
    for folder in ("core", "io", "net"):
        (pkg / folder).mkdir(parents=True)
    (pkg / "__init__.py").write_text("")
    (pkg / "_lazy.py").write_text("def lazy_exports(*args):\n    return None, None\n")
    (pkg / "core" / "__init__.py").write_text("")
    (pkg / "core" / "a.py").write_text("def f():\n    from rtforge.core import b\n")
    (pkg / "core" / "b.py").write_text("from rtforge.core.a import f\n")
    (pkg / "core" / "c.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from rtforge.io import x\n")
    (pkg / "core" / "d.py").write_text("from ..io import x\n")
    (pkg / "core" / "e.py").write_text("from rtforge.net import Lazy\n")
    (pkg / "core" / "f.py").write_text("PRELOAD = ['rtforge.io.x']\n")
    (pkg / "io" / "__init__.py").write_text("")
    (pkg / "io" / "x.py").write_text('"""rtforge.net.y in a docstring is no import."""\n')
    (pkg / "net" / "__init__.py").write_text(
        "from rtforge._lazy import lazy_exports\n"
        "_EXPORTS = {'Lazy': 'y'}\n__getattr__, __dir__ = lazy_exports(__name__, _EXPORTS, {})\n")
    (pkg / "net" / "y.py").write_text("class Lazy:\n    pass\n")
    graph = import_graph(pkg, "rtforge")
    assert cycles(graph) == [["rtforge.core.a", "rtforge.core.b"]]
    assert climbs(graph, pkg, "rtforge") == [
        ("rtforge.core.c", "rtforge.io.x"), ("rtforge.core.d", "rtforge.io.x"),
        ("rtforge.core.e", "rtforge.net.y"), ("rtforge.core.f", "rtforge.io.x")]
