"""`hpo-tools unregister`: undo `hpo-tools register` (`nnictl algo unregister PAIAssessor`)."""

from __future__ import annotations

import argparse

from hpo_tools.commands.register import BUILTIN_NAME, nnictl, registered_class, registry_file
from hpo_tools.errors import ConfigError

NAME = "unregister"
HELP = "remove PAIAssessor from NNI's registered algorithms"
DESCRIPTION = """\
Remove the PAIAssessor entry that `hpo-tools register` added to NNI's registered algorithms
($NNI_CONFIG_DIR, else <venv>/nni, else ~/.config/nni). Nothing to do, and exit 0, when it is
not registered. Exit codes: 0 removed or not registered; 2 nnictl failed or left it registered.
"""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This command has no options."""


def run(args: argparse.Namespace) -> int:
    """Unregister; check that NNI no longer knows the name."""
    if registered_class() is None:
        print(f"{BUILTIN_NAME} is not registered in {registry_file()}: nothing to do")
        return 0
    nnictl(["algo", "unregister", BUILTIN_NAME])
    if registered_class() is not None:
        raise ConfigError(f"nnictl algo unregister {BUILTIN_NAME} left it registered in "
                          f"{registry_file()}")
    print(f"unregistered {BUILTIN_NAME} from {registry_file()}")
    return 0
