"""Loading a schema: .proto files compiled at run time, or an installed _pb2 module."""

from __future__ import annotations

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from google.protobuf import message_factory, text_format

from hpo_tools.errors import ConfigError
from hpo_tools.pbtxt.schema import load_schema, message_names

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "tests" / "protos"
ROOT = "easyrec_like.EasyRecConfig"


@pytest.fixture(scope="module")
def easyrec_schema():
    return load_schema(proto_path=PROTOS, message=ROOT)


def _parse(descriptor, text: str):
    return text_format.Parse(text, message_factory.GetMessageClass(descriptor)())


def test_proto_path_loads_root_message_with_its_fields(easyrec_schema):
    # The editor asks the descriptor for field names, types and oneofs.
    assert easyrec_schema.full_name == ROOT
    assert "feature_configs" in easyrec_schema.fields_by_name
    model = easyrec_schema.fields_by_name["model_config"].message_type
    assert {f.name for f in model.oneofs_by_name["model"].fields} == {"dbmtl", "deepfm"}


def test_bare_message_name_is_accepted_when_unique():
    # Users often type the message name without its package.
    assert load_schema(proto_path=PROTOS, message="EasyRecConfig").full_name == ROOT


@pytest.mark.parametrize("sample", ["pipeline.config", "pipeline_finetune.config"])
def test_samples_parse_against_the_test_proto(easyrec_schema, sample):
    # The samples must be valid configs of the EasyRec-shaped schema, not just valid syntax.
    config = _parse(easyrec_schema, (REPO / "samples" / sample).read_text())
    assert len(config.feature_configs) == 20
    assert config.model_config.WhichOneof("model") == "dbmtl"


def test_compiling_leaves_no_files_in_the_proto_dir(tmp_path):
    # Generated files go to a temporary dir, never next to the user's .proto files.
    shutil.copy(PROTOS / "easyrec_like.proto", tmp_path)
    load_schema(proto_path=tmp_path, message=ROOT)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["easyrec_like.proto"]


def test_compiling_does_not_touch_sys_path_or_sys_modules():
    # Loading a schema must not make user modules importable or shadow installed ones.
    path_before, modules_before = list(sys.path), set(sys.modules)
    load_schema(proto_path=PROTOS, message=ROOT)
    assert sys.path == path_before
    new_modules = set(sys.modules) - modules_before
    assert not {m for m in new_modules if m.endswith("_pb2") and not m.startswith("google.")}


def test_two_different_files_with_the_same_name_load_in_one_process(tmp_path):
    # A private descriptor pool per load: no "duplicate file" clash between two schemas.
    for name, field in (("one", "alpha"), ("two", "beta")):
        (tmp_path / name).mkdir()
        (tmp_path / name / "c.proto").write_text(
            f'syntax = "proto2";\npackage p;\nmessage C {{ optional int32 {field} = 1; }}\n'
        )
    first = load_schema(proto_path=tmp_path / "one", message="p.C")
    second = load_schema(proto_path=tmp_path / "two", message="p.C")
    assert list(first.fields_by_name) == ["alpha"]
    assert list(second.fields_by_name) == ["beta"]


def test_imports_resolve_relative_to_the_proto_path(tmp_path):
    # EasyRec's files import each other as "easy_rec/python/protos/x.proto" from the repo root.
    pkg = tmp_path / "easy_rec" / "python" / "protos"
    pkg.mkdir(parents=True)
    (pkg / "dnn.proto").write_text(
        'syntax = "proto2";\npackage protos;\nmessage DNN { repeated uint32 hidden_units = 1; }\n'
    )
    (pkg / "pipeline.proto").write_text(
        'syntax = "proto2";\npackage protos;\nimport "easy_rec/python/protos/dnn.proto";\n'
        "message EasyRecConfig { optional DNN dnn = 1; }\n"
    )
    schema = load_schema(proto_path=tmp_path, message="protos.EasyRecConfig")
    assert schema.fields_by_name["dnn"].message_type.full_name == "protos.DNN"
    assert "protos.DNN" in message_names(schema)


