"""A trial's own record and the files of an experiment directory ``E``.

The trial runner writes ``params.json`` / ``result.json`` in each trial directory and PAIAssessor
appends its Bad decisions to ``E/hpo-tools/assessor-decisions.jsonl`` (docs/architecture.md);
this module reads them, without any NNI connection.
"""

from __future__ import annotations

import json
import logging
import math
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

_logger = logging.getLogger(__name__)


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
        message: why the runner says the trial failed or was cancelled (``result.json``), or None.
        outputs: ``params.json``'s ``"outputs"`` (``[output_config]``: the trial's model
            directory and where the best trial is copied), or None.
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
    message: str | None = None
    outputs: dict[str, Any] | None = None

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
        outputs = params_doc.get("outputs")
        kwargs["outputs"] = dict(outputs) if isinstance(outputs, dict) else None
    if isinstance(result_doc, dict):
        intermediate = result_doc.get("intermediate") or []
        kwargs["intermediate"] = tuple(r for r in intermediate if isinstance(r, dict))
        final = result_doc.get("final")
        kwargs["final"] = final if isinstance(final, dict) else None
        status = result_doc.get("status")
        kwargs["status"] = str(status) if status else None
        message = result_doc.get("message")
        kwargs["message"] = str(message) if message else None
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

    def registered_trials(self) -> dict[str, Path | None]:
        """Trials of this experiment with a job registry record, by trial id: their trial
        directory as the record names it (None when it names none).

        The runner saves ``<E>/hpo-tools/jobs/<trial_id>.json`` when its first job starts; the
        registry PAIAssessor reads sits under its ``experiment_dir`` (``hpo_dir``), so both are
        read. Records of another experiment (a shared ``experiment_dir``) are left out.
        """
        found: dict[str, Path | None] = {}
        for base in dict.fromkeys((self.root, self.hpo_dir or self.root)):
            directory = base / _JOB_RECORDS
            if not directory.is_dir():
                continue
            # Temporary and lock files of the registry start with a dot.
            paths = [p for p in directory.glob("*.json") if not p.name.startswith(".")]
            paths.sort(key=_creation_key)
            for path in paths:
                record = _read_json(path)
                if not isinstance(record, dict) or str(record.get("trial_id")) != path.stem:
                    continue
                if record.get("experiment_id") not in (None, "", self.experiment_id):
                    continue
                trial_dir = record.get("trial_dir")
                found.setdefault(path.stem, Path(trial_dir) if isinstance(trial_dir, str)
                                 and trial_dir else None)
        return found

    def known_trials(self) -> dict[str, Path | None]:
        """Every trial the experiment directory knows of, by trial id, with its trial directory
        (None when it has none yet): each trial directory (in creation order), then each trial
        with only a job registry record.

        NNI's ``/trial-jobs`` lists a trial only some time after its process started, so a trial
        that was stopped right after its start may be known from here alone.
        """
        known: dict[str, Path | None] = dict(self.trial_dirs())
        for trial_id, trial_dir in self.registered_trials().items():
            if trial_id not in known:
                has_dir = trial_dir is not None and trial_dir.is_dir()
                known[trial_id] = trial_dir if has_dir else None
        return known


_JOB_RECORDS = Path("hpo-tools") / "jobs"
"""Where the job registry (``hpo_tools.jobs``) keeps one record per trial, under ``E``."""


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


LOG_TAIL = 256 * 1024
"""Bytes read from the end of a log: enough for the last errors, bounded for huge logs."""


def read_log_tail(path: Path, limit: int = LOG_TAIL) -> str | None:
    """The last ``limit`` bytes of a log file as text; None when it cannot be read."""
    try:
        with open(path, "rb") as handle:
            handle.seek(0, os.SEEK_END)
            handle.seek(max(0, handle.tell() - limit))
            return handle.read().decode("utf-8", errors="replace")
    except OSError:
        return None


_EXCEPTION_LINE = re.compile(
    r"(?:[A-Za-z_]\w*\.)*\w*(?:Error|Exception|Interrupt|Exit)(?::\s.*|:)?")
"""A Python exception line: ``KeyError: 1``, ``json.decoder.JSONDecodeError: ...``,
``Exception: boom``, ``KeyboardInterrupt``."""

_ERROR_LINE_LENGTH = 300
"""Characters of an error line shown in the summary (a message can quote a whole command)."""


def first_error_line(lines: Sequence[str]) -> str | None:
    """The first line starting with ``error:`` (how hpo-tools reports an error on stderr) or
    naming a Python exception (the last line of a traceback), or None."""
    for line in lines:
        line = line.rstrip()
        if line.startswith("error:") or _EXCEPTION_LINE.fullmatch(line):
            return line
    return None


def _shortened(line: str) -> str:
    line = line.strip()
    if len(line) <= _ERROR_LINE_LENGTH:
        return line
    return line[:_ERROR_LINE_LENGTH - 3] + "..."


def trial_error(run: TrialRun) -> str | None:
    """The first error line of a trial: what tells at a glance why it failed.

    The runner's own ``message`` in ``result.json`` when it wrote one; else (the runner died
    before writing it, e.g. it could not start) the first ``error: ...`` line or Python
    exception line in the trial's ``trial.stderr`` (the runner's stderr, which NNI keeps), then
    in its ``trial.log`` (the runner's log and the jobs' output). Logs are read from their last
    256 KiB.

    Args:
        run: the trial's own record.

    Returns:
        One line (at most 300 characters), or None when nothing names an error.
    """
    if run.message and run.message.strip():
        return _shortened(run.message.strip().splitlines()[0])
    if run.trial_dir == Path():
        return None  # no trial directory: nothing to read
    for name in ("trial.stderr", "trial.log"):
        text = read_log_tail(run.trial_dir / name)
        line = first_error_line(text.splitlines()) if text else None
        if line is not None:
            return _shortened(line)
    return None
