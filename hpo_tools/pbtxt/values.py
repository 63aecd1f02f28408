"""Value conversion and typing for edits: a Python value -> the literal a field is written with.

A field's kind comes from the schema (:func:`schema_kind`) or, without one, from the literal the
file already has (:func:`scalar_kind`); :func:`coerce` checks a value against that kind and returns
its text-format literal. Enum names, ``RawText`` (untyped text split from a multi-key entry),
lists (:func:`list_values`) and ``{ ... }`` message snippets (:func:`snippet`) are handled here.
Every misfit is a ConfigPathError naming the path, the field and what was expected.
"""

from __future__ import annotations

import math
import numbers
import textwrap
from typing import Any, Optional

from hpo_tools.errors import ConfigError, ConfigPathError, did_you_mean
from hpo_tools.pbtxt.paths import Path
from hpo_tools.pbtxt.syntax import (
    FALSE_WORDS,
    FLOAT_RE,
    IDENT_RE,
    INT_RE,
    LIST,
    QUOTES,
    SPECIAL_FLOAT_RE,
    TRUE_WORDS,
    Body,
    decode_scalar,
    literal_kind,
    parse_float_word,
    parse_int_word,
    parse_pieces,
    quote_string,
)

__all__ = [
    "RawText",
    "FloatValue",
    "BOOL_TEXT",
    "EXPECTED",
    "schema_kind",
    "format_float",
    "plain_text",
    "snippet_lines",
    "value_error",
    "coerce",
    "to_int",
    "to_enum",
    "scalar_kind",
    "snippet",
    "list_values",
]


class RawText(str):
    """Text whose type is unknown (a value split from a ``"a;b": "1;2"`` entry).

    Where the field's type is known it is converted like any string; where it is not (a new field,
    a ``${placeholder}``) numbers and booleans in it are written bare, like real numbers.
    """


class FloatValue(float):
    """A number the caller knows belongs in a float field (a learning rate, say).

    Without a schema a field's type comes from its literal, so ``learning_rate: 1`` looks like an
    int field and refuses a fraction. A ``FloatValue`` is written as a float there instead. With a
    schema the schema decides, as for any value.
    """


BOOL_TEXT = {w: True for w in TRUE_WORDS}
BOOL_TEXT.update({w: False for w in FALSE_WORDS})

_INT_RANGES: dict[str, tuple[int, int]] = {
    "int32": (-(2**31), 2**31 - 1),
    "int64": (-(2**63), 2**63 - 1),
    "uint32": (0, 2**32 - 1),
    "uint64": (0, 2**64 - 1),
}
EXPECTED = {
    "int": "an integer",
    "int32": "an integer (int32)",
    "int64": "an integer (int64)",
    "uint32": "a non-negative integer (uint32)",
    "uint64": "a non-negative integer (uint64)",
    "float": "a number",
    "bool": "true or false",
    "string": "a string",
    "enum": "an enum name",
}


def schema_kind(fd: Any) -> str:
    """The value kind of a field: int32/int64/uint32/uint64/float/bool/string/enum/message."""
    from google.protobuf.descriptor import FieldDescriptor as FD

    t = fd.type
    if t in (FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32):
        return "int32"
    if t in (FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64):
        return "int64"
    if t in (FD.TYPE_UINT32, FD.TYPE_FIXED32):
        return "uint32"
    if t in (FD.TYPE_UINT64, FD.TYPE_FIXED64):
        return "uint64"
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        return "float"
    if t == FD.TYPE_BOOL:
        return "bool"
    if t in (FD.TYPE_STRING, FD.TYPE_BYTES):
        return "string"
    if t == FD.TYPE_ENUM:
        return "enum"
    return "message"


def format_float(x: float) -> str:
    """A float as a text-format literal (``nan``, ``inf``, ``-inf`` or its shortest repr)."""
    if math.isnan(x):
        return "nan"
    if math.isinf(x):
        return "inf" if x > 0 else "-inf"
    return repr(x)


