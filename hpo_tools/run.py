"""``python -m hpo_tools.run --config FILE [--exp_dir DIR]``: NNI's ``trialCommand``.

Runs one trial: parameters from NNI when running under NNI (``NNI_PLATFORM`` set), else the
empty parameter set with results printed (use ``hpo-tools run --params`` to choose them). Exit
codes: 0 succeeded, 1 failed (also an error after a job was launched), 2 bad trial file or an
error before any job was launched (nothing launched). A trial stopped by SIGINT or
SIGTERM cancels its jobs and then dies by that same signal (a shell shows 130 or 143): NNI records
a trial that dies by a signal as USER_CANCELED, but one that exits 130 as FAILED. Before the
runner takes the signals over (while NNI hands out the parameters, or the trial file is read)
SIGTERM is handled as Python handles SIGINT: it raises, ``result.json`` records the trial as
cancelled, and the process still dies by it.

A finetune trial (docs/finetune.md) runs day by day when ``--start_time``/``--end_time`` are
given or the file has days of its own.

Config edits are applied like EasyRec's ``edit_config`` with a schema: ``--proto-path DIR
--message PKG.MSG`` or ``--proto-module MODULE:MSG``, else an installed EasyRec's unless
``--no-easyrec-schema`` (see :mod:`hpo_tools.trial.schema`).

Nothing here imports TensorFlow, and ``nni`` is imported only under NNI.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from hpo_tools.errors import HpoError

if TYPE_CHECKING:
    from hpo_tools.trial.reporter import Reporter

__all__ = ["main", "build_parser", "exit_like"]

_logger = logging.getLogger(__name__)

EXIT_USER_ERROR = 2


def build_parser() -> argparse.ArgumentParser:
    """The strict argument parser (a mistyped flag is an error, not ignored)."""
    parser = argparse.ArgumentParser(
        prog="python -m hpo_tools.run",
        description="Run one trial of an NNI experiment from a trial file "
        "(classic config_begin.ini or platform trial.ini). With HPO_TOOLS_FAKE_CLOUD=DIR "
        "nothing goes to any cloud: a dry run (docs/running-trials.md).",
    )
    parser.add_argument("--config", required=True, metavar="FILE", help="the trial file")
    parser.add_argument(
        "--exp_dir",
        "--exp-dir",
        dest="exp_dir",
        metavar="DIR",
        help="experiment directories go under DIR/<experiment id> "
        "(default: NNI's own experiment directory under NNI, else ./exp)",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="SECONDS",
        help="seconds between two metric polls (default: 1)",
    )
    parser.add_argument(
        "--start_time",
        "--start-time",
        dest="start_time",
        metavar="DATE",
        help="finetune: the first day (YYYY-MM-DD or YYYYMMDD); see docs/finetune.md",
    )
    parser.add_argument(
        "--end_time",
        "--end-time",
        dest="end_time",
        metavar="DATE",
        help="finetune: the last day, included",
    )
    from hpo_tools.trial.schema import add_trial_schema_arguments

    add_trial_schema_arguments(parser)
    return parser


def _reporter(environ: Mapping[str, str]) -> Reporter:
    from hpo_tools.trial.reporter import ConsoleReporter, NniReporter, under_nni

    if under_nni(environ):
        return NniReporter()
    return ConsoleReporter({})


def _announce_fake_cloud() -> None:
    """Under ``HPO_TOOLS_FAKE_CLOUD`` say so first (stderr), so a dry run is never taken for a
    real one."""
    from hpo_tools.cloud import notice

    line = notice()
    if line:
        print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the trial; return the exit code."""
    args = build_parser().parse_args(argv)
    if not logging.getLogger().handlers:
        logging.basicConfig(
            level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s", stream=sys.stderr
        )
    from hpo_tools.trial.outcome import EXIT_FAILED
    from hpo_tools.trial.reporter import ReporterChannelLost
    from hpo_tools.trial.schema import schema_from_args
    from hpo_tools.trial.signals import TrialCancelled, sigterm_raises
    from hpo_tools.trial_files import run_trial_file

    try:
        with sigterm_raises():
            _announce_fake_cloud()
            schema = schema_from_args(args)
            reporter = _reporter(os.environ)
            # A window on the command line makes any trial file a finetune trial; a file with
            # days of its own is one anyway (hpo_tools.trial_files decides, docs/finetune.md).
            outcome = run_trial_file(
                args.config,
                reporter,
                exp_dir=args.exp_dir,
                interval=args.interval,
                start_time=args.start_time,
                end_time=args.end_time,
                schema=schema,
            )
    except ReporterChannelLost as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_FAILED
    except HpoError as err:  # before any job was launched: run_trial fails the trial after
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except (KeyboardInterrupt, TrialCancelled) as err:  # before any job was launched
        signum = int(getattr(err, "signum", signal.SIGINT))
        print(f"interrupted by {signal.Signals(signum).name}", file=sys.stderr)
        return 128 + signum  # exit_like: dies by it
    if outcome.status != "succeeded":
        print(f"trial {outcome.status}: {outcome.message}", file=sys.stderr)
    return outcome.exit_code


def exit_like(code: int) -> None:
    """End the process with ``code``; ``128 + SIGINT|SIGTERM`` dies by that signal instead.

    NNI 3.0 records a trial that exits non-zero as FAILED and one killed by a signal as
    USER_CANCELED (API-NOTES §0.2), which is what a trial stopped by the assessor or the user is.
    The jobs are already cancelled when this runs.
    """
    signum = code - 128
    if signum in (signal.SIGINT, signal.SIGTERM):
        sys.stdout.flush()
        sys.stderr.flush()
        signal.signal(signum, signal.SIG_DFL)
        os.kill(os.getpid(), signum)
    sys.exit(code)


if __name__ == "__main__":
    exit_like(main())
