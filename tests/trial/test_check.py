"""`hpo-tools check`: every problem over the search-space corners, at once, nothing launched."""

from __future__ import annotations

import json

import pytest

from hpo_tools import cli
from hpo_tools.check import check_or_raise, check_trial_file
from hpo_tools.errors import ConfigError
from hpo_tools.trial.schema import ConfigSchema

from .conftest import LR_PATH

METRIC = '[metric_config]\nmetric_source=${NNI_OUTPUT_DIR}/m\nmetric_dict={"auc": 1}\n'


@pytest.fixture
def space(tmp_path):
    def write(content: dict):
        path = tmp_path / "search_space.json"
        path.write_text(json.dumps(content))
        return path

    return write


def _trial(write_trial, pipeline, cmd="echo ${trial_id} ${NNI_OUTPUT_DIR}", extra=""):
    return write_trial(
        f"[platform_config]\nname=Local\ncmd1={cmd}\n" + METRIC + extra
        + f"[params_config]\nparams_src_dst_filepath1={pipeline},${{NNI_OUTPUT_DIR}}/p.config\n"
    )


def test_clean_file_has_no_problems_and_launches_nothing(tmp_path, write_trial, pipeline, space):
    marker = tmp_path / "launched"
    trial = _trial(write_trial, pipeline, cmd=f"touch {marker} ${{{LR_PATH}}}")
    ss = space({LR_PATH: {"_type": "loguniform", "_value": [1e-4, 0.1]},
                "data_config.batch_size": {"_type": "choice", "_value": [128, 256]}})
    assert check_trial_file(trial, ss) == []
    assert not marker.exists()
    # Nothing written either: the edited config exists only in memory.
    assert not list(tmp_path.rglob("p.config"))


def test_every_problem_is_reported_at_once(tmp_path, write_trial, pipeline, space, monkeypatch):
    monkeypatch.delenv("UNDEFINED_ONE", raising=False)
    trial = _trial(write_trial, pipeline, cmd="run ${UNDEFINED_ONE} ${undefined_two}")
    ss = space({
        LR_PATH: {"_type": "choice", "_value": [0.01, "fast"]},
        "train_config.no_such_field": {"_type": "choice", "_value": [1]},
        "data_config.batch_size": {"_type": "randint", "_value": [8, 64]},
    })
    problems = check_trial_file(trial, ss)
    text = "\n".join(problems)
    # Both undefined placeholders, not just the first.
    assert "${UNDEFINED_ONE} is not defined" in text
    assert "${undefined_two} is not defined" in text
    # A key that does not resolve...
    assert any("no_such_field" in p for p in problems)
    # ...and a value that does not fit its (float) field, at the corner that has it.
    assert any("fast" in p and "corner" in p for p in problems)
    # The valid keys and values cause nothing.
    assert not any("batch_size" in p.split(" [at corner")[0] for p in problems)
    assert all("\n" not in p for p in problems)


def test_unreadable_source_config_is_a_problem(tmp_path, write_trial, space):
    trial = _trial(write_trial, tmp_path / "missing.config")
    problems = check_trial_file(trial, space({"a": {"_type": "choice", "_value": [1]}}))
    assert len(problems) == 1 and "missing.config" in problems[0]


def test_invalid_search_space_is_reported(tmp_path, write_trial, pipeline, space):
    trial = _trial(write_trial, pipeline)
    problems = check_trial_file(trial, space({"x": {"_type": "uniform", "_value": [1, 0]}}))
    assert problems == [f"{tmp_path / 'search_space.json'}: parameter 'x': uniform needs "
                        "low < high, got [1, 0]"]


