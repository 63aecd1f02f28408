"""Protobuf text format: tokenizer, concrete syntax tree and printer.

The text is cut by one compiled regular expression into ``(trivia, token)`` pairs, where trivia is
the whitespace and ``#`` comments before a token. The pairs are flattened into one list of
*pieces*, ``[trivia0, token0, trivia1, token1, ..., trailing trivia, ""]``, so that
``"".join(pieces)`` is the original text byte for byte. Token ``k`` of a text parsed at ``base``
sits at piece index ``base + 2 * k + 1`` and its trivia at the index before.

The syntax tree (:class:`Body`, :class:`Field`, :class:`ListValue`) holds piece indices, never
copies of text: reading a value decodes its piece, and editing a value rewrites its piece, so an
edit touches only the edited tokens. Structural edits (new fields, deleted fields, replaced
messages) are done by :mod:`hpo_tools.pbtxt.edit` through *expansions*: a piece whose text is
replaced by the rendering of newly parsed pieces appended after the original ones.
"""

from __future__ import annotations

import logging
import math
import re
from itertools import chain
from typing import Union

from hpo_tools.errors import ConfigError

__all__ = [
    "Body",
    "Field",
    "ListValue",
    "SCALAR",
    "MESSAGE",
    "LIST",
    "QUOTES",
    "parse_pieces",
    "decode_scalar",
    "scalar_end",
    "literal_kind",
    "quote_string",
    "escape_string",
    "parse_float_word",
    "parse_int_word",
    "TOKEN_RE",
    "IDENT_RE",
    "INT_RE",
    "FLOAT_RE",
    "SPECIAL_FLOAT_RE",
    "TRUE_WORDS",
    "FALSE_WORDS",
    "unquote_string",
    "position_of",
]

_logger = logging.getLogger(__name__)

# One pattern for the whole text: (trivia)(token). Trivia is whitespace (a byte-order mark
# counts as whitespace) and comments. A token is a quoted string, a word (identifier
# or number: letters, digits, '.', '+', '-'), a ${placeholder}, any other single character
# (punctuation, or garbage the parser reports), or the empty match at the end of the text.
TOKEN_RE = re.compile(
    r"((?:[ \t\r\n\f\v\ufeff]+|#[^\r\n]*)*)"
    r"(\"(?:[^\"\\\r\n]|\\.)*\"|'(?:[^'\\\r\n]|\\.)*'|[\w.+-]+|\$\{[^}\r\n]*\}"
    r"|[^ \t\r\n\f\v\ufeff#]|\Z)"
)
IDENT_RE = re.compile(r"[A-Za-z_][A-Za-z0-9_]*\Z")
_EXT_PART_RE = re.compile(r"[A-Za-z0-9_.]+\Z")
INT_RE = re.compile(r"-?(?:0[xX][0-9a-fA-F]+|[0-9]+)\Z")
FLOAT_RE = re.compile(r"-?(?:(?:[0-9]+\.?[0-9]*|\.[0-9]+)(?:[eE][-+]?[0-9]+)?[fF]?)\Z")
SPECIAL_FLOAT_RE = re.compile(r"-?(?:inf|infinity|nan)\Z", re.IGNORECASE)
_BARE_IDENT_RE = re.compile(r"-?[A-Za-z_][A-Za-z0-9_]*\Z")
_ESCAPE_RE = re.compile(r"\\(?:([0-7]{1,3})|x([0-9a-fA-F]{1,2})|u([0-9a-fA-F]{4})"
                        r"|U([0-9a-fA-F]{8})|(.))", re.DOTALL)
_SIMPLE_ESCAPES = {
    "n": "\n", "t": "\t", "r": "\r", "a": "\a", "b": "\b", "f": "\f", "v": "\v",
    "\\": "\\", "'": "'", '"': '"', "?": "?",
}

QUOTES = frozenset("\"'")
_PUNCT = frozenset("{}<>[],;:/")
TRUE_WORDS = frozenset(("true", "True", "t"))
FALSE_WORDS = frozenset(("false", "False", "f"))

SCALAR = 0
MESSAGE = 1
LIST = 2


