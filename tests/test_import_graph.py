"""The package's import graph: no cycle between hpo_tools modules, and every module imports alone.

The graph is built from the source with ``ast``, so it holds every import, wherever it is
written: at the top, inside a function (a lazy import still ties the two modules' designs
together), under ``if TYPE_CHECKING:``. Edges:

- ``import hpo_tools.a.b`` and ``from hpo_tools.a.b import name`` import ``hpo_tools.a.b``;
- ``from hpo_tools.a import b`` imports ``hpo_tools.a.b`` when ``b`` is a submodule, else
  ``hpo_tools.a`` (a package means its ``__init__.py``);
- relative imports are resolved against the importing module's package.

Importing a submodule also runs its parent packages' ``__init__`` at run time; that is not an
edge here, or every package whose ``__init__`` re-exports its submodules would be a cycle.
``hpo_tools/trainer/`` is included: nothing in it needs to be left out.
"""

from __future__ import annotations

import ast
import concurrent.futures
import os
import subprocess
import sys
from collections import deque
from pathlib import Path

import hpo_tools

PACKAGE_DIR = Path(hpo_tools.__file__).resolve().parent
ROOT = PACKAGE_DIR.parent


def _module_name(path: Path, root: Path) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _modules(package_dir: Path = PACKAGE_DIR) -> dict[str, Path]:
    """Every module of the package: dotted name -> file."""
    return {_module_name(p, package_dir.parent): p for p in sorted(package_dir.rglob("*.py"))}


def _imports(name: str, path: Path, modules: dict[str, Path]) -> dict[str, int]:
    """The hpo_tools modules ``name`` imports, each with the line of its first import."""
    is_package = path.name == "__init__.py"
    package = name if is_package else name.rpartition(".")[0]
    found: dict[str, int] = {}

    def add(target: str, line: int) -> None:
        if target == "hpo_tools" or target.startswith("hpo_tools."):
            found.setdefault(target, line)

    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), str(path))):
        if isinstance(node, ast.Import):
            for alias in node.names:
                add(alias.name, node.lineno)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base_parts = package.split(".")
                if node.level > 1:
                    base_parts = base_parts[: len(base_parts) - (node.level - 1)]
                base = ".".join(base_parts + ([node.module] if node.module else []))
            else:
                base = node.module or ""
            for alias in node.names:
                sub = f"{base}.{alias.name}"
                add(sub if sub in modules else base, node.lineno)
    found.pop(name, None)
    return found


def _graph(package_dir: Path = PACKAGE_DIR) -> tuple[dict[str, dict[str, int]], dict[str, Path]]:
    modules = _modules(package_dir)
    return {name: _imports(name, path, modules) for name, path in modules.items()}, modules


def _cycles(graph: dict[str, dict[str, int]]) -> list[list[str]]:
    """Distinct cycles: for each module on a cycle, the shortest cycle through it."""
    cycles: list[list[str]] = []
    seen: set[tuple[str, ...]] = set()
    for start in sorted(graph):
        # Breadth-first from start's imports back to start: the shortest cycle through it.
        parent: dict[str, str] = {}
        queue = deque()
        for target in sorted(graph[start]):
            if target in graph and target not in parent:
                parent[target] = start
                queue.append(target)
        while queue:
            node = queue.popleft()
            if node == start:
                break
            for target in sorted(graph.get(node, ())):
                if target in graph and target not in parent:
                    parent[target] = node
                    queue.append(target)
        if start not in parent:
            continue
        path = [start]
        node = parent[start]
        while node != start:
            path.append(node)
            node = parent[node]
        path.reverse()  # start -> ... -> (back to start)
        path = [start] + path[:-1]
        pivot = path.index(min(path))
        key = tuple(path[pivot:] + path[:pivot])
        if key not in seen:
            seen.add(key)
            cycles.append(list(key))
    return cycles


