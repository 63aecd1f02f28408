"""`hpo-tools kill` and `hpo-tools retry` against real NNI experiments (local training service).

kill: two long trials run the trial runner with a local job each; `hpo-tools kill` must leave no
trial or job process alive, start no new trial, and leave the registry with nothing live.
retry: a trial whose job fails is re-submitted with the parameters of its own params.json.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

import pytest

from hpo_tools.cli import main
from hpo_tools.nni_rest import NniRest

from .procs import live_processes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

JOB_SCRIPT = '''\
"""Print a metric line every --sleep seconds; exit 3 at once when --quality is negative."""
import argparse, sys, time
parser = argparse.ArgumentParser()
parser.add_argument("--quality", type=float, required=True)
parser.add_argument("--steps", type=int, default=200)
parser.add_argument("--sleep", type=float, default=0.5)
args = parser.parse_args()
if args.quality < 0:
    print("diverged", flush=True)
    sys.exit(3)
for step in range(1, args.steps + 1):
    time.sleep(args.sleep)
    print(f"step {step} auc={args.quality}", flush=True)
'''

TRIAL_INI = """\
[platform_config]
name=Local
cmd1={python} job.py --quality ${{quality}} --steps {steps}

[metric_config]
metric_type=stdout
metric_dict={{"auc=([0-9.]+)": 1}}
optimize_mode=maximize
"""


def _experiment_processes(exp_id: str) -> list[str]:
    """Live processes with NNI_EXP_ID=<exp_id> in their environment: trials and their jobs."""
    marker = f"NNI_EXP_ID={exp_id}".encode()
    return [f"{pid}: {cmdline[:100]}" for pid, cmdline, environ in live_processes()
            if marker in environ]


def _start(root: Path, port: int, quality: list[float], steps: int, max_trials: int):
    from nni.experiment import Experiment

    (root / "job.py").write_text(JOB_SCRIPT)
    (root / "trial.ini").write_text(TRIAL_INI.format(python=sys.executable, steps=steps))
    exp = Experiment("local")
    exp.config.experiment_name = "hpo-tools kill e2e"
    exp.config.trial_command = f"{sys.executable} -m hpo_tools.run --config trial.ini"
    exp.config.trial_code_directory = str(root)
    exp.config.experiment_working_directory = str(root / "nni")
    exp.config.search_space = {"quality": {"_type": "choice", "_value": quality}}
    exp.config.tuner.name = "GridSearch"
    exp.config.max_trial_number = max_trials
    exp.config.trial_concurrency = 2
    exp.config.max_trial_duration = "120s"
    exp.start(port)
    return exp


def _wait(predicate, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.5)


def test_kill_leaves_no_trial_or_job_process_and_starts_no_new_trial(
    tmp_path: Path, free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo_tools.jobs import JobRegistry

    exp = _start(tmp_path, free_port, [0.7, 0.8, 0.9], steps=400, max_trials=6)
    try:
        registry = JobRegistry(tmp_path / "nni" / exp.id)

        def two_jobs_live() -> bool:
            running = [t for t in exp.list_trial_jobs() if t.status == "RUNNING"]
            live = [r for r in registry.records() if r.live_jobs()]
            return len(running) == 2 and len(live) == 2

        _wait(two_jobs_live, 90, "two running trials with live jobs")
        running = sorted(t.trialJobId for t in exp.list_trial_jobs())
        assert _experiment_processes(exp.id)  # the processes the kill must end exist now

        # Port and experiment directory both come from NNI's manifest.
        code = main(["kill", "--experiment", exp.id])
        out = capsys.readouterr().out
        assert code == 0, out
        for trial_id in running:
            assert f"cancelled trial {trial_id} (was RUNNING)" in out  # reported per trial
        # No trial runner and no job (they carry NNI_EXP_ID) survives the kill.
        assert _experiment_processes(exp.id) == []
        assert [r.trial_id for r in registry.records() if r.live_jobs()] == []
        # maxTrialNumber now equals the trials already submitted: nothing new starts.
        time.sleep(3)
        trials = exp.list_trial_jobs()
        assert sorted(t.trialJobId for t in trials) == running
        # Each runner cancelled its job and died by NNI's SIGINT: USER_CANCELED, not SUCCEEDED.
        assert {t.status for t in trials} == {"USER_CANCELED"}, trials
        assert exp.get_status() in ("DONE", "NO_MORE_TRIAL")
    finally:
        exp.stop()


def test_retry_resubmits_a_failed_trial_with_its_own_params(
    tmp_path: Path, free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    # quality -1 makes the job exit 3 at once (trial FAILED); 0.5 succeeds after two lines.
    exp = _start(tmp_path, free_port, [-1.0, 0.5], steps=2, max_trials=10)
    try:
        def both_ended() -> bool:
            statuses = [t.status for t in exp.list_trial_jobs()]
            return len(statuses) == 2 and all(s in ("SUCCEEDED", "FAILED") for s in statuses)

        _wait(both_ended, 90, "both grid points to end")
        failed = [t.trialJobId for t in exp.list_trial_jobs() if t.status == "FAILED"]
        assert len(failed) == 1

        code = main(["retry", "--experiment", exp.id])
        out = capsys.readouterr().out
        assert code == 0, out
        assert f"re-submitted trial {failed[0]}" in out

        exp_dir = tmp_path / "nni" / exp.id
        # NNI's own Experiment.list_trial_jobs() raises a TypeError on customized trials
        # (their hyperParameters lack parameter_index), so read the trials over REST.
        rest = NniRest(free_port)

        def third_trial_ended() -> bool:
            trials = rest.list_trial_jobs()
            return len(trials) == 3 and all(t["status"] in ("SUCCEEDED", "FAILED")
                                            for t in trials)

        _wait(third_trial_ended, 90, "the re-submitted trial to end")
        new = [t["trialJobId"] for t in rest.list_trial_jobs()
               if t["trialJobId"] != failed[0] and t["status"] == "FAILED"]
        trials_dir = exp_dir / "environments" / "local-env" / "trials"
        retried = [t for t in new if (trials_dir / t / "params.json").exists()]
        assert len(retried) == 1  # the same parameters fail again, in a new trial
        own = json.loads((trials_dir / retried[0] / "params.json").read_text())["params"]
        assert own == {"quality": -1.0}  # the failed trial's parameters, as it ran them
    finally:
        exp.stop()
