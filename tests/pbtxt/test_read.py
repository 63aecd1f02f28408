"""Reading values by path: Document.get / get_one / get_text / has, Message views, selectors."""

from __future__ import annotations

import pytest

from hpo_tools.errors import ConfigPathError
from hpo_tools.pbtxt import Document, Message

CONFIG = """\
train_config {
  optimizer_config {
    adam_optimizer {
      learning_rate { exponential_decay_learning_rate { initial_learning_rate: 0.001 } }
    }
  }
  num_steps: 100
  num_steps: 200  # EasyRec reads the last one
}
feature_configs { input_names: "user_id" embedding_dim: 16 hash_bucket_size: 100000 }
feature_configs { input_names: "item_id" embedding_dim: 32 hash_bucket_size: 500000 }
feature_configs { input_names: "price" feature_type: RawFeature boundaries: [1.5, 10, 100] }
feature_configs { input_names: "cate.level1" embedding_dim: 8 hash_bucket_size: 1000 }
model_config {
  dbmtl {
    task_towers { tower_name: "ctr" dnn { hidden_units: [256, 128, 64] } use_bn: true }
    task_towers { tower_name: "cvr" dnn { hidden_units: 256 hidden_units: 32 } use_bn: false }
  }
}
"""


@pytest.fixture(scope="module")
def doc() -> Document:
    return Document.parse(CONFIG, "pipeline.config")


def test_dotted_path_reads_nested_scalar(doc: Document) -> None:
    path = ("train_config.optimizer_config.adam_optimizer.learning_rate."
            "exponential_decay_learning_rate.initial_learning_rate")
    assert doc.get(path) == [0.001]


def test_singular_field_written_twice_reads_every_occurrence_and_get_one_the_last(
    doc: Document,
) -> None:
    assert doc.get("train_config.num_steps") == [100, 200]
    # EasyRec's parser keeps the last value of a repeated singular field.
    assert doc.get_one("train_config.num_steps") == 200


def test_index_selects_one_element(doc: Document) -> None:
    assert doc.get("feature_configs[1].input_names") == ["item_id"]


def test_negative_index_counts_from_the_end(doc: Document) -> None:
    assert doc.get("feature_configs[-1].input_names[0]") == ["cate.level1"]


def test_all_selector_reads_every_element(doc: Document) -> None:
    # price has no embedding_dim: a read skips it, it does not fail.
    assert doc.get("feature_configs[:].embedding_dim") == [16, 32, 8]


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("[1:3]", ["item_id", "price"]),
        ("[:2]", ["user_id", "item_id"]),
        ("[-2:]", ["price", "cate.level1"]),
        ("[::2]", ["user_id", "price"]),
        ("[5:9]", []),
    ],
)
def test_slices_follow_python_rules(doc: Document, selector: str, expected: list[str]) -> None:
    assert doc.get(f"feature_configs{selector}.input_names") == expected


@pytest.mark.parametrize(
    ("selector", "expected"),
    [
        ("[input_names[0]=item_id]", ["item_id"]),
        ("[input_names[0] = item_id]", ["item_id"]),
        ('[input_names[0]="item_id"]', ["item_id"]),
        ("[input_names[0]=cate.level1]", ["cate.level1"]),  # value with a dot
        ("[input_names[0]!=item_id]", ["user_id", "price", "cate.level1"]),
        ("[embedding_dim>=16]", ["user_id", "item_id"]),
        ("[embedding_dim<=16]", ["user_id", "cate.level1"]),
        ("[embedding_dim>16]", ["item_id"]),
        ("[embedding_dim<16]", ["cate.level1"]),
        ("[embedding_dim=32.0]", ["item_id"]),  # numeric comparison: 32 == 32.0
        ("[hash_bucket_size>=1e5]", ["user_id", "item_id"]),
        ("[feature_type=RawFeature]", ["price"]),
        ("[input_names[0]>p]", ["user_id", "price"]),  # strings compare as strings
    ],
)
def test_conditions_select_matching_elements(
    doc: Document, selector: str, expected: list[str]
) -> None:
    assert doc.get(f"feature_configs{selector}.input_names[0]") == expected


def test_quoted_condition_value_compares_as_string(doc: Document) -> None:
    # "32" quoted is a string; the number 32 printed as text is "32", so it still matches by text.
    assert doc.get('feature_configs[embedding_dim="32"].input_names') == ["item_id"]
    assert doc.get('feature_configs[embedding_dim="32.0"].input_names') == []


