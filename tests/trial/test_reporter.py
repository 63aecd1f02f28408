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


# -- the parameter set NNI recorded for the trial (microsoft/nni#5726) ------------------------


class _NniRecords:
    """A real HTTP server answering ``GET <prefix>/api/v1/nni/trial-jobs/<id>`` as NNI's REST API
    does; ``missing_answers`` requests are first answered 500, as NNI does before it stored the
    trial."""

    def __init__(self, records, prefix="", missing_answers=0):
        import http.server

        outer = self
        self.records, self.prefix, self.missing = records, prefix, missing_answers
        self.paths = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server's name
                outer.paths.append(self.path)
                trial_id = self.path.rsplit("/", 1)[-1]
                expected = f"{outer.prefix}/api/v1/nni/trial-jobs/{trial_id}"
                if self.path != expected or trial_id not in outer.records or outer.missing > 0:
                    outer.missing -= 1
                    self.send_response(500)
                    self.end_headers()
                    self.wfile.write(b'{"error":"not found"}')
                    return
                body = json.dumps({"trialJobId": trial_id, "hyperParameters": [
                    json.dumps(r) for r in outer.records[trial_id]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args):
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def channel(self, trial_id):
        return (f"http://127.0.0.1:{self.server.server_address[1]}{self.prefix}"
                f"/env/local-env/{trial_id}")

    def close(self):
        self.server.shutdown()
        self.server.server_close()


def _set(parameter_id, x, index=0):
    return {"parameter_id": parameter_id, "parameter_source": "algorithm",
            "parameters": {"x": x}, "parameter_index": index}


@pytest.fixture
def records():
    servers = []

    def make(*args, **kwargs):
        servers.append(_NniRecords(*args, **kwargs))
        return servers[-1]

    yield make
    for server in servers:
        server.close()


def test_recorded_set_is_read_through_the_channels_server_and_prefix(records):
    from hpo_tools.trial.reporter import recorded_parameter_set

    server = records({"AbCd1": [_set(3, 0.3)]}, prefix="/my/prefix", missing_answers=2)
    # NNI answers 500 until it stored the trial: the reader waits for it.
    assert recorded_parameter_set(server.channel("AbCd1"), "AbCd1", wait=5) == _set(3, 0.3)
    assert server.paths[-1] == "/my/prefix/api/v1/nni/trial-jobs/AbCd1"
    assert len(server.paths) == 3


def test_recorded_set_is_none_when_nni_never_answers_it(records):
    from hpo_tools.trial.reporter import recorded_parameter_set

    server = records({})
    assert recorded_parameter_set(server.channel("Zz9"), "Zz9", wait=0.5) is None
    assert len(server.paths) >= 2  # it retried


def test_the_trial_runs_and_reports_under_the_set_nni_recorded(nni_module, monkeypatch,
                                                               records):
    import nni.trial

    handed = _set(1, 0.1)
    server = records({"T1": [_set(5, 0.5)]})
    monkeypatch.setenv("NNI_TRIAL_COMMAND_CHANNEL", server.channel("T1"))
    monkeypatch.setattr(nni.trial, "_trial_id", "T1")

    def get_next_parameter():
        nni.trial._params = handed
        return handed["parameters"]

    monkeypatch.setattr(nni_module, "get_next_parameter", get_next_parameter)
    monkeypatch.setattr(nni.trial, "_params", None)
    sent = []
    monkeypatch.setattr(nni_module, "report_final_result",
                        lambda metric: sent.append((nni.trial._params["parameter_id"], metric)))
    reporter = NniReporter()
    assert reporter.get_parameters() == {"x": 0.5}
    assert reporter.parameter_id == 5 and reporter.handed_parameter_id == 1
    reporter.report_final({"default": 0.5})
    assert sent == [(5, {"default": 0.5})]  # NNI's metric record names set 5


def test_the_handed_set_is_kept_when_it_is_the_recorded_one(nni_module, monkeypatch, records):
    import nni.trial

    handed = _set(2, 0.2)
    server = records({"T2": [handed]})
    monkeypatch.setenv("NNI_TRIAL_COMMAND_CHANNEL", server.channel("T2"))
    monkeypatch.setattr(nni.trial, "_trial_id", "T2")

    def get_next_parameter():
        nni.trial._params = handed
        return dict(handed["parameters"])

    monkeypatch.setattr(nni_module, "get_next_parameter", get_next_parameter)
    monkeypatch.setattr(nni.trial, "_params", None)
    reporter = NniReporter()
    assert reporter.get_parameters() == {"x": 0.2}
    assert reporter.parameter_id == 2 and reporter.handed_parameter_id is None
    assert nni.trial._params is handed


def test_nni_record_is_read_directly_even_with_a_proxy_in_the_environment(records, monkeypatch):
    """A trial inherits the shell's http_proxy; NNI's manager must still be reached directly."""
    from hpo_tools.trial.reporter import recorded_parameter_set

    monkeypatch.setenv("http_proxy", "http://127.0.0.1:9")  # nothing listens there
    monkeypatch.setenv("no_proxy", "")
    server = records({"P1": [_set(4, 0.4)]})
    assert recorded_parameter_set(server.channel("P1"), "P1", wait=2) == _set(4, 0.4)
