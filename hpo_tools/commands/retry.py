"""`hpo-tools retry`: re-submit failed trials of a running experiment with their parameters."""

from __future__ import annotations

import argparse
import json
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.nni_rest import connect

NAME = "retry"
HELP = "re-submit the FAILED trials of a running experiment with the parameters they ran with"
DESCRIPTION = """\
Re-submit failed trials of a running NNI experiment as new (customized) trials, with the
parameters each one really ran with: read from the trial's own params.json, written by the trial
runner (E/environments/<env>/trials/<id>/params.json), not from NNI's database, which can pair a
trial with another trial's parameters when trialConcurrency > 1. maxTrialNumber is raised by the
number of trials re-submitted (NNI refuses customized trials once it is reached). A failed trial
without params.json (it failed before the runner got its parameters) is skipped and reported.
The experiment must still be running (`nnictl resume ID` first if it was stopped).
Exit codes: 0 every chosen trial re-submitted (or none had failed); 1 some were skipped (no
params.json); 2 bad input (unknown experiment or --trial, a --trial not FAILED, NNI not
answering).

example:
  hpo-tools retry --experiment k2x8a1bq
  hpo-tools retry --experiment k2x8a1bq --trial Ab3dE --trial Xy9zQ
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument("--experiment", required=True, metavar="ID", help="NNI experiment id")
    parser.add_argument("--trial", action="append", default=[], metavar="TRIAL_ID",
                        help="retry only this failed trial (repeatable; default: every FAILED)")
    parser.add_argument("--experiment-dir", "--experiment_dir", dest="experiment_dir",
                        metavar="DIR", help="the experiment directory E (default: from NNI)")
    parser.add_argument("--port", type=int, help="the experiment's REST port (default: from "
                        "~/nni-experiments/.experiment)")


def params_file(experiment_dir: Path, trial_id: str) -> Path | None:
    """The runner's ``params.json`` of ``trial_id`` under ``E/environments/*/trials/``."""
    for path in sorted(experiment_dir.glob(f"environments/*/trials/{trial_id}/params.json")):
        return path
    standalone = experiment_dir / "trials" / trial_id / "params.json"
    return standalone if standalone.exists() else None


def trial_params(experiment_dir: Path, trial_id: str) -> dict[str, Any] | None:
    """The parameters ``trial_id`` ran with, or None without a params.json.

    Raises:
        ConfigError: the file exists but has no ``params`` object.
    """
    path = params_file(experiment_dir, trial_id)
    if path is None:
        return None
    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable params.json: {err}") from err
    params = doc.get("params") if isinstance(doc, dict) else None
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a JSON object with a 'params' object")
    return params


def run(args: argparse.Namespace) -> int:
    """Raise maxTrialNumber, then queue one customized trial per failed trial."""
    rest, exp_dir = connect(args.experiment, port=args.port, experiment_dir=args.experiment_dir)
    trials = rest.list_trial_jobs()
    statuses = {str(t["trialJobId"]): str(t.get("status")) for t in trials}
    for wanted in args.trial:
        if wanted not in statuses:
            raise ConfigError(f"--trial {wanted}: experiment {args.experiment} has no such trial"
                              f"{did_you_mean(wanted, statuses)}")
        if statuses[wanted] != "FAILED":
            raise ConfigError(f"--trial {wanted}: its status is {statuses[wanted]}, not FAILED")
    chosen = args.trial or [t for t, status in statuses.items() if status == "FAILED"]
    to_submit: list[tuple[str, dict[str, Any]]] = []
    skipped = 0
    for trial_id in chosen:
        params = trial_params(exp_dir, trial_id)
        if params is None:
            skipped += 1
            print(f"skipped trial {trial_id}: no params.json under {exp_dir} (it failed before "
                  f"the runner recorded its parameters)")
        else:
            to_submit.append((trial_id, params))
    if not to_submit:
        print(f"experiment {args.experiment}: no failed trial to retry")
        return 1 if skipped else 0

    profile = rest.get_experiment()
    old_max = profile.get("params", {}).get("maxTrialNumber")
    if old_max is not None:
        new_max = max(int(old_max), len(trials)) + len(to_submit)
        rest.set_max_trial_number(new_max)
        print(f"experiment {args.experiment}: maxTrialNumber {old_max} -> {new_max}")
    for trial_id, params in to_submit:
        sequence = rest.add_customized_trial(params)
        print(f"re-submitted trial {trial_id} as sequence {sequence}: "
              f"{json.dumps(params, sort_keys=True)}")
    print(f"{len(to_submit)} trial(s) re-submitted, {skipped} skipped")
    return 1 if skipped else 0
