"""`job_timeout`: a job that shows no sign of life for that long is hung, cancelled, and the
trial fails with a one-line reason; a job that keeps showing life (output, scored steps) or
waits in a queue is left alone.

Real processes on the Local platform (tests/trial/fake_train.py and shell commands), the
runner itself as NNI runs it (`python -m hpo_tools.run`), and the DLC platform over its fake
SDK client (FakeDlcClient, a fake at the cloud SDK boundary).
"""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.jobs import JobRegistry
from hpo_tools.metrics.score import MetricSpec
from hpo_tools.platforms import JobState
from hpo_tools.platforms.local import LocalPlatform
from hpo_tools.secrets import SecretMasker
from hpo_tools.trial.launcher import Launcher
from hpo_tools.trial.paths import resolve_paths
from hpo_tools.trial.plan import Command, MetricSettings, Stage, TrialVariables
from hpo_tools.trial.registry import RegistryAdapter
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.settings import parse_trial_text
from hpo_tools.trial_files import run_trial_file

from .conftest import PYTHON, SUMMARY, TRAIN, runner_env, survivors

VARS = TrialVariables("E", "T", "/out/T", {})
METRIC = '[metric_config]\nmetric_source=/m\nmetric_dict={"auc": 1}\n'
CLASSIC = """\
[odps_config]
project_name=pai_rec_dev
odps_endpoint=http://service.odps.aliyun.com/api

[easyrec_cmd_config]
-name=easy_rec_ext
-project=algo_public
-Dconfig=oss://bucket/easyrec_model.config
-Dcmd=train
-Dmodel_dir=oss://bucket/models/
{extra}

[metric_config]
auc=1
"""


def _platform_file(extra: str) -> str:
    return f"[platform_config]\nname=Local\ncmd1=x\n{extra}\n" + METRIC


def _parse(text: str):
    return parse_trial_text(text, source="trial.ini", variables=VARS, environ={})




# -- the key -----------------------------------------------------------------------------------


@pytest.mark.parametrize(("text", "seconds"), [
    ("90", 90.0), ("90s", 90.0), ("30m", 1800.0), ("2h", 7200.0), ("1.5m", 90.0),
    ("0.5", 0.5), ("2 H", 7200.0),
])
def test_job_timeout_is_seconds_or_a_number_with_a_unit_in_both_formats(text, seconds):
    platform_plan = _parse(_platform_file(f"job_timeout={text}"))
    classic_plan = _parse(CLASSIC.format(extra=f"job_timeout={text}"))
    # Each stage carries it: the launcher reads it from the stage it runs.
    assert platform_plan.stages[0].job_timeout == seconds
    assert classic_plan.stages[0].job_timeout == seconds
    # hpo-tools' own key is never sent to PAI as a parameter.
    assert "job_timeout" not in classic_plan.stages[0].commands[0].text


def test_without_job_timeout_there_is_no_limit():
    assert _parse(_platform_file("")).stages[0].job_timeout is None
    assert _parse(CLASSIC.format(extra="")).stages[0].job_timeout is None


@pytest.mark.parametrize(("text", "hint"), [
    ("0", ""), ("-5", ""), ("abc", ""), ("10d", ""), ("nan", ""), ("inf", ""), ("1e400", ""),
    ("30min", " (did you mean '30m'?)"), ("2hours", " (did you mean '2h'?)"),
])
@pytest.mark.parametrize("fmt", ["platform", "classic"])
def test_a_bad_job_timeout_is_a_one_line_error_naming_file_section_and_key(fmt, text, hint):
    if fmt == "platform":
        body, section = _platform_file(f"job_timeout={text}"), "platform_config"
    else:
        body, section = CLASSIC.format(extra=f"job_timeout={text}"), "easyrec_cmd_config"
    with pytest.raises(ConfigError) as caught:
        _parse(body)
    err = caught.value
    assert str(err) == (
        f"trial.ini: [{section}] job_timeout: expected seconds as a positive number, or a "
        f"number with the unit s, m or h (90, 90s, 30m, 2h), got {text!r}{hint}"
    )
    # `check` drops the bad key by these and goes on.
    assert (err.source, err.section, err.key) == ("trial.ini", section, "job_timeout")


def test_a_mistyped_job_timeout_key_is_an_error_in_both_formats():
    with pytest.raises(ConfigError, match=r"\[platform_config\] job_timout: unknown key "
                                          r"\(did you mean 'job_timeout'\?\)"):
        _parse(_platform_file("job_timout=5"))
    # Classic: a line that is no key of the section continues the value above it (PAI's JSON
    # spans lines), and the PAI command then names it.
    with pytest.raises(ConfigError, match=r"\[easyrec_cmd_config\] -Dmodel_dir: PAI command: "
                                          r"unexpected 'job_timout=5"):
        _parse(CLASSIC.format(extra="job_timout=5"))
    # Before any -D key it is a key of its own, and unknown.
    with pytest.raises(ConfigError, match=r"\[easyrec_cmd_config\] job_timout: unknown key.*"
                                          r"\(did you mean 'job_timeout'\?\)"):
        _parse(CLASSIC.replace("[easyrec_cmd_config]\n", "[easyrec_cmd_config]\njob_timout=5\n")
               .format(extra=""))


