"""Layering of the ``vitjob`` package, read from the source with ``ast`` (nothing is imported):

- no module uses another module's ``_private`` names: neither ``from vitjob.x import _y`` nor
  ``x._y`` on an imported vitjob module, nor ``obj._y`` where ``_y`` is a function, class or method
  that only other vitjob modules define (``self.backend._crud(...)``);
- no import cycle among vitjob modules, counting imports at module level and inside functions
  (``if TYPE_CHECKING:`` imports never run and are left out);
- ``vitjob.kube`` (the Kubernetes client layer) imports nothing of the layers built on it.

The checks are plain functions over a source tree, so the tests at the end run them on small
synthetic packages too (a cycle and a private import must be caught).
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vitjob"
# vitjob.kube is the bottom layer: it may use vitjob.errors and vitjob.constants, nothing built on it
KUBE_FORBIDDEN = ("vitjob.backends", "vitjob.pipeline", "vitjob.controller.loop", "vitjob.cli")
# The core (the spec and its schemas, rendering, pipeline logic, job-status types) imports no backend,
# no client layer, no controller and no CLI: they are built on it.
CORE = ("vitjob.api", "vitjob.render", "vitjob.pipeline")
CORE_FORBIDDEN = ("vitjob.backends", "vitjob.kube", "vitjob.controller.loop", "vitjob.cli")


@dataclass
class Module:
    name: str
    path: Path
    tree: ast.Module
    is_package: bool
    imports: dict[str, int] = field(default_factory=dict)  # module imported at runtime → first line
    private_uses: list[str] = field(default_factory=list)  # "line N: what"
    defined_private: set[str] = field(default_factory=set)


def load_modules(root: Path, package: str) -> dict[str, Module]:
    """Every module of ``root/package`` by dotted name, parsed."""
    modules = {}
    for path in sorted((root / package).rglob("*.py")):
        rel = path.relative_to(root).with_suffix("")
        parts = list(rel.parts)
        is_package = parts[-1] == "__init__"
        if is_package:
            parts.pop()
        name = ".".join(parts)
        modules[name] = Module(name, path, ast.parse(path.read_text(), str(path)), is_package)
    for mod in modules.values():
        mod.defined_private = _private_definitions(mod.tree)
    for mod in modules.values():
        _scan(mod, modules)
    return modules


def _private_definitions(tree: ast.Module) -> set[str]:
    names = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)):
            if _is_private(node.name):
                names.add(node.name)
        elif isinstance(node, (ast.Assign, ast.AnnAssign)):
            targets = node.targets if isinstance(node, ast.Assign) else [node.target]
            for t in targets:
                if isinstance(t, ast.Name) and _is_private(t.id):
                    names.add(t.id)
                elif (isinstance(t, ast.Attribute) and isinstance(t.value, ast.Name)
                      and t.value.id in ("self", "cls") and _is_private(t.attr)):
                    names.add(t.attr)
    return names


def _is_private(name: str) -> bool:
    return name.startswith("_") and not (name.startswith("__") and name.endswith("__"))


def _resolve_from(mod: Module, node: ast.ImportFrom) -> str:
    if not node.level:
        return node.module or ""
    base = mod.name.split(".")
    if not mod.is_package:
        base = base[:-1]
    base = base[: len(base) - (node.level - 1)]
    return ".".join(base + ([node.module] if node.module else []))


def _type_checking_nodes(tree: ast.Module) -> set[int]:
    """ids of the statements inside ``if TYPE_CHECKING:`` blocks."""
    skipped: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If):
            test = node.test
            name = getattr(test, "id", None) or getattr(test, "attr", None)  # Name or Attribute
            if name == "TYPE_CHECKING":
                for stmt in node.body:
                    skipped.update(id(n) for n in ast.walk(stmt))
    return skipped


def _scan(mod: Module, modules: dict[str, Module]) -> None:
    type_only = _type_checking_nodes(mod.tree)
    aliases: dict[str, str] = {}  # local name → vitjob module it refers to

    def add_import(target: str, line: int, node: ast.AST) -> None:
        if target in modules and target != mod.name and id(node) not in type_only:
            mod.imports.setdefault(target, line)

    for node in ast.walk(mod.tree):
        if isinstance(node, ast.Import):
            for a in node.names:
                if a.name == PACKAGE or a.name.startswith(PACKAGE + "."):
                    add_import(a.name, node.lineno, node)
                    aliases[a.asname or a.name.split(".")[0]] = a.name if a.asname else PACKAGE
        elif isinstance(node, ast.ImportFrom):
            source = _resolve_from(mod, node)
            if not (source == PACKAGE or source.startswith(PACKAGE + ".")):
                continue
            for a in node.names:
                sub = f"{source}.{a.name}"
                if sub in modules:  # ``from vitjob import constants``: the submodule itself
                    add_import(sub, node.lineno, node)
                    aliases[a.asname or a.name] = sub
                    continue
                add_import(source, node.lineno, node)
                if _is_private(a.name) and source != mod.name:
                    mod.private_uses.append(f"line {node.lineno}: from {source} import {a.name}")

    others_private = set().union(*(m.defined_private for m in modules.values() if m is not mod))
    for node in ast.walk(mod.tree):
        if not (isinstance(node, ast.Attribute) and _is_private(node.attr)):
            continue
        value = node.value
        if isinstance(value, ast.Name) and value.id in aliases:
            mod.private_uses.append(f"line {node.lineno}: {value.id}.{node.attr} ({aliases[value.id]})")
        elif isinstance(value, ast.Name) and value.id in ("self", "cls"):
            continue
        elif node.attr in others_private and node.attr not in mod.defined_private:
            mod.private_uses.append(f"line {node.lineno}: {ast.unparse(node)} (defined in another module)")
    mod.private_uses.sort(key=lambda use: int(use.split(":")[0].split()[1]))


def private_uses(modules: dict[str, Module]) -> list[str]:
    return [f"{m.name} {use}" for m in modules.values() for use in m.private_uses]


def strongly_connected(modules: dict[str, Module]) -> list[list[str]]:
    """The strongly connected components of the import graph with more than one module (sorted)."""
    graph = {name: sorted(m.imports) for name, m in modules.items()}
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    components: list[list[str]] = []

    def strongconnect(v: str) -> None:  # Tarjan, iterative enough for a package of this size
        index[v] = low[v] = len(index)
        stack.append(v)
        on_stack.add(v)
        for w in graph[v]:
            if w not in index:
                strongconnect(w)
                low[v] = min(low[v], low[w])
            elif w in on_stack:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on_stack.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                components.append(sorted(comp))

    for v in sorted(graph):
        if v not in index:
            strongconnect(v)
    return sorted(components)


def import_cycles(modules: dict[str, Module]) -> list[list[str]]:
    """One cycle (``[a, b, …, a]``) through each group of ``strongly_connected`` modules."""
    graph = {name: sorted(m.imports) for name, m in modules.items()}
    return sorted(_cycle_in(comp, graph) for comp in strongly_connected(modules))


def _cycle_in(comp: list[str], graph: dict[str, list[str]]) -> list[str]:
    """A shortest cycle through the component's first module (breadth-first)."""
    start, members = comp[0], set(comp)
    paths = {start: [start]}
    frontier = [start]
    while frontier:
        nxt = []
        for v in frontier:
            for w in graph[v]:
                if w == start:
                    return [*paths[v], start]
                if w in members and w not in paths:
                    paths[w] = [*paths[v], w]
                    nxt.append(w)
        frontier = nxt
    raise AssertionError(f"no cycle in {comp}")  # pragma: no cover


