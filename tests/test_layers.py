"""The package's layers (docs/design.md, "Layout and layers"): no module imports from a layer
above its own, no import circle, and no gsplat_lib import inside a function to dodge one."""

from __future__ import annotations

import ast
from pathlib import Path

import gsplat_lib

PACKAGE = Path(gsplat_lib.__file__).resolve().parent

# Bottom to top; a module's layer is that of its longest matching prefix.
LAYERS = [
    ["gsplat_lib._backend", "gsplat_lib._version", "gsplat_lib._C"],
    ["gsplat_lib.ops", "gsplat_lib.reference"],
    ["gsplat_lib.param_schema", "gsplat_lib.learning_rates", "gsplat_lib.cameras", "gsplat_lib.atomic_file",
     "gsplat_lib.checkpoint", "gsplat_lib.strategy_base", "gsplat_lib.optim"],
    ["gsplat_lib.model", "gsplat_lib.io"],
    ["gsplat_lib.strategy", "gsplat_lib.strategy_mcmc"],
    ["gsplat_lib.data"],
    ["gsplat_lib.mesh"],
    ["gsplat_lib.train"],
    ["gsplat_lib.viewer", "gsplat_lib.compat"],
    ["gsplat_lib.train.cli", "gsplat_lib.train.__main__", "gsplat_lib.train.mesh_cli"],  # commands
]
# Imports inside functions that dodge no circle: loading the compiled extension, and the
# synthetic scene, which `python -m gsplat_lib.data.synthetic_scene` must not find imported.
DEFERRED_IMPORTS = {("gsplat_lib._backend", "gsplat_lib._C"), ("gsplat_lib.data", "gsplat_lib.data.synthetic_scene")}


def layer_of(module: str) -> int:
    matches = [(len(prefix), index) for index, layer in enumerate(LAYERS) for prefix in layer
               if module == prefix or module.startswith(prefix + ".")]
    assert matches, f"{module} is in no layer: add it to LAYERS and docs/design.md"
    return max(matches)[1]


def modules():
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
        is_package = parts[-1] == "__init__"
        name = ".".join(parts[:-1] if is_package else parts)
        yield name, is_package, ast.parse(path.read_text(), str(path))


def imported(node: ast.AST, module: str, is_package: bool):
    """What an import statement names in gsplat_lib (from-imports: module.member for each member)."""
    if isinstance(node, ast.Import):
        return [alias.name for alias in node.names if alias.name.startswith("gsplat_lib")]
    if isinstance(node, ast.ImportFrom):
        if node.level:
            base = module.split(".") if is_package else module.split(".")[:-1]
            base = base[: len(base) - node.level + 1]
            target = ".".join(base + ([node.module] if node.module else []))
        else:
            target = node.module or ""
        if not target.startswith("gsplat_lib"):
            return []
        return [f"{target}.{alias.name}" for alias in node.names]
    return []


def known_module(name: str, names) -> str:
    """`name` itself when it is a module, else its parent (a from-import of a member)."""
    return name if name in names or name == "gsplat_lib._C" else name.rsplit(".", 1)[0]


def test_no_module_imports_from_a_layer_above_and_none_defers_an_import():
    parsed = list(modules())
    names = {name for name, _, _ in parsed}
    upward, deferred = [], []
    for name, is_package, tree in parsed:
        if name == "gsplat_lib":
            continue  # the package's API imports from every layer
        for node in ast.walk(tree):
            targets = {known_module(t, names) for t in imported(node, name, is_package)}
            for target in targets - {name}:
                if target != "gsplat_lib" and layer_of(target) > layer_of(name):
                    upward.append(f"{name} imports {target}")
        for function in ast.walk(tree):
            if isinstance(function, (ast.FunctionDef, ast.AsyncFunctionDef)):
                for node in ast.walk(function):
                    for target in {known_module(t, names) for t in imported(node, name, is_package)}:
                        if (name, target) not in DEFERRED_IMPORTS:
                            deferred.append(f"{name}.{function.name} imports {target}")
    assert not upward, upward
    assert not deferred, deferred


def test_no_import_circle():
    parsed = list(modules())
    names = {name for name, _, _ in parsed}
    graph = {name: set() for name in names}
    for name, is_package, tree in parsed:
        for node in tree.body:  # module-level imports run at import time
            for target in imported(node, name, is_package):
                target = known_module(target, names)
                if target in names and target != name and not (is_package and target.startswith(name + ".")):
                    graph[name].add(target)
    visiting, done = set(), set()

    def visit(module, path):
        assert module not in visiting, " -> ".join(path + [module])
        if module in done:
            return
        visiting.add(module)
        for target in sorted(graph[module]):
            visit(target, path + [module])
        visiting.discard(module)
        done.add(module)

    for module in sorted(graph):
        visit(module, [])
