"""A MaxCompute submit never holds up SIGINT: the client's construction and ``run_xflow`` /
``run_sql`` run in a thread the runner's signal abandons (FakeODPS at the SDK boundary, real
signals to this process as in tests/platforms/contract.py)."""

from __future__ import annotations

import io
import signal
import threading
import time

import pytest

from hpo_tools.errors import PlatformError
from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState
from hpo_tools.platforms.maxcompute import PENDING_PREFIX, TAG_HINT, MaxComputePlatform
from hpo_tools.testing.odps import FakeODPS
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import run_plan
from hpo_tools.trial_files import prepare_trial
from tests.platforms.contract import signal_when

TRIAL = (
    "[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext -Dcmd=train\n"
    "cmd2=SELECT 1\n"
    '[metric_config]\nmetric_source=/nowhere\nmetric_dict={"auc": 1}\n'
    "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
)


@pytest.fixture
def fake(monkeypatch):
    monkeypatch.setenv("ODPS_ACCESS_ID", "fakeAccessId01")
    monkeypatch.setenv("ODPS_ACCESS_KEY", "fakeAccessKey01")
    fake = FakeODPS(polls=10**6)
    yield fake
    for release in (fake.hang_create, fake.hang_connect):
        if release is not None:
            release.set()  # no thread stays stuck after its test


def _until(condition, timeout=5.0):
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


