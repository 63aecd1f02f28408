"""The runner end to end: the Local platform runs real commands (tests/trial/fake_train.py)."""

from __future__ import annotations

import io
import json

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState
from hpo_tools.trial.paths import resolve_paths
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial_files import run_trial_file

from .conftest import LR_PATH, PYTHON, TRAIN
from .conftest import SUMMARY_METRIC as METRIC
from .fake_train import auc_for


def run(path, params, exp_dir, trial_id="t1", stderr=None):
    reporter = ConsoleReporter(params, experiment_id="exp1", trial_id=trial_id,
                               stream=io.StringIO())
    outcome = run_trial_file(path, reporter, exp_dir=exp_dir, interval=0.05,
                             stderr=stderr or io.StringIO())
    return outcome, reporter


def test_platform_format_runs_edits_config_reports_each_step_and_final(
    tmp_path, pipeline, write_trial
):
    trial = write_trial(
        "[platform_config]\nname=Local\n"
        f"cmd1={TRAIN} --config ${{NNI_OUTPUT_DIR}}/pipeline.config"
        " --model_dir ${NNI_OUTPUT_DIR}/model --steps 3\n"
        + METRIC
        + "[params_config]\n"
        + f"params_src_dst_filepath1={pipeline},${{NNI_OUTPUT_DIR}}/pipeline.config\n"
    )
    exp = tmp_path / "exp"
    outcome, reporter = run(trial, {LR_PATH: 0.02}, exp)

    assert outcome.status == "succeeded" and outcome.exit_code == 0
    # One intermediate result per evaluation step, reported as the job wrote them.
    expected = [auc_for(0.02, s) for s in (1, 2, 3)]
    assert [r["default"] for r in reporter.intermediate] == pytest.approx(expected, abs=1e-6)
    # The score is the trainer's, computed from the lr it read in the *edited* config.
    assert reporter.final["default"] == pytest.approx(auc_for(0.02, 3), abs=1e-6)
    trial_dir = exp / "exp1" / "trials" / "t1"
    assert "learning_rate: 0.02" in (trial_dir / "pipeline.config").read_text()
    params = json.loads((trial_dir / "params.json").read_text())
    assert params["params"] == {LR_PATH: 0.02}
    assert params["configs"] == [str(trial_dir / "pipeline.config")]
    assert params["trial_id"] == "t1" and params["experiment_id"] == "exp1"
    result = json.loads((trial_dir / "result.json").read_text())
    assert result["status"] == "succeeded"
    assert len(result["intermediate"]) == 3
    assert result["final"]["score"] == pytest.approx(auc_for(0.02, 3), abs=1e-6)
    # The job's output is relayed into the trial log.
    assert "training with learning_rate=0.02" in (trial_dir / "trial.log").read_text()
    record = JobRegistry(exp / "exp1").load("t1")
    assert record.state is JobState.SUCCEEDED
    assert [(j.command_index, j.state) for j in record.jobs] == [(1, JobState.SUCCEEDED)]


def test_every_placeholder_kind_reaches_the_command(tmp_path, write_trial, monkeypatch):
    monkeypatch.setenv("MY_TEST_VALUE", "from-env")
    out = tmp_path / "vars.json"
    script = (
        "import json,sys; json.dump(sys.argv[1:], open(sys.argv[1], 'w'))"
    )
    trial = write_trial(
        "[platform_config]\nname=Local\n"
        f"cmd1={PYTHON} -c \"{script}\" {out} ${{exp_id}} ${{trial_id}} ${{NNI_OUTPUT_DIR}}"
        " ${params} ${lr} '${tuner_params_json}' ${MY_TEST_VALUE}"
        f" && {TRAIN} --lr ${{lr}} --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 1\n" + METRIC
    )
    outcome, _ = run(trial, {"lr": 0.5}, tmp_path / "exp")
    assert outcome.status == "succeeded"
    values = json.loads(out.read_text())
    trial_dir = str(tmp_path / "exp" / "exp1" / "trials" / "t1")
    assert values[1:] == ["exp1", "t1", trial_dir, "lr_0.5", "0.5", '{"lr": 0.5}', "from-env"]