def plain_text(value: object) -> str:
    """A value as bare text (for ${placeholders})."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return format_float(value)
    return str(value)


def snippet_lines(inner: str) -> list[str]:
    """The lines of a text-format snippet, dedented, without blank first/last lines."""
    lines = inner.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    while lines and not lines[0].strip():
        lines.pop(0)
    while lines and not lines[-1].strip():
        lines.pop()
    if not lines:
        return []
    first = lines[0].strip()
    rest = textwrap.dedent("\n".join(lines[1:])).split("\n") if len(lines) > 1 else []
    return [first] + [line.rstrip() for line in rest]


def value_error(path: Path, part: str, value: object, expected: str) -> ConfigPathError:
    """The error for a value that does not fit the field named `part`."""
    return ConfigPathError(
        f"{path.text}: value {value!r} does not fit '{part}': expected {expected}"
    )


def coerce(path: Path, part: str, value: object, kind: str, token: str, fd: Any) -> str:
    """The literal that writes `value` into a field of `kind`; `token` is the old literal.

    `part` names the field in messages; `fd` is its FieldDescriptor or None. Kind ``"any"`` (a new
    field or a ``${placeholder}`` with no type known) writes numbers and booleans bare.
    """
    if isinstance(value, (list, tuple)):
        raise value_error(path, part, value, f"{EXPECTED.get(kind, 'a value')}, "
                          f"not a list (a list replaces a whole repeated field: "
                          f"give the path without [...])")
    if kind == "int" and isinstance(value, FloatValue):  # an int literal in a float field
        return format_float(float(value))
    if kind in ("int", "int32", "int64", "uint32", "uint64"):
        number = to_int(path, part, value, kind)
        bounds = _INT_RANGES.get(kind)
        if bounds is not None and not bounds[0] <= number <= bounds[1]:
            raise value_error(path, part, value,
                              f"{EXPECTED[kind]} in [{bounds[0]}, {bounds[1]}]")
        return str(number)
    if kind == "float":
        if isinstance(value, bool):
            raise value_error(path, part, value, "a number")
        if isinstance(value, (int, float)):
            return format_float(float(value))
        text = str(value).strip()
        if INT_RE.match(text):
            return format_float(float(parse_int_word(text)))
        if FLOAT_RE.match(text) or SPECIAL_FLOAT_RE.match(text):
            return format_float(parse_float_word(text))
        raise value_error(path, part, value, "a number")
    if kind == "bool":
        if isinstance(value, bool):
            flag = value
        elif isinstance(value, str) and value.strip() in BOOL_TEXT:
            flag = BOOL_TEXT[value.strip()]
        else:
            raise value_error(path, part, value, "true or false")
        if token in ("True", "False"):
            return "True" if flag else "False"
        return "true" if flag else "false"
    if kind == "string":
        quote = token[0] if token[:1] in QUOTES else '"'
        text = plain_text(value) if not isinstance(value, str) else value
        return quote_string(str(text), quote)
    if kind == "enum":
        return to_enum(path, part, value, fd)
    # "any": a new field or a ${placeholder} with no type known.
    if isinstance(value, (bool, int, float)):
        return plain_text(value)
    if isinstance(value, numbers.Integral):  # numpy integers from a tuner
        return str(int(value))
    if isinstance(value, numbers.Real):
        return format_float(float(value))
    text = str(value)
    if text.startswith("enum:"):
        return to_enum(path, part, text, None)
    if isinstance(value, RawText):
        stripped = text.strip()
        if (INT_RE.match(stripped) or FLOAT_RE.match(stripped)
                or SPECIAL_FLOAT_RE.match(stripped) or stripped in BOOL_TEXT):
            return stripped
    return quote_string(text)


def to_int(path: Path, part: str, value: object, kind: str) -> int:
    """An integer from an int, an integral float or integer text (range checked by coerce)."""
    expected = EXPECTED[kind]
    if isinstance(value, bool):
        raise value_error(path, part, value, expected)
    if isinstance(value, int):
        return value
    if isinstance(value, float):
        if math.isfinite(value) and value.is_integer():
            return int(value)
        raise value_error(path, part, value, f"{expected}, not a fraction")
    text = str(value).strip()
    if INT_RE.match(text):
        return parse_int_word(text)
    if FLOAT_RE.match(text) and not text.endswith(("f", "F")):
        number = float(text)
        if number.is_integer():
            return int(number)
        raise value_error(path, part, value, f"{expected}, not a fraction")
    raise value_error(path, part, value, expected)


def to_enum(path: Path, part: str, value: object, fd: Any) -> str:
    """An enum name: checked against the schema's enum when `fd` has one, else by its shape."""
    enum = fd.enum_type if fd is not None else None
    if isinstance(value, int) and not isinstance(value, bool) and enum is not None:
        found = enum.values_by_number.get(value)
        if found is not None:
            return found.name
    if not isinstance(value, str):
        raise value_error(path, part, value, "an enum name")
    name = value.strip()
    if name.startswith("enum:"):
        name = name[5:].strip()
    if enum is not None:
        if name not in enum.values_by_name:
            names = list(enum.values_by_name)
            raise ConfigPathError(
                f"{path.text}: value {value!r} does not fit '{part}': expected one of "
                f"{enum.full_name} ({', '.join(names)}){did_you_mean(name, names)}"
            )
        return name
    if not IDENT_RE.match(name):
        raise value_error(path, part, value, "an enum name (letters, digits, '_')")
    return name


def scalar_kind(fd: Any, token: str) -> str:
    """The kind of a scalar field: from its descriptor, else from the literal in the file."""
    if fd is not None:
        return schema_kind(fd)
    kind = literal_kind(token)
    return "any" if kind == "placeholder" else kind


def snippet(path: Path, part: str, value: object, fd: Any) -> list[str]:
    """Check a '{ ... }' message value; return its dedented lines."""
    if not isinstance(value, str):
        raise value_error(path, part, value, "a '{ ... }' text-format message")
    inner = value.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1]
    try:
        parse_pieces(inner, f"value of {path.text}")
    except ConfigError as exc:
        raise ConfigPathError(
            f"{path.text}: value of '{part}' is not a text-format message: {exc}"
        ) from None
    if fd is not None and fd.message_type is not None:
        from google.protobuf import message_factory, text_format

        try:
            text_format.Parse(inner, message_factory.GetMessageClass(fd.message_type)())
        except text_format.ParseError as exc:
            detail = str(exc).splitlines()[0] if str(exc) else "does not parse"
            raise ConfigPathError(
                f"{path.text}: value of '{part}' does not fit {fd.message_type.full_name}: "
                f"{detail}"
            ) from None
    return snippet_lines(inner)


def list_values(value: object) -> Optional[list[object]]:
    """A list value, or a '[a, b]' string parsed as one; None for anything else."""
    if isinstance(value, (list, tuple)):
        return list(value)
    if isinstance(value, str):
        text = value.strip()
        if text.startswith("[") and text.endswith("]"):
            try:
                pieces, root = parse_pieces(f"x: {text}")
            except ConfigError:
                return None
            field = root.fields[0]
            if field.kind != LIST or any(isinstance(i, Body) for i in field.value.items):
                return None
            out: list[object] = []
            for i in field.value.items:
                token = pieces[i]
                out.append(decode_scalar(pieces, i) if token[:1] in QUOTES
                           else RawText(token))
            return out
    return None