def _run_trial(tmp_path, fake):
    """Run TRIAL (experiment E, trial T) on a MaxCompute platform over ``fake``:
    (outcome, the platform)."""
    trial = tmp_path / "trial.ini"
    trial.write_text(TRIAL)
    reporter = ConsoleReporter({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    platform = MaxComputePlatform(**plan.platform.options, odps_factory=fake.connect,
                                  poll_interval=0.02)
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.02,
                       stderr=io.StringIO())
    return outcome, platform


def _run_with_sigint_when(tmp_path, fake, condition):
    """Run the trial, SIGINT once ``condition()`` holds: (outcome, seconds from the signal to
    run_plan's return, the platform)."""
    sent, sender = signal_when(condition)
    outcome, platform = _run_trial(tmp_path, fake)
    ended = time.monotonic()
    sender.join(5)
    assert "at" in sent, "the submit never hung: the test proved nothing"
    return outcome, ended - sent["at"], platform


def _entry(tmp_path):
    (entry,) = JobRegistry(tmp_path / "exp" / "E").load("T").jobs
    return entry


def test_sigint_during_a_submit_whose_answer_is_lost_finds_the_instance_by_its_tag(
    tmp_path, fake
):
    fake.hang_create = threading.Event()  # the instance exists; the answer never comes
    outcome, took, _ = _run_with_sigint_when(tmp_path, fake, lambda: fake.hung_calls == 1)
    assert took < 3.0  # NNI SIGKILLs the runner 5 s after its SIGINT
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    (instance,) = fake.instances.values()
    assert instance.stop_calls == 1  # found among the user's instances by its tag, stopped
    entry = _entry(tmp_path)
    assert entry.state is JobState.CANCELLED
    assert entry.job_id == PENDING_PREFIX + entry.description["unique_name"]
    assert entry.description["instance_ids"] == [instance.id]
    assert instance.hints == {TAG_HINT: entry.description["unique_name"]}


def test_sigint_during_a_hung_submit_stops_the_instance_as_soon_as_it_exists(tmp_path, fake):
    fake.hang_create = threading.Event()
    fake.hang_create_after = False  # the call hangs, then creates the instance when released
    outcome, took, platform = _run_with_sigint_when(tmp_path, fake,
                                                    lambda: fake.hung_calls == 1)
    assert took < 3.0
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    assert fake.instances == {}  # nothing to stop yet
    entry = _entry(tmp_path)
    # not found yet: the registry keeps it live, so the next sweep looks again
    assert not entry.state.is_finished and entry.job_id.startswith(PENDING_PREFIX)
    with pytest.raises(PlatformError, match="looked for again by the next cancel"):
        platform.cancel_described(entry.description)
    fake.hang_create.set()  # the submit answers, late
    _until(lambda: len(fake.instances) == 1)
    (instance,) = fake.instances.values()
    _until(lambda: instance.stop_calls == 1)  # stopped as soon as it existed
    # then recorded (the submit's thread stops the instance first, then tells the job)
    _until(lambda: _entry(tmp_path).state is JobState.CANCELLED)
    assert _entry(tmp_path).description["instance_ids"] == [instance.id]
    assert platform.cancel_described(entry.description) is False  # nothing live any more


def test_sigint_during_a_hung_client_construction_sends_nothing(tmp_path, fake):
    fake.hang_connect = threading.Event()  # ODPS(...) asks the endpoint: ~6 s offline
    outcome, took, _ = _run_with_sigint_when(tmp_path, fake, lambda: fake.hung_calls == 1)
    assert took < 3.0
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    entry = _entry(tmp_path)
    # a sweep has nothing to look for: the submit is certain to send nothing
    assert entry.state is JobState.CANCELLED and entry.description["created"] is False
    fake.hang_connect.set()
    _until(lambda: fake.connections == 1)
    time.sleep(0.2)  # give a wrongly sent submit the time to show up
    assert fake.submitted == []  # built after the signal: nothing submitted


def test_a_submit_after_the_signal_creates_nothing(tmp_path, fake):
    platform = MaxComputePlatform(project="p", endpoint="http://odps", odps_factory=fake.connect)
    platform.interrupt()
    job = platform.submit("PAI -name easy_rec_ext -Dcmd=train", log_path=tmp_path / "job.log")
    assert job.poll() is JobState.CANCELLED and "not created" in job.message
    assert fake.submitted == [] and fake.connections == 0  # not even a client built
    assert platform.cancel_described(job.describe()) is False


def test_a_pending_sql_record_is_found_by_its_tag_from_another_process(tmp_path, fake):
    fake.hang_create = threading.Event()
    platform = MaxComputePlatform(project="p", endpoint="http://odps", odps_factory=fake.connect)
    threading.Thread(target=lambda: (_until(lambda: fake.hung_calls == 1),
                                     platform.interrupt()), daemon=True).start()
    job = platform.submit("SELECT 1", log_path=tmp_path / "job.log")
    assert job.job_id.startswith(PENDING_PREFIX) and job.poll() is JobState.PENDING
    description = job.describe()
    # the assessor / hpo-tools kill: another platform object, the same service
    other = MaxComputePlatform(project="p", endpoint="http://odps", odps_factory=fake.connect)
    (instance,) = fake.instances.values()
    assert instance.unique_identifier_id == description["unique_name"]
    assert other.cancel_described(description) is True
    assert instance.stop_calls == 1
    assert other.cancel_described(description) is False  # found, no longer live
    platform.close()


def test_the_fake_clouds_instances_are_found_by_their_tag_too(tmp_path):
    """hpo-tools kill / the assessor, in another process, over the fake cloud's directory."""
    from hpo_tools.testing.odps_dir import FakeDirectoryODPS

    def factory(**kwargs):
        return FakeDirectoryODPS(tmp_path, **kwargs)

    keys = {"access_id": "fakeAccessId01", "access_key": "fakeAccessKey01"}
    runner_side = factory(access_id="fakeAccessId01", secret_access_key="fakeAccessKey01")
    other_tag = runner_side.run_xflow("easy_rec_ext", "algo_public", {"cmd": "train"},
                                      hints={TAG_HINT: "someone-else"})
    ours = runner_side.run_xflow("easy_rec_ext", "algo_public", {"cmd": "train"},
                                 hints={TAG_HINT: "t-1"})
    sql = runner_side.run_sql("SELECT 1", unique_identifier_id="t-2")
    sweeper = MaxComputePlatform(project="p", endpoint="http://odps", odps_factory=factory, **keys)
    pending = {"job_id": PENDING_PREFIX + "t-1", "unique_name": "t-1", "kind": "xflow",
               "instance_ids": [], "submitted_at": time.time()}
    assert sweeper.cancel_described(pending) is True
    assert ours.state() == "cancelled" and other_tag.state() == "running"
    assert sql.state() == "running"  # another tag's instance is left alone
    assert sweeper.cancel_described({**pending, "unique_name": "t-2", "kind": "sql",
                                     "job_id": PENDING_PREFIX + "t-2"}) is True
    assert sql.state() == "cancelled"


def test_a_submission_is_recorded_with_its_tag_before_it_is_sent(tmp_path, fake):
    platform = MaxComputePlatform(project="p", endpoint="http://odps", odps_factory=fake.connect,
                                  poll_interval=0.02)
    seen = []
    job = platform.submit("PAI -name easy_rec_ext -Dcmd=train", log_path=tmp_path / "job.log",
                          on_update=lambda j: seen.append((len(fake.submitted), j.describe())))
    sent, first = seen[0]
    # Recorded before anything reached MaxCompute: a runner killed during the submit leaves
    # a record a sweep looks up by the tag the instance carries.
    assert sent == 0 and first["instance_ids"] == []
    assert first["job_id"] == PENDING_PREFIX + first["unique_name"]
    (instance,) = fake.instances.values()
    assert instance.hints == {TAG_HINT: first["unique_name"]}
    # Once the submit answered, the same job under the instance's id.
    assert job.job_id == instance.id == seen[1][1]["job_id"]
    job.cancel()
    platform.close()


def test_a_submit_whose_answer_is_lost_fails_the_trial_and_records_the_instance(tmp_path, fake):
    fake.lose_answer = ConnectionError("connection reset by peer")  # the instance exists
    outcome, platform = _run_trial(tmp_path, fake)
    (instance,) = fake.instances.values()
    # Something was launched (then stopped): a failed trial (exit 1), not a bad trial file.
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert f"MaxCompute had created it anyway as {instance.id}" in outcome.message
    assert instance.stop_calls == 1
    # Recorded, ended, with the instance found by its tag: nothing is left for a sweep.
    entry = _entry(tmp_path)
    assert entry.state is JobState.CANCELLED and entry.description["instance_ids"] == [instance.id]


def test_a_sweep_finds_a_pending_submission_by_its_tag_and_records_the_instance(tmp_path, fake):
    fake.hang_create = threading.Event()  # the instance exists; the answer never comes
    platform = MaxComputePlatform(project="p", endpoint="http://odps", odps_factory=fake.connect,
                                  poll_interval=0.02)
    threading.Thread(target=lambda: (_until(lambda: fake.hung_calls == 1),
                                     platform.interrupt()), daemon=True).start()
    job = platform.submit("PAI -name easy_rec_ext -Dcmd=train", log_path=tmp_path / "job.log")
    registry = JobRegistry(tmp_path / "exp",
                           platform_overrides={"maxcompute": {"odps_factory": fake.connect}})
    registry.mark_job(registry.new("T", platform=platform), 1, job)
    # the runner is gone without a cancel (SIGKILL): the assessor / hpo-tools kill sweeps
    assert registry.cancel_live("T", timeout=10) == [job.job_id]
    (instance,) = fake.instances.values()
    assert instance.stop_calls == 1
    (entry,) = registry.load("T").jobs
    assert entry.state is JobState.CANCELLED and entry.description["instance_ids"] == [instance.id]
    platform.close()