def test_classic_edits_are_checked_against_the_config(tmp_path, pipeline, space, monkeypatch):
    monkeypatch.setenv("HPO_TEST_AK_SECRET", "whatever-secret")
    trial = tmp_path / "config_begin.ini"
    trial.write_text(
        "[oss_config]\naccessKeyID=id\naccessKeySecret=${HPO_TEST_AK_SECRET}\n"
        "[odps_config]\nproject_name=p\nodps_endpoint=http://e\n"
        f"[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n-Dconfig={pipeline}\n"
        '-Dedit_config_json={"train_confg.num_steps": 5}\n-Dmodel_dir=/m\n'
        "[metric_config]\nauc=1\n"
    )
    problems = check_trial_file(trial, space({LR_PATH: {"_type": "uniform", "_value": [0, 1]}}),
                                schema=ConfigSchema.none())
    # The user's own edit is checked too, not only the tuner's parameters: a field whose
    # parent is absent is no field EasyRec's edit_config could create (an absent field whose
    # parent is there is left to it: tests/trial/test_trial_schema.py).
    assert len(problems) == 1 and "train_confg" in problems[0]


def test_check_reads_oss_with_the_oss_config_keys_as_run_does(
    tmp_path, pipeline, space, monkeypatch
):
    import oss2

    from hpo_tools.testing.oss import FakeBucket

    # No OSS credentials in the environment nor in ~/.ossutilconfig: only [oss_config] has
    # them, which `run` exports (hpo_tools.trial_files.export_oss_credentials).
    for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    used = []

    def fake_bucket(auth, endpoint, name):  # oss2.Bucket, the SDK object: replaced by a fake
        key_id = auth.credentials_provider.get_credentials().get_access_key_id()
        used.append((key_id, endpoint, name))
        return FakeBucket(name, {"models/pipeline.config": pipeline.read_bytes()})

    monkeypatch.setattr(oss2, "Bucket", fake_bucket)
    trial = tmp_path / "config_begin.ini"
    trial.write_text(
        "[oss_config]\nendpoint=oss-cn-hangzhou.aliyuncs.com\naccessKeyID=AKIDfromfile\n"
        "accessKeySecret=secretfromfile\n"
        "[odps_config]\nproject_name=p\nodps_endpoint=http://e\n"
        "[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n"
        "-Dconfig=oss://bkt/models/pipeline.config\n-Dmodel_dir=oss://bkt/m\n"
        "[metric_config]\nauc=1\n"
    )
    problems = check_trial_file(trial, space({LR_PATH: {"_type": "choice", "_value": [0.1]}}),
                                environ={})
    # Clean (it refused with "no OSS credentials" while `run` used the file's keys)...
    assert problems == []
    # ...read with the file's keys, as the runner will.
    assert used == [("AKIDfromfile", "oss-cn-hangzhou.aliyuncs.com", "bkt")]


def test_check_and_run_refuse_the_same_metric_sources_before_any_job(
    tmp_path, write_trial, space, capsys, monkeypatch
):
    monkeypatch.delenv("HPO_TOOLS_WEBHDFS", raising=False)  # hdfs:// needs its address
    marker = tmp_path / "launched"
    trial = write_trial(
        f"[platform_config]\nname=Local\ncmd1=touch {marker}\n[metric_config]\n"
        "metric_type=stdout\nmetric_source_1=cmd1,worker\n"
        "metric_source_2=hdfs://nn:9000/logs/train.log\nmetric_dict={\"auc=([0-9.]+)\": 1}\n"
    )
    problems = check_trial_file(trial, space({LR_PATH: {"_type": "choice", "_value": [0.1]}}))
    # Both sources are reported (hpo-tools check said "ok" to both before)...
    assert any("metric_source_1: 'cmd1,worker'" in p for p in problems), problems
    assert any("metric_source_2: hdfs://nn:9000" in p and "HPO_TOOLS_WEBHDFS" in p
               for p in problems), problems
    # ...and `hpo-tools run` refuses the file the same way, before its command runs.
    code = cli.main(["run", "--config", str(trial), "--params", "{}",
                     "--exp_dir", str(tmp_path / "exp")])
    assert code == 2 and "metric_source_1: 'cmd1,worker'" in capsys.readouterr().err
    assert not marker.exists()


def test_check_or_raise_gives_one_line_with_the_count(tmp_path, write_trial, pipeline, space):
    trial = _trial(write_trial, pipeline, cmd="${a_missing} ${b_missing}")
    with pytest.raises(ConfigError, match=r"^2 problem\(s\) in .*a_missing.*; .*b_missing"):
        check_or_raise(trial, space({LR_PATH: {"_type": "choice", "_value": [0.1]}}))


