"""Tokenizer, syntax tree and printer: lossless round trip, value decoding, syntax errors."""

from __future__ import annotations

import math
from pathlib import Path

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.pbtxt import Document

REPO = Path(__file__).resolve().parents[2]
DATA = Path(__file__).resolve().parent / "data"


def _read(path: Path) -> str:
    with open(path, encoding="utf-8", newline="") as handle:
        return handle.read()


def _all_config_files() -> list[Path]:
    # Globbed at collection time so that configs other engineers add are covered too.
    files = sorted((REPO / "samples").rglob("*.config"))
    files += sorted((REPO / "tests").rglob("*.config"))
    return files


def test_syntax_features_file_round_trips_byte_identical() -> None:
    text = _read(DATA / "syntax_features.config")
    # The file mixes CRLF lines in, has tabs, and no final newline: all must survive.
    assert "\r\n" in text and "\t" in text and not text.endswith("\n")
    assert Document.parse(text, "syntax_features.config").to_text() == text


@pytest.mark.parametrize("path", _all_config_files(), ids=lambda p: str(p.relative_to(REPO)))
def test_every_config_in_the_repository_round_trips(path: Path) -> None:
    text = _read(path)
    assert Document.parse(text, str(path)).to_text() == text


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n\n",
        "# only a comment",
        "a: 1",
        "a: 1\r\nb: 2\r\n",
        "a:1,b:2;c:3",
        "a { }",
        "a:{}",
        "a <>",
        "a [ ]",
        "a: [ ]",
        "  \t a  :  'x'  \"y\"  # t\n",
        "m: [{a: 1}, {}]",
        "\ufeffa: 1\n",  # a byte-order mark from a Windows editor
    ],
)
def test_small_texts_round_trip(text: str) -> None:
    assert Document.parse(text).to_text() == text


@pytest.fixture(scope="module")
def features() -> Document:
    return Document.parse(_read(DATA / "syntax_features.config"), "syntax_features.config")


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("num_steps", -1),
        ("save_steps", 1e-6),
        ("eps", 0.5),
        ("hex_mask", 31),
        ("upper_bound", math.inf),
        ("lower_bound", -math.inf),
        ("suffixed", 1.0),
        ("negative_zero", 0),
        ("flags", True),
        ("flags2", True),
        ("flags3", True),
        ("disabled", False),
        ("feature_type", "IdFeature"),
        ("train_input_path", "data/train_*.csv"),
        ("escaped", 'tab\there "quoted" back\\slash ABé'),
        ("joined", "part one, part two and three"),
        ("semicolon", "a;b;c"),
        ("other_quotes", 'he said "hi"'),
        ("offset_info", '{"0": 5, "1": [1, 2]}'),
        ("unicode", "用户画像 — ünïcödé"),
        ("colon_message.a", 1),
        ("angle.b", 2),
        ("angle_colon.c", 3),
        ("input_fields.input_type", "STRING"),
        ("deep.deeper.deepest.y", 2),
        ("last", 1),
    ],
)
def test_values_decode_to_python(features: Document, path: str, expected: object) -> None:
    assert features.get(path) == [expected]


def test_nan_decodes_to_nan(features: Document) -> None:
    assert math.isnan(features.get_one("not_a_number"))


def test_lists_of_scalars_and_messages(features: Document) -> None:
    assert features.get("scalars") == [1, -2, 3.5, math.inf]
    # Adjacent strings inside a list are one element.
    assert features.get("strings") == ["x", "y", "zw"]
    assert features.get("enums") == []
    assert [m.get("n") for m in features.get("messages")] == [[1], [2], []]


def test_extension_and_type_url_names_are_fields(features: Document) -> None:
    assert "[ext.name]" in features.field_names()
    assert "[type.googleapis.com/x.Y]" in features.field_names()


def test_get_text_returns_the_literal_as_written(features: Document) -> None:
    assert features.get_text("suffixed") == ["1.0f"]
    assert features.get_text("train_input_path") == ["'data/train_*.csv'"]
    assert features.get_text("joined") == ['"part one, " \'part two\'\n   " and three"']
    assert features.get_text("angle") == ["< b: 2 >"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a: 1\nb {\n  c: 2\n", "cfg:4:1: expected '}', got end of file"),
        ("a: 1\n  b: }", "cfg:2:6: expected a value, got '}'"),
        ("a 1", "cfg:1:3: expected ':' or '{', got '1'"),
        ("a: 'abc\nb: 1", "cfg:1:4: expected a value, got an unterminated string"),
        ("a: 1.2.3", "cfg:1:4: expected a value, got '1.2.3'"),
        ("a: 1 }", "cfg:1:6: expected a field name, got '}'"),
        ("a { b: 1 >", "cfg:1:10: expected a field name or '}', got '>'"),
        ("a: [1, 2", "cfg:1:9: expected ',' or ']', got end of file"),
        ("a: [1,, 2]", "cfg:1:7: expected a value, got ','"),
        ("1: 2", "cfg:1:1: expected a field name, got '1'"),
        ("a: @", "cfg:1:4: expected a value, got '@'"),
        ("[ext.x { }", "cfg:1:8: expected an extension or type URL name or ']', got '{'"),
        ("é: 1", "cfg:1:1: expected a field name, got 'é'"),
    ],
)
def test_syntax_errors_name_source_line_and_column(text: str, message: str) -> None:
    with pytest.raises(ConfigError) as info:
        Document.parse(text, "cfg")
    # One line: "source:line:col: expected ..., got ..."
    assert str(info.value) == message


def test_syntax_error_position_counts_crlf_lines() -> None:
    with pytest.raises(ConfigError, match=r"^cfg:3:4: "):
        Document.parse("a: 1\r\nb: 2\r\nc: }\r\n", "cfg")
