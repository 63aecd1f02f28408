"""Document: read and edit a protobuf text-format config without losing a byte of its layout.

``Document.parse(text)`` keeps the text as pieces (see :mod:`hpo_tools.pbtxt.syntax`);
``get``/``get_one``/``get_text``/``has`` read values through config paths
(:mod:`hpo_tools.pbtxt.paths`), and ``apply`` edits them: a changed value rewrites only its token,
and a new, deleted or replaced field is parsed on its own and spliced in. See docs/config-editor.md.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any, Callable, Optional, Union

from hpo_tools.errors import ConfigError, ConfigPathError, did_you_mean
from hpo_tools.pbtxt.paths import Path, Step, parse_path
from hpo_tools.pbtxt.resolve import Item, PathResolver, Trail, item_node, trail_text
from hpo_tools.pbtxt.splice import Splicer
from hpo_tools.pbtxt.syntax import (
    LIST,
    QUOTES,
    SCALAR,
    TOKEN_RE,
    Body,
    Field,
    decode_scalar,
    escape_string,
    literal_kind,
    parse_pieces,
    scalar_end,
)
from hpo_tools.pbtxt.values import (
    EXPECTED,
    RawText,
    coerce,
    list_values,
    plain_text,
    scalar_kind,
    schema_kind,
    snippet,
    value_error,
)

__all__ = ["Document", "Message", "apply_edits", "RawText", "MISSING"]

_logger = logging.getLogger(__name__)


class _Missing:
    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()
"""Default of ``get_one``: raise when nothing is selected."""


class Message:
    """A view of one message of a :class:`Document` (the top level or a sub-message).

    Paths given to its methods are relative to this message. A view follows edits to values made
    later; a view of a message that an edit replaced as a whole no longer follows the document.
    """

    __slots__ = ("_doc", "_body")

    def __init__(self, doc: Document, body: Body) -> None:
        self._doc = doc
        self._body = body

    def get(self, path: str, *, strict: bool = False) -> list[object]:
        """Return every value the path selects, in text order.

        Args:
            path: a config path, e.g. ``feature_configs[:].embedding_dim``.
            strict: raise ConfigPathError (naming the path and the failing part) when a field is
                absent, an index is out of range or a condition matches nothing, instead of
                returning fewer (or no) values.

        Returns:
            int, float, bool or str (enum names are str) for scalar values, :class:`Message` for
            messages.
        """
        doc = self._doc
        return [doc._value(node) for node in doc._select(self._body, path, strict)]

    def get_one(self, path: str, default: object = MISSING) -> object:
        """Return the last selected value (EasyRec reads the last of a repeated singular field).

        Raises:
            ConfigPathError: nothing is selected and no default was given.
        """
        if default is MISSING:
            nodes = self._doc._select(self._body, path, True)
            if not nodes:
                raise ConfigPathError(f"{path}: selects nothing (an empty list)")
            return self._doc._value(nodes[-1])
        nodes = self._doc._select(self._body, path, False)
        return self._doc._value(nodes[-1]) if nodes else default

    def get_text(self, path: str, *, strict: bool = False) -> list[str]:
        """Return each selected value printed in text format, exactly as the file writes it."""
        doc = self._doc
        return [doc._node_text(node) for node in doc._select(self._body, path, strict)]

    def has(self, path: str) -> bool:
        """True when the path selects at least one value."""
        return bool(self._doc._select(self._body, path, False))

    def field_names(self) -> list[str]:
        """Names of the fields of this message, in order of first appearance."""
        return list(self._body.by_name())

    def to_text(self) -> str:
        """This message printed as the file writes it (``{ ... }``; the whole text for the root)."""
        return self._doc._node_text(self._body)

    def __repr__(self) -> str:
        return f"Message({self.field_names()!r})"


class Document(Message, PathResolver, Splicer):
    """A whole protobuf text-format document.

    Example:
        >>> doc = Document.parse('train_config { num_steps: 100 }  # steps\\n')
        >>> doc.get_one("train_config.num_steps")
        100
        >>> doc.apply({"train_config.num_steps": 200})
        >>> doc.to_text()
        'train_config { num_steps: 200 }  # steps\\n'
    """

    __slots__ = (
        "source",
        "_pieces",
        "_root",
        "_n0",
        "_expand",
        "_items_cache",
        "_cond_cache",
        "_nl",
        "_unit",
        "_undo",
        "_line_start",
    )

    def __init__(self, text: str, source: str = "<string>") -> None:
        if not isinstance(text, str):
            raise ConfigError(f"{source}: expected text, got {type(text).__name__}")
        self.source = source
        self._load(text)
        super().__init__(self, self._root)

    def _load(self, text: str) -> None:
        pieces, root = parse_pieces(text, self.source)
        self._pieces = pieces
        self._root = root
        self._body = root
        self._n0 = len(pieces)
        # piece index -> parts (str, or (lo, hi) ranges of appended pieces) printed instead of it
        self._expand: dict[int, list[Union[str, tuple[int, int]]]] = {}
        self._items_cache: dict[tuple[int, str], list[Item]] = {}
        self._cond_cache: dict[tuple[int, str, str], Any] = {}
        self._nl = "\r\n" if "\r\n" in text else "\n"
        self._unit: Optional[str] = None
        self._undo: Optional[list[Callable[[], None]]] = None
        # first trivia piece of a spliced-in text -> indentation, when that text starts a line
        # although its own first trivia holds no newline (e.g. at the very start of the file)
        self._line_start: dict[int, str] = {}

    @classmethod
    def parse(cls, text: str, source: str = "<string>") -> Document:
        """Parse text; ``source`` names it in error messages.

        Raises:
            ConfigError: ``"source:line:col: expected ..., got ..."`` on a syntax error.
        """
        return cls(text, source)

    def to_text(self) -> str:
        """The document as text: byte-identical to the parsed text when nothing was edited."""
        if not self._expand:
            return "".join(self._pieces[: self._n0])
        out = self._pieces[: self._n0]
        for k in self._expand:
            if k < self._n0:
                out[k] = self._render(k)
        return "".join(out)

    def apply(
        self,
        edits: Mapping[str, object],
        *,
        schema: Any = None,
        allow_new_fields: bool = False,
    ) -> None:
        """Apply edits in order, all or nothing.

        Args:
            edits: path -> value. Keys may be ``"a;b"`` (with values ``"1;2"`` or a list) or
                ``${name}`` (replaces every ``${name}`` in the text).
            schema: a ``google.protobuf.descriptor.Descriptor`` of the root message: paths and
                values are checked against it, and fields it knows may be created.
            allow_new_fields: create absent fields without a schema.

        Raises:
            ConfigPathError: naming the path and the failing part; the document is unchanged.
        """
        _apply(self, edits, schema, allow_new_fields)

    # -- rendering ------------------------------------------------------------------------------
    def _render(self, k: int) -> str:
        parts = self._expand.get(k)
        if parts is None:
            return self._pieces[k]
        return "".join(p if isinstance(p, str) else self._render_range(p[0], p[1]) for p in parts)

    def _render_range(self, lo: int, hi: int) -> str:
        """Text of pieces lo..hi-1 with their expansions."""
        expand = self._expand
        pieces = self._pieces
        if not expand:
            return "".join(pieces[lo:hi])
        return "".join(self._render(i) if i in expand else pieces[i] for i in range(lo, hi))

    def _node_text(self, node: Union[int, Body]) -> str:
        if isinstance(node, int):
            return self._render_range(node, scalar_end(self._pieces, node) + 1)
        if node.open_i < 0:
            return self.to_text()
        return self._render_range(node.open_i, node.close_i + 1)

    def _value(self, node: Union[int, Body]) -> object:
        if isinstance(node, int):
            return decode_scalar(self._pieces, node)
        return Message(self, node)

    # -- reload and rollback (used by _Editor) --------------------------------------------------
    def _reload(self, text: str) -> None:
        """Replace the whole text (after a ${placeholder} edit); views taken before are stale."""
        pieces, root = parse_pieces(text, self.source)
        self._pieces = pieces
        self._root = root
        self._body = root
        self._n0 = len(pieces)
        self._expand = {}
        self._line_start = {}
        self._forget()

    def _snapshot(self) -> tuple[Any, ...]:
        return (list(self._pieces), {k: list(v) for k, v in self._expand.items()}, self._root,
                self._n0, dict(self._line_start))

    def _restore(self, snapshot: tuple[Any, ...]) -> None:
        for undo in reversed(self._undo or []):
            undo()
        self._pieces, self._expand, self._root, self._n0, self._line_start = snapshot
        self._body = self._root
        self._forget()

def apply_edits(
    text: str,
    edits: Mapping[str, object],
    *,
    source: str = "<string>",
    schema: Any = None,
    allow_new_fields: bool = False,
) -> str:
    """Parse text, apply edits (all or nothing) and return the edited text.

    Raises:
        ConfigError: the text does not parse.
        ConfigPathError: an edit does not apply (the message names the path and the failing part).
    """
    doc = Document.parse(text, source)
    doc.apply(edits, schema=schema, allow_new_fields=allow_new_fields)
    return doc.to_text()



# -- editing ------------------------------------------------------------------------------------

class _Target:
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


class _Part:
    """The name of a target for messages, rendered only when a message needs it."""

    __slots__ = ("trail", "name")

    def __init__(self, trail: Trail, name: str) -> None:
        self.trail = trail
        self.name = name

    def __str__(self) -> str:
        return trail_text((self.trail, self.name, -1))


class _Creation:
    """A field absent from a message that an edit creates (with absent parents up the path)."""

    __slots__ = ("body", "trail", "names", "fds")

    def __init__(self, body: Body, trail: Trail, names: list[str], fds: list[Any]) -> None:
        self.body = body
        self.trail = trail
        self.names = names
        self.fds = fds


class _Editor:
    """Applies one `apply()` call's edits to a document (the document rolls back on failure)."""

    def __init__(self, doc: Document, schema: Any, allow_new: bool) -> None:
        self.doc = doc
        self.schema = getattr(schema, "DESCRIPTOR", schema)
        if self.schema is not None and not hasattr(self.schema, "fields_by_name"):
            raise ConfigPathError(
                f"schema: expected a protobuf message Descriptor, got {type(schema).__name__}"
            )
        self.allow_new = allow_new
        self.kinds: dict[Any, str] = {}
        self.literals: dict[tuple[str, object], str] = {}

    # -- entry points ---------------------------------------------------------------------------
    def run(self, edits: Mapping[str, object]) -> None:
        for key, value in edits.items():
            if not isinstance(key, str):
                raise ConfigPathError(f"edit key {key!r}: expected a path string")
            text = key.strip()
            if text.startswith("${") and text.endswith("}"):
                self.replace_placeholder(text, value)
            elif ";" in text:
                keys = [k.strip() for k in text.split(";")]
                if isinstance(value, str):
                    values: list[object] = [RawText(v.strip()) for v in value.split(";")]
                elif isinstance(value, (list, tuple)):
                    values = list(value)
                else:
                    raise ConfigPathError(
                        f"{text}: a multi-key entry needs values 'v1;v2;...' or a list, "
                        f"got {value!r}"
                    )
                if len(keys) != len(values):
                    raise ConfigPathError(
                        f"{text}: {len(keys)} keys but {len(values)} values in {value!r}"
                    )
                for k, v in zip(keys, values):
                    self.edit(k, v)
            else:
                self.edit(text, value)

    def replace_placeholder(self, key: str, value: object) -> None:
        if value is None or isinstance(value, (list, tuple, dict)):
            raise ConfigPathError(f"{key}: expected a number, string or bool, got {value!r}")
        doc = self.doc
        text = doc.to_text()
        if key not in text:
            raise ConfigPathError(f"{key}: the placeholder does not occur in {doc.source}")
        raw = plain_text(value)
        out = []
        for trivia, token in TOKEN_RE.findall(text):
            out.append(trivia.replace(key, raw))
            if key in token:
                if token[:1] in QUOTES and len(token) > 1:
                    token = token.replace(key, escape_string(raw, token[0]))
                else:
                    token = token.replace(key, raw)
            out.append(token)
        try:
            doc._reload("".join(out))
        except ConfigError as exc:
            raise ConfigPathError(f"{key}: {raw!r} in its place does not parse: {exc}") from None

    def edit(self, path_text: str, value: object) -> None:
        if value is None or isinstance(value, Mapping):
            raise ConfigPathError(
                f"{path_text}: expected a number, string, bool, list or '{{ ... }}' message, "
                f"got {value!r}"
            )
        doc = self.doc
        path = doc._alias(doc._root, parse_path(path_text))
        targets, creations = self.resolve(path)
        # Check every value before the first write, so that one path fails or applies whole.
        self.literals: dict[tuple[str, object], str] = {}
        writes: list[tuple[int, str]] = []
        plans: list[Callable[[], None]] = []
        for target in targets:
            self.plan_target(path, target, value, writes, plans)
        plans += [self.plan_creation(path, c, value) for c in creations]
        for t, literal in writes:
            self.write_scalar(t, literal)
        if writes:
            doc._invalidate({t for t, _ in writes})
        for plan in plans:
            plan()

    # -- resolution -----------------------------------------------------------------------------
    def resolve(self, path: Path) -> tuple[list[_Target], list[_Creation]]:
        doc = self.doc
        contexts: list[tuple[Body, Any, Trail]] = [(doc._root, self.schema, None)]
        targets: list[_Target] = []
        creations: list[_Creation] = []
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
                        targets.append(_Target(body, desc, trail, fd, fields, None, step))
                    continue
                items = doc._items(body, step.name)
                if items is None:
                    creations.append(self.creation(path, s, body, desc, trail, fd))
                    continue
                positions = doc._apply_selectors(path, step, items, body, trail, True)
                if s == last:
                    targets.append(_Target(body, desc, trail, fd, items, positions, step))
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
    ) -> _Creation:
        step = path.steps[s]
        if fd is None and not (self.allow_new and (desc is None or step.name.startswith("["))):
            schema_names = list(desc.fields_by_name) if desc is not None else None
            raise self.doc._unknown_field(path, step, body, trail, schema_names)
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
        return _Creation(body, trail, names, fds)

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

    def plan_target(self, path: Path, target: _Target, value: object,
                    writes: list[tuple[int, str]], plans: list[Callable[[], None]]) -> None:
        """Check the value for one target; queue scalar writes and structural changes."""
        doc = self.doc
        pieces = doc._pieces
        step = target.step
        fd = target.fd
        part = _Part(target.trail, step.name)
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

    def plan_creation(self, path: Path, made: _Creation, value: object) -> Callable[[], None]:
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
        doc = self.doc
        nl = doc._nl

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
            inner = "".join(nl + (indent + doc._indent_unit() + line if line.strip() else "")
                            for line in lines)
            return f"{name} {{{inner}{nl}{indent}}}"

        def build(i: int, indent: Optional[str]) -> str:
            if i == len(names) - 1:
                return leaf(names[i], indent)
            if indent is None:
                return f"{names[i]} {{ {build(i + 1, None)} }}"
            deeper = indent + doc._indent_unit()
            return f"{names[i]} {{{nl}{deeper}{build(i + 1, deeper)}{nl}{indent}}}"

        return lambda: doc._insert(made.body, None, lambda indent: [build(0, indent)])

    # -- writes ---------------------------------------------------------------------------------
    def write_scalar(self, t: int, literal: str) -> None:
        doc = self.doc
        pieces = doc._pieces
        end = scalar_end(pieces, t)
        pieces[t] = literal
        for i in range(t + 1, end + 1):
            pieces[i] = ""

    def replace_all(self, body: Body, name: str, fields: list[Field], lits: list[str]) -> None:
        """Make the repeated scalar field `name` hold exactly `lits`."""
        doc = self.doc
        lists = [f for f in fields if f.kind == LIST]
        if lists:
            first = lists[0]
            value = first.value
            prefix = doc._render_range(first.ni, value.open_i)
            sep = doc._render_range(value.close_i + 1, first.ei + 1)
            doc._replace_field(body, first, f"{prefix}[{', '.join(lits)}]{sep}")
            for f in fields:
                if f is not first:
                    doc._delete_field(body, f)
            return
        if not lits:
            # Keep the field present (as "name: []") so that later edits can still find it.
            first = fields[0]
            doc._replace_field(body, first, f"{doc._render(first.ni)}: []")
            for f in fields[1:]:
                doc._delete_field(body, f)
            return
        shared = min(len(fields), len(lits))
        for f, lit in zip(fields[:shared], lits[:shared]):
            self.write_scalar(f.value, lit)
        doc._invalidate({f.value for f in fields[:shared]})
        for f in fields[shared:]:
            doc._delete_field(body, f)
        if len(lits) > len(fields):
            extra = [f"{name}: {lit}" for lit in lits[len(fields):]]
            doc._insert(body, fields[-1], lambda indent: extra)

    def replace_contents(self, body: Body, lines: list[str]) -> None:
        self.doc._replace_contents(body, lines)


def _apply(doc: Document, edits: Mapping[str, object], schema: Any, allow_new: bool) -> None:
    if not isinstance(edits, Mapping):
        raise ConfigPathError(f"edits: expected a mapping of path -> value, got {edits!r}")
    editor = _Editor(doc, schema, allow_new)
    snapshot = doc._snapshot()
    doc._undo = []
    try:
        editor.run(edits)
    except BaseException:
        doc._restore(snapshot)
        raise
    finally:
        doc._undo = None
