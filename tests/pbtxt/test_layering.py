"""The modules of hpo_tools.pbtxt share one internal interface (pbtxt/tree.py), never privates.

Each module may use the ``_names`` it defines itself; anything another module needs is a public
name of the Tree or its mixins. (Import cycles are checked for the whole package by
tests/test_import_graph.py.)
"""

from __future__ import annotations

import ast
from pathlib import Path

import hpo_tools.pbtxt

PACKAGE = Path(hpo_tools.pbtxt.__file__).parent


def _defined_privates(tree: ast.AST) -> set[str]:
    """The ``_names`` a module defines: functions, classes, assigned names and attributes, slots."""
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, (ast.FunctionDef, ast.ClassDef)):
            names.add(node.name)
        elif isinstance(node, ast.Attribute) and isinstance(node.ctx, ast.Store):
            names.add(node.attr)
        elif isinstance(node, ast.Name) and isinstance(node.ctx, ast.Store):
            names.add(node.id)
        elif isinstance(node, ast.Assign) and any(
            isinstance(t, ast.Name) and t.id == "__slots__" for t in node.targets
        ):
            names.update(c.value for c in ast.walk(node.value) if isinstance(c, ast.Constant))
    return {name for name in names if isinstance(name, str) and name.startswith("_")}


def _private_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, name) of every ``x._name`` read and ``from ... import _name``."""
    uses = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Attribute) and node.attr.startswith("_") \
                and not node.attr.startswith("__"):
            uses.append((node.lineno, node.attr))
        elif isinstance(node, ast.ImportFrom):
            uses.extend((node.lineno, a.name) for a in node.names
                        if a.name.startswith("_") and not a.name.startswith("__"))
    return uses


def test_no_pbtxt_module_uses_another_modules_private_names() -> None:
    offences = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        own = _defined_privates(tree)
        offences += [f"{path.name}:{line}: {name}" for line, name in sorted(_private_uses(tree))
                     if name not in own]
    # A private name used where it is not defined is a hidden interface between two modules.
    assert offences == [], "private names used across pbtxt modules:\n" + "\n".join(offences)


def test_the_tree_is_not_part_of_the_public_api() -> None:
    # The internal interface stays internal: the package exports Document/Message, not the Tree.
    assert "Tree" not in hpo_tools.pbtxt.__all__
    doc = hpo_tools.pbtxt.Document.parse("a: 1\n")
    for name in ("pieces", "root", "expand", "select", "insert", "render"):
        assert not hasattr(doc, name), name
