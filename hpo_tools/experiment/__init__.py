"""Headless NNI experiments: start, follow to the end, summarise, export the best trial.

``hpo-tools experiment run CONFIG.yml`` drives an NNI experiment through NNI's Python API
(imported lazily, only on the paths that start or stop an experiment) and handles two NNI 3.0
traps (``../shared/API-NOTES.md`` §0):

* ``Experiment.run()`` never returns when the tuner runs out of points (status
  ``TUNER_NO_MORE_TRIAL``), so the status is polled here and "no more trials and none running" is
  an end (:func:`experiment_finished`).
* NNI's database may pair a trial with another trial's parameters when trials run concurrently, so
  scores and parameters come from the trial's own record (``params.json`` / ``result.json``
  written by the trial runner in the trial directory), never from ``export_data()``.

Everything that reads results works on the experiment directory ``E`` alone (no NNI connection),
so ``hpo-tools experiment best ID`` works on finished and running experiments alike.

Example:
    >>> result = run_experiment("examples/search/local_easyrec/begin/config.yml", timeout=600)
    >>> result.export.config_path  # E/best/pipeline.config
"""

from __future__ import annotations

import contextlib
import enum
import json
import logging
import math
import os
import shlex
import signal
import socket
import sqlite3
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpo_tools.errors import ConfigError, HpoError, StorageError, did_you_mean

__all__ = [
    "POLL_INTERVAL",
    "Outcome",
    "TrialRun",
    "TrialView",
    "Snapshot",
    "BestExport",
    "RunResult",
    "ExperimentFiles",
    "experiment_finished",
    "classify_trial",
    "read_trial_run",
    "read_assessor_decisions",
    "select_best",
    "export_best",
    "build_snapshot",
    "format_progress",
    "format_summary",
    "load_experiment_config",
    "trial_file_from_command",
    "optimize_mode_of",
    "find_experiment_dir",
    "stored_optimize_mode",
    "export_best_of_experiment",
    "run_experiment",
    "path_with_interpreter_first",
    "free_port",
    "dispatcher_failure",
    "classic_edited_config",
    "stored_trial_file",
    "experiment_files",
]

_logger = logging.getLogger(__name__)

POLL_INTERVAL = 2.0
"""Seconds between two status polls of a running experiment."""

HEARTBEAT_INTERVAL = 30.0
"""Seconds after which an unchanged progress line is printed again."""

_ENDED_EXPERIMENT = frozenset({"DONE", "STOPPED", "ERROR"})
_NO_MORE_TRIAL = frozenset({"NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL"})
_LIVE_TRIAL = frozenset({"RUNNING", "WAITING"})
_CANCELLED_TRIAL = frozenset({"USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED"})

DEFAULT_WORKING_DIRECTORY = "~/nni-experiments"


# --------------------------------------------------------------------------- decisions


def experiment_finished(status: str, trial_statuses: Iterable[str]) -> bool:
    """Whether an experiment with this status and these trial statuses has ended.

    ``DONE``, ``STOPPED`` and ``ERROR`` end it. ``NO_MORE_TRIAL`` / ``TUNER_NO_MORE_TRIAL`` end it
    once no trial is RUNNING or WAITING: NNI never moves from ``TUNER_NO_MORE_TRIAL`` to ``DONE``
    when the tuner runs out of points before ``maxTrialNumber`` (microsoft/nni#3859).

    Args:
        status: the experiment status from NNI's ``/check-status``.
        trial_statuses: the status of every trial NNI knows.

    Returns:
        True when nothing more will happen.
    """
    if status in _ENDED_EXPERIMENT:
        return True
    if status in _NO_MORE_TRIAL:
        return not any(s in _LIVE_TRIAL for s in trial_statuses)
    return False


class Outcome(enum.Enum):
    """What became of a trial, as the progress line and the summary count it."""

    SUCCEEDED = "succeeded"
    RUNNING = "running"
    ASSESSOR_STOPPED = "stopped by assessor"
    CANCELLED = "cancelled"
    FAILED = "failed"


