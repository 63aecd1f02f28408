"""PAIAssessor: an NNI assessor that stops weak trials early and cancels their platform jobs.

NNI calls :meth:`PAIAssessor.assess_trial` after every intermediate result of a trial; a ``Bad``
answer makes NNI kill the trial (SIGINT to the runner, which cancels its jobs). When a trial ends
unsuccessfully, :meth:`PAIAssessor.trial_end` asks the job registry to cancel whatever is still
live, as a backstop (see docs/assessor.md).

The decision is a ladder of guard clauses over the pure helpers below. Every value is first put in
*normalised* form: multiplied by the direction's sign, so that higher is always better and the
helpers never look at ``optimize_mode`` again.

Rules, in order (``s`` = number of reports of the trial, ``b`` = its best normalised value so far,
``P`` = the peers' comparison values at step ``s``; see docs/assessor.md for the details):

1. median: Bad when ``b < median(P)``;
2. proportion: Bad when ``b < median(P) + proportion * (max(P) - median(P))``;
3. patience: Bad when the last ``patience`` reports did not improve ``b``.

Rules 1 and 2 need ``s >= start_step`` and at least ``MIN_PEERS`` peers; rule 3 needs
``s >= start_step``.
"""

from __future__ import annotations

import json
import logging
import math
import os
import threading
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

# The assessor runs inside NNI's dispatcher, where nni is always importable; it is the one module
# of ours that subclasses an NNI class, so the import is at the top (it is never on the trial
# runner's path).
from nni.assessor import Assessor, AssessResult

from hpo_tools.directions import OptimizeMode

__all__ = [
    "PAIAssessor",
    "OptimizeMode",
    "parse_optimize_mode",
    "DEFAULT_START_STEP",
    "DEFAULT_MOVING_AVG",
    "DEFAULT_PROPORTION",
    "DEFAULT_PATIENCE",
    "MIN_PEERS",
    "DECISIONS_FILE",
    "TRIAL_END_TIMEOUT",
    "scalar_value",
    "normalise",
    "best_so_far",
    "running_means",
    "median",
    "proportion_threshold",
    "reports_without_improvement",
    "experiment_dir_from_env",
]

_logger = logging.getLogger(__name__)

DEFAULT_START_STEP = 10
"""No decision before a trial has made this many reports (about a third of a 30-report trial:
late starters need that long to show; see docs/assessor.md and benchmarks/bench_assessor.py)."""
DEFAULT_MOVING_AVG = False
"""Compare against peers' raw values at the step; True uses their running means (lenient)."""
DEFAULT_PROPORTION = 0.0
"""0 turns the proportion rule off (its threshold would be the median itself)."""
DEFAULT_PATIENCE = 0
"""0 turns the patience rule off."""
MIN_PEERS = 2
"""The median and proportion rules need at least this many peers with a value at the step."""
DECISIONS_FILE = Path("hpo-tools") / "assessor-decisions.jsonl"
"""Where each Bad decision is appended, relative to the experiment directory."""
TRIAL_END_TIMEOUT = 10.0
"""Seconds `trial_end` may spend cancelling a trial's jobs (NNI's dispatcher waits on it)."""


def parse_optimize_mode(optimize_mode: object) -> OptimizeMode:
    """The direction named by the ``optimize_mode`` classArg (any case).

    Raises:
        ValueError: when it is neither ``maximize`` nor ``minimize``.
    """
    if isinstance(optimize_mode, str):
        text = optimize_mode.lower()
        for mode in OptimizeMode:
            if text == mode.value:
                return mode
    raise ValueError(
        f"PAIAssessor classArgs optimize_mode={optimize_mode!r}: expected 'maximize' or "
        f"'minimize' (set assessor.classArgs.optimize_mode in the experiment config)"
    )


# --------------------------------------------------------------------------------------------
# Pure decision helpers (module level, no state).
# --------------------------------------------------------------------------------------------


def scalar_value(value: object) -> float:
    """The number an intermediate result stands for: the value, or a dict's ``"default"``.

    Anything else (a string, a dict without a numeric ``"default"``, a bool) is NaN: the assessor
    must not raise inside NNI's dispatcher, and a NaN is never counted as a good value.
    """
    if isinstance(value, Mapping):
        value = value.get("default")
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return math.nan
    return float(value)


def normalise(values: Sequence[float], sign: float) -> list[float]:
    """``values`` multiplied by ``sign`` (NaN stays NaN): higher is better afterwards."""
    return [sign * v for v in values]