def test_jinja_loop_commands_all_run_in_order(tmp_path, write_trial):
    log = tmp_path / "order.txt"
    trial = write_trial(
        "[platform_config]\nname=Local\n"
        "{% for fold in [3, 1, 2] %}\n"
        f"cmd{{{{ loop.index }}}}=echo fold{{{{ fold }}}} >> {log}\n"
        "{% endfor %}\n"
        f"cmd4={TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 1\n" + METRIC
    )
    outcome, _ = run(trial, {}, tmp_path / "exp")
    assert outcome.status == "succeeded"
    # Generated cmd1..cmd3 ran in their numeric order.
    assert log.read_text().split() == ["fold3", "fold1", "fold2"]


def test_failing_command_fails_the_trial_with_the_log_tail_and_no_final(tmp_path, write_trial):
    marker = tmp_path / "cmd2-ran"
    trial = write_trial(
        "[platform_config]\nname=Local\n"
        f"cmd1={PYTHON} -c \"import sys; [print('line', i) for i in range(1, 61)]; sys.exit(3)\"\n"
        f"cmd2=touch {marker}\n" + METRIC
    )
    stderr = io.StringIO()
    outcome, reporter = run(trial, {}, tmp_path / "exp", stderr=stderr)
    assert outcome.status == "failed" and outcome.exit_code != 0
    assert reporter.final is None  # a failed trial must not feed a result to the tuner
    assert not marker.exists()  # later commands are not run
    tail = stderr.getvalue()
    # The last 50 lines of the failed command's output, not more.
    assert "line 60" in tail and "line 11\n" in tail and "line 10\n" not in tail
    result = json.loads((tmp_path / "exp/exp1/trials/t1/result.json").read_text())
    assert result["status"] == "failed" and result["final"] is None
    record = JobRegistry(tmp_path / "exp" / "exp1").load("t1")
    assert record.jobs[0].state is JobState.FAILED and record.state is JobState.FAILED


def test_no_metrics_fails_the_trial_without_final(tmp_path, write_trial):
    trial = write_trial("[platform_config]\nname=Local\ncmd1=true\n" + METRIC)
    outcome, reporter = run(trial, {}, tmp_path / "exp")
    assert outcome.status == "failed" and outcome.exit_code != 0
    assert reporter.final is None
    assert "auc" in outcome.message  # names the metric that never came


def test_resume_skips_commands_that_already_succeeded(tmp_path, write_trial):
    counter = tmp_path / "cmd1-runs"
    fail_flag = tmp_path / "fail"
    fail_flag.write_text("x")
    trial = write_trial(
        "[platform_config]\nname=Local\nresume=1\n"
        f"cmd1=echo run >> {counter}\n"
        f"cmd2=test ! -e {fail_flag} && {TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model"
        " --steps 1\n" + METRIC
    )
    first, _ = run(trial, {}, tmp_path / "exp")
    assert first.status == "failed"
    fail_flag.unlink()
    second, reporter = run(trial, {}, tmp_path / "exp")
    assert second.status == "succeeded"
    # cmd1 succeeded in the first run and is not run again.
    assert counter.read_text().split() == ["run"]
    assert reporter.final is not None


def test_without_resume_every_command_runs_again(tmp_path, write_trial):
    counter = tmp_path / "cmd1-runs"
    trial = write_trial(
        "[platform_config]\nname=Local\n"
        f"cmd1=echo run >> {counter}\ncmd2=false\n" + METRIC
    )
    run(trial, {}, tmp_path / "exp")
    run(trial, {}, tmp_path / "exp")
    assert counter.read_text().split() == ["run", "run"]


def test_config_error_launches_nothing(tmp_path, write_trial):
    marker = tmp_path / "launched"
    trial = write_trial(
        f"[platform_config]\nname=Local\ncmd1=touch {marker}\ncmd2=echo ${{not_defined}}\n"
        + METRIC
    )
    with pytest.raises(ConfigError, match=r"\[platform_config\] cmd2: \$\{not_defined\}"):
        run(trial, {}, tmp_path / "exp")
    assert not marker.exists()


