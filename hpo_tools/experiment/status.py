"""NNI statuses: when an experiment has ended, and what became of each trial.

NNI 3.0 never moves from ``TUNER_NO_MORE_TRIAL`` to ``DONE`` when the tuner runs out of points,
and keeps reporting RUNNING after its dispatcher (tuner/assessor process) died, so both are ends
decided here from polled statuses and the dispatcher's log (``../shared/API-NOTES.md`` §0).
"""

from __future__ import annotations

import enum
import logging
import os
from collections.abc import Iterable
from pathlib import Path

_logger = logging.getLogger(__name__)


_ENDED_EXPERIMENT = frozenset({"DONE", "STOPPED", "ERROR"})
_NO_MORE_TRIAL = frozenset({"NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL"})
_LIVE_TRIAL = frozenset({"RUNNING", "WAITING"})
_CANCELLED_TRIAL = frozenset({"USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED"})


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
