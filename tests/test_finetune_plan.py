"""Finetune trial files without training: days, per-day stages, chaining, config errors.

The days run through the real runner with tests/trial/fake_train.py where a test runs anything.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from hpo_tools.dates import parse_date
from hpo_tools.errors import ConfigError
from hpo_tools.finetune import is_finetune_text, read_finetune_file
from hpo_tools.trial.plan import TrialVariables
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial_files import run_trial_file

FAKE_TRAIN = Path(__file__).parent / "trial" / "fake_train.py"
TRAIN = f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_TRAIN))}"
VARIABLES = TrialVariables("exp1", "trial1", "/out/trial1", {})

PLATFORM = """\
[finetune_config]
model_dir=${NNI_OUTPUT_DIR}/model/{bizdate}
fine_tune_checkpoint=/models/begin

[platform_config]
name=Local
cmd1=train --data t_{bizdate} --eval t_{eval_ymd} --model_dir {model_dir}
    --fine_tune_checkpoint {fine_tune_checkpoint}

[metric_config]
metric_source={model_dir}/eval_val
metric_dict={"auc": 1}
"""

CLASSIC = """\
[odps_config]
project_name=proj
odps_endpoint=http://odps.example

[easyrec_cmd_config]
-name=easy_rec_ext
-project=algo_public
-Dconfig=oss://bucket/ft/pipeline.config
-Dtrain_tables=odps://proj/tables/sample_{bizdate}
-Deval_tables=odps://proj/tables/sample_{eval_ymd}
-Dmodel_dir=oss://bucket/ft/{bizdate}
-Dedit_config_json={"train_config.fine_tune_checkpoint": "oss://bucket/begin/model"}

[metric_config]
auc=1
"""


def write(tmp_path: Path, text: str, name: str = "trial.ini") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def plan_of(tmp_path: Path, text: str, **kwargs):
    return read_finetune_file(write(tmp_path, text), variables=VARIABLES, environ={}, **kwargs)


# -- days and per-day settings ------------------------------------------------------------------


def test_flags_give_the_days_across_a_year_end(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, PLATFORM, start_time="2022-12-30", end_time="2023-01-01")
    # Both ends are included, and the window crosses into the next year.
    assert [d.bizdate for d in plan.days] == ["20221230", "20221231", "20230101"]


def test_each_day_gets_its_dates_and_model_dir(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, PLATFORM, start_time="20221231", end_time="20230101")
    command = plan.stage(parse_date("20221231")).commands[0].text
    # {bizdate}/{eval_ymd} are the day and the next one; {model_dir} is this trial's dir.
    assert "--data t_20221231 --eval t_20230101" in command
    assert "--model_dir /out/trial1/model/20221231" in command


def test_first_day_starts_from_the_begin_model_later_days_from_the_day_before(
    tmp_path: Path,
) -> None:
    plan = plan_of(tmp_path, PLATFORM, start_time="20220530", end_time="20220601")
    texts = [plan.stage(day).commands[0].text for day in plan.days]
    assert texts[0].endswith("--fine_tune_checkpoint /models/begin")
    # Chained to this trial's own model of the previous day, across the month end.
    assert texts[1].endswith("--fine_tune_checkpoint /out/trial1/model/20220530")
    assert texts[2].endswith("--fine_tune_checkpoint /out/trial1/model/20220531")


def test_metric_source_is_the_days_own(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, PLATFORM, start_time="20220530", end_time="20220531")
    metric = plan.stage(plan.days[1]).metric
    assert metric.sources == ("/out/trial1/model/20220531/eval_val",)


def test_classic_file_chains_through_edit_config_json(tmp_path: Path) -> None:
    plan = plan_of(tmp_path, CLASSIC, start_time="20220530", end_time="20220531")
    day1, day2 = (plan.stage(day) for day in plan.days)
    # Tables and model_dir carry the day; model_dir gets /<exp_id>_<trial_id> as in begin runs.
    assert "-Dtrain_tables=odps://proj/tables/sample_20220530" in day1.commands[0].text
    assert plan.model_dir(plan.days[0]) == "oss://bucket/ft/20220530/exp1_trial1"
    assert "-Dmodel_dir=oss://bucket/ft/20220530/exp1_trial1" in day1.commands[0].text
    # Day 1 keeps the file's begin model; day 2 starts from day 1's model of this trial.
    assert day1.config_writes[0].edits["train_config.fine_tune_checkpoint"] == "oss://bucket/begin/model"
    assert (
        day2.config_writes[0].edits["train_config.fine_tune_checkpoint"]
        == "oss://bucket/ft/20220530/exp1_trial1"
    )
    assert '"train_config.fine_tune_checkpoint":"oss://bucket/ft/20220530/exp1_trial1"' in (
        day2.commands[0].text
    )


def test_jinja_day_list_selects_each_days_keys(tmp_path: Path) -> None:
    text = """\
{% set date_list = ['20220615', '20220616'] %}
[finetune_config]
model_dir=/m/${trial_id}/{bizdate}
fine_tune_checkpoint=/begin

