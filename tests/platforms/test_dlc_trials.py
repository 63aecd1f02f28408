"""Trials on the DLC platform, the runner's contract: follow, cancel within 3 s of SIGINT (also
during a hung CreateJob), resume skips succeeded commands, kill through the job registry,
metrics from one command's pod logs, secrets in no file and no log, ``hpo-tools check``.

The DLC service is FakeDlcClient (the SDK Client's methods over a directory); a platform the
registry rebuilds (in this process or another) finds the same jobs through
``HPO_TOOLS_FAKE_CLOUD``.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hpo_tools import cli
from hpo_tools.cloud import ENV_FAKE_CLOUD
from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState
from hpo_tools.platforms.dlc import DlcPlatform
from hpo_tools.testing.dlc import FakeDlcClient
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import run_plan
from hpo_tools.trial_files import prepare_trial

ACCESS_ID = "LTAI5tFakeTrialId77"
ACCESS_KEY = "fakeTrialSecret98765432"
SUBMIT = ("dlc submit tfjob --name=t_${{exp_id}}_${{trial_id}}_{n} --command='python train.py "
          "--lr ${{lr}}' --workspace_id=ws1 --workers=1 --worker_image=img --worker_spec=ecs.g6 "
          "--evaluators=1 --evaluator_image=img --evaluator_spec=ecs.g6")


def _trial_ini(commands=1, source="cmd1,worker", extra=""):
    lines = ["[platform_config]", "name=DLC"]
    lines += [f"cmd{n}=" + SUBMIT.format(n=n) for n in range(1, commands + 1)]
    lines += [extra, "[metric_config]", "metric_type=stdout",
              f"metric_source={source}" if source else "",
              'metric_dict={"auc=([0-9.]+)": 1}', "final_mode=final",
              "[dlc_config]", "region=cn-shanghai", "access_id=${DLC_TEST_ID}",
              "access_key=${DLC_TEST_KEY}", "poll_interval=0.02"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    """The fake DLC service's directory, and the keys in the environment (as ${...} names)."""
    root = tmp_path / "cloud"
    root.mkdir()
    monkeypatch.setenv(ENV_FAKE_CLOUD, str(root))
    monkeypatch.setenv("DLC_TEST_ID", ACCESS_ID)
    monkeypatch.setenv("DLC_TEST_KEY", ACCESS_KEY)
    return root


