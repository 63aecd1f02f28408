"""Property tests: generated documents round-trip, read back, and take edits that change only the
edited values.

A document is generated as a model (nested messages, repeated fields in list form and as repeated
lines, scalars of every kind) and printed with random layout (indent unit, CRLF, separators,
comments, blank lines, inline messages, ``{}``/``<>``/``: {}``). Every leaf of the model has a path;
after an edit, every leaf other than the edited one must read back unchanged.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from typing import Any, Union

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo_tools.pbtxt import Document, Message

NAMES = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta", "iota", "kappa"]
ENUMS = ["IdFeature", "RawFeature", "TagFeature", "ADAM", "SGD"]
TEXT = st.text(
    alphabet=st.characters(blacklist_categories=("Cs",), blacklist_characters="\x00"),
    max_size=12,
)


@dataclass
class Scalar:
    kind: str  # int, float, str, bool, enum
    value: Any


@dataclass
class Repeated:
    kind: str
    values: list[Any]
    as_list: bool


@dataclass
class Msg:
    entries: list[tuple[str, Union[Scalar, Repeated, list["Msg"]]]] = field(default_factory=list)


def scalar_values(kind: str) -> st.SearchStrategy[Any]:
    if kind == "int":
        return st.integers(min_value=-(2**40), max_value=2**40)
    if kind == "float":
        return st.floats(allow_nan=False, allow_infinity=False, width=64)
    if kind == "str":
        return TEXT
    if kind == "bool":
        return st.booleans()
    return st.sampled_from(ENUMS)


KINDS = st.sampled_from(["int", "float", "str", "bool", "enum"])


@st.composite
def scalars(draw: Any) -> Scalar:
    kind = draw(KINDS)
    return Scalar(kind, draw(scalar_values(kind)))


@st.composite
def repeateds(draw: Any) -> Repeated:
    kind = draw(KINDS)
    values = draw(st.lists(scalar_values(kind), min_size=1, max_size=4))
    return Repeated(kind, values, draw(st.booleans()))


@st.composite
def messages(draw: Any, depth: int = 0) -> Msg:
    names = draw(st.lists(st.sampled_from(NAMES), unique=True, min_size=0 if depth else 1,
                          max_size=5))
    entries: list[tuple[str, Any]] = []
    for name in names:
        choice = draw(st.integers(0, 4 if depth < 2 else 2))
        if choice <= 1:
            entries.append((name, draw(scalars())))
        elif choice == 2:
            entries.append((name, draw(repeateds())))
        else:
            count = draw(st.integers(1, 2))
            entries.append((name, [draw(messages(depth + 1)) for _ in range(count)]))
    return Msg(entries)


@dataclass
class Layout:
    unit: str
    nl: str
    draw: Any

    def pick(self, options: list[str]) -> str:
        return self.draw(st.sampled_from(options))


def literal(kind: str, value: Any, layout: Layout) -> str:
    if kind == "int":
        return str(value)
    if kind == "float":
        text = repr(value)
        return text if ("." in text or "e" in text) else text + ".0"
    if kind == "bool":
        return layout.pick(["true", "True"] if value else ["false", "False"])
    if kind == "enum":
        return value
    quote = layout.pick(['"', "'"])
    escaped = (value.replace("\\", "\\\\").replace(quote, "\\" + quote)
               .replace("\n", "\\n").replace("\r", "\\r"))
    return quote + escaped + quote


def render_fields(msg: Msg, indent: str, layout: Layout, inline: bool) -> list[str]:
    """Each field as text (may hold newlines when not inline)."""
    out = []
    for name, entry in msg.entries:
        sep = layout.pick(["", "", ",", ";"])
        if isinstance(entry, Scalar):
            out.append(f"{name}: {literal(entry.kind, entry.value, layout)}{sep}")
        elif isinstance(entry, Repeated):
            lits = [literal(entry.kind, v, layout) for v in entry.values]
            if entry.as_list:
                out.append(f"{name}: [{', '.join(lits)}]{sep}")
            else:
                out.extend(f"{name}: {lit}{sep}" for lit in lits)
        else:
            for child in entry:
                opener, closer = {"{": ("{", "}"), "<": ("<", ">"), ":": (": {", "}")}[
                    layout.pick(["{", "{", "<", ":"])]
                child_inline = inline or layout.pick(["block", "block", "inline"]) == "inline"
                inner = render_fields(child, indent + layout.unit, layout, child_inline)
                if child_inline:
                    body = " ".join(inner)
                    out.append(f"{name} {opener} {body} {closer}{sep}" if body
                               else f"{name} {opener}{closer}{sep}")
                else:
                    lines = "".join(f"{layout.nl}{indent}{layout.unit}{line}" for line in inner)
                    out.append(f"{name} {opener}{lines}{layout.nl}{indent}{closer}{sep}")
    if not inline:
        decorated = []
        for line in out:
            if layout.pick(["", "", "", "comment"]) == "comment":
                decorated.append(f"# note: {{ [ ' \" ;{layout.nl}{indent}{line}")
            elif layout.pick(["", "", "", "blank"]) == "blank":
                decorated.append(f"{layout.nl}{indent}{line}")
            else:
                decorated.append(line)
            if layout.pick(["", "", "", "trailing"]) == "trailing":
                decorated[-1] += "  # trailing: x: 1 }"
        out = decorated
    return out


@st.composite
def documents(draw: Any) -> tuple[str, Msg]:
    model = draw(messages())
    layout = Layout(draw(st.sampled_from(["  ", "    ", "\t", " "])),
                    draw(st.sampled_from(["\n", "\r\n"])), draw)
    lines = render_fields(model, "", layout, inline=False)
    text = layout.nl.join(lines)
    if draw(st.booleans()):
        text += layout.nl
    if draw(st.booleans()):
        text = f"# generated{layout.nl}{layout.nl}" + text
    return text, model


def leaves(msg: Msg, prefix: str = "") -> dict[str, list[Any]]:
    """Every scalar leaf path -> the values it reads."""
    out: dict[str, list[Any]] = {}
    for name, entry in msg.entries:
        path = prefix + name
        if isinstance(entry, Scalar):
            out[path] = [entry.value]
        elif isinstance(entry, Repeated):
            out[path] = list(entry.values)
            for i, v in enumerate(entry.values):
                out[f"{path}[{i}]"] = [v]
        else:
            for i, child in enumerate(entry):
                out.update(leaves(child, f"{path}[{i}]."))
    return out


def scalar_leaves(msg: Msg, prefix: str = "") -> list[tuple[str, str]]:
    """(path, kind) of every singular scalar and every element of a repeated field."""
    out = []
    for name, entry in msg.entries:
        path = prefix + name
        if isinstance(entry, Scalar):
            out.append((path, entry.kind))
        elif isinstance(entry, Repeated):
            out.extend((f"{path}[{i}]", entry.kind) for i in range(len(entry.values)))
        else:
            for i, child in enumerate(entry):
                out.extend(scalar_leaves(child, f"{path}[{i}]."))
    return out


def same(a: list[Any], b: list[Any]) -> bool:
    if len(a) != len(b):
        return False
    for x, y in zip(a, b):
        if isinstance(x, float) and isinstance(y, float):
            if not (x == y or (math.isnan(x) and math.isnan(y))):
                return False
        elif x != y or type(x) is not type(y):
            return False
    return True


def assert_leaves(doc: Document, expected: dict[str, list[Any]], skip: set[str]) -> None:
    for path, values in expected.items():
        if path in skip:
            continue
        got = doc.get(path)
        assert same(got, values), (path, got, values)


# HPO_PBTXT_EXAMPLES=2000 runs a longer search by hand; the default keeps the suite fast.
EXAMPLES = int(os.environ.get("HPO_PBTXT_EXAMPLES", "80"))
PROPERTY_SETTINGS = settings(max_examples=EXAMPLES, deadline=None,
                             suppress_health_check=[HealthCheck.too_slow])


@PROPERTY_SETTINGS
@given(documents())
def test_generated_documents_round_trip_byte_identical(doc_and_model: tuple[str, Msg]) -> None:
    text, _ = doc_and_model
    assert Document.parse(text).to_text() == text


@PROPERTY_SETTINGS
@given(documents())
def test_generated_documents_read_back_every_leaf(doc_and_model: tuple[str, Msg]) -> None:
    text, model = doc_and_model
    assert_leaves(Document.parse(text), leaves(model), set())


def _affected(path: str) -> set[str]:
    """The leaf paths a scalar edit of `path` may change: itself and its repeated field."""
    out = {path}
    if path.endswith("]"):
        out.add(path[: path.rindex("[")])
    return out


@PROPERTY_SETTINGS
@given(documents(), st.data())
def test_scalar_edit_changes_only_the_edited_value(
    doc_and_model: tuple[str, Msg], data: Any
) -> None:
    text, model = doc_and_model
    targets = scalar_leaves(model)
    if not targets:
        return
    path, kind = data.draw(st.sampled_from(targets))
    value = data.draw(scalar_values(kind))
    doc = Document.parse(text)
    doc.apply({path: value})
    edited = Document.parse(doc.to_text())
    # The edited value reads back as written ...
    assert same(edited.get(path), [value]), (path, edited.get(path), value)
    # ... and every other leaf is untouched.
    assert_leaves(edited, leaves(model), _affected(path))
    # The text outside the edited token is byte-identical: same length of common prefix+suffix.
    out = doc.to_text()
    prefix = len(_common_prefix(text, out))
    suffix = len(_common_prefix(text[prefix:][::-1], out[prefix:][::-1]))
    old_token = text[prefix:len(text) - suffix]
    assert "\n" not in old_token or kind == "str", old_token


def _common_prefix(a: str, b: str) -> str:
    n = 0
    for x, y in zip(a, b):
        if x != y:
            break
        n += 1
    return a[:n]


@PROPERTY_SETTINGS
@given(documents(), st.data())
def test_list_edit_replaces_a_repeated_field_and_nothing_else(
    doc_and_model: tuple[str, Msg], data: Any
) -> None:
    text, model = doc_and_model
    repeated = [(p, k) for p, k in _repeated_fields(model)]
    if not repeated:
        return
    path, kind = data.draw(st.sampled_from(repeated))
    values = data.draw(st.lists(scalar_values(kind), min_size=0, max_size=5))
    doc = Document.parse(text)
    doc.apply({path: values})
    edited = Document.parse(doc.to_text())
    assert same(edited.get(path), values), (path, edited.get(path), values)
    old = leaves(model)
    skip = {p for p in old if p == path or p.startswith(path + "[")}
    assert_leaves(edited, old, skip)


def _repeated_fields(msg: Msg, prefix: str = "") -> list[tuple[str, str]]:
    out = []
    for name, entry in msg.entries:
        if isinstance(entry, Repeated):
            out.append((prefix + name, entry.kind))
        elif isinstance(entry, list):
            for i, child in enumerate(entry):
                out.extend(_repeated_fields(child, f"{prefix}{name}[{i}]."))
    return out


def _message_paths(msg: Msg, prefix: str = "") -> list[str]:
    out = []
    for name, entry in msg.entries:
        if isinstance(entry, list):
            for i, child in enumerate(entry):
                out.append(f"{prefix}{name}[{i}]")
                out.extend(_message_paths(child, f"{prefix}{name}[{i}]."))
    return out


@PROPERTY_SETTINGS
@given(documents(), st.data())
def test_new_field_and_snippet_edits_keep_everything_else(
    doc_and_model: tuple[str, Msg], data: Any
) -> None:
    text, model = doc_and_model
    parents = [""] + [p + "." for p in _message_paths(model)]
    parent = data.draw(st.sampled_from(parents))
    value = data.draw(st.one_of(st.integers(), TEXT, st.booleans()))
    doc = Document.parse(text)
    doc.apply({f"{parent}added_field": value}, allow_new_fields=True)
    edited = Document.parse(doc.to_text())
    assert same(edited.get(f"{parent}added_field"), [value])
    assert_leaves(edited, leaves(model), set())

    messages_ = _message_paths(model)
    if messages_:
        target = data.draw(st.sampled_from(messages_))
        number = data.draw(st.integers())
        edited.apply({target: f"{{ replaced: {number}\n other: 'x' }}"})
        again = Document.parse(edited.to_text())
        assert again.get(f"{target}.replaced") == [number]
        assert again.get_one(target).field_names() == ["replaced", "other"]
        old = leaves(model)
        assert_leaves(again, old, {p for p in old if p.startswith(target + ".")})


def _walk(msg: Any, prefix: str = "") -> tuple[list[tuple[str, Any]], list[str], list[str]]:
    """(scalar element paths with values, scalar field paths, message paths) of a live view."""
    scalars_, fields_, messages_ = [], [], []
    for name in msg.field_names():
        values = msg.get(name)
        if values and all(isinstance(v, Message) for v in values):
            for i, child in enumerate(values):
                path = f"{prefix}{name}[{i}]"
                messages_.append(path)
                sub = _walk(child, path + ".")
                scalars_ += sub[0]
                fields_ += sub[1]
                messages_ += sub[2]
        elif not any(isinstance(v, Message) for v in values):
            fields_.append(prefix + name)
            scalars_ += [(f"{prefix}{name}[{i}]", v) for i, v in enumerate(values)]
    return scalars_, fields_, messages_


def _like(value: Any) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.booleans()
    if isinstance(value, int):
        return st.integers(-1000, 1000)
    if isinstance(value, float):
        return st.floats(allow_nan=False, allow_infinity=False)
    return st.sampled_from(ENUMS) if value in ENUMS else TEXT


@PROPERTY_SETTINGS
@given(documents(), st.data())
def test_edit_sequences_on_one_document_match_fresh_documents(
    doc_and_model: tuple[str, Msg], data: Any
) -> None:
    # Differential: a document edited many times (stacked splices) prints and reads exactly like
    # a fresh parse of the previous text given the same edit.
    text, _ = doc_and_model
    doc = Document.parse(text)
    for step in range(data.draw(st.integers(1, 6))):
        scalars_, fields_, messages_ = _walk(doc)
        op = data.draw(st.sampled_from(["scalar", "list", "new", "snippet"]))
        if op == "scalar" and scalars_:
            path, old = data.draw(st.sampled_from(scalars_))
            edits: dict[str, Any] = {path: data.draw(_like(old))}
        elif op == "list" and fields_:
            path = data.draw(st.sampled_from(fields_))
            old = doc.get(path)
            if not old:
                continue
            edits = {path: data.draw(st.lists(_like(old[0]), max_size=4))}
        elif op == "snippet" and messages_:
            snippet = data.draw(st.sampled_from([f"{{ s{step}: {step}\n t: 'x' }}",
                                                 f"{{ s{step}: {step}  # c\n}}"]))
            edits = {data.draw(st.sampled_from(messages_)): snippet}
        else:
            parent = data.draw(st.sampled_from([""] + [m + "." for m in messages_]))
            value = data.draw(st.one_of(
                st.integers(), TEXT, st.lists(st.integers(), max_size=3),
                st.just(f"{{ inner{step}: {step} }}"), st.just("{\n a: 1\n b { c: 'd' }\n}"),
                st.just("{ a: 1  # a comment ends its line }\n}"),
            ))
            edits = {f"{parent}new{step}": value}
        before = doc.to_text()
        fresh = Document.parse(before)
        fresh.apply(edits, allow_new_fields=True)
        doc.apply(edits, allow_new_fields=True)
        assert doc.to_text() == fresh.to_text(), edits
        reparsed = Document.parse(doc.to_text())
        for path, _value in _walk(reparsed)[0]:
            assert same(doc.get(path), reparsed.get(path)), path
