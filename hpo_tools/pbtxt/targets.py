"""What an edit writes to: the targets a path selects and the fields it creates.

:class:`TargetResolver` is a mixin of the editor (:mod:`hpo_tools.pbtxt.edit`): it walks an edit's
path through the document like a read does, but stops at the last step's parent messages
(:class:`Target`), checks each step against the schema when there is one, and turns an absent
field into a :class:`Creation` (allowed with a schema that knows the field or with
``allow_new_fields``), with a ConfigPathError naming the path and the failing part otherwise.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, Optional

from hpo_tools.errors import ConfigPathError, did_you_mean
from hpo_tools.pbtxt.paths import Path, Step
from hpo_tools.pbtxt.resolve import Trail, item_node, trail_text
from hpo_tools.pbtxt.syntax import Body
from hpo_tools.pbtxt.values import schema_kind

if TYPE_CHECKING:
    from hpo_tools.pbtxt.tree import Tree

__all__ = ["Target", "Part", "Creation", "TargetResolver"]


class Target:
    """The last step of a path in one parent message: what an edit writes to.

    Without selectors, `items` is the list of fields of that name and `positions` is None.
    """

    __slots__ = ("body", "desc", "trail", "fd", "items", "positions", "step")

    def __init__(self, body: Body, desc: Any, trail: Trail, fd: Any, items: list[Any],
                 positions: Optional[list[int]], step: Step) -> None:
        self.body = body
        self.desc = desc
        self.trail = trail
        self.fd = fd
        self.items = items
        self.positions = positions
        self.step = step


class Part:
    """The name of a target for messages, rendered only when a message needs it."""

    __slots__ = ("trail", "name")

    def __init__(self, trail: Trail, name: str) -> None:
        self.trail = trail
        self.name = name

    def __str__(self) -> str:
        return trail_text((self.trail, self.name, -1))


class Creation:
    """A field absent from a message that an edit creates (with absent parents up the path)."""

    __slots__ = ("body", "trail", "names", "fds")

    def __init__(self, body: Body, trail: Trail, names: list[str], fds: list[Any]) -> None:
        self.body = body
        self.trail = trail
        self.names = names
        self.fds = fds


class TargetResolver:
    """Mixin of the editor: resolve an edit's path into targets and creations.

    Uses the editor's ``tree`` (see :mod:`hpo_tools.pbtxt.tree`), ``schema`` (a Descriptor or None)
    and ``allow_new``.
    """

    tree: Tree
    schema: Any
    allow_new: bool

    def resolve(self, path: Path) -> tuple[list[Target], list[Creation]]:
        """The targets the path selects and the absent fields it creates (all checked)."""
        tree = self.tree
        contexts: list[tuple[Body, Any, Trail]] = [(tree.root, self.schema, None)]
        targets: list[Target] = []
        creations: list[Creation] = []
        steps = path.steps
        last = len(steps) - 1
        for s, step in enumerate(steps):
            next_contexts: list[tuple[Body, Any, Trail]] = []
            for body, desc, trail in contexts:
                fd = self.field_descriptor(path, step, s, desc, body, trail) if desc else None
                if s == last and not step.selectors:
                    fields = body.by_name().get(step.name)
                    if fields is None:
                        creations.append(self.creation(path, s, body, desc, trail, fd))
                    else:
                        targets.append(Target(body, desc, trail, fd, fields, None, step))
                    continue
                items = tree.field_items(body, step.name)
                if items is None:
                    creations.append(self.creation(path, s, body, desc, trail, fd))
                    continue
                positions = tree.apply_selectors(path, step, items, body, trail, True)
                if s == last:
                    targets.append(Target(body, desc, trail, fd, items, positions, step))
                    continue
                show = bool(step.selectors) or len(items) > 1
                child_desc = fd.message_type if fd is not None else None
                for pos in positions:
                    node = item_node(items[pos])
                    if not isinstance(node, Body):
                        raise ConfigPathError(
                            f"{path.text}: '{step.text}' is a value, not a message, so "
                            f"'{steps[s + 1].text}' cannot be set in it"
                        )
                    child_trail = (trail, step.name, pos if show else -1)
                    next_contexts.append((node, child_desc, child_trail))
            contexts = next_contexts
        return targets, creations

    def field_descriptor(
        self, path: Path, step: Step, s: int, desc: Any, body: Body, trail: Trail
    ) -> Any:
        """The schema's FieldDescriptor of step in desc, checked against the step."""
        if desc is None or step.name.startswith("["):
            return None
        fd = desc.fields_by_name.get(step.name)
        if fd is None:
            raise ConfigPathError(
                f"{path.text}: no field '{step.name}' in {trail_text(trail)} "
                f"({desc.full_name}){did_you_mean(step.name, desc.fields_by_name)}"
            )
        if step.selectors and not fd.is_repeated:
            raise ConfigPathError(
                f"{path.text}: '{step.text}' selects elements, but {desc.full_name}.{step.name} "
                f"is not repeated"
            )
        if s < len(path.steps) - 1 and fd.message_type is None:
            raise ConfigPathError(
                f"{path.text}: '{step.text}' is a {schema_kind(fd)} field, not a message, so "
                f"'{path.steps[s + 1].text}' cannot be set in it"
            )
        return fd

    def creation(
        self, path: Path, s: int, body: Body, desc: Any, trail: Trail, fd: Any
    ) -> Creation:
        """The creation of the absent field path.steps[s] (and the steps below it) in body."""
        step = path.steps[s]
        if fd is None and not (self.allow_new and (desc is None or step.name.startswith("["))):
            schema_names = list(desc.fields_by_name) if desc is not None else None
            raise self.tree.unknown_field(path, step, body, trail, schema_names)
        names: list[str] = []
        for later in path.steps[s:]:
            if later.selectors:
                raise ConfigPathError(
                    f"{path.text}: '{step.name}' is absent from {trail_text(trail)}, so "
                    f"'{later.text}' has no elements to select"
                )
            names.append(later.name)
        # Walk the schema down the created part of the path.
        fds: list[Any] = []
        d = desc
        for i, name in enumerate(names):
            if d is None or name.startswith("["):
                fds.append(None)
                d = None
                continue
            f = d.fields_by_name.get(name)
            if f is None:
                where = ".".join([trail_text(trail)] + names[:i])
                raise ConfigPathError(
                    f"{path.text}: no field '{name}' in {where} ({d.full_name})"
                    f"{did_you_mean(name, d.fields_by_name)}"
                )
            if i < len(names) - 1 and f.message_type is None:
                raise ConfigPathError(
                    f"{path.text}: '{name}' is a {schema_kind(f)} field, not a message, so "
                    f"'{names[i + 1]}' cannot be set in it"
                )
            fds.append(f)
            d = f.message_type
        first = fds[0]
        if first is not None and first.containing_oneof is not None:
            present = body.by_name()
            for other in first.containing_oneof.fields:
                if other.name != first.name and other.name in present:
                    raise ConfigPathError(
                        f"{path.text}: cannot create '{first.name}' in {trail_text(trail)}: "
                        f"oneof '{first.containing_oneof.name}' already has '{other.name}'"
                    )
        return Creation(body, trail, names, fds)
