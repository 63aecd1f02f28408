"""The job registry: atomic per-trial records, resume info, cancelling live jobs."""

from __future__ import annotations

import json
import logging
import os
import threading
import time
from pathlib import Path

import pytest

from hpo_tools.errors import StorageError
from hpo_tools.jobs import JobRegistry, TrialRecord
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