# -- the launcher's clock ----------------------------------------------------------------------


def _launch(tmp_path: Path, text: str, job_timeout: float, poll_metrics):
    """Run one command through a Launcher on the Local platform: (failure or None, registry,
    stderr text)."""
    platform = LocalPlatform(grace_period=0.5)
    paths = resolve_paths("E", "T", exp_dir=tmp_path / "exp")
    paths.trial_dir.mkdir(parents=True)
    registry = RegistryAdapter.open(paths, "E", "T", platform=platform)
    stderr = io.StringIO()
    launcher = Launcher(platform, registry, SecretMasker(()), interval=0.05, stderr=stderr)
    command = Command("cmd1", text)
    stage = Stage(name="", commands=(command,),
                  metric=MetricSettings("stdout", (), MetricSpec.from_config({"x=(\\d)": 1})),
                  job_timeout=job_timeout)
    failure = launcher.run(stage, paths, 1, command, poll_metrics)
    return failure, JobRegistry(paths.experiment_dir).load("T"), stderr.getvalue()


def test_a_newly_scored_step_is_a_sign_of_life_for_a_silent_job(tmp_path):
    # Silent for 2.5 s with job_timeout=1s, but each metrics poll says it scored a step.
    failure, record, _ = _launch(
        tmp_path, f"{PYTHON} -c 'import time; time.sleep(2.5)' {tmp_path}", 1.0, lambda: 1)
    assert failure is None
    assert record.jobs[0].state is JobState.SUCCEEDED


def test_a_silent_job_scoring_nothing_is_hung_and_cancelled(tmp_path):
    failure, record, stderr = _launch(
        tmp_path, f"echo started; {PYTHON} -c 'import time; time.sleep(60)' {tmp_path}", 1.0,
        lambda: 0)
    assert failure == "cmd1 hung: no output and no new metric for 1 s (job_timeout=1s); cancelled"
    # The registry says the job was cancelled, and why.
    (job,) = record.jobs
    assert job.state is JobState.CANCELLED
    assert job.message == "hung: no output and no new metric for 1 s (job_timeout=1s); cancelled"
    # The tail of its output goes to stderr, as for a failed command.
    assert "started" in stderr
    assert survivors(str(tmp_path)) == []


# -- a whole trial -----------------------------------------------------------------------------


