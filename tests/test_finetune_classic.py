"""Classic finetune files (config_finetune.ini): the MaxCompute example per day, and a classic
file run day by day with a local stand-in for PAI's easy_rec_ext (the stand-in of
tests/trial/test_classic_format.py: it runs tests/trial/fake_train.py with the PAI command's
-Dmodel_dir and -Dedit_config_json through the real Local platform)."""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest

from hpo_tools.finetune import read_finetune_file
from hpo_tools.trial.paths import resolve_paths
from hpo_tools.trial.plan import TrialVariables
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import TrialContext, run_plan
from tests.trial.conftest import LR_PATH, PIPELINE
from tests.trial.test_classic_format import LocalEasyRecStandIn

EXAMPLE = (Path(__file__).resolve().parents[1] / "examples" / "search" / "maxcompute_easyrec"
           / "finetune" / "config_finetune.ini")
ENV = {
    "OSS_ENDPOINT": "oss-cn-hangzhou.aliyuncs.com", "OSS_ACCESS_KEY_ID": "AKIDexample01",
    "OSS_ACCESS_KEY_SECRET": "exampleSecret01", "OSS_BUCKET": "bkt", "ODPS_PROJECT": "proj",
    "ODPS_ENDPOINT": "http://service.odps.example/api", "PAI_ROLE_ARN": "acs:ram::1:role/x",
}
CKPT = "train_config.fine_tune_checkpoint"


def _edit_json(pai_command: str) -> dict:
    line = next(x for x in pai_command.splitlines() if x.startswith("-Dedit_config_json="))
    return json.loads(line.partition("=")[2].strip("'"))


def test_maxcompute_example_builds_one_pai_job_per_day_chained() -> None:
    variables = TrialVariables("E1", "T1", "/out", {})
    plan = read_finetune_file(EXAMPLE, variables=variables, environ=ENV,
                              start_time="2022-06-30", end_time="2022-07-01").to_plan()
    day1, day2 = (stage.commands[0].text for stage in plan.stages)
    # The day's partitions, across a month end.
    assert "-Dtrain_tables=odps://proj/tables/hpo_taobao_like_daily/dt=20220630" in day1
    assert "-Deval_tables=odps://proj/tables/hpo_taobao_like_daily/dt=20220701" in day1
    assert "-Dmodel_dir=oss://bkt/hpo_tools_example/dbmtl/finetune/20220701/E1_T1" in day2
    # Day 1 from the begin model, day 2 from this trial's day-1 model.
    assert _edit_json(day1)[CKPT] == "oss://bkt/hpo_tools_example/dbmtl/begin_model/"
    assert _edit_json(day2)[CKPT] == "oss://bkt/hpo_tools_example/dbmtl/finetune/20220630/E1_T1"
    # resume=1 of [finetune_config] reaches the days.
    assert plan.resume


