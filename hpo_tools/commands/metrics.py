"""`hpo-tools metrics`: read a job's metrics the way a trial would, and print the scored steps.

Useful on its own to check a metric config against a finished (or running) job before an
experiment: one line per scored step, the final score last.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import TYPE_CHECKING

from hpo_tools.errors import ConfigError

if TYPE_CHECKING:
    from hpo_tools.metrics import Report

NAME = "metrics"
HELP = "score a job's metrics (event dir, log or JSON file) with weighted keys"
DESCRIPTION = """\
Read metrics from SOURCE the way a trial does and print one line per scored step, then the
final score. A step counts when it holds every metric with a non-zero weight; its score is the
weighted sum. Several SOURCEs are combined with --source-mode (default: --mode).
Exit codes: 0 a final score was printed; 2 bad options, or no step held every weighted metric
(the message names the metrics required and the ones seen).

examples:
  hpo-tools metrics model_dir/eval_val --metric auc=1 --metric loss=-0.5 --mode best
  hpo-tools metrics train.log --type stdout --metric 'accuracy=([0-9.]+)=1'
  hpo-tools metrics results.jsonl --type json --metric-dict '{"auc": 1}' --json
  hpo-tools metrics oss://bucket/model/eval_val --metric auc=1 --follow --interval 2
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options to ``parser``."""
    parser.add_argument(
        "sources",
        nargs="+",
        metavar="SOURCE",
        help="event directory (local, oss:// or hdfs://), log file or JSON file; several allowed",
    )
    parser.add_argument(
        "--type",
        default="summary",
        dest="source_type",
        help="metric source type: summary (default), stdout, json, or a registered one",
    )
    parser.add_argument(
        "--metric",
        action="append",
        default=[],
        metavar="KEY=WEIGHT",
        help="a metric and its weight (repeatable); for --type stdout KEY is a regex with one "
        "capture group; the weight is after the last '='",
    )
    parser.add_argument(
        "--metric-dict",
        metavar="JSON",
        help='all weights as one JSON object, e.g. \'{"auc": 1, "loss": -0.5}\'',
    )
    parser.add_argument(
        "--mode",
        default="final",
        choices=["final", "best", "avg"],
        help="how a source's steps become its final score (default: final)",
    )
    parser.add_argument(
        "--source-mode",
        choices=["final", "best", "avg"],
        help="how several sources' finals combine (default: --mode)",
    )
    parser.add_argument(
        "--optimize",
        default="maximize",
        choices=["maximize", "minimize"],
        help="direction that --mode best uses (default: maximize)",
    )
    parser.add_argument(
        "--follow",
        action="store_true",
        help="keep following the sources until Ctrl-C (or --timeout), then print the final score",
    )
    parser.add_argument(
        "--interval",
        type=float,
        default=1.0,
        metavar="S",
        help="seconds between polls with --follow (default: 1)",
    )
    parser.add_argument(
        "--timeout",
        type=float,
        metavar="S",
        help="with --follow, stop after S seconds",
    )
    parser.add_argument("--json", action="store_true", help="print JSON lines")


def _weights(args: argparse.Namespace) -> object:
    if args.metric_dict and args.metric:
        raise ConfigError("--metric and --metric-dict: give one or the other")
    if args.metric_dict:
        return args.metric_dict
    if not args.metric:
        raise ConfigError("--metric KEY=WEIGHT: give at least one metric (or --metric-dict JSON)")
    weights: dict[str, object] = {}
    for item in args.metric:
        key, sep, weight = item.rpartition("=")
        if not sep or not key:
            raise ConfigError(f"--metric {item!r}: expected KEY=WEIGHT, e.g. auc=1")
        try:
            weights[key] = float(weight)
        except ValueError:
            raise ConfigError(f"--metric {item!r}: weight {weight!r} is not a number") from None
    return weights


def _line(report: Report, as_json: bool, several: bool, final: bool = False) -> str:
    if as_json:
        record = report.to_dict()
        if final:
            record = {"final": True, **record}
        return json.dumps(record, sort_keys=False)
    values = "  ".join(f"{name}={value:.6g}" for name, value in report.values.items())
    where = f"source {report.source}  " if several else ""
    head = "final  " if final else ""
    return f"{head}{where}step {report.step}  score {report.score:.6g}  {values}".rstrip()


def _stop_on_sigint(stop: threading.Event, interrupted: threading.Event) -> object | None:
    """Make SIGINT set ``stop`` (and ``interrupted``); return the handler to restore, if any.

    Nothing is installed off the main thread (Python only allows it there) or when SIGINT is
    ignored (a background job), which stays ignored.
    """
    if threading.current_thread() is not threading.main_thread():
        return None
    previous = signal.getsignal(signal.SIGINT)
    if previous is signal.SIG_IGN or previous is None:
        return None

    def on_sigint(_signum: int, _frame: object) -> None:
        interrupted.set()
        stop.set()

    signal.signal(signal.SIGINT, on_sigint)
    return previous


def run(args: argparse.Namespace) -> int:
    """Follow or read the sources and print the scored steps and the final score."""
    from hpo_tools.metrics import Follower, MetricSpec, build_source

    if not args.interval > 0:
        raise ConfigError(f"--interval: expected seconds > 0, got {args.interval}")
    spec = MetricSpec.from_config(
        _weights(args),
        final_mode=args.mode,
        optimize_mode=args.optimize,
        source_list_final_mode=args.source_mode,
        key="--metric-dict" if args.metric_dict else "--metric",
    )
    from hpo_tools.platforms import needs_platform_message

    elsewhere = needs_platform_message(args.source_type)
    if elsewhere is not None:  # no platform here: the trial runner reads such sources
        raise ConfigError(f"--type {args.source_type}: {elsewhere} (hpo-tools run reads it)")
    sources = [
        build_source(args.source_type, location, spec=spec, key="--type")
        for location in args.sources
    ]
    several = len(sources) > 1
    follower = Follower(sources, spec, interval=args.interval)

    def emit(report: Report, final: bool = False) -> None:
        print(_line(report, args.json, several, final), flush=True)

    if args.follow:
        stop = threading.Event()
        timer = None
        if args.timeout is not None:
            timer = threading.Timer(max(args.timeout, 0.0), stop.set)
            timer.daemon = True
            timer.start()
        # Ctrl-C sets `stop` instead of raising KeyboardInterrupt wherever it lands: a poll's
        # steps are marked reported before they are printed, so an exception in the middle of
        # printing them would lose the rest of the batch (or cut a line in half).
        interrupted = threading.Event()
        previous = _stop_on_sigint(stop, interrupted)
        try:
            for report in follower.follow(stop):
                emit(report)
        finally:
            if timer is not None:
                timer.cancel()
            if previous is not None:
                signal.signal(signal.SIGINT, previous)
        if interrupted.is_set():
            print("stopped following", file=sys.stderr)
    else:
        for report in follower.poll():
            emit(report)
    for report in follower.drain():
        emit(report)
    emit(follower.close(), final=True)
    return 0