@pytest.fixture
def fake(cloud):
    fake = FakeDlcClient(cloud, access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
    yield fake
    for event in fake._hangs.values():
        event.set()


def _prepare(tmp_path, text, params=None, trial_id="T"):
    trial = tmp_path / "trial.ini"
    trial.write_text(text)
    reporter = ConsoleReporter(params or {"${lr}": 0.1}, experiment_id="E", trial_id=trial_id,
                               stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    return plan, context, reporter


def _run(tmp_path, fake, text, **kwargs):
    plan, context, reporter = _prepare(tmp_path, text, **kwargs)
    platform = DlcPlatform(**plan.platform.options, client_factory=fake.connect)
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.02,
                       stderr=io.StringIO())
    return outcome, reporter, context


def _signal_when(condition, timeout=20.0):
    """SIGINT to this process once ``condition()`` holds; the time it was sent."""
    sent = {}

    def run():
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return sent, thread


# -- follow, metrics from pod logs ----------------------------------------------------------


def test_a_trial_follows_its_job_and_scores_only_the_worker_pods_log(tmp_path, fake):
    fake.plan_next(steps=[
        {"status": "Queuing"},
        {"status": "Running", "logs": {"worker": ["step 1 auc=0.61"],
                                       "evaluator": ["eval auc=0.99"]}},
        {"status": "Running", "logs": {"worker": ["step 2 auc=0.72"]}},
        {"status": "Succeeded"},
    ])
    outcome, reporter, context = _run(tmp_path, fake, _trial_ini())
    assert outcome.status == "succeeded" and outcome.exit_code == 0
    # metric_source=cmd1,worker: the evaluator's auc=0.99 is in the trial log, not scored
    assert [r["default"] for r in reporter.intermediate] == [0.61, 0.72]
    assert reporter.final["default"] == 0.72
    assert "eval auc=0.99" in context.paths.log_path.read_text()
    worker_file = context.paths.trial_dir / "dlc-logs" / "cmd1.worker.log"
    assert worker_file.read_text() == "step 1 auc=0.61\nstep 2 auc=0.72\n"
    (request,) = [s["request"] for s in fake.submissions]
    assert request["UserCommand"] == "python train.py --lr 0.1"  # the tuner's value in place
    assert request["DisplayName"].startswith("t_E_T_1-hpo-")


def test_without_metric_source_the_trial_log_with_every_pod_is_read(tmp_path, fake):
    fake.plan_next(steps=[{"status": "Running", "logs": {"worker": ["auc=0.5"]}},
                          {"status": "Succeeded", "logs": {"evaluator": ["auc=0.8"]}}])
    outcome, reporter, _ = _run(tmp_path, fake, _trial_ini(source=""))
    assert outcome.exit_code == 0 and reporter.final["default"] == 0.8


def test_a_failed_job_fails_the_trial_with_dlcs_reason(tmp_path, fake):
    fake.plan_next(steps=[{"status": "Running"}, {"status": "Failed"}], reason="ImagePullBackOff")
    outcome, _, _ = _run(tmp_path, fake, _trial_ini())
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert "cmd1 failed: DLC job dlc" in outcome.message
    assert "ImagePullBackOff" in outcome.message


# -- cancellation ----------------------------------------------------------------------------


def test_sigint_while_the_job_runs_stops_it_within_3_seconds(tmp_path, fake):
    fake.plan_next(steps=[{"status": "Queuing"}, {"status": "Running"}])
    plan, context, reporter = _prepare(tmp_path, _trial_ini())
    platform = DlcPlatform(**plan.platform.options, client_factory=fake.connect)
    sent, sender = _signal_when(lambda: fake.job_ids() and fake.job(fake.job_ids()[0])
                                ["checks"] >= 3)
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.02,
                       stderr=io.StringIO())
    ended = time.monotonic()
    sender.join(5)
    assert "at" in sent, "the job never ran: the test proved nothing"
    assert ended - sent["at"] < 3.0  # NNI SIGKILLs the runner 5 s after its SIGINT
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    (job_id,) = fake.job_ids()
    assert fake.stop_calls(job_id) == 1
    record = JobRegistry(tmp_path / "exp" / "E").load("T")
    assert [(j.command_index, j.job_id, j.state) for j in record.jobs] == [
        (1, job_id, JobState.CANCELLED)]


def test_sigint_during_a_hung_create_job_cancels_within_3_seconds_and_stops_the_job(
    tmp_path, fake
):
    fake.plan_next(create="hang", steps=[{"status": "Running"}])  # created, then no answer
    fake.hang("create_job")
    plan, context, reporter = _prepare(tmp_path, _trial_ini())
    platform = DlcPlatform(**plan.platform.options, client_factory=fake.connect)
    sent, sender = _signal_when(lambda: fake.hung_calls == 1)
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.02,
                       stderr=io.StringIO())
    ended = time.monotonic()
    sender.join(5)
    assert "at" in sent, "CreateJob never hung: the test proved nothing"
    assert ended - sent["at"] < 3.0
    assert outcome.status == "cancelled"
    (job_id,) = fake.job_ids()
    assert fake.stop_calls(job_id) == 1  # found by its unique name and stopped
    (entry,) = JobRegistry(tmp_path / "exp" / "E").load("T").jobs
    assert entry.state is JobState.CANCELLED
    assert entry.job_id.startswith("dlc-pending:") and entry.description["dlc_job_id"] == job_id


def test_resume_skips_the_command_that_succeeded_and_still_reads_its_log(tmp_path, fake):
    text = _trial_ini(commands=2, extra="resume=1")
    fake.plan_next(steps=[{"status": "Running", "logs": {"worker": ["auc=0.7"]}},
                          {"status": "Succeeded"}])
    fake.plan_next(steps=[{"status": "Running"}, {"status": "Failed"}])  # cmd2 fails first
    first, _, _ = _run(tmp_path, fake, text)
    assert first.status == "failed" and "cmd2 failed" in first.message
    fake.plan_next(steps=[{"status": "Running"}, {"status": "Succeeded"}])
    second, reporter, _ = _run(tmp_path, fake, text)
    assert second.status == "succeeded"
    names = [s["request"]["DisplayName"].split("-hpo-")[0] for s in fake.submissions]
    assert names == ["t_E_T_1", "t_E_T_2", "t_E_T_2"]  # cmd1 ran once only
    # metric_source=cmd1,worker: the skipped command's log from the first attempt
    assert reporter.final["default"] == 0.7


