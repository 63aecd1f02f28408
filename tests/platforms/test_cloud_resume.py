"""A stage run again with ``resume=1`` on the cloud platforms that read one command's job output
as metrics (DLC's ``stdout`` of ``cmdN``, PAI's ``api`` of ``cmdN``): ``resume_stage`` binds
every source to the file the earlier attempt left (read even when the command was skipped and
no other command runs), and the stage's new jobs append to it, so every attempt's steps are
read, numbered on in order. Without it a new job starts its file afresh, as before.

Each platform object stands for one runner process (one attempt); the services are the SDK
fakes over a directory (FakeDlcClient, FakeTrainingJobClient), shared by the attempts.
"""

from __future__ import annotations

import time

import pytest

from hpo_tools.metrics.score import MetricSpec
from hpo_tools.platforms import JobState
from hpo_tools.platforms.dlc import DlcPlatform
from hpo_tools.platforms.pai_training import PaiTrainingPlatform
from hpo_tools.testing.dlc import FakeDlcClient
from hpo_tools.testing.pai_training import FakeTrainingJobClient

ACCESS_ID = "LTAI5tFakeResumeId31"
ACCESS_KEY = "fakeResumeSecret4159265"
DLC_COMMAND = ("dlc submit tfjob --name=resume_t --command='python train.py' "
               "--workspace_id=ws1 --workers=1 --worker_image=img --worker_spec=ecs.g6")
PAI_COMMAND = ("pai training-job create --name=resume_t --algorithm=easyrec "
               "--instance-type=ecs.g6.xlarge")
AUC = "auc=([0-9.]+)"


def _until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


class _Dlc:
    """DLC: pod log lines of the worker, ``metric_source=cmd1,worker``."""

    file = "dlc-logs/cmd1.worker.log"

    def __init__(self, root):
        self.fake = FakeDlcClient(root, access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
        self.command = DLC_COMMAND

    def platform(self):
        return DlcPlatform(region="cn-shanghai", access_id=ACCESS_ID, access_key=ACCESS_KEY,
                           poll_interval=0, client_factory=self.fake.connect)

    def source(self, platform):
        return platform.metric_source("stdout", "cmd1,worker",
                                      MetricSpec.from_config({AUC: 1}))

    def scored(self, step):
        return {"status": "Running", "logs": {"worker": [f"step {step} auc={0.6 + step / 100}"]}}

    def values(self, points):
        return [round(dict(p.values)[AUC], 4) for p in points]


class _Pai:
    """PAI training: the metrics the job reports, ``metric_type=api``, ``metric_source=cmd1``."""

    file = "pai-metrics/cmd1.jsonl"

    def __init__(self, root):
        self.fake = FakeTrainingJobClient(root, access_key_id=ACCESS_ID,
                                          access_key_secret=ACCESS_KEY)
        self.command = PAI_COMMAND

    def platform(self):
        return PaiTrainingPlatform(region="cn-hangzhou", access_id=ACCESS_ID,
                                   access_key=ACCESS_KEY, poll_interval=0,
                                   client_factory=self.fake.connect)

    def source(self, platform):
        return platform.metric_source("api", "cmd1", MetricSpec.from_config({"auc": 1}))

    def scored(self, step):
        return {"status": "Running", "metrics": {"auc": 0.6 + step / 100}}

    def values(self, points):
        return [round(dict(p.values)["auc"], 4) for p in points]


@pytest.fixture(params=["dlc", "pai"])
def service(request, tmp_path):
    service = {"dlc": _Dlc, "pai": _Pai}[request.param](tmp_path / "cloud")
    yield service
    service.fake.release()


def _attempt(service, log_path, steps, *, resume, ends=True):
    """One runner's attempt at the stage: its platform, its source (built before anything
    runs, as the runner does), ``resume_stage`` when resuming, then cmd1's job scoring
    ``steps`` (None: no job, resume skipped the command); the source's drained points."""
    platform = service.platform()
    try:
        source = service.source(platform)
        if resume:
            platform.resume_stage(log_path)
        if steps is not None:
            service.fake.plan_next(steps=[{"status": "Queuing"}]
                                   + [service.scored(k) for k in steps]
                                   + [{"status": "Succeeded" if ends else "Running"}])
            job = platform.submit(service.command, log_path=log_path,
                                  env={"HPO_TOOLS_COMMAND": "cmd1"})
            if ends:
                assert job.wait(timeout=10) is JobState.SUCCEEDED
            else:  # the runner dies (or NNI stops it) while the job runs
                file = log_path.parent / service.file
                _until(lambda: file.exists()
                       and len(file.read_text().splitlines()) >= len(steps))
                job.cancel()
        return source, source.drain()
    finally:
        platform.close()


def test_a_resumed_stage_reads_the_earlier_file_of_a_command_resume_skipped(tmp_path, service):
    """The job succeeded, the runner died before the final report: the next attempt skips
    cmd1 and submits nothing, and its source reads what that job wrote."""
    log_path = tmp_path / "trial" / "trial.log"
    _, first = _attempt(service, log_path, [1, 2], resume=True)
    assert service.values(first) == [0.61, 0.62]
    source, again = _attempt(service, log_path, None, resume=True)
    assert source.found()
    assert [p.step for p in again] == [1, 2]
    assert service.values(again) == [0.61, 0.62]
    # Without resume nothing of the earlier attempt is read: the command has to run again.
    source, fresh = _attempt(service, log_path, None, resume=False)
    assert fresh == [] and not source.found()


def test_a_resumed_stage_whose_command_never_ran_reads_nothing_yet(tmp_path, service):
    source, points = _attempt(service, tmp_path / "trial" / "trial.log", None, resume=True)
    assert points == [] and not source.found()


def test_a_resumed_stage_appends_so_every_attempts_steps_are_read_in_order(tmp_path, service):
    """The earlier attempt's job was stopped after two steps; the resumed attempt's new job
    goes on from its checkpoint (steps 3, 4): the file keeps both, the steps number on."""
    log_path = tmp_path / "trial" / "trial.log"
    _, first = _attempt(service, log_path, [1, 2], resume=True, ends=False)
    assert service.values(first) == [0.61, 0.62]
    _, resumed = _attempt(service, log_path, [3, 4], resume=True)
    assert [p.step for p in resumed] == [1, 2, 3, 4]
    assert service.values(resumed) == [0.61, 0.62, 0.63, 0.64]
    assert len((log_path.parent / service.file).read_text().splitlines()) == 4


def test_without_resume_a_new_job_starts_its_file_afresh(tmp_path, service):
    log_path = tmp_path / "trial" / "trial.log"
    _attempt(service, log_path, [1, 2], resume=False)
    _, again = _attempt(service, log_path, [3, 4], resume=False)
    assert [p.step for p in again] == [1, 2]
    assert service.values(again) == [0.63, 0.64]
    assert len((log_path.parent / service.file).read_text().splitlines()) == 2
