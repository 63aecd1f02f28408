"""`hpo-tools experiment run|best`: headless NNI experiments and best-trial export."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

NAME = "experiment"
HELP = "run an NNI experiment headless, or re-export the best trial of one"
DESCRIPTION = """\
Run an NNI experiment without the web UI, or re-export the best trial of an experiment.

  hpo-tools experiment run CONFIG.yml [--port P] [--timeout S] [--working-dir DIR]
                           [--no-check]
      Checks the trial file named by trialCommand's --config and the search space (as
      `hpo-tools check` does; refuses to start when that fails), starts the experiment through
      NNI's Python API, prints a progress line whenever something changes, waits for the end,
      prints a summary table, writes the best trial's parameters and its edited training config
      to <experiment dir>/best/ (best_params.json, best_trial.json, pipeline.config), copies
      its event files to [output_config] summary_path and its model directory to model_path
      when the trial file has that section (a failed copy is a warning, not an exit code),
      draws <experiment dir>/report.png (each trial's score over its steps, the best score
      so far over time, the best trial's parameters; needs matplotlib: pip install
      'hpo-tools[report]', else one notice line) and prints its path, and stops the
      experiment, also on Ctrl-C. The summary names the first error of each failed trial.
      Exit 0 when at least one trial succeeded and the experiment did not end in ERROR; 1
      otherwise: no trial succeeded, or the experiment ended in ERROR (e.g. the tuner or
      assessor failed: its own error is read from <experiment dir>/log/dispatcher.log), or
      NNI's manager died, or the best trial could not be exported; the summary is printed,
      then one `error: ...` line; 2 on bad input (nothing started), 130 after Ctrl-C or
      SIGTERM. --no-check skips the check.

  hpo-tools experiment best ID [--working-dir DIR | --experiment-dir DIR]
                           [--mode maximize|minimize] [--copy-outputs]
      Re-export the best trial of a finished or running experiment from its directory: the
      experiment directory itself with --experiment-dir (as in `kill` and `retry`), else ID/
      under --working-dir (as in `experiment run`), else where NNI's manifest says, else
      ~/nni-experiments/ID. --copy-outputs also copies the best trial's event files and model
      to its [output_config] summary_path / model_path (what `experiment run` does at the
      end; the way to do it for an experiment started with nnictl create). Also draws
      <experiment dir>/report.png, as `experiment run` does. Exit 0 when a best
      trial was exported (and copied), 1 when no trial has succeeded yet or a copy failed
      (one `error: ...` line each), 2 when there is no such experiment directory.