[platform_config]
name=Local
{% for bizdate in date_list %}
cmd1_{{bizdate}}=train --day {{bizdate}}
    --from {fine_tune_checkpoint}
{% endfor %}

[metric_config]
{% for bizdate in date_list %}
metric_source_{{bizdate}}=/m/{{bizdate}}/eval_val
{% endfor %}
metric_dict={"auc": 1}
"""
    plan = plan_of(tmp_path, text)
    assert [d.bizdate for d in plan.days] == ["20220615", "20220616"]
    day2 = plan.stage(plan.days[1])
    # Only day 2's command and source are left, under their ordinary names.
    assert [c.name for c in day2.commands] == ["cmd1"]
    assert day2.commands[0].text == "train --day 20220616 --from /m/trial1/20220615"
    assert day2.metric.sources == ("/m/20220616/eval_val",)


def test_finetune_files_are_recognised() -> None:
    assert is_finetune_text(PLATFORM)
    assert is_finetune_text("[platform_config]\ncmd1_{{bizdate}}=x\n")
    assert not is_finetune_text("[platform_config]\ncmd1=x\n")


# -- config errors -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"start_time": "2022-02-30", "end_time": "2022-03-01"},
         r"--start_time: '2022-02-30' is not a date"),
        ({"start_time": "20220601", "end_time": "2022-05-30"},
         r"end 20220530 is before start 20220601"),
        ({"start_time": "20220601"}, r"--start_time is given but --end_time is missing"),
        ({}, r"a finetune trial needs its days"),
    ],
)
def test_bad_windows_from_flags_are_config_errors(tmp_path: Path, kwargs, message) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_of(tmp_path, PLATFORM, **kwargs)


def test_end_before_start_in_the_file_names_the_section(tmp_path: Path) -> None:
    text = PLATFORM.replace("[finetune_config]\n",
                            "[finetune_config]\nstart_time=20230101\nend_time=20221231\n")
    with pytest.raises(ConfigError, match=r"trial.ini: \[finetune_config\]: end 20221231 is "
                                          r"before start 20230101"):
        plan_of(tmp_path, text)


def test_bad_date_in_the_file_names_the_key(tmp_path: Path) -> None:
    text = PLATFORM.replace("[finetune_config]\n",
                            "[finetune_config]\nstart_time=20220229\nend_time=20220301\n")
    # 2022 is not a leap year.
    with pytest.raises(ConfigError, match=r"\[finetune_config\] start_time: '20220229' is not"):
        plan_of(tmp_path, text)


def test_unknown_finetune_key_suggests_the_right_one(tmp_path: Path) -> None:
    text = PLATFORM.replace("fine_tune_checkpoint=", "finetune_checkpoint=")
    with pytest.raises(ConfigError, match=r"finetune_checkpoint: unknown key.*fine_tune_"):
        plan_of(tmp_path, text, start_time="20220601", end_time="20220602")


def test_mistyped_date_placeholder_suggests_the_right_one(tmp_path: Path) -> None:
    text = PLATFORM.replace("t_{bizdate}", "t_{bizdat}")
    with pytest.raises(ConfigError, match=r"unknown date placeholder \{bizdat\}.*bizdate"):
        plan_of(tmp_path, text, start_time="20220601", end_time="20220602")


def test_platform_file_without_model_dir_is_an_error(tmp_path: Path) -> None:
    text = PLATFORM.replace("model_dir=${NNI_OUTPUT_DIR}/model/{bizdate}\n", "")
    with pytest.raises(ConfigError, match=r"\[finetune_config\] model_dir is required"):
        plan_of(tmp_path, text, start_time="20220601", end_time="20220602")


def test_a_model_dir_shared_by_all_trials_is_an_error(tmp_path: Path) -> None:
    text = PLATFORM.replace("model_dir=${NNI_OUTPUT_DIR}/model/{bizdate}",
                            "model_dir=/shared/model/{bizdate}")
    # Every trial would write day 1 there and start day 2 from whichever trial wrote last.
    with pytest.raises(ConfigError, match=r"\[finetune_config\] model_dir .*/shared/model/"
                                          r"20220601.* trial id 'trial1'"):
        plan_of(tmp_path, text, start_time="20220601", end_time="20220602")


def test_the_daily_job_may_use_a_fixed_model_dir(tmp_path: Path) -> None:
    text = PLATFORM.replace("model_dir=${NNI_OUTPUT_DIR}/model/{bizdate}",
                            "model_dir=/serving/model/{bizdate}")
    # finetune-daily runs one chain outside any search: models go where serving reads them.
    plan = plan_of(tmp_path, text, start_time="20220601", end_time="20220602",
                   own_model_dir=False)
    assert plan.model_dir(plan.days[0]) == "/serving/model/20220601"


def test_a_file_that_never_uses_the_checkpoint_is_an_error(tmp_path: Path) -> None:
    # Without {fine_tune_checkpoint} day 2 would silently start from scratch.
    text = PLATFORM.replace("\n    --fine_tune_checkpoint {fine_tune_checkpoint}", "")
    with pytest.raises(ConfigError, match=r"nothing uses \{fine_tune_checkpoint\}"):
        plan_of(tmp_path, text, start_time="20220601", end_time="20220602")


def test_classic_file_without_begin_model_is_an_error(tmp_path: Path) -> None:
    text = CLASSIC.replace(
        '-Dedit_config_json={"train_config.fine_tune_checkpoint": "oss://bucket/begin/model"}\n',
        "",
    )
    with pytest.raises(ConfigError, match=r"the first day needs the begin model"):
        plan_of(tmp_path, text, start_time="20220601", end_time="20220602")


def test_days_listed_twice_is_an_error(tmp_path: Path) -> None:
    text = PLATFORM.replace("cmd1=", "cmd1_20220601=")
    with pytest.raises(ConfigError, match=r"the days are listed twice"):
        plan_of(tmp_path, text, start_time="20220601", end_time="20220602")


def test_days_with_different_commands_are_an_error(tmp_path: Path) -> None:
    text = PLATFORM.replace(
        "cmd1=", "cmd2_20220602=echo {fine_tune_checkpoint}\ncmd1_20220601="
    )
    with pytest.raises(ConfigError, match=r"day 20220602 has commands cmd2 but day 20220601 "
                                          r"has cmd1"):
        plan_of(tmp_path, text)


def test_bad_date_in_a_day_key_is_an_error(tmp_path: Path) -> None:
    text = PLATFORM.replace("cmd1=", "cmd1_20221301=")
    with pytest.raises(ConfigError, match=r"'20221301' is not a date"):
        plan_of(tmp_path, text)


# -- through the runner, with the fake trainer -----------------------------------------------


def test_jinja_day_list_runs_each_day_and_reports_each(tmp_path: Path) -> None:
    text = f"""\
{{% set date_list = ['20220615', '20220616', '20220617'] %}}
[finetune_config]
model_dir=${{NNI_OUTPUT_DIR}}/model/{{bizdate}}
fine_tune_checkpoint=/models/begin