def classify_trial(
    nni_status: str | None, runner_status: str | None, stopped_by_assessor: bool
) -> Outcome:
    """Classify one trial.

    NNI's status wins when known. NNI records an assessor-stopped trial as ``USER_CANCELED`` or
    ``FAILED`` (its ``EARLY_STOPPED`` never shows, API-NOTES §0.2), so the assessor's decision
    log tells "stopped by the assessor" apart from other cancellations and failures. Without NNI
    (``experiment best`` on a stopped experiment) the runner's own status is used.

    Args:
        nni_status: NNI's trial status, or None when NNI is not (or no longer) asked.
        runner_status: ``status`` from the trial's ``result.json`` (succeeded | failed |
            cancelled), or None when the runner has not finished.
        stopped_by_assessor: the trial has a Bad decision in ``assessor-decisions.jsonl``.

    Returns:
        The trial's outcome.
    """
    if nni_status is not None:
        if nni_status == "SUCCEEDED":
            return Outcome.SUCCEEDED
        if nni_status in _LIVE_TRIAL or nni_status == "UNKNOWN":
            return Outcome.RUNNING
        if stopped_by_assessor or nni_status == "EARLY_STOPPED":
            return Outcome.ASSESSOR_STOPPED
        if nni_status in _CANCELLED_TRIAL:
            return Outcome.CANCELLED
        return Outcome.FAILED
    if runner_status == "succeeded":
        return Outcome.SUCCEEDED
    if runner_status is None:
        return Outcome.RUNNING
    if stopped_by_assessor:
        return Outcome.ASSESSOR_STOPPED
    if runner_status == "cancelled":
        return Outcome.CANCELLED
    return Outcome.FAILED


# --------------------------------------------------------------------------- trial records


def _report_score(report: Mapping[str, Any] | None) -> float | None:
    """The score of one runner report (``{"step", "score", "values", ...}``), or None."""
    if not isinstance(report, Mapping):
        return None
    score = report.get("score", report.get("default"))
    if isinstance(score, bool) or not isinstance(score, (int, float)):
        return None
    score = float(score)
    return score if math.isfinite(score) else None


@dataclass(frozen=True)
class TrialRun:
    """A trial's own record, as the trial runner wrote it in its trial directory.

    Attributes:
        trial_id: NNI's trial id (the trial directory's name).
        trial_dir: the trial directory (``NNI_OUTPUT_DIR``).
        params: the parameters the trial really ran with; None before ``params.json`` exists.
        parameter_id: NNI's parameter id of those parameters.
        configs: the edited training configs the runner wrote, in ``params_config`` order.
        intermediate: every intermediate report, in order.
        final: the final report, or None.
        status: the runner's own end status (succeeded | failed | cancelled), None while running.
    """

    trial_id: str
    trial_dir: Path
    params: dict[str, Any] | None = None
    parameter_id: Any = None
    experiment_id: str | None = None
    configs: tuple[str, ...] = ()
    intermediate: tuple[dict[str, Any], ...] = ()
    final: dict[str, Any] | None = None
    status: str | None = None

    @property
    def score(self) -> float | None:
        """The final score, or None when the trial reported none."""
        return _report_score(self.final)

    @property
    def last_intermediate_score(self) -> float | None:
        """The score of the latest intermediate report, or None."""
        return _report_score(self.intermediate[-1]) if self.intermediate else None


def _read_json(path: Path) -> Any:
    """Parse a JSON file; None when it does not exist or is not JSON (logged)."""
    try:
        text = path.read_text(encoding="utf-8")
    except FileNotFoundError:
        return None
    except OSError as err:
        _logger.warning("cannot read %s: %s", path, err)
        return None
    try:
        return json.loads(text)
    except ValueError as err:
        _logger.warning("%s is not valid JSON (%s); ignoring it", path, err)
        return None