def test_condition_on_bool_accepts_any_bool_spelling(doc: Document) -> None:
    towers = "model_config.dbmtl.task_towers"
    assert doc.get(f"{towers}[use_bn=True].tower_name") == ["ctr"]
    assert doc.get(f"{towers}[use_bn=false].tower_name") == ["cvr"]


def test_condition_then_nested_path(doc: Document) -> None:
    path = 'model_config.dbmtl.task_towers[tower_name="cvr"].dnn.hidden_units[-1]'
    assert doc.get(path) == [32]


def test_list_form_and_repeated_lines_read_alike(doc: Document) -> None:
    assert doc.get("model_config.dbmtl.task_towers[0].dnn.hidden_units") == [256, 128, 64]
    assert doc.get("model_config.dbmtl.task_towers[1].dnn.hidden_units") == [256, 32]
    assert doc.get("model_config.dbmtl.task_towers[0].dnn.hidden_units[1]") == [128]


def test_message_values_are_views_relative_to_the_message(doc: Document) -> None:
    tower = doc.get_one("model_config.dbmtl.task_towers[1]")
    assert isinstance(tower, Message)
    assert tower.get_one("dnn.hidden_units[0]") == 256
    assert tower.field_names() == ["tower_name", "dnn", "use_bn"]
    assert tower.has("dnn") and not tower.has("dnn.dropout")


def test_get_text_prints_messages_as_written(doc: Document) -> None:
    assert doc.get_text("feature_configs[2].boundaries") == ["1.5", "10", "100"]
    assert doc.get_text("feature_configs[0]") == [
        '{ input_names: "user_id" embedding_dim: 16 hash_bucket_size: 100000 }'
    ]


def test_feature_configs_path_reads_feature_config_features_and_back() -> None:
    nested = Document.parse('feature_config { features { input_names: "a" } }\n')
    flat = Document.parse('feature_configs { input_names: "a" }\n')
    # One search space serves both layouts EasyRec accepts.
    assert nested.get("feature_configs[0].input_names") == ["a"]
    assert flat.get("feature_config.features[0].input_names") == ["a"]


def test_has_is_false_for_absent_fields_and_empty_selections(doc: Document) -> None:
    assert doc.has("train_config.num_steps")
    assert not doc.has("train_config.nope")
    assert not doc.has("feature_configs[9]")
    assert not doc.has("feature_configs[input_names[0]=nope]")


def test_get_one_default_when_nothing_selected(doc: Document) -> None:
    assert doc.get_one("train_config.nope", default=None) is None


def test_get_one_without_default_names_path_and_suggests(doc: Document) -> None:
    with pytest.raises(ConfigPathError) as info:
        doc.get_one("train_config.num_step")
    assert str(info.value) == (
        "train_config.num_step: no field 'num_step' in train_config (did you mean 'num_steps'?)"
    )


def test_strict_get_reports_index_out_of_range(doc: Document) -> None:
    with pytest.raises(ConfigPathError) as info:
        doc.get("feature_configs[7].embedding_dim", strict=True)
    assert str(info.value) == (
        "feature_configs[7].embedding_dim: index 7 out of range in 'feature_configs[7]' "
        "(feature_configs has 4 elements)"
    )


def test_strict_get_reports_condition_without_match_with_suggestion(doc: Document) -> None:
    with pytest.raises(ConfigPathError) as info:
        doc.get("feature_configs[input_names[0]=item_idd].embedding_dim", strict=True)
    message = str(info.value)
    assert message.startswith("feature_configs[input_names[0]=item_idd].embedding_dim: ")
    assert "'[input_names[0]=item_idd]' matches no element of feature_configs" in message
    assert "did you mean 'item_id'?" in message


def test_reading_into_a_scalar_is_an_error(doc: Document) -> None:
    with pytest.raises(ConfigPathError, match="'num_steps' is a value, not a message"):
        doc.get("train_config.num_steps.x")


def test_get_one_of_an_empty_list_is_an_error() -> None:
    doc = Document.parse("units: []\n")
    assert doc.get("units") == []
    with pytest.raises(ConfigPathError, match=r"^units: selects nothing \(an empty list\)$"):
        doc.get_one("units")