[platform_config]
name=Local
{{% for bizdate in date_list %}}
cmd1_{{{{bizdate}}}}=echo start from {{fine_tune_checkpoint}} &&
    {TRAIN} --lr 0.0{{{{loop.index}}}} --model_dir {{model_dir}} --steps 2 --sleep 0
{{% endfor %}}

[metric_config]
{{% for bizdate in date_list %}}
metric_source_{{{{bizdate}}}}=${{NNI_OUTPUT_DIR}}/model/{{{{bizdate}}}}/eval_val
{{% endfor %}}
metric_dict={{"auc": 1}}
source_list_final_mode=best
"""
    reporter = ConsoleReporter({}, trial_id="jinja")
    outcome = run_trial_file(write(tmp_path, text), reporter, exp_dir=tmp_path / "exp",
                                interval=0.1)
    assert outcome.status == "succeeded", outcome.message
    trial_dir = Path(outcome.trial_dir)
    # One intermediate result per day, each the day's last evaluation (fake: lr 0.01 is best).
    assert [round(r["default"], 6) for r in reporter.intermediate] == [0.6, 0.59, 0.58]
    # source_list_final_mode=best picks the best day, not the average.
    assert reporter.final is not None and reporter.final["default"] == pytest.approx(0.6)
    log = (trial_dir / "days" / "20220616" / "trial.log").read_text()
    assert f"start from {trial_dir}/model/20220615" in log
    record = json.loads((tmp_path / "exp" / "standalone" / "hpo-tools" / "jobs" /
                         "jinja.json").read_text())
    # The registry records each day's command under its own index and every day as finished.
    assert sorted(job["command_index"] for job in record["jobs"]) == [
        2022061501, 2022061601, 2022061701]
    assert record["finished_stages"] == ["20220615", "20220616", "20220617"]


# -- the classic runner flags of python -m hpo_tools.run ---------------------------------------


@pytest.fixture
def no_nni(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("NNI_PLATFORM", "NNI_OUTPUT_DIR", "NNI_LOG_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)


def test_run_flags_end_before_start_exit_two(tmp_path: Path, capsys, no_nni) -> None:
    from hpo_tools.run import main

    code = main(["--config", str(write(tmp_path, PLATFORM)), "--exp_dir", str(tmp_path / "e"),
                 "--start_time", "2022-06-17", "--end_time", "2022-05-30"])
    # A config error: nothing launched, exit 2, one line naming the flags.
    assert code == 2
    assert "--start_time/--end_time: end 20220530 is before start 20220617" in (
        capsys.readouterr().err
    )
    assert not (tmp_path / "e").exists()


def test_run_flags_bad_date_exit_two(tmp_path: Path, capsys, no_nni) -> None:
    from hpo_tools.run import main

    code = main(["--config", str(write(tmp_path, PLATFORM)), "--start_time", "2022-13-01",
                 "--end_time", "2022-06-17"])
    assert code == 2
    assert "--start_time: '2022-13-01' is not a date" in capsys.readouterr().err


def test_run_flags_run_the_window_day_by_day(tmp_path: Path, capsys, no_nni) -> None:
    from hpo_tools.run import main

    text = f"""\
