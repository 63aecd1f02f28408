"""Snapshots of an experiment and their text: the progress line and the summary table."""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo_tools.experiment.best import BestExport, select_best
from hpo_tools.experiment.config import _check_mode
from hpo_tools.experiment.records import (
    ExperimentFiles,
    TrialRun,
    read_assessor_decisions,
    read_trial_run,
    trial_error,
)
from hpo_tools.experiment.status import Outcome, classify_trial

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class TrialView:
    """One trial as progress and summary show it.

    Attributes:
        trial_id: NNI's trial id.
        sequence: NNI's sequence id (order of submission); None when unknown.
        nni_status: NNI's status, or None when NNI is not asked or has not listed the trial.
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
    nni_trials: Sequence[tuple[str, str | None, int | None]] | None = None,
    elapsed: float = 0.0,
    optimize_mode: str = "maximize",
    max_trials: int | None = None,
) -> Snapshot:
    """Join NNI's trial list with the trials' own records and the assessor's decisions.

    Args:
        files: the experiment directory.
        status: NNI's experiment status.
        nni_trials: ``(trial_id, status, sequence)`` for every trial NNI lists; None to classify
            from the trials' own records alone (experiment not running). Trials found in the
            experiment directory (trial directory or job registry record, see
            :meth:`ExperimentFiles.known_trials`) that NNI does not list are added after NNI's,
            classified from their own records.
        elapsed: seconds since the start.
        optimize_mode: ``maximize`` or ``minimize``.
        max_trials: ``maxTrialNumber``, shown in the progress line.

    Returns:
        The snapshot.
    """
    decisions = read_assessor_decisions(files.decisions_path)
    known = files.known_trials()
    listed: list[tuple[str, str | None, int | None]] = sorted(
        nni_trials or (), key=lambda t: (t[2] is None, t[2] or 0))
    # NNI lists a trial some time after its process started: a trial the experiment directory
    # knows of but NNI did not list (yet) is shown all the same, without an NNI status.
    named = {trial_id for trial_id, _, _ in listed}
    listed.extend((trial_id, None, None) for trial_id in known if trial_id not in named)
    views: list[TrialView] = []
    for trial_id, nni_status, sequence in listed:
        trial_dir = known.get(trial_id)
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


def _failure_lines(snapshot: Snapshot) -> list[str]:
    """``trial <id> failed: <first error line>`` for each failed trial."""
    lines = []
    for view in snapshot.trials:
        if view.outcome is not Outcome.FAILED:
            continue
        error = trial_error(view.run)
        if error is None:
            where = view.run.trial_dir if view.run.trial_dir != Path() else "no trial directory"
            error = f"no error line in its result.json, trial.stderr or trial.log ({where})"
        lines.append(f"trial {view.trial_id} failed: {error}")
    return lines


def format_summary(snapshot: Snapshot, export: BestExport | None = None) -> str:
    """The summary table printed at the end, plus the best trial's parameters and files.

    Below the totals, each failed trial gets one line with its first error (see
    :func:`~hpo_tools.experiment.records.trial_error`; this reads the trial's logs when its
    ``result.json`` has no message).

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
    lines.extend(_failure_lines(snapshot))
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
