"""The best trial: chosen by its own final score, exported to ``E/best/``.

Parameters and edited configs come from the trial's own record (``params.json``), never from
NNI's ``export_data()``, which can pair a trial with another trial's parameters.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo_tools.errors import HpoError, StorageError
from hpo_tools.experiment.config import _check_mode
from hpo_tools.experiment.records import ExperimentFiles, TrialRun
from hpo_tools.trial.budget import BUDGET_PARAM

_logger = logging.getLogger(__name__)


def select_best(runs: Iterable[TrialRun], optimize_mode: str = "maximize") -> TrialRun | None:
    """The best trial by its own final score, among trials the runner recorded as succeeded.

    Ties go to the trial listed first. Trials without parameters or a finite final score are
    ignored.

    Args:
        runs: trials' own records.
        optimize_mode: ``maximize`` or ``minimize``.

    Returns:
        The best trial, or None when no trial succeeded with a score.
    """
    sign = 1.0 if _check_mode(optimize_mode) == "maximize" else -1.0
    best: TrialRun | None = None
    best_score = -math.inf
    for run in runs:
        score = run.score
        if run.status != "succeeded" or score is None or run.params is None:
            continue
        if sign * score > best_score:
            best, best_score = run, sign * score
    return best


@dataclass(frozen=True)
class BestExport:
    """What ``export_best`` wrote.

    Attributes:
        trial_id: the best trial.
        score: its final score.
        params: the parameters it ran with (from its ``params.json``).
        params_path: ``E/best/best_params.json`` (the parameters alone, as the tuner gave them).
        trial_path: ``E/best/best_trial.json`` (trial id, score, final report, sources, and
            the trial's ``[output_config]`` record when it has one).
        config_path: ``E/best/pipeline.config``; None when the trial wrote no edited config.
        extra_config_paths: further edited configs of the trial (``config_<n>_<name>``).
    """

    trial_id: str
    score: float
    params: dict[str, Any]
    params_path: Path
    trial_path: Path
    config_path: Path | None
    extra_config_paths: tuple[Path, ...] = ()


def _write_text_atomic(path: Path, text: str) -> None:
    """Write a local file whole or not at all (storage: temp file in the same directory +
    ``os.replace``); StorageError naming the file when it cannot be written."""
    from hpo_tools import storage

    storage.write_text(str(path), text)


def _write_json(path: Path, doc: Any) -> None:
    _write_text_atomic(path, json.dumps(doc, indent=2) + "\n")


def _read_config(source: str) -> str:
    """An edited config the runner wrote: a local file, or ``oss://`` through storage."""
    if "://" in source:
        from hpo_tools import storage

        return storage.read_text(source)
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as err:
        raise StorageError(f"{source}: cannot read the trial's edited config: {err}") from err


def _trial_plan(trial_file: Path, best: TrialRun, experiment_id: str) -> Any:
    """The trial file rendered and parsed again with the trial's own identity and parameters:
    the plan the runner ran (its config writes' paths are the ones the runner wrote).

    Raises:
        HpoError: the trial file does not render.
    """
    from hpo_tools.trial.plan import TrialVariables
    from hpo_tools.trial.settings import parse_trial_text

    variables = TrialVariables(experiment_id, best.trial_id, str(best.trial_dir),
                               dict(best.params or {}))
    return parse_trial_text(trial_file.read_text(encoding="utf-8"), source=str(trial_file),
                            variables=variables)


def _base_document(write: Any, trial_file: Path, code_dir: Path | None) -> tuple[str, Any]:
    """``(source, Document)``: the base config a config write reads (a relative path from
    ``code_dir``, default the trial file's directory), its placeholders filled in.

    Raises:
        HpoError: it cannot be read or parsed.
    """
    from hpo_tools import storage
    from hpo_tools.pbtxt import Document

    source = write.src
    if not storage.is_remote(source) and not Path(source).is_absolute():
        source = str((code_dir or trial_file.parent) / source)
    return source, Document.parse(write.source_text(storage.read_text(source)), source=source)


def classic_edited_config(
    trial_file: Path, best: TrialRun, experiment_id: str, code_dir: Path | None = None
) -> tuple[str, str] | None:
    """Rebuild the config EasyRec trained for a classic (``config_begin.ini``) trial.

    A classic trial sends its edits to PAI as ``-Dedit_config_json``; EasyRec applies them on
    the cluster and no edited config exists locally. The trial file is rendered again with the
    trial's own identity and parameters, and its edits (the file's ``-Dedit_config_json``
    merged with the parameters, as the runner sent them) are applied to ``-Dconfig``.

    Args:
        trial_file: the experiment's trial file.
        best: the trial's own record.
        experiment_id: NNI's experiment id.
        code_dir: where relative paths resolve (``trialCodeDirectory``); default: the trial
            file's directory.

    Returns:
        ``(source config path, edited text)``, or None when the trial file is not classic.

    Raises:
        HpoError: the trial file does not render or the base config cannot be read or edited.
    """
    plan = _trial_plan(trial_file, best, experiment_id)
    # A config write without a destination is a record of what the platform edits itself
    # (the classic -Dconfig with -Dedit_config_json): no edited file exists to copy.
    remote_edits = [w for w in plan.stages[0].config_writes if w.dst is None]
    if not remote_edits:
        return None
    write = remote_edits[0]
    source, document = _base_document(write, trial_file, code_dir)
    # Edits EasyRec's edit_config sets on the platform where the base config lacks the field
    # (the runner's local copy leaves them out alike, with its notice).
    left = write.left_to_platform(document)
    if left:
        _logger.warning("trial %s: %s", best.trial_id,
                        "; ".join(write.passthrough_notice(path) for path in left))
    document.apply({k: v for k, v in write.edits.items() if k not in left})
    return source, document.to_text()


@dataclass(frozen=True)
class BudgetRestore:
    """A budgeted trial's config field to set back to the base config's value on export.

    Attributes:
        path: ``[params_config] budget_path`` (``train_config.num_steps``).
        base_value: the field's value in the base config; None when the base config lacks it.
    """

    path: str
    base_value: Any


def budget_restores(
    trial_file: Path, best: TrialRun, experiment_id: str, code_dir: Path | None = None
) -> dict[str, BudgetRestore]:
    """For a trial that ran with Hyperband/BOHB's ``TRIAL_BUDGET``: which of its edited configs
    hold the shortened budget field, and the base config's value of that field.

    The trial file is rendered again with the trial's identity and parameters (as
    :func:`classic_edited_config` does), so each config write's destination is the path the
    runner wrote; its source is read for the field's full value.

    Returns:
        ``{edited config path: BudgetRestore}``; empty when the trial had no budget or its
        trial file sets no ``budget_path``.

    Raises:
        HpoError: the trial file does not render or a base config cannot be read or parsed.
    """
    if best.params is None or BUDGET_PARAM not in best.params:
        return {}
    plan = _trial_plan(trial_file, best, experiment_id)
    restores: dict[str, BudgetRestore] = {}
    for write in plan.stages[0].config_writes:
        if write.budget is None or write.dst is None:
            continue
        values = _base_document(write, trial_file, code_dir)[1].get(write.budget.path)
        restores[write.dst] = BudgetRestore(write.budget.path, values[-1] if values else None)
    return restores


def _restore_budget(text: str, source: str, restore: BudgetRestore, trial_id: str) -> str:
    """``text`` (a budgeted trial's edited config) with the budget field set back to the base
    config's value; unchanged, with a warning, when the base config has no value to restore."""
    from hpo_tools.pbtxt import Document

    if restore.base_value is None:
        _logger.warning(
            "trial %s ran with a TRIAL_BUDGET: %s keeps its budgeted %s; the base config has "
            "no value to restore (set it before a full training)", trial_id, source, restore.path)
        return text
    document = Document.parse(text, source=source)
    document.apply({restore.path: restore.base_value})
    _logger.info("trial %s ran with a TRIAL_BUDGET: exported %s with %s = %s (the base "
                 "config's)", trial_id, source, restore.path, restore.base_value)
    return document.to_text()


@contextlib.contextmanager
def trial_file_oss_credentials(
    trial_file: Path | None, run: TrialRun | None, experiment_id: str
) -> Iterator[None]:
    """While in the block, the trial file's ``[oss_config]`` keys are the process's OSS
    credentials when the environment sets none, exactly as the trial runner and ``check`` read
    them (:func:`hpo_tools.trial_files.trial_oss_credentials`): so the experiment side reads
    the best trial's ``oss://`` configs and copies its outputs with the keys its trials used.
    Nothing is written anywhere; the environment is restored on leaving."""
    names: list[str] = []
    saved: dict[str, str | None] = {}
    if trial_file is not None and run is not None:
        from hpo_tools.storage import ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ENDPOINT
        from hpo_tools.trial.plan import TrialVariables
        from hpo_tools.trial_files import file_oss_credentials, set_oss_credentials

        saved = {n: os.environ.get(n)
                 for n in (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ENDPOINT)}
        try:
            variables = TrialVariables(experiment_id, run.trial_id, str(run.trial_dir),
                                       dict(run.params or {}))
            names = set_oss_credentials(
                file_oss_credentials(trial_file, variables, os.environ), os.environ)
        except (HpoError, OSError) as err:  # the export says what it then cannot read
            _logger.debug("no OSS credentials from %s: %s", trial_file, err)
    try:
        yield
    finally:
        for name in names:
            value = saved.get(name)
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


def export_best(
    files: ExperimentFiles,
    best: TrialRun,
    optimize_mode: str = "maximize",
    *,
    trial_file: Path | None = None,
    code_dir: Path | None = None,
) -> BestExport:
    """Write the best trial's parameters and its fully edited training config(s) to ``E/best/``.

    Everything comes from the trial's own record: ``params.json`` gives the parameters and the
    paths of the configs the runner edited for exactly those parameters; the first config is
    copied to ``pipeline.config``, any further ones to ``config_<n>_<name>``. A classic trial
    (no edited config of its own) gets ``pipeline.config`` rebuilt from its trial file (see
    :func:`classic_edited_config`) when ``trial_file`` is given and its base config readable.
    A trial that ran with Hyperband/BOHB's ``TRIAL_BUDGET`` trained a shortened
    ``budget_path`` field: with ``trial_file`` given, the export sets that field back to the
    base config's value (:func:`budget_restores`), and ``best_params.json`` leaves
    ``TRIAL_BUDGET`` out (``best_trial.json`` records it), so the export trains in full.

    Args:
        files: the experiment directory.
        best: the trial to export (usually :func:`select_best`'s choice).
        optimize_mode: recorded in ``best_trial.json``.
        trial_file: the experiment's trial file, for classic trials.
        code_dir: ``trialCodeDirectory``, where the trial file's relative paths resolve.

    Returns:
        The paths written.

    Raises:
        StorageError: an edited config cannot be read (e.g. an ``oss://`` path without keys).
    """
    if best.params is None or best.score is None:
        raise HpoError(f"{best.trial_dir}: trial {best.trial_id} has no parameters or final score")
    best_dir = files.best_dir  # created by the first write
    config_path: Path | None = None
    extra: list[Path] = []
    # A Hyperband/BOHB trial trained a shortened budget field: the export is for a full run.
    restores: dict[str, BudgetRestore] = {}
    if trial_file is not None and BUDGET_PARAM in best.params:
        try:
            restores = budget_restores(trial_file, best, files.experiment_id, code_dir)
        except (HpoError, OSError) as err:
            _logger.warning("trial %s ran with a TRIAL_BUDGET and its base config cannot be "
                            "read to restore the full budget: %s", best.trial_id, err)
    for index, source in enumerate(best.configs):
        text = _read_config(source)
        if source in restores:
            text = _restore_budget(text, source, restores[source], best.trial_id)
        if index == 0:
            target = best_dir / "pipeline.config"
            config_path = target
        else:
            name = source.rstrip("/").rsplit("/", 1)[-1] or "config"
            target = best_dir / f"config_{index + 1}_{name}"
            extra.append(target)
        _write_text_atomic(target, text)
    sources = list(best.configs)
    if config_path is None and trial_file is not None:
        try:
            rebuilt = classic_edited_config(trial_file, best, files.experiment_id, code_dir)
        except (HpoError, OSError) as err:
            _logger.warning("cannot rebuild the edited config of trial %s: %s",
                            best.trial_id, err)
            rebuilt = None
        if rebuilt is not None:
            config_path = best_dir / "pipeline.config"
            _write_text_atomic(config_path, rebuilt[1])
            sources.append(rebuilt[0])
    if config_path is None:
        _logger.warning(
            "trial %s wrote no edited config (no [params_config] in its trial file); "
            "only best_params.json is exported", best.trial_id)
    params_path = best_dir / "best_params.json"
    trial_path = best_dir / "best_trial.json"
    # The parameters a full training uses: TRIAL_BUDGET was the tuner's, not a config value.
    params = {k: v for k, v in best.params.items() if k != BUDGET_PARAM}
    _write_json(params_path, params)
    _write_json(trial_path, {
        "experiment_id": best.experiment_id or files.experiment_id,
        "trial_id": best.trial_id,
        "parameter_id": best.parameter_id,
        "optimize_mode": optimize_mode,
        "score": best.score,
        "final": best.final,
        "trial_dir": str(best.trial_dir),
        "configs": sources,
        "exported": [str(p) for p in ([config_path] if config_path else []) + extra],
        **({"trial_budget": best.params[BUDGET_PARAM],
            "budget_restored": {s: {"path": r.path, "value": r.base_value}
                                for s, r in restores.items() if r.base_value is not None}}
           if BUDGET_PARAM in best.params else {}),
        # [output_config]: its model directory and where it is copied (experiment/outputs.py).
        **({"outputs": best.outputs} if best.outputs else {}),
    })
    return BestExport(
        trial_id=best.trial_id, score=best.score, params=params,
        params_path=params_path, trial_path=trial_path, config_path=config_path,
        extra_config_paths=tuple(extra),
    )
