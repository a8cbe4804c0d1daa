"""Layering of the ``vitjob`` package, read from the source with ``ast`` (nothing is imported):

- no module uses another module's ``_private`` names: neither ``from vitjob.x import _y`` nor
  ``x._y`` on an imported vitjob module, nor ``obj._y`` where ``_y`` is a function, class or method
  that only other vitjob modules define (``self.backend._crud(...)``);
- no import cycle among vitjob modules, counting imports at module level, inside functions and
  under ``if TYPE_CHECKING:`` (a type-only import back is a two-way dependency too) and modules loaded
  by name with
  ``importlib.import_module`` (a literal name, or every vitjob module named in a module that loads
  names it computes: the CLI's command registry);
- every module belongs to a layer of ``ALLOWED`` (its folder, or the module itself) and imports only
  its own layer and the layers ``ALLOWED`` lists for it: an allow-list, so a new direction (or a new
  folder) must be allowed here on purpose. README.md "Layout" says what each layer owns.

The checks are plain functions over a source tree, so the tests at the end run them on small
synthetic packages too (a cycle and a private import must be caught).
"""

from __future__ import annotations

import ast
import itertools
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = "vitjob"

# Layer → the layers it may import (besides itself). A module's layer is the longest key that is its
# name or a package above it. Bottom first.
BASE = {"vitjob.constants", "vitjob.errors"}
ALLOWED: dict[str, set[str]] = {
    # shared names, errors, logging, the version, image names, the progress-line format
    "vitjob.version": set(),
    "vitjob.constants": set(),
    "vitjob.errors": set(),
    "vitjob.logsetup": set(),
    "vitjob.progress": set(),
    "vitjob.cputhreads": set(),
    # the kept logs' layout on the output volume: written in the pod, read by both backends
    "vitjob.keptlogs": {"vitjob.constants"},
    "vitjob.images": {"vitjob.version"},
    # what a stage reports it produced (written in the pod, read by the pipeline) and gates on it
    "vitjob.outputs": BASE,
    # what runs inside a pod: start-up, the training code, the Ascend 310 stage, training curves
    "vitjob.launch": BASE | {"vitjob.cputhreads", "vitjob.progress", "vitjob.kube"},
    "vitjob.plot": BASE,
    "vitjob.vit": BASE | {"vitjob.progress", "vitjob.plot", "vitjob.cputhreads", "vitjob.outputs"},
    "vitjob.infer310": BASE | {"vitjob.vit", "vitjob.outputs"},
    # the spec, rendering, pipelines: no backend, no client layer, no controller, no CLI
    "vitjob.api": BASE | {"vitjob.images", "vitjob.progress", "vitjob.outputs"},
    "vitjob.render": BASE | {"vitjob.api", "vitjob.images"},
    "vitjob.pipeline": BASE | {"vitjob.api", "vitjob.render", "vitjob.progress", "vitjob.outputs"},
    # the Kubernetes client layer: nothing built on it
    "vitjob.kube": BASE | {"vitjob.progress"},  # the progress-line format: rank 0's log is read here
    # backends: the interface, the two backends, the factory that picks one
    "vitjob.backends.base": {"vitjob.api", "vitjob.pipeline", "vitjob.errors"},
    # the Kubernetes backend by concern, bottom first: each module takes the Api it needs and none
    # reaches up to the class composing them (backend) or to the pipeline store
    "vitjob.backends.kubernetes.status": BASE | {"vitjob.api", "vitjob.kube"},
    "vitjob.backends.kubernetes.reads": BASE | {
        "vitjob.api", "vitjob.kube", "vitjob.backends.kubernetes.status",
    },
    "vitjob.backends.kubernetes.keptlogs": BASE | {"vitjob.kube", "vitjob.render", "vitjob.progress"},
    "vitjob.backends.kubernetes.lifecycle": BASE | {
        "vitjob.api", "vitjob.kube", "vitjob.render", "vitjob.backends.kubernetes.status",
    },
    "vitjob.backends.kubernetes.preflight": BASE | {
        "vitjob.kube", "vitjob.render", "vitjob.backends.kubernetes.reads",
    },
    "vitjob.backends.kubernetes.submit": BASE | {
        "vitjob.api", "vitjob.kube", "vitjob.pipeline", "vitjob.backends.base",
        "vitjob.backends.kubernetes.lifecycle", "vitjob.backends.kubernetes.preflight",
        "vitjob.backends.kubernetes.reads", "vitjob.backends.kubernetes.status",
    },
    "vitjob.backends.kubernetes.why": BASE | {
        "vitjob.api", "vitjob.kube", "vitjob.backends.kubernetes.keptlogs",
        "vitjob.backends.kubernetes.reads",
    },
    "vitjob.backends.kubernetes.logs": {"vitjob.kube", "vitjob.backends.kubernetes.reads"},
    # pipelines as VitJobs (the controller's store too): the client layer, never the backend class
    "vitjob.backends.kubernetes.store": BASE | {
        "vitjob.api", "vitjob.render", "vitjob.pipeline", "vitjob.kube", "vitjob.progress", "vitjob.outputs",
        "vitjob.backends.kubernetes.lifecycle", "vitjob.backends.kubernetes.status",
    },
    # the Backend composing them
    "vitjob.backends.kubernetes": {
        "vitjob.backends.base", "vitjob.pipeline", "vitjob.kube", "vitjob.progress",
        "vitjob.backends.kubernetes.status", "vitjob.backends.kubernetes.reads",
        "vitjob.backends.kubernetes.keptlogs", "vitjob.backends.kubernetes.lifecycle",
        "vitjob.backends.kubernetes.submit", "vitjob.backends.kubernetes.why",
        "vitjob.backends.kubernetes.logs", "vitjob.backends.kubernetes.store",
    },
    "vitjob.backends.local": BASE | {
        "vitjob.backends.base", "vitjob.api", "vitjob.pipeline", "vitjob.launch", "vitjob.logsetup",
        "vitjob.progress", "vitjob.keptlogs", "vitjob.outputs",
    },
    "vitjob.backends": BASE | {
        "vitjob.backends.base", "vitjob.backends.kubernetes", "vitjob.backends.local", "vitjob.kube",
        "vitjob.pipeline",
    },
    # the public API (vitjob.Client) and the controller: built on the layers above, never on the CLI
    "vitjob.client": BASE | {
        "vitjob.backends", "vitjob.backends.base", "vitjob.api", "vitjob.pipeline", "vitjob.render",
    },
    "vitjob.controller": BASE | {
        "vitjob.backends.kubernetes.store", "vitjob.kube", "vitjob.pipeline", "vitjob.api", "vitjob.progress",
    },
    "vitjob.generate": BASE | {"vitjob.api", "vitjob.render"},
    # the command line: parses, calls the Client (or the controller, a generator, a pod command), prints
    "vitjob.cli": BASE | {
        "vitjob.version", "vitjob.logsetup", "vitjob.progress", "vitjob.client", "vitjob.backends",
        "vitjob.backends.base", "vitjob.api", "vitjob.render", "vitjob.pipeline", "vitjob.kube",
        "vitjob.controller", "vitjob.generate", "vitjob.launch", "vitjob.vit", "vitjob.infer310",
        "vitjob.plot", "vitjob.keptlogs", "vitjob.outputs",
    },
    "vitjob.__main__": {"vitjob.cli"},
    "vitjob": {"vitjob.version", "vitjob.client"},  # the package: __version__ and vitjob.Client
}


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