def _wait_for_running_job(registry_path: Path, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = json.loads(registry_path.read_text())
            if record["jobs"] and record["jobs"][0]["state"] == "running" \
                    and record["jobs"][0]["description"].get("dlc_job_id"):
                return record
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no running job in {registry_path}")


def test_hpo_tools_kill_stops_the_job_through_the_registry_from_another_process(
    tmp_path, cloud, free_port
):
    (tmp_path / "trial.ini").write_text(_trial_ini())
    env = {**os.environ, ENV_FAKE_CLOUD: str(cloud), "DLC_TEST_ID": ACCESS_ID,
           "DLC_TEST_KEY": ACCESS_KEY,
           # hpo-tools kill rebuilds the platform from the record: keys from its environment
           "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_ID, "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY}
    runner = subprocess.Popen(
        [sys.executable, "-m", "hpo_tools", "run", "--config", "trial.ini", "--params",
         '{"${lr}": 0.1}', "--exp_dir", "exp"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        record = _wait_for_running_job(tmp_path / "exp" / "standalone" / "hpo-tools" / "jobs" /
                                       "standalone.json")
        kill = subprocess.run(
            [sys.executable, "-m", "hpo_tools", "kill", "--experiment", "standalone",
             "--experiment-dir", str(tmp_path / "exp" / "standalone"), "--port", str(free_port),
             "--timeout", "10"],
            env=env, capture_output=True, text=True, timeout=60)
        out, err = runner.communicate(timeout=60)
    finally:
        runner.kill()
    job_id = record["jobs"][0]["description"]["dlc_job_id"]
    assert f"cancelled job {job_id} of trial standalone" in kill.stdout, kill.stdout + kill.stderr
    fake = FakeDlcClient(cloud, access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
    (stop,) = fake.stops
    assert stop["job_id"] == job_id and stop["pid"] not in (os.getpid(), runner.pid)
    # the runner sees its job stopped and ends the trial (not a success)
    assert runner.returncode != 0 and "stopped (not by hpo-tools)" in err


def test_secrets_are_in_no_file_and_no_log(tmp_path, fake):
    fake.plan_next(steps=[
        {"status": "Running", "logs": {"worker": [f"oops printing {ACCESS_KEY} auc=0.5",
                                                  f"and the id {ACCESS_ID}"]}},
        {"status": "Failed"}], reason=f"bad key {ACCESS_KEY}")
    outcome, _, context = _run(tmp_path, fake, _trial_ini())
    assert outcome.status == "failed"
    log = context.paths.log_path.read_text()
    assert "oops printing *** auc=0.5" in log  # relayed, masked
    leaks = []
    service = tmp_path / "cloud" / ".dlc" / "jobs"  # the fake DLC's own copy of the pods' output
    for path in tmp_path.rglob("*"):
        if path.is_file() and service not in path.parents:
            data = path.read_bytes()
            if ACCESS_KEY.encode() in data or ACCESS_ID.encode() in data:
                leaks.append(str(path.relative_to(tmp_path)))
    assert leaks == []  # registry, params/result.json, trial.log, dlc-logs/, the fake's records
    assert ACCESS_KEY not in outcome.message


# -- check ---------------------------------------------------------------------------------


def test_check_validates_dlc_config_and_every_command_without_contacting_dlc(
    tmp_path, cloud, capsys
):
    space = tmp_path / "search_space.json"
    space.write_text(json.dumps({"${lr}": {"_type": "choice", "_value": [0.1, 0.2]}}))
    trial = tmp_path / "trial.ini"
    trial.write_text(_trial_ini(commands=2))
    assert cli.main(["check", "--config", str(trial), "--search-space", str(space)]) == 0
    assert "ok: " in capsys.readouterr().out
    trial.write_text(_trial_ini(commands=2).replace("--worker_spec=ecs.g6 --evaluators",
                                                    "--worker_spce=ecs.g6 --evaluators", 1)
                     .replace("region=cn-shanghai", "region=cn-shanghai\nprotocol=ftp"))
    code = cli.main(["check", "--config", str(trial), "--search-space", str(space)])
    captured = capsys.readouterr()
    err = captured.out + captured.err
    assert code == 1  # problems found
    assert "[platform_config] cmd1: dlc command: unknown flag --worker_spce" in err
    assert "(did you mean 'worker_spec'?)" in err
    assert "[dlc_config] protocol: expected http or https, got 'ftp'" in err
    assert not (cloud / ".dlc").exists()  # nothing was submitted, no client was built
