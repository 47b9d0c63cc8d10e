"""The project's import graph, read with ``ast`` (nothing is imported): which module imports which.

Shared by ``test_import_graph.py``; a module is named by its dotted path (``networks.bits``), a
package by its first part. Every ``import``/``from ... import`` counts, at module level or inside a
function: a deferred import is still an arrow.
"""

from __future__ import annotations

import ast
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[2]
NOT_PROJECT = {"tests"}
"""Top-level folders that are not part of the project's import graph."""


def project_packages(root: Path = REPO_ROOT) -> list[str]:
    """Every top-level package of the project: a folder with an ``__init__.py`` (tests aside)."""
    return sorted(p.parent.name for p in root.glob("*/__init__.py") if p.parent.name not in NOT_PROJECT)


def script_name(path: Path, packages: list[str]) -> str:
    """A top-level script's module name; ``sweep.py`` beside the package ``sweep/`` is the script ``sweep.py``."""
    return path.name if path.stem in packages else path.stem


def project_modules(root: Path = REPO_ROOT) -> dict[str, Path]:
    """Dotted name -> file of every project module: every package's modules and every top-level script."""
    modules = {}
    packages = project_packages(root)
    for package in packages:
        for path in sorted((root / package).rglob("*.py")):
            parts = path.relative_to(root).with_suffix("").parts
            modules[".".join(parts[:-1] if parts[-1] == "__init__" else parts)] = path
    for path in sorted(root.glob("*.py")):
        modules[script_name(path, packages)] = path
    return modules


def imported_names(path: Path, module: str) -> set[str]:
    """Every dotted module name that ``path`` imports (relative imports resolved against ``module``)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                package = (
                    module.split(".")[: -node.level]
                    if path.name != "__init__.py"
                    else module.split(".")[: len(module.split(".")) - node.level + 1]
                )
                base = ".".join([*package, base] if base else package)
            names.add(base)
            names.update(f"{base}.{alias.name}" for alias in node.names)
    return names


def import_graph(root: Path = REPO_ROOT) -> dict[str, set[str]]:
    """Module -> the project modules it imports (``from pkg import name`` counts as ``pkg.name`` when that is a module)."""
    modules = project_modules(root)
    graph = {}
    for module, path in modules.items():
        targets = set()
        for name in imported_names(path, module):
            while name and name not in modules:
                name = name.rpartition(".")[0]
            if name and name != module:
                targets.add(name)
        graph[module] = targets
    return graph


def package_of(module: str) -> str:
    """``networks.bits`` -> ``networks``; a shim script ``sweep.py`` -> ``sweep.py``."""
    return module if module.endswith(".py") else module.split(".")[0]


def cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Every strongly connected component with more than one module (Tarjan), each sorted."""
    index, low, stack, on_stack, found = {}, {}, [], set(), []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in graph.get(node, ()):
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

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


ANY = None
"""The rule of a package that may import every other one (benchmarks, shim scripts)."""
ALLOWED: dict[str, set[str] | None] = {
    "networks": set(),  # pure torch.nn: nanoGPT's model.py imports nothing of a project
    "imaging": set(),  # the pixel codec and image grids
    "runtime": set(),  # run plumbing knows no science
    "nn_search": {"networks"},  # exact nearest-neighbour search (Hamming search packs bits)
    "metrics": {"networks", "imaging", "nn_search", "runtime"},
    "autoencoder_checkpoint": {"networks", "runtime"},
    "datamodules": {"networks", "imaging", "autoencoder_checkpoint", "runtime"},  # data never imports models or callbacks
    "lightning_modules": {"networks", "imaging", "metrics", "autoencoder_checkpoint", "runtime"},
    "callbacks": {"networks", "imaging", "metrics", "nn_search", "autoencoder_checkpoint", "datamodules", "lightning_modules", "runtime"},
    "train": {"callbacks", "runtime"},  # the entry point: the CLI with the project's callbacks
    "report": {"networks", "runtime"},  # reads the cells' results; knows nothing of how they ran
    "sweep": {"train", "report", "networks", "runtime"},
    "bench": ANY,
    "sweep.py": ANY,
}
"""Which other packages each package may import (docs/design.md, "Import rules")."""


def upward_arrows(graph: dict[str, set[str]]) -> list[str]:
    """``"a.b -> c.d"`` for every import that crosses into a package its layer may not see."""
    found = []
    for module, targets in sorted(graph.items()):
        allowed = ALLOWED.get(package_of(module), set())
        if allowed is ANY:
            continue
        for target in sorted(targets):
            if package_of(target) != package_of(module) and package_of(target) not in allowed:
                found.append(f"{module} -> {target}")
    return found
