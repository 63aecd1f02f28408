"""Hyperband/BOHB budgets: `[params_config] budget_path` / `budget_scale`, `[finetune_config]
budget=days`, the typed edit, `check`, and one NNI report per budget unit."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_tools.check import check_trial_file
from hpo_tools.errors import ConfigError
from hpo_tools.finetune import read_finetune_file
from hpo_tools.metrics import Report
from hpo_tools.pbtxt import Document
from hpo_tools.trial.budget import Budget, UnitReports, field_kind, trial_budget
from hpo_tools.trial.plan import TrialVariables
from hpo_tools.trial.settings import load_trial_file

from .conftest import LR_PATH, PIPELINE, TRAIN

REPO = Path(__file__).resolve().parents[2]
METRIC = '[metric_config]\nmetric_source=${NNI_OUTPUT_DIR}/model/eval_val\nmetric_dict={"auc": 1}\n'


def _trial(write_trial, pipeline, budget="budget_path=train_config.num_steps\n", metric=METRIC):
    return write_trial(
        "[platform_config]\nname=Local\ncmd1=echo hi\n" + metric
        + f"[params_config]\nparams_src_dst_filepath1={pipeline},${{NNI_OUTPUT_DIR}}/p.config\n"
        + budget
    )


def _plan(path, params):
    return load_trial_file(path, variables=TrialVariables("e", "t", "/out/t", params), environ={})


# -- the value and its field ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("budget", "scale", "kind", "expected"),
    [
        (3, 1000, "int", 3000),
        (2.5, 1, "int", 3),  # the nearest integer, halves up (not banker's rounding)
        (0.2, 1, "int", 1),  # an int budget is at least 1: a job of 0 steps trains nothing
        (3.0000000000000004, 1, "float", 3.0),  # BOHB's float budgets, cleaned up
        (1 / 3, 3, "float", 1.0),
        (None, 5, "int", 5),  # check's stand-in: no TRIAL_BUDGET counts as 1
    ],
)
def test_budget_value_is_typed_by_its_field(budget, scale, kind, expected):
    value = Budget("train_config.num_steps", scale, budget).value(kind)
    assert value == expected and type(value) is type(expected)


def test_field_kind_comes_from_the_configs_value():
    doc = Document.parse(PIPELINE, source="p.config")
    assert field_kind(doc, "train_config.num_steps") == "int"
    assert field_kind(doc, LR_PATH) == "float"
    # An int field gets an int edit, written as an int.
    doc.apply(Budget("train_config.num_steps", 100, 3.0).edit(doc))
    assert doc.get("train_config.num_steps") == [300]


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("train_config.num_stepz", r"budget_path=train_config.num_stepz: not in p.config: .*"
                                   r"did you mean 'num_steps'"),
        ("train_config", r"expected a numeric field .* holds a message"),
    ],
)
def test_field_kind_refuses_what_is_not_a_numeric_field(path, message):
    doc = Document.parse(PIPELINE, source="p.config")
    with pytest.raises(ConfigError, match=message):
        field_kind(doc, path, where="t.ini: [params_config] budget_path")


def test_field_kind_refuses_strings_and_bools():
    doc = Document.parse('a: "x"\nb: true\n', source="p.config")
    with pytest.raises(ConfigError, match=r"a string or enum \('x'\)"):
        field_kind(doc, "a")
    with pytest.raises(ConfigError, match=r"a bool \(true\)"):
        field_kind(doc, "b")


@pytest.mark.parametrize(("params", "expected"), [({}, None), ({"TRIAL_BUDGET": 3}, 3.0),
                                                  ({"TRIAL_BUDGET": "9"}, 9.0)])
def test_trial_budget_reads_the_parameter(params, expected):
    assert trial_budget(params, source="t.ini") == expected


@pytest.mark.parametrize("value", [0, -1, "x", True, float("nan"), None])
def test_trial_budget_refuses_what_is_not_a_positive_number(value):
    with pytest.raises(ConfigError, match=r"t.ini: parameter TRIAL_BUDGET: expected a positive"):
        trial_budget({"TRIAL_BUDGET": value}, source="t.ini")


# -- one report per budget unit ---------------------------------------------------------------


def _steps(units: UnitReports, steps, source=0):
    sent = []
    for step in steps:
        sent.extend(r.step for r in units.add(Report(step, float(step), {}, source)))
    return sent


def test_unit_reports_send_the_first_step_at_or_past_each_boundary():
    units = UnitReports(200)
    # Evaluations every 100 steps: every other one is a unit boundary.
    assert _steps(units, [100, 200, 300, 400, 500, 600]) == [200, 400, 600]
    assert units.finish() == []  # the last step was on a boundary: nothing owed


def test_unit_reports_repeat_a_step_that_passes_several_boundaries():
    units = UnitReports(100)
    # Sparse evaluations: the k-th report is still the k-th unit's.
    assert _steps(units, [250, 260, 420]) == [250, 250, 420, 420]


def test_unit_reports_owe_the_last_step_for_the_unit_it_falls_short_of():
    units = UnitReports(1000)
    assert _steps(units, [1000, 2000, 2999]) == [1000, 2000]
    # The job ended (its whole budget trained): the last evaluation stands for unit 3.
    assert [r.step for r in units.finish()] == [2999]
    assert units.finish() == []


def test_unit_reports_follow_the_first_source_only():
    units = UnitReports(100)
    assert _steps(units, [100, 200], source=1) == []
    assert _steps(units, [100]) == [100]


# -- the platform format ----------------------------------------------------------------------


def test_trial_budget_becomes_a_budget_on_every_pair(write_trial, pipeline):
    path = _trial(write_trial, pipeline, "budget_path=train_config.num_steps\nbudget_scale=100\n")
    plan = _plan(path, {"TRIAL_BUDGET": 3, LR_PATH: 0.01})
    (stage,) = plan.stages
    (write,) = stage.config_writes
    assert write.budget == Budget("train_config.num_steps", 100.0, 3.0,
                                  f"{path}: [params_config] budget_path")
    # Never an edit path of its own; the other parameters are edits as before.
    assert write.edits == {LR_PATH: 0.01}
    # Summary metrics count global steps: one NNI report per budget_scale steps.
    assert stage.unit_steps == 100.0
    assert plan.record["budget"] == {"TRIAL_BUDGET": 3.0, "budget_path": "train_config.num_steps",
                                     "budget_scale": 100.0}
    doc = Document.parse(PIPELINE, source=str(pipeline))
    assert write.edits_for(doc)["train_config.num_steps"] == 300


def test_without_trial_budget_nothing_changes(write_trial, pipeline):
    plan = _plan(_trial(write_trial, pipeline), {LR_PATH: 0.01})
    (stage,) = plan.stages
    (write,) = stage.config_writes
    doc = Document.parse(PIPELINE, source=str(pipeline))
    # The budget is known (for check) but edits nothing, and every step is reported.
    assert write.budget is not None and not write.budget.applies
    assert write.edits_for(doc) == {LR_PATH: 0.01}
    assert stage.unit_steps is None and "budget" not in plan.record


@pytest.mark.parametrize(
    ("budget", "metric", "expected"),
    [
        ("budget_path=train_config.num_steps\nbudget_unit_steps=50\n", METRIC, 50.0),
        ("budget_path=train_config.num_steps\nbudget_unit_steps=0\n", METRIC, None),
        # stdout steps count evaluations, not global steps: every step is reported.
        ("budget_path=train_config.num_steps\n",
         '[metric_config]\nmetric_type=stdout\nmetric_dict={"auc=([0-9.]+)": 1}\n', None),
    ],
)
def test_unit_steps(write_trial, pipeline, budget, metric, expected):
    plan = _plan(_trial(write_trial, pipeline, budget, metric), {"TRIAL_BUDGET": 3})
    assert plan.stages[0].unit_steps == expected


@pytest.mark.parametrize(
    ("budget", "params", "message"),
    [
        ("budget_scale=10\n", {}, r"\[params_config\] budget_scale: needs budget_path"),
        ("budget_path=train_config.num_steps\nbudget_scale=-2\n", {},
         r"\[params_config\] budget_scale: expected a positive number, got '-2'"),
        ("budget_path=train_config.num_steps\nbudget_scale=x\n", {},
         r"budget_scale: expected a positive number, got 'x'"),
        ("budget_path=train_config.num_steps\n", {"train_config.num_steps": 5},
         r"budget_path: train_config.num_steps is also a parameter of the search space"),
        ("budget_path=train_config.num_steps\n", {"TRIAL_BUDGET": "lots"},
         r"parameter TRIAL_BUDGET: expected a positive number"),
        ("budget_pth=train_config.num_steps\n", {},
         r"\[params_config\] budget_pth: unknown key.*budget_path"),
    ],
)
def test_bad_budget_settings_are_config_errors(write_trial, pipeline, budget, params, message):
    with pytest.raises(ConfigError, match=message):
        _plan(_trial(write_trial, pipeline, budget), params)


def test_budget_path_needs_a_config_pair(write_trial):
    path = write_trial("[platform_config]\nname=Local\ncmd1=echo hi\n" + METRIC
                       + "[params_config]\nbudget_path=train_config.num_steps\n")
    with pytest.raises(ConfigError, match=r"budget_path: needs a params_src_dst_filepath"):
        _plan(path, {"TRIAL_BUDGET": 1})


# -- check --------------------------------------------------------------------------------------


def _space(tmp_path):
    path = tmp_path / "space.json"
    path.write_text(json.dumps({LR_PATH: {"_type": "choice", "_value": [0.01, 0.1]}}))
    return path


def test_check_accepts_a_numeric_budget_path(tmp_path, write_trial, pipeline):
    assert check_trial_file(_trial(write_trial, pipeline), _space(tmp_path)) == []


@pytest.mark.parametrize(
    ("path", "message"),
    [
        ("train_config.num_stepz", "did you mean 'num_steps'"),
        ("data_config", "expected a numeric field"),
    ],
)
def test_check_reports_a_budget_path_that_is_not_a_numeric_field(
    tmp_path, write_trial, pipeline, path, message
):
    # The search space's corners have no TRIAL_BUDGET: the path is checked all the same.
    problems = check_trial_file(_trial(write_trial, pipeline, f"budget_path={path}\n"),
                                _space(tmp_path))
    assert problems and all(f"budget_path={path}" in p for p in problems)
    assert message in problems[0]


# -- finetune: TRIAL_BUDGET days ----------------------------------------------------------------

FINETUNE = """\
[finetune_config]
model_dir=${NNI_OUTPUT_DIR}/model/{bizdate}
fine_tune_checkpoint=/models/begin
start_time=20220601
end_time=20220605
BUDGET
[platform_config]
name=Local
cmd1=train --model_dir {model_dir} --fine_tune_checkpoint {fine_tune_checkpoint}