[finetune_config]
model_dir=${{NNI_OUTPUT_DIR}}/model/{{bizdate}}
fine_tune_checkpoint=/models/begin

[platform_config]
name=Local
cmd1=echo from {{fine_tune_checkpoint}} && {TRAIN} --lr 0.01 --model_dir {{model_dir}} --steps 1
    --sleep 0

[metric_config]
metric_source={{model_dir}}/eval_val
metric_dict={{"auc": 1}}
"""
    code = main(["--config", str(write(tmp_path, text)), "--exp_dir", str(tmp_path / "exp"),
                 "--interval", "0.1", "--start_time", "2022-02-28", "--end_time", "2022-03-01"])
    assert code == 0
    out = capsys.readouterr().out
    # Two days (2022 has no 29 February): two intermediate results, then the final one.
    assert "intermediate result 2:" in out and "intermediate result 3:" not in out
    assert "final result:" in out
    days = tmp_path / "exp" / "standalone" / "trials" / "standalone" / "days"
    assert sorted(p.name for p in days.iterdir()) == ["20220228", "20220301"]


# -- check ---------------------------------------------------------------------------------------

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "search" / "local_easyrec" / "finetune"


def test_check_passes_the_local_finetune_example(monkeypatch: pytest.MonkeyPatch) -> None:
    from hpo_tools.check import check_trial_file

    monkeypatch.chdir(EXAMPLE)  # paths in trial.ini are relative to the example
    assert check_trial_file("trial.ini", "search_space.json", environ={}) == []


def test_check_reports_a_search_key_that_does_not_resolve(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo_tools.check import check_trial_file

    monkeypatch.chdir(EXAMPLE)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"train_config.optimizer_config[0].adam_optimizer.lr": {
        "_type": "choice", "_value": [0.1]}}))
    problems = check_trial_file("trial.ini", space, environ={})
    # Named once (not once per day), with the path that does not resolve.
    assert len(problems) == 1 and "adam_optimizer.lr" in problems[0], problems


def test_check_with_a_schema_catches_a_value_of_the_wrong_type(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from hpo_tools.check import check_trial_file
    from hpo_tools.pbtxt.schema import load_schema

    repo = Path(__file__).resolve().parents[1]
    schema = load_schema(proto_path=repo / "tests/protos", message="easyrec_like.EasyRecConfig")
    monkeypatch.chdir(EXAMPLE)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"train_config.num_steps": {"_type": "choice",
                                                            "_value": [100, "many"]}}))
    problems = check_trial_file("trial.ini", space, environ={}, schema=schema)
    # `hpo-tools check --proto-path ...` on a finetune file checks types as for any trial file:
    # 100 fits the integer field, "many" does not, and the corner that has it is named.
    assert len(problems) == 1 and "many" in problems[0] and "corner 2/2" in problems[0], problems


def test_unparsable_finetune_section_names_the_file(tmp_path: Path) -> None:
    text = PLATFORM.replace("[finetune_config]\n", "[finetune_config]\nstart_time\n")
    with pytest.raises(ConfigError, match=r"trial.ini: \[finetune_config\]: cannot parse"):
        plan_of(tmp_path, text)


def test_hpo_tools_run_runs_a_finetune_file(tmp_path: Path, capsys, no_nni) -> None:
    from hpo_tools.cli import main

    text = f"""\
