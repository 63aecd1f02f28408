"""The runner's contract, the same for every cloud-job platform: a trial follows its job and
scores it, a failed job fails the trial with the service's reason, SIGINT cancels within 3 s
(also during a hung create: the job is found by its unique name and stopped), resume skips
succeeded commands, ``hpo-tools kill`` stops the job through the registry from another
process, no secret reaches a file or a log, ``hpo-tools check`` validates the section and
every command up front.

A platform's test module subclasses :class:`ContractTests` with its :class:`Case`; the service
is the platform's fake SDK client (over a directory, so another process sees the same jobs
through ``HPO_TOOLS_FAKE_CLOUD``).
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, Callable, Dict, List, Tuple

import pytest

from hpo_tools import cli
from hpo_tools.cloud import ENV_FAKE_CLOUD
from hpo_tools.errors import PlatformError
from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import run_plan
from hpo_tools.trial_files import prepare_trial

ACCESS_ID = "LTAI5tFakeContractId7"
ACCESS_KEY = "fakeContractSecret31415926"


@dataclasses.dataclass
class Case:
    """One platform under the contract.

    Attributes:
        name: ``[platform_config] name``.
        platform_class: The platform.
        make_fake: ``make_fake(root, access_key_id=, access_key_secret=)`` -> the fake client.
        command: ``command(n)``: command ``n``'s text (with ``${lr}``, ``${exp_id}``,
            ``${trial_id}``), its name starting ``t_${exp_id}_${trial_id}_<n>``.
        section: The platform's section, keys as ``${CONTRACT_ID}`` / ``${CONTRACT_KEY}``.
        metric: ``[metric_config]`` lines (type, source, ``metric_dict``) scoring ``auc``
            from :attr:`scored`'s steps.
        scored: ``scored(auc)``: a running step that reports ``auc``.
        statuses: The fake's status names (``queued``, ``running``, ``succeeded``, ...).
        unique_name: The job's name in a recorded create request.
        bad_command: ``(text, expected message part)``: a malformed command for check.
        bad_section: ``(line to add, expected message part)``: a malformed section key.
        log_step: ``log_step(lines)``: a running step whose output has ``lines``.
    """

    name: str
    platform_class: type
    make_fake: Callable[..., Any]
    command: Callable[[int], str]
    section: str
    metric: str
    scored: Callable[[float], Dict[str, Any]]
    statuses: Any
    unique_name: Callable[[Dict[str, Any]], str]
    bad_command: Tuple[Callable[[str], str], str]
    bad_section: Tuple[str, str]
    log_step: Callable[[List[str]], Dict[str, Any]]


def signal_when(condition: Callable[[], Any], timeout: float = 20.0):
    """SIGINT to this process once ``condition()`` holds; the time it was sent."""
    sent: Dict[str, float] = {}

    def run() -> None:
        deadline = time.monotonic() + timeout
        while not condition():
            if time.monotonic() > deadline:
                return
            time.sleep(0.005)
        sent["at"] = time.monotonic()
        os.kill(os.getpid(), signal.SIGINT)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return sent, thread


class ContractTests:
    """The contract; a subclass sets ``case``."""

    case: Case

    # -- fixtures and helpers ----------------------------------------------------------------

    @pytest.fixture
    def cloud(self, tmp_path, monkeypatch):
        root = tmp_path / "cloud"
        root.mkdir()
        monkeypatch.setenv(ENV_FAKE_CLOUD, str(root))
        monkeypatch.setenv("CONTRACT_ID", ACCESS_ID)
        monkeypatch.setenv("CONTRACT_KEY", ACCESS_KEY)
        return root

    @pytest.fixture
    def fake(self, cloud):
        fake = self.case.make_fake(cloud, access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
        yield fake
        fake.release()

    def trial_ini(self, commands: int = 1, extra: str = "") -> str:
        lines = ["[platform_config]", f"name={self.case.name}"]
        lines += [f"cmd{n}=" + self.case.command(n) for n in range(1, commands + 1)]
        lines += [extra, "[metric_config]", self.case.metric, "final_mode=final",
                  self.case.section]
        return "\n".join(lines) + "\n"

    def prepare(self, tmp_path, text, trial_id="T"):
        trial = tmp_path / "trial.ini"
        trial.write_text(text)
        reporter = ConsoleReporter({"${lr}": 0.1}, experiment_id="E", trial_id=trial_id,
                                   stream=io.StringIO())
        plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
        return plan, context, reporter

    def platform(self, plan, fake):
        return self.case.platform_class(**plan.platform.options, client_factory=fake.connect)

    def run(self, tmp_path, fake, text):
        plan, context, reporter = self.prepare(tmp_path, text)
        outcome = run_plan(plan, reporter, context, platform=self.platform(plan, fake),
                           interval=0.02, stderr=io.StringIO())
        return outcome, reporter, context

    # -- follow --------------------------------------------------------------------------------

    def test_a_trial_follows_its_job_and_scores_it(self, tmp_path, fake):
        s = self.case.statuses
        fake.plan_next(steps=[{"status": s.queued}, self.case.scored(0.61),
                              self.case.scored(0.72), {"status": s.succeeded}])
        outcome, reporter, context = self.run(tmp_path, fake, self.trial_ini())
        assert outcome.status == "succeeded" and outcome.exit_code == 0
        assert [r["default"] for r in reporter.intermediate] == [0.61, 0.72]
        assert reporter.final["default"] == 0.72
        (submission,) = fake.submissions
        assert self.case.unique_name(submission["request"]).startswith("t_E_T_1-hpo-")
        assert "0.1" in json.dumps(submission["request"])  # the tuner's value in place

    def test_a_failed_job_fails_the_trial_with_the_services_reason(self, tmp_path, fake):
        s = self.case.statuses
        fake.plan_next(steps=[{"status": s.running}, {"status": s.failed}],
                       reason="ImagePullBackOff")
        outcome, _, _ = self.run(tmp_path, fake, self.trial_ini())
        assert outcome.status == "failed" and outcome.exit_code == 1
        assert "cmd1 failed" in outcome.message and "ImagePullBackOff" in outcome.message

    # -- cancellation --------------------------------------------------------------------------

    def test_sigint_while_the_job_runs_stops_it_within_3_seconds(self, tmp_path, fake):
        s = self.case.statuses
        fake.plan_next(steps=[{"status": s.queued}, {"status": s.running}])
        plan, context, reporter = self.prepare(tmp_path, self.trial_ini())
        sent, sender = signal_when(lambda: fake.job_ids() and fake.job(fake.job_ids()[0])
                                   ["checks"] >= 3)
        outcome = run_plan(plan, reporter, context, platform=self.platform(plan, fake),
                           interval=0.02, stderr=io.StringIO())
        ended = time.monotonic()
        sender.join(5)
        assert "at" in sent, "the job never ran: the test proved nothing"
        assert ended - sent["at"] < 3.0  # NNI SIGKILLs the runner 5 s after its SIGINT
        assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
        (job_id,) = fake.job_ids()
        assert fake.stop_calls(job_id) == 1
        record = JobRegistry(tmp_path / "exp" / "E").load("T")
        assert [(j.command_index, j.job_id, j.state) for j in record.jobs] == [
            (1, job_id, JobState.CANCELLED)]

    def test_sigint_during_a_hung_create_cancels_within_3_seconds_and_stops_the_job(
        self, tmp_path, fake
    ):
        fake.plan_next(create="hang", steps=[{"status": self.case.statuses.running}])
        fake.hang("create")
        plan, context, reporter = self.prepare(tmp_path, self.trial_ini())
        sent, sender = signal_when(lambda: fake.hung_calls == 1)
        outcome = run_plan(plan, reporter, context, platform=self.platform(plan, fake),
                           interval=0.02, stderr=io.StringIO())
        ended = time.monotonic()
        sender.join(5)
        assert "at" in sent, "the create never hung: the test proved nothing"
        assert ended - sent["at"] < 3.0
        assert outcome.status == "cancelled"
        (job_id,) = fake.job_ids()
        assert fake.stop_calls(job_id) == 1  # found by its unique name and stopped
        (entry,) = JobRegistry(tmp_path / "exp" / "E").load("T").jobs
        assert entry.state is JobState.CANCELLED
        assert entry.job_id.endswith(f"-pending:{fake.job(job_id)['name']}")
        assert entry.description["cloud_id"] == job_id

    def test_a_submit_after_the_signal_creates_nothing(self, tmp_path, fake):
        """SIGINT between two commands: the next command's job is never created on the paid
        cluster (not created, then stopped), and its record tells a sweep there is nothing."""
        plan, context, reporter = self.prepare(tmp_path, self.trial_ini())
        platform = self.platform(plan, fake)
        platform.interrupt()
        job = platform.submit(plan.stages[0].commands[0].text, log_path=tmp_path / "job.log",
                              env={"HPO_TOOLS_COMMAND": "cmd1"})
        assert job.poll() is JobState.CANCELLED and "not created" in job.message
        assert fake.job_ids() == []
        assert platform.cancel_described(job.describe()) is False

    def test_a_job_is_recorded_with_its_unique_name_before_its_create_is_sent(
        self, tmp_path, fake
    ):
        fake.plan_next(steps=[{"status": self.case.statuses.running}])
        plan, _, _ = self.prepare(tmp_path, self.trial_ini())
        platform = self.platform(plan, fake)
        seen: List[Tuple[int, Dict[str, Any]]] = []
        job = platform.submit(plan.stages[0].commands[0].text, log_path=tmp_path / "job.log",
                              env={"HPO_TOOLS_COMMAND": "cmd1"},
                              on_update=lambda j: seen.append((len(fake.submissions),
                                                               j.describe())))
        try:
            sent, first = seen[0]
            # Recorded before the service got anything: a runner killed while the create
            # hangs leaves a record that a sweep looks up by the name the create carries.
            assert sent == 0 and first["cloud_id"] is None
            assert first["job_id"] == platform.pending_prefix + first["unique_name"]
            assert first["unique_name"] == self.case.unique_name(fake.submissions[0]["request"])
            # Once the create answered, the same job under the service's id.
            assert job.job_id == fake.job_ids()[0] == seen[1][1]["job_id"]
        finally:
            job.cancel()
            platform.close()

    def test_a_lost_create_answer_fails_the_trial_and_records_the_job_it_stopped(
        self, tmp_path, fake
    ):
        fake.plan_next(create="lost", steps=[{"status": self.case.statuses.running}])
        outcome, _, _ = self.run(tmp_path, fake, self.trial_ini())
        # A job was launched (then stopped): a failed trial, not a bad trial file (exit 2).
        assert outcome.status == "failed" and outcome.exit_code == 1
        (job_id,) = fake.job_ids()
        assert f"had created it anyway as {job_id}" in outcome.message
        assert fake.stop_calls(job_id) == 1
        # Recorded, ended, with the id found by its name: nothing is left for a sweep.
        (entry,) = JobRegistry(tmp_path / "exp" / "E").load("T").jobs
        assert entry.state is JobState.CANCELLED and entry.description["cloud_id"] == job_id

    def test_a_refused_create_launched_nothing_and_leaves_no_live_record(self, tmp_path, fake):
        fake.plan_next(create="refuse")
        plan, context, reporter = self.prepare(tmp_path, self.trial_ini())
        # Refused: nothing was created, so the trial file is bad (the entry points exit 2).
        with pytest.raises(PlatformError, match="was refused"):
            run_plan(plan, reporter, context, platform=self.platform(plan, fake),
                     interval=0.02, stderr=io.StringIO())
        assert fake.job_ids() == []
        # Its pending record is closed: no sweep looks for a job the service refused.
        (entry,) = JobRegistry(tmp_path / "exp" / "E").load("T").jobs
        assert entry.state is JobState.FAILED and entry.message.startswith("refused: ")

    def test_a_create_that_never_made_its_job_is_closed_by_the_first_sweep_after_its_runner(
        self, tmp_path, cloud, fake
    ):
        """SIGINT while the create hangs before the service made the job: the record stays
        pending (the runner found nothing to stop); a sweep keeps it live while the runner
        lives, and the first sweep after the runner ended closes it as never created."""
        fake.plan_next(create="hang_before", steps=[{"status": self.case.statuses.running}])
        (tmp_path / "trial.ini").write_text(self.trial_ini())
        registry = JobRegistry(tmp_path / "exp" / "standalone")
        runner = subprocess.Popen(
            [sys.executable, "-m", "hpo_tools", "run", "--config", "trial.ini", "--params",
             '{"${lr}": 0.1}', "--exp_dir", "exp"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            deadline = time.monotonic() + 60
            while not fake.submissions:  # the create hangs in the runner
                assert runner.poll() is None and time.monotonic() < deadline, \
                    runner.communicate()
                time.sleep(0.05)
            # The runner lives: its create may still make the job, the record stays live.
            assert registry.cancel_all_live(timeout=10) == {}
            (entry,) = registry.load("standalone").jobs
            assert not entry.state.is_finished
            runner.send_signal(signal.SIGINT)
            _, err = runner.communicate(timeout=30)
        finally:
            runner.kill()
        assert runner.returncode != 0, err
        (entry,) = registry.load("standalone").jobs
        assert not entry.state.is_finished  # the runner's own cancel found nothing to stop
        assert registry.cancel_all_live(timeout=10) == {}
        (entry,) = registry.load("standalone").jobs
        assert entry.state is JobState.CANCELLED and entry.description["created"] is False
        assert "never created" in entry.message
        # Nothing live is left for `hpo-tools kill` to report (it exits 0), and no job exists.
        assert not any(record.live_jobs() for record in registry.records())
        assert fake.job_ids() == []

    def test_resume_skips_the_command_that_succeeded(self, tmp_path, fake):
        s = self.case.statuses
        text = self.trial_ini(commands=2, extra="resume=1")
        fake.plan_next(steps=[self.case.scored(0.7), {"status": s.succeeded}])
        fake.plan_next(steps=[{"status": s.running}, {"status": s.failed}])
        first, _, _ = self.run(tmp_path, fake, text)
        assert first.status == "failed" and "cmd2 failed" in first.message
        fake.plan_next(steps=[{"status": s.running}, {"status": s.succeeded}])
        second, reporter, _ = self.run(tmp_path, fake, text)
        assert second.status == "succeeded"
        names = [self.case.unique_name(x["request"]).split("-hpo-")[0] for x in fake.submissions]
        assert names == ["t_E_T_1", "t_E_T_2", "t_E_T_2"]  # cmd1 ran once only

    def test_hpo_tools_kill_stops_the_job_through_the_registry_from_another_process(
        self, tmp_path, cloud, free_port
    ):
        (tmp_path / "trial.ini").write_text(self.trial_ini())
        env = {**os.environ, ENV_FAKE_CLOUD: str(cloud), "CONTRACT_ID": ACCESS_ID,
               "CONTRACT_KEY": ACCESS_KEY,
               # hpo-tools kill rebuilds the platform from the record: keys from its env
               "ALIBABA_CLOUD_ACCESS_KEY_ID": ACCESS_ID,
               "ALIBABA_CLOUD_ACCESS_KEY_SECRET": ACCESS_KEY}
        runner = subprocess.Popen(
            [sys.executable, "-m", "hpo_tools", "run", "--config", "trial.ini", "--params",
             '{"${lr}": 0.1}', "--exp_dir", "exp"],
            cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            record = _wait_for_running_job(tmp_path / "exp" / "standalone" / "hpo-tools" /
                                           "jobs" / "standalone.json")
            kill = subprocess.run(
                [sys.executable, "-m", "hpo_tools", "kill", "--experiment", "standalone",
                 "--experiment-dir", str(tmp_path / "exp" / "standalone"), "--port",
                 str(free_port), "--timeout", "10"],
                env=env, capture_output=True, text=True, timeout=60)
            out, err = runner.communicate(timeout=60)
        finally:
            runner.kill()
        job_id = record["jobs"][0]["description"]["cloud_id"]
        assert f"cancelled job {job_id} of trial standalone" in kill.stdout, \
            kill.stdout + kill.stderr
        fake = self.case.make_fake(cloud, access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
        (stop,) = fake.stops
        assert stop["job_id"] == job_id and stop["pid"] not in (os.getpid(), runner.pid)
        assert runner.returncode != 0 and "stopped (not by hpo-tools)" in err

    def test_secrets_are_in_no_file_and_no_log(self, tmp_path, fake):
        s = self.case.statuses
        fake.plan_next(steps=[self.case.log_step([f"oops printing {ACCESS_KEY} here",
                                                  f"and the id {ACCESS_ID}"]),
                              {"status": s.failed}], reason=f"bad key {ACCESS_KEY}")
        outcome, _, context = self.run(tmp_path, fake, self.trial_ini())
        assert outcome.status == "failed"
        log = context.paths.log_path.read_text()
        assert "oops printing *** here" in log  # relayed, masked
        leaks = []
        service = fake.directory / "jobs"  # the fake service's own copy of the job's output
        for path in tmp_path.rglob("*"):
            if path.is_file() and service not in path.parents:
                data = path.read_bytes()
                if ACCESS_KEY.encode() in data or ACCESS_ID.encode() in data:
                    leaks.append(str(path.relative_to(tmp_path)))
        assert leaks == []  # registry, params/result.json, trial.log, the fake's records
        assert any(fake.directory.rglob("*.json"))  # the walk saw the fake's files too
        assert ACCESS_KEY not in outcome.message

    def test_check_validates_the_section_and_every_command_up_front(
        self, tmp_path, cloud, capsys
    ):
        space = tmp_path / "search_space.json"
        space.write_text(json.dumps({"${lr}": {"_type": "choice", "_value": [0.1, 0.2]}}))
        trial = tmp_path / "trial.ini"
        trial.write_text(self.trial_ini(commands=2))
        assert cli.main(["check", "--config", str(trial), "--search-space", str(space)]) == 0
        assert "ok: " in capsys.readouterr().out
        breaks, command_error = self.case.bad_command
        line, section_error = self.case.bad_section
        text = self.trial_ini(commands=2)
        broken = text.replace(self.case.command(1), breaks(self.case.command(1)), 1)
        broken = broken.rstrip("\n") + "\n" + line + "\n"
        trial.write_text(broken)
        code = cli.main(["check", "--config", str(trial), "--search-space", str(space)])
        captured = capsys.readouterr()
        err = captured.out + captured.err
        assert code == 1, err  # problems found
        assert command_error in err
        assert section_error in err
        assert not any(cloud.iterdir())  # nothing submitted, no client built


def _wait_for_running_job(registry_path: Path, timeout: float = 60.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            record = json.loads(registry_path.read_text())
            if record["jobs"] and record["jobs"][0]["state"] == "running" \
                    and record["jobs"][0]["description"].get("cloud_id"):
                return record
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    raise AssertionError(f"no running job in {registry_path}")