def best_so_far(normalised: Sequence[float]) -> float:
    """The largest non-NaN value; ``-inf`` when there is none (a trial with only NaN is worst)."""
    finite = [v for v in normalised if not math.isnan(v)]
    return max(finite) if finite else -math.inf


def running_means(normalised: Sequence[float]) -> list[float]:
    """Mean of the non-NaN values among the first ``k`` values, for each ``k``; NaN until one."""
    means: list[float] = []
    total = 0.0
    count = 0
    for v in normalised:
        if not math.isnan(v):
            total += v
            count += 1
        means.append(total / count if count else math.nan)
    return means


def median(values: Sequence[float]) -> float:
    """The median of a non-empty sequence (mean of the two middle values when even)."""
    ordered = sorted(values)
    n = len(ordered)
    if n == 0:
        raise ValueError("median() of an empty sequence")
    mid = n // 2
    if n % 2:
        return ordered[mid]
    return (ordered[mid - 1] + ordered[mid]) / 2.0


def proportion_threshold(median_value: float, best_peer: float, proportion: float) -> float:
    """The value ``proportion`` of the way from the peers' median to their best (normalised)."""
    return median_value + proportion * (best_peer - median_value)


def reports_without_improvement(normalised: Sequence[float]) -> int:
    """How many of the latest reports did not strictly raise the best value so far.

    A NaN report never improves. The first non-NaN report is an improvement (over nothing).
    """
    best = -math.inf
    stale = 0
    for v in normalised:
        if not math.isnan(v) and v > best:
            best = v
            stale = 0
        else:
            stale += 1
    return stale


def peer_values(
    curves: Mapping[str, _Curve], trial_id: str, step: int, moving_avg: bool
) -> list[float]:
    """Every other trial's comparison value at ``step`` (1-based), skipping NaN and short curves."""
    values = []
    for other_id, curve in curves.items():
        if other_id == trial_id or len(curve.values) < step:
            continue
        v = curve.means[step - 1] if moving_avg else curve.values[step - 1]
        if not math.isnan(v):
            values.append(v)
    return values


def experiment_dir_from_env(environ: Mapping[str, str] | None = None) -> Path | None:
    """The experiment directory NNI gives its dispatcher: ``NNI_LOG_DIRECTORY`` is ``E/log``."""
    environ = os.environ if environ is None else environ
    log_dir = environ.get("NNI_LOG_DIRECTORY")
    if not log_dir:
        return None
    return Path(log_dir).parent


# --------------------------------------------------------------------------------------------
# The assessor.
# --------------------------------------------------------------------------------------------


@dataclass
class _Curve:
    """One trial's normalised history and the running means of it."""

    values: list[float] = field(default_factory=list)
    means: list[float] = field(default_factory=list)
    stopped: bool = False
    ended: bool = False


