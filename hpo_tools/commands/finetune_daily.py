"""``hpo-tools finetune-daily``: one day's finetune with fixed parameters, for cron."""

from __future__ import annotations

import argparse
import datetime
import json
import re
import sys
from typing import Any

from hpo_tools.errors import ConfigError

NAME = "finetune-daily"
HELP = "finetune one day with fixed parameters (the chosen ones), outside any experiment (cron)"
DESCRIPTION = """\
Finetune one day (--bizdate, default yesterday) with fixed parameters, outside any NNI
experiment: the finetune trial file of the search is run for that one day with the parameters
of --params (e.g. the best_params.json `hpo-tools experiment run` exported) and/or
--learning-rate, and the day's score is printed.

The day starts from the model this job trained the day before (its {model_dir} of {predate});
on the very first run, when this job has no finished day yet, from the begin model of the file
([finetune_config] fine_tune_checkpoint). A gap (yesterday not finished) is refused with exit
code 1: run the missing day first, or pass --from-begin.

Each finished day is recorded in the job registry (<exp_dir>/daily/hpo-tools/jobs/<job>.json):
running the same day again does not train again, it prints the recorded score (and checks it
against --min-score). --retrain trains the day again (the trainer resumes from a checkpoint
already in the day's model directory: delete that directory first for a fresh finetune).

Files: <exp_dir>/daily/trials/<job>/ (trial.log, result.json; days/<YYYYMMDD>/ per day).
Exit codes: 0 done (or already done) and not under the floor; 1 the day failed, or a gap;
2 bad input; 3 the day's score is worse than --min-score; 128+N stopped by signal N.

crontab (every day at 06:30, for yesterday):
  30 6 * * * cd /srv/reco && .venv/bin/hpo-tools finetune-daily --config finetune/trial.ini \\
      --params exp/best/best_params.json --min-score 0.70 --exp_dir exp >> daily.log 2>&1
"""

EXIT_FAILED = 1
EXIT_UNDER_FLOOR = 3
_PLAIN_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hpo-tools finetune-daily``."""
    parser.add_argument("--config", required=True, metavar="FILE",
                        help="the finetune trial file (the one the search used)")
    parser.add_argument("--params", metavar="FILE|@FILE|JSON",
                        help="the parameters: a JSON file (best_params.json, or @FILE as for "
                        "`hpo-tools run`) or a JSON object")
    parser.add_argument("--learning-rate", "--learning_rate", dest="learning_rate", type=float,
                        metavar="LR",
                        help="set every learning rate of the training config(s) to LR "
                        "(as hpo-tools set-lr; applied after --params)")
    parser.add_argument("--bizdate", metavar="YYYYMMDD",
                        help="the day to train (default: yesterday)")
    parser.add_argument("--min-score", "--min_score", dest="min_score", type=float,
                        metavar="X",
                        help="exit 3 when the day's score is worse than X (under the floor "
                        "when maximizing, over it when minimizing)")
    parser.add_argument("--exp_dir", "--exp-dir", dest="exp_dir", default="exp", metavar="DIR",
                        help="the daily job's files go under DIR/daily (default: ./exp)")
    parser.add_argument("--job", default="daily", metavar="NAME",
                        help="the job's name, its trial id (default: daily); one chain per name")
    parser.add_argument("--retrain", action="store_true",
                        help="train the day again even if it is recorded as done")
    parser.add_argument("--from-begin", "--from_begin", dest="from_begin", action="store_true",
                        help="start the day from the begin model, not from the previous day")
    parser.add_argument("--interval", type=float, default=1.0, metavar="SECONDS",
                        help="seconds between two metric polls (default: 1)")
    from hpo_tools.trial.schema import add_trial_schema_arguments

    add_trial_schema_arguments(parser)  # as the search's trials (`hpo-tools run --help`)


def load_params(text: str | None) -> dict[str, Any]:
    """``--params``: a JSON object, or a file holding one (``best_params.json`` or, as
    ``hpo-tools run`` takes it, ``@best_params.json``).

    Raises:
        ConfigError: unreadable file, invalid JSON, or not an object.
    """
    from hpo_tools.commands.run import parse_params

    if text is None:
        return {}
    return parse_params(text if text.lstrip().startswith(("{", "@")) else "@" + text)


def _learning_rate_params(finetune: Any, learning_rate: float) -> dict[str, float]:
    """Edits setting every learning rate of the day's training config(s)."""
    from hpo_tools import storage
    from hpo_tools.lr import plan_learning_rate
    from hpo_tools.pbtxt import Document

    sources = [write.src for write in finetune.first.stages[0].config_writes]
    if not sources:
        raise ConfigError(
            f"{finetune.source}: --learning-rate needs a training config: [params_config] "
            "params_src_dst_filepath (platform format) or -Dconfig (classic)"
        )
    edits: dict[str, float] = {}
    for source in sources:
        doc = Document.parse(storage.read_text(source), source=source)
        found, warnings = plan_learning_rate(doc, learning_rate, source=source)
        for warning in warnings:
            print(f"warning: {warning}", file=sys.stderr)
        edits.update(found)
    return edits


