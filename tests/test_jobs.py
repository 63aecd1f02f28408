"""The job registry: atomic per-trial records, resume info, cancelling live jobs."""

from __future__ import annotations

import json
import logging
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from hpo_tools.errors import StorageError
from hpo_tools.jobs import JobRegistry, TrialRecord, process_alive, this_process
from hpo_tools.platforms import Job, JobState, Platform
from hpo_tools.platforms import base as platforms_base
from hpo_tools.platforms.local import LocalPlatform


class _ListedJob(Job):
    """A job with a fixed description, for records that need no process behind them."""

    def __init__(self, job_id: str, description: dict, state: JobState = JobState.RUNNING):
        super().__init__(job_id, Path("unused.log"))
        self._description = description
        self._state = state

    def poll(self) -> JobState:
        return self._state

    def cancel(self) -> None:
        self._state = JobState.CANCELLED

    def describe(self) -> dict:
        return dict(self._description)


def _running(pid: int) -> bool:
    try:
        data = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return data[data.rindex(")") + 2] not in "ZX"


@pytest.fixture
def registry(tmp_path):
    return JobRegistry(tmp_path / "exp")


@pytest.fixture
def local_jobs():
    jobs = []
    yield jobs
    for job in jobs:
        job.cancel()


def test_saved_record_loads_back_equal(registry, tmp_path):
    record = registry.new("t1", experiment_id="exp1", trial_dir=tmp_path / "t1",
                          platform=LocalPlatform(grace_period=1))
    registry.mark_job(record, 1, _ListedJob("local:1", {"platform": "local", "pid": 1}),
                      JobState.SUCCEEDED)
    loaded = registry.load("t1")
    # every field survives the JSON round trip
    assert loaded.to_json() == record.to_json()
    assert loaded.platform == "local" and loaded.settings["grace_period"] == 1.0
    assert registry.path("t1") == tmp_path / "exp" / "hpo-tools" / "jobs" / "t1.json"


def test_load_of_an_unknown_trial_is_none(registry):
    assert registry.load("nope") is None


def test_save_is_atomic_when_the_write_fails(registry, monkeypatch):
    record = registry.new("t1", platform="local")
    registry.save(record)
    before = registry.path("t1").read_text()
    record.finished_stages.append("20220530")

    def broken_replace(src, dst):
        raise OSError("disk full")

    monkeypatch.setattr(os, "replace", broken_replace)
    with pytest.raises(StorageError, match=r"t1\.json: cannot write \(disk full\)"):
        registry.save(record)
    # the old record is intact and no temp file is left behind
    assert registry.path("t1").read_text() == before
    assert sorted(p.name for p in registry.directory.iterdir()) == [".t1.lock", "t1.json"]


def test_records_lists_every_trial_and_skips_unreadable_files(registry):
    for trial_id in ("b", "a"):
        registry.save(registry.new(trial_id, platform="local"))
    (registry.directory / "broken.json").write_text("{not json")
    # a corrupt file must not hide the others (kill sweeps every trial)
    assert [r.trial_id for r in registry.records()] == ["a", "b"]


def test_records_of_an_empty_experiment_is_empty(registry):
    assert registry.records() == []


def test_trial_ids_that_are_not_plain_names_are_rejected(registry):
    # a trial id becomes a file name: no path tricks
    with pytest.raises(ValueError, match="plain name"):
        registry.path("../escape")


def test_mark_job_stores_description_logview_and_trial_state(registry):
    record = registry.new("t1", platform="maxcompute")
    job = _ListedJob("inst1", {"platform": "maxcompute", "job_id": "inst1"})
    registry.mark_job(record, 2, job, JobState.RUNNING)
    saved = registry.load("t1")
    (entry,) = saved.jobs
    assert (entry.command_index, entry.job_id, entry.state) == (2, "inst1", JobState.RUNNING)
    assert entry.description["job_id"] == "inst1"
    # a running job makes the trial running
    assert saved.state is JobState.RUNNING


def test_mark_job_updates_the_same_entry(registry):
    record = registry.new("t1", platform="local")
    job = _ListedJob("local:5", {"platform": "local"})
    registry.mark_job(record, 1, job, JobState.RUNNING)
    registry.mark_job(record, 1, job, JobState.SUCCEEDED)
    # one entry per job, holding its latest state
    assert [(e.job_id, e.state) for e in registry.load("t1").jobs] == [
        ("local:5", JobState.SUCCEEDED)
    ]