def _check_int(name: str, value: object, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(
            f"PAIAssessor classArgs {name}={value!r}: expected an integer >= {minimum} "
            f"(set assessor.classArgs.{name} in the experiment config)"
        )
    return value


def _check_proportion(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= 1:
        raise ValueError(
            f"PAIAssessor classArgs proportion={value!r}: expected a number from 0 to 1 "
            f"(0 turns the rule off; set assessor.classArgs.proportion in the experiment config)"
        )
    return float(value)


def _json_number(value: float) -> float | None:
    """A float JSON can hold; None for NaN and infinities."""
    return value if math.isfinite(value) else None


class PAIAssessor(Assessor):
    """Median / proportion / patience early stopping, with a job-cancelling ``trial_end``.

    Args:
        optimize_mode: ``"maximize"`` or ``"minimize"``, the direction of the reported metric.
        start_step: no decision before a trial has made this many reports (>= 1).
        moving_avg: compare with each peer's running mean up to the step (Vizier's median
            stopping rule) instead of its raw value at the step.
        proportion: 0 to 1; when > 0, also stop a trial whose best so far is below the point this
            fraction of the way from the peers' median to their best.
        patience: when > 0, stop a trial after this many reports in a row without improvement.
        experiment_dir: the experiment directory ``E`` (decisions file, job registry); defaults
            to the parent of ``NNI_LOG_DIRECTORY``. None outside NNI: nothing is written.
        platform: hpo_tools 0.1.x's classArg (``MAXCOMPUTE``, ``DLC``, ...), accepted so that
            its experiment files run unchanged; not needed: the job registry records which
            platform ran each job, and ``trial_end`` cancels through it.

    Example::

        assessor:
          name: PAIAssessor          # after `hpo-tools register`
          classArgs: {optimize_mode: maximize}
    """

    def __init__(
        self,
        optimize_mode: str = "maximize",
        start_step: int = DEFAULT_START_STEP,
        moving_avg: bool = DEFAULT_MOVING_AVG,
        proportion: float = DEFAULT_PROPORTION,
        patience: int = DEFAULT_PATIENCE,
        experiment_dir: str | os.PathLike[str] | None = None,
        platform: str | None = None,
    ) -> None:
        super().__init__()
        if platform is not None and not isinstance(platform, str):
            raise ValueError(
                f"PAIAssessor classArgs platform={platform!r}: expected a platform name "
                "(hpo_tools 0.1.x's MAXCOMPUTE, DLC, ...; not needed: the job registry knows it)"
            )
        self.direction = parse_optimize_mode(optimize_mode)
        self.start_step = _check_int("start_step", start_step, 1)
        if not isinstance(moving_avg, bool):
            raise ValueError(
                f"PAIAssessor classArgs moving_avg={moving_avg!r}: expected true or false"
            )
        self.moving_avg = moving_avg
        self.proportion = _check_proportion(proportion)
        self.patience = _check_int("patience", patience, 0)
        if experiment_dir is not None and not isinstance(experiment_dir, (str, os.PathLike)):
            raise ValueError(
                f"PAIAssessor classArgs experiment_dir={experiment_dir!r}: expected a directory "
                f"path (absolute: NNI's dispatcher runs in <experiment dir>/log)"
            )
        exp_dir = Path(experiment_dir) if experiment_dir is not None else experiment_dir_from_env()
        self.experiment_dir: Path | None = exp_dir
        self._curves: dict[str, _Curve] = {}
        _logger.info(
            "PAIAssessor: optimize_mode=%s start_step=%d moving_avg=%s proportion=%g patience=%d "
            "experiment_dir=%s",
            self.direction.value, self.start_step, self.moving_avg, self.proportion,
            self.patience, self.experiment_dir,
        )

    @property
    def decisions_path(self) -> Path | None:
        """``E/hpo-tools/assessor-decisions.jsonl``, or None without an experiment directory."""
        return None if self.experiment_dir is None else self.experiment_dir / DECISIONS_FILE

    # -- NNI interface ---------------------------------------------------------------------------

    def assess_trial(self, trial_job_id: str, trial_history: list[Any]) -> AssessResult:
        """Decide whether ``trial_job_id`` goes on, given all its intermediate results so far."""
        curve = self._update(trial_job_id, trial_history)
        step = len(curve.values)
        if curve.stopped:
            return AssessResult.Bad  # NNI asks again after every report until the kill lands
        if step < self.start_step:
            return AssessResult.Good
        best = best_so_far(curve.values)
        peers = peer_values(self._curves, trial_job_id, step, self.moving_avg)
        if len(peers) >= MIN_PEERS:
            med = median(peers)
            if best < med:
                return self._stop(trial_job_id, step, "median", best=best, median=med,
                                  peers=len(peers))
            if self.proportion > 0:
                threshold = proportion_threshold(med, max(peers), self.proportion)
                if best < threshold:
                    return self._stop(trial_job_id, step, "proportion", best=best, median=med,
                                      best_peer=max(peers), threshold=threshold,
                                      peers=len(peers))
        else:
            _logger.debug("trial %s step %d: %d peer(s) at this step, median rule waits",
                          trial_job_id, step, len(peers))
        if self.patience > 0:
            stale = reports_without_improvement(curve.values)
            if stale >= self.patience:
                return self._stop(trial_job_id, step, "patience", best=best,
                                  reports_without_improvement=stale)
        _logger.debug("trial %s step %d: Good (best %s, %d peers)", trial_job_id, step,
                      self._shown(best), len(peers))
        return AssessResult.Good

    def trial_end(self, trial_job_id: str, success: bool) -> None:
        """Record the end of a trial; when it did not succeed, cancel its live jobs (bounded)."""
        try:
            super().trial_end(trial_job_id, success)
            curve = self._curves.get(trial_job_id)
            if curve is not None:
                curve.ended = True  # its values stay: they are real observations for its peers
            if not success:
                self._cancel_live_jobs(trial_job_id)
        except Exception:  # noqa: BLE001 - an exception here would kill NNI's dispatcher
            _logger.exception("trial_end(%s, success=%s) failed", trial_job_id, success)

    # -- internals -------------------------------------------------------------------------------

    def _update(self, trial_id: str, history: Sequence[Any]) -> _Curve:
        curve = self._curves.setdefault(trial_id, _Curve())
        values = normalise([scalar_value(v) for v in history], self.direction.sign)
        for raw, v in zip(history[len(curve.values):], values[len(curve.values):]):
            if math.isnan(v) and not (isinstance(raw, float) and math.isnan(raw)):
                _logger.warning("trial %s reported %r: not a number nor a dict with a numeric "
                                "'default'; counted as NaN", trial_id, raw)
        curve.values = values
        curve.means = running_means(values)
        return curve

    def _shown(self, normalised: float) -> float:
        """A normalised value back in the metric's own direction, for logs and the record."""
        return normalised * self.direction.sign

    def _stop(self, trial_id: str, step: int, rule: str, **numbers: float) -> AssessResult:
        self._curves[trial_id].stopped = True
        shown: dict[str, Any] = {}
        for key, value in numbers.items():
            if key in ("peers", "reports_without_improvement"):
                shown[key] = int(value)
            else:
                shown[key] = _json_number(self._shown(value))
        _logger.info("trial %s step %d: Bad by the %s rule (%s)", trial_id, step, rule,
                     ", ".join(f"{k}={v}" for k, v in shown.items()))
        record = {"trial_id": trial_id, "step": step, "rule": rule, **shown,
                  "optimize_mode": self.direction.value, "start_step": self.start_step,
                  "moving_avg": self.moving_avg, "proportion": self.proportion,
                  "patience": self.patience, "time": time.time()}
        self._append_decision(record)
        return AssessResult.Bad

    def _append_decision(self, record: Mapping[str, Any]) -> None:
        path = self.decisions_path
        if path is None:
            return
        line = (json.dumps(record, sort_keys=True) + "\n").encode("utf-8")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            # One write() on an O_APPEND descriptor: a whole line or nothing, never interleaved.
            fd = os.open(path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
            try:
                os.write(fd, line)
            finally:
                os.close(fd)
        except OSError as err:
            _logger.error("could not record the decision for trial %s in %s: %s",
                          record.get("trial_id"), path, err)

    def _cancel_live_jobs(self, trial_id: str) -> None:
        """Ask the job registry to cancel the trial's live jobs, waiting at most a bounded time."""
        if self.experiment_dir is None:
            _logger.debug("trial %s ended unsuccessfully; no experiment directory, so its jobs "
                            "cannot be looked up", trial_id)
            return
        exp_dir = self.experiment_dir
        outcome: dict[str, Any] = {}

        def cancel() -> None:
            try:
                from hpo_tools.jobs import JobRegistry

                registry = JobRegistry(exp_dir)
                outcome["cancelled"] = registry.cancel_live(trial_id, timeout=TRIAL_END_TIMEOUT)
                # A cancel that timed out or failed leaves its job live in the record.
                record = registry.load(trial_id)
                outcome["left"] = [] if record is None else [e.job_id for e in record.live_jobs()]
            except Exception as err:  # noqa: BLE001 - reported below, never raised
                outcome["error"] = err

        worker = threading.Thread(target=cancel, name=f"pai-assessor-cancel-{trial_id}",
                                  daemon=True)
        worker.start()
        worker.join(TRIAL_END_TIMEOUT + 2.0)
        if worker.is_alive():
            _logger.error("trial %s: cancelling its jobs took more than %.0f s; left running in "
                          "the background", trial_id, TRIAL_END_TIMEOUT + 2.0)
        elif "error" in outcome:
            err = outcome["error"]
            _logger.error("trial %s: cancelling its jobs failed: %s: %s", trial_id,
                          type(err).__name__, err)
        else:
            if outcome.get("cancelled"):
                _logger.info("trial %s ended unsuccessfully; cancelled live job(s) %s", trial_id,
                             ", ".join(outcome["cancelled"]))
            if outcome.get("left"):
                _logger.error("trial %s: job(s) %s still live: their cancel failed or did not "
                              "finish in %.0f s (see hpo_tools.jobs warnings); `hpo-tools kill` "
                              "retries", trial_id, ", ".join(outcome["left"]),
                              TRIAL_END_TIMEOUT)
            elif not outcome.get("cancelled"):
                _logger.info("trial %s ended unsuccessfully; no live job left", trial_id)
