"""A training job that crashes, is killed from outside, or leaves a corrupt or truncated event
file: the trial ends with a one-line reason (trial.log, stderr, result.json), the good steps
reported, nothing left running.

Real processes on the Local platform: tests/trial/fake_train.py, and event files written with
tensorboard's own record writer (tests/metrics/eventlib.py) then damaged on purpose.
"""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial_files import run_trial_file
from tests.e2e.procs import live_processes
from tests.metrics.eventlib import record, scalar_event, version_event

from .conftest import SUMMARY, TRAIN, runner_env, survivors
from .fake_train import auc_for


def _run(tmp_path: Path, text: str):
    """The trial file ``text`` run in this process: (outcome, reporter, trial dir, stderr)."""
    trial = tmp_path / "trial.ini"
    trial.write_text(text)
    reporter = ConsoleReporter({}, experiment_id="E", trial_id="T", stream=io.StringIO())
    stderr = io.StringIO()
    outcome = run_trial_file(trial, reporter, exp_dir=tmp_path / "exp", interval=0.05,
                             stderr=stderr)
    return outcome, reporter, tmp_path / "exp/E/trials/T", stderr.getvalue()


def _result(trial_dir: Path) -> dict:
    return json.loads((trial_dir / "result.json").read_text())


# -- a crash, a kill ---------------------------------------------------------------------------


def test_a_crashed_job_fails_the_trial_naming_its_exit_code_with_earlier_steps_reported(
    tmp_path,
):
    outcome, reporter, trial_dir, stderr = _run(
        tmp_path,
        "[platform_config]\nname=Local\n"
        f"cmd1={TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 5 --fail-at 3\n"
        + SUMMARY,
    )
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert outcome.message == "cmd1 failed: exit code 3"
    # Steps 1 and 2 were scored before the crash: reported, and kept in result.json.
    assert [r["default"] for r in reporter.intermediate] == pytest.approx(
        [auc_for(0.01, 1), auc_for(0.01, 2)], abs=1e-6)
    assert reporter.final is None
    result = _result(trial_dir)
    assert result["message"] == "cmd1 failed: exit code 3"
    assert [r["step"] for r in result["intermediate"]] == [100, 200]
    assert "step 3: diverged" in stderr  # the tail of the job's own output
    assert "cmd1 failed: exit code 3" in (trial_dir / "trial.log").read_text()
    assert survivors(str(tmp_path)) == []


def _trainer_pid(marker: str) -> int | None:
    """The fake trainer's own process (not the job's shell, whose script names it too)."""
    for pid, cmdline, _ in live_processes():
        if marker in cmdline and cmdline.startswith(sys.executable) and "fake_train" in cmdline:
            return pid
    return None


def test_a_job_killed_from_outside_fails_the_trial_naming_the_signal(tmp_path):
    """As NNI runs it: the training process is SIGKILLed (the OOM killer, a user) after two
    steps."""
    trial = tmp_path / "trial.ini"
    trial.write_text(
        "[platform_config]\nname=Local\n"
        f"cmd1={TRAIN} --lr 0.01 --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 600 --sleep 0.1\n"
        + SUMMARY
    )
    runner = subprocess.Popen(
        [sys.executable, "-m", "hpo_tools.run", "--config", str(trial),
         "--exp_dir", str(tmp_path / "exp"), "--interval", "0.05"],
        cwd=tmp_path, env=runner_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )
    trial_dir = tmp_path / "exp/standalone/trials/standalone"
    try:
        deadline = time.monotonic() + 30
        while "step 2 auc" not in _read(trial_dir / "trial.log"):
            if runner.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"the job never reached step 2: {runner.communicate()}")
            time.sleep(0.05)
        pid = _trainer_pid(str(tmp_path))
        assert pid is not None
        os.kill(pid, signal.SIGKILL)
        _, err = runner.communicate(timeout=30)
    finally:
        if runner.poll() is None:
            runner.kill()
    reason = "cmd1 failed: killed by SIGKILL (exit code 137)"
    # FAILED for NNI (exit 1), the reason on the stderr NNI keeps.
    assert runner.returncode == 1, err
    assert f"trial failed: {reason}" in err.splitlines()
    result = _result(trial_dir)
    assert result["status"] == "failed" and result["message"] == reason
    # The steps scored before the kill stay reported.
    steps = [r["step"] for r in result["intermediate"]]
    assert steps[:2] == [100, 200]
    assert result["final"] is None
    (job,) = JobRegistry(tmp_path / "exp/standalone").load("standalone").jobs
    assert job.state is JobState.FAILED and job.message == "killed by SIGKILL (exit code 137)"
    assert survivors(str(tmp_path)) == []


def _read(path: Path) -> str:
    try:
        return path.read_text(errors="replace")
    except FileNotFoundError:
        return ""


# -- damaged event files -----------------------------------------------------------------------


