"""``E/report.png``: a picture of an experiment, for users who do not open NNI's web UI.

Three panels, drawn from a :class:`~hpo_tools.experiment.progress.Snapshot` (the trials' own
records, no NNI connection):

1. each trial's score over its reported steps: succeeded trials as lines, the best one
   highlighted, trials stopped by the assessor dashed and ended with an ``x``, failed and
   cancelled ones greyed;
2. the best final score so far against wall time: a trial's end is when its runner last wrote
   its ``result.json`` (the records hold no timestamps), counted from the first trial's
   ``params.json``; without usable times (no ``result.json``, or every file with the same time,
   as after a copy that did not keep them) against the trials' submission order, and the axis
   label says so;
3. the best trial's parameters as a table.

matplotlib (extra ``report``) is imported only here, only when a report is drawn, with its
non-interactive Agg backend; without it :func:`write_report` logs one line and writes nothing.
"""

from __future__ import annotations

import io
import logging
import math
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from hpo_tools.experiment.progress import Snapshot, TrialView
from hpo_tools.experiment.records import _report_score
from hpo_tools.experiment.status import Outcome

_logger = logging.getLogger(__name__)

REPORT_NAME = "report.png"
"""The report's file name in the experiment directory ``E``."""

MISSING_MATPLOTLIB = ("report.png skipped: matplotlib is not installed "
                      "(pip install 'hpo-tools[report]')")
"""The one line logged instead of a report when matplotlib cannot be imported."""

MAX_PARAM_ROWS = 24
"""Parameters shown in the table; more are summarised in one line."""

_VALUE_WIDTH = 40
_KEY_WIDTH = 100

# Colours by what became of a trial (matplotlib's default cycle, so they print alike).
_STYLE: dict[str, dict[str, Any]] = {
    "best": {"color": "tab:orange", "linewidth": 2.6, "alpha": 1.0, "zorder": 5},
    Outcome.SUCCEEDED.value: {"color": "tab:blue", "linewidth": 1.2, "alpha": 0.7, "zorder": 3},
    Outcome.RUNNING.value: {"color": "tab:green", "linewidth": 1.2, "alpha": 0.8, "zorder": 3},
    Outcome.ASSESSOR_STOPPED.value: {"color": "tab:red", "linewidth": 1.2, "alpha": 0.8,
                                     "linestyle": "--", "zorder": 4},
    Outcome.CANCELLED.value: {"color": "0.65", "linewidth": 1.0, "alpha": 0.8, "zorder": 2},
    Outcome.FAILED.value: {"color": "0.65", "linewidth": 1.0, "alpha": 0.8, "linestyle": ":",
                           "zorder": 2},
}


@dataclass(frozen=True)
class DrawnTrial:
    """One trial as the report drew it.

    Attributes:
        trial_id: NNI's trial id.
        kind: ``best``, or the trial's outcome (``succeeded``, ``stopped by assessor``, ...).
        points: how many reported scores its line has (0: not drawn).
        end_time: seconds from the first trial's start to its ``result.json``, or None.
    """

    trial_id: str
    kind: str
    points: int
    end_time: float | None


@dataclass(frozen=True)
class ReportFigure:
    """A drawn report: the matplotlib figure and what is in it.

    Attributes:
        figure: the ``matplotlib.figure.Figure`` (not attached to pyplot).
        trials: every trial of the snapshot, in its order.
        time_axis: ``wall time`` or ``trial order`` (what the best-so-far panel is drawn against).
        step_axis: ``step`` or ``report number`` (what the score panel is drawn against).
    """

    figure: Any
    trials: tuple[DrawnTrial, ...]
    time_axis: str
    step_axis: str


def _kind(view: TrialView, best: TrialView | None) -> str:
    if best is not None and view.trial_id == best.trial_id:
        return "best"
    return view.outcome.value


