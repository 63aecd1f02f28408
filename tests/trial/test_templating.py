"""`${...}` substitution and Jinja rendering of trial files."""

from __future__ import annotations

import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from hpo_tools.errors import ConfigError
from hpo_tools.trial.templating import (
    compact_params,
    placeholders,
    render_jinja,
    substitute,
    trial_variables,
)


def _vars(params=None):
    return trial_variables(
        exp_id="EXP1", trial_id="T1", output_dir="/out/T1", params=params or {"lr": 0.01}
    )


def _sub(value, variables=None, environ=None):
    return substitute(
        value,
        _vars() if variables is None else variables,
        environ=environ or {},
        source="trial.ini",
        section="platform_config",
        key="cmd1",
    )


@pytest.mark.parametrize(
    ("template", "expected"),
    [
        ("${exp_id}", "EXP1"),
        ("${trial_id}", "T1"),
        ("${NNI_OUTPUT_DIR}/model", "/out/T1/model"),
        ("${params}", "lr_0.01"),
        ("--lr ${lr}", "--lr 0.01"),
        ("${tuner_params_json}", '{"lr": 0.01}'),
    ],
)
def test_each_trial_variable_is_substituted(template, expected):
    assert _sub(template) == expected


def test_environment_variable_is_substituted():
    assert _sub("key=${MY_KEY}", environ={"MY_KEY": "abc"}) == "key=abc"


def test_trial_variables_win_over_the_environment():
    # An env var called exp_id must not redirect the experiment's paths.
    assert _sub("${exp_id}", environ={"exp_id": "other"}) == "EXP1"


def test_escaped_placeholder_is_left_literal():
    assert _sub("echo $${HOME}") == "echo ${HOME}"


def test_undefined_placeholder_names_file_section_and_key():
    with pytest.raises(ConfigError) as info:
        _sub("--lr ${lrr}")
    message = str(info.value)
    assert message.startswith("trial.ini: [platform_config] cmd1: ${lrr} is not defined")
    # The near miss is offered.
    assert "did you mean 'lr'" in message


def test_parameter_names_may_be_config_paths():
    params = {"train_config.optimizer_config[0].adam_optimizer.learning_rate": 0.5}
    variables = _vars(params)
    value = "${train_config.optimizer_config[0].adam_optimizer.learning_rate}"
    assert _sub(value, variables) == "0.5"


def test_nested_choice_parameter_gives_name_and_sub_parameters():
    variables = _vars({"opt": {"_name": "sgd", "momentum": 0.9}})
    assert _sub("${opt} ${opt.momentum}", variables) == "sgd 0.9"


def test_tuner_params_json_is_valid_json_of_the_parameters():
    params = {"a": 1, "b": "x", "c": True}
    assert json.loads(_sub("${tuner_params_json}", _vars(params))) == params


def test_tuner_params_list_and_dict_are_hpo_tools_01_flat_forms():
    params = {"train_config.lr": 0.01, "${batch_size}": 64, "opt": "adam"}
    variables = _vars(params)
    assert _sub("python train.py ${tuner_params_list}", variables) == (
        "python train.py train_config.lr 0.01 batch_size 64 opt adam")
    assert _sub("${tuner_params_dict}", variables) == (
        "train_config.lr=0.01 batch_size=64 opt=adam")


def test_placeholders_lists_names_but_not_escapes():
    assert list(placeholders("${a} $${b} ${c.d}")) == ["a", "c.d"]


def test_compact_params_is_path_safe_and_uses_short_names():
    text = compact_params({"train_config.lr": 0.001, "model/name": "a b", "flag": True})
    assert text == "lr_0.001_model-name_a-b_flag_true"
    assert "/" not in text and " " not in text


def test_compact_params_keeps_full_names_when_short_names_collide():
    text = compact_params({"a.lr": 1, "b.lr": 2})
    # "lr_1_lr_2" would not say which lr is which.
    assert text == "a.lr_1_b.lr_2"


def test_compact_params_long_sets_are_cut_with_a_distinguishing_hash():
    one = compact_params({f"p{i}": 0.123456789 for i in range(30)})
    two = compact_params({f"p{i}": 0.123456789 + (i == 29) for i in range(30)})
    assert len(one) <= 120 and len(two) <= 120
    # Same prefix, different parameters: the hash keeps the directories apart.
    assert one != two


def test_jinja_loop_generates_keys():
    text = "[s]\n{% for d in ['a', 'b'] %}\ncmd{{ loop.index }}=echo {{ d }}\n{% endfor %}\n"
    assert render_jinja(text, source="t.ini") == "[s]\ncmd1=echo a\ncmd2=echo b\n"


def test_jinja_sees_trial_variables():
    assert render_jinja("x={{ trial_id }}", source="t.ini", context=_vars()) == "x=T1"


def test_jinja_undefined_variable_names_file_and_line():
    with pytest.raises(ConfigError, match=r"t\.ini:2: Jinja: 'nope' is undefined"):
        render_jinja("[s]\nx={{ nope }}\n", source="t.ini")


def test_jinja_syntax_error_names_file_and_line():
    with pytest.raises(ConfigError, match=r"t\.ini:1: Jinja syntax error"):
        render_jinja("{% for %}", source="t.ini")


def test_text_without_jinja_is_returned_unchanged_including_json_braces():
    text = '-Dcluster={"ps":{"count":1}}\n'
    assert render_jinja(text, source="t.ini") == text


_values = st.one_of(st.integers(), st.floats(allow_nan=False), st.text(), st.booleans(),
                    st.lists(st.integers(), max_size=3))


@given(st.dictionaries(st.text(min_size=1, max_size=30), _values, max_size=6))
def test_compact_params_is_always_path_safe(params):
    text = compact_params(params)
    # One path component of letters, digits, ".", "-" and "_", never too long.
    assert text and len(text) <= 120
    assert all(c.isascii() and (c.isalnum() or c in "._-") for c in text)
    assert text not in (".", "..")
