"""Config paths: EasyRec ``edit_config``-compatible field paths with selectors.

Grammar (spaces are allowed inside brackets)::

    path      := step ("." step)*
    step      := NAME selector*
    selector  := "[" ( INT | slice | condition ) "]"
    slice     := [INT] ":" [INT] [":" [INT]]           # Python slice rules; "[:]" is every element
    condition := path OP value                          # path is relative to each element
    OP        := "!=" | ">=" | "<=" | "==" | "=" | ">" | "<"
    value     := '"' text '"' | "'" text "'" | raw text up to the matching "]" (may hold dots)

Examples: ``feature_configs[:].embedding_dim``, ``feature_configs[input_names[0]=user_id]``,
``model_config.dbmtl.task_towers[tower_name="cvr"].dnn.hidden_units[-1]``.
"""

from __future__ import annotations

import functools
import logging
import re
from dataclasses import dataclass
from typing import Optional, Union

from hpo_tools.errors import ConfigPathError

__all__ = ["Path", "Step", "Index", "Slice", "Condition", "Selector", "parse_path"]

_logger = logging.getLogger(__name__)

_NAME_RE = re.compile(r"\s*([A-Za-z_][A-Za-z0-9_]*)\s*")
_INDEX_RE = re.compile(r"\s*(-?\d+)\s*\Z")
_SLICE_RE = re.compile(r"\s*(-?\d+)?\s*:\s*(-?\d+)?\s*(?::\s*(-?\d+)?\s*)?\Z")
_OPS = ("!=", ">=", "<=", "==", "=", ">", "<")
_NUMBER_RE = re.compile(r"[-+]?(?:\d+\.?\d*|\.\d+)(?:[eE][-+]?\d+)?\Z|[-+]?0[xX][0-9a-fA-F]+\Z")


@dataclass(frozen=True)
class Index:
    """``[i]``: one element; negative counts from the end."""

    index: int

    def __str__(self) -> str:
        return f"[{self.index}]"


@dataclass(frozen=True)
class Slice:
    """``[a:b]`` / ``[:]``: elements by Python slice rules."""

    start: Optional[int]
    stop: Optional[int]
    step: Optional[int] = None

    def __str__(self) -> str:
        def fmt(v: Optional[int]) -> str:
            return "" if v is None else str(v)

        tail = "" if self.step is None else f":{self.step}"
        return f"[{fmt(self.start)}:{fmt(self.stop)}{tail}]"


@dataclass(frozen=True)
class Condition:
    """``[key OP value]``: elements whose ``key`` (a path inside each element) compares true.

    Attributes:
        key: the path read inside each element (its last selected value is compared).
        op: one of ``= != >= <= > <``.
        value: the text to compare with.
        quoted: the value was quoted, so it is compared as a string.
        text: the condition as written (for messages).
    """

    key: Path
    op: str
    value: str
    quoted: bool
    text: str

    @property
    def number(self) -> Optional[float]:
        """The value as a number, or None when it is quoted or not a number."""
        if self.quoted or not _NUMBER_RE.match(self.value):
            return None
        v = self.value
        if "x" in v or "X" in v:
            return float(int(v, 16))
        return float(v)

    def __str__(self) -> str:
        return f"[{self.text}]"


Selector = Union[Index, Slice, Condition]


@dataclass(frozen=True)
class Step:
    """One dotted part of a path: a field name and its selectors."""

    name: str
    selectors: tuple[Selector, ...]
    text: str

    def __str__(self) -> str:
        return self.text


@dataclass(frozen=True)
class Path:
    """A parsed path: its text and its steps."""

    text: str
    steps: tuple[Step, ...]

    def __str__(self) -> str:
        return self.text


def _error(text: str, pos: int, problem: str) -> ConfigPathError:
    return ConfigPathError(f"bad path '{text}': {problem} at position {pos + 1}")


def _closing_bracket(text: str, open_pos: int) -> int:
    """Return the index of the ']' matching the '[' at open_pos (quotes and nesting respected)."""
    depth = 0
    quote = ""
    i = open_pos
    n = len(text)
    while i < n:
        ch = text[i]
        if quote:
            if ch == "\\":
                i += 1
            elif ch == quote:
                quote = ""
        elif ch in "\"'" and depth == 1 and _after_operator(text, open_pos, i):
            quote = ch
        elif ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
            if depth == 0:
                return i
        i += 1
    raise _error(text, open_pos, "unclosed '['")


def _after_operator(text: str, open_pos: int, i: int) -> bool:
    """True when position i follows a comparison operator (a quote opening a condition value)."""
    before = text[open_pos + 1:i].rstrip()
    return before.endswith(("=", ">", "<"))


def _split_condition(body: str) -> tuple[str, str, str]:
    """Split ``key OP value`` at the first operator outside nested brackets."""
    depth = 0
    i = 0
    n = len(body)
    while i < n:
        ch = body[i]
        if ch == "[":
            depth += 1
        elif ch == "]":
            depth -= 1
        elif depth == 0 and ch in "!=<>":
            for op in _OPS:
                if body.startswith(op, i):
                    return body[:i], ("=" if op == "==" else op), body[i + len(op):]
        i += 1
    return body, "", ""


def _parse_selector(text: str, inner: str, pos: int) -> Selector:
    m = _INDEX_RE.match(inner)
    if m:
        return Index(int(m.group(1)))
    m = _SLICE_RE.match(inner)
    if m:
        start, stop, step = (None if g is None else int(g) for g in m.groups())
        if step == 0:
            raise _error(text, pos, "slice step cannot be zero")
        return Slice(start, stop, step)
    key, op, value = _split_condition(inner)
    if not op:
        raise _error(text, pos, f"expected an index, a slice or a condition in '[{inner}]'")
    key = key.strip()
    if not key:
        raise _error(text, pos, f"condition '[{inner}]' has no key before '{op}'")
    try:
        key_path = parse_path(key)
    except ConfigPathError as exc:
        raise _error(text, pos, f"bad condition key '{key}' ({exc})") from None
    value = value.strip()
    quoted = len(value) >= 2 and value[0] in "\"'" and value[-1] == value[0]
    if quoted:
        value = re.sub(r"\\(.)", r"\1", value[1:-1])
    return Condition(key_path, op, value, quoted, inner.strip())


@functools.lru_cache(maxsize=4096)
def parse_path(text: str) -> Path:
    """Parse a config path.

    Args:
        text: e.g. ``feature_configs[input_names[0]=user_id].embedding_dim``.

    Returns:
        The parsed path (cached: parsing the same text again is free).

    Raises:
        ConfigPathError: naming the path and the position of the problem.
    """
    if not isinstance(text, str):
        raise ConfigPathError(f"bad path {text!r}: expected a string")
    steps: list[Step] = []
    pos = 0
    n = len(text)
    if not text.strip():
        raise ConfigPathError("bad path '': empty")
    while True:
        m = _NAME_RE.match(text, pos)
        if not m:
            raise _error(text, pos, "expected a field name")
        name = m.group(1)
        step_start = m.start(1)
        pos = m.end()
        selectors: list[Selector] = []
        while pos < n and text[pos] == "[":
            close = _closing_bracket(text, pos)
            selectors.append(_parse_selector(text, text[pos + 1:close], pos))
            pos = close + 1
            while pos < n and text[pos] == " ":
                pos += 1
        steps.append(Step(name, tuple(selectors), text[step_start:pos].strip()))
        if pos == n:
            break
        if text[pos] != ".":
            raise _error(text, pos, f"expected '.' or '[', got {text[pos]!r}")
        pos += 1
    return Path(text, tuple(steps))