def test_succeeded_commands_lists_commands_whose_latest_job_succeeded(registry):
    record = registry.new("t1", platform="local")
    registry.mark_job(record, 1, _ListedJob("a", {}), JobState.SUCCEEDED)
    registry.mark_job(record, 2, _ListedJob("b", {}), JobState.SUCCEEDED)
    registry.mark_job(record, 2, _ListedJob("c", {}), JobState.FAILED)  # re-run of cmd2 failed
    registry.mark_job(record, 3, _ListedJob("d", {}), JobState.FAILED)
    # resume=1 skips cmd1 only: cmd2's latest attempt failed
    assert registry.succeeded_commands("t1") == {1}
    assert registry.succeeded_commands("unknown") == set()


def test_finished_stages_are_kept_for_resume(registry):
    record = registry.new("t1", platform="local")
    registry.mark_stage_finished(record, "20220530")
    registry.mark_stage_finished(record, "20220530")
    registry.mark_stage_finished(record, "20220531")
    assert registry.load("t1").finished_stages == ["20220530", "20220531"]


def test_records_never_hold_credentials(registry):
    secret_id, secret_key = "LTAI5tSecretId", "SuperSecretKey123"
    record = registry.new(
        "t1", platform="maxcompute",
        settings={"project": "p", "access_id": secret_id, "access_key": secret_key,
                  "credential_env": ["ODPS_ACCESS_ID", "ODPS_ACCESS_KEY"]},
    )
    job = _ListedJob("i1", {"platform": "maxcompute", "job_id": "i1",
                            "settings": {"accessKeySecret": secret_key, "project": "p"},
                            "nested": [{"secret_access_key": secret_key},
                                       {"api_key": secret_key}]})
    registry.mark_job(record, 1, job, JobState.RUNNING)
    text = registry.path("t1").read_text()
    # neither a platform's settings nor a job description may carry a credential to disk
    assert secret_id not in text and secret_key not in text
    # the names of the env vars holding them are not secret and are needed to cancel later
    assert registry.load("t1").settings["credential_env"] == ["ODPS_ACCESS_ID", "ODPS_ACCESS_KEY"]


def test_cancel_live_cancels_a_running_local_job_and_marks_it(registry, tmp_path, local_jobs):
    platform = LocalPlatform(grace_period=0.5)
    pids_file = tmp_path / "pids"
    job = platform.submit(f"sleep 60 & echo $! > {pids_file}; wait",
                          log_path=tmp_path / "trial.log")
    local_jobs.append(job)
    record = registry.new("t1", platform=platform)
    registry.mark_job(record, 1, job, JobState.RUNNING)
    deadline = time.monotonic() + 5
    while not pids_file.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    child = int(pids_file.read_text())

    # a fresh registry object, as in the assessor's process
    cancelled = JobRegistry(registry.experiment_dir).cancel_live("t1", timeout=10)
    assert cancelled == [job.job_id]
    # the job's processes are gone and the record says so
    assert not _running(child)
    saved = registry.load("t1")
    assert saved.jobs[0].state is JobState.CANCELLED
    assert saved.state is JobState.CANCELLED


def test_cancel_live_skips_finished_jobs(registry):
    record = registry.new("t1", platform="local")
    registry.mark_job(record, 1, _ListedJob("a", {"platform": "local", "pid": 1}),
                      JobState.SUCCEEDED)
    # nothing live: nothing to do, and the success is not rewritten
    assert registry.cancel_live("t1") == []
    assert registry.load("t1").jobs[0].state is JobState.SUCCEEDED


def test_cancel_live_of_a_job_that_is_gone_marks_it_without_listing_it(registry, tmp_path):
    platform = LocalPlatform()
    job = platform.submit("true", log_path=tmp_path / "trial.log")
    job.wait(timeout=10)
    record = registry.new("t1", platform=platform)
    registry.mark_job(record, 1, job, JobState.RUNNING)  # the runner died before marking it
    # nothing was stopped, but the record no longer claims a live job
    assert registry.cancel_live("t1") == []
    assert registry.load("t1").jobs[0].state is JobState.CANCELLED


