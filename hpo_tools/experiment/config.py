"""The experiment's configuration: its YAML, the trial file it names, and NNI's stored profile.

``load_experiment_config`` validates an NNI v2 experiment YAML; the ``stored_*`` functions read
the profile NNI saved in ``E/db/nni.sqlite``, so a finished experiment can be re-exported without
its YAML.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import sqlite3
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.experiment.records import ExperimentFiles

_logger = logging.getLogger(__name__)


DEFAULT_WORKING_DIRECTORY = "~/nni-experiments"


def load_experiment_config(path: str | os.PathLike[str], working_dir: str | None = None) -> Any:
    """Load and validate an NNI v2 experiment YAML (``nni.experiment.ExperimentConfig``).

    Relative paths in the file resolve against its directory (NNI's rule).

    Args:
        path: the experiment YAML.
        working_dir: overrides ``experimentWorkingDirectory``.

    Returns:
        The loaded ``ExperimentConfig``.

    Raises:
        ConfigError: the file is missing, not YAML, has unknown keys or does not validate.
    """
    from nni.experiment import ExperimentConfig

    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: experiment config not found")
    from nni.experiment.config import utils as nni_config_utils

    try:
        config = ExperimentConfig.load(str(path))
    except Exception as err:  # NNI raises AttributeError/ValueError/yaml errors alike
        raise ConfigError(f"{path}: not a valid NNI experiment config: {_one_line(err)}") from err
    finally:
        # NNI leaves its relative-path base set when loading fails, and every later load in
        # this process then fails with a bare AssertionError.
        nni_config_utils.unset_base_path()
    if working_dir is not None:
        config.experiment_working_directory = str(Path(working_dir).expanduser().resolve())
    try:
        config.validate()
    except Exception as err:
        raise ConfigError(f"{path}: {_one_line(err)}") from err
    check_tuner_dependencies(getattr(config, "tuner", None), str(path))
    return config


_TUNERS_EXTRA = "pip install 'hpo-tools[tuners]'"
_TUNER_NEEDS: dict[str, tuple[tuple[str, ...], str]] = {
    "anneal": (("hyperopt",), _TUNERS_EXTRA),
    "tpe_legacy": (("hyperopt",), _TUNERS_EXTRA),
    "bohb": (("ConfigSpace", "statsmodels"), _TUNERS_EXTRA),
    "hpo_tools.tuners.safebohb": (("ConfigSpace", "statsmodels"), _TUNERS_EXTRA),
    "nni.algorithms.hpo.bohb_advisor.bohb": (("ConfigSpace", "statsmodels"), _TUNERS_EXTRA),
    "smac": (("smac", "ConfigSpaceNNI"),
             "they do not build on Python 3.11 (docs/experiments.md): choose another tuner"),
    "dngo": (("torch", "pybnn"), "pip install 'nni[dngo]'"),
    "ppo": (("gym",), "pip install 'nni[ppotuner]'"),
    "ppotuner": (("gym",), "pip install 'nni[ppotuner]'"),
    "networkmorphism": (("torch",), "pip install torch"),
}
"""NNI tuners (built-in name or alias, or class name; lower case) whose modules need packages
nni does not install: (top-level modules, how to get them)."""


def check_tuner_dependencies(tuner: Any, source: str = "config.yml") -> None:
    """Refuse a known tuner whose dependencies are not installed, before NNI starts.

    Without this, NNI's dispatcher dies at start and NNI says only "Tuner did not connect in 10
    seconds", 10 s later. Checked in this interpreter, which is the one NNI runs the tuner in.

    Args:
        tuner: the config's ``tuner`` section (``name`` or ``className``), or None.
        source: the experiment YAML, for messages.

    Raises:
        ConfigError: naming the tuner, the missing modules and how to install them.
    """
    import importlib.util

    name = getattr(tuner, "name", None) or getattr(tuner, "class_name", None)
    if not name or str(name).lower() not in _TUNER_NEEDS:
        return
    modules, install = _TUNER_NEEDS[str(name).lower()]
    missing = [m for m in modules if importlib.util.find_spec(m) is None]
    if missing:
        raise ConfigError(
            f"{source}: tuner: {name} needs {', '.join(missing)}, not installed: {install}")


def _one_line(err: BaseException) -> str:
    problem, mark = getattr(err, "problem", None), getattr(err, "problem_mark", None)
    if problem and mark is not None:  # a YAML syntax error: its last line is only the place
        return f"line {mark.line + 1}, column {mark.column + 1}: {problem}"
    text = str(err).strip().splitlines()
    return text[-1] if text else type(err).__name__


def _option_value(argv: Sequence[str], option: str) -> str | None:
    for index, arg in enumerate(argv):
        if arg == option and index + 1 < len(argv):
            return argv[index + 1]
        if arg.startswith(option + "="):
            return arg[len(option) + 1:]
    return None


def trial_file_from_command(
    trial_command: str, code_directory: str | os.PathLike[str], source: str = "config.yml"
) -> Path:
    """The trial file named by ``--config`` in ``trialCommand``, relative to the code directory.

    Args:
        trial_command: e.g. ``python3 -m hpo_tools.run --config trial.ini``.
        code_directory: ``trialCodeDirectory`` (the trial's working directory).
        source: the experiment YAML, for messages.

    Returns:
        The trial file's path.

    Raises:
        ConfigError: the command has no ``--config FILE`` or is not one plain command.
    """
    try:
        argv = shlex.split(trial_command)
    except ValueError as err:
        raise ConfigError(f"{source}: trialCommand: cannot parse {trial_command!r}: {err}") from err
    for token in argv:
        if token in ("&&", "||", ";", "|") or token.endswith(";"):
            raise ConfigError(
                f"{source}: trialCommand: use one plain command (no {token!r}): NNI's SIGINT "
                "reaches only the trial's direct process, so a chained runner is never stopped")
    value = _option_value(argv, "--config")
    if not value:
        raise ConfigError(
            f"{source}: trialCommand: expected 'python3 -m hpo_tools.run --config FILE', "
            f"got {trial_command!r}")
    trial_file = Path(value)
    if not trial_file.is_absolute():
        trial_file = Path(code_directory) / trial_file
    return trial_file


def _check_mode(optimize_mode: str) -> str:
    mode = str(optimize_mode).lower()
    if mode not in ("maximize", "minimize"):
        raise ConfigError(
            f"optimize_mode: expected 'maximize' or 'minimize', got {optimize_mode!r}")
    return mode


def optimize_mode_of(config: Any) -> str:
    """The experiment's optimize mode: the tuner's ``optimize_mode`` class argument.

    Falls back to the assessor's, then to ``maximize`` (logged, since NNI's TPE defaults to
    ``minimize``).
    """
    for algo in (getattr(config, "tuner", None), getattr(config, "assessor", None)):
        args = getattr(algo, "class_args", None) or {}
        if args.get("optimize_mode"):
            return _check_mode(args["optimize_mode"])
    _logger.warning("no optimize_mode in the tuner's classArgs; ranking trials by maximize")
    return "maximize"


def stored_optimize_mode(files: ExperimentFiles) -> str | None:
    """The tuner's ``optimize_mode`` from the experiment profile in NNI's database, if any."""
    profile = _stored_profile(files) or {}
    for key in ("tuner", "assessor"):
        algo = profile.get(key) or {}
        mode = (algo.get("classArgs") or {}).get("optimize_mode")
        if mode:
            return _check_mode(mode)
    return None


def _stored_profile(files: ExperimentFiles) -> dict[str, Any] | None:
    """The latest experiment profile in NNI's database, or None."""
    db = files.root / "db" / "nni.sqlite"
    if not db.is_file():
        return None
    try:
        with contextlib.closing(sqlite3.connect(f"file:{db}?mode=ro", uri=True)) as conn:
            rows = conn.execute("SELECT params FROM ExperimentProfile").fetchall()
    except sqlite3.Error as err:
        _logger.warning("cannot read %s: %s", db, err)
        return None
    for (params_text,) in reversed(rows):
        try:
            params = json.loads(params_text)
        except (TypeError, ValueError):
            continue
        if isinstance(params, dict):
            return params
    return None


def given_experiment_dir(experiment_id: str, experiment_dir: str | os.PathLike[str]) -> Path:
    """Check an experiment directory ``E`` the user named for an experiment id.

    ``E`` is ``<experimentWorkingDirectory>/<experiment id>``, so its name is the id; the working
    directory that holds ``<id>/`` is refused with the two ways to name it right.

    Args:
        experiment_id: NNI's experiment id.
        experiment_dir: the directory given as ``--experiment-dir``.

    Returns:
        ``E``.

    Raises:
        ConfigError: not a directory, or the directory of another experiment.
    """
    root = Path(experiment_dir).expanduser()
    if (root / experiment_id).is_dir() and root.name != experiment_id:
        raise ConfigError(
            f"--experiment-dir {root}: this is the working directory that holds {experiment_id}/,"
            f" not the experiment directory; pass --working-dir {root} or --experiment-dir "
            f"{root / experiment_id}")
    if not root.is_dir():
        raise ConfigError(f"--experiment-dir {root}: no such directory (expected the directory "
                          f"of experiment {experiment_id!r})")
    if root.name != experiment_id:
        raise ConfigError(f"--experiment-dir {root}: expected the directory of experiment "
                          f"{experiment_id!r}, named {experiment_id}/, got {root.name}/")
    return root


def experiment_files(root: Path) -> ExperimentFiles:
    """The files of the experiment in ``root``, with the decisions directory from its profile."""
    files = ExperimentFiles(Path(root))
    profile = _stored_profile(files) or {}
    exp_dir = ((profile.get("assessor") or {}).get("classArgs") or {}).get("experiment_dir")
    return ExperimentFiles(files.root, Path(exp_dir).expanduser() if exp_dir else None)


def stored_trial_file(files: ExperimentFiles) -> tuple[Path, Path] | None:
    """(trial file, code directory) from the stored profile's ``trialCommand``, if any."""
    profile = _stored_profile(files) or {}
    command, code_dir = profile.get("trialCommand"), profile.get("trialCodeDirectory")
    if not command or not code_dir:
        return None
    try:
        return trial_file_from_command(command, code_dir), Path(code_dir)
    except ConfigError:
        return None


def _working_directory_of(experiment_id: str) -> Path | None:
    """Where NNI's manifest (``~/nni-experiments/.experiment``) says the experiment lives."""
    from hpo_tools.nni_rest import find_experiment

    try:
        root = find_experiment(experiment_id).experiment_dir
    except ConfigError:
        return None
    return root.parent.expanduser() if root is not None else None


def find_experiment_dir(experiment_id: str, working_dir: str | None = None) -> Path:
    """The experiment directory ``E`` of an experiment id.

    Args:
        experiment_id: NNI's experiment id.
        working_dir: the experiment working directory; default: the one NNI's manifest
            records for this id, else ``~/nni-experiments``.

    Returns:
        ``<working dir>/<experiment id>``.

    Raises:
        ConfigError: no such directory.
    """
    if working_dir is not None:
        base = Path(working_dir).expanduser()
    else:
        base = _working_directory_of(experiment_id) or Path(DEFAULT_WORKING_DIRECTORY).expanduser()
    root = base / experiment_id
    if not root.is_dir():
        known = [p.name for p in base.iterdir() if p.is_dir()] if base.is_dir() else []
        hint = " (pass --working-dir or --experiment-dir)" if working_dir is None else ""
        raise ConfigError(
            f"{root}: no experiment directory for id {experiment_id!r}"
            f"{did_you_mean(experiment_id, known)}{hint}")
    return root
