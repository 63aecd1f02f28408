"""SIGINT/SIGTERM to the runner: every job cancelled, registry marked, non-zero exit within 3 s."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState

from .conftest import PYTHON

METRIC = '[metric_config]\nmetric_source=/nowhere\nmetric_dict={"auc": 1}\n'


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            state = handle.read().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state != "Z"  # a zombie runs nothing


def _env() -> dict:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return env


def _start_sleeping_trial(tmp_path: Path, write_trial):
    pidfile = tmp_path / "job.pid"
    sleeper = f"import os, time; open('{pidfile}', 'w').write(str(os.getpid())); time.sleep(60)"
    trial = write_trial(
        f'[platform_config]\nname=Local\ncmd1={PYTHON} -c "{sleeper}"\ncmd2=true\n' + METRIC
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "hpo_tools.run", "--config", str(trial),
         "--exp_dir", str(tmp_path / "exp"), "--interval", "0.2"],
        cwd=tmp_path, env=_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    deadline = time.monotonic() + 30
    while not (pidfile.exists() and pidfile.read_text()):
        if runner.poll() is not None or time.monotonic() > deadline:
            runner.kill()
            pytest.fail(f"job never started: {runner.communicate()}")
        time.sleep(0.05)
    return runner, int(pidfile.read_text())


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_signal_cancels_job_and_exits_non_zero_within_3_seconds(tmp_path, write_trial, signum):
    runner, job_pid = _start_sleeping_trial(tmp_path, write_trial)
    try:
        started = time.monotonic()
        runner.send_signal(signum)
        code = runner.wait(timeout=10)
        elapsed = time.monotonic() - started
        err = runner.communicate(timeout=5)[1].decode("utf-8", errors="replace")
    finally:
        if runner.poll() is None:
            runner.kill()
        if _alive(job_pid):
            os.kill(job_pid, signal.SIGKILL)
    # NNI waits 5 s before SIGKILL; the runner must be done well before.
    assert elapsed < 3.0, (elapsed, err)
    # Exit 0 would make NNI record the trial SUCCEEDED with a half-trained result.
    assert code != 0, err
    # It dies by the signal it got (Popen: -signum), so NNI records USER_CANCELED, not FAILED.
    assert code == -signum, err
    # The job's process is gone by the time the runner exits.
    assert not _alive(job_pid)
    log = tmp_path / "exp/standalone/trials/standalone/trial.log"
    err += log.read_text() if log.exists() else ""
    record = JobRegistry(tmp_path / "exp" / "standalone").load("standalone")
    assert record.jobs[0].state is JobState.CANCELLED, err
    assert record.state is JobState.CANCELLED, err
    # cmd2 was never started.
    assert [j.command_index for j in record.jobs] == [1]
    result = json.loads(
        (tmp_path / "exp/standalone/trials/standalone/result.json").read_text()
    )
    assert result["status"] == "cancelled" and result["final"] is None


def _table_metric_trial(tmp_path, monkeypatch):
    """A MaxCompute trial (one PAI job) scored by a `table` query: (reporter, settings, context)."""
    import io

    from hpo_tools.trial.reporter import ConsoleReporter
    from hpo_tools.trial_files import prepare_trial

    monkeypatch.setenv("ODPS_ACCESS_ID", "fakeAccessId01")
    monkeypatch.setenv("ODPS_ACCESS_KEY", "fakeAccessKey01")
    trial = tmp_path / "trial.ini"
    trial.write_text(
        "[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext -Dcmd=train\n"
        "[metric_config]\nmetric_type=table\nmetric_source=SELECT step, auc FROM t\n"
        'metric_dict={"auc": 1}\n'
        "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
    )
    reporter = ConsoleReporter({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    return reporter, plan, context


def test_sigint_during_a_long_table_metric_query_cancels_within_3_seconds(tmp_path, monkeypatch):
    """A metric read that blocks (a `table` query) must not keep the runner from cancelling."""
    import threading

    from hpo_tools.platforms.maxcompute import MaxComputePlatform
    from hpo_tools.testing.odps import FakeODPS
    from hpo_tools.trial.runner import run_plan

    reporter, plan, context = _table_metric_trial(tmp_path, monkeypatch)
    fake = FakeODPS(polls=10**6)  # neither the PAI job nor the metric query ever ends
    platform = MaxComputePlatform(**plan.platform.options, odps_factory=fake.connect,
                                  poll_interval=0.05)

    def end_everything() -> None:  # a safety net, so that a regression fails instead of hanging
        for instance in list(fake.instances.values()):
            instance.stop()

    safety = threading.Timer(10, end_everything)
    sigint = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT))
    safety.start()
    sigint.start()
    try:
        started = time.monotonic()
        outcome = run_plan(plan, reporter, context, platform=platform, interval=0.05)
        elapsed = time.monotonic() - started - 0.5
    finally:
        safety.cancel()
        sigint.cancel()
    assert outcome.status == "cancelled", outcome.message
    # Within NNI's grace (5 s) with room to spare, the query in flight notwithstanding.
    assert elapsed < 3.0
    # The PAI job and the metric query are both stopped: nothing left running.
    assert all(instance.stopped for instance in fake.instances.values())
    assert [s["kind"] for s in fake.submitted] == ["xflow", "sql"]


def test_sigint_while_waiting_for_parameters_still_writes_result_json(tmp_path, write_trial):
    """Under NNI, getting the parameters takes seconds; a stop then must leave a record too."""
    import io

    from hpo_tools.trial.reporter import ConsoleReporter
    from hpo_tools.trial_files import run_trial_file

    class InterruptedReporter(ConsoleReporter):
        def get_parameters(self):
            raise KeyboardInterrupt  # what SIGINT does during nni.get_next_parameter()

    trial = write_trial("[platform_config]\nname=Local\ncmd1=true\n" + METRIC)
    reporter = InterruptedReporter({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    # It goes on up, so that the runner dies by SIGINT (NNI: USER_CANCELED).
    with pytest.raises(KeyboardInterrupt):
        run_trial_file(trial, reporter, exp_dir=tmp_path / "exp")
    result = json.loads((tmp_path / "exp/E/trials/T/result.json").read_text())
    assert result["status"] == "cancelled" and result["final"] is None


def test_sigint_while_reading_the_final_metrics_reports_no_final(tmp_path, monkeypatch):
    """A drain cut short by the cancellation must not be reported as the trial's final result."""
    import threading

    from hpo_tools.platforms.maxcompute import MaxComputePlatform
    from hpo_tools.testing.odps import FakeODPS
    from hpo_tools.trial.runner import run_plan

    reporter, plan, context = _table_metric_trial(tmp_path, monkeypatch)
    fake = FakeODPS(polls=10**6)  # the last query (the drain) never ends
    fake.plan_next(polls=1)  # the PAI job ends at once
    fake.plan_next(polls=0)  # the query while it ran answers at once
    fake.set_sql_result("FROM t", [{"step": 1, "auc": 0.5}])
    platform = MaxComputePlatform(**plan.platform.options, odps_factory=fake.connect,
                                  poll_interval=0.05)
    sigint = threading.Timer(0.5, os.kill, args=(os.getpid(), signal.SIGINT))
    sigint.start()
    try:
        outcome = run_plan(plan, reporter, context, platform=platform, interval=0.05)
    finally:
        sigint.cancel()
    assert [s["kind"] for s in fake.submitted] == ["xflow", "sql", "sql"]  # stopped in the drain
    # The step seen before is reported as intermediate, but no final from a cut-short read.
    assert reporter.intermediate and reporter.final is None
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT


def test_sigint_between_reports_of_one_poll_sends_no_more(tmp_path):
    """A poll can hold many steps: after a signal, none of the rest goes to NNI."""
    import io

    from hpo_tools.trial.reporter import ConsoleReporter
    from hpo_tools.trial.runner import run_plan
    from hpo_tools.trial_files import prepare_trial

    class SignalledAtFirstReport(ConsoleReporter):
        def report_intermediate(self, metric):
            super().report_intermediate(metric)
            if len(self.intermediate) == 1:
                os.kill(os.getpid(), signal.SIGINT)  # NNI stops the trial right then

    # Five steps printed at once, then the job waits: the first read holds all five.
    lines = "\\n".join(f"auc={step / 10}" for step in range(1, 6))
    job = f"import sys, time; sys.stdout.write('{lines}\\n'); sys.stdout.flush(); time.sleep(30)"
    trial = tmp_path / "trial.ini"
    trial.write_text(f'[platform_config]\nname=Local\ncmd1={PYTHON} -c "{job}"\n'
                     '[metric_config]\nmetric_type=stdout\n'
                     'metric_dict={"auc=([0-9.]+)": 1}\n')
    reporter = SignalledAtFirstReport({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    outcome = run_plan(plan, reporter, context, interval=0.05)
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    assert len(reporter.intermediate) == 1 and reporter.final is None
    # result.json keeps the steps read up to the signal; reported.json names the one NNI has,
    # so a resumed run sends the others.
    result = json.loads((tmp_path / "exp/E/trials/T/result.json").read_text())
    assert result["status"] == "cancelled" and len(result["intermediate"]) >= 2
    reported = json.loads((tmp_path / "exp/E/trials/T/reported.json").read_text())
    assert reported["steps"] == [[0, 1]]  # (source, step): step 1 of the only source