def read_trial_run(trial_dir: Path) -> TrialRun:
    """Read a trial's ``params.json`` and ``result.json``; missing files leave fields empty.

    Args:
        trial_dir: the trial directory; its name is the trial id.

    Returns:
        The trial's own record.
    """
    trial_dir = Path(trial_dir)
    params_doc = _read_json(trial_dir / "params.json")
    result_doc = _read_json(trial_dir / "result.json")
    kwargs: dict[str, Any] = {}
    if isinstance(params_doc, dict):
        params = params_doc.get("params")
        kwargs["params"] = dict(params) if isinstance(params, dict) else None
        kwargs["parameter_id"] = params_doc.get("parameter_id")
        kwargs["experiment_id"] = params_doc.get("experiment_id")
        configs = params_doc.get("configs") or []
        kwargs["configs"] = tuple(str(c) for c in configs)
    if isinstance(result_doc, dict):
        intermediate = result_doc.get("intermediate") or []
        kwargs["intermediate"] = tuple(r for r in intermediate if isinstance(r, dict))
        final = result_doc.get("final")
        kwargs["final"] = final if isinstance(final, dict) else None
        status = result_doc.get("status")
        kwargs["status"] = str(status) if status else None
    trial_id = trial_dir.name
    if isinstance(params_doc, dict) and params_doc.get("trial_id"):
        trial_id = str(params_doc["trial_id"])
    return TrialRun(trial_id=trial_id, trial_dir=trial_dir, **kwargs)


@dataclass(frozen=True)
class ExperimentFiles:
    """The files of one experiment directory ``E`` (docs/architecture.md).

    Attributes:
        root: ``E`` = ``<experimentWorkingDirectory>/<experiment id>``.
        hpo_dir: the directory holding ``hpo-tools/assessor-decisions.jsonl``: ``E`` unless
            PAIAssessor's ``experiment_dir`` class argument says otherwise.
    """

    root: Path
    hpo_dir: Path | None = None

    @property
    def experiment_id(self) -> str:
        return self.root.name

    @property
    def best_dir(self) -> Path:
        return self.root / "best"

    @property
    def decisions_path(self) -> Path:
        return (self.hpo_dir or self.root) / "hpo-tools" / "assessor-decisions.jsonl"

    def trial_dirs(self) -> dict[str, Path]:
        """Every trial directory, by trial id, in creation order.

        NNI's local training service puts trials in ``E/environments/<env>/trials/<id>``;
        standalone runs use ``E/trials/<id>``.
        """
        found: list[Path] = []
        for pattern in ("environments/*/trials/*", "trials/*"):
            found.extend(p for p in self.root.glob(pattern) if p.is_dir())
        found.sort(key=_creation_key)
        return {p.name: p for p in found}

    def trial_runs(self) -> list[TrialRun]:
        """The own record of every trial directory (in creation order)."""
        return [read_trial_run(path) for path in self.trial_dirs().values()]


def _creation_key(path: Path) -> tuple[float, str]:
    """Order trial directories by when the runner recorded their parameters."""
    for candidate in (path / "params.json", path):
        try:
            return (candidate.stat().st_mtime, path.name)
        except OSError:
            continue
    return (math.inf, path.name)


def read_assessor_decisions(path: Path) -> dict[str, dict[str, Any]]:
    """The first Bad decision of each trial from ``assessor-decisions.jsonl``.

    A line that is not a JSON object with a ``trial_id`` (for example one being written right
    now) is skipped.

    Args:
        path: the decisions file; a missing file means no decisions.

    Returns:
        ``{trial_id: decision}``.
    """
    decisions: dict[str, dict[str, Any]] = {}
    try:
        text = Path(path).read_text(encoding="utf-8")
    except FileNotFoundError:
        return decisions
    for line in text.splitlines():
        line = line.strip()
        if not line:
            continue
        try:
            record = json.loads(line)
        except ValueError:
            continue
        if isinstance(record, dict) and record.get("trial_id"):
            decisions.setdefault(str(record["trial_id"]), record)
    return decisions


# --------------------------------------------------------------------------- best trial