The best trial is chosen from each trial's own record (params.json / result.json written by the
trial runner), never from NNI's database, which can pair a trial with another trial's parameters.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `run` and `best` actions."""
    actions = parser.add_subparsers(dest="action", metavar="ACTION")
    actions.required = True

    run = actions.add_parser(
        "run", help="run an experiment to its end and export the best trial",
        description="Run an NNI experiment headless and export its best trial.")
    run.add_argument("config", metavar="CONFIG.yml", help="NNI v2 experiment config")
    run.add_argument("--port", type=int, default=None,
                     help="port of NNI's manager and web UI (default: a free port)")
    run.add_argument("--timeout", type=float, default=None, metavar="S",
                     help="stop the experiment after S seconds (default: no limit)")
    run.add_argument("--working-dir", default=None, metavar="DIR",
                     help="overrides experimentWorkingDirectory of CONFIG.yml")
    run.add_argument("--no-check", action="store_true",
                     help="skip the `hpo-tools check` of the trial file and search space")

    best = actions.add_parser(
        "best", help="re-export the best trial of an experiment",
        description="Re-export the best trial of a finished or running experiment to "
                    "<experiment dir>/best/.")
    best.add_argument("experiment_id", metavar="ID", help="NNI experiment id")
    where = best.add_mutually_exclusive_group()
    where.add_argument("--working-dir", default=None, metavar="DIR",
                       help="the experiment working directory that holds ID/, as in `experiment "
                            "run` (default: where NNI's manifest says, else ~/nni-experiments)")
    where.add_argument("--experiment-dir", "--experiment_dir", dest="experiment_dir",
                       default=None, metavar="DIR",
                       help="the experiment directory itself (<working dir>/ID), as in `kill` "
                            "and `retry`")
    best.add_argument("--mode", choices=("maximize", "minimize"), default=None,
                      help="rank trials this way (default: the tuner's optimize_mode)")
    best.add_argument("--copy-outputs", "--copy_outputs", dest="copy_outputs",
                      action="store_true",
                      help="also copy the best trial's event files (events.out.tfevents.*) to "
                           "its trial file's [output_config] summary_path and its model "
                           "directory to model_path (local or oss://), as `experiment run` "
                           "does at the end")


def run(args: argparse.Namespace) -> int:
    """Dispatch to the action."""
    if args.action == "run":
        return _run(args)
    return _best(args)


def _print(line: str) -> None:
    print(line, flush=True)


def _run(args: argparse.Namespace) -> int:
    from hpo_tools import experiment

    def on_start(experiment_id: str, root: Path, port: int) -> None:
        _print(f"experiment {experiment_id} started: web UI http://127.0.0.1:{port}, "
               f"directory {root}")

    def on_progress(snapshot: experiment.Snapshot) -> None:
        _print(experiment.format_progress(snapshot))

    from hpo_tools.errors import ConfigError

    if args.timeout is not None and args.timeout <= 0:
        raise ConfigError(f"--timeout: expected a positive number of seconds, got {args.timeout}")
    if args.port is not None and not 0 < args.port < 65536:
        raise ConfigError(f"--port: expected a TCP port 1-65535, got {args.port}")
    result = experiment.run_experiment(
        args.config, port=args.port, timeout=args.timeout, working_dir=args.working_dir,
        checker=None if args.no_check else experiment.default_checker,
        on_start=on_start, on_progress=on_progress)
    for copy in result.outputs:  # a failed copy was logged as a warning already
        if copy.ok:
            _print(copy.describe())
    if result.timed_out:
        _print(f"timeout: stopped after {args.timeout:g} s")
    if result.interrupted:
        _print("interrupted: experiment stopped")
    _print("")
    _print(experiment.format_summary(result.snapshot, result.export))
    if result.report is not None:
        _print(f"report: {result.report}")
    if result.lost_manager is not None:
        print(f"error: {result.lost_manager}", file=sys.stderr)
    if result.export_error is not None:
        print(f"error: could not export the best trial: {result.export_error} (retry with "
              f"hpo-tools experiment best {result.experiment_id} --experiment-dir "
              f"{result.files.root})", file=sys.stderr)
    if result.failure is not None:
        # Last: an experiment that ended in ERROR did not run as configured, whatever succeeded.
        print(f"error: {result.failure}", file=sys.stderr)
    if result.interrupted:
        return 130
    if result.failure is not None or result.lost_manager is not None \
            or result.export_error is not None:
        return 1
    return 0 if result.succeeded > 0 else 1


def _best(args: argparse.Namespace) -> int:
    from hpo_tools import experiment

    if args.experiment_dir is not None:
        root = experiment.given_experiment_dir(args.experiment_id, args.experiment_dir)
    else:
        root = experiment.find_experiment_dir(args.experiment_id, args.working_dir)
    files = experiment.experiment_files(root)
    snapshot, export = experiment.export_best_of_experiment(files, args.mode)
    _print(experiment.format_summary(snapshot, export))
    from hpo_tools.experiment.report import REPORT_NAME, try_write_report

    report = try_write_report(snapshot, files.root / REPORT_NAME)
    if report is not None:  # else one warning line said why
        _print(f"report: {report}")
    if export is None or snapshot.best is None:
        return 1
    if args.copy_outputs:
        from hpo_tools.errors import HpoError

        trial_file, _ = experiment.stored_trial_file(files) or (None, None)
        try:
            with experiment.trial_file_oss_credentials(trial_file, snapshot.best.run,
                                                       files.experiment_id):
                copies = experiment.copy_best_outputs(snapshot.best.run)
        except HpoError as err:  # no [output_config] recorded: nothing copied
            print(f"error: {err}", file=sys.stderr)
            return 1
        failed = False
        for copy in copies:
            if copy.ok:
                _print(copy.describe())
            else:
                print(f"error: {copy.describe()}", file=sys.stderr)
                failed = True
        return 1 if failed else 0
    return 0