[metric_config]
metric_source={model_dir}/eval_val
metric_dict={"auc": 1}
"""


def _finetune(tmp_path, budget, params):
    path = tmp_path / "ft.ini"
    path.write_text(FINETUNE.replace("BUDGET", budget))
    variables = TrialVariables("e", "trial1", "/out/trial1", params)
    return read_finetune_file(path, variables=variables, environ={}).to_plan()


@pytest.mark.parametrize(
    ("budget", "params", "days"),
    [
        ("budget=days", {"TRIAL_BUDGET": 2}, ["20220601", "20220602"]),
        ("budget=days\nbudget_scale=2", {"TRIAL_BUDGET": 1.4}, ["20220601", "20220602",
                                                                 "20220603"]),
        ("budget=days", {"TRIAL_BUDGET": 81}, [f"2022060{d}" for d in range(1, 6)]),  # capped
        ("budget=days", {}, [f"2022060{d}" for d in range(1, 6)]),  # no budget: every day
        ("", {"TRIAL_BUDGET": 2}, [f"2022060{d}" for d in range(1, 6)]),  # not asked for
    ],
)
def test_finetune_budget_trains_the_first_days_of_the_window(tmp_path, budget, params, days):
    plan = _finetune(tmp_path, budget, params)
    assert [stage.name for stage in plan.stages] == days
    assert plan.record["days"] == days
    if "TRIAL_BUDGET" in params and budget:
        assert plan.record["budget_days"]["days"] == len(days)


@pytest.mark.parametrize(
    ("budget", "message"),
    [
        ("budget=weeks", r"\[finetune_config\] budget: expected days .*got 'weeks'"),
        ("budget=dayz", r"did you mean 'days'"),
        ("budget_scale=2", r"\[finetune_config\] budget_scale: needs budget=days"),
        ("budget=days\nbudget_scale=0", r"budget_scale: expected a positive number, got '0'"),
    ],
)
def test_bad_finetune_budgets_are_config_errors(tmp_path, budget, message):
    with pytest.raises(ConfigError, match=message):
        _finetune(tmp_path, budget, {"TRIAL_BUDGET": 2})


# -- a real trial: hpo-tools run in a subprocess --------------------------------------------------


def test_hpo_tools_run_trains_the_budgeted_steps_and_reports_per_unit(tmp_path, pipeline):
    config = "${NNI_OUTPUT_DIR}/p.config"
    # The job reads its length from the edited config, as a real trainer would (fake_train
    # writes an evaluation every 100 global steps).
    command = (f"steps=$(sed -n 's/^ *num_steps: *//p' {config}); {TRAIN} --config {config} "
               "--model_dir ${NNI_OUTPUT_DIR}/model --steps $((steps / 100)) --sleep 0.01")
    trial = tmp_path / "trial.ini"
    trial.write_text(
        f"[platform_config]\nname=Local\ncmd1={command}\n" + METRIC
        + f"[params_config]\nparams_src_dst_filepath1={pipeline},{config}\n"
        + "budget_path=train_config.num_steps\nbudget_scale=200\n"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "hpo_tools", "run", "--config", str(trial), "--params",
         '{"TRIAL_BUDGET": 3}', "--exp_dir", str(tmp_path / "exp"), "--interval", "0.05"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    trial_dir = tmp_path / "exp/standalone/trials/standalone"
    # TRIAL_BUDGET 3 x budget_scale 200: the edited config trains 600 steps (an int field).
    edited = (trial_dir / "p.config").read_text()
    assert "num_steps: 600\n" in edited and "num_steps: 100" not in edited
    # The job evaluated at 100..600 and stopped there.
    result = json.loads((trial_dir / "result.json").read_text())
    assert [r["step"] for r in result["intermediate"]] == [100, 200, 300, 400, 500, 600]
    # NNI got one report per budget unit (200 steps): evaluations 2, 4 and 6 (auc 0.5 +
    # 0.05 * evaluation - |0.001 - 0.01|), then the final result at step 600.
    reported = [json.loads(line.split(": ", 1)[1])["auc"]
                for line in done.stdout.splitlines() if line.startswith("intermediate result")]
    assert reported == pytest.approx([0.591, 0.691, 0.791])
    assert result["final"]["step"] == 600
    # TRIAL_BUDGET stays among the parameters and how it was applied is recorded beside them.
    params = json.loads((trial_dir / "params.json").read_text())
    assert params["params"] == {"TRIAL_BUDGET": 3}
    assert params["budget"] == {"TRIAL_BUDGET": 3.0, "budget_path": "train_config.num_steps",
                                "budget_scale": 200.0}


def test_the_classic_format_refuses_a_budget_key(write_trial):
    path = write_trial(
        "[odps_config]\nproject_name=p\nodps_endpoint=http://odps.example\n"
        "[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n"
        "-Dconfig=oss://b/pipeline.config\n-Dmodel_dir=oss://b/m\n"
        "-Dbudget_path=train_config.num_steps\n[metric_config]\nauc=1\n"
    )
    # Passed on, PAI would refuse an unknown parameter only once the job is submitted.
    with pytest.raises(ConfigError, match=r"\[easyrec_cmd_config\] -Dbudget_path: the classic "
                                          r"format has no budget"):
        _plan(path, {"TRIAL_BUDGET": 3})


def test_a_field_the_config_lacks_is_typed_and_created_by_the_schema():
    from hpo_tools.pbtxt.schema import load_schema

    schema = load_schema(proto_path=REPO / "tests" / "protos",
                         message="easyrec_like.EasyRecConfig")
    doc = Document.parse("train_config {\n  sync_replicas: true\n}\n", source="p.config")
    # num_steps is a uint32 of TrainConfig: an int edit, created where the config lacks it.
    edit = Budget("train_config.num_steps", 1000, 2.6).edit(doc, schema)
    assert edit == {"train_config.num_steps": 2600}
    doc.apply(edit, schema=schema)
    assert doc.get("train_config.num_steps") == [2600]
    # Without the schema the same path is not in the config: an error, not a guess.
    with pytest.raises(ConfigError, match="not in p.config"):
        Budget("train_config.num_steps", 1000, 2.6).edit(
            Document.parse("train_config {\n  sync_replicas: true\n}\n", source="p.config"))