def test_well_known_types_can_be_imported(tmp_path):
    # grpcio-tools' bundled google/protobuf/*.proto are on the include path.
    (tmp_path / "w.proto").write_text(
        'syntax = "proto3";\npackage w;\nimport "google/protobuf/wrappers.proto";\n'
        "message W { google.protobuf.Int32Value v = 1; }\n"
    )
    assert load_schema(proto_path=tmp_path, message="w.W").full_name == "w.W"


def test_compile_error_reports_protoc_message_on_one_line(tmp_path):
    # The user needs protoc's file:line to fix the .proto.
    bad = 'syntax = "proto2";\nmessage B {\n  optional int32 = 1;\n}\n'
    (tmp_path / "bad.proto").write_text(bad)
    with pytest.raises(
        ConfigError, match=r"protoc failed: .*bad\.proto:3:18: Expected field name"
    ) as info:
        load_schema(proto_path=tmp_path, message="B")
    assert "\n" not in str(info.value)


def test_unknown_message_suggests_the_closest_name():
    with pytest.raises(
        ConfigError, match=r"no such message.*did you mean 'easyrec_like.EasyRecConfig'"
    ):
        load_schema(proto_path=PROTOS, message="easyrec_like.EasyRecConfg")


def test_ambiguous_bare_name_lists_the_full_names(tmp_path):
    for pkg in ("a", "b"):
        text = f'syntax = "proto2";\npackage {pkg};\nmessage M {{}}\n'
        (tmp_path / f"{pkg}.proto").write_text(text)
    with pytest.raises(ConfigError, match=r"ambiguous.*a\.M, b\.M"):
        load_schema(proto_path=tmp_path, message="M")


def test_missing_grpcio_tools_says_how_to_install(monkeypatch):
    # A None entry in sys.modules makes `import grpc_tools` raise ImportError.
    monkeypatch.setitem(sys.modules, "grpc_tools", None)
    with pytest.raises(ConfigError, match=r"needs grpcio-tools.*hpo-tools\[schema\]"):
        load_schema(proto_path=PROTOS, message=ROOT)


def test_proto_path_that_is_not_a_directory(tmp_path):
    with pytest.raises(ConfigError, match="not a directory"):
        load_schema(proto_path=tmp_path / "nope", message=ROOT)


def test_proto_path_without_proto_files(tmp_path):
    with pytest.raises(ConfigError, match=r"no \.proto files"):
        load_schema(proto_path=tmp_path, message=ROOT)


@pytest.mark.parametrize(
    "kwargs, pattern",
    [
        ({}, "needs --proto-path"),
        ({"proto_path": PROTOS}, "needs --message"),
        ({"proto_path": PROTOS, "message": ROOT, "proto_module": "x_pb2:M"}, "not both"),
    ],
)
def test_option_combinations_are_checked(kwargs, pattern):
    with pytest.raises(ConfigError, match=pattern):
        load_schema(**kwargs)


@pytest.fixture(scope="module")
def installed_pb2(tmp_path_factory):
    """easyrec_like_pb2 generated at test time into a temp dir and imported once.

    Once per module: the default descriptor pool refuses a second easyrec_like.proto.
    """
    out = tmp_path_factory.mktemp("pb2")
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{PROTOS}",
            f"--python_out={out}",
            "easyrec_like.proto",
        ],
        check=True,
    )
    sys.path.insert(0, str(out))
    try:
        yield "easyrec_like_pb2"
    finally:
        sys.path.remove(str(out))
        sys.modules.pop("easyrec_like_pb2", None)


def test_proto_module_loads_message_class_descriptor(installed_pb2):
    assert load_schema(proto_module=f"{installed_pb2}:EasyRecConfig").full_name == ROOT


def test_proto_module_loads_nested_message(installed_pb2):
    # Nested messages are addressed Outer.Inner, as in Python.
    descriptor = load_schema(proto_module=f"{installed_pb2}:DatasetConfig.Field")
    assert descriptor.full_name == "easyrec_like.DatasetConfig.Field"


