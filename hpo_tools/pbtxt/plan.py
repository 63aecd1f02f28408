"""Planning an edit: check the value for every target, then queue the writes and splices.

:class:`EditPlanner` is a mixin of the editor (:mod:`hpo_tools.pbtxt.edit`). Every value of an
edit is converted (:mod:`hpo_tools.pbtxt.values`) before the first write, so that one path fails
or applies whole: a changed scalar becomes a ``(piece index, literal)`` write, a list, a
``{ ... }`` message or a created field becomes a plan that splices text in
(:mod:`hpo_tools.pbtxt.splice`) once every value has been checked.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Callable, Optional

from hpo_tools.pbtxt.paths import Path
from hpo_tools.pbtxt.resolve import Item, item_node, trail_text
from hpo_tools.pbtxt.syntax import LIST, SCALAR, Body, Field, literal_kind, scalar_end
from hpo_tools.pbtxt.targets import Creation, Part, Target
from hpo_tools.pbtxt.values import (
    EXPECTED,
    coerce,
    list_values,
    scalar_kind,
    schema_kind,
    snippet,
    value_error,
)

if TYPE_CHECKING:
    from hpo_tools.pbtxt.tree import Tree

__all__ = ["EditPlanner"]


class EditPlanner:
    """Mixin of the editor: turn checked values into scalar writes and structural plans.

    Uses the editor's ``tree`` (see :mod:`hpo_tools.pbtxt.tree`), ``kinds`` (field kind per
    descriptor or literal, for the whole ``apply``) and ``literals`` (converted literal per kind
    and style, for the current edit).
    """

    tree: Tree
    kinds: dict[Any, str]
    literals: dict[tuple[str, object], str]

    # -- plans: checked now, written later ------------------------------------------------------
    def literal(self, path: Path, part: Any, value: object, fd: Any, token: str) -> str:
        """coerce(), cached per kind and literal style for the current edit."""
        if fd is not None:
            kind = self.kinds.get(fd)
            if kind is None:
                kind = self.kinds[fd] = schema_kind(fd)
        else:
            kind = self.kinds.get(token)
            if kind is None:
                kind = literal_kind(token)
                kind = self.kinds[token] = "any" if kind == "placeholder" else kind
        if kind == "string":
            style: object = token[:1]
        elif kind == "bool":
            style = token in ("True", "False")
        else:
            style = None
        key = (kind, style)
        lit = self.literals.get(key)
        if lit is None:
            lit = self.literals[key] = coerce(path, str(part), value, kind, token, fd)
        return lit

    def plan_target(self, path: Path, target: Target, value: object,
                    writes: list[tuple[int, str]], plans: list[Callable[[], None]]) -> None:
        """Check the value for one target; queue scalar writes and structural changes."""
        tree = self.tree
        pieces = tree.pieces
        step = target.step
        fd = target.fd
        part = Part(target.trail, step.name)
        if target.positions is None:
            fields: list[Field] = target.items
            listy = isinstance(value, (list, tuple)) or (
                isinstance(value, str) and value.lstrip()[:1] == "[")
            if not listy and (fd is None or (not fd.is_repeated and fd.message_type is None)) \
                    and all(f.kind == SCALAR for f in fields):
                # The common case: one value (or a singular field written more than once).
                for f in fields:
                    writes.append((f.value, self.literal(path, part, value, fd, pieces[f.value])))
                return
            items: list[Item] = []
            for f in fields:
                if f.kind == LIST:
                    items.extend((f, j) for j in range(len(f.value.items)))
                else:
                    items.append((f, -1))
            selected = [item_node(item) for item in items]
            is_message = (fd.message_type is not None if fd is not None
                          else bool(items) and all(isinstance(n, Body) for n in selected))
            if not is_message:
                first_token = next((pieces[n] for n in selected if isinstance(n, int)), "")
                repeated = (fd.is_repeated if fd is not None
                            else any(f.kind == LIST for f in fields))
                values = None
                if isinstance(value, (list, tuple)):
                    values = list(value)
                elif isinstance(value, str) and (
                    repeated or (fd is None and literal_kind(first_token or '""') != "string")
                ):
                    values = list_values(value)
                if values is None and repeated:
                    values = [value]
                if values is not None:
                    if fd is not None and not fd.is_repeated:
                        raise value_error(path, str(part), value,
                                          f"{EXPECTED.get(schema_kind(fd))}: "
                                          f"'{step.name}' is not a repeated field")
                    if any(isinstance(n, Body) for n in selected):
                        raise value_error(path, str(part), value, "'{ ... }' messages")
                    kind = scalar_kind(fd, first_token) if (fd or first_token) else "any"
                    lits = [coerce(path, str(part), v, kind, first_token, fd) for v in values]
                    body = target.body
                    plans.append(lambda: self.replace_all(body, step.name, fields, lits))
                    return
        else:
            if isinstance(value, (list, tuple)):
                raise value_error(path, str(part), value,
                                  "one value: a list replaces a whole repeated field, so "
                                  f"give the path without '{step.text[len(step.name):]}'")
            selected = [item_node(target.items[p]) for p in target.positions]
        for node in selected:
            if isinstance(node, Body):
                lines = snippet(path, str(part), value, fd)
                plans.append(lambda node=node, lines=lines: self.replace_contents(node, lines))
            else:
                if fd is not None and fd.message_type is not None:
                    raise value_error(path, str(part), value, "a message (the file has a value)")
                writes.append((node, self.literal(path, part, value, fd, pieces[node])))

    def plan_creation(self, path: Path, made: Creation, value: object) -> Callable[[], None]:
        """Check the value for a field to create; return the plan that inserts it."""
        names = made.names
        fd = made.fds[-1]
        part = ".".join([trail_text(made.trail)] + names) if made.trail else ".".join(names)
        values = list_values(value) if (
            isinstance(value, (list, tuple)) or (fd is not None and fd.is_repeated)
        ) else None
        if fd is not None and fd.message_type is not None or (
            fd is None and isinstance(value, str) and value.strip().startswith("{")
            and value.strip().endswith("}")
        ):
            lines = snippet(path, part, value, fd)
            leaf_kind = "message"
            lits: list[str] = []
        elif values is not None:
            if fd is not None and not fd.is_repeated:
                raise value_error(path, part, value, f"one value: '{names[-1]}' is not "
                                  f"a repeated field")
            kind = schema_kind(fd) if fd is not None else "any"
            lits = [coerce(path, part, v, kind, "", fd) for v in values]
            leaf_kind = "list"
            lines = []
        else:
            kind = schema_kind(fd) if fd is not None else "any"
            lits = [coerce(path, part, value, kind, "", fd)]
            leaf_kind = "scalar"
            lines = []
        tree = self.tree
        nl = tree.nl

        def leaf(name: str, indent: Optional[str]) -> str:
            if leaf_kind == "scalar":
                return f"{name}: {lits[0]}"
            if leaf_kind == "list":
                return f"{name}: [{', '.join(lits)}]"
            if not lines:
                return f"{name} {{ }}"
            commented = any("#" in line for line in lines)  # a comment must end its line
            if (indent is None or len(lines) == 1) and not commented:
                return f"{name} {{ {' '.join(line.strip() for line in lines)} }}"
            indent = indent or ""
            inner = "".join(nl + (indent + tree.indent_unit() + line if line.strip() else "")
                            for line in lines)
            return f"{name} {{{inner}{nl}{indent}}}"

        def build(i: int, indent: Optional[str]) -> str:
            if i == len(names) - 1:
                return leaf(names[i], indent)
            if indent is None:
                return f"{names[i]} {{ {build(i + 1, None)} }}"
            deeper = indent + tree.indent_unit()
            return f"{names[i]} {{{nl}{deeper}{build(i + 1, deeper)}{nl}{indent}}}"

        return lambda: tree.insert(made.body, None, lambda indent: [build(0, indent)])

    # -- writes ---------------------------------------------------------------------------------
    def write_scalar(self, t: int, literal: str) -> None:
        """Write a literal over the scalar at piece t (empty the rest of its pieces)."""
        tree = self.tree
        pieces = tree.pieces
        end = scalar_end(pieces, t)
        pieces[t] = literal
        for i in range(t + 1, end + 1):
            pieces[i] = ""

    def replace_all(self, body: Body, name: str, fields: list[Field], lits: list[str]) -> None:
        """Make the repeated scalar field `name` hold exactly `lits`."""
        tree = self.tree
        lists = [f for f in fields if f.kind == LIST]
        if lists:
            first = lists[0]
            value = first.value
            prefix = tree.render_range(first.ni, value.open_i)
            sep = tree.render_range(value.close_i + 1, first.ei + 1)
            tree.replace_field(body, first, f"{prefix}[{', '.join(lits)}]{sep}")
            for f in fields:
                if f is not first:
                    tree.delete_field(body, f)
            return
        if not lits:
            # Keep the field present (as "name: []") so that later edits can still find it.
            first = fields[0]
            tree.replace_field(body, first, f"{tree.render(first.ni)}: []")
            for f in fields[1:]:
                tree.delete_field(body, f)
            return
        shared = min(len(fields), len(lits))
        for f, lit in zip(fields[:shared], lits[:shared]):
            self.write_scalar(f.value, lit)
        tree.invalidate({f.value for f in fields[:shared]})
        for f in fields[shared:]:
            tree.delete_field(body, f)
        if len(lits) > len(fields):
            extra = [f"{name}: {lit}" for lit in lits[len(fields):]]
            tree.insert(body, fields[-1], lambda indent: extra)

    def replace_contents(self, body: Body, lines: list[str]) -> None:
        """Replace a message's contents by the snippet lines."""
        self.tree.replace_contents(body, lines)