def _damaged_event_file(tmp_path: Path, good_steps: tuple[int, ...]) -> tuple[Path, int]:
    """An event file as a job that died mid-write leaves it: a good record per step of
    ``good_steps``, two records whose data CRC does not match, and the first bytes of one
    more record at the end. Returns (the file, the length of that truncated record)."""
    def corrupt(step: int) -> bytes:
        data = bytearray(record(scalar_event(step, auc=0.99)))
        data[20] ^= 0xFF  # a payload byte: the data CRC no longer matches
        return bytes(data)

    parts = [record(version_event())]
    parts += [record(scalar_event(step, auc=step / 1000)) for step in good_steps]
    parts += [corrupt(250), corrupt(350)]
    truncated = record(scalar_event(500, auc=0.5))[:-7]
    parts.append(truncated)
    path = tmp_path / "damaged.events"
    path.write_bytes(b"".join(parts))
    return path, len(truncated)


def _copying_trial(source: Path) -> str:
    """A trial whose job writes ``source`` as its evaluation event file."""
    return (
        "[platform_config]\nname=Local\n"
        "cmd1=mkdir -p ${NNI_OUTPUT_DIR}/model/eval_val && "
        f"cp {source} ${{NNI_OUTPUT_DIR}}/model/eval_val/events.out.tfevents.1700000000.host\n"
        + SUMMARY
    )


def test_a_damaged_event_file_still_gives_its_good_steps_with_a_one_line_warning(tmp_path):
    source, cut = _damaged_event_file(tmp_path, (100, 200, 300))
    outcome, reporter, trial_dir, _ = _run(tmp_path, _copying_trial(source))
    assert outcome.status == "succeeded" and outcome.exit_code == 0
    # The good steps are reported, the final result is the last good one.
    assert [r["default"] for r in reporter.intermediate] == pytest.approx([0.1, 0.2, 0.3])
    assert reporter.final["default"] == pytest.approx(0.3)
    events = trial_dir / "model/eval_val/events.out.tfevents.1700000000.host"
    warning = f"{events}: 2 corrupt records skipped; a truncated record of {cut} bytes at the end"
    assert sum(warning in line for line in (trial_dir / "trial.log").read_text().splitlines()) == 1


def test_a_damaged_event_files_warning_is_in_result_json(tmp_path):
    source, cut = _damaged_event_file(tmp_path, (100, 200))
    outcome, _, trial_dir, _ = _run(tmp_path, _copying_trial(source))
    events = trial_dir / "model/eval_val/events.out.tfevents.1700000000.host"
    warning = f"{events}: 2 corrupt records skipped; a truncated record of {cut} bytes at the end"
    assert outcome.status == "succeeded"
    result = _result(trial_dir)
    assert result["warnings"] == [warning] and result["status"] == "succeeded"
    assert "message" not in result  # a message says why a trial failed; this one did not


def test_an_event_file_without_one_good_step_fails_the_trial_saying_what_was_wrong(tmp_path):
    source, cut = _damaged_event_file(tmp_path, ())
    outcome, reporter, trial_dir, _ = _run(tmp_path, _copying_trial(source))
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert reporter.intermediate == [] and reporter.final is None
    events = trial_dir / "model/eval_val/events.out.tfevents.1700000000.host"
    damage = f"{events}: 2 corrupt records skipped; a truncated record of {cut} bytes at the end"
    # One line: no step scored, and why (the damage), in result.json and trial.log.
    assert "\n" not in outcome.message
    assert outcome.message.startswith("no evaluation step in summary:")
    assert outcome.message.endswith(damage)
    assert _result(trial_dir)["message"] == outcome.message
    assert outcome.message in (trial_dir / "trial.log").read_text()


def test_a_record_still_being_written_is_no_warning_until_the_job_is_over(tmp_path, caplog):
    """While the job runs, a record cut short at the end of the file is one being written
    (TensorFlow writes in chunks): only the drain, once the job is over, calls it truncated."""
    from hpo_tools.metrics import Follower, MetricSpec, build_source

    spec = MetricSpec.from_config({"auc": 1})
    directory = tmp_path / "eval_val"
    directory.mkdir()
    events = directory / "events.out.tfevents.1700000000.host"
    last = record(scalar_event(200, auc=0.2))
    events.write_bytes(record(version_event()) + record(scalar_event(100, auc=0.1)) + last[:9])
    follower = Follower([build_source("summary", str(directory), spec=spec)], spec)
    with caplog.at_level("WARNING", logger="hpo_tools.metrics"):
        assert [r.step for r in follower.poll()] == [100]
        assert follower.warnings() == [f"{events}: a truncated record of 9 bytes at the end"]
        assert caplog.records == []  # a poll never warns about it
        with open(events, "ab") as handle:  # the writer finishes the record
            handle.write(last[9:])
        assert [r.step for r in follower.drain()] == [200]
    # Complete now: nothing to say, neither returned nor logged.
    assert follower.warnings() == []
    assert caplog.records == []