def _check_mode(optimize_mode: str) -> str:
    mode = str(optimize_mode).lower()
    if mode not in ("maximize", "minimize"):
        raise ConfigError(
            f"optimize_mode: expected 'maximize' or 'minimize', got {optimize_mode!r}")
    return mode


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
        trial_path: ``E/best/best_trial.json`` (trial id, score, final report, sources).
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
    """Write a local file whole or not at all (temp file in the same directory + replace)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


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
    from hpo_tools import storage
    from hpo_tools.pbtxt import apply_edits
    from hpo_tools.trial.settings import TrialVariables, parse_trial_text

    text = trial_file.read_text(encoding="utf-8")
    variables = TrialVariables(experiment_id, best.trial_id, str(best.trial_dir),
                               dict(best.params or {}))
    settings = parse_trial_text(text, source=str(trial_file), variables=variables)
    if settings.format != "classic" or not settings.config_path:
        return None
    source = settings.config_path
    if not storage.is_remote(source) and not Path(source).is_absolute():
        source = str((code_dir or trial_file.parent) / source)
    edited = apply_edits(storage.read_text(source), dict(settings.edit_config_json or {}),
                         source=source)
    return source, edited


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
    best_dir = files.best_dir
    best_dir.mkdir(parents=True, exist_ok=True)
    config_path: Path | None = None
    extra: list[Path] = []
    for index, source in enumerate(best.configs):
        text = _read_config(source)
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
    _write_json(params_path, best.params)
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
    })
    return BestExport(
        trial_id=best.trial_id, score=best.score, params=dict(best.params),
        params_path=params_path, trial_path=trial_path, config_path=config_path,
        extra_config_paths=tuple(extra),
    )


# --------------------------------------------------------------------------- progress


@dataclass(frozen=True)
class TrialView:
    """One trial as progress and summary show it.

    Attributes:
        trial_id: NNI's trial id.
        sequence: NNI's sequence id (order of submission); None when unknown.
        nni_status: NNI's status, or None when NNI is not asked.
        outcome: see :func:`classify_trial`.
        run: the trial's own record.
        decision: the assessor's first Bad decision for it, or None.
    """

    trial_id: str
    sequence: int | None
    nni_status: str | None
    outcome: Outcome
    run: TrialRun
    decision: dict[str, Any] | None = None


@dataclass(frozen=True)
class Snapshot:
    """The state of an experiment at one poll.

    Attributes:
        experiment_id: NNI's experiment id.
        status: NNI's experiment status (``"-"`` when NNI is not asked).
        elapsed: seconds since the experiment started.
        trials: every trial, in submission order.
        optimize_mode: ``maximize`` or ``minimize``.
        max_trials: ``maxTrialNumber``, or None.
    """

    experiment_id: str
    status: str
    elapsed: float
    trials: tuple[TrialView, ...]
    optimize_mode: str = "maximize"
    max_trials: int | None = None

    def count(self, outcome: Outcome) -> int:
        """How many trials have this outcome."""
        return sum(1 for t in self.trials if t.outcome is outcome)

    @property
    def best(self) -> TrialView | None:
        """The best trial so far by its own final score (see :func:`select_best`)."""
        runs = [t.run for t in self.trials if t.outcome is Outcome.SUCCEEDED]
        chosen = select_best(runs, self.optimize_mode)
        if chosen is None:
            return None
        return next(t for t in self.trials if t.run is chosen)


def build_snapshot(
    files: ExperimentFiles,
    *,
    status: str = "-",
    nni_trials: Sequence[tuple[str, str, int | None]] | None = None,
    elapsed: float = 0.0,
    optimize_mode: str = "maximize",
    max_trials: int | None = None,
) -> Snapshot:
    """Join NNI's trial list with the trials' own records and the assessor's decisions.

    Args:
        files: the experiment directory.
        status: NNI's experiment status.
        nni_trials: ``(trial_id, status, sequence)`` for every trial NNI lists; None to classify
            from the trials' own records alone (experiment not running).
        elapsed: seconds since the start.
        optimize_mode: ``maximize`` or ``minimize``.
        max_trials: ``maxTrialNumber``, shown in the progress line.

    Returns:
        The snapshot.
    """
    decisions = read_assessor_decisions(files.decisions_path)
    dirs = files.trial_dirs()
    views: list[TrialView] = []
    if nni_trials is None:
        listed: list[tuple[str, str | None, int | None]] = [
            (trial_id, None, None) for trial_id in dirs
        ]
    else:
        listed = sorted(nni_trials, key=lambda t: (t[2] is None, t[2] or 0))
    for trial_id, nni_status, sequence in listed:
        trial_dir = dirs.get(trial_id)
        run = read_trial_run(trial_dir) if trial_dir else TrialRun(trial_id, Path())
        decision = decisions.get(trial_id)
        outcome = classify_trial(nni_status, run.status, decision is not None)
        views.append(TrialView(trial_id, sequence, nni_status, outcome, run, decision))
    return Snapshot(
        experiment_id=files.experiment_id, status=status, elapsed=elapsed, trials=tuple(views),
        optimize_mode=_check_mode(optimize_mode), max_trials=max_trials,
    )


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def _fmt_score(score: float | None) -> str:
    return "-" if score is None else f"{score:.4f}"


def format_progress(snapshot: Snapshot, *, with_elapsed: bool = True) -> str:
    """One progress line: status, trial counts by outcome, best score so far, elapsed time.

    Args:
        snapshot: the experiment's state.
        with_elapsed: False leaves the time out (to tell whether anything changed).

    Returns:
        e.g. ``[1:42] RUNNING trials 5/8: 2 succeeded, 2 running, 1 stopped by assessor,
        0 cancelled, 0 failed | best 0.7312 (trial Ab3dE)``.
    """
    total = f"{len(snapshot.trials)}/{snapshot.max_trials}" if snapshot.max_trials else str(
        len(snapshot.trials))
    counts = ", ".join(f"{snapshot.count(o)} {o.value}" for o in Outcome)
    best = snapshot.best
    best_text = f"best {_fmt_score(best.run.score)} (trial {best.trial_id})" if best else "best -"
    line = f"{snapshot.status} trials {total}: {counts} | {best_text}"
    return f"[{_clock(snapshot.elapsed)}] {line}" if with_elapsed else line


def _params_text(params: Mapping[str, Any] | None) -> list[str]:
    if not params:
        return []
    return [f"  {key} = {json.dumps(value)}" for key, value in params.items()]


def format_summary(snapshot: Snapshot, export: BestExport | None = None) -> str:
    """The summary table printed at the end, plus the best trial's parameters and files.

    Args:
        snapshot: the final state.
        export: what was exported, when anything was.

    Returns:
        Multi-line text.
    """
    best = snapshot.best
    header = ("", "trial", "outcome", "nni status", "reports", "last report", "final score")
    rows: list[tuple[str, ...]] = [header]
    for view in snapshot.trials:
        rows.append((
            "*" if best is not None and view.trial_id == best.trial_id else "",
            view.trial_id,
            view.outcome.value,
            view.nni_status or "-",
            str(len(view.run.intermediate)),
            _fmt_score(view.run.last_intermediate_score),
            _fmt_score(view.run.score),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"experiment {snapshot.experiment_id}: {snapshot.status} after {_clock(snapshot.elapsed)}"
        f", {len(snapshot.trials)} trials ({snapshot.optimize_mode})",
    ]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    counts = ", ".join(f"{snapshot.count(o)} {o.value}" for o in Outcome)
    lines.append(f"totals: {counts}")
    if best is None:
        lines.append("best: none (no trial succeeded with a final score)")
    else:
        lines.append(f"best: trial {best.trial_id}, score {_fmt_score(best.run.score)}, params:")
        lines.extend(_params_text(best.run.params))
    if export is not None:
        lines.append(f"best params: {export.params_path}")
        if export.config_path is not None:
            lines.append(f"best config: {export.config_path}")
        for extra in export.extra_config_paths:
            lines.append(f"best config: {extra}")
    return "\n".join(lines)


# --------------------------------------------------------------------------- experiment config


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
    return config


def _one_line(err: BaseException) -> str:
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
        raise ConfigError(
            f"{root}: no experiment directory for id {experiment_id!r}"
            f"{did_you_mean(experiment_id, known)} (pass --experiment-dir)")
    return root


def export_best_of_experiment(
    files: ExperimentFiles, optimize_mode: str | None = None
) -> tuple[Snapshot, BestExport | None]:
    """Re-export the best trial of a finished or running experiment from its directory alone.

    Args:
        files: the experiment directory.
        optimize_mode: overrides the mode stored in NNI's database.

    Returns:
        The snapshot built from the trials' own records, and what was exported (None when no
        trial has succeeded yet).
    """
    mode = optimize_mode or stored_optimize_mode(files) or "maximize"
    snapshot = build_snapshot(files, optimize_mode=mode)
    best = snapshot.best
    if best is None:
        return snapshot, None
    trial_file, code_dir = stored_trial_file(files) or (None, None)
    export = export_best(files, best.run, mode, trial_file=trial_file, code_dir=code_dir)
    return snapshot, export


# --------------------------------------------------------------------------- running


@dataclass
class RunResult:
    """How ``run_experiment`` ended.

    Attributes:
        experiment_id: NNI's experiment id.
        files: the experiment directory.
        status: NNI's last experiment status.
        snapshot: the final state (own records re-read after the stop).
        export: what ``E/best/`` holds, or None when no trial succeeded.
        timed_out: ``--timeout`` stopped the experiment.
        interrupted: Ctrl-C or SIGTERM stopped it.
        errors: NNI's errors when the status is ERROR.
    """

    experiment_id: str
    files: ExperimentFiles
    status: str
    snapshot: Snapshot
    export: BestExport | None = None
    timed_out: bool = False
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        """Trials that succeeded."""
        return self.snapshot.count(Outcome.SUCCEEDED)


Checker = Callable[[Path, Path], None]
"""Runs ``hpo-tools check`` on (trial file, search space file); raises ConfigError on problems."""


def default_checker(trial_file: Path, search_space_file: Path) -> None:
    """``hpo-tools check`` of the trial file (``run_experiment`` calls it in the code directory)."""
    from hpo_tools.trial.check import check_or_raise

    check_or_raise(trial_file, search_space_file)


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Relative paths in a trial file resolve from the trial's directory (NNI's code dir)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def free_port() -> int:
    """A TCP port on localhost nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Terminated(Exception):
    """SIGTERM arrived while the experiment ran."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception so the experiment is stopped in ``finally``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while the experiment is stopping, so a second Ctrl-C does not leave
    NNI's manager running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _search_space_file(config: Any, tmp_dir: Path) -> Path:
    if getattr(config, "search_space_file", None):
        return Path(config.search_space_file)
    path = tmp_dir / "search_space.json"
    path.write_text(json.dumps(config.search_space or {}), encoding="utf-8")
    return path


def path_with_interpreter_first(path: str, executable: str) -> str:
    """``path`` (a PATH value) with the directory of ``executable`` moved to the front.

    NNI's manager and every trial inherit the environment of the process that starts the
    experiment, so with this PATH ``python3 -m hpo_tools.run`` in ``trialCommand`` runs the
    interpreter that has hpo-tools (the venv's), even when the venv is not activated.
    """
    bin_dir = str(Path(executable).parent)
    parts = [p for p in path.split(os.pathsep) if p and p != bin_dir]
    return os.pathsep.join([bin_dir] + parts)


@contextlib.contextmanager
def _interpreter_first_on_path() -> Iterator[None]:
    """Set PATH for NNI's manager (which passes its environment on to trials) while it starts."""
    previous = os.environ.get("PATH")
    os.environ["PATH"] = path_with_interpreter_first(previous or "", sys.executable)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = previous


def _decisions_dir_of(config: Any) -> Path | None:
    """Where PAIAssessor writes its decisions: its ``experiment_dir`` class argument, if set
    (else NNI's experiment directory)."""
    args = getattr(getattr(config, "assessor", None), "class_args", None) or {}
    exp_dir = args.get("experiment_dir")
    return Path(exp_dir).expanduser() if exp_dir else None


_DISPATCHER_EXIT = "Dispatcher exiting"
_DISPATCHER_LOG_TAIL = 64 * 1024


def dispatcher_failure(log_path: Path) -> str | None:
    """Why NNI's dispatcher (the process running the tuner and the assessor) died, if it did.

    When the tuner or assessor raises, the dispatcher logs the traceback and exits, but NNI's
    manager keeps reporting the experiment as RUNNING and never submits another trial. Called
    while the experiment has not ended, "Dispatcher exiting" in ``E/log/dispatcher.log`` means
    exactly that.

    Args:
        log_path: ``E/log/dispatcher.log``.

    Returns:
        The last error line of the log (e.g. ``KeyError: 1``), or None when it did not exit.
    """
    try:
        with open(log_path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - _DISPATCHER_LOG_TAIL))
            text = handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None
    if _DISPATCHER_EXIT not in text:
        return None
    before_exit = text[:text.rfind(_DISPATCHER_EXIT)].rstrip().splitlines()
    for line in reversed(before_exit):
        stripped = line.strip()
        if stripped and not stripped.startswith("[") and not line.startswith(" "):
            return stripped  # the exception line closing the traceback
    return "the dispatcher exited"