def test_bad_config_edit_key_launches_nothing(tmp_path, pipeline, write_trial):
    marker = tmp_path / "launched"
    trial = write_trial(
        f"[platform_config]\nname=Local\ncmd1=touch {marker}\n" + METRIC
        + f"[params_config]\nparams_src_dst_filepath1={pipeline},{tmp_path}/out.config\n"
    )
    with pytest.raises(ConfigError, match="train_config.no_such_field"):
        run(trial, {"train_config.no_such_field": 1}, tmp_path / "exp")
    assert not marker.exists()


def test_standalone_paths_default_under_exp(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    paths = resolve_paths("standalone", "standalone", environ={})
    assert paths.experiment_dir == tmp_path / "exp" / "standalone"
    assert paths.trial_dir == tmp_path / "exp" / "standalone" / "trials" / "standalone"


def test_nni_paths_come_from_nni_output_dir(tmp_path):
    output = tmp_path / "E" / "environments" / "local-env" / "trials" / "AbCdE"
    paths = resolve_paths("E", "AbCdE", environ={"NNI_OUTPUT_DIR": str(output)})
    # E is NNI's own experiment directory; the trial directory is NNI's.
    assert paths.experiment_dir == tmp_path / "E"
    assert paths.trial_dir == output


def test_exp_dir_wins_for_the_experiment_directory(tmp_path):
    output = tmp_path / "E" / "environments" / "local-env" / "trials" / "AbCdE"
    paths = resolve_paths("E", "AbCdE", exp_dir=tmp_path / "mine",
                          environ={"NNI_OUTPUT_DIR": str(output)})
    assert paths.experiment_dir == tmp_path / "mine" / "E"
    assert paths.trial_dir == output


def test_dispatcher_log_directory_gives_the_experiment_directory(tmp_path):
    paths = resolve_paths("E", "x", environ={"NNI_LOG_DIRECTORY": str(tmp_path / "E" / "log")})
    assert paths.experiment_dir == tmp_path / "E"


def test_sigterm_in_process_cancels_the_running_job(tmp_path, write_trial):
    """The handler only flags; the run loop cancels, so no lock or `except Exception` eats it."""
    import os
    import signal
    import threading

    from hpo_tools.trial.signals import TrialCancelled

    # Like KeyboardInterrupt: an `except Exception` on the way out must not stop it.
    assert not issubclass(TrialCancelled, Exception)
    trial = write_trial(
        "[platform_config]\nname=Local\ncmd1=sleep 30\n" + METRIC
    )
    timer = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGTERM))
    timer.start()
    try:
        outcome, reporter = run(trial, {}, tmp_path / "exp")
    finally:
        timer.cancel()
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGTERM
    assert reporter.final is None


def test_unknown_metric_type_launches_nothing(tmp_path, write_trial):
    marker = tmp_path / "launched"
    trial = write_trial(
        f"[platform_config]\nname=Local\ncmd1=touch {marker}\n"
        + METRIC.replace("metric_type=summary", "metric_type=sumary")
    )
    with pytest.raises(ConfigError, match=r"trial\.ini: \[metric_config\] metric_type.*summary"):
        run(trial, {}, tmp_path / "exp")
    assert not marker.exists()


def test_a_last_step_only_the_final_drain_scores_is_reported_as_intermediate(
    tmp_path, write_trial
):
    # The job writes its own log and leaves the last line unterminated: a poll waits for the
    # newline, and only the follower's final drain scores that step.
    trial = write_trial(
        "[platform_config]\nname=Local\n"
        "cmd1=printf 'eval auc=0.61\\neval auc=0.72' > ${NNI_OUTPUT_DIR}/train.log\n"
        "[metric_config]\nmetric_type=stdout\nmetric_source=${NNI_OUTPUT_DIR}/train.log\n"
        'metric_dict={"auc=([0-9.]+)": 1}\noptimize_mode=maximize\n'
    )
    outcome, reporter = run(trial, {}, tmp_path / "exp")
    assert outcome.status == "succeeded", outcome.message
    # NNI must see every step the final score is made of, the unterminated last one included.
    assert [r["default"] for r in reporter.intermediate] == pytest.approx([0.61, 0.72])
    assert reporter.final["default"] == pytest.approx(0.72)
