"""Selecting nodes of a document's syntax tree by config path (the read side of every edit).

:class:`PathResolver` is a mixin of :class:`~hpo_tools.pbtxt.tree.Tree`: it walks a parsed
:class:`~hpo_tools.pbtxt.paths.Path` through the message bodies, applies ``[i]``, ``[a:b]`` and
``[key=value]`` selectors, and caches what it reads (the items of a field name per body, the key
values a condition compares) until an edit writes the pieces they were read from. A *node* is the
piece index of a scalar or the :class:`~hpo_tools.pbtxt.syntax.Body` of a message.
"""

from __future__ import annotations

import logging
from typing import Any, Callable, Optional, Union

from hpo_tools.errors import ConfigPathError, did_you_mean
from hpo_tools.pbtxt.paths import Condition, Index, Path, Slice, Step, parse_path
from hpo_tools.pbtxt.syntax import LIST, QUOTES, Body, Field, decode_scalar, literal_kind
from hpo_tools.pbtxt.values import BOOL_TEXT

__all__ = ["Item", "Trail", "PathResolver", "item_node", "trail_text"]

_logger = logging.getLogger(__name__)

# An item is one selectable value of a field name in a body: (field, j) with j == -1 for the value
# of a SCALAR or MESSAGE field, else the position in a LIST field's items.
Item = tuple[Field, int]
# A trail names where a context came from, for messages: (parent trail, step name, position).
Trail = Optional[tuple[Any, str, int]]


def trail_text(trail: Trail) -> str:
    """A trail as a path for messages, e.g. ``model_config.dbmtl.task_towers[0]``."""
    parts: list[str] = []
    while trail is not None:
        trail, name, pos = trail
        parts.append(name if pos < 0 else f"{name}[{pos}]")
    return ".".join(reversed(parts)) or "the top level"


def item_node(item: Item) -> Union[int, Body]:
    """The node of an item: a scalar's piece index or a message body."""
    field, j = item
    if j < 0:
        return field.value  # type: ignore[return-value]
    return field.value.items[j]  # type: ignore[union-attr]


