"""`hpo-tools register`: register PAIAssessor with NNI (`nnictl algo register`)."""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

from hpo_tools.errors import ConfigError

NAME = "register"
HELP = "register PAIAssessor with NNI, so configs can say `assessor: {name: PAIAssessor}`"
DESCRIPTION = """\
Register hpo-tools' assessor with NNI under the name PAIAssessor (nnictl algo register), so that
an experiment config can use it by name:

  assessor:
    name: PAIAssessor
    classArgs: {optimize_mode: maximize, start_step: 10}

The registration lives in NNI's config directory: $NNI_CONFIG_DIR when set, else <venv>/nni
inside a virtual environment, else ~/.config/nni. NNI's dispatcher imports
hpo_tools.assessor.PAIAssessor, so run the experiment with the Python hpo-tools is installed in.
Registering again updates the entry; `hpo-tools unregister` removes it.
Exit codes: 0 registered; 2 nnictl failed or did not register it (its last output line shown).
"""

BUILTIN_NAME = "PAIAssessor"
CLASS_NAME = "hpo_tools.assessor.PAIAssessor"
NNICTL_TIMEOUT = 120.0


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """This command has no options."""


def nnictl(arguments: Sequence[str], timeout: float = NNICTL_TIMEOUT) -> str:
    """Run ``nnictl <arguments>`` with this Python; return its output (stdout + stderr).

    Raises:
        ConfigError: nnictl could not run, timed out or exited non-zero.
    """
    command = [sys.executable, "-m", "nni.tools.nnictl.nnictl", *arguments]
    shown = "nnictl " + " ".join(arguments)
    try:
        result = subprocess.run(command, capture_output=True, text=True, timeout=timeout,
                                stdin=subprocess.DEVNULL)
    except subprocess.TimeoutExpired:
        raise ConfigError(f"{shown}: no answer in {timeout:.0f} s") from None
    except OSError as err:
        raise ConfigError(f"{shown}: cannot run {sys.executable}: {err}") from err
    output = (result.stdout or "") + (result.stderr or "")
    if result.returncode != 0:
        raise ConfigError(f"{shown} failed (exit {result.returncode}): {_last_line(output)}")
    return output


def registered_class(name: str = BUILTIN_NAME) -> str | None:
    """The class NNI has registered under ``name`` (case-insensitive), or None."""
    from nni.tools.package_utils import get_algo_meta

    meta = get_algo_meta(name)
    return None if meta is None else meta.class_name


def registry_file() -> Path:
    """NNI's file of registered algorithms (honours ``NNI_CONFIG_DIR``)."""
    from nni.runtime.config import get_config_directory

    return get_config_directory() / "registered_algorithms.yml"


def _last_line(output: str) -> str:
    lines = [line.strip() for line in output.splitlines() if line.strip()]
    return lines[-1] if lines else "(no output)"


def run(args: argparse.Namespace) -> int:
    """Write the meta file to a temp dir, `nnictl algo register` it, check it took."""
    import yaml

    meta = {"algoType": "assessor", "builtinName": BUILTIN_NAME, "className": CLASS_NAME}
    with tempfile.TemporaryDirectory(prefix="hpo-tools-register-") as tmp:
        meta_path = Path(tmp) / "pai_assessor_meta.yml"
        meta_path.write_text(yaml.safe_dump(meta, sort_keys=False), encoding="utf-8")
        output = nnictl(["algo", "register", "--meta", str(meta_path)])
    found = registered_class()
    if found != CLASS_NAME:
        # nnictl reports some failures (a builtin of that name) with exit code 0.
        raise ConfigError(f"nnictl algo register did not register {BUILTIN_NAME} "
                          f"(registered class: {found}): {_last_line(output)}")
    print(f"registered {BUILTIN_NAME} ({CLASS_NAME}) in {registry_file()}")
    return 0
