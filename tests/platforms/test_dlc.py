"""The DLC platform against FakeDlcClient (the SDK Client's methods, the SDK's own models):
submit, follow, cancel, a hung or lost CreateJob, cancel from a registry record, [dlc_config]."""

from __future__ import annotations

import subprocess
import sys
import threading
import time

import pytest

from hpo_tools.errors import ConfigError, PlatformError
from hpo_tools.platforms import JobState, create_platform, platform_for_description
from hpo_tools.platforms.dlc import SEARCH_WINDOW, DlcPlatform, job_state
from hpo_tools.platforms.dlc_logs import PodLogTracker, parse_job_log_location, pod_matches
from hpo_tools.testing.dlc import FakeDlcClient

ACCESS_ID = "LTAI5tFakeDlcId42"
ACCESS_KEY = "fakeDlcSecret0123456789"
COMMAND = (
    "dlc submit tfjob --name=hpo_e1_t1 --command='python train.py --lr 0.1' --workspace_id=ws1 "
    "--workers=2 --worker_image=img:1 --worker_spec=ecs.g6.xlarge "
    "--ps=1 --ps_image=img:1 --ps_spec=ecs.g6.xlarge"
)
RUN = [{"status": "Queuing"}, {"status": "Running"}]  # runs until stopped


@pytest.fixture
def fake(tmp_path):
    fake = FakeDlcClient(tmp_path / "cloud", access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
    yield fake
    for event in fake._hangs.values():  # let every stuck call go at teardown
        event.set()


@pytest.fixture
def platform(fake):
    platform = DlcPlatform(region="cn-shanghai", access_id=ACCESS_ID, access_key=ACCESS_KEY,
                           poll_interval=0, client_factory=fake.connect)
    yield platform
    platform.close()  # no follower thread outlives its test


@pytest.fixture
def env_keys(monkeypatch):
    """The credentials in this process's environment, where a platform rebuilt from a registry
    record (the assessor, hpo-tools kill) takes them from."""
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY)


