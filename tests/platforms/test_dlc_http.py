"""The DLC platform with the SDK's own Client (signing, HTTP, response parsing) against a real
HTTP server on localhost that answers DLC's REST API (DlcRestServer over FakeDlcClient)."""

from __future__ import annotations

import time

import pytest

from hpo_tools.errors import PlatformError
from hpo_tools.platforms import JobState
from hpo_tools.platforms.dlc import DlcPlatform
from hpo_tools.testing.dlc import DlcRestServer, FakeDlcClient

ACCESS_ID = "LTAI5tHttpTestId11"
ACCESS_KEY = "httpTestSecret22334455"
COMMAND = ("dlc submit pytorchjob --name=http_t1 --command='python train.py' --workspace_id=ws9 "
           "--workers=2 --worker_image=img --worker_spec=ecs.gn6i")


@pytest.fixture
def fake(tmp_path):
    fake = FakeDlcClient(tmp_path / "cloud", access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
    yield fake
    for event in fake._hangs.values():
        event.set()


@pytest.fixture
def server(fake):
    with DlcRestServer(fake) as server:
        yield server


def _platform(server, **kwargs):
    return DlcPlatform(endpoint=server.endpoint, protocol="http", access_id=ACCESS_ID,
                       access_key=ACCESS_KEY, poll_interval=0.01, **kwargs)


def test_the_sdk_client_creates_follows_and_reads_pod_logs_over_http(fake, server, tmp_path):
    fake.plan_next(steps=[{"status": "Queuing"},
                          {"status": "Running", "logs": {"worker-1": ["epoch 1 acc=0.8"]}},
                          {"status": "Succeeded"}])
    platform = _platform(server)
    try:
        job = platform.submit(COMMAND, log_path=tmp_path / "trial.log")
        assert job.wait(20) is JobState.SUCCEEDED
    finally:
        platform.close()
    (dlc_id,) = fake.job_ids()
    assert job.job_id == dlc_id  # CreateJob's JobId, parsed by the SDK
    request = fake.submissions[0]["request"]
    assert request["JobType"] == "PyTorchJob" and request["JobSpecs"][0]["PodCount"] == 2
    log = (tmp_path / "trial.log").read_text()
    assert f"[dlc] --- pod {dlc_id}-worker-1 (Worker) ---\nepoch 1 acc=0.8\n" in log
    assert "POST /api/v1/jobs" in server.requests
    assert f"GET /api/v1/jobs/{dlc_id}/pods/{dlc_id}-worker-0/logs" in server.requests


def test_stop_job_over_http(fake, server, tmp_path):
    fake.plan_next(steps=[{"status": "Running"}])
    platform = _platform(server)
    try:
        job = platform.submit(COMMAND, log_path=tmp_path / "trial.log")
        deadline = time.monotonic() + 20
        while job.poll() is not JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        job.cancel()
    finally:
        platform.close()
    assert job.poll() is JobState.CANCELLED
    assert fake.stop_calls(job.cloud_id) == 1
    assert f"POST /api/v1/jobs/{job.cloud_id}/stop" in server.requests


def test_a_refusal_is_the_sdks_client_error_in_one_line(fake, server, tmp_path):
    fake.plan_next(create="refuse")
    platform = _platform(server)
    with pytest.raises(PlatformError) as caught:
        platform.submit(COMMAND, log_path=tmp_path / "trial.log")
    assert "was refused: InvalidParameter: code: 400, fake refusal (plan: refuse)" in str(
        caught.value)
    assert "\n" not in str(caught.value)
    assert not any(r.startswith("GET /api/v1/jobs") and r.endswith("jobs")
                   for r in server.requests)  # a refusal needs no search


def test_a_create_job_that_times_out_is_abandoned_and_the_job_found_by_name_and_stopped(
    fake, server, tmp_path
):
    fake.plan_next(create="hang", steps=[{"status": "Running"}])  # created, no answer
    fake.hang("create_job")
    platform = _platform(server, call_timeout=1)  # the SDK's read timeout
    with pytest.raises(PlatformError) as caught:
        platform.submit(COMMAND, log_path=tmp_path / "trial.log")
    (dlc_id,) = fake.job_ids()
    assert "failed without an answer" in str(caught.value)
    assert f"created it anyway as {dlc_id}, stopped" in str(caught.value)
    assert fake.stop_calls(dlc_id) == 1
    assert "GET /api/v1/jobs" in server.requests  # ListJobs by the unique name