def _worse(score: float, floor: float, optimize_mode: Any) -> bool:
    """Whether ``score`` is on the wrong side of ``floor`` for ``optimize_mode``."""
    return optimize_mode.sign * score < optimize_mode.sign * floor


def run(args: argparse.Namespace) -> int:
    """Run (or skip) the day; check the floor; the exit code says how it went."""
    from hpo_tools.dates import Day, parse_date
    from hpo_tools.finetune import read_finetune_file
    from hpo_tools.jobs import JobRegistry
    from hpo_tools.trial.paths import resolve_paths
    from hpo_tools.trial.plan import TrialVariables
    from hpo_tools.trial.reporter import ConsoleReporter
    from hpo_tools.trial.runner import TrialContext, run_plan
    from hpo_tools.trial.schema import schema_from_args
    from hpo_tools.trial.trial_log import TrialLogging, build_masker

    if not _PLAIN_NAME.match(args.job) or args.job in (".", ".."):
        raise ConfigError(f"--job {args.job!r}: expected a plain name (letters, digits, '_', "
                          "'.', '-'): it names the job's registry file and directory")
    if args.bizdate:
        day = parse_date(args.bizdate, what="--bizdate")
    else:
        day = Day(datetime.date.today() - datetime.timedelta(days=1))
    params = load_params(args.params)
    schema = schema_from_args(args)
    paths = resolve_paths("daily", args.job, exp_dir=args.exp_dir, environ={})
    variables = TrialVariables("daily", args.job, str(paths.trial_dir), params)
    finetune = read_finetune_file(args.config, variables=variables, days=[day],
                                  own_model_dir=False)
    if args.learning_rate is not None:
        params = {**params, **_learning_rate_params(finetune, args.learning_rate)}
        variables = TrialVariables("daily", args.job, str(paths.trial_dir), params)
        finetune = read_finetune_file(args.config, variables=variables, days=[day],
                                      own_model_dir=False)

    record = JobRegistry(paths.experiment_dir).load(args.job)
    finished = list(record.finished_stages) if record is not None else []
    already = day.bizdate in finished and not args.retrain
    earlier = sorted(d for d in finished if d < day.bizdate)
    chain = day.previous().bizdate in finished and not args.from_begin
    if not already and not chain and earlier and not args.from_begin:
        print(
            f"error: day {day.previous()} is not finished (the last finished day is "
            f"{earlier[-1]}): run it first (--bizdate {day.previous()}), or pass --from-begin",
            file=sys.stderr,
        )
        return EXIT_FAILED

    reporter = ConsoleReporter(params, experiment_id="daily", trial_id=args.job)
    context = TrialContext("daily", args.job, params, paths)
    plan = finetune.to_plan(chain_first_day=chain, resume=True,
                            retrain=[day] if args.retrain else ())
    masker = build_masker(plan.secrets)
    with TrialLogging(paths, masker):
        outcome = run_plan(plan, reporter, context, masker=masker, interval=args.interval,
                           schema=schema)
    if outcome.status != "succeeded" or outcome.final is None:
        print(f"error: {outcome.message}", file=sys.stderr)
        return outcome.exit_code or EXIT_FAILED
    score = float(outcome.final["score"])
    what = "already done, not trained again" if already else "finetuned"
    print(f"day {day} {what}: score {score:.6g} {json.dumps(outcome.final['values'])}; "
          f"files in {outcome.trial_dir}")
    optimize_mode = plan.optimize_mode
    if args.min_score is not None and _worse(score, args.min_score, optimize_mode):
        print(
            f"error: day {day}: score {score:.6g} is worse than --min-score {args.min_score:g} "
            f"({optimize_mode.value})",
            file=sys.stderr,
        )
        return EXIT_UNDER_FLOOR
    return 0