class Body:
    """The fields of a message: the root of a document, ``{ ... }``, or ``< ... >``.

    Attributes:
        fields: the fields in text order.
        open_i: piece index of ``{``/``<`` (-1 for the root).
        close_i: piece index of ``}``/``>`` (for the root: the empty end-of-text token).
        owner: the field whose value this body is (None for the root).
    """

    __slots__ = ("fields", "open_i", "close_i", "owner", "_by_name")

    def __init__(self, fields: list[Field], open_i: int, owner: Field | None) -> None:
        self.fields = fields
        self.open_i = open_i
        self.close_i = -1
        self.owner = owner
        self._by_name: dict[str, list[Field]] | None = None

    def by_name(self) -> dict[str, list[Field]]:
        """Fields grouped by name, in text order (built on first use)."""
        index = self._by_name
        if index is None:
            index = {}
            for field in self.fields:
                group = index.get(field.name)
                if group is None:
                    index[field.name] = [field]
                else:
                    group.append(field)
            self._by_name = index
        return index

    def reset_index(self) -> None:
        """Forget :meth:`by_name` after the field list changed."""
        self._by_name = None


class ListValue:
    """A list value ``[a, b]`` or ``[{...}, {...}]``: items are scalar piece indices or bodies."""

    __slots__ = ("open_i", "close_i", "items")

    def __init__(self, open_i: int, close_i: int, items: list[Union[int, Body]]) -> None:
        self.open_i = open_i
        self.close_i = close_i
        self.items = items


class Field:
    """One ``name: value`` / ``name { ... }`` / ``name: [ ... ]`` entry.

    Attributes:
        name: the field name (``[ext.name]`` for extensions and ``Any`` type URLs).
        ni: piece index of the name's first token.
        ei: piece index of the field's last token (its ``,``/``;`` separator when it has one).
        kind: SCALAR, MESSAGE or LIST.
        value: SCALAR: piece index of the (first) value token; MESSAGE: a Body; LIST: a ListValue.
    """

    __slots__ = ("name", "ni", "ei", "kind", "value")

    def __init__(self, name: str, ni: int, kind: int, value: object) -> None:
        self.name = name
        self.ni = ni
        self.ei = ni
        self.kind = kind
        self.value = value


def position_of(text: str, offset: int) -> tuple[int, int]:
    """Return the 1-based (line, column) of a character offset."""
    line = text.count("\n", 0, offset) + 1
    col = offset - (text.rfind("\n", 0, offset) + 1) + 1
    return line, col


