"""The import rules of docs/architecture.md, read from the code: imports point down the
layers, no import cycle between modules, no private name imported from another module."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1] / "src"
PACKAGE = "napari_unsupseg"

#: Layers, bottom first. A module may import from its own layer only inside its own package,
#: except that an engine may use another engine's public API (its package ``__init__``).
LAYERS: list[tuple[str, ...]] = [
    ("",),  # the package root: only its version
    ("core.base",),
    ("core.models", "core.review"),
    ("core.preseg", "core.backprop", "core.predict", "core.parts", "core.train",
     "core.samples"),
    ("core.registry",),
    ("core.batch",),
    ("core", "cli", "widgets", "_reader", "_writer", "_samples"),
]
ENGINES = {"core.preseg", "core.backprop", "core.predict", "core.parts", "core.train"}


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / PACKAGE).rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        found[".".join(parts)] = path
    return found


MODULES = _modules()


def _is_package(name: str) -> bool:
    return MODULES[name].name == "__init__.py"


def _imports(name: str) -> list[tuple[str, str, int]]:
    """(module imported, name taken from it or '', line) for every import in ``name``,
    at module level or inside functions, relative ones resolved."""
    tree = ast.parse(MODULES[name].read_text())
    here = name if _is_package(name) else name.rpartition(".")[0]
    out = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out += [(alias.name, "", node.lineno) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = here.split(".")
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            for alias in node.names:
                submodule = f"{target}.{alias.name}"
                # ``from package import submodule`` depends on the submodule only.
                out.append((submodule, "", node.lineno) if submodule in MODULES
                           else (target, alias.name, node.lineno))
    return [(t, n, line) for t, n, line in out if t == PACKAGE or t.startswith(PACKAGE + ".")]


GRAPH = {name: _imports(name) for name in MODULES}


def _short(name: str) -> str:
    return name[len(PACKAGE) + 1:] if name != PACKAGE else ""


def _unit(name: str) -> str:
    """The layer entry a module belongs to (the longest that prefixes it)."""
    short = _short(name)
    units = [u for layer in LAYERS for u in layer if u]
    matches = [u for u in units if short == u or short.startswith(u + ".")]
    return max(matches, key=len) if matches else short


def _rank(unit: str) -> int:
    return next(i for i, layer in enumerate(LAYERS) if unit in layer)


def test_imports_point_down_the_layers():
    wrong = []
    for name, imports in GRAPH.items():
        unit = _unit(name)
        for target, _, line in imports:
            other = _unit(target)
            if other == unit:
                continue
            if _rank(other) < _rank(unit):
                continue
            public_engine_api = (unit in ENGINES and other in ENGINES
                                 and _short(target) == other)
            if _rank(other) == _rank(unit) and public_engine_api:
                continue
            wrong.append(f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}")
    assert not wrong, "imports that point up or across the layers:\n" + "\n".join(sorted(wrong))


def _cycles() -> list[list[str]]:
    """Strongly connected components of more than one module (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target, _, _ in GRAPH[node]:
            if target not in MODULES or target == node:
                continue
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1:
                found.append(sorted(component))

    for node in MODULES:
        if node not in index:
            visit(node)
    return found


def test_no_import_cycles():
    cycles = _cycles()
    assert not cycles, "import cycles:\n" + "\n".join(" <-> ".join(c) for c in cycles)


def test_no_private_names_imported_from_another_module():
    wrong = [
        f"{MODULES[name].relative_to(ROOT)}:{line} imports {target}.{imported}"
        for name, imports in GRAPH.items()
        for target, imported, line in imports
        if imported.startswith("_") and not imported.startswith("__") and target != name
    ]
    assert not wrong, "private names used across modules:\n" + "\n".join(sorted(wrong))


@pytest.mark.parametrize("layer", [u for layer in LAYERS for u in layer])
def test_every_layer_entry_exists(layer):
    assert (f"{PACKAGE}.{layer}" if layer else PACKAGE) in MODULES


def test_the_package_root_holds_only_its_version():
    assert not GRAPH[PACKAGE]