[finetune_config]
start_time=20220630
end_time=20220701
model_dir=${{NNI_OUTPUT_DIR}}/model/{{bizdate}}
fine_tune_checkpoint=/models/begin

[platform_config]
name=Local
cmd1=echo from {{fine_tune_checkpoint}} && {TRAIN} --lr ${{lr}} --model_dir {{model_dir}}
    --steps 1 --sleep 0

[metric_config]
metric_source={{model_dir}}/eval_val
metric_dict={{"auc": 1}}
"""
    code = main(["run", "--config", str(write(tmp_path, text)), "--params", '{"lr": 0.01}',
                 "--exp_dir", str(tmp_path / "exp"), "--interval", "0.1"])
    out = capsys.readouterr().out
    # The standalone debug command takes finetune files too: one result per day, then the mean.
    assert code == 0, out
    assert "intermediate result 2:" in out and "final result:" in out


def test_a_failed_days_message_and_files_never_show_a_secret(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    secret = "s3cretFinetuneValue42"
    monkeypatch.setenv("HPO_TEST_ACCESS_KEY_SECRET", secret)
    text = """\
[finetune_config]
model_dir=${NNI_OUTPUT_DIR}/model/{bizdate}
fine_tune_checkpoint=/models/begin

[platform_config]
name=Local
cmd1=echo key ${HPO_TEST_ACCESS_KEY_SECRET} from {fine_tune_checkpoint} && false

[metric_config]
metric_source={model_dir}/eval_val
metric_dict={"auc": 1}
"""
    reporter = ConsoleReporter({}, trial_id="secret")
    outcome = run_trial_file(write(tmp_path, text), reporter, exp_dir=tmp_path / "exp",
                                interval=0.1, start_time="20220601", end_time="20220602")
    assert outcome.status == "failed"
    # The message names the command, with the credential masked.
    assert "cmd1: echo key *** from" in outcome.message and secret not in outcome.message
    for path in (tmp_path / "exp").rglob("*"):
        if path.is_file():
            assert secret not in path.read_text(errors="replace"), path


@pytest.mark.parametrize("example", ["local_easyrec", "maxcompute_easyrec"])
def test_finetune_example_configs_load_and_guard_tpe_against_mispaired_trials(
    example: str,
) -> None:
    from nni.experiment import ExperimentConfig

    path = EXAMPLE.parents[1] / example / "finetune" / "config.yml"
    config = ExperimentConfig.load(str(path))
    # Two trials at a time, and the assessor stops some: NNI 3.0 then calls the tuner's
    # trial_end with another trial's parameter id and plain TPE crashes the dispatcher
    # (docs/experiments.md); the examples must use the guarded TPE, as the begin examples do.
    assert config.trial_concurrency > 1
    assert config.tuner.class_name == "hpo_tools.tuners.SafeTpeTuner"
    assert (path.parent / config.tuner.code_directory / "pai_assessor.py").is_file()
    assert config.tuner.class_args["optimize_mode"] == "maximize"


def test_a_later_days_storage_error_fails_the_trial_instead_of_calling_the_file_bad(
    tmp_path: Path,
) -> None:
    # Day 2's source config is missing: a StorageError before day 2 launches, after day 1 ran.
    (tmp_path / "pipeline_20220615.config").write_text("train_config { num_steps: 2 }\n")
    text = f"""\
[finetune_config]
start_time=20220615
end_time=20220616
model_dir=${{NNI_OUTPUT_DIR}}/model/{{bizdate}}
fine_tune_checkpoint=/models/begin

[platform_config]
name=Local
cmd1=echo from {{fine_tune_checkpoint}} && {TRAIN} --lr 0.01 --model_dir {{model_dir}} --steps 1
    --sleep 0

[metric_config]
metric_source={{model_dir}}/eval_val
metric_dict={{"auc": 1}}

[params_config]
params_src_dst_filepath1={tmp_path}/pipeline_{{bizdate}}.config,{{model_dir}}/pipeline.config
"""
    reporter = ConsoleReporter({}, trial_id="later")
    outcome = run_trial_file(write(tmp_path, text), reporter, exp_dir=tmp_path / "exp",
                                interval=0.1)
    # Day 1 trained, so this is a failed trial (exit 1), not a bad trial file (exit 2)...
    assert outcome.status == "failed" and outcome.exit_code == 1
    # ...whose message names the day and the file, and day 1's result still reached NNI.
    assert "day 20220616" in outcome.message and "pipeline_20220616.config" in outcome.message
    assert len(reporter.intermediate) == 1 and reporter.final is None