def test_a_hung_job_fails_the_trial_with_one_line_everywhere_and_leaves_nothing(tmp_path):
    """As NNI runs it: two steps, then silence; job_timeout=1s."""
    marker = tmp_path / "cmd2-ran"
    trial = tmp_path / "trial.ini"
    trial.write_text(
        "[platform_config]\nname=Local\njob_timeout=1s\n"
        f"cmd1={TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 2 --sleep 0.05"
        f" && {PYTHON} -c 'import time; time.sleep(60)' {tmp_path}\n"
        f"cmd2=touch {marker}\n" + SUMMARY
    )
    runner = subprocess.run(
        [sys.executable, "-m", "hpo_tools.run", "--config", str(trial),
         "--exp_dir", str(tmp_path / "exp"), "--interval", "0.05"],
        cwd=tmp_path, env=runner_env(), capture_output=True, text=True, timeout=60,
    )
    reason = "cmd1 hung: no output and no new metric for 1 s (job_timeout=1s); cancelled"
    # FAILED for NNI (exit 1, not a signal), the reason on the stderr NNI keeps.
    assert runner.returncode == 1, runner.stderr
    assert f"trial failed: {reason}" in runner.stderr.splitlines()
    trial_dir = tmp_path / "exp/standalone/trials/standalone"
    result = json.loads((trial_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["message"] == reason
    # The steps scored before the hang stay reported; no final result.
    assert [r["step"] for r in result["intermediate"]] == [100, 200]
    assert result["final"] is None
    assert reason in (trial_dir / "trial.log").read_text()
    record = JobRegistry(tmp_path / "exp/standalone").load("standalone")
    assert [(j.command_index, j.state) for j in record.jobs] == [(1, JobState.CANCELLED)]
    assert record.state is JobState.FAILED
    assert not marker.exists()  # the commands after it do not run
    assert survivors(str(tmp_path)) == []


def test_a_job_that_keeps_writing_output_is_never_hung(tmp_path):
    # 12 steps 0.2 s apart (2.4 s in all), each printing a line, against job_timeout=1s.
    trial = tmp_path / "trial.ini"
    trial.write_text(
        "[platform_config]\nname=Local\njob_timeout=1\n"
        f"cmd1={TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 12 --sleep 0.2\n"
        + SUMMARY
    )
    reporter = ConsoleReporter({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    outcome = run_trial_file(trial, reporter, exp_dir=tmp_path / "exp", interval=0.05,
                             stderr=io.StringIO())
    assert outcome.status == "succeeded", outcome.message
    assert len(reporter.intermediate) == 12


def test_a_job_that_prints_nothing_but_keeps_scoring_steps_is_never_hung(tmp_path):
    # As a PAI job on MaxCompute: nothing in the log, but a new evaluation every 0.2 s (2.4 s
    # in all) against job_timeout=1s.
    trial = tmp_path / "trial.ini"
    trial.write_text(
        "[platform_config]\nname=Local\njob_timeout=1\n"
        f"cmd1={TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 12 --sleep 0.2"
        " > /dev/null\n" + SUMMARY
    )
    reporter = ConsoleReporter({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    outcome = run_trial_file(trial, reporter, exp_dir=tmp_path / "exp", interval=0.05,
                             stderr=io.StringIO())
    assert outcome.status == "succeeded", outcome.message
    assert len(reporter.intermediate) == 12
    assert "step 12" not in (tmp_path / "exp/E/trials/T/trial.log").read_text()  # silent


# -- a cloud platform --------------------------------------------------------------------------


@pytest.fixture
def dlc(tmp_path, monkeypatch):
    """The fake DLC service (FakeDlcClient over a directory) and its keys in the environment."""
    from hpo_tools.cloud import ENV_FAKE_CLOUD
    from hpo_tools.testing.dlc import FakeDlcClient

    root = tmp_path / "cloud"
    root.mkdir()
    monkeypatch.setenv(ENV_FAKE_CLOUD, str(root))
    monkeypatch.setenv("DLC_TEST_ID", "LTAI5tFakeTimeoutId7")
    monkeypatch.setenv("DLC_TEST_KEY", "fakeTimeoutSecret987654")
    fake = FakeDlcClient(root, access_key_id="LTAI5tFakeTimeoutId7",
                         access_key_secret="fakeTimeoutSecret987654")
    yield fake
    for event in fake._hangs.values():
        event.set()


def _run_dlc(tmp_path, fake):
    from hpo_tools.platforms.dlc import DlcPlatform
    from hpo_tools.trial.runner import run_plan
    from hpo_tools.trial_files import prepare_trial

    trial = tmp_path / "trial.ini"
    trial.write_text(
        "[platform_config]\nname=DLC\njob_timeout=1s\n"
        "cmd1=dlc submit tfjob --name=t1 --command='python train.py' --workspace_id=ws1 "
        "--workers=1 --worker_image=img --worker_spec=ecs.g6\n"
        '[metric_config]\nmetric_type=stdout\nmetric_dict={"auc=([0-9.]+)": 1}\n'
        "[dlc_config]\nregion=cn-shanghai\naccess_id=${DLC_TEST_ID}\n"
        "access_key=${DLC_TEST_KEY}\npoll_interval=0.02\n"
    )
    reporter = ConsoleReporter({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    platform = DlcPlatform(**plan.platform.options, client_factory=fake.connect)
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.02,
                       stderr=io.StringIO())
    return outcome, reporter


def test_a_job_waiting_in_the_queue_is_not_hung(tmp_path, dlc):
    # Queued for 150 status checks (3 s at 0.02 s) with job_timeout=1s, then it trains.
    dlc.plan_next(steps=[{"status": "Queuing"}] * 150 + [
        {"status": "Running", "logs": {"worker": ["auc=0.7"]}},
        {"status": "Succeeded"},
    ])
    outcome, reporter = _run_dlc(tmp_path, dlc)
    assert outcome.status == "succeeded", outcome.message
    assert reporter.final["default"] == 0.7
    assert dlc.stops == []  # nothing was cancelled


def test_a_silent_cloud_job_is_hung_and_stopped_at_the_service(tmp_path, dlc):
    dlc.plan_next(steps=[{"status": "Running", "logs": {"worker": ["auc=0.6"]}}])
    outcome, reporter = _run_dlc(tmp_path, dlc)
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert outcome.message == (
        "cmd1 hung: no output and no new metric for 1 s (job_timeout=1s); cancelled")
    # The step scored before the silence was reported; the service was told to stop the job.
    assert [r["default"] for r in reporter.intermediate] == [0.6]
    (stop,) = {s["job_id"] for s in dlc.stops}
    assert dlc.job(stop)["stopped"] is True
    (job,) = JobRegistry(tmp_path / "exp" / "E").load("T").jobs
    assert job.state is JobState.CANCELLED and stop in job.job_id
