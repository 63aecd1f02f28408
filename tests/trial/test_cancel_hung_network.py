"""SIGINT ends a trial within 3 s even when the network hangs (MaxCompute status calls)."""

from __future__ import annotations

import io
import os
import signal
import threading
import time

from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState
from hpo_tools.platforms.maxcompute import MaxComputePlatform
from hpo_tools.testing.odps import FakeODPS
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import run_plan
from hpo_tools.trial_files import prepare_trial

TRIAL = (
    "[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext -Dcmd=train\ncmd2=SELECT 1\n"
    '[metric_config]\nmetric_source=/nowhere\nmetric_dict={"auc": 1}\n'
    "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
)


def _signal_when(condition, signum: int, timeout: float = 10.0) -> threading.Thread:
    """Send ``signum`` to this process once ``condition()`` holds (or give up after timeout)."""

    def run() -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return
            time.sleep(0.01)
        os.kill(os.getpid(), signum)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def test_sigint_while_maxcompute_status_calls_hang_cancels_within_3_seconds(
    tmp_path, monkeypatch
):
    monkeypatch.setenv("ODPS_ACCESS_ID", "fakeAccessId01")
    monkeypatch.setenv("ODPS_ACCESS_KEY", "fakeAccessKey01")
    trial = tmp_path / "trial.ini"
    trial.write_text(TRIAL)
    reporter = ConsoleReporter({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    fake = FakeODPS(polls=10**6)
    release = threading.Event()
    fake.hang_status = release  # the service never answers a status call
    platform = MaxComputePlatform(**plan.platform.options, odps_factory=fake.connect,
                                  poll_interval=0.05)
    sent = {}

    def hung() -> bool:
        if fake.hung_calls >= 1:  # the PAI job's status check is stuck on the network
            sent["at"] = time.monotonic()
            return True
        return False

    sender = _signal_when(hung, signal.SIGINT)
    try:
        outcome = run_plan(plan, reporter, context, platform=platform, interval=0.05)
        ended = time.monotonic()
    finally:
        release.set()  # let the stuck follower thread go
        sender.join(timeout=5)
    assert "at" in sent, "the status call never hung: the test proved nothing"
    # NNI SIGKILLs the runner 5 s after its SIGINT; before this change the runner's main thread
    # sat in the hung status call and never got to cancel.
    assert ended - sent["at"] < 3.0
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    (instance,) = fake.instances.values()
    # the paid PAI job is stopped, not left to the assessor's backstop
    assert instance.stop_calls == 1
    record = JobRegistry(tmp_path / "exp" / "E").load("T")
    assert [(j.command_index, j.state) for j in record.jobs] == [(1, JobState.CANCELLED)]
    assert record.state is JobState.CANCELLED


def test_a_hung_nni_report_cancels_the_jobs_and_fails_non_zero(tmp_path, monkeypatch):
    import nni

    from hpo_tools.trial.reporter import NniReporter
    from hpo_tools.trial_files import run_trial_file

    from .conftest import TRAIN

    release = threading.Event()
    hung = {}

    def hang(metric):  # NNI's manager takes the connection and never answers
        hung.setdefault("at", time.monotonic())
        release.wait(30)

    monkeypatch.setattr(nni, "get_next_parameter", lambda: {})
    monkeypatch.setattr(nni, "report_intermediate_result", hang)
    trial = tmp_path / "trial.ini"
    trial.write_text(
        "[platform_config]\nname=Local\n"
        f"cmd1={TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 100 --sleep 0.1\n"
        "[metric_config]\nmetric_source=${NNI_OUTPUT_DIR}/model/eval_val\n"
        'metric_dict={"auc": 1}\n'
    )
    try:
        outcome = run_trial_file(trial, NniReporter(report_timeout=0.5), exp_dir=tmp_path / "exp",
                                 interval=0.05)
        ended = time.monotonic()
    finally:
        release.set()
    assert "at" in hung, "no report was sent: the test proved nothing"
    # the report's bound (0.5 s) plus cancelling the job: far inside NNI's 5 s
    assert ended - hung["at"] < 3.0
    # a trial that could not report is not a success (NNI would feed nothing to the tuner)
    assert outcome.status == "cancelled" and outcome.exit_code != 0
    assert "no answer in 0.5 s" in outcome.message
    exp = tmp_path / "exp" / nni.get_experiment_id()
    record = JobRegistry(exp).load(nni.get_trial_id())
    assert record.jobs[0].state is JobState.CANCELLED
