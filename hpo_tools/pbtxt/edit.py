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
from hpo_tools.pbtxt.paths import Condition, Index, Path, Slice, Step, parse_path
from hpo_tools.pbtxt.syntax import (
    LIST,
    MESSAGE,
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
    BOOL_TEXT,
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

# An item is one selectable value of a field name in a body: (field, j) with j == -1 for the value
# of a SCALAR or MESSAGE field, else the position in a LIST field's items.
_Item = tuple[Field, int]
# A trail names where a context came from, for messages: (parent trail, step name, position).
_Trail = Optional[tuple[Any, str, int]]


def _trail_text(trail: _Trail) -> str:
    parts: list[str] = []
    while trail is not None:
        trail, name, pos = trail
        parts.append(name if pos < 0 else f"{name}[{pos}]")
    return ".".join(reversed(parts)) or "the top level"


def _node(item: _Item) -> Union[int, Body]:
    field, j = item
    if j < 0:
        return field.value  # type: ignore[return-value]
    return field.value.items[j]  # type: ignore[union-attr]


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


class Document(Message):
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
        self._items_cache: dict[tuple[int, str], list[_Item]] = {}
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

    # -- selection ------------------------------------------------------------------------------
    def _items(self, body: Body, name: str) -> Optional[list[_Item]]:
        """Every item of `name` in body (list fields flattened); None when the field is absent."""
        key = (id(body), name)
        items = self._items_cache.get(key)
        if items is None:
            fields = body.by_name().get(name)
            if fields is None:
                return None
            items = []
            for field in fields:
                if field.kind == LIST:
                    items.extend((field, j) for j in range(len(field.value.items)))
                else:
                    items.append((field, -1))
            self._items_cache[key] = items
        return items

    def _alias(self, body: Body, path: Path) -> Path:
        """Map ``feature_configs`` <-> ``feature_config.features`` to whichever the file has."""
        if body is not self._root or not path.steps:
            return path
        steps = path.steps
        index = body.by_name()
        first = steps[0]
        if first.name == "feature_configs" and "feature_configs" not in index:
            if "feature_config" in index:
                _logger.debug("%s: feature_configs read as feature_config.features", path.text)
                new = (
                    Step("feature_config", (), "feature_config"),
                    Step("features", first.selectors, first.text.replace(
                        "feature_configs", "features", 1)),
                )
                return Path(path.text, new + steps[1:])
        elif (
            first.name == "feature_config"
            and not first.selectors
            and len(steps) > 1
            and steps[1].name == "features"
            and "feature_config" not in index
            and "feature_configs" in index
        ):
            _logger.debug("%s: feature_config.features read as feature_configs", path.text)
            new_first = Step("feature_configs", steps[1].selectors,
                             steps[1].text.replace("features", "feature_configs", 1))
            return Path(path.text, (new_first,) + steps[2:])
        return path

    def _select(self, body: Body, path_text: str, strict: bool) -> list[Union[int, Body]]:
        path = self._alias(body, parse_path(path_text))
        contexts: list[tuple[Body, _Trail]] = [(body, None)]
        last = len(path.steps) - 1
        nodes: list[Union[int, Body]] = []
        for s, step in enumerate(path.steps):
            nodes = []
            next_contexts: list[tuple[Body, _Trail]] = []
            for ctx_body, trail in contexts:
                items = self._items(ctx_body, step.name)
                if items is None:
                    if strict:
                        raise self._unknown_field(path, step, ctx_body, trail, None)
                    continue
                positions = self._apply_selectors(path, step, items, ctx_body, trail, strict)
                show = bool(step.selectors) or len(items) > 1
                for pos in positions:
                    node = _node(items[pos])
                    if s < last:
                        if not isinstance(node, Body):
                            raise ConfigPathError(
                                f"{path.text}: '{step.text}' is a value, not a message, so "
                                f"'{path.steps[s + 1].text}' cannot be read from it"
                            )
                        next_contexts.append((node, (trail, step.name, pos if show else -1)))
                    else:
                        nodes.append(node)
            contexts = next_contexts
        return nodes

    def _unknown_field(
        self, path: Path, step: Step, body: Body, trail: _Trail, schema_names: Any
    ) -> ConfigPathError:
        names = list(body.by_name())
        if schema_names:
            names += list(schema_names)
        where = _trail_text(trail)
        return ConfigPathError(
            f"{path.text}: no field '{step.name}' in {where}{did_you_mean(step.name, names)}"
        )

    def _apply_selectors(
        self,
        path: Path,
        step: Step,
        items: list[_Item],
        body: Body,
        trail: _Trail,
        strict: bool,
    ) -> list[int]:
        positions = list(range(len(items)))
        for sel in step.selectors:
            n = len(positions)
            if isinstance(sel, Index):
                i = sel.index
                if -n <= i < n:
                    positions = [positions[i]]
                else:
                    if strict:
                        where = _trail_text((trail, step.name, -1))
                        raise ConfigPathError(
                            f"{path.text}: index {i} out of range in '{step.text}' "
                            f"({where} has {n} element{'s' if n != 1 else ''})"
                        )
                    return []
            elif isinstance(sel, Slice):
                positions = positions[slice(sel.start, sel.stop, sel.step)]
                if not positions and strict:
                    where = _trail_text((trail, step.name, -1))
                    raise ConfigPathError(
                        f"{path.text}: slice {sel} in '{step.text}' selects nothing "
                        f"({where} has {n} element{'s' if n != 1 else ''})"
                    )
            else:
                positions = self._match_condition(path, step, sel, items, positions, body, trail,
                                                  strict)
        return positions

    # -- conditions -----------------------------------------------------------------------------
    def _read_key(self, body: Body, key: Path) -> Optional[int]:
        """Piece index of the last scalar the key path selects inside body, or None."""
        steps = key.steps
        last = len(steps) - 1
        for s, step in enumerate(steps):
            fields = body.by_name().get(step.name)
            if not fields:
                return None
            sels = step.selectors
            node: Union[int, Body, None] = None
            if len(fields) == 1 and fields[0].kind != LIST:
                if not sels or (len(sels) == 1 and isinstance(sels[0], Index)
                                and sels[0].index in (0, -1)):
                    node = fields[0].value
                elif len(sels) == 1 and isinstance(sels[0], Index):
                    return None
            if node is None:
                items = self._items(body, step.name) or []
                if not sels:
                    node = _node(items[-1]) if items else None
                elif len(sels) == 1 and isinstance(sels[0], Index):
                    i = sels[0].index
                    node = _node(items[i]) if -len(items) <= i < len(items) else None
                else:
                    nodes = self._select(body, step.text, False)
                    node = nodes[-1] if nodes else None
                if node is None:
                    return None
            if s == last:
                return node if isinstance(node, int) else None
            if not isinstance(node, Body):
                return None
            body = node
        return None

    def _condition_entries(self, body: Body, name: str, items: list[_Item], key: Path) -> Any:
        """Per item: (number or None, text, is_bool) of the key, or None; cached.

        The entry is [values, equality index (built on first use), pieces read].
        """
        cache_key = (id(body), name, key.text)
        entry = self._cond_cache.get(cache_key)
        if entry is not None:
            return entry
        pieces = self._pieces
        values: list[Optional[tuple[Optional[float], str, bool]]] = []
        read: list[int] = []
        memo: dict[str, tuple[Optional[float], str, bool]] = {}
        for item in items:
            node = _node(item)
            t = self._read_key(node, key) if isinstance(node, Body) else None
            if t is None:
                values.append(None)
                continue
            read.append(t)
            token = pieces[t]
            if token[:1] in QUOTES:
                if "\\" not in token and pieces[t + 2][:1] not in QUOTES:
                    values.append((None, token[1:-1], False))
                else:
                    values.append((None, str(decode_scalar(pieces, t)), False))
            else:
                found = memo.get(token)
                if found is None:
                    found = memo[token] = _comparable(pieces, t)
                values.append(found)
        entry = [values, None, set(read)]
        self._cond_cache[cache_key] = entry
        return entry

    def _match_condition(
        self,
        path: Path,
        step: Step,
        cond: Condition,
        items: list[_Item],
        positions: list[int],
        body: Body,
        trail: _Trail,
        strict: bool,
    ) -> list[int]:
        entry = self._condition_entries(body, step.name, items, cond.key)
        values = entry[0]
        number = cond.number
        text = cond.value
        bool_value = BOOL_TEXT.get(text) if not cond.quoted else None
        if cond.op in ("=", "!="):
            if entry[1] is None:
                eq: dict[tuple[str, object], list[int]] = {}
                for pos, v in enumerate(values):
                    if v is None:
                        continue
                    if v[2]:
                        eq.setdefault(("b", v[1] == "true"), []).append(pos)
                    elif v[0] is not None:
                        eq.setdefault(("n", v[0]), []).append(pos)
                    eq.setdefault(("s", v[1]), []).append(pos)
                entry[1] = eq
            eq = entry[1]
            hits = list(eq.get(("s", text), ()))
            if number is not None:
                hits += eq.get(("n", number), ())
            if bool_value is not None:
                hits += eq.get(("b", bool_value), ())
            hit_set = set(hits)
            if cond.op == "=":
                matched = [p for p in positions if p in hit_set]
            else:
                matched = [p for p in positions if p not in hit_set and values[p] is not None]
        else:
            op = _COMPARE[cond.op]
            matched = []
            for p in positions:
                v = values[p]
                if v is None:
                    continue
                if v[0] is not None and number is not None:
                    ok = op(v[0], number)
                else:
                    ok = op(v[1], text if bool_value is None or not v[2] else
                            ("true" if bool_value else "false"))
                if ok:
                    matched.append(p)
        if not matched and strict:
            seen = [values[p][1] for p in positions if values[p] is not None]
            where = _trail_text((trail, step.name, -1))
            hint = did_you_mean(text, seen) if cond.op == "=" else ""
            if not seen:
                detail = f"no element of {where} has '{cond.key.text}'"
            else:
                detail = f"{len(positions)} element{'s' if len(positions) != 1 else ''} checked"
            raise ConfigPathError(
                f"{path.text}: condition '[{cond.text}]' matches no element of {where} "
                f"({detail}){hint}"
            )
        return matched

    def _invalidate(self, written: set[int]) -> None:
        """Forget cached condition keys read from any of the written pieces."""
        cache = self._cond_cache
        if cache:
            for key in [k for k, entry in cache.items() if not entry[2].isdisjoint(written)]:
                del cache[key]

    # -- structural edits (used by _Editor) ------------------------------------------------------
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

    def _forget(self) -> None:
        self._items_cache.clear()
        self._cond_cache.clear()

    def _snapshot(self) -> tuple[Any, ...]:
        return (list(self._pieces), {k: list(v) for k, v in self._expand.items()}, self._root,
                self._n0, dict(self._line_start))

    def _restore(self, snapshot: tuple[Any, ...]) -> None:
        for undo in reversed(self._undo or []):
            undo()
        self._pieces, self._expand, self._root, self._n0, self._line_start = snapshot
        self._body = self._root
        self._forget()

    def _changing(self, body: Body) -> None:
        """Record body's field list for rollback, and drop caches that depend on structure."""
        if self._undo is not None:
            old = list(body.fields)

            def undo(body: Body = body, old: list[Field] = old) -> None:
                body.fields[:] = old
                body.reset_index()

            self._undo.append(undo)
        self._forget()

    def _indent_unit(self) -> str:
        """The indentation step of this document (from its first nested field; else 2 spaces)."""
        if self._unit is None:
            self._unit = "  "
            for field in self._root.fields:
                if field.kind != MESSAGE:
                    continue
                outer = self._line_indent(field.ni)
                for child in field.value.fields:
                    inner = self._line_indent(child.ni)
                    if outer is not None and inner is not None and len(inner) > len(outer) \
                            and inner.startswith(outer):
                        self._unit = inner[len(outer):]
                        return self._unit
                    break
        return self._unit

    def _line_indent(self, i: int) -> Optional[str]:
        """Indentation of the line that token i starts, or None when i does not start a line."""
        lead = self._render(i - 1)
        p = lead.rfind("\n")
        if p >= 0:
            return lead[p + 1:]
        if i == 1 and not lead.strip(" \t\f\v\ufeff"):
            return lead.replace("\ufeff", "")
        start = self._line_start.get(i - 1)
        return None if start is None else start + lead

    def _child_indent(self, body: Body) -> str:
        for field in body.fields:
            indent = self._line_indent(field.ni)
            if indent is not None:
                return indent
        outer = self._line_indent(body.owner.ni) if body.owner is not None else ""
        return (outer or "") + self._indent_unit()

    def _graft(self, text: str, line_start: Optional[str] = None) -> tuple[tuple[int, int], Body]:
        """Parse text into new pieces appended to the document; return their range and root.

        `line_start` is the indentation of the line the text starts, when it starts one.
        """
        base = len(self._pieces)
        pieces, root = parse_pieces(text, f"{self.source} (edited)", base)
        self._pieces.extend(pieces)
        if line_start is not None:
            self._line_start[base] = line_start
        return (base, base + len(pieces)), root

    def _blank(self, lo: int, hi: int) -> None:
        """Empty pieces lo..hi (inclusive) and drop the expansions among them."""
        pieces = self._pieces
        for i in range(lo, hi + 1):
            pieces[i] = ""
        if self._expand:
            for k in [k for k in self._expand if lo <= k <= hi]:
                del self._expand[k]

    def _insert(self, body: Body, after: Optional[Field],
                make: Callable[[Optional[str]], list[str]]) -> None:
        """Insert the fields `make(indent)` after `after` (default: body's last field)."""
        nl = self._nl
        starts: Optional[str] = None
        if after is None and body.fields:
            after = body.fields[-1]
        if after is not None:
            anchor = after.ei + 1
            indent = self._line_indent(after.ni)
            position = body.fields.index(after) + 1
            if indent is None:
                text = "".join(" " + t for t in make(None))
                split = 0
            else:
                text = "".join(nl + indent + t for t in make(indent))
                split = -1
        elif body.open_i < 0:
            anchor = body.close_i - 1
            position = 0
            texts = make("")
            lead = self._render(anchor)
            split = len(lead)
            if (not lead.strip() and anchor == 0) or lead.endswith("\n"):
                text = nl.join(texts) + nl
                starts = ""
            else:
                text = nl + nl.join(texts)
        else:
            # An empty message: rewrite everything between its braces (comments kept).
            inner = self._render_range(body.open_i + 1, body.close_i)
            p = inner.find("\n")
            if p >= 0:
                if p > 0 and inner[p - 1] == "\r":
                    p -= 1
                indent = self._child_indent(body)
                text = inner[:p] + "".join(nl + indent + t for t in make(indent)) + inner[p:]
            else:
                text = " " + " ".join(make(None)) + " "
            span, root = self._graft(text)
            self._changing(body)
            self._blank(body.open_i + 1, body.close_i - 1)
            self._expand[body.open_i + 1] = [span]
            body.fields[:] = root.fields
            body.reset_index()
            return
        span, root = self._graft(text, starts)
        self._changing(body)
        parts = self._expand.get(anchor)
        if parts is None:
            lead = self._pieces[anchor]
            if split == -1:
                split = _line_end(lead)
            self._expand[anchor] = [lead[:split], span, lead[split:]]
        elif isinstance(parts[0], str):
            parts.insert(1, span)  # right after `after`, before what was inserted there before
        else:
            parts.insert(0, span)
        body.fields[position:position] = root.fields
        body.reset_index()

    def _delete_field(self, body: Body, field: Field) -> None:
        """Remove a field, with its line when it was alone on it."""
        self._changing(body)
        self._blank(field.ni, field.ei)
        lead = self._edge_text(field.ni - 1, last=True)
        if lead is not None:
            p = lead.rfind("\n")
            if p >= 0:
                if p > 0 and lead[p - 1] == "\r":
                    p -= 1
                self._set_edge_text(field.ni - 1, lead[:p], last=True)
                tail = self._edge_text(field.ei + 1, last=False)
                if tail is not None:
                    self._set_edge_text(field.ei + 1, tail[_line_end(tail):], last=False)
        body.fields.remove(field)
        body.reset_index()

    def _edge_text(self, i: int, last: bool) -> Optional[str]:
        """The plain text at the end (last) or start of trivia piece i, expansions included."""
        parts = self._expand.get(i)
        if parts is None:
            return self._pieces[i]
        part = parts[-1] if last else parts[0]
        return part if isinstance(part, str) else None

    def _set_edge_text(self, i: int, text: str, last: bool) -> None:
        parts = self._expand.get(i)
        if parts is None:
            self._pieces[i] = text
        else:
            parts[-1 if last else 0] = text

    def _replace_field(self, body: Body, field: Field, text: str) -> None:
        """Replace a field by the field(s) parsed from text, keeping its lines and comments."""
        lead_i = field.ni - 1
        indent = self._line_indent(field.ni)
        lead = self._edge_text(lead_i, last=True)
        moved = ""
        if lead is not None:
            # The lines before the field (after the previous field's line) move with it.
            q = _line_end(lead)
            moved = lead[q:]
            self._set_edge_text(lead_i, lead[:q], last=True)
        starts = None
        if indent is not None and "\n" not in moved:
            starts = indent[: len(indent) - len(moved)]
        text = moved + text
        tail = self._edge_text(field.ei + 1, last=False)
        if tail is not None:
            # The rest of the field's line (a trailing comment) moves with the field.
            q = _line_end(tail)
            text += tail[:q]
            self._set_edge_text(field.ei + 1, tail[q:], last=False)
        span, root = self._graft(text, starts)
        self._changing(body)
        self._blank(field.ni, field.ei)
        self._expand[field.ni] = [span]
        position = body.fields.index(field)
        body.fields[position:position + 1] = root.fields
        body.reset_index()

    def _replace_contents(self, body: Body, lines: list[str]) -> None:
        """Replace everything between a message's braces by the snippet lines."""
        nl = self._nl
        if body.close_i - 1 in self._expand:
            # Spliced text sits before the '}': only its line structure is known for sure.
            interior = self._render_range(body.open_i + 1, body.close_i)
            outer = self._line_indent(body.owner.ni) if body.owner is not None else ""
            close_lead = nl + (outer or "") if "\n" in interior else " "
        else:
            close_lead = self._pieces[body.close_i - 1]
        if "\n" in close_lead or len(lines) > 1 or any("#" in line for line in lines):
            indent = self._child_indent(body)
            p = close_lead.rfind("\n")
            if p >= 0:
                if p > 0 and close_lead[p - 1] == "\r":
                    p -= 1
                tail = close_lead[p:]
            else:
                outer = self._line_indent(body.owner.ni) if body.owner is not None else ""
                tail = nl + (outer or "")
            text = "".join(nl + (indent + line if line.strip() else "") for line in lines) + tail
        elif lines:
            text = " " + lines[0] + " "
        else:
            text = close_lead
        span, root = self._graft(text)
        self._changing(body)
        lo = body.open_i + 1
        self._blank(lo, body.close_i - 1)
        self._expand[lo] = [span]
        body.fields[:] = root.fields
        body.reset_index()


def _line_end(trivia: str) -> int:
    """Where the current line ends in trivia: before its first newline; at the end when there
    is no newline but a comment; else at the start."""
    p = trivia.find("\n")
    if p < 0:
        return len(trivia) if "#" in trivia else 0
    if p > 0 and trivia[p - 1] == "\r":
        p -= 1
    return p


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


def _comparable(pieces: list[str], t: int) -> tuple[Optional[float], str, bool]:
    """(number or None, text, is_bool) of the scalar at piece t, for conditions."""
    token = pieces[t]
    if token[:1] in QUOTES:
        return None, str(decode_scalar(pieces, t)), False
    kind = literal_kind(token)
    value = decode_scalar(pieces, t)
    if kind in ("int", "float"):
        return float(value), token, False  # type: ignore[arg-type]
    if kind == "bool":
        return None, "true" if value else "false", True
    return None, token, False


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

    def __init__(self, body: Body, desc: Any, trail: _Trail, fd: Any, items: list[Any],
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

    def __init__(self, trail: _Trail, name: str) -> None:
        self.trail = trail
        self.name = name

    def __str__(self) -> str:
        return _trail_text((self.trail, self.name, -1))


class _Creation:
    """A field absent from a message that an edit creates (with absent parents up the path)."""

    __slots__ = ("body", "trail", "names", "fds")

    def __init__(self, body: Body, trail: _Trail, names: list[str], fds: list[Any]) -> None:
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
        contexts: list[tuple[Body, Any, _Trail]] = [(doc._root, self.schema, None)]
        targets: list[_Target] = []
        creations: list[_Creation] = []
        steps = path.steps
        last = len(steps) - 1
        for s, step in enumerate(steps):
            next_contexts: list[tuple[Body, Any, _Trail]] = []
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
                    node = _node(items[pos])
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
        self, path: Path, step: Step, s: int, desc: Any, body: Body, trail: _Trail
    ) -> Any:
        if desc is None or step.name.startswith("["):
            return None
        fd = desc.fields_by_name.get(step.name)
        if fd is None:
            raise ConfigPathError(
                f"{path.text}: no field '{step.name}' in {_trail_text(trail)} "
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
        self, path: Path, s: int, body: Body, desc: Any, trail: _Trail, fd: Any
    ) -> _Creation:
        step = path.steps[s]
        if fd is None and not (self.allow_new and (desc is None or step.name.startswith("["))):
            schema_names = list(desc.fields_by_name) if desc is not None else None
            raise self.doc._unknown_field(path, step, body, trail, schema_names)
        names: list[str] = []
        for later in path.steps[s:]:
            if later.selectors:
                raise ConfigPathError(
                    f"{path.text}: '{step.name}' is absent from {_trail_text(trail)}, so "
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
                where = ".".join([_trail_text(trail)] + names[:i])
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
                        f"{path.text}: cannot create '{first.name}' in {_trail_text(trail)}: "
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
            items: list[_Item] = []
            for f in fields:
                if f.kind == LIST:
                    items.extend((f, j) for j in range(len(f.value.items)))
                else:
                    items.append((f, -1))
            selected = [_node(item) for item in items]
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
            selected = [_node(target.items[p]) for p in target.positions]
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
        part = ".".join([_trail_text(made.trail)] + names) if made.trail else ".".join(names)
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