def test_cli_check_exit_codes(tmp_path, write_trial, pipeline, space, capsys):
    good = _trial(write_trial, pipeline, cmd=f"echo ${{{LR_PATH}}}")
    ss = space({LR_PATH: {"_type": "uniform", "_value": [0.001, 0.1]}})
    assert cli.main(["check", "--config", str(good), "--search-space", str(ss)]) == 0
    assert capsys.readouterr().out.startswith("ok: ")
    bad = _trial(write_trial, pipeline, cmd="echo ${nope}")
    assert cli.main(["check", "--config", str(bad), "--search-space", str(ss)]) == 1
    out = capsys.readouterr().out
    assert "problem: " in out and "1 problem(s) found" in out


def test_bad_metric_settings_are_problems(tmp_path, write_trial, pipeline, space):
    trial = write_trial(
        "[platform_config]\nname=Local\ncmd1=true\n[metric_config]\nmetric_type=sumary\n"
        'metric_source=/m\nmetric_dict={"auc": 1}\n'
    )
    problems = check_trial_file(trial, space({"x": {"_type": "choice", "_value": [1]}}))
    # Named with file and section, and the near miss offered.
    assert len(problems) == 1
    assert "[metric_config] metric_type" in problems[0] and "'summary'" in problems[0]


REPO = __import__("pathlib").Path(__file__).resolve().parents[2]


def test_sample_config_and_search_space_pass_with_the_schema(tmp_path, write_trial, capsys):
    trial = write_trial(
        "[platform_config]\nname=Local\ncmd1=true\n" + METRIC
        + f"[params_config]\nparams_src_dst_filepath1={REPO}/samples/pipeline.config,"
        "${NNI_OUTPUT_DIR}/pipeline.config\n"
    )
    code = cli.main(["check", "--config", str(trial), "--search-space",
                     str(REPO / "samples/hpo/search_space.json"),
                     "--proto-path", str(REPO / "tests/protos"),
                     "--message", "easyrec_like.EasyRecConfig"])
    assert code == 0, capsys.readouterr().out


def test_schema_catches_a_value_of_the_wrong_type(tmp_path, write_trial, space):
    from hpo_tools.pbtxt.schema import load_schema

    schema = load_schema(proto_path=REPO / "tests/protos", message="easyrec_like.EasyRecConfig")
    trial = write_trial(
        "[platform_config]\nname=Local\ncmd1=true\n" + METRIC
        + f"[params_config]\nparams_src_dst_filepath1={REPO}/samples/pipeline.config,/tmp/x\n"
    )
    ss = space({"train_config.num_steps": {"_type": "choice", "_value": [100, "many"]}})
    problems = check_trial_file(trial, ss, schema=schema)
    # 100 fits the integer field; "many" does not, and the corner that has it is named.
    assert len(problems) == 1 and "many" in problems[0] and "corner 2/2" in problems[0]


def test_every_bad_key_and_section_of_the_trial_file_is_reported_at_once(
    tmp_path, write_trial, pipeline, space
):
    trial = write_trial(
        "[platform_config]\nname=Local\ncmd1=true\nresum=1\n"
        "[metric_config]\nmetric_source=${NNI_OUTPUT_DIR}/m\nmetric_dict={\"auc\": 1}\n"
        "final_mod=best\noptimize_mode=maximise\n"
        "[oss_confg]\nendpoint=http://oss\n"
        f"[params_config]\nparams_src_dst_filepath1={pipeline},${{NNI_OUTPUT_DIR}}/p.config\n"
    )
    problems = check_trial_file(trial, space({"train_config.num_stepz": {
        "_type": "choice", "_value": [1]}}))
    text = "\n".join(problems)
    # The parser stops at its first problem; check goes on past each one.
    assert "resum: unknown key (did you mean 'resume'?)" in text
    assert "final_mod: unknown key (did you mean 'final_mode'?)" in text
    assert "optimize_mode: expected one of maximize, minimize, got 'maximise'" in text
    assert "unknown section [oss_confg] (did you mean 'oss_config'?)" in text
    # ...and still reaches the edited config.
    assert "num_stepz" in text
    assert len(problems) == 5, problems