def _series(reports: Sequence[dict[str, Any]]) -> tuple[list[Any], list[float]]:
    """(steps, scores) of the reports that have a finite score; a step is None when missing."""
    steps: list[Any] = []
    scores: list[float] = []
    for report in reports:
        score = _report_score(report)
        if score is None:
            continue
        step = report.get("step")
        number = isinstance(step, (int, float)) and not isinstance(step, bool)
        steps.append(step if number and math.isfinite(step) else None)
        scores.append(score)
    return steps, scores


def _increasing(steps: Sequence[Any]) -> bool:
    return all(s is not None for s in steps) and all(a < b for a, b in zip(steps, steps[1:]))


def _mtime(path: Path) -> float | None:
    try:
        return path.stat().st_mtime
    except OSError:
        return None


def _end_times(trials: Sequence[TrialView]) -> dict[str, float]:
    """Seconds from the first trial's ``params.json`` to each trial's ``result.json``; empty
    when the files give no usable times."""
    starts: list[float] = []
    ends: dict[str, float] = {}
    for view in trials:
        if view.run.trial_dir == Path():
            continue
        start = _mtime(view.run.trial_dir / "params.json")
        end = _mtime(view.run.trial_dir / "result.json")
        if start is not None:
            starts.append(start)
        if end is not None:
            ends[view.trial_id] = end
    if not ends:
        return {}
    origin = min(starts + list(ends.values()))
    if len(ends) > 1 and max(ends.values()) - min(ends.values()) <= 0.0:
        return {}  # all written at once: copied without their times
    return {trial_id: end - origin for trial_id, end in ends.items()}


def _time_unit(seconds: float) -> tuple[float, str]:
    if seconds <= 180:
        return 1.0, "s"
    if seconds <= 3 * 3600:
        return 60.0, "min"
    return 3600.0, "h"