def test_cancel_live_never_raises_for_one_bad_job(registry, tmp_path, local_jobs):
    platform = LocalPlatform(grace_period=0.5)
    good = platform.submit("sleep 60", log_path=tmp_path / "trial.log")
    local_jobs.append(good)
    record = registry.new("t1", platform=platform)
    registry.mark_job(record, 1, _ListedJob("bad1", {"platform": "no-such-platform"}))
    registry.mark_job(record, 2, _ListedJob("bad2", {"platform": "local", "pid": "x"}))
    registry.mark_job(record, 3, good, JobState.RUNNING)

    # the dispatcher dies if trial_end raises: bad entries are logged, the good one cancelled
    assert registry.cancel_live("t1") == [good.job_id]
    entries = {e.job_id: e for e in registry.load("t1").jobs}
    assert entries[good.job_id].state is JobState.CANCELLED
    assert entries["bad1"].state is JobState.RUNNING
    assert entries["bad1"].message.startswith("cancel failed: unknown platform")


class _HangingPlatform(Platform):
    name = "hanging"
    release = threading.Event()

    def submit(self, command, **kwargs):  # pragma: no cover - never used
        raise NotImplementedError

    def cancel_described(self, description):
        self.release.wait(30)
        return True


def test_cancel_live_returns_within_its_timeout_when_a_cancel_hangs(registry, monkeypatch):
    monkeypatch.setitem(platforms_base._PLATFORMS, "hanging", _HangingPlatform)
    record = registry.new("t1", platform="hanging")
    registry.mark_job(record, 1, _ListedJob("h1", {"platform": "hanging"}))
    started = time.monotonic()
    try:
        result = registry.cancel_live("t1", timeout=0.5)
    finally:
        _HangingPlatform.release.set()
    # bounded in time, whatever the platform does; the job is not claimed cancelled
    assert time.monotonic() - started < 1.5
    assert result == []
    assert registry.load("t1").jobs[0].state is JobState.RUNNING


def test_cancellation_is_sticky_against_a_runner_saving_a_stale_record(registry):
    runner_record = registry.new("t1", platform="local")
    job = _ListedJob("j1", {"platform": "local", "pid": 2 ** 22 + 1})  # no such process
    registry.mark_job(runner_record, 1, job, JobState.RUNNING)
    registry.cancel_live("t1")  # another process (the assessor) cancels
    # the runner then sees its job killed (non-zero exit) and saves its stale record
    registry.mark_job(runner_record, 1, job, JobState.FAILED)
    registry.mark_trial(runner_record, JobState.FAILED)
    saved = registry.load("t1")
    assert saved.jobs[0].state is JobState.CANCELLED
    assert saved.state is JobState.CANCELLED
    assert runner_record.jobs[0].state is JobState.CANCELLED


def test_a_resumed_trial_runs_and_fails_again_after_a_cancelled_attempt(registry):
    record = registry.new("t1", platform="local")
    registry.mark_job(record, 1, _ListedJob("j1", {"platform": "local", "pid": 2 ** 22 + 1}))
    registry.cancel_live("t1")
    resumed = registry.load("t1")  # resume=1: a new runner loads the record
    registry.mark_job(resumed, 1, _ListedJob("j2", {"platform": "local"}), JobState.RUNNING)
    # a new attempt is running, not "cancelled" by the old attempt's fate
    assert registry.load("t1").state is JobState.RUNNING
    registry.mark_job(resumed, 1, _ListedJob("j2", {"platform": "local"}), JobState.FAILED)
    registry.mark_trial(resumed, JobState.FAILED)
    assert registry.load("t1").state is JobState.FAILED


def test_cancel_all_live_sweeps_every_trial(registry, tmp_path, local_jobs):
    platform = LocalPlatform(grace_period=0.5)
    for trial_id in ("t1", "t2"):
        job = platform.submit("sleep 60", log_path=tmp_path / f"{trial_id}.log")
        local_jobs.append(job)
        registry.mark_job(registry.new(trial_id, platform=platform), 1, job, JobState.RUNNING)
    registry.save(registry.new("t3", platform="local"))  # a trial with no live job
    cancelled = registry.cancel_all_live(timeout=10)
    # `hpo-tools kill` reports what it cancelled, per trial
    assert cancelled == {"t1": [local_jobs[0].job_id], "t2": [local_jobs[1].job_id]}
    assert all(not _running(job.pid) for job in local_jobs)


class _UnreachablePlatform(Platform):
    """A platform whose cancel hangs, like pyodps retrying an unreachable MaxCompute."""

    name = "unreachable"
    release = threading.Event()

    def submit(self, command, **kwargs):  # pragma: no cover - never used
        raise NotImplementedError

    def cancel_described(self, description):
        self.release.wait(30)
        return True