def test_check_command_with_a_schema_checks_a_finetune_file_against_it(
    tmp_path, space, capsys, monkeypatch
):
    example = REPO / "examples/search/local_easyrec/finetune"
    monkeypatch.chdir(example)  # paths in its trial.ini are relative to the example
    # keep_checkpoint_max is not in the example's pipeline.config: only the schema knows it is
    # an integer field that may be set.
    ss = space({"train_config.keep_checkpoint_max": {"_type": "choice", "_value": [3, 5]}})
    schema = ["--proto-path", str(REPO / "tests/protos"), "--message", "easyrec_like.EasyRecConfig"]
    # (--no-easyrec-schema: an EasyRec installed on the machine would be a schema too.)
    without = cli.main(["check", "--config", "trial.ini", "--search-space", str(ss),
                        "--no-easyrec-schema"])
    assert without == 1 and "keep_checkpoint_max" in capsys.readouterr().out
    code = cli.main(["check", "--config", "trial.ini", "--search-space", str(ss), *schema])
    out = capsys.readouterr().out
    # --proto-path must reach the finetune checker (it did for other trial files only).
    assert code == 0, out


def test_table_metrics_of_a_maxcompute_trial_check_clean_without_contacting_it(
    tmp_path, write_trial, pipeline, space, monkeypatch
):
    # A table metric runs on the trial's MaxCompute platform; check builds that platform (lazily,
    # no client) instead of reporting "table needs MaxCompute" for a correct file.
    import hpo_tools.platforms.maxcompute as maxcompute

    def no_network(*args, **kwargs):
        raise AssertionError("check must not build an ODPS client")

    monkeypatch.setattr(maxcompute, "_default_odps_factory", no_network)
    monkeypatch.setenv("HPO_TEST_ODPS_KEY", "whatever-secret")
    trial = write_trial(
        "[platform_config]\nname=MaxCompute\ncmd1=SELECT 1;\n"
        "[odps_config]\nproject_name=p\nodps_endpoint=http://e\n"
        "access_id=id\naccess_key=${HPO_TEST_ODPS_KEY}\n"
        "[metric_config]\nmetric_type=table\n"
        "metric_source=SELECT step, auc FROM eval_${trial_id}\n"
        'metric_dict={"auc": 1}\n'
        + f"[params_config]\nparams_src_dst_filepath1={pipeline},${{NNI_OUTPUT_DIR}}/p.config\n"
    )
    assert check_trial_file(trial, space({LR_PATH: {"_type": "uniform", "_value": [0, 1]}})) == []


def test_parameters_a_tuner_adds_are_known_to_check(tmp_path, write_trial, space):
    """${TRIAL_BUDGET} (Hyperband/BOHB) and PBT's ${save_checkpoint_dir} are parameters the
    tuner adds to each point, never in the search space: check must not call them undefined."""
    from hpo_tools.check import check_trial_file

    trial = write_trial(
        "[platform_config]\nname=Local\n"
        "cmd1=python train.py --steps ${TRIAL_BUDGET} --save ${save_checkpoint_dir}"
        " --load ${load_checkpoint_dir}\n"
        "[metric_config]\nmetric_type=stdout\nmetric_dict={\"auc=(.*)\": 1}\n")
    ss = space({"lr": {"_type": "choice", "_value": [0.1, 0.2]}})
    assert check_trial_file(trial, ss) == []
    # An undefined name is still one.
    typo = write_trial(
        "[platform_config]\nname=Local\ncmd1=python train.py --steps ${TRIAL_BUDGT}\n"
        "[metric_config]\nmetric_type=stdout\nmetric_dict={\"auc=(.*)\": 1}\n")
    assert any("TRIAL_BUDGT" in p for p in check_trial_file(typo, ss))


def test_pbts_checkpoint_parameters_are_not_config_edits():
    from hpo_tools.trial.plan import params_to_edits

    assert params_to_edits({"a.lr": 0.1, "load_checkpoint_dir": "/x", "save_checkpoint_dir": "/y",
                            "TRIAL_BUDGET": 3}) == {"a.lr": 0.1}