def _shorten(text: str, width: int) -> str:
    if len(text) <= width:
        return text
    keep = width - 3
    return text[:keep // 2] + "..." + text[len(text) - (keep - keep // 2):]


def _value_text(value: Any) -> str:
    import json

    if isinstance(value, float):
        return f"{value:.6g}"
    return value if isinstance(value, str) else json.dumps(value)


def _title(snapshot: Snapshot) -> str:
    counts = ", ".join(f"{snapshot.count(o)} {o.value}" for o in Outcome if snapshot.count(o))
    status = "" if snapshot.status in ("", "-") else f" ({snapshot.status})"
    return (f"experiment {snapshot.experiment_id}{status}: {snapshot.optimize_mode}, "
            f"{len(snapshot.trials)} trials" + (f": {counts}" if counts else ""))


def _draw_scores(ax: Any, snapshot: Snapshot, best: TrialView | None) -> tuple[dict[str, int], str]:
    """Panel 1; returns the points drawn per trial and what the x axis is."""
    series = {v.trial_id: _series(v.run.intermediate) for v in snapshot.trials}
    for view in snapshot.trials:  # a trial with a final score but no intermediate reports
        steps, scores = series[view.trial_id]
        if not scores and view.run.score is not None:
            series[view.trial_id] = _series([view.run.final or {}])
    by_step = all(_increasing(steps) for steps, _ in series.values())
    drawn: dict[str, int] = {}
    seen: set[str] = set()
    for view in snapshot.trials:
        steps, scores = series[view.trial_id]
        drawn[view.trial_id] = len(scores)
        if not scores:
            continue
        xs = steps if by_step else list(range(1, len(scores) + 1))
        kind = _kind(view, best)
        style = dict(_STYLE[kind])
        label = None
        if kind not in seen:
            seen.add(kind)
            label = f"best (trial {view.trial_id})" if kind == "best" else kind
        marker = "o" if len(scores) == 1 else None
        (line,) = ax.plot(xs, scores, label=label, marker=marker, markersize=4, **style)
        line.set_gid(f"trial:{view.trial_id}")
        if kind == Outcome.ASSESSOR_STOPPED.value:
            (stop,) = ax.plot([xs[-1]], [scores[-1]], marker="x", markersize=9,
                              markeredgewidth=2, color=style["color"], linestyle="none",
                              zorder=6)
            stop.set_gid(f"assessor-stop:{view.trial_id}")
        if kind == "best" and view.run.score is not None:
            (star,) = ax.plot([xs[-1]], [view.run.score], marker="*", markersize=14,
                              color=style["color"], markeredgecolor="black", linestyle="none",
                              zorder=7)
            star.set_gid(f"best-final:{view.trial_id}")
    step_axis = "step" if by_step else "report number"
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # steps and report numbers are counts
    ax.set_xlabel(step_axis if by_step else
                  "report number (steps are not increasing in every trial, e.g. finetune days)")
    better = "higher" if snapshot.optimize_mode == "maximize" else "lower"
    ax.set_ylabel(f"score ({better} is better)")
    ax.set_title("score of each trial over its reports")
    ax.grid(True, alpha=0.3)
    if seen:
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no trial reported a score yet", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    return drawn, step_axis


def _draw_best_so_far(ax: Any, snapshot: Snapshot, best: TrialView | None,
                      ends: dict[str, float]) -> str:
    """Panel 2; returns what the x axis is."""
    finished = [v for v in snapshot.trials
                if v.outcome is Outcome.SUCCEEDED and v.run.score is not None
                and v.run.params is not None]
    use_time = bool(finished) and all(v.trial_id in ends for v in finished)
    if use_time:
        finished.sort(key=lambda v: ends[v.trial_id])
        span = max(ends[v.trial_id] for v in finished)
        scale, unit = _time_unit(span)
        xs = [ends[v.trial_id] / scale for v in finished]
        ax.set_xlabel(f"wall time ({unit}) from the first trial's start to each trial's end "
                      "(result.json written)")
    else:
        xs = list(range(1, len(finished) + 1))
        ax.set_xlabel("succeeded trials in submission order (no end times in the records)")
    sign = 1.0 if snapshot.optimize_mode == "maximize" else -1.0
    running: list[float] = []
    for view in finished:
        score = float(view.run.score)  # type: ignore[arg-type]
        running.append(score if not running or sign * score > sign * running[-1]
                       else running[-1])
    if finished:
        ax.plot(xs, [v.run.score for v in finished], "o", color=_STYLE["succeeded"]["color"],
                alpha=0.6, label="final score of a succeeded trial")
        (line,) = ax.step(xs, running, where="post", color="black", linewidth=1.8,
                          label="best so far")
        line.set_gid("best-so-far")
        ids = [v.trial_id for v in finished]
        if best is not None and best.trial_id in ids:
            index = ids.index(best.trial_id)
            ax.plot([xs[index]], [best.run.score], marker="*", markersize=14, linestyle="none",
                    color=_STYLE["best"]["color"], markeredgecolor="black",
                    label=f"best: trial {best.trial_id}", zorder=7)
        ax.legend(loc="best", fontsize="small")
    else:
        ax.text(0.5, 0.5, "no trial succeeded with a final score", ha="center", va="center",
                transform=ax.transAxes, color="0.4")
    ax.set_ylabel("best final score so far")
    ax.set_title("best final score so far")
    ax.grid(True, alpha=0.3)
    return "wall time" if use_time else "trial order"


def _draw_params(ax: Any, best: TrialView | None) -> None:
    """Panel 3: the best trial's parameters, one row each."""
    ax.axis("off")
    if best is None:
        ax.set_title("best trial: none yet (no trial succeeded with a final score)", loc="left")
        return
    ax.set_title(f"best trial {best.trial_id}: final score {best.run.score:.6g}, parameters",
                 loc="left")
    params = list((best.run.params or {}).items())
    rows = [[_shorten(str(key), _KEY_WIDTH), _shorten(_value_text(value), _VALUE_WIDTH)]
            for key, value in params[:MAX_PARAM_ROWS]]
    if len(params) > MAX_PARAM_ROWS:
        rows.append([f"... {len(params) - MAX_PARAM_ROWS} more in best/best_params.json", ""])
    if not rows:
        rows = [["(no parameters)", ""]]
    # The axes is sized for the rows (draw_report): the table fills it.
    table = ax.table(cellText=rows, colLabels=["parameter", "value"], cellLoc="left",
                     colLoc="left", bbox=[0.0, 0.0, 1.0, 1.0], colWidths=[0.68, 0.32])
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    for (row, _), cell in table.get_celld().items():
        cell.PAD = 0.01
        cell.set_edgecolor("0.75")
        if row == 0:
            cell.set_facecolor("0.92")
            cell.get_text().set_fontweight("bold")
    table.set_gid("best-params")


def draw_report(snapshot: Snapshot) -> ReportFigure:
    """Draw the report of ``snapshot`` (matplotlib's Agg backend; pyplot is not used).

    Args:
        snapshot: the experiment's state, e.g. from ``build_snapshot`` or ``RunResult``.

    Returns:
        The figure and what it shows.

    Raises:
        ImportError: matplotlib is not installed.
    """
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    best = snapshot.best
    n_params = len(best.run.params or {}) if best is not None else 0
    table_rows = max(1, min(n_params, MAX_PARAM_ROWS + 1)) + 1  # + the header
    table_height = 0.28 * table_rows + 0.5  # inches: the rows and the panel's title
    figure = Figure(figsize=(14, 5.2 + table_height), dpi=100, layout="constrained")
    FigureCanvasAgg(figure)
    grid = figure.add_gridspec(2, 2, height_ratios=[5.2, table_height])
    score_ax = figure.add_subplot(grid[0, 0])
    time_ax = figure.add_subplot(grid[0, 1])
    params_ax = figure.add_subplot(grid[1, :])
    figure.suptitle(_title(snapshot), fontsize=13)
    ends = _end_times(snapshot.trials)
    drawn, step_axis = _draw_scores(score_ax, snapshot, best)
    time_axis = _draw_best_so_far(time_ax, snapshot, best, ends)
    _draw_params(params_ax, best)
    trials = tuple(DrawnTrial(v.trial_id, _kind(v, best), drawn.get(v.trial_id, 0),
                              ends.get(v.trial_id)) for v in snapshot.trials)
    return ReportFigure(figure, trials, time_axis, step_axis)


def write_report(snapshot: Snapshot, path: str | Path) -> Path | None:
    """Draw the report of ``snapshot`` and write it as a PNG, whole or not at all.

    Args:
        snapshot: the experiment's state.
        path: where to write, normally ``E/report.png``.

    Returns:
        ``path``; None when matplotlib is not installed (one line is logged, nothing written).

    Raises:
        StorageError: the file cannot be written. Anything matplotlib raises while drawing
        passes through too: :func:`try_write_report` is the caller that must not fail.
    """
    from hpo_tools import storage

    try:
        drawn = draw_report(snapshot)
    except ImportError as err:
        if getattr(err, "name", None) and not str(err.name).startswith("matplotlib"):
            raise
        _logger.warning("%s", MISSING_MATPLOTLIB)
        return None
    buffer = io.BytesIO()
    drawn.figure.savefig(buffer, format="png")
    path = Path(path)
    storage.write_bytes_atomic(path, buffer.getvalue())
    return path


def try_write_report(snapshot: Snapshot, path: str | Path) -> Path | None:
    """:func:`write_report`, but a failure is one warning line and None, never an exception:
    the experiment has run, and a picture must not change how its command ends."""
    try:
        return write_report(snapshot, path)
    except Exception as err:  # noqa: BLE001 - drawing is an extra; the run's result stands
        message = str(err).strip().splitlines()[0] if str(err).strip() else ""
        _logger.warning("%s not written: %s%s", path, type(err).__name__,
                        f": {message}" if message else "")
        return None