def _until(condition, timeout=10.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def _submit(platform, tmp_path, command=COMMAND, **kwargs):
    return platform.submit(command, log_path=tmp_path / "trial.log", **kwargs)


# -- submit and follow ------------------------------------------------------------------------


def test_submit_creates_one_job_named_uniquely_with_the_command_env(platform, fake, tmp_path):
    fake.plan_next(steps=RUN)
    first = _submit(platform, tmp_path, env={"HPO_TOOLS_COMMAND": "cmd1"})
    second = _submit(platform, tmp_path, env={"HPO_TOOLS_COMMAND": "cmd2"})
    requests = [s["request"] for s in fake.submissions]
    assert len(requests) == 2
    # --name plus a unique suffix: a job whose CreateJob answer is lost can be found by name
    names = [r["DisplayName"] for r in requests]
    assert all(n.startswith("hpo_e1_t1-hpo-") for n in names) and names[0] != names[1]
    assert requests[0]["Envs"] == {"HPO_TOOLS_COMMAND": "cmd1"}
    assert [(s["Type"], s["PodCount"]) for s in requests[0]["JobSpecs"]] == [
        ("Worker", 2), ("PS", 1)]
    # the job's id is DLC's once CreateJob answered
    assert first.job_id == fake.job_ids()[0] == first.cloud_id
    assert second.job_id == fake.job_ids()[1]


def test_job_goes_pending_running_succeeded_and_relays_every_pods_log(platform, fake, tmp_path):
    fake.plan_next(steps=[
        {"status": "Queuing"},
        {"status": "Running", "logs": {"worker": ["step 1 auc=0.61"], "ps-0": ["ps up"]}},
        {"status": "Running", "logs": {"worker-1": ["only worker 1"]}},
        {"status": "Succeeded", "logs": {"worker": ["done"]}},
    ])
    states = []
    job = _submit(platform, tmp_path, on_update=lambda j: states.append(j.poll()))
    assert job.wait(10) is JobState.SUCCEEDED
    assert job.message == ""
    assert states[0] is JobState.PENDING and JobState.RUNNING in states
    log = (tmp_path / "trial.log").read_text()
    dlc_id = job.cloud_id
    # each pod's lines under a header naming the pod; the last lines before the end is told
    assert f"[dlc] --- pod {dlc_id}-worker-0 (Worker) ---\nstep 1 auc=0.61\n" in log
    assert f"[dlc] --- pod {dlc_id}-ps-0 (PS) ---\nps up\n" in log
    assert f"[dlc] --- pod {dlc_id}-worker-1 (Worker) ---\nonly worker 1\n" in log
    assert log.index("done") < log.index(f"[dlc] job {dlc_id} succeeded")
    assert log.count("step 1 auc=0.61") == 2  # once per worker pod, never repeated


def test_failed_job_says_dlcs_reason(platform, fake, tmp_path):
    fake.plan_next(steps=[{"status": "Running"}, {"status": "Failed"}], reason="OOMKilled")
    job = _submit(platform, tmp_path)
    assert job.wait(10) is JobState.FAILED
    assert job.message == f"DLC job {job.cloud_id} Failed: JobFailed OOMKilled"


def test_a_job_stopped_by_someone_else_is_cancelled(platform, fake, tmp_path):
    fake.plan_next(steps=RUN)
    job = _submit(platform, tmp_path)
    _until(lambda: job.poll() is JobState.RUNNING)
    fake.stop_job(job.cloud_id)  # from the console, say
    assert job.wait(10) is JobState.CANCELLED
    assert "stopped (not by hpo-tools)" in job.message


def test_status_calls_that_hang_never_block_poll_wait_or_cancel(platform, fake, tmp_path):
    fake.plan_next(steps=RUN)
    hang = fake.hang("get_job")
    job = _submit(platform, tmp_path)
    _until(lambda: fake.hung_calls == 1)  # the follower thread is stuck in GetJob
    assert job.poll() is JobState.PENDING
    assert job.wait(timeout=0.05) is JobState.PENDING  # returns: it reads a published state
    job.cancel()
    assert job.poll() is JobState.CANCELLED
    assert fake.stop_calls(job.cloud_id) == 1
    hang.set()


def test_cancel_returns_when_stop_job_hangs_and_is_idempotent(platform, fake, tmp_path):
    fake.plan_next(steps=RUN)
    job = _submit(platform, tmp_path)
    _until(lambda: job.poll() is JobState.RUNNING)
    hang = fake.hang("stop_job")
    job.cancel()  # bounded: returns although StopJob never answers
    assert job.poll() is JobState.CANCELLED and job.message == "cancelled"
    hang.set()
    _until(lambda: fake.stop_calls(job.cloud_id) == 1)
    job.cancel()
    time.sleep(0.05)
    assert fake.stop_calls(job.cloud_id) == 1  # a second cancel does nothing


# -- CreateJob refused, lost, hung -------------------------------------------------------------


def test_refused_create_job_is_a_platform_error_and_nothing_is_stopped(platform, fake, tmp_path):
    fake.plan_next(create="refuse")
    with pytest.raises(PlatformError, match=r"platform DLC: creating hpo_e1_t1-hpo-\w+ "
                       r"\(workspace ws1\) was refused: InvalidParameter: code: 400, fake"):
        _submit(platform, tmp_path)
    assert fake.job_ids() == [] and fake.stops == []


def test_create_job_without_an_answer_is_abandoned_and_the_job_found_and_stopped(
    platform, fake, tmp_path
):
    fake.plan_next(create="lost", steps=RUN)  # DLC creates the job, the answer never comes
    with pytest.raises(PlatformError) as caught:
        _submit(platform, tmp_path)
    (job_id,) = fake.job_ids()
    assert "failed without an answer" in str(caught.value)
    assert f"DLC had created it anyway as {job_id}, stopped" in str(caught.value)
    assert fake.stop_calls(job_id) == 1


def test_create_job_failing_with_no_job_says_none_was_found(platform, fake, tmp_path):
    fake.plan_next(create="error")  # a 503: nothing created
    with pytest.raises(PlatformError, match="no job of that name was found"):
        _submit(platform, tmp_path)


def test_interrupt_during_a_hung_create_hands_back_a_pending_job_cancel_finds_and_stops_it(
    platform, fake, tmp_path
):
    fake.plan_next(create="hang", steps=RUN)  # created, then the call hangs
    fake.hang("create_job")
    threading.Thread(target=lambda: (_until(lambda: fake.hung_calls == 1),
                                     platform.interrupt()), daemon=True).start()
    job = _submit(platform, tmp_path)  # returns once interrupted, CreateJob still hanging
    assert job.job_id.startswith("dlc-pending:hpo_e1_t1-hpo-")
    assert job.poll() is JobState.PENDING and job.cloud_id is None
    job.cancel()
    (dlc_id,) = fake.job_ids()
    assert job.poll() is JobState.CANCELLED and job.cloud_id == dlc_id
    assert fake.stop_calls(dlc_id) == 1
    assert job.describe()["cloud_id"] == dlc_id  # the registry learns the real id


def test_a_job_created_after_the_cancel_is_stopped_and_the_registry_keeps_looking(
    platform, fake, tmp_path, env_keys
):
    fake.plan_next(create="hang_before", steps=RUN)  # the call hangs before DLC creates it
    release = fake.hang("create_job")
    threading.Thread(target=lambda: (_until(lambda: fake.hung_calls == 1),
                                     platform.interrupt()), daemon=True).start()
    updates = []
    job = _submit(platform, tmp_path, on_update=lambda j: updates.append(j.poll()))
    job.cancel()
    # Nothing to find yet: the job stays pending, so a registry sweep looks again.
    assert job.poll() is JobState.PENDING
    assert "no job named" in job.message and "looked for again" in job.message
    description = job.describe()
    other = platform_for_description(description, client_factory=fake.connect)
    with pytest.raises(PlatformError, match="no DLC job named .* yet"):
        other.cancel_described(description)
    release.set()  # now DLC creates it: the creation thread stops it at once
    assert job.wait(10) is JobState.CANCELLED
    (dlc_id,) = fake.job_ids()
    assert fake.stop_calls(dlc_id) == 1 and job.cloud_id == dlc_id
    assert updates[-1] is JobState.CANCELLED  # the registry is told
    # A sweep from the old record now finds the job by name, already stopped.
    assert other.cancel_described(description) is False


def test_a_submit_after_the_signal_creates_nothing(platform, fake, tmp_path):
    platform.interrupt()  # SIGINT came while the runner was between two commands
    job = _submit(platform, tmp_path)
    assert job.poll() is JobState.CANCELLED and "not created" in job.message
    assert fake.submissions == []
    assert platform.cancel_described(job.describe()) is False  # a sweep has nothing to find
    assert fake.stops == []


def test_cancel_described_finds_a_live_job_by_name_and_gives_up_after_the_window(
    platform, fake, tmp_path
):
    fake.plan_next(steps=RUN)
    job = _submit(platform, tmp_path)
    pending = {**job.describe(), "job_id": f"dlc-pending:{job.unique_name}",
               "cloud_id": None}
    assert pending["unique_name"] == job.unique_name and pending["scope"] == "ws1"
    assert platform.cancel_described(pending) is True  # found by name, live: stopped
    assert fake.stop_calls(job.cloud_id) == 1
    nothing = {**pending, "unique_name": "never-created-hpo-00000000",
               "job_id": "dlc-pending:never-created-hpo-00000000",
               "submitted_at": time.time() - SEARCH_WINDOW - 1}
    assert platform.cancel_described(nothing) is False  # long enough: nothing was created


def test_cancel_described_accepts_records_written_before_the_shared_cloud_job_code(
    platform, fake, tmp_path
):
    # Registry records of hpo-tools before DLC moved onto cloud_job.py named the job
    # display_name / workspace_id (no unique_name, no scope): they must still cancel.
    fake.plan_next(steps=RUN)
    job = _submit(platform, tmp_path)
    old = {"platform": "dlc", "settings": platform.settings(),
           "job_id": f"dlc-pending:{job.unique_name}", "cloud_id": None,
           "display_name": job.unique_name, "workspace_id": "ws1", "command": "",
           "submitted_at": time.time(), "created": None}
    assert platform.cancel_described(old) is True  # found by its display name: stopped
    assert fake.stop_calls(job.cloud_id) == 1
    gone = {**old, "display_name": "never-created-hpo-00000000",
            "job_id": "dlc-pending:never-created-hpo-00000000"}
    with pytest.raises(PlatformError, match="no DLC job named never-created-hpo-00000000"):
        platform.cancel_described(gone)  # looked for by the old key's name, not found yet


def test_cancel_described_stops_a_running_job_from_another_platform_object(
    platform, fake, tmp_path, env_keys
):
    fake.plan_next(steps=RUN)
    job = _submit(platform, tmp_path)
    _until(lambda: job.poll() is JobState.RUNNING)
    description = job.describe()
    assert ACCESS_KEY not in str(description) and ACCESS_ID not in str(description)
    other = platform_for_description(description, client_factory=fake.connect)
    assert other.cancel_described(description) is True
    assert fake.stop_calls(job.cloud_id) == 1
    assert job.wait(10) is JobState.CANCELLED
    assert other.cancel_described(description) is False  # ended: nothing to stop


# -- settings, credentials, [dlc_config] ------------------------------------------------------


def test_settings_hold_env_var_names_never_the_keys(monkeypatch):
    monkeypatch.setenv("MY_DLC_ID", ACCESS_ID)
    monkeypatch.setenv("MY_DLC_KEY", ACCESS_KEY)
    platform = create_platform("DLC", region="cn-beijing", access_id=ACCESS_ID,
                               access_key=ACCESS_KEY)
    settings = platform.settings()
    assert settings["endpoint"] == "pai-dlc.cn-beijing.aliyuncs.com"  # from the region
    assert settings["credential_env"] == ["MY_DLC_ID", "MY_DLC_KEY"]
    assert ACCESS_KEY not in repr(platform) and ACCESS_KEY not in str(settings)


def test_no_credentials_is_a_platform_error_naming_the_variables(monkeypatch, tmp_path):
    for name in ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET",
                 "DLC_ACCESS_ID", "DLC_ACCESS_KEY"):
        monkeypatch.delenv(name, raising=False)
    platform = DlcPlatform(region="cn-shanghai")
    with pytest.raises(PlatformError, match="ALIBABA_CLOUD_ACCESS_KEY_ID and "
                                            "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        _submit(platform, tmp_path)


class _Section:
    def __init__(self, name, values):
        self.name, self.values = name, values

    def get(self, key, default=None):
        return self.values.get(key, default)

    def check_keys(self, allowed, patterns=()):
        for key in self.values:
            if key not in allowed:
                raise ConfigError(f"[{self.name}] unknown key {key}")

    def error(self, key, message):
        return ConfigError(f"t.ini: [{self.name}] {key}: {message}")


class _File:
    source = "t.ini"

    def __init__(self, **sections):
        self.sections = {n: _Section(n, v) for n, v in sections.items()}

    def section(self, name):
        return self.sections.get(name)


def test_dlc_config_region_end_point_protocol_and_oss_credentials():
    options = DlcPlatform.options_from_trial_file(_File(
        dlc_config={"end_point": "pai-dlc-share.aliyuncs.com", "protocol": "HTTP"},
        oss_config={"accessKeyID": ACCESS_ID, "accessKeySecret": ACCESS_KEY}))
    assert options == {"region": "", "endpoint": "pai-dlc-share.aliyuncs.com",
                       "protocol": "http", "access_id": ACCESS_ID, "access_key": ACCESS_KEY}
    platform = DlcPlatform(**options)
    assert platform.settings()["endpoint"] == "pai-dlc-share.aliyuncs.com"


@pytest.mark.parametrize("sections, fragment", [
    ({}, "[dlc_config] is required for the DLC platform"),
    ({"dlc_config": {"access_id": "x"}}, "[dlc_config] region: is required"),
    ({"dlc_config": {"region": "cn-shanghai", "protocol": "ftp"}},
     "[dlc_config] protocol: expected http or https"),
    ({"dlc_config": {"region": "cn-shanghai", "poll_interval": "soon"}},
     "[dlc_config] poll_interval: expected seconds"),
    ({"dlc_config": {"region": "cn-shanghai", "regoin": "x"}}, "unknown key regoin"),
])
def test_bad_dlc_config_names_section_and_key(sections, fragment):
    with pytest.raises(ConfigError) as caught:
        DlcPlatform.options_from_trial_file(_File(**sections))
    assert fragment in str(caught.value)


def test_a_malformed_command_is_refused_when_the_file_is_read():
    with pytest.raises(ConfigError, match="unknown flag --worker_imag"):
        DlcPlatform.shape_command(COMMAND.replace("--worker_image", "--worker_imag"))


def test_dlc_states_map_to_ours():
    assert [job_state(s) for s in ("Creating", "Queuing", "EnvPreparing", "Running",
                                   "Stopping", "Succeeded", "SucceededReserving", "Failed",
                                   "Stopped", "SomethingNew")] == [
        JobState.PENDING, JobState.PENDING, JobState.PENDING, JobState.RUNNING,
        JobState.RUNNING, JobState.SUCCEEDED, JobState.SUCCEEDED, JobState.FAILED,
        JobState.CANCELLED, JobState.RUNNING]


def test_importing_and_building_the_platform_loads_no_sdk():
    code = ("import sys; from hpo_tools.platforms import create_platform; "
            "p = create_platform('DLC', region='cn-shanghai'); "
            "p.metric_source('stdout', 'cmd1,worker', __import__('hpo_tools.metrics', "
            "fromlist=['MetricSpec']).MetricSpec.from_config({'a=(.*)': 1})); "
            "print(any(m.startswith('alibabacloud') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # a trial on another platform pays nothing for DLC


# -- pod logs --------------------------------------------------------------------------------


def test_pod_log_tracker_finds_new_lines_from_the_head_or_in_a_moving_tail():
    tracker = PodLogTracker()
    assert tracker.new_lines("p", ["a", "b"]) == (["a", "b"], False)
    assert tracker.new_lines("p", ["a", "b", "c"]) == (["c"], False)  # whole log again
    assert tracker.new_lines("p", ["a", "b", "c"]) == ([], False)
    tail = [f"l{i}" for i in range(100)]
    tracker.new_lines("q", tail[:50])
    assert tracker.new_lines("q", tail[10:60]) == (tail[50:60], False)  # last 50 lines only
    # the log grew past the fetch limit between two fetches: all of it, marked as a gap
    assert tracker.new_lines("q", [f"m{i}" for i in range(50)]) == (
        [f"m{i}" for i in range(50)], True)


@pytest.mark.parametrize("location, expected", [
    ("cmd1", (1, "")), ("cmd", (1, "")), ("cmd2,worker", (2, "worker")),
    ("cmd1, Evaluator", (1, "evaluator")), ("/logs/train.log", None), ("cmdx", None),
])
def test_job_log_locations(location, expected):
    assert parse_job_log_location(location) == expected


def test_pod_filter_matches_type_or_id_part():
    assert pod_matches("worker", "Worker", "dlc1-worker-0")
    assert pod_matches("worker", "", "dlc1-worker-3")
    assert not pod_matches("worker", "PS", "dlc1-ps-0")
    assert pod_matches("", "PS", "dlc1-ps-0")