def _scan(mod: Module, modules: dict[str, Module]) -> None:
    aliases: dict[str, str] = {}  # local name → vitjob module it refers to

    def add_import(target: str, line: int, node: ast.AST) -> None:
        if target in modules and target != mod.name:
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

    _scan_import_module(mod, modules, add_import)

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


def _scan_import_module(mod: Module, modules: dict[str, Module], add_import: Any) -> None:
    """``importlib.import_module("vitjob.x")`` imports vitjob.x; a call with a computed name imports
    every vitjob module the module names in a string (its registry of names)."""
    calls = [
        node for node in ast.walk(mod.tree)
        if isinstance(node, ast.Call)
        and (getattr(node.func, "attr", None) or getattr(node.func, "id", None)) == "import_module"
    ]
    for call in calls:
        arg = call.args[0] if call.args else None
        if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
            add_import(arg.value, call.lineno, call)
            continue
        for node in ast.walk(mod.tree):
            text = node.value if isinstance(node, ast.Constant) else None
            if isinstance(text, str) and text.startswith(PACKAGE + ".") and text in modules:
                add_import(text, node.lineno, node)


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


def layer_of(name: str, allowed: dict[str, set[str]]) -> str | None:
    """The layer of module ``name``: the longest key of ``allowed`` that is it or a package above it."""
    owners = [key for key in allowed if name == key or name.startswith(key + ".")]
    return max(owners, key=len) if owners else None


