"""`hpo-tools check`: render a trial file over the corners of a search space, launch nothing."""

from __future__ import annotations

import argparse

NAME = "check"
HELP = "check a trial file against a search space before spending on an experiment"
DESCRIPTION = """\
Render the trial file and the edited training config for every corner of the search space
(every choice value, the bounds of every range; randint's upper bound is exclusive) without
launching anything, and report every problem at once: ${...} left undefined, unknown sections
and keys and bad values of the trial file, config keys that do not resolve, values that do
not fit their field, unreadable files, bad metric settings.
Exit 0 only when all is well, 1 when problems were found (an unreadable trial file or search
space is one), 2 when the schema options are unusable.

Run it from the directory the trials run in (NNI's trialCodeDirectory): relative paths in the
trial file are resolved from there. The config edits are checked as `hpo-tools run` and
`python -m hpo_tools.run` apply them, with the same schema options: with a schema
(--proto-path DIR --message PKG.MSG, or --proto-module MODULE:MSG; else an installed EasyRec's,
easy_rec.python.protos.pipeline_pb2:EasyRecConfig, unless --no-easyrec-schema) values are
checked against the field types, and fields the config does not hold yet but the schema knows
may be set. Without one, a classic -Dedit_config_json edit of an absent field is left to
EasyRec on the platform (a warning, not a problem); a search-space key naming one is a problem.

With HPO_TOOLS_FAKE_CLOUD=DIR, oss://BUCKET/KEY is read from DIR/BUCKET/KEY (a dry run with no
cloud account; docs/running-trials.md).

example:
  hpo-tools check --config trial.ini --search-space search_space.json
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add this command's options."""
    parser.add_argument("--config", required=True, metavar="FILE", help="the trial file")
    parser.add_argument(
        "--search-space",
        "--search_space",
        dest="search_space",
        required=True,
        metavar="FILE",
        help="the NNI search-space JSON file",
    )
    from hpo_tools.trial.schema import add_trial_schema_arguments

    add_trial_schema_arguments(parser)


def run(args: argparse.Namespace) -> int:
    """Print every problem; 0 when there is none."""
    from hpo_tools.check import check_trial_file
    from hpo_tools.trial.schema import schema_from_args

    problems = check_trial_file(args.config, args.search_space, schema=schema_from_args(args))
    if not problems:
        print(f"ok: {args.config} renders at every corner of {args.search_space}")
        return 0
    for problem in problems:
        print(f"problem: {problem}")
    print(f"{len(problems)} problem(s) found")
    return 1