def test_cancel_all_live_cancels_other_trials_while_one_platform_hangs(
    registry, tmp_path, local_jobs, monkeypatch
):
    monkeypatch.setitem(platforms_base._PLATFORMS, "unreachable", _UnreachablePlatform)
    monkeypatch.setattr(_UnreachablePlatform, "release", threading.Event())
    # "a_hang" sorts first: a sweep one trial after another spends the whole budget on it.
    hanging = registry.new("a_hang", platform="unreachable")
    registry.mark_job(hanging, 1, _ListedJob("h1", {"platform": "unreachable"}))
    platform = LocalPlatform(grace_period=0.5)
    job = platform.submit("sleep 60", log_path=tmp_path / "b.log")
    local_jobs.append(job)
    registry.mark_job(registry.new("b_local", platform=platform), 1, job, JobState.RUNNING)
    started = time.monotonic()
    try:
        cancelled = registry.cancel_all_live(timeout=2.0)
    finally:
        _UnreachablePlatform.release.set()
    # The local job is cancelled although the other trial's platform never answers...
    assert cancelled == {"b_local": [job.job_id]}
    assert not _running(job.pid)
    # ...within the one overall deadline, and the hanging job is not claimed cancelled.
    assert time.monotonic() - started < 3.0
    assert registry.load("a_hang").jobs[0].state is JobState.RUNNING


SDK_KEY = "refusedKeyValue9876"


def _refusing_odps(**kwargs):
    """An ``odps_factory`` standing in for pyodps' ODPS client: the service refuses the key and
    quotes it back, as MaxCompute's InvalidAccessKeyId error does."""
    raise RuntimeError(f"InvalidAccessKeyId: the access key {kwargs['secret_access_key']} "
                       "is not valid\ndetail line")


def test_a_cancel_error_quoting_the_access_key_is_masked_in_the_log_and_the_record(
    tmp_path, monkeypatch, caplog
):
    # Env var names that do not look like credentials: known only from the job's credential_env.
    monkeypatch.setenv("HPO_TEST_ID", "someAccessId")
    monkeypatch.setenv("HPO_TEST_KEY", SDK_KEY)
    registry = JobRegistry(tmp_path / "exp",
                           platform_overrides={"maxcompute": {"odps_factory": _refusing_odps}})
    description = {"platform": "maxcompute", "project": "p", "instance_ids": ["20261122x"],
                   "settings": {"project": "p", "endpoint": "http://odps",
                                "credential_env": ["HPO_TEST_ID", "HPO_TEST_KEY"]}}
    registry.mark_job(registry.new("t1", platform="maxcompute"), 1,
                      _ListedJob("20261122x", description))
    caplog.set_level(logging.DEBUG, logger="hpo_tools.jobs")
    assert registry.cancel_live("t1", timeout=5) == []
    # The assessor's / kill's log has no masker of its own: the error is masked where logged...
    assert "InvalidAccessKeyId: the access key ***" in caplog.text
    assert SDK_KEY not in caplog.text
    # ...and in the record (a file we write).
    entry = registry.load("t1").jobs[0]
    assert entry.message == "cancel failed: InvalidAccessKeyId: the access key *** is not valid"
    assert SDK_KEY not in registry.path("t1").read_text()


def test_record_file_is_plain_json_with_a_version(registry):
    registry.save(registry.new("t1", experiment_id="e", platform="local"))
    data = json.loads(registry.path("t1").read_text())
    # other tools (and people) read these files
    assert data["version"] == 1 and data["trial_id"] == "t1" and data["state"] == "pending"
    assert TrialRecord.from_json(data).experiment_id == "e"


def test_a_link_leads_nni_side_sweeps_to_a_registry_elsewhere(tmp_path, local_jobs):
    """A runner given --exp_dir under NNI keeps its registry there and leaves a link in NNI's
    experiment directory, where the assessor's trial_end and `hpo-tools kill` look."""
    from hpo_tools.trial.paths import resolve_paths
    from hpo_tools.trial.registry import RegistryAdapter

    nni_exp = tmp_path / "nni" / "EXP1"
    trial_dir = nni_exp / "environments" / "local-env" / "trials" / "t1"
    trial_dir.mkdir(parents=True)
    paths = resolve_paths("EXP1", "t1", exp_dir=tmp_path / "mine",
                          environ={"NNI_OUTPUT_DIR": str(trial_dir)})
    assert paths.experiment_dir == tmp_path / "mine" / "EXP1"
    assert paths.nni_experiment_dir == nni_exp
    platform = LocalPlatform(grace_period=0.5)
    adapter = RegistryAdapter.open(paths, "EXP1", "t1", platform=platform)
    job = platform.submit("sleep 60", log_path=tmp_path / "trial.log")
    local_jobs.append(job)
    adapter.registry.mark_job(adapter.record, 1, job, JobState.RUNNING)

    seen_from_nni = JobRegistry(nni_exp)
    assert [r.trial_id for r in seen_from_nni.records()] == ["t1"]
    assert seen_from_nni.load("t1").jobs[0].job_id == job.job_id
    assert seen_from_nni.cancel_all_live(timeout=10) == {"t1": [job.job_id]}
    assert job.wait(timeout=5).is_finished  # stopped from "another process" (a fresh registry)
    # The cancel is recorded where the runner keeps its record.
    assert JobRegistry(paths.experiment_dir).load("t1").jobs[0].state is JobState.CANCELLED