def test_classic_file_runs_day_by_day_with_params_and_chain(tmp_path: Path) -> None:
    lr_path = ("train_config.optimizer_config[0].adam_optimizer.learning_rate."
               "constant_learning_rate.learning_rate")
    models = tmp_path / "models"
    trial = tmp_path / "config_finetune.ini"
    trial.write_text(
        "[odps_config]\nproject_name=proj\nodps_endpoint=http://service.odps.example/api\n"
        "[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n-Dcmd=train\n"
        "-Dconfig=oss://bucket/pipeline_finetune.config\n"
        "-Dtrain_tables=odps://proj/tables/sample/dt={bizdate}\n"
        f"-Dmodel_dir={models}/{{bizdate}}\n"
        '-Dedit_config_json={"train_config.fine_tune_checkpoint": "oss://bucket/begin/"}\n'
        "[metric_config]\nauc=1\n"
    )
    reporter = ConsoleReporter({lr_path: 0.03}, experiment_id="E1", trial_id="T1",
                               stream=io.StringIO())
    paths = resolve_paths("E1", "T1", exp_dir=tmp_path / "exp", environ={})
    variables = TrialVariables("E1", "T1", str(paths.trial_dir), reporter.get_parameters())
    plan = read_finetune_file(trial, variables=variables, environ={}, start_time="20220614",
                              end_time="20220615").to_plan()
    stand_in = LocalEasyRecStandIn()

    outcome = run_plan(plan, reporter, TrialContext("E1", "T1", variables.params, paths),
                       interval=0.05, platform=stand_in)

    assert outcome.status == "succeeded", outcome.message
    day1, day2 = stand_in.pai_commands
    # The tuner's lr reached each day's -Dedit_config_json; day 2 chains to day 1's model dir.
    assert _edit_json(day1)[lr_path] == 0.03 and _edit_json(day2)[lr_path] == 0.03
    assert _edit_json(day1)[CKPT] == "oss://bucket/begin/"
    assert _edit_json(day2)[CKPT] == f"{models}/20220614/E1_T1"
    # Each day's metrics came from its own <model_dir>/eval_val/: two intermediate results.
    assert (models / "20220615" / "E1_T1" / "eval_val").is_dir()
    assert len(reporter.intermediate) == 2
    assert reporter.final["default"] == pytest.approx(
        sum(r["default"] for r in reporter.intermediate) / 2)


def test_a_seed_style_finetune_file_whose_config_lacks_the_checkpoint_field_runs(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # As EasyRec's hpo_nni config_finetune.ini: the checkpoint is set through
    # -Dedit_config_json, and -Dconfig is a training config without fine_tune_checkpoint
    # (EasyRec's edit_config creates the field; we refused: "no field 'fine_tune_checkpoint'").
    base = tmp_path / "pipeline_finetune.config"
    base.write_text(PIPELINE)
    assert "fine_tune_checkpoint" not in base.read_text()
    trial = tmp_path / "config_finetune.ini"
    trial.write_text(
        "[odps_config]\nproject_name=proj\nodps_endpoint=http://service.odps.example/api\n"
        "[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n-Dcmd=train\n"
        f"-Dconfig={base}\n-Dtrain_tables=odps://proj/tables/sample_{{bizdate}}\n"
        '-Dedit_config_json={"train_config.fine_tune_checkpoint": '
        f'"{tmp_path}/models/{{predate}}"}}\n'
        f"-Dmodel_dir={tmp_path}/models/{{bizdate}}\n"
        "[metric_config]\nauc=1\n"
    )
    params = {LR_PATH: 0.02}
    reporter = ConsoleReporter(params, experiment_id="E1", trial_id="T1", stream=io.StringIO())
    paths = resolve_paths("E1", "T1", exp_dir=tmp_path / "exp", environ={})
    variables = TrialVariables("E1", "T1", str(paths.trial_dir), params)
    plan = read_finetune_file(trial, variables=variables, environ={}, start_time="20220614",
                              end_time="20220615").to_plan()
    stand_in = LocalEasyRecStandIn()
    with caplog.at_level("WARNING"):
        outcome = run_plan(plan, reporter, TrialContext("E1", "T1", params, paths),
                           interval=0.05, platform=stand_in)
    assert outcome.status == "succeeded", outcome.message
    # PAI got the checkpoint each day; the local record copy says why it lacks it.
    day1, day2 = stand_in.pai_commands
    assert _edit_json(day1)[CKPT] == f"{tmp_path}/models/20220613"
    assert _edit_json(day2)[CKPT] == f"{tmp_path}/models/20220614/E1_T1"
    assert "train_config.fine_tune_checkpoint is not in this config" in caplog.text
    copy = paths.trial_dir / "days" / "20220615" / "configs" / "pipeline_finetune.config"
    assert "learning_rate: 0.02" in copy.read_text()
    # `hpo-tools check` agrees with the run: nothing to refuse.
    from hpo_tools.check import check_trial_file

    space = tmp_path / "search_space.json"
    space.write_text(json.dumps({LR_PATH: {"_type": "choice", "_value": [0.02]}}))
    assert check_trial_file(trial, space, environ={}) == []