def layer_violations(modules: dict[str, Module], allowed: dict[str, set[str]]) -> list[str]:
    """Modules outside every layer, and imports in a direction ``allowed`` does not list."""
    problems = []
    for mod in modules.values():
        layer = layer_of(mod.name, allowed)
        if layer is None:
            problems.append(f"{mod.name} belongs to no layer: add it (or its folder) to ALLOWED")
            continue
        for target, line in sorted(mod.imports.items()):
            target_layer = layer_of(target, allowed)
            if target_layer != layer and target_layer not in allowed[layer]:
                problems.append(f"{mod.name} (layer {layer}) imports {target} (layer {target_layer}) "
                                f"on line {line}: not in ALLOWED[{layer!r}]")
    return problems


def test_every_import_follows_an_allowed_direction(vitjob_modules):
    problems = layer_violations(vitjob_modules, ALLOWED)
    assert not problems, "\n".join(problems)


def test_allowed_lists_only_layers_that_exist(vitjob_modules):
    named = set(ALLOWED) | set().union(*ALLOWED.values())
    missing = sorted(layer for layer in named if not any(
        m == layer or m.startswith(layer + ".") for m in vitjob_modules))
    assert not missing, f"ALLOWED names layers without modules (renamed?): {missing}"


def test_the_cli_registry_counts_as_imports(vitjob_modules):
    """``vitjob.cli`` loads its command modules by name: the scan sees those imports."""
    loaded = set(vitjob_modules["vitjob.cli"].imports)
    assert {"vitjob.cli.jobs", "vitjob.cli.pipeline", "vitjob.cli.render"} <= loaded


def _tree(tmp_path: Path, files: dict[str, str]) -> dict[str, Module]:
    for rel, text in files.items():
        path = tmp_path / PACKAGE / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return load_modules(tmp_path, PACKAGE)


def test_checker_finds_cycles_through_function_level_type_checking_and_relative_imports(tmp_path):
    modules = _tree(tmp_path, {
        "__init__.py": "",
        "a.py": "from vitjob import b\n",
        "b.py": "def f():\n    from vitjob.sub import c\n",
        "sub/__init__.py": "",
        "sub/c.py": "from .. import a\n",
        "d.py": "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from vitjob import e\n",
        "e.py": "import vitjob.d\n",
    })
    assert import_cycles(modules) == [
        ["vitjob.a", "vitjob.b", "vitjob.sub.c", "vitjob.a"],
        ["vitjob.d", "vitjob.e", "vitjob.d"],
    ]
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


def test_checker_finds_imports_against_the_allow_list_and_importlib_loads(tmp_path):
    modules = _tree(tmp_path, {
        "__init__.py": "",
        "low/__init__.py": "",
        "low/a.py": "def f():\n    from vitjob.high import b\n",
        "high/__init__.py": "",
        "high/b.py": "from vitjob.low import a\n",
        "high/c.py": "import importlib\nNAMES = ('vitjob.stray',)\n"
                     "def load(n):\n    return importlib.import_module(n)\n",
        "stray.py": "",
    })
    allowed = {"vitjob": set(), "vitjob.low": set(), "vitjob.high": {"vitjob.low"}}
    assert layer_violations(modules, allowed) == [
        "vitjob.high.c (layer vitjob.high) imports vitjob.stray (layer vitjob) on line 2: "
        "not in ALLOWED['vitjob.high']",
        "vitjob.low.a (layer vitjob.low) imports vitjob.high.b (layer vitjob.high) on line 2: "
        "not in ALLOWED['vitjob.low']",
    ]
    assert layer_violations(modules, {"vitjob.low": set()})[0] == (
        "vitjob belongs to no layer: add it (or its folder) to ALLOWED"
    )