def _poll(exp: Any) -> tuple[str, list[tuple[str, str, int | None]], list[str]]:
    from nni.experiment import rest

    check = rest.get(exp.port, "/check-status", exp.url_prefix)
    trials = rest.get(exp.port, "/trial-jobs", exp.url_prefix)
    listed = [
        (str(t["trialJobId"]), str(t.get("status", "UNKNOWN")), t.get("sequenceId"))
        for t in trials
    ]
    errors = [str(e) for e in (check.get("errors") or [])]
    return str(check.get("status", "UNKNOWN")), listed, errors


def run_experiment(
    config_path: str | os.PathLike[str],
    *,
    port: int | None = None,
    timeout: float | None = None,
    working_dir: str | None = None,
    poll_interval: float = POLL_INTERVAL,
    checker: Checker | None = default_checker,
    on_start: Callable[[str, Path, int], None] | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> RunResult:
    """Run an NNI experiment headless, to its end, and export its best trial.

    Checks the trial file and search space first, starts the experiment through NNI's Python API,
    polls every ``poll_interval`` seconds until :func:`experiment_finished` (or ``timeout``),
    always stops it (also on Ctrl-C, SIGTERM and errors), then exports the best trial to
    ``E/best/``.

    Args:
        config_path: the experiment YAML.
        port: NNI's port; default: a free one.
        timeout: seconds after which the experiment is stopped; None for no limit.
        working_dir: overrides ``experimentWorkingDirectory``.
        poll_interval: seconds between polls.
        checker: runs ``hpo-tools check`` (None skips it).
        on_start: called with (experiment id, experiment directory, port) once NNI is up.
        on_progress: called with each snapshot whose progress line changed, and every 30 s.

    Returns:
        How it ended.

    Raises:
        ConfigError: the experiment config, trial file or search space is wrong (before start).
    """
    config_path = Path(config_path)
    config = load_experiment_config(config_path, working_dir)
    canonical = config.canonical_copy()
    mode = optimize_mode_of(canonical)
    trial_file = trial_file_from_command(
        canonical.trial_command, canonical.trial_code_directory, str(config_path))
    if checker is not None:
        if not trial_file.is_file():
            raise ConfigError(f"{config_path}: trialCommand: trial file {trial_file} not found")
        with tempfile.TemporaryDirectory(prefix="hpo-tools-check-") as tmp:
            space_file = _search_space_file(canonical, Path(tmp)).resolve()
            # Relative paths in the trial file resolve from where the trials run.
            with _working_directory(Path(canonical.trial_code_directory)):
                checker(trial_file.resolve(), space_file)

    import nni.runtime.log
    from nni.experiment import Experiment, RunMode

    nni.runtime.log.silence_stdout()
    if not _logger.isEnabledFor(logging.INFO):
        # NNI sets its logger to INFO and its records reach the CLI's stderr handler.
        logging.getLogger("nni").setLevel(logging.WARNING)
    port = port or free_port()
    exp = Experiment(config)
    files = ExperimentFiles(
        Path(canonical.experiment_working_directory).expanduser() / exp.id,
        _decisions_dir_of(canonical))
    status = "INITIALIZED"
    listed: list[tuple[str, str, int | None]] = []
    errors: list[str] = []
    timed_out = interrupted = False
    started = time.monotonic()
    last_line: str | None = None
    last_print = 0.0
    try:
        with _sigterm_raises():
            try:
                with _interpreter_first_on_path():
                    try:
                        exp.start(port, run_mode=RunMode.Detach)
                    except RuntimeError as err:
                        if "not idle" in str(err):
                            raise ConfigError(f"--port {port}: {_one_line(err)}") from err
                        raise
                started = time.monotonic()
                if on_start is not None:
                    on_start(exp.id, files.root, port)
                while True:
                    status, listed, errors = _poll(exp)
                    elapsed = time.monotonic() - started
                    if on_progress is not None:
                        snapshot = build_snapshot(
                            files, status=status, nni_trials=listed, elapsed=elapsed,
                            optimize_mode=mode, max_trials=canonical.max_trial_number)
                        line = format_progress(snapshot, with_elapsed=False)
                        if line != last_line or elapsed - last_print >= HEARTBEAT_INTERVAL:
                            on_progress(snapshot)
                            last_line, last_print = line, elapsed
                    if experiment_finished(status, (s for _, s, _ in listed)):
                        break
                    failure = dispatcher_failure(files.root / "log" / "dispatcher.log")
                    if failure is not None:
                        status = "ERROR"
                        errors.append(
                            f"NNI's tuner/assessor process exited ({failure}); NNI would wait "
                            f"forever: see {files.root / 'log' / 'dispatcher.log'}")
                        break
                    if timeout is not None and elapsed >= timeout:
                        timed_out = True
                        _logger.warning("timeout of %s s reached; stopping the experiment", timeout)
                        break
                    time.sleep(poll_interval)
            except (KeyboardInterrupt, _Terminated):
                interrupted = True
    finally:
        with _signals_ignored():
            _logger.info("stopping experiment %s", exp.id)
            try:
                exp.stop()
            except Exception:  # never mask the error that brought us here
                _logger.exception("could not stop experiment %s cleanly; check with "
                                  "`nnictl experiment list` and `nnictl stop %s`", exp.id, exp.id)
    elapsed = time.monotonic() - started
    # After the stop every trial process is gone; trials NNI still listed as live were stopped
    # with the experiment, so their own records (cancelled) now tell what became of them.
    final_trials = [
        (tid, None if s in _LIVE_TRIAL else s, seq) for tid, s, seq in listed
    ]
    snapshot = build_snapshot(
        files, status=status, nni_trials=final_trials, elapsed=elapsed, optimize_mode=mode,
        max_trials=canonical.max_trial_number)
    snapshot = _stopped_live_as_cancelled(snapshot)
    best = snapshot.best
    export = None
    if best is not None:
        export = export_best(files, best.run, mode, trial_file=trial_file,
                             code_dir=Path(canonical.trial_code_directory))
    return RunResult(
        experiment_id=exp.id, files=files, status=status, snapshot=snapshot, export=export,
        timed_out=timed_out, interrupted=interrupted, errors=errors)


def _stopped_live_as_cancelled(snapshot: Snapshot) -> Snapshot:
    """Trials still 'running' after the experiment stopped were cancelled by the stop."""
    views = tuple(
        TrialView(v.trial_id, v.sequence, v.nni_status, Outcome.CANCELLED, v.run, v.decision)
        if v.outcome is Outcome.RUNNING else v
        for v in snapshot.trials
    )
    return Snapshot(snapshot.experiment_id, snapshot.status, snapshot.elapsed, views,
                    snapshot.optimize_mode, snapshot.max_trials)