def test_a_link_never_replaces_a_real_record(registry, tmp_path):
    record = registry.new("t1", platform="local")
    registry.save(record)
    registry.link("t1", tmp_path / "elsewhere")
    assert registry.load("t1") is not None
    assert json.loads(registry.path("t1").read_text())["trial_id"] == "t1"
    assert "registry_dir" not in json.loads(registry.path("t1").read_text())


# -- jobs recorded before their create answered (issue 14 items 1 and 2) ---------------------


def _ended_process() -> dict:
    """:func:`this_process` of a process that has ended since (a runner SIGKILLed, say)."""
    code = "import json; from hpo_tools.jobs import this_process; print(json.dumps(this_process()))"
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          check=True, cwd=Path(__file__).resolve().parents[1])
    return json.loads(done.stdout)


def _pending(name: str) -> _ListedJob:
    """A DLC job as its runner records it before CreateJob is sent (or while it hangs)."""
    return _ListedJob(f"dlc-pending:{name}", {
        "platform": "dlc", "job_id": f"dlc-pending:{name}", "cloud_id": None,
        "unique_name": name, "scope": "ws1", "submitted_at": time.time(),
        "settings": {"region": "cn-shanghai", "endpoint": "pai-dlc.cn-shanghai.aliyuncs.com",
                     "credential_env": ["ALIBABA_CLOUD_ACCESS_KEY_ID",
                                        "ALIBABA_CLOUD_ACCESS_KEY_SECRET"],
                     "poll_interval": 0.0}}, JobState.PENDING)


@pytest.fixture
def dlc(tmp_path, monkeypatch):
    """The fake DLC service, and a registry whose sweeps reach it (keys from the env)."""
    from hpo_tools.testing.dlc import FakeDlcClient

    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", "LTAI5tRegistryTestId")
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", "registryTestSecret42")
    fake = FakeDlcClient(tmp_path / "cloud", access_key_id="LTAI5tRegistryTestId",
                         access_key_secret="registryTestSecret42")
    registry = JobRegistry(tmp_path / "exp",
                           platform_overrides={"dlc": {"client_factory": fake.connect}})
    yield fake, registry
    fake.release()


def _create_named(fake, name: str) -> str:
    """What a create that never answered left on the service: a running job named ``name``."""
    from alibabacloud_pai_dlc20201203 import models

    fake.plan_next(steps=[{"status": "Running"}])
    request = models.CreateJobRequest(display_name=name, workspace_id="ws1", job_type="TFJob",
                                      user_command="python train.py")
    return str(fake.create_job(request).body.job_id)


def test_process_alive_tells_a_live_runner_from_an_ended_one():
    me = this_process()
    # the process recording a job: alive while it runs...
    assert process_alive(me) is True
    # ...dead once it ended, and a reused pid is not the runner (another start time)
    assert process_alive(_ended_process()) is False
    assert process_alive({**me, "start_time": me["start_time"] + 1}) is False
    # nothing recorded, or a runner on another machine: nobody here can tell
    assert process_alive({}) is None
    assert process_alive({**me, "host": "another-machine"}) is None


def test_a_job_recorded_pending_keeps_its_entry_when_its_create_answers(registry):
    record = registry.new("t1", platform="dlc")
    registry.mark_job(record, 1, _pending("n-hpo-1"))
    answered = _ListedJob("dlc-abc", {**_pending("n-hpo-1").describe(), "job_id": "dlc-abc",
                                      "cloud_id": "dlc-abc"})
    registry.mark_job(record, 1, answered, JobState.RUNNING)
    # one entry per submission: the pending one became the job under the service's id
    (entry,) = registry.load("t1").jobs
    assert (entry.job_id, entry.state) == ("dlc-abc", JobState.RUNNING)
    assert entry.description["cloud_id"] == "dlc-abc"
    # it names the process that recorded it (a sweep asks whether that runner still lives)
    assert entry.runner == this_process()