def _describe(cycle: list[str], graph: dict[str, dict[str, int]],
              modules: dict[str, Path]) -> str:
    steps = []
    for here, there in zip(cycle, cycle[1:] + cycle[:1]):
        where = modules[here].relative_to(modules["hpo_tools"].parent.parent)
        steps.append(f"  {here} -> {there}  ({where}:{graph[here][there]})")
    return " -> ".join(cycle + cycle[:1]) + "\n" + "\n".join(steps)


def test_graph_sees_lazy_relative_and_submodule_imports() -> None:
    # The graph is only as good as its edges: check it on imports written each way.
    graph, _ = _graph()
    # `from hpo_tools.pbtxt.edit import ...` at the top.
    assert "hpo_tools.pbtxt.edit" in graph["hpo_tools.pbtxt"]
    # `from hpo_tools import storage` names a submodule, not the package.
    assert "hpo_tools.storage" in graph["hpo_tools.trainer.data"]
    # `from hpo_tools.jobs import JobRegistry` inside a function of the assessor.
    assert "hpo_tools.jobs" in graph["hpo_tools.assessor"]


def test_cycle_finder_on_a_small_package(tmp_path: Path) -> None:
    package = tmp_path / "hpo_tools"
    (package / "a").mkdir(parents=True)
    (package / "__init__.py").write_text("")
    (package / "a" / "__init__.py").write_text("from . import b\n")
    (package / "a" / "b.py").write_text("def f():\n    from ..c import x\n")
    (package / "c.py").write_text("from hpo_tools.a import thing\n")
    (package / "d.py").write_text("import hpo_tools.c\n")
    graph, modules = _graph(package)
    # Relative, lazy and package imports are all edges; d is outside the cycle.
    assert graph["hpo_tools.a"] == {"hpo_tools.a.b": 1}
    assert graph["hpo_tools.a.b"] == {"hpo_tools.c": 2}
    assert _cycles(graph) == [["hpo_tools.a", "hpo_tools.a.b", "hpo_tools.c"]]
    assert "hpo_tools/a/b.py:2" in _describe(_cycles(graph)[0], graph, modules)


def test_no_import_cycle_between_hpo_tools_modules() -> None:
    graph, modules = _graph()
    cycles = _cycles(graph)
    # A cycle means two modules cannot be understood, tested or loaded one without the other.
    assert not cycles, f"{len(cycles)} import cycle(s):\n" + "\n".join(
        _describe(c, graph, modules) for c in cycles
    )


def test_every_hpo_tools_import_names_a_module_that_exists() -> None:
    graph, modules = _graph()
    missing = sorted(f"{modules[name].relative_to(ROOT)}:{line}: {target}"
                     for name, targets in graph.items()
                     for target, line in targets.items() if target not in modules)
    # A lazy import of a moved or deleted module fails only when its function runs.
    assert not missing, "imports of modules that do not exist:\n" + "\n".join(missing)


def _import_alone(module: str) -> tuple[str, int, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    env["TF_CPP_MIN_LOG_LEVEL"] = "3"
    done = subprocess.run([sys.executable, "-c", f"import {module}"], cwd=ROOT, env=env,
                          capture_output=True, text=True, timeout=120)
    return module, done.returncode, done.stderr


def test_every_module_imports_in_a_fresh_interpreter() -> None:
    # Each module on its own, in a new process: an import that only works after another module
    # happened to be loaded first (or that a cycle breaks) fails here.
    modules = _modules()
    # The few modules that load TensorFlow or NNI take seconds: start them first, so that they
    # overlap the rest (the whole test takes about 10 s on 2 CPUs).
    heavy = ("import tensorflow", "from nni", "import nni")
    names = sorted(modules, key=lambda name: (
        not any(h in modules[name].read_text(encoding="utf-8") for h in heavy), name))
    with concurrent.futures.ThreadPoolExecutor(max_workers=max(4, os.cpu_count() or 1)) as pool:
        results = list(pool.map(_import_alone, names))
    failures = [f"{module}: {(stderr.strip().splitlines() or ['exit %d' % code])[-1]}"
                for module, code, stderr in results if code != 0]
    assert not failures, f"{len(failures)} module(s) fail to import alone:\n" + "\n".join(failures)