def describe(cycle: list[str], modules: dict[str, Module]) -> str:
    steps = [f"{a} (line {modules[a].imports[b]}) -> " for a, b in itertools.pairwise(cycle)]
    return "".join(steps) + cycle[-1]


# ------------------------------------------------------------------------------------------ tests
@pytest.fixture(scope="module")
def vitjob_modules() -> dict[str, Module]:
    return load_modules(ROOT, PACKAGE)


def test_no_module_uses_another_modules_private_names(vitjob_modules):
    uses = private_uses(vitjob_modules)
    assert not uses, "private names used across modules (make them public or move them):\n" + "\n".join(uses)


def test_no_import_cycles(vitjob_modules):
    cycles = import_cycles(vitjob_modules)
    components = [", ".join(c) for c in strongly_connected(vitjob_modules)]
    assert not cycles, (
        "import cycles among vitjob modules:\n"
        + "\n".join(describe(c, vitjob_modules) for c in cycles)
        + "\n(modules that import each other, directly or not: "
        + "; ".join(components)
        + ")"
    )


def _imports_of(modules: dict[str, Module], layer: tuple[str, ...], forbidden: tuple[str, ...]) -> list[str]:
    def within(name: str, prefixes: tuple[str, ...]) -> bool:
        return any(name == p or name.startswith(p + ".") for p in prefixes)

    return [
        f"{m.name} imports {target} (line {line})"
        for m in modules.values()
        if within(m.name, layer)
        for target, line in m.imports.items()
        if within(target, forbidden)
    ]


def test_kube_layer_depends_on_nothing_built_on_it(vitjob_modules):
    bad = _imports_of(vitjob_modules, ("vitjob.kube",), KUBE_FORBIDDEN)
    assert not bad, "\n".join(bad)


def test_core_imports_no_backend_client_controller_or_cli(vitjob_modules):
    assert set(CORE) <= set(vitjob_modules), "a core module was renamed: update CORE"
    bad = _imports_of(vitjob_modules, CORE, CORE_FORBIDDEN)
    assert not bad, "\n".join(bad)


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load_modules(tmp_path, PACKAGE)


def test_checker_finds_cycles_through_function_level_and_relative_imports(tmp_path):
    modules = _tree(tmp_path, {
        "__init__.py": "",
        "a.py": "from vitjob import b\n",
        "b.py": "def f():\n    from vitjob.sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import a\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vitjob import e\n",
        "e.py": "import vitjob.d\n",
    })
    assert import_cycles(modules) == [["vitjob.a", "vitjob.b", "vitjob.sub.c", "vitjob.a"]]
    assert describe(import_cycles(modules)[0], modules) == (
        "vitjob.a (line 1) -> vitjob.b (line 2) -> vitjob.sub.c (line 1) -> vitjob.a"
    )


def test_checker_finds_private_names_used_across_modules(tmp_path):
    modules = _tree(tmp_path, {
        "__init__.py": "",
        "a.py": "_x = 1\ndef _f(): ...\nclass A:\n    def _m(self): ...\n"
                "    def g(self):\n        self._m()\n",
        "b.py": "from vitjob.a import _f\nimport vitjob.a as a\nfrom vitjob import a as aa\n"
                "a._x\naa.A()._m\ndef g(o):\n    o._m()\n    o._own()\n",
    })
    assert private_uses(modules) == [
        "vitjob.b line 1: from vitjob.a import _f",
        "vitjob.b line 4: a._x (vitjob.a)",
        "vitjob.b line 5: aa.A()._m (defined in another module)",
        "vitjob.b line 7: o._m (defined in another module)",
    ]
