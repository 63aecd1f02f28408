"""Path grammar: steps, every selector kind, spaces, quoting, and error positions."""

from __future__ import annotations

import pytest

from hpo_tools.errors import ConfigPathError
from hpo_tools.pbtxt import Condition, Index, Slice, parse_path


def test_dotted_path_is_a_list_of_steps() -> None:
    path = parse_path("train_config.optimizer_config.adam_optimizer")
    assert [s.name for s in path.steps] == ["train_config", "optimizer_config", "adam_optimizer"]
    assert all(not s.selectors for s in path.steps)


@pytest.mark.parametrize(
    ("text", "selector"),
    [
        ("a[0]", Index(0)),
        ("a[-2]", Index(-2)),
        ("a[ 3 ]", Index(3)),
        ("a[:]", Slice(None, None)),
        ("a[1:]", Slice(1, None)),
        ("a[:-1]", Slice(None, -1)),
        ("a[ 1 : 3 ]", Slice(1, 3)),
        ("a[::2]", Slice(None, None, 2)),
    ],
)
def test_index_and_slice_selectors(text: str, selector: object) -> None:
    assert parse_path(text).steps[0].selectors == (selector,)


@pytest.mark.parametrize(
    ("text", "key", "op", "value", "quoted"),
    [
        ("a[input_names[0]=user_id]", "input_names[0]", "=", "user_id", False),
        ("a[ x == 1 ]", "x", "=", "1", False),
        ("a[x!=1]", "x", "!=", "1", False),
        ("a[x>=1.5]", "x", ">=", "1.5", False),
        ("a[x<=1e-3]", "x", "<=", "1e-3", False),
        ("a[x>-1]", "x", ">", "-1", False),
        ("a[x<b]", "x", "<", "b", False),
        ("a[x=cate.level1]", "x", "=", "cate.level1", False),
        ('a[tower_name="c.v]r"]', "tower_name", "=", "c.v]r", True),
        ("a[name='x y']", "name", "=", "x y", True),
        ("a[dnn.hidden_units[-1]>=64]", "dnn.hidden_units[-1]", ">=", "64", False),
    ],
)
def test_condition_selectors(text: str, key: str, op: str, value: str, quoted: bool) -> None:
    (cond,) = parse_path(text).steps[0].selectors
    assert isinstance(cond, Condition)
    assert (cond.key.text, cond.op, cond.value, cond.quoted) == (key, op, value, quoted)


def test_condition_value_is_a_number_only_when_unquoted() -> None:
    assert parse_path("a[x=32]").steps[0].selectors[0].number == 32.0
    assert parse_path("a[x=0x10]").steps[0].selectors[0].number == 16.0
    assert parse_path('a[x="32"]').steps[0].selectors[0].number is None
    assert parse_path("a[x=abc]").steps[0].selectors[0].number is None


def test_dots_inside_brackets_do_not_split_steps() -> None:
    path = parse_path("feature_configs[input_names[0]=a.b.c].embedding_dim")
    assert [s.name for s in path.steps] == ["feature_configs", "embedding_dim"]
    assert path.steps[0].text == "feature_configs[input_names[0]=a.b.c]"


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("a.", "bad path 'a.': expected a field name at position 3"),
        ("a..b", "bad path 'a..b': expected a field name at position 3"),
        ("a[0", "bad path 'a[0': unclosed '[' at position 2"),
        (
            "a[x]",
            "bad path 'a[x]': expected an index, a slice or a condition in '[x]' at position 2",
        ),
        ("a[=1]", "bad path 'a[=1]': condition '[=1]' has no key before '=' at position 2"),
        ("a[::0]", "bad path 'a[::0]': slice step cannot be zero at position 2"),
        ("a b", "bad path 'a b': expected '.' or '[', got 'b' at position 3"),
        ("1a", "bad path '1a': expected a field name at position 1"),
        ("", "bad path '': empty"),
    ],
)
def test_path_errors_name_the_path_and_position(text: str, message: str) -> None:
    with pytest.raises(ConfigPathError) as info:
        parse_path(text)
    assert str(info.value) == message
