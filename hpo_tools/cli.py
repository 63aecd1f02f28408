"""`hpo-tools` command line: parse arguments, call the library, print. One module per subcommand.

Every subcommand lives in ``hpo_tools/commands/<module>.py`` and defines::

    NAME = "edit"                      # the subcommand as typed
    HELP = "one line for `hpo-tools --help`"
    def add_arguments(parser: argparse.ArgumentParser) -> None: ...
    def run(args: argparse.Namespace) -> int: ...   # exit code

Command modules import heavy libraries (NNI, pyodps, TensorFlow) inside ``run``, never at the top,
so that ``hpo-tools --help`` stays fast. Errors are mapped to exit codes in one place, here.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from collections.abc import Sequence
from types import ModuleType

from hpo_tools import __version__
from hpo_tools.errors import HpoError

__all__ = ["main", "entrypoint", "COMMAND_MODULES"]

# Modules under hpo_tools.commands, in the order `--help` lists them.
COMMAND_MODULES: tuple[str, ...] = (
    "make_data",
    "check",
    "run",
    "experiment",
    "metrics",
    "edit",
    "get",
    "set_lr",
    "finetune_daily",
    "kill",
    "retry",
    "register",
    "unregister",
    "migrate",
)

EXIT_USER_ERROR = 2
EXIT_INTERRUPTED = 130


def _load_commands() -> list[ModuleType]:
    return [importlib.import_module(f"hpo_tools.commands.{name}") for name in COMMAND_MODULES]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="hpo-tools",
        description="Hyperparameter optimization on NNI for EasyRec-style pipeline.config files.",
    )
    parser.add_argument("--version", action="version", version=f"hpo-tools {__version__}")
    parser.add_argument(
        "-v", "--verbose", action="count", default=0, help="more log output (-vv for debug)"
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    subparsers.required = True
    for module in _load_commands():
        sub = subparsers.add_parser(
            module.NAME,
            help=module.HELP,
            description=getattr(module, "DESCRIPTION", module.HELP),
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        module.add_arguments(sub)
        sub.set_defaults(_run=module.run)
    return parser


def configure_logging(verbosity: int) -> None:
    """Log to stderr; only the CLI configures handlers."""
    level = logging.WARNING if verbosity <= 0 else logging.INFO if verbosity == 1 else logging.DEBUG
    fmt = "%(levelname)s %(name)s: %(message)s"
    logging.basicConfig(level=level, format=fmt, stream=sys.stderr)


def _announce_fake_cloud() -> None:
    """Under ``HPO_TOOLS_FAKE_CLOUD`` say so first, so a dry run is never taken for a real one."""
    from hpo_tools.cloud import notice

    line = notice()
    if line:
        print(line, file=sys.stderr)


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``hpo-tools`` with ``argv`` (default: ``sys.argv[1:]``); return the exit code."""
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.verbose)
    try:
        _announce_fake_cloud()
        return int(args._run(args))
    except HpoError as err:
        print(f"error: {err}", file=sys.stderr)
        return EXIT_USER_ERROR
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def entrypoint() -> None:
    """Console-script entry point."""
    sys.exit(main())