class PathResolver:
    """Mixin of Tree: select nodes by path, with the caches that make repeated reads cheap.

    Uses the tree's ``pieces``, ``root``, ``items_cache`` and ``cond_cache``. Its methods without
    a leading underscore are part of the tree's package-internal interface (see
    :mod:`hpo_tools.pbtxt.tree`); the others are used only here.
    """

    __slots__ = ()

    pieces: list[str]
    root: Body
    items_cache: dict[tuple[int, str], list[Item]]
    cond_cache: dict[tuple[int, str, str], Any]

    def field_items(self, body: Body, name: str) -> Optional[list[Item]]:
        """Every item of `name` in body (list fields flattened); None when the field is absent."""
        key = (id(body), name)
        items = self.items_cache.get(key)
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
            self.items_cache[key] = items
        return items

    def alias(self, body: Body, path: Path) -> Path:
        """Map ``feature_configs`` <-> ``feature_config.features`` to whichever the file has."""
        if body is not self.root or not path.steps:
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

    def select(self, body: Body, path_text: str, strict: bool) -> list[Union[int, Body]]:
        """Every node the path selects from body, in text order (raising when strict)."""
        path = self.alias(body, parse_path(path_text))
        contexts: list[tuple[Body, Trail]] = [(body, None)]
        last = len(path.steps) - 1
        nodes: list[Union[int, Body]] = []
        for s, step in enumerate(path.steps):
            nodes = []
            next_contexts: list[tuple[Body, Trail]] = []
            for ctx_body, trail in contexts:
                items = self.field_items(ctx_body, step.name)
                if items is None:
                    if strict:
                        raise self.unknown_field(path, step, ctx_body, trail, None)
                    continue
                positions = self.apply_selectors(path, step, items, ctx_body, trail, strict)
                show = bool(step.selectors) or len(items) > 1
                for pos in positions:
                    node = item_node(items[pos])
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

    def unknown_field(
        self, path: Path, step: Step, body: Body, trail: Trail, schema_names: Any
    ) -> ConfigPathError:
        """The error for an absent field, with a did-you-mean from the names around."""
        names = list(body.by_name())
        if schema_names:
            names += list(schema_names)
        where = trail_text(trail)
        return ConfigPathError(
            f"{path.text}: no field '{step.name}' in {where}{did_you_mean(step.name, names)}"
        )

    def apply_selectors(
        self,
        path: Path,
        step: Step,
        items: list[Item],
        body: Body,
        trail: Trail,
        strict: bool,
    ) -> list[int]:
        """Positions in items that the step's selectors keep, in order."""
        positions = list(range(len(items)))
        for sel in step.selectors:
            n = len(positions)
            if isinstance(sel, Index):
                i = sel.index
                if -n <= i < n:
                    positions = [positions[i]]
                else:
                    if strict:
                        where = trail_text((trail, step.name, -1))
                        raise ConfigPathError(
                            f"{path.text}: index {i} out of range in '{step.text}' "
                            f"({where} has {n} element{'s' if n != 1 else ''})"
                        )
                    return []
            elif isinstance(sel, Slice):
                positions = positions[slice(sel.start, sel.stop, sel.step)]
                if not positions and strict:
                    where = trail_text((trail, step.name, -1))
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
                items = self.field_items(body, step.name) or []
                if not sels:
                    node = item_node(items[-1]) if items else None
                elif len(sels) == 1 and isinstance(sels[0], Index):
                    i = sels[0].index
                    node = item_node(items[i]) if -len(items) <= i < len(items) else None
                else:
                    nodes = self.select(body, step.text, False)
                    node = nodes[-1] if nodes else None
                if node is None:
                    return None
            if s == last:
                return node if isinstance(node, int) else None
            if not isinstance(node, Body):
                return None
            body = node
        return None

    def _condition_entries(self, body: Body, name: str, items: list[Item], key: Path) -> Any:
        """Per item: (number or None, text, is_bool) of the key, or None; cached.

        The entry is [values, equality index (built on first use), pieces read].
        """
        cache_key = (id(body), name, key.text)
        entry = self.cond_cache.get(cache_key)
        if entry is not None:
            return entry
        pieces = self.pieces
        values: list[Optional[tuple[Optional[float], str, bool]]] = []
        read: list[int] = []
        memo: dict[str, tuple[Optional[float], str, bool]] = {}
        for item in items:
            node = item_node(item)
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
        self.cond_cache[cache_key] = entry
        return entry

    def _match_condition(
        self,
        path: Path,
        step: Step,
        cond: Condition,
        items: list[Item],
        positions: list[int],
        body: Body,
        trail: Trail,
        strict: bool,
    ) -> list[int]:
        """Positions whose key compares true with the condition's value."""
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
            where = trail_text((trail, step.name, -1))
            hint = did_you_mean(text, seen) if cond.op == "=" else ""
            if not seen:
                detail = f"no element of {where} has '{cond.key.text}'"
                names = {name for p in positions for name in _field_names(item_node(items[p]))}
                first = cond.key.steps[0].name
                hint = "" if first in names else did_you_mean(first, sorted(names))
            else:
                detail = f"{len(positions)} element{'s' if len(positions) != 1 else ''} checked"
            raise ConfigPathError(
                f"{path.text}: condition '[{cond.text}]' matches no element of {where} "
                f"({detail}){hint}"
            )
        return matched

    def invalidate(self, written: set[int]) -> None:
        """Forget cached condition keys read from any of the written pieces."""
        cache = self.cond_cache
        if cache:
            for key in [k for k, entry in cache.items() if not entry[2].isdisjoint(written)]:
                del cache[key]

    def forget(self) -> None:
        """Drop every cached selection (after a structural change or a reload)."""
        self.items_cache.clear()
        self.cond_cache.clear()


_COMPARE: dict[str, Callable[[Any, Any], bool]] = {
    ">=": lambda a, b: a >= b,
    "<=": lambda a, b: a <= b,
    ">": lambda a, b: a > b,
    "<": lambda a, b: a < b,
}


def _field_names(node: Union[int, Body]) -> list[str]:
    """The field names of a message node ([] for a scalar)."""
    return list(node.by_name()) if isinstance(node, Body) else []


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
