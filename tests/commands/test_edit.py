"""`hpo-tools edit`: edits from --set / --params, byte-identical output, all-or-nothing errors."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo_tools import storage
from hpo_tools.cli import main
from hpo_tools.commands.edit import parse_assignment
from hpo_tools.errors import ConfigError
from hpo_tools.testing.oss import FakeBucket

REPO = Path(__file__).resolve().parents[2]
SAMPLE = REPO / "samples" / "pipeline.config"
PROTOS = REPO / "tests" / "protos"

SMALL = """\
# a comment that must survive
model_dir: "experiments/m"   # trailing comment
data_config {
  batch_size: 512
  input_type: CSVInput
}
feature_configs { input_names: "user_id" embedding_dim: 16 hash_bucket_size: 100000 }
feature_configs { input_names: "age_level" embedding_dim: 8 num_buckets: 7 }
model_config {
  dbmtl {
    bottom_dnn { hidden_units: [128, 64] }
  }
}
"""


@pytest.fixture
def small(tmp_path):
    path = tmp_path / "small.config"
    path.write_text(SMALL)
    return path


def _changed_lines(before: str, after: str) -> list[tuple[str, str]]:
    old, new = before.splitlines(), after.splitlines()
    assert len(old) == len(new)
    return [(a, b) for a, b in zip(old, new) if a != b]


# ---------------------------------------------------------------- no edits


def test_no_edits_prints_config_byte_identical(capsys):
    assert main(["edit", str(SAMPLE)]) == 0
    # The promise of the editor: untouched configs come out exactly as they went in.
    assert capsys.readouterr().out == SAMPLE.read_text()


def test_no_edits_keeps_crlf_and_missing_final_newline(tmp_path, capsysbinary):
    path = tmp_path / "crlf.config"
    data = b'model_dir: "m"\r\ndata_config {\r\n  batch_size: 1\r\n}'
    path.write_bytes(data)
    assert main(["edit", str(path)]) == 0
    assert capsysbinary.readouterr().out == data


def test_no_edits_with_output_writes_identical_file(small, tmp_path):
    out = tmp_path / "out.config"
    assert main(["edit", str(small), "-o", str(out)]) == 0
    assert out.read_bytes() == small.read_bytes()


def test_no_edits_still_reports_a_syntax_error(tmp_path, capsys):
    path = tmp_path / "bad.config"
    path.write_text("data_config {\n  batch_size: 1\n")
    # Passing a broken config on unchanged would only move the failure to the training job.
    assert main(["edit", str(path)]) == 2
    assert capsys.readouterr().err.startswith(f"error: {path}")


# ---------------------------------------------------------------- --set


def test_set_with_condition_key_changes_only_that_value(small, capsys):
    assert (
        main(
            [
                "edit",
                str(small),
                "--set",
                "feature_configs[input_names[0]=user_id].hash_bucket_size=200000",
            ]
        )
        == 0
    )
    # Exactly one token changed; the "=" inside the brackets is part of the key.
    assert _changed_lines(SMALL, capsys.readouterr().out) == [
        (
            'feature_configs { input_names: "user_id" embedding_dim: 16 hash_bucket_size: 100000 }',
            'feature_configs { input_names: "user_id" embedding_dim: 16 hash_bucket_size: 200000 }',
        )
    ]


def test_set_value_that_is_not_json_is_a_string(small, capsys):
    assert main(["edit", str(small), "--set", "model_dir=oss://bucket/models/x"]) == 0
    # The comment after the value stays; the string stays quoted.
    assert _changed_lines(SMALL, capsys.readouterr().out) == [
        (
            'model_dir: "experiments/m"   # trailing comment',
            'model_dir: "oss://bucket/models/x"   # trailing comment',
        )
    ]


def test_set_json_list_replaces_repeated_field(small, capsys):
    assert (
        main(
            [
                "edit",
                str(small),
                "--set",
                "model_config.dbmtl.bottom_dnn.hidden_units=[256, 128, 64]",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert (
        main(
            [
                "get",
                _write(small.parent / "o.config", out),
                "model_config.dbmtl.bottom_dnn.hidden_units",
            ]
        )
        == 0
    )
    assert capsys.readouterr().out == "256\n128\n64\n"


def test_set_applies_to_every_selected_element(small, capsys):
    assert main(["edit", str(small), "--set", "feature_configs[:].embedding_dim=4"]) == 0
    out = capsys.readouterr().out
    assert (
        main(["get", _write(small.parent / "o.config", out), "feature_configs[:].embedding_dim"])
        == 0
    )
    assert capsys.readouterr().out == "4\n4\n"


def test_set_wins_over_params_for_the_same_key(small, tmp_path, capsys):
    params = tmp_path / "p.json"
    params.write_text(json.dumps({"data_config.batch_size": 256}))
    assert (
        main(["edit", str(small), "--params", str(params), "--set", "data_config.batch_size=1024"])
        == 0
    )
    assert "  batch_size: 1024\n" in capsys.readouterr().out


def test_edits_are_written_atomically_to_output(small, tmp_path):
    out = tmp_path / "out" / "trial.config"
    assert main(["edit", str(small), "--set", "data_config.batch_size=64", "-o", str(out)]) == 0
    assert "  batch_size: 64\n" in out.read_text()
    assert sorted(p.name for p in out.parent.iterdir()) == ["trial.config"]


# ---------------------------------------------------------------- --params


def test_params_nni_parameter_dict(small, tmp_path, capsys):
    params = tmp_path / "p.json"
    params.write_text(
        json.dumps(
            {
                "feature_configs[:].embedding_dim": 32,
                "model_config.dbmtl.bottom_dnn.hidden_units[-1]": 32,
            }
        )
    )
    assert main(["edit", str(small), "--params", str(params)]) == 0
    changed = _changed_lines(SMALL, capsys.readouterr().out)
    assert len(changed) == 3  # two feature lines and the hidden_units line
    assert changed[-1][1] == "    bottom_dnn { hidden_units: [128, 32] }"


def test_params_nni_parameter_cfg_record_is_unwrapped(small, tmp_path, capsys):
    # What NNI writes to parameter.cfg / returns from get_next_parameter().
    params = tmp_path / "parameter.cfg"
    params.write_text(
        json.dumps(
            {
                "parameter_id": 3,
                "parameter_source": "algorithm",
                "parameters": {"data_config.batch_size": 128},
            }
        )
    )
    assert main(["edit", str(small), "--params", str(params)]) == 0
    assert "  batch_size: 128\n" in capsys.readouterr().out


def test_params_easyrec_edit_config_json_with_string_values(small, tmp_path, capsys):
    # EasyRec's -Dedit_config_json dicts carry numbers as strings and multi-keys with ';'.
    params = tmp_path / "edit.json"
    params.write_text(
        json.dumps(
            {
                "feature_configs[input_names[0]=age_level].embedding_dim": "12",
                "data_config.batch_size;model_dir": "2048;exp/x",
            }
        )
    )
    assert main(["edit", str(small), "--params", str(params)]) == 0
    out = capsys.readouterr().out
    assert "embedding_dim: 12 num_buckets: 7" in out
    assert "  batch_size: 2048\n" in out and 'model_dir: "exp/x"' in out


# ---------------------------------------------------------------- schema and new fields


def test_schema_allows_adding_a_field_it_knows(small, capsys):
    assert (
        main(
            [
                "edit",
                str(small),
                "--proto-path",
                str(PROTOS),
                "--message",
                "easyrec_like.EasyRecConfig",
                "--set",
                "data_config.num_epochs=3",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    # Created under its parent after the last field, with the siblings' indentation.
    assert "  input_type: CSVInput\n  num_epochs: 3\n}" in out


def test_schema_rejects_unknown_enum_name(small, capsys):
    code = main(
        [
            "edit",
            str(small),
            "--proto-path",
            str(PROTOS),
            "--message",
            "easyrec_like.EasyRecConfig",
            "--set",
            "data_config.input_type=CSVInptu",
        ]
    )
    assert code == 2
    assert "CSVInput" in capsys.readouterr().err  # named as the close match / expected value


def test_allow_new_fields_writes_enum_bare_and_strings_quoted(small, capsys):
    assert (
        main(
            [
                "edit",
                str(small),
                "--allow-new-fields",
                "--set",
                "data_config.separator=,",
                "--set",
                "model_config.loss_type=enum:L2_LOSS",
            ]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert '  separator: ","\n' in out
    assert "loss_type: L2_LOSS" in out


# ---------------------------------------------------------------- errors


def test_unknown_field_fails_with_did_you_mean_and_writes_nothing(small, tmp_path, capsys):
    out = tmp_path / "out.config"
    code = main(["edit", str(small), "--set", "data_config.batch_sise=1", "-o", str(out)])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'batch_size'" in err
    assert not out.exists()  # OUT never created on error


def test_one_failing_edit_leaves_existing_output_untouched(small, tmp_path, capsys):
    out = tmp_path / "out.config"
    out.write_text("previous\n")
    code = main(
        [
            "edit",
            str(small),
            "--set",
            "data_config.batch_size=64",
            "--set",
            "feature_configs[9].embedding_dim=1",
            "-o",
            str(out),
        ]
    )
    assert code == 2
    # All or nothing: the good edit is not written either.
    assert out.read_text() == "previous\n"
    assert "feature_configs[9]" in capsys.readouterr().err


def test_set_without_equals_is_an_error(small, capsys):
    assert main(["edit", str(small), "--set", "data_config.batch_size"]) == 2
    assert "expected KEY=VALUE" in capsys.readouterr().err


def test_params_that_is_not_json(small, tmp_path, capsys):
    params = tmp_path / "p.json"
    params.write_text("{'a': 1}")  # Python, not JSON: never eval()ed
    assert main(["edit", str(small), "--params", str(params)]) == 2
    assert "not valid JSON" in capsys.readouterr().err


def test_params_that_is_not_an_object(small, tmp_path, capsys):
    params = tmp_path / "p.json"
    params.write_text("[1, 2]")
    assert main(["edit", str(small), "--params", str(params)]) == 2
    assert "expected a JSON object" in capsys.readouterr().err


def test_missing_config_names_the_path(tmp_path, capsys):
    assert main(["edit", str(tmp_path / "nope.config")]) == 2
    assert "nope.config: no such file" in capsys.readouterr().err


def test_help_explains_typing_new_fields_and_enum(capsys):
    with pytest.raises(SystemExit):
        main(["edit", "--help"])
    text = capsys.readouterr().out
    assert "JSON when" in text and "--allow-new-fields" in text and "enum:NAME" in text


# ---------------------------------------------------------------- parse_assignment


@pytest.mark.parametrize(
    "text, expected",
    [
        ("a.b=1", ("a.b", 1)),
        ("a=1e-4", ("a", 1e-4)),
        ("a=true", ("a", True)),
        ('a="007"', ("a", "007")),
        ("a=007", ("a", "007")),  # not JSON (leading zero), so kept as the string the user typed
        ("a=x=y", ("a", "x=y")),
        ("f[input_names[0]=user_id].d=8", ("f[input_names[0]=user_id].d", 8)),
        ('t[tower_name="a]=b"].w=2', ('t[tower_name="a]=b"].w', 2)),
        ("a=", ("a", "")),
    ],
)
def test_parse_assignment(text, expected):
    assert parse_assignment(text) == expected


def test_parse_assignment_needs_a_key():
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        parse_assignment("=1")


# ---------------------------------------------------------------- oss://


@pytest.fixture
def fake_oss(monkeypatch):
    """oss:// through the shipped storage path, with oss2.Bucket replaced by a FakeBucket."""
    import oss2

    bucket = FakeBucket("bkt")
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "secret")
    monkeypatch.setenv("OSS_ENDPOINT", "oss-cn-hangzhou.aliyuncs.com")
    monkeypatch.setattr(oss2, "Bucket", lambda auth, endpoint, name: bucket)
    storage._default.cache_clear()
    yield bucket
    storage._default.cache_clear()


def test_oss_config_and_output(fake_oss, capsys):
    fake_oss.objects["cfg/pipeline.config"] = SMALL.encode()
    assert (
        main(
            [
                "edit",
                "oss://bkt/cfg/pipeline.config",
                "--set",
                "data_config.batch_size=8",
                "-o",
                "oss://bkt/trial/pipeline.config",
            ]
        )
        == 0
    )
    assert "  batch_size: 8\n" in fake_oss.objects["trial/pipeline.config"].decode()
    assert capsys.readouterr().out == ""


def _write(path: Path, text: str) -> str:
    path.write_text(text)
    return str(path)