def test_proto_module_unknown_message_suggests_closest(installed_pb2):
    pattern = r"no message 'EasyRecConfg'.*did you mean 'EasyRecConfig'"
    with pytest.raises(ConfigError, match=pattern):
        load_schema(proto_module=f"{installed_pb2}:EasyRecConfg")


def test_proto_module_that_does_not_import():
    with pytest.raises(ConfigError, match=r"cannot import 'no_such_module_pb2'"):
        load_schema(proto_module="no_such_module_pb2:M")


def test_proto_module_without_colon():
    with pytest.raises(ConfigError, match="expected MODULE:MESSAGE"):
        load_schema(proto_module="easyrec_like_pb2")


def test_sample_search_space_keys_all_resolve_in_the_sample():
    import json

    from hpo_tools.pbtxt import Document

    doc = Document.parse((REPO / "samples" / "pipeline.config").read_text())
    space = json.loads((REPO / "samples" / "hpo" / "search_space.json").read_text())
    for key, spec in space.items():
        parts = key.split(";")
        for part in parts:
            # strict: an unknown field, bad index or empty selection raises ConfigPathError.
            assert doc.get(part, strict=True), part
        if len(parts) > 1:  # a multi-key entry needs one ";"-separated value per key
            assert all(len(str(v).split(";")) == len(parts) for v in spec["_value"]), key


def test_sample_search_space_has_keys_of_every_selector_kind():
    import json

    from hpo_tools.pbtxt.paths import Condition, Index, Slice, parse_path

    space = json.loads((REPO / "samples" / "hpo" / "search_space.json").read_text())
    kinds = set()
    for key in space:
        if ";" in key:
            kinds.add("multi-key")
        for part in key.split(";"):
            for step in parse_path(part).steps:
                for sel in step.selectors:
                    if isinstance(sel, Index):
                        kinds.add("index<0" if sel.index < 0 else "index")
                    elif isinstance(sel, Slice):
                        bounds = (sel.start is not None, sel.stop is not None)
                        kinds.add({(False, False): "[:]", (True, True): "[a:b]"}.get(
                            bounds, "[a:]/[:b]"))
                    elif isinstance(sel, Condition):
                        kinds.add(f"op{sel.op}")
                        kinds.add("quoted" if sel.quoted else "unquoted")
                        if "[" in sel.key.text:
                            kinds.add("key with index")
    # The sample is the users' template: it shows every selector the issue lists.
    expected = {"multi-key", "index", "index<0", "[:]", "[a:b]", "[a:]/[:b]", "op=", "op!=",
                "op>=", "op<=", "op>", "op<", "quoted", "unquoted", "key with index"}
    assert expected <= kinds, sorted(expected - kinds)


def test_sample_search_space_corner_applies_with_schema_and_parses(easyrec_schema):
    import json

    from hpo_tools.pbtxt import apply_edits

    space = json.loads((REPO / "samples" / "hpo" / "search_space.json").read_text())
    # One corner: the first choice / the lower bound of every parameter, as NNI could send it.
    params = {key: spec["_value"][0] for key, spec in space.items()}
    text = apply_edits(
        (REPO / "samples" / "pipeline.config").read_text(),
        params,
        source="samples/pipeline.config",
        schema=easyrec_schema,
    )
    config = _parse(easyrec_schema, text)  # protobuf itself accepts the edited config
    tower_dnns = [t.relation_dnn.hidden_units for t in config.model_config.dbmtl.task_towers]
    assert [list(units) for units in tower_dnns] == [[8], [8]]
    assert config.model_config.dbmtl.bottom_dnn.hidden_units[-1] == 32
    assert config.feature_configs[0].hash_bucket_size == 50000
    assert config.model_config.embedding_regularization == pytest.approx(5e-6)
    lr = config.train_config.optimizer_config[0].adam_optimizer.learning_rate
    assert lr.exponential_decay_learning_rate.initial_learning_rate == pytest.approx(1e-4)
