"""Editing with a schema (the test proto of tests/protos): typing, enums, oneofs, new fields, and
agreement with schema-less mode and with google.protobuf.text_format."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import message_factory, text_format
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from hpo_tools.errors import ConfigPathError
from hpo_tools.pbtxt import Document, apply_edits
from hpo_tools.pbtxt.schema import load_schema

PROTOS = Path(__file__).resolve().parents[1] / "protos"

CONFIG = """\
model_dir: "experiments/x"
feature_configs {
  input_names: "user_id"
  feature_type: IdFeature
  embedding_dim: 16
  hash_bucket_size: 100000
}
feature_configs {
  input_names: "price"
  feature_type: RawFeature
  boundaries: [1.0, 10.0]
}
model_config {
  model_class: "DBMTL"
  dbmtl {
    task_towers {
      tower_name: "ctr"
      dnn {
        hidden_units: 64
        hidden_units: 32
      }
      weight: 1.0
    }
    l2_regularization: 0
  }
}
train_config {
  optimizer_config {
    adam_optimizer {
      learning_rate {
        exponential_decay_learning_rate {
          initial_learning_rate: 0.001
          decay_steps: 1000
        }
      }
    }
  }
  num_steps: 2000
  sync_replicas: true
}
"""
LR = ("train_config.optimizer_config[0].adam_optimizer.learning_rate."
      "exponential_decay_learning_rate.initial_learning_rate")


@pytest.fixture(scope="module")
def schema() -> Any:
    return load_schema(proto_path=PROTOS, message="easyrec_like.EasyRecConfig")


def parsed(schema: Any, text: str) -> Any:
    message = message_factory.GetMessageClass(schema)()
    text_format.Parse(text, message)
    return message


def edit(edits: dict, schema: Any = None, **kwargs: object) -> str:
    return apply_edits(CONFIG, edits, source="pipeline.config", schema=schema, **kwargs)


# -- schema and schema-less modes agree where both apply ----------------------------------------

AGREEING_EDITS = [
    {LR: 0.01},
    {LR: 1},
    {"feature_configs[:].feature_type": "TagFeature"},
    {"feature_configs[input_names[0]=user_id].embedding_dim": 8},
    {"feature_configs[0].hash_bucket_size": "2000"},
    {"feature_configs[-1].boundaries": [0.5, 2, 3]},
    {"feature_configs[1].boundaries[1]": 20},
    {"model_config.dbmtl.task_towers[0].dnn.hidden_units": [128, 64, 32]},
    {"model_config.dbmtl.task_towers[tower_name=ctr].dnn.hidden_units[-1]": 16},
    {"model_config.dbmtl.task_towers[0].weight": 2},
    {"model_dir": "a;b"},
    {"train_config.sync_replicas": False},
    {"train_config.num_steps;model_dir": "10;out"},
    {"train_config.optimizer_config[0].adam_optimizer.learning_rate":
     "{ constant_learning_rate { learning_rate: 0.1 } }"},
]


@pytest.mark.parametrize("edits", AGREEING_EDITS, ids=lambda e: ",".join(e))
def test_schema_and_schema_less_modes_write_the_same_text(schema: Any, edits: dict) -> None:
    assert edit(edits, schema) == edit(edits)


@pytest.mark.parametrize("edits", AGREEING_EDITS, ids=lambda e: ",".join(e))
def test_edited_text_parses_with_protobuf_to_the_values_we_read(schema: Any, edits: dict) -> None:
    out = edit(edits, schema)
    message = parsed(schema, out)
    doc = Document.parse(out)
    # Cross-check our reading of a few values against protobuf's own parser.
    assert list(message.feature_configs[0].input_names) == doc.get("feature_configs[0].input_names")
    assert message.train_config.num_steps == doc.get_one("train_config.num_steps")
    towers = message.model_config.dbmtl.task_towers
    assert list(towers[0].dnn.hidden_units) == doc.get(
        "model_config.dbmtl.task_towers[0].dnn.hidden_units")
    if doc.has(LR):
        lr = message.train_config.optimizer_config[0].adam_optimizer.learning_rate
        assert lr.exponential_decay_learning_rate.initial_learning_rate == pytest.approx(
            doc.get_one(LR))


# -- the schema decides the type ----------------------------------------------------------------


def test_float_field_written_as_integer_takes_a_float_with_a_schema(schema: Any) -> None:
    # The file says "l2_regularization: 0", which looks like an int ...
    with pytest.raises(ConfigPathError, match="expected an integer, not a fraction"):
        edit({"model_config.dbmtl.l2_regularization": 1e-4})
    # ... but the schema knows it is a float.
    assert "l2_regularization: 0.0001" in edit({"model_config.dbmtl.l2_regularization": 1e-4},
                                               schema)


def test_unknown_enum_name_is_an_error_with_did_you_mean(schema: Any) -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"feature_configs[0].feature_type": "RawFeatur"}, schema)
    message = str(info.value)
    assert message.startswith("feature_configs[0].feature_type: value 'RawFeatur' does not fit "
                              "'feature_configs[0].feature_type': expected one of "
                              "easyrec_like.FeatureConfig.FeatureType (IdFeature, RawFeature")
    assert message.endswith("(did you mean 'RawFeature'?)")


def test_enum_number_is_written_as_its_name(schema: Any) -> None:
    assert "feature_type: TagFeature" in edit({"feature_configs[0].feature_type": 2}, schema)


def test_unsigned_field_rejects_negative_numbers(schema: Any) -> None:
    with pytest.raises(ConfigPathError, match=r"expected a non-negative integer \(uint32\) in"):
        edit({"feature_configs[0].embedding_dim": -1}, schema)


def test_unknown_field_suggests_schema_fields_too(schema: Any) -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"feature_configs[0].max_seq_lenn": 5}, schema)
    assert str(info.value) == (
        "feature_configs[0].max_seq_lenn: no field 'max_seq_lenn' in feature_configs[0] "
        "(easyrec_like.FeatureConfig) (did you mean 'max_seq_len'?)"
    )


def test_selector_on_a_singular_field_is_an_error(schema: Any) -> None:
    expected = r"'dbmtl\[0\]' selects elements, but easyrec_like.EasyRecModel.dbmtl is not repeated"
    with pytest.raises(ConfigPathError, match=expected):
        edit({"model_config.dbmtl[0].l2_regularization": 1.0}, schema)


def test_list_into_a_singular_field_is_an_error(schema: Any) -> None:
    with pytest.raises(ConfigPathError, match=r"'num_steps' is not a repeated field"):
        edit({"train_config.num_steps": [1, 2]}, schema)


def test_scalar_into_repeated_field_makes_one_element_list_like_easyrec(schema: Any) -> None:
    out = edit({"model_config.dbmtl.task_towers[0].dnn.hidden_units": 7}, schema)
    assert parsed(schema, out).model_config.dbmtl.task_towers[0].dnn.hidden_units == [7]


def test_snippet_is_checked_against_the_message_type(schema: Any) -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"model_config.dbmtl.task_towers[0].dnn": "{ hidden_unit: 1 }"}, schema)
    message = str(info.value)
    assert message.startswith("model_config.dbmtl.task_towers[0].dnn: value of "
                              "'model_config.dbmtl.task_towers[0].dnn' does not fit "
                              "easyrec_like.DNN: ")
    assert "hidden_unit" in message


# -- new fields the schema knows ----------------------------------------------------------------


def test_schema_field_absent_from_the_file_is_created_with_sibling_indentation(
    schema: Any,
) -> None:
    out = edit({"feature_configs[0].max_seq_len": 50}, schema)
    assert "  hash_bucket_size: 100000\n  max_seq_len: 50\n}\n" in out
    assert parsed(schema, out).feature_configs[0].max_seq_len == 50


def test_schema_creates_absent_parent_messages(schema: Any) -> None:
    out = edit({"model_config.dbmtl.bottom_dnn.hidden_units": [32, 16]}, schema)
    assert ("    l2_regularization: 0\n    bottom_dnn {\n      hidden_units: [32, 16]\n    }\n"
            "  }\n") in out
    assert parsed(schema, out).model_config.dbmtl.bottom_dnn.hidden_units == [32, 16]


def test_schema_creates_fields_in_every_selected_element_that_lacks_them(schema: Any) -> None:
    out = edit({"feature_configs[:].embedding_dim": 4}, schema)
    assert [f.embedding_dim for f in parsed(schema, out).feature_configs] == [4, 4]


def test_new_field_in_a_oneof_that_is_already_set_is_an_error(schema: Any) -> None:
    with pytest.raises(ConfigPathError) as info:
        edit({"model_config.deepfm.dnn.hidden_units": [8]}, schema)
    assert str(info.value) == (
        "model_config.deepfm.dnn.hidden_units: cannot create 'deepfm' in model_config: "
        "oneof 'model' already has 'dbmtl'"
    )


def test_created_enum_is_validated(schema: Any) -> None:
    with pytest.raises(ConfigPathError, match="expected one of easyrec_like"):
        edit({"feature_configs[0].sub_feature_type": "Nope"}, schema)
    out = edit({"feature_configs[0].sub_feature_type": "RawFeature"}, schema)
    assert "  sub_feature_type: RawFeature\n" in out


def test_schema_unknown_field_is_not_created_even_with_allow_new_fields(schema: Any) -> None:
    with pytest.raises(ConfigPathError, match=r"no field 'made_up' in train_config"):
        edit({"train_config.made_up": 1}, schema, allow_new_fields=True)


def test_schema_accepts_a_message_class_too(schema: Any) -> None:
    cls = message_factory.GetMessageClass(schema)
    assert edit({LR: 0.5}, cls) == edit({LR: 0.5}, schema)


# -- property: protobuf sees exactly the one value we changed -----------------------------------

SAMPLE = Path(__file__).resolve().parents[2] / "samples" / "pipeline.config"


def _scalar_elements(msg: Any, prefix: str = "") -> list[tuple[str, Any, str]]:
    """(path, value, literal) of every scalar element of a document view."""
    out = []
    for name in msg.field_names():
        values = msg.get(name)
        texts = msg.get_text(name)
        for i, (value, text) in enumerate(zip(values, texts)):
            path = f"{prefix}{name}[{i}]" if len(values) > 1 else f"{prefix}{name}"
            if hasattr(value, "field_names"):
                out += _scalar_elements(value, path + ".")
            else:
                out.append((path, value, text))
    return out


def _new_value(value: Any, literal: str) -> st.SearchStrategy[Any]:
    if isinstance(value, bool):
        return st.just(not value)
    if isinstance(value, int):
        return st.integers(0, 100000).filter(lambda v: v != value)
    if isinstance(value, float):
        return st.floats(0.0, 10.0).filter(lambda v: v != value)
    if literal[:1] in "\"'":
        return st.text(max_size=10).filter(lambda v: v != value)
    return st.nothing()  # enum names are covered by the tests above


@pytest.mark.skipif(not SAMPLE.exists(), reason="samples/pipeline.config not there yet")
@settings(max_examples=int(os.environ.get("HPO_PBTXT_EXAMPLES", "60")), deadline=None,
          suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_schema_edit_changes_exactly_one_value_as_protobuf_sees_it(data: Any) -> None:
    schema = load_schema(proto_path=PROTOS, message="easyrec_like.EasyRecConfig")
    text = SAMPLE.read_text(encoding="utf-8")
    candidates = [c for c in _scalar_elements(Document.parse(text))
                  if not isinstance(c[1], str) or c[2][:1] in "\"'"]
    path, value, literal = data.draw(st.sampled_from(candidates))
    new = data.draw(_new_value(value, literal))
    out = apply_edits(text, {path: new}, schema=schema)
    before = text_format.MessageToString(parsed(schema, text), as_utf8=True).split("\n")
    after = text_format.MessageToString(parsed(schema, out), as_utf8=True).split("\n")
    # protobuf's own printing of the two configs differs in exactly one line: the edited value.
    assert len(before) == len(after)
    assert sum(a != b for a, b in zip(before, after)) == 1, path