def test_a_sweep_finds_a_pending_job_by_its_name_stops_it_and_records_its_id(dlc):
    fake, registry = dlc
    registry.mark_job(registry.new("t1", platform="dlc"), 1, _pending("n-hpo-2"))
    job_id = _create_named(fake, "n-hpo-2")  # the create made it; its answer never came
    assert registry.cancel_live("t1", timeout=10) == ["dlc-pending:n-hpo-2"]
    assert fake.stop_calls(job_id) == 1
    (entry,) = registry.load("t1").jobs
    # recorded: ended, under the id the service gave it (a later sweep needs no search)
    assert entry.state is JobState.CANCELLED and entry.description["cloud_id"] == job_id


def test_a_pending_job_of_a_live_runner_stays_live_while_its_create_may_still_make_it(dlc):
    fake, registry = dlc
    registry.mark_job(registry.new("t1", platform="dlc"), 1, _pending("n-hpo-3"))
    # nothing named so yet, and the runner (this process) may still be waiting for its create
    assert registry.cancel_live("t1", timeout=10) == []
    (entry,) = registry.load("t1").jobs
    assert entry.state is JobState.PENDING
    assert "no DLC job named n-hpo-3 yet" in entry.message
    # so a job its create makes later is found by the next sweep
    job_id = _create_named(fake, "n-hpo-3")
    assert registry.cancel_all_live(timeout=10) == {"t1": ["dlc-pending:n-hpo-3"]}
    assert fake.stop_calls(job_id) == 1


def test_a_pending_job_of_an_ended_runner_is_closed_as_never_created_after_one_look(dlc):
    fake, registry = dlc
    record = registry.new("t1", platform="dlc")
    registry.mark_job(record, 1, _pending("n-hpo-4"))
    record.jobs[0].runner = _ended_process()  # recorded by a runner that has ended since
    registry.save(record)
    assert registry.cancel_all_live(timeout=10) == {}
    (entry,) = registry.load("t1").jobs
    # nothing can make the job any more: the first look that finds nothing closes it, so
    # `hpo-tools kill` has nothing live left (its exit 0), not "no job named X yet" for 600 s
    assert entry.state is JobState.CANCELLED and entry.description["created"] is False
    assert entry.message.startswith("never created: no job named n-hpo-4")
    assert registry.load("t1").state is JobState.CANCELLED
    assert not any(r.live_jobs() for r in registry.records())
    assert fake.stops == []


def test_a_sweeps_cancel_of_a_pending_job_sticks_when_its_runner_then_records_the_job(dlc):
    fake, registry = dlc
    runner_record = registry.new("t1", platform="dlc")
    registry.mark_job(runner_record, 1, _pending("n-hpo-5"))
    job_id = _create_named(fake, "n-hpo-5")
    registry.cancel_live("t1", timeout=10)  # another process: found by name, stopped
    # then the runner's create answers and it saves the job under the service's id
    answered = _ListedJob(job_id, {**_pending("n-hpo-5").describe(), "job_id": job_id,
                                   "cloud_id": job_id})
    registry.mark_job(runner_record, 1, answered, JobState.RUNNING)
    (entry,) = registry.load("t1").jobs
    assert entry.job_id == job_id and entry.state is JobState.CANCELLED
    assert runner_record.jobs[0].state is JobState.CANCELLED


def test_a_runner_that_records_its_job_overrides_a_sweeps_never_created(registry):
    runner_record = registry.new("t1", platform="dlc")
    registry.mark_job(runner_record, 1, _pending("n-hpo-6"))
    closed = registry.load("t1")  # a sweep that wrongly believed the runner gone
    closed.jobs[0].state = JobState.CANCELLED
    closed.jobs[0].description["created"] = False
    registry.save(closed)
    answered = _ListedJob("dlc-x6", {**_pending("n-hpo-6").describe(), "job_id": "dlc-x6",
                                     "cloud_id": "dlc-x6"})
    registry.mark_job(runner_record, 1, answered, JobState.RUNNING)
    # the runner knows the job exists: it stays live, so a sweep can still stop it
    (entry,) = registry.load("t1").jobs
    assert (entry.job_id, entry.state) == ("dlc-x6", JobState.RUNNING)
