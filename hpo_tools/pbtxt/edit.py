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
    FALSE_WORDS,
    LIST,
    QUOTES,
    TRUE_WORDS,
    Body,
    Field,
    decode_scalar,
    literal_kind,
    parse_pieces,
    scalar_end,
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


class RawText(str):
    """Text whose type is unknown (a value split from a ``"a;b": "1;2"`` entry).

    Where the field's type is known it is converted like any string; where it is not (a new field,
    a ``${placeholder}``) numbers and booleans in it are written bare, like real numbers.
    """


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
        "_deps",
        "_nl",
        "_unit",
        "_undo",
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
        self._deps: dict[int, list[tuple[int, str, str]]] = {}
        self._nl = "\r\n" if "\r\n" in text else "\n"
        self._unit: Optional[str] = None
        self._undo: Optional[list[Callable[[], None]]] = None

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
        raise NotImplementedError("editing lands in the next commit")

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
        for s, step in enumerate(steps):
            items = self._items(body, step.name)
            if not items:
                return None
            sels = step.selectors
            if not sels:
                node = _node(items[-1])
            elif len(sels) == 1 and isinstance(sels[0], Index):
                i = sels[0].index
                if not -len(items) <= i < len(items):
                    return None
                node = _node(items[i])
            else:
                nodes = self._select(body, key.prefix(s + 1) if s else step.text, False)
                if not nodes:
                    return None
                node = nodes[-1]
            if s == len(steps) - 1:
                return node if isinstance(node, int) else None
            if not isinstance(node, Body):
                return None
            body = node
        return None

    def _condition_entries(self, body: Body, name: str, items: list[_Item], key: Path) -> Any:
        """Per item: (piece index, number or None, text, is_bool) of the key, or None; cached."""
        cache_key = (id(body), name, key.text)
        entry = self._cond_cache.get(cache_key)
        if entry is not None:
            return entry
        pieces = self._pieces
        values: list[Optional[tuple[Optional[float], str, bool]]] = []
        deps = self._deps
        for item in items:
            node = _node(item)
            t = self._read_key(node, key) if isinstance(node, Body) else None
            if t is None:
                values.append(None)
                continue
            dep = deps.get(t)
            if dep is None:
                deps[t] = [cache_key]
            else:
                dep.append(cache_key)
            values.append(_comparable(pieces, t))
        entry = [values, None]
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
        bool_value = _BOOL_TEXT.get(text) if not cond.quoted else None
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

    def _invalidate(self, lo: int, hi: int) -> None:
        """Forget cached condition keys read from pieces lo..hi."""
        deps = self._deps
        if not deps:
            return
        for t in range(lo, hi + 1):
            keys = deps.pop(t, None)
            if keys:
                for key in keys:
                    self._cond_cache.pop(key, None)


_BOOL_TEXT = {w: True for w in TRUE_WORDS}
_BOOL_TEXT.update({w: False for w in FALSE_WORDS})

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

