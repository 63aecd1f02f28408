"""`hpo-tools run`: one trial outside any experiment, with the console reporter."""

from __future__ import annotations

import argparse
import json
import re
import signal
import sys
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError

# A trial id names a directory (E/trials/<id>) and a registry file: a plain path component,
# not starting with a dot (".." would leave E/trials/). NNI's own ids are 5 alphanumerics.
_TRIAL_ID = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")

NAME = "run"
HELP = "run one trial from a trial file with given parameters, outside any experiment"
DESCRIPTION = """\
Run one trial from a trial file (classic config_begin.ini or platform trial.ini) with the
parameters given, outside any NNI experiment: the edited configs are written, the commands run on
the file's platform, and each result that would go to NNI is printed. This is how to debug a trial
file before starting an experiment.

Files go to <exp_dir>/<experiment id>/trials/<trial id>/
(default ./exp/standalone/trials/standalone): trial.log, params.json, result.json.

Config edits behave like EasyRec's edit_config when there is a schema: an edit naming a field
of the schema that the config does not hold creates it, and values are checked against the
field types. The schema is --proto-path DIR --message PKG.MSG or --proto-module MODULE:MSG,
else that of an installed EasyRec (easy_rec.python.protos.pipeline_pb2:EasyRecConfig, for a
config whose top-level fields it knows) unless --no-easyrec-schema. Without one, an absent
field is an error (a typo in a search-space key is caught), except an edit of the classic
format's own -Dedit_config_json: it is left to EasyRec on the platform, with one notice.
Exit codes: 0 succeeded, 1 failed (also an error after a job was launched), 2 bad input
or an error before any job was launched, 128+N stopped by signal N.

Dry run without a cloud account: HPO_TOOLS_FAKE_CLOUD=DIR reads and writes oss://BUCKET/KEY
as DIR/BUCKET/KEY and records MaxCompute jobs in DIR/.maxcompute/submissions.jsonl and DLC jobs
in DIR/.dlc/submissions.jsonl instead of submitting them; they stay RUNNING until cancelled
unless HPO_TOOLS_FAKE_CLOUD_JOBS=succeed|fail or DIR/.dlc/plan.json says otherwise
(docs/running-trials.md). Keys must still be configured (any values).

example:
  hpo-tools run --config trial.ini --params '{"train_config.lr": 0.001}'
  hpo-tools run --config trial.ini --params @params.json --exp_dir ./exp
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument("--config", required=True, metavar="FILE", help="the trial file")
    parser.add_argument(
        "--params",
        required=True,
        metavar="JSON|@FILE",
        help="the parameters as a JSON object, or @FILE to read them from FILE",
    )
    parser.add_argument(
        "--exp_dir",
        "--exp-dir",
        dest="exp_dir",
        metavar="DIR",
        help="experiment directories go under DIR/<experiment id> (default: ./exp)",
    )
    parser.add_argument(
        "--trial-id",
        "--trial_id",
        dest="trial_id",
        default="standalone",
        help="the trial id: letters, digits, '_', '.', '-' (default: standalone); "
        "resume=1 skips what this id already finished",
    )
    parser.add_argument(
        "--interval", type=float, default=1.0, metavar="SECONDS",
        help="seconds between two metric polls (default: 1)",
    )
    from hpo_tools.trial.schema import add_trial_schema_arguments

    add_trial_schema_arguments(parser)


def parse_params(text: str) -> dict[str, Any]:
    """``--params``: a JSON object, or ``@file`` holding one.

    Raises:
        ConfigError: unreadable file, invalid JSON, or not an object.
    """
    where = "--params"
    if text.startswith("@"):
        path = Path(text[1:])
        where = f"--params {path}"
        try:
            text = path.read_text(encoding="utf-8")
        except OSError as err:
            raise ConfigError(f"{where}: cannot read: {err.strerror or err}") from err
    try:
        params = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(f"{where}: not valid JSON: {err.msg} at column {err.colno}") from err
    if not isinstance(params, dict):
        raise ConfigError(f"{where}: expected a JSON object, got {type(params).__name__}")
    return params


def check_trial_id(trial_id: str) -> str:
    """``--trial-id``: a plain name that is safe as one path component.

    Raises:
        ConfigError: a separator, a leading dot, another character, or more than 64 of them.
    """
    if not _TRIAL_ID.fullmatch(trial_id):
        raise ConfigError(
            f"--trial-id {trial_id!r}: expected 1-64 letters, digits, '_', '.' or '-', "
            "not starting with '.' (it names the trial's directory)"
        )
    return trial_id


def run(args: argparse.Namespace) -> int:
    """Run the trial; the exit code is the trial's."""
    from hpo_tools.trial.reporter import ConsoleReporter
    from hpo_tools.trial.schema import schema_from_args
    from hpo_tools.trial.signals import TrialCancelled, sigterm_raises
    from hpo_tools.trial_files import run_trial_file

    trial_id = check_trial_id(args.trial_id)
    params = parse_params(args.params)
    schema = schema_from_args(args)
    reporter = ConsoleReporter(params, trial_id=trial_id)
    try:
        # A SIGTERM before the runner's handlers is recorded in result.json as SIGINT is.
        with sigterm_raises():
            outcome = run_trial_file(args.config, reporter, exp_dir=args.exp_dir,
                                     interval=args.interval, schema=schema)
    except TrialCancelled as err:
        print(f"interrupted by {signal.Signals(err.signum).name}", file=sys.stderr)
        return 128 + err.signum
    if outcome.status == "succeeded":
        print(f"trial succeeded; files in {outcome.trial_dir}")
    else:
        print(f"trial {outcome.status}: {outcome.message}; files in {outcome.trial_dir}")
    return outcome.exit_code