class _Parser:
    """Recursive-descent parser over the (trivia, token) pairs of one text."""

    def __init__(self, text: str, source: str, base: int) -> None:
        self.text = text
        self.source = source
        self.base = base
        self.toks = TOKEN_RE.findall(text)
        self.names: set[str] = set()
        self.words: set[str] = set()

    # -- errors -------------------------------------------------------------------------------
    def fail(self, k: int, expected: str) -> ConfigError:
        toks = self.toks
        offset = sum(len(a) + len(b) for a, b in toks[:k]) + len(toks[k][0])
        line, col = position_of(self.text, offset)
        tok = toks[k][1]
        if not tok:
            got = "end of file"
        elif tok[0] in QUOTES and (len(tok) == 1 or tok[-1] != tok[0]):
            got = "an unterminated string"
        else:
            got = repr(tok)
        return ConfigError(f"{self.source}:{line}:{col}: expected {expected}, got {got}")

    # -- grammar ------------------------------------------------------------------------------
    def scalar(self, k: int) -> int:
        """Check the scalar value at token k; return the index of its last token."""
        toks = self.toks
        tok = toks[k][1]
        c = tok[0]
        if c in QUOTES:
            if len(tok) < 2:
                raise self.fail(k, "a value")
            nxt = toks[k + 1][1]
            while nxt[:1] in QUOTES:
                if len(nxt) < 2:
                    raise self.fail(k + 1, "a value")
                k += 1
                nxt = toks[k + 1][1]
            return k
        if tok in self.words:
            return k
        if c == "$" and len(tok) > 1:
            return k
        if INT_RE.match(tok) or FLOAT_RE.match(tok) or _BARE_IDENT_RE.match(tok):
            self.words.add(tok)
            return k
        raise self.fail(k, "a value")

    def body(self, k: int, closer: str, open_i: int, owner: Field | None) -> tuple[Body, int]:
        toks = self.toks
        base = self.base
        names = self.names
        fields: list[Field] = []
        body = Body(fields, open_i, owner)
        while True:
            tok = toks[k][1]
            if not tok:
                if closer:
                    raise self.fail(k, f"'{closer}'")
                body.close_i = base + 2 * k + 1  # the root "closes" at the end-of-text token
                return body, k
            if tok == closer:
                body.close_i = base + 2 * k + 1
                return body, k + 1
            ni = base + 2 * k + 1
            if tok in names:
                name = tok
                k += 1
            elif tok == "[":
                j = k + 1
                parts = []
                while True:
                    part = toks[j][1]
                    if part == "]":
                        break
                    if part != "/" and not _EXT_PART_RE.match(part):
                        raise self.fail(j, "an extension or type URL name or ']'")
                    parts.append(part)
                    j += 1
                if not parts:
                    raise self.fail(j, "an extension or type URL name")
                name = "[" + "".join(parts) + "]"
                k = j + 1
            elif IDENT_RE.match(tok):
                names.add(tok)
                name = tok
                k += 1
            else:
                raise self.fail(k, "a field name" + (f" or '{closer}'" if closer else ""))
            tok = toks[k][1]
            colon = tok == ":"
            if colon:
                k += 1
                tok = toks[k][1]
            if tok == "{" or tok == "<":
                field = Field(name, ni, MESSAGE, None)
                child, k = self.body(k + 1, "}" if tok == "{" else ">", base + 2 * k + 1, field)
                field.value = child
            elif tok == "[":
                field = Field(name, ni, LIST, None)
                field.value, k = self.list_value(k, field)
            elif colon and tok and tok not in _PUNCT:
                field = Field(name, ni, SCALAR, base + 2 * k + 1)
                k = self.scalar(k) + 1
            elif colon:
                raise self.fail(k, "a value")
            else:
                raise self.fail(k, "':' or '{'")
            tok = toks[k][1]
            if tok == "," or tok == ";":
                k += 1
            field.ei = base + 2 * k - 1
            fields.append(field)

    def list_value(self, k: int, owner: Field) -> tuple[ListValue, int]:
        toks = self.toks
        base = self.base
        items: list[Union[int, Body]] = []
        value = ListValue(base + 2 * k + 1, -1, items)
        k += 1
        tok = toks[k][1]
        if tok != "]":
            while True:
                if tok == "{" or tok == "<":
                    child, k = self.body(k + 1, "}" if tok == "{" else ">", base + 2 * k + 1, owner)
                    items.append(child)
                elif tok and tok not in _PUNCT:
                    items.append(base + 2 * k + 1)
                    k = self.scalar(k) + 1
                else:
                    raise self.fail(k, "a value")
                tok = toks[k][1]
                if tok == ",":
                    k += 1
                    tok = toks[k][1]
                    continue
                if tok == "]":
                    break
                raise self.fail(k, "',' or ']'")
        value.close_i = base + 2 * k + 1
        return value, k + 1


def parse_pieces(text: str, source: str = "<string>", base: int = 0) -> tuple[list[str], Body]:
    """Parse protobuf text format into pieces and a syntax tree.

    Args:
        text: the text (a whole document, or the fields of a message).
        source: the name used in error messages (a file name).
        base: the piece index the pieces will start at (for text appended to a document).

    Returns:
        The pieces (``"".join(pieces) == text``) and the root body.

    Raises:
        ConfigError: ``"source:line:col: expected ..., got ..."`` on a syntax error.
    """
    parser = _Parser(text, source, base)
    root, _ = parser.body(0, "", -1, None)
    return list(chain.from_iterable(parser.toks)), root


# -- values ----------------------------------------------------------------------------------


