"""Editing without a schema: selectors, values, lists, snippets, new fields, errors, rollback."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo_tools.errors import ConfigError, ConfigPathError
from hpo_tools.pbtxt import Document, Message, RawText, apply_edits

CONFIG = """\
# pipeline
model_dir: "experiments/dbmtl"
train_config {
  optimizer_config {
    adam_optimizer {
      learning_rate {
        exponential_decay_learning_rate {
          initial_learning_rate: 0.001  # lr
          decay_steps: 1000
        }
      }
    }
  }
  num_steps: 100
  num_steps: 200
  sync_replicas: True
}
feature_configs {
  input_names: "user_id"
  feature_type: IdFeature
  embedding_dim: 16
  hash_bucket_size: 100000
}
feature_configs {
  input_names: "item_id"
  feature_type: IdFeature
  embedding_dim: 32
  hash_bucket_size: 500000
}
feature_configs { input_names: 'price' feature_type: RawFeature boundaries: [1.5, 10.0] }
model_config {
  dbmtl {
    task_towers {
      tower_name: "ctr"
      dnn { hidden_units: [256, 128, 64] }
    }
    task_towers {
      tower_name: "cvr"
      dnn {
        hidden_units: 256
        hidden_units: 32
      }
    }
  }
}
"""

LR = ("train_config.optimizer_config.adam_optimizer.learning_rate."
      "exponential_decay_learning_rate.initial_learning_rate")


def edit(edits: dict, text: str = CONFIG, **kwargs: object) -> str:
    return apply_edits(text, edits, source="pipeline.config", **kwargs)


def changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new) if a != b]


# -- no edits, scalar edits touch one token -----------------------------------------------------


def test_no_edits_reproduce_the_text() -> None:
    assert edit({}) == CONFIG


def test_scalar_edit_changes_only_that_token() -> None:
    out = edit({LR: 0.01})
    # The comment, the indentation and every other line stay.
    assert changed_lines(CONFIG, out) == [
        (
            "          initial_learning_rate: 0.001  # lr",
            "          initial_learning_rate: 0.01  # lr",
        )
    ]


def test_index_selector_edits_one_element() -> None:
    out = edit({"feature_configs[1].embedding_dim": 8})
    assert Document.parse(out).get("feature_configs[:].embedding_dim") == [16, 8]


def test_negative_index_selector_edits_from_the_end() -> None:
    out = edit({"feature_configs[-1].input_names[0]": "cost"})
    assert changed_lines(CONFIG, out)[0][1].startswith("feature_configs { input_names: 'cost' ")


def test_all_selector_fails_on_an_element_without_the_field() -> None:
    # price has no embedding_dim: without a schema the edit must not invent one.
    with pytest.raises(ConfigPathError) as info:
        edit({"feature_configs[:].embedding_dim": 8})
    assert str(info.value) == (
        "feature_configs[:].embedding_dim: no field 'embedding_dim' in feature_configs[2]"
    )


def test_all_selector_edits_every_element() -> None:
    out = edit({"feature_configs[:].feature_type": "RawFeature"})
    assert Document.parse(out).get("feature_configs[:].feature_type") == ["RawFeature"] * 3


def test_slice_selector_edits_a_range() -> None:
    out = edit({"feature_configs[0:2].hash_bucket_size": 7})
    assert Document.parse(out).get("feature_configs[:].hash_bucket_size") == [7, 7]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("[input_names[0]=item_id]", [16, 1]),
        ('[input_names[0]="item_id"]', [16, 1]),
        ("[feature_type!=RawFeature]", [1, 1]),
        ("[embedding_dim>=32]", [16, 1]),
        ("[embedding_dim<=16]", [1, 32]),
        ("[embedding_dim>16]", [16, 1]),
        ("[embedding_dim<32]", [1, 32]),
        ("[ hash_bucket_size = 1e5 ]", [1, 32]),
    ],
)
def test_condition_selectors_edit_matching_elements(selector: str, expected: list[int]) -> None:
    out = edit({f"feature_configs{selector}.embedding_dim": 1})
    assert Document.parse(out).get("feature_configs[:].embedding_dim") == expected


def test_condition_sees_values_changed_by_earlier_edits() -> None:
    # Edits apply in order: the second condition matches the name the first one wrote.
    out = edit({
        "feature_configs[input_names[0]=user_id].input_names[0]": "uid",
        "feature_configs[input_names[0]=uid].embedding_dim": 4,
    })
    assert Document.parse(out).get("feature_configs[0].embedding_dim") == [4]


def test_singular_field_written_twice_is_changed_everywhere() -> None:
    out = edit({"train_config.num_steps": 5})
    assert Document.parse(out).get("train_config.num_steps") == [5, 5]


def test_nested_condition_path_with_quoted_value() -> None:
    out = edit({'model_config.dbmtl.task_towers[tower_name="cvr"].dnn.hidden_units[1]': 16})
    towers = Document.parse(out).get("model_config.dbmtl.task_towers[1].dnn.hidden_units")
    assert towers == [256, 16]


def test_hidden_units_index_in_list_form() -> None:
    out = edit({"model_config.dbmtl.task_towers[0].dnn.hidden_units[2]": 32})
    assert "dnn { hidden_units: [256, 128, 32] }" in out


def test_feature_configs_path_edits_feature_config_features() -> None:
    text = 'feature_config {\n  features {\n    input_names: "a"\n    embedding_dim: 4\n  }\n}\n'
    out = edit({"feature_configs[input_names[0]=a].embedding_dim": 8}, text)
    assert out == text.replace("embedding_dim: 4", "embedding_dim: 8")


# -- value typing from the literal in the file --------------------------------------------------


@pytest.mark.parametrize(
    ("path", "value", "literal"),
    [
        (LR, 1, "initial_learning_rate: 1.0"),  # a float field prints as a float
        (LR, "1e-6", "initial_learning_rate: 1e-06"),
        (LR, 0.5, "initial_learning_rate: 0.5"),
        (LR, "0x10", "initial_learning_rate: 16.0"),
        (LR, "-inf", "initial_learning_rate: -inf"),
        ("feature_configs[0].embedding_dim", "24", "embedding_dim: 24"),
        ("feature_configs[0].embedding_dim", 24.0, "embedding_dim: 24"),  # quniform gives floats
        ("model_dir", "new/dir", 'model_dir: "new/dir"'),
        ("model_dir", 5, 'model_dir: "5"'),  # a quoted field stays quoted
        ("model_dir", 'say "hi"', "model_dir: 'say \"hi\"'"),
        ("feature_configs[2].input_names[0]", "x", "input_names: 'x'"),  # the quote kind stays
        ("feature_configs[0].feature_type", "RawFeature", "feature_type: RawFeature"),
        ("feature_configs[0].feature_type", "enum:TagFeature", "feature_type: TagFeature"),
        ("train_config.sync_replicas", False, "sync_replicas: False"),  # the spelling stays
        ("train_config.sync_replicas", "true", "sync_replicas: True"),
        ("feature_configs[2].boundaries[0]", 2, "boundaries: [2.0, 10.0]"),
    ],
)
def test_value_is_typed_by_the_literal_in_the_file(path: str, value: object, literal: str) -> None:
    assert literal in edit({path: value})


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        ("feature_configs[0].embedding_dim", "abc", "expected an integer"),
        ("feature_configs[0].embedding_dim", 8.5, "expected an integer, not a fraction"),
        ("feature_configs[0].embedding_dim", True, "expected an integer"),
        (LR, "fast", "expected a number"),
        ("train_config.sync_replicas", "yes", "expected true or false"),
        ("feature_configs[0].feature_type", "not an enum", "expected an enum name"),
        ("feature_configs[0].feature_type", 3, "expected an enum name"),
    ],
)
def test_value_that_does_not_fit_the_literal_is_an_error(
    path: str, value: object, expected: str
) -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({path: value})
    message = str(info.value)
    # One line naming the full path, the value and the field.
    assert message.startswith(f"{path}: value {value!r} does not fit ")
    assert expected in message and "\n" not in message


# -- lists --------------------------------------------------------------------------------------


def test_list_value_replaces_a_list_form_field() -> None:
    out = edit({"model_config.dbmtl.task_towers[0].dnn.hidden_units": [512, 256]})
    assert "dnn { hidden_units: [512, 256] }" in out


def test_list_value_replaces_repeated_lines_keeping_their_layout() -> None:
    out = edit({"model_config.dbmtl.task_towers[1].dnn.hidden_units": [64, 32, 16]})
    assert (
        "      dnn {\n        hidden_units: 64\n        hidden_units: 32\n"
        "        hidden_units: 16\n      }\n"
    ) in out


def test_shorter_list_removes_extra_lines() -> None:
    out = edit({"model_config.dbmtl.task_towers[1].dnn.hidden_units": [8]})
    assert "      dnn {\n        hidden_units: 8\n      }\n" in out


def test_list_given_as_text_like_easyrec_edit_config_json() -> None:
    out = edit({"model_config.dbmtl.task_towers[0].dnn.hidden_units": "[128, 64]"})
    assert Document.parse(out).get("model_config.dbmtl.task_towers[0].dnn.hidden_units") == [
        128,
        64,
    ]


def test_scalar_value_for_a_list_form_field_makes_a_one_element_list() -> None:
    # Same as EasyRec's edit_config: a repeated field given one value holds just that value.
    out = edit({"model_config.dbmtl.task_towers[0].dnn.hidden_units": 7})
    assert "dnn { hidden_units: [7] }" in out


def test_list_elements_are_typed_like_the_existing_elements() -> None:
    out = edit({"feature_configs[2].boundaries": [1, 2]})
    assert "boundaries: [1.0, 2.0]" in out


def test_list_value_with_a_selector_is_an_error() -> None:
    with pytest.raises(ConfigPathError, match=r"a list replaces a whole repeated field"):
        edit({"model_config.dbmtl.task_towers[0].dnn.hidden_units[0]": [1, 2]})


# -- messages -----------------------------------------------------------------------------------


def test_message_snippet_replaces_the_contents_like_easyrec() -> None:
    out = edit({"train_config.optimizer_config.adam_optimizer.learning_rate":
                "{ constant_learning_rate { learning_rate: 0.01 } }"})
    doc = Document.parse(out)
    lr = doc.get_one("train_config.optimizer_config.adam_optimizer.learning_rate")
    # The old schedule is gone; only the snippet's fields remain.
    assert lr.field_names() == ["constant_learning_rate"]
    assert lr.get("constant_learning_rate.learning_rate") == [0.01]


def test_multi_line_snippet_is_reindented_to_the_message() -> None:
    out = edit({"model_config.dbmtl.task_towers[1].dnn": "{\nhidden_units: 1\nuse_bn: false\n}"})
    assert "      dnn {\n        hidden_units: 1\n        use_bn: false\n      }\n" in out


def test_snippet_with_a_syntax_error_names_path_and_position() -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"model_config.dbmtl.task_towers[1].dnn": "{ hidden_units: }"})
    assert str(info.value) == (
        "model_config.dbmtl.task_towers[1].dnn: value of 'model_config.dbmtl.task_towers[1].dnn' "
        "is not a text-format message: value of model_config.dbmtl.task_towers[1].dnn:1:16: "
        "expected a value, got end of file"
    )


def test_number_into_a_message_is_an_error() -> None:
    with pytest.raises(ConfigPathError, match=r"expected a '\{ \.\.\. \}' text-format message"):
        edit({"model_config.dbmtl.task_towers[0].dnn": 5})


# -- multi-key entries and placeholders ---------------------------------------------------------


def test_multi_key_entry_sets_each_key_to_its_value() -> None:
    out = edit({"feature_configs[0].embedding_dim;feature_configs[1].embedding_dim": "4;12"})
    assert Document.parse(out).get("feature_configs[:].embedding_dim") == [4, 12]


def test_multi_key_entry_accepts_a_list_of_values() -> None:
    out = edit({f"{LR};train_config.sync_replicas": [0.1, False]})
    assert Document.parse(out).get(LR) == [0.1]


def test_multi_key_count_mismatch_is_an_error_not_a_truncation() -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"feature_configs[0].embedding_dim;feature_configs[1].embedding_dim": "4;12;9"})
    assert str(info.value) == (
        "feature_configs[0].embedding_dim;feature_configs[1].embedding_dim: "
        "2 keys but 3 values in '4;12;9'"
    )


def test_string_value_holding_a_semicolon_is_not_split_for_a_single_key() -> None:
    out = edit({"model_dir": "a;b"})
    assert 'model_dir: "a;b"' in out


def test_placeholder_key_replaces_every_occurrence_in_the_text() -> None:
    text = 'train_input_path: "${data}/train"\neval_input_path: "${data}/eval"\nnum_steps: ${n}\n'
    out = edit({"${data}": "oss://b/d", "${n}": 10}, text)
    assert out == 'train_input_path: "oss://b/d/train"\neval_input_path: "oss://b/d/eval"\n' \
        "num_steps: 10\n"


def test_placeholder_value_is_escaped_inside_strings() -> None:
    out = edit({"${x}": 'a"b'}, 'p: "${x}"\n')
    assert Document.parse(out).get("p") == ['a"b']


def test_multi_key_entry_may_hold_placeholders() -> None:
    # Each key of "a;b" is any edit key, so a placeholder can share an entry with a path.
    out = edit({"${n};train_config.sync_replicas": "10;false"}, "num_steps: ${n}\n"
               "train_config { sync_replicas: true }\n")
    assert out == "num_steps: 10\ntrain_config { sync_replicas: false }\n"


def test_missing_placeholder_is_an_error() -> None:
    with pytest.raises(ConfigPathError, match=r"^\$\{nope\}: the placeholder does not occur in "
                                              r"pipeline.config$"):
        edit({"${nope}": 1})


# -- absent fields ------------------------------------------------------------------------------


def test_absent_field_is_an_error_with_did_you_mean() -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"train_config.num_step": 5})
    assert str(info.value) == (
        "train_config.num_step: no field 'num_step' in train_config (did you mean 'num_steps'?)"
    )


def test_absent_intermediate_message_is_an_error_naming_it() -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"train_config.optimizer_config.adam_optimzer.learning_rate": "{}"})
    assert str(info.value) == (
        "train_config.optimizer_config.adam_optimzer.learning_rate: no field 'adam_optimzer' in "
        "train_config.optimizer_config (did you mean 'adam_optimizer'?)"
    )


def test_allow_new_fields_adds_after_the_last_field_with_sibling_indentation() -> None:
    out = edit({"feature_configs[0].max_seq_len": 50}, allow_new_fields=True)
    assert '  hash_bucket_size: 100000\n  max_seq_len: 50\n}\nfeature_configs {\n  input_names: ' \
        '"item_id"' in out


@pytest.mark.parametrize(
    ("value", "literal"),
    [
        (3, "x: 3"),
        (0.5, "x: 0.5"),
        (True, "x: true"),
        ("abc", 'x: "abc"'),
        ("enum:RawFeature", "x: RawFeature"),
        (RawText("7"), "x: 7"),
        ([1, "a"], 'x: [1, "a"]'),
        ("{ y: 1 }", "x { y: 1 }"),
    ],
)
def test_allow_new_fields_writes_numbers_bare_and_others_quoted(
    value: object, literal: str
) -> None:
    out = edit({"train_config.x": value}, allow_new_fields=True)
    assert f"  sync_replicas: True\n  {literal}\n}}" in out


def test_allow_new_fields_creates_absent_parents() -> None:
    out = edit({"model_config.dbmtl.bottom_dnn.hidden_units": [8]}, allow_new_fields=True)
    assert "    bottom_dnn {\n      hidden_units: [8]\n    }\n  }\n}\n" in out


def test_allow_new_fields_inline_message_gets_inline_field() -> None:
    out = edit({"feature_configs[2].embedding_dim": 4}, allow_new_fields=True)
    assert "boundaries: [1.5, 10.0] embedding_dim: 4 }" in out


def test_new_field_cannot_take_a_selector() -> None:
    with pytest.raises(ConfigPathError, match=r"'x' is absent from train_config, so 'x\[0\]' has "
                                              r"no elements to select"):
        edit({"train_config.x[0]": 1}, allow_new_fields=True)


# -- errors -------------------------------------------------------------------------------------


def test_index_out_of_range_names_path_and_part() -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"model_config.dbmtl.task_towers[2].dnn.hidden_units[0]": 1})
    assert str(info.value) == (
        "model_config.dbmtl.task_towers[2].dnn.hidden_units[0]: index 2 out of range in "
        "'task_towers[2]' (model_config.dbmtl.task_towers has 2 elements)"
    )


def test_condition_matching_nothing_names_path_and_suggests_a_value() -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"feature_configs[input_names[0]=user_idd].embedding_dim": 8})
    message = str(info.value)
    assert message.startswith("feature_configs[input_names[0]=user_idd].embedding_dim: condition "
                              "'[input_names[0]=user_idd]' matches no element of feature_configs")
    assert message.endswith("(did you mean 'user_id'?)")


def test_condition_key_no_element_has_suggests_a_field_name() -> None:
    # A typo in the condition's key is an unknown field like any other: suggest the real name.
    with pytest.raises(ConfigPathError) as info:
        edit({"feature_configs[input_nmes[0]=user_id].embedding_dim": 8})
    assert str(info.value).endswith(
        "(no element of feature_configs has 'input_nmes[0]') (did you mean 'input_names'?)"
    )


def test_empty_slice_is_an_error() -> None:
    with pytest.raises(ConfigPathError, match=r"slice \[5:\] in 'feature_configs\[5:\]' selects "
                                              r"nothing \(feature_configs has 3 elements\)"):
        edit({"feature_configs[5:].embedding_dim": 8})


def test_bad_path_syntax_names_path_and_position() -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"feature_configs[input_names[0]=a.embedding_dim": 8})
    assert str(info.value) == (
        "bad path 'feature_configs[input_names[0]=a.embedding_dim': unclosed '[' at position 16"
    )


def test_stepping_into_a_value_is_an_error() -> None:
    with pytest.raises(ConfigPathError, match=r"'model_dir' is a value, not a message"):
        edit({"model_dir.x": 1})


@pytest.mark.parametrize("value", [None, {"_name": "x"}])
def test_value_of_unsupported_type_is_an_error(value: object) -> None:
    with pytest.raises(ConfigPathError, match=r"^model_dir: expected a number, string, bool, list"):
        edit({"model_dir": value})


def test_unparsable_document_is_a_config_error_naming_the_file() -> None:
    with pytest.raises(ConfigError, match=r"^pipeline.config:1:4: "):
        edit({}, "a: }")


# -- all or nothing -----------------------------------------------------------------------------


def test_failed_edit_leaves_the_document_unchanged() -> None:
    doc = Document.parse(CONFIG)
    with pytest.raises(ConfigPathError):
        doc.apply({
            LR: 0.5,  # applies first ...
            "model_config.dbmtl.task_towers[1].dnn.hidden_units": [1, 2, 3],  # structural ...
            "${x}": 1,  # ... then this one fails
        })
    # ... and everything is rolled back.
    assert doc.to_text() == CONFIG
    assert doc.get(LR) == [0.001]
    assert doc.get("model_config.dbmtl.task_towers[1].dnn.hidden_units") == [256, 32]


def test_failed_edit_of_one_element_of_many_changes_none() -> None:
    doc = Document.parse(CONFIG)
    with pytest.raises(ConfigPathError):
        doc.apply({"feature_configs[:].input_names[0]": "x", "feature_configs[:].embedding_dim": 1})
    assert doc.to_text() == CONFIG


def test_document_stays_usable_after_rollback() -> None:
    doc = Document.parse(CONFIG)
    with pytest.raises(ConfigPathError):
        doc.apply({"model_config.dbmtl.task_towers[0].dnn": "{ a: 1 }", "nope": 1})
    doc.apply({"model_config.dbmtl.task_towers[0].dnn.hidden_units[0]": 1})
    assert "dnn { hidden_units: [1, 128, 64] }" in doc.to_text()


# -- edits in sequence on one document ----------------------------------------------------------


def test_later_edits_see_structure_made_by_earlier_ones() -> None:
    doc = Document.parse(CONFIG)
    doc.apply({
        "model_config.dbmtl.task_towers[1].dnn": "{ hidden_units: [1, 2] }",
        "model_config.dbmtl.task_towers[1].dnn.hidden_units[1]": 5,
        "train_config.y": 1,
        "train_config.y": 2,  # noqa: F601 - a dict keeps the last; see the next apply
    }, allow_new_fields=True)
    doc.apply({"train_config.y": 3, "train_config.z": 4}, allow_new_fields=True)
    assert doc.get("model_config.dbmtl.task_towers[1].dnn.hidden_units") == [1, 5]
    assert doc.get("train_config.y") == [3]
    assert "  sync_replicas: True\n  y: 3\n  z: 4\n}" in doc.to_text()


def test_crlf_document_gets_crlf_in_new_lines() -> None:
    text = "a {\r\n  b: 1\r\n}\r\n"
    out = edit({"a.c": 2, "a.d": [1]}, text, allow_new_fields=True)
    assert out == "a {\r\n  b: 1\r\n  c: 2\r\n  d: [1]\r\n}\r\n"


def test_tab_indented_document_gets_tabs_in_new_lines() -> None:
    text = "a {\n\tb: 1\n}\n"
    assert edit({"a.c": 2}, text, allow_new_fields=True) == "a {\n\tb: 1\n\tc: 2\n}\n"


def test_new_field_in_empty_document_and_message() -> None:
    assert edit({"a": 1}, "", allow_new_fields=True) == "a: 1\n"
    assert edit({"m.a": 1}, "m {}\n", allow_new_fields=True) == "m { a: 1 }\n"
    assert edit({"m.a": 1}, "m {\n}\n", allow_new_fields=True) == "m {\n  a: 1\n}\n"


# -- every syntax feature: an edit rewrites only the edited tokens ------------------------------

FEATURES = (Path(__file__).resolve().parent / "data" / "syntax_features.config")
NEW_VALUES = {int: 7, float: 2.5, str: "new ✓", bool: False}


def _scalar_paths(doc: Document, prefix: str = "") -> list[str]:
    paths = []
    for name in doc.field_names():
        if name.startswith("["):
            continue
        values = doc.get(name)
        for i, value in enumerate(values):
            path = f"{prefix}{name}[{i}]" if len(values) > 1 else f"{prefix}{name}"
            if isinstance(value, Message):
                paths += _scalar_paths(value, path + ".")
            else:
                paths.append(path)
    return paths


def test_each_value_of_the_syntax_features_file_edits_in_place() -> None:
    with open(FEATURES, encoding="utf-8", newline="") as handle:
        text = handle.read()
    paths = _scalar_paths(Document.parse(text))
    assert len(paths) >= 40
    for path in paths:
        doc = Document.parse(text)
        old = doc.get_one(path)
        (old_text,) = doc.get_text(path)
        new = NEW_VALUES.get(type(old), "OTHER") if path != "placeholder_path" else "x"
        if isinstance(old, bool):
            new = not old
        elif isinstance(old, str) and old_text[:1] not in "\"'":
            new = "OTHER"  # an enum name
        doc.apply({path: new})
        out = doc.to_text()
        start = text.index(old_text) if text.count(old_text) == 1 else None
        # Everything outside the edited literal is byte-identical.
        prefix = 0
        while prefix < min(len(text), len(out)) and text[prefix] == out[prefix]:
            prefix += 1
        suffix = 0
        while (suffix < min(len(text), len(out)) - prefix
               and text[-1 - suffix] == out[-1 - suffix]):
            suffix += 1
        changed = text[prefix:len(text) - suffix]
        assert changed in old_text, (path, changed, old_text)
        if start is not None:
            assert start <= prefix <= start + len(old_text), path
        assert Document.parse(out).get_one(path) == new, path


def test_empty_list_keeps_the_field_so_later_edits_find_it() -> None:
    doc = Document.parse(CONFIG)
    towers = "model_config.dbmtl.task_towers[1].dnn.hidden_units"
    doc.apply({towers: []})
    assert "      dnn {\n        hidden_units: []\n      }\n" in doc.to_text()
    doc.apply({towers: [3, 4]})
    assert Document.parse(doc.to_text()).get(towers) == [3, 4]


def test_fields_created_in_an_emptied_message_are_laid_out_in_lines() -> None:
    doc = Document.parse(CONFIG)
    doc.apply({"model_config.dbmtl.task_towers[1].dnn": "{}"})
    doc.apply({"model_config.dbmtl.task_towers[1].dnn.a.b": 1}, allow_new_fields=True)
    assert "      dnn {\n        a {\n          b: 1\n        }\n      }\n" in doc.to_text()


def test_new_field_in_empty_message_keeps_its_comment() -> None:
    out = edit({"m.a": 1}, "m {  # c\r\n}\r\n", allow_new_fields=True)
    assert out == "m {  # c\r\n  a: 1\r\n}\r\n"


def test_condition_sees_list_elements_rewritten_in_place() -> None:
    # A same-length list rewrite changes values without changing structure; the cached condition
    # keys must still be refreshed.
    text = 'f { k: 1 k: 2 v: 0 }\nf { k: 3 k: 4 v: 0 }\n'
    doc = Document.parse(text)
    assert doc.get("f[k=2].v") == [0]
    doc.apply({"f[0].k": [5, 6], "f[k=6].v": 9})
    assert doc.get("f[:].v") == [9, 0]


def test_byte_order_mark_stays_first_and_out_of_new_lines() -> None:
    out = edit({"b": 2}, "\ufeffa: 1", allow_new_fields=True)
    assert out == "\ufeffa: 1\nb: 2"


def test_snippet_with_a_comment_never_comments_out_the_closing_brace() -> None:
    # An inline message given a snippet with a comment must still end with its own '}'.
    out = edit({"m": "{ a: 1  # why\n}", "n.x": "{ b: 2  # because\n}"}, "m { }\nn { }\n",
               allow_new_fields=True)
    doc = Document.parse(out)
    assert doc.get("m.a") == [1] and doc.get("n.x.b") == [2]
    assert "# why" in out and "# because" in out


def test_numpy_numbers_are_written_bare_in_new_fields() -> None:
    np = pytest.importorskip("numpy")
    out = edit({"train_config.a": np.int64(3), "train_config.b": np.float32(0.5)},
               allow_new_fields=True)
    assert "  a: 3\n  b: 0.5\n}" in out


def test_float_value_goes_into_an_integer_literal_as_a_float() -> None:
    from hpo_tools.pbtxt.values import FloatValue

    # A caller that knows the field is a float (set-lr) writes a fraction over `1`; a plain
    # float there is still refused, since the literal says integer.
    assert apply_edits("lr: 1\n", {"lr": FloatValue(1e-6)}) == "lr: 1e-06\n"
    with pytest.raises(ConfigPathError, match="not a fraction"):
        apply_edits("lr: 1\n", {"lr": 1e-6})
