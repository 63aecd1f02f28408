"""Reporters: the console one, and NNI's lost channel turned into cancellation."""

from __future__ import annotations

import io
import json
import random
import threading
import time

import pytest
import requests

from hpo_tools.trial.reporter import ConsoleReporter, NniReporter, ReporterChannelLost, under_nni
from hpo_tools.trial_files import run_trial_file

from .conftest import TRAIN


def test_console_reporter_prints_and_keeps_results():
    stream = io.StringIO()
    reporter = ConsoleReporter({"lr": 1}, stream=stream)
    assert reporter.get_parameters() == {"lr": 1}
    reporter.report_intermediate({"default": 0.5})
    reporter.report_final({"default": 0.7})
    assert reporter.intermediate == [{"default": 0.5}] and reporter.final == {"default": 0.7}
    lines = stream.getvalue().splitlines()
    assert lines == ['intermediate result 1: {"default": 0.5}', 'final result: {"default": 0.7}']
    assert reporter.experiment_id == "standalone" and reporter.trial_id == "standalone"


@pytest.mark.parametrize(
    ("env", "expected"),
    [({}, False), ({"NNI_PLATFORM": "unittest"}, False), ({"NNI_PLATFORM": "local"}, True)],
)
def test_under_nni_follows_nni_platform(env, expected):
    assert under_nni(env) is expected


@pytest.fixture
def nni_module(monkeypatch):
    """The real ``nni`` module, its channel calls replaced per test (the fake channel)."""
    import nni

    monkeypatch.setattr(nni, "get_next_parameter", lambda: {"lr": 0.1})
    return nni


def _refused(metric):
    raise requests.exceptions.ConnectionError("Connection refused")


def test_nni_connection_error_becomes_channel_lost(nni_module, monkeypatch):
    # What nni.report_* raise once the experiment stopped (API-NOTES §0.9); requests'
    # ConnectionError is not the builtin one, both must be recognised.
    monkeypatch.setattr(nni_module, "report_intermediate_result", _refused)
    with pytest.raises(ReporterChannelLost, match="channel lost"):
        NniReporter().report_intermediate({"default": 1.0})


def test_closed_channel_giving_no_parameters_is_channel_lost(nni_module, monkeypatch):
    monkeypatch.setattr(nni_module, "get_next_parameter", lambda: None)
    with pytest.raises(ReporterChannelLost, match="no parameters"):
        NniReporter().get_parameters()


def test_reports_reach_nni_in_order_each_before_the_call_returns(nni_module, monkeypatch):
    sent = []

    def slow_send(kind):
        def send(metric):
            time.sleep(random.random() / 200)  # answers of varying speed
            sent.append((kind, metric["default"]))
        return send

    monkeypatch.setattr(nni_module, "report_intermediate_result", slow_send("intermediate"))
    monkeypatch.setattr(nni_module, "report_final_result", slow_send("final"))
    reporter = NniReporter()
    for step in range(30):
        reporter.report_intermediate({"default": float(step)})
        # sent when the call returns: nothing is lost if the runner exits right after
        assert sent[-1] == ("intermediate", float(step))
    reporter.report_final({"default": 99.0})
    # the tuner and assessor see the steps in order, then the final
    assert sent == [("intermediate", float(i)) for i in range(30)] + [("final", 99.0)]


def test_a_hung_report_is_channel_lost_within_the_timeout(nni_module, monkeypatch):
    release = threading.Event()
    calls = []

    def hang(metric):  # NNI's HTTP send has no timeout: a manager that never answers
        calls.append(metric)
        release.wait(30)

    monkeypatch.setattr(nni_module, "report_intermediate_result", hang)
    reporter = NniReporter(report_timeout=0.3)
    try:
        started = time.monotonic()
        with pytest.raises(ReporterChannelLost, match="no answer in 0.3 s"):
            reporter.report_intermediate({"default": 0.5})
        # the runner then cancels its jobs: it must get there well within NNI's 5 s
        assert time.monotonic() - started < 1.0
        started = time.monotonic()
        with pytest.raises(ReporterChannelLost):
            reporter.report_final({"default": 0.6})
        # a later report fails at once instead of queueing behind the hung one
        assert time.monotonic() - started < 0.25 and len(calls) == 1
    finally:
        release.set()


def test_other_nni_errors_are_not_taken_for_a_lost_channel(nni_module, monkeypatch):
    def reject(metric):
        raise TypeError("metric must be a number or a dict with 'default'")

    monkeypatch.setattr(nni_module, "report_final_result", reject)
    # a bug in what we send must show as itself, not as a stopped experiment
    with pytest.raises(TypeError, match="default"):
        NniReporter().report_final({"default": 1.0})


class _LosesChannel(ConsoleReporter):
    def report_intermediate(self, metrics):
        raise ReporterChannelLost("NNI channel lost while reporting: gone")


def test_lost_channel_cancels_jobs_and_fails_non_zero(tmp_path, write_trial):
    trial = write_trial(
        "[platform_config]\nname=Local\n"
        f"cmd1={TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 50 --sleep 0.2\n"
        "[metric_config]\nmetric_source=${NNI_OUTPUT_DIR}/model/eval_val\n"
        'metric_dict={"auc": 1}\n'
    )
    reporter = _LosesChannel({}, stream=io.StringIO())
    outcome = run_trial_file(trial, reporter, exp_dir=tmp_path / "exp", interval=0.05)
    # Rather than crash with the job still training, cancel it and fail.
    assert outcome.status == "cancelled" and outcome.exit_code != 0
    result = json.loads((tmp_path / "exp/standalone/trials/standalone/result.json").read_text())
    assert result["status"] == "cancelled"
    from hpo_tools.jobs import JobRegistry
    from hpo_tools.platforms import JobState

    record = JobRegistry(tmp_path / "exp" / "standalone").load("standalone")
    assert record.jobs[0].state is JobState.CANCELLED