def unquote_string(token: str) -> str:
    """Decode one quoted string token (``"a\\tb"`` or ``'x'``) to text."""
    inner = token[1:-1]
    if "\\" not in inner:
        return inner
    out = bytearray()
    pos = 0
    for m in _ESCAPE_RE.finditer(inner):
        out += inner[pos:m.start()].encode("utf-8")
        octal, hex2, u4, u8, other = m.groups()
        if octal is not None:
            out.append(int(octal, 8) & 0xFF)
        elif hex2 is not None:
            out.append(int(hex2, 16))
        elif u4 is not None or u8 is not None:
            out += chr(int(u4 or u8, 16)).encode("utf-8", "surrogatepass")
        else:
            out += _SIMPLE_ESCAPES.get(other, "\\" + other).encode("utf-8")
        pos = m.end()
    out += inner[pos:].encode("utf-8")
    return out.decode("utf-8", "backslashreplace")


def quote_string(value: str, quote: str = '"') -> str:
    """Encode text as a quoted string token (UTF-8 kept as is, control characters escaped).

    A double-quoted string holding ``"`` but no ``'`` is written in single quotes instead.
    """
    if quote == '"' and '"' in value and "'" not in value:
        quote = "'"
    return quote + escape_string(value, quote) + quote


def escape_string(value: str, quote: str) -> str:
    """Escape text for the inside of a string token quoted with ``quote``."""
    out = []
    for ch in value:
        if ch == "\\":
            out.append("\\\\")
        elif ch == quote:
            out.append("\\" + quote)
        elif ch == "\n":
            out.append("\\n")
        elif ch == "\r":
            out.append("\\r")
        elif ch == "\t":
            out.append("\\t")
        elif ord(ch) < 0x20 or ch == "\x7f":
            out.append(f"\\{ord(ch):03o}")
        else:
            out.append(ch)
    return "".join(out)


def scalar_end(pieces: list[str], i: int) -> int:
    """Return the piece index of the last token of the scalar at i (strings may be adjacent)."""
    if pieces[i][:1] in QUOTES:
        n = len(pieces)
        while i + 2 < n and pieces[i + 2][:1] in QUOTES:
            i += 2
    return i


def parse_int_word(word: str) -> int:
    """Decode an integer literal (``-1``, ``0x1F``, octal ``017``)."""
    sign = -1 if word[0] == "-" else 1
    digits = word.lstrip("-")
    if digits[:2] in ("0x", "0X"):
        return sign * int(digits[2:], 16)
    if len(digits) > 1 and digits[0] == "0":
        return sign * int(digits, 8)
    return sign * int(digits)


def parse_float_word(word: str) -> float:
    """Decode a float literal (``1e-6``, ``.5``, ``1.0f``, ``-inf``, ``nan``)."""
    if word[-1:] in ("f", "F") and not SPECIAL_FLOAT_RE.match(word):
        word = word[:-1]
    low = word.lower()
    if low.lstrip("-") in ("inf", "infinity"):
        return -math.inf if low.startswith("-") else math.inf
    if low.lstrip("-") == "nan":
        return math.nan
    return float(word)


def literal_kind(token: str) -> str:
    """Classify a value token: 'string', 'int', 'float', 'bool', 'enum' or 'placeholder'."""
    c = token[:1]
    if c in QUOTES:
        return "string"
    if c == "$":
        return "placeholder"
    if INT_RE.match(token):
        return "int"
    if FLOAT_RE.match(token) or SPECIAL_FLOAT_RE.match(token):
        return "float"
    if token in TRUE_WORDS or token in FALSE_WORDS:
        return "bool"
    return "enum"


def decode_scalar(pieces: list[str], i: int) -> object:
    """Decode the scalar value whose first token is piece i to int, float, bool or str."""
    token = pieces[i]
    c = token[:1]
    if c in QUOTES:
        text = unquote_string(token)
        n = len(pieces)
        while i + 2 < n and pieces[i + 2][:1] in QUOTES:
            i += 2
            text += unquote_string(pieces[i])
        return text
    if INT_RE.match(token):
        return parse_int_word(token)
    if FLOAT_RE.match(token) or SPECIAL_FLOAT_RE.match(token):
        return parse_float_word(token)
    if token in TRUE_WORDS:
        return True
    if token in FALSE_WORDS:
        return False
    return token
