"""`hpo-tools kill`: stop a running experiment's trials and every platform job they started."""

from __future__ import annotations

import argparse
import time

from hpo_tools.nni_rest import (
    ACTIVE_TRIAL_STATUSES,
    NniRest,
    NniRestError,
    connect,
    find_experiment,
)

NAME = "kill"
HELP = "stop NNI starting trials, cancel the running ones and every live platform job"
DESCRIPTION = """\
Stop a running NNI experiment from spending more, without stopping NNI itself (the web UI and
results stay available; `nnictl stop ID` ends the manager afterwards):

  1. set maxTrialNumber to the number of trials already submitted, so no new trial starts;
  2. cancel every RUNNING/WAITING trial through NNI's REST API (each runner gets SIGINT and
     cancels its own jobs; NNI shows the trials USER_CANCELED);
  3. cancel every job the job registry (E/hpo-tools/jobs/) still has live, with credentials
     from this shell's environment, once right away and again after the trials ended.

It never signals NNI's process group (the manager, the dispatcher and all trials share it).
The port comes from ~/nni-experiments/.experiment unless --port is given; the experiment
directory E is <experimentWorkingDirectory>/<ID> unless --experiment-dir is given.
Exit 0 when everything was cancelled, 1 when something may still run, 2 on bad input (an
experiment id the manifest does not know and no --port, another experiment on --port). When NNI
does not answer (stopped or crashed), only the registry's live jobs are cancelled, and the exit
code is 1; that needs E (--experiment-dir, or the manifest), else the exit code is 2.

example:
  hpo-tools kill --experiment k2x8a1bq
"""

POLL_INTERVAL = 0.5


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument("--experiment", required=True, metavar="ID", help="NNI experiment id")
    parser.add_argument("--experiment-dir", "--experiment_dir", dest="experiment_dir",
                        metavar="DIR", help="the experiment directory E (default: from NNI)")
    parser.add_argument("--port", type=int, help="the experiment's REST port (default: from "
                        "~/nni-experiments/.experiment)")
    parser.add_argument("--timeout", type=float, default=30.0, metavar="SECONDS",
                        help="how long to wait for trials to end and jobs to cancel (default 30)")


def run(args: argparse.Namespace) -> int:
    """Stop new trials, cancel running ones and their jobs; print what was cancelled."""
    from hpo_tools.jobs import JobRegistry

    try:
        rest, exp_dir = connect(args.experiment, port=args.port,
                                experiment_dir=args.experiment_dir)
    except NniRestError as err:
        return _sweep_without_nni(args, err)
    trials = rest.list_trial_jobs()
    old_max = rest.get_experiment().get("params", {}).get("maxTrialNumber")
    trials = _freeze_trial_count(rest, trials)
    submitted = len(trials)
    print(f"experiment {args.experiment}: maxTrialNumber {old_max} -> {submitted}; "
          f"no new trial will start")

    failures = 0
    active = [t for t in trials if t.get("status") in ACTIVE_TRIAL_STATUSES]
    for trial in active:
        trial_id = str(trial["trialJobId"])
        try:
            rest.cancel_trial_job(trial_id)
            print(f"cancelled trial {trial_id} (was {trial['status']})")
        except NniRestError as err:
            failures += 1
            print(f"could not cancel trial {trial_id}: {err}")
    if not active:
        print("no trial was running")

    registry = JobRegistry(exp_dir)
    deadline = time.monotonic() + args.timeout
    cancelled = _merge({}, registry.cancel_all_live(timeout=args.timeout / 2))
    still = _wait_for_trials(rest, {str(t["trialJobId"]) for t in active}, deadline)
    # Jobs a runner registered while it was being stopped are caught by the second sweep.
    left = max(1.0, deadline - time.monotonic())
    cancelled = _merge(cancelled, registry.cancel_all_live(timeout=left))
    for trial_id, job_ids in sorted(cancelled.items()):
        for job_id in job_ids:
            print(f"cancelled job {job_id} of trial {trial_id}")
    live_left = [r.trial_id for r in registry.records() if r.live_jobs()]
    print(f"{len(active)} trial(s) and {sum(map(len, cancelled.values()))} job(s) cancelled "
          f"(registry: {registry.directory})")
    if still:
        print(f"still running in NNI after {args.timeout:.0f} s: {', '.join(sorted(still))}")
    if live_left:
        print(f"jobs the registry still has live: trials {', '.join(live_left)}")
    return 1 if failures or still or live_left else 0


def _freeze_trial_count(rest: NniRest, trials: list[dict], attempts: int = 5) -> list[dict]:
    """Set maxTrialNumber to the number of trials submitted; return every submitted trial.

    NNI may submit a trial between listing the trials and the update; listing again until the
    count holds still makes sure such a trial is in the list that gets cancelled.
    """
    for _ in range(attempts):
        rest.set_max_trial_number(len(trials))
        again = rest.list_trial_jobs()
        if len(again) <= len(trials):
            return again
        trials = again
    return trials


def _sweep_without_nni(args: argparse.Namespace, err: NniRestError) -> int:
    """NNI does not answer: still cancel the registry's live jobs, when E is known."""
    from hpo_tools.errors import ConfigError
    from hpo_tools.jobs import JobRegistry

    exp_dir = args.experiment_dir
    if exp_dir is None:
        try:
            exp_dir = find_experiment(args.experiment).experiment_dir
        except ConfigError:
            exp_dir = None
    if exp_dir is None:
        raise err
    print(f"NNI does not answer ({err}); cancelling the job registry's live jobs only")
    registry = JobRegistry(exp_dir)
    cancelled = registry.cancel_all_live(timeout=args.timeout)
    for trial_id, job_ids in sorted(cancelled.items()):
        for job_id in job_ids:
            print(f"cancelled job {job_id} of trial {trial_id}")
    print(f"{sum(map(len, cancelled.values()))} job(s) cancelled (registry: "
          f"{registry.directory}); trials could not be checked without NNI")
    return 1


def _merge(into: dict[str, list[str]], more: dict[str, list[str]]) -> dict[str, list[str]]:
    for trial_id, job_ids in more.items():
        into.setdefault(trial_id, []).extend(j for j in job_ids if j not in into[trial_id])
    return into


def _wait_for_trials(rest: NniRest, trial_ids: set[str], deadline: float) -> set[str]:
    """Poll NNI until none of ``trial_ids`` is active or the deadline passes; the ones left."""
    still = set(trial_ids)
    while still and time.monotonic() < deadline:
        try:
            statuses = {str(t["trialJobId"]): t.get("status") for t in rest.list_trial_jobs()}
        except NniRestError:
            break
        still = {t for t in still if statuses.get(t) in ACTIVE_TRIAL_STATUSES}
        if still:
            time.sleep(POLL_INTERVAL)
    return still
