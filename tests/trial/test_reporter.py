"""Reporters: the console one, and NNI's lost channel turned into cancellation."""

from __future__ import annotations

import io
import json

import pytest
import requests

from hpo_tools.trial.reporter import ConsoleReporter, NniReporter, ReporterChannelLost, under_nni
from hpo_tools.trial.runner import run_trial_file

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


class _StoppedNni:
    """Stands in for the `nni` module after the experiment stopped (channel gone)."""

    def report_intermediate_result(self, metric):
        raise requests.exceptions.ConnectionError("Connection refused")

    report_final_result = report_intermediate_result

    def get_next_parameter(self):
        return None


def _nni_reporter() -> NniReporter:
    reporter = NniReporter.__new__(NniReporter)
    reporter._nni = _StoppedNni()
    reporter._parameter_id = None
    return reporter


def test_nni_connection_error_becomes_channel_lost():
    # requests' ConnectionError is not the builtin one; both must be recognised.
    with pytest.raises(ReporterChannelLost, match="channel lost"):
        _nni_reporter().report_intermediate({"default": 1.0})


def test_closed_channel_giving_no_parameters_is_channel_lost():
    with pytest.raises(ReporterChannelLost, match="no parameters"):
        _nni_reporter().get_parameters()


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
