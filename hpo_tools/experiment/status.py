"""NNI statuses: when an experiment has ended, and what became of each trial.

NNI 3.0 never moves from ``TUNER_NO_MORE_TRIAL`` to ``DONE`` when the tuner runs out of points,
and keeps reporting RUNNING after its dispatcher (tuner/assessor process) died, so both are ends
decided here from polled statuses and the dispatcher's log (``../shared/API-NOTES.md`` §0).
The same logs tell why an experiment ended in ERROR: the tuner's or assessor's own exception,
which NNI's manager never reports (it says "Tuner did not connect in 10 seconds", or nothing).
"""

from __future__ import annotations

import enum
import logging
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from hpo_tools.experiment.records import read_log_tail

_logger = logging.getLogger(__name__)


_ENDED_EXPERIMENT = frozenset({"DONE", "STOPPED", "ERROR"})
_NO_MORE_TRIAL = frozenset({"NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL"})
_LIVE_TRIAL = frozenset({"RUNNING", "WAITING"})
_CANCELLED_TRIAL = frozenset({"USER_CANCELED", "SYS_CANCELED", "EARLY_STOPPED"})


def experiment_finished(status: str, trial_statuses: Iterable[str], unsubmitted: int = 0) -> bool:
    """Whether an experiment with this status and these trial statuses has ended.

    ``DONE``, ``STOPPED`` and ``ERROR`` end it. ``NO_MORE_TRIAL`` / ``TUNER_NO_MORE_TRIAL`` end it
    once no trial is RUNNING or WAITING and none is still to be submitted: NNI never moves from
    ``TUNER_NO_MORE_TRIAL`` to ``DONE`` when the tuner runs out of points before
    ``maxTrialNumber`` (microsoft/nni#3859), and it says ``TUNER_NO_MORE_TRIAL`` as soon as the
    tuner sent its last point, which its manager submits (and lists) up to 5 s later.

    Args:
        status: the experiment status from NNI's ``/check-status``.
        trial_statuses: the status of every trial NNI lists.
        unsubmitted: trials NNI has created but not listed yet (its profile's
            ``nextSequenceId`` minus the trials listed).

    Returns:
        True when nothing more will happen.
    """
    if status in _ENDED_EXPERIMENT:
        return True
    if status in _NO_MORE_TRIAL:
        return unsubmitted <= 0 and not any(s in _LIVE_TRIAL for s in trial_statuses)
    return False


def settled_status(status: str) -> str:
    """The status to report for a run that :func:`experiment_finished` ended.

    ``NO_MORE_TRIAL`` means every trial ``maxTrialNumber`` allows was submitted (or
    ``maxExperimentDuration`` passed); once none is live NNI's manager sets ``DONE`` on its next
    pass over the trials, a few seconds after ``/trial-jobs`` already shows the last one ended.
    Ended then, the run is done: reporting ``NO_MORE_TRIAL`` would say it depends on which of the
    two polls came first. ``TUNER_NO_MORE_TRIAL`` stays as it is (the tuner ran out of points,
    and NNI never says ``DONE`` then).
    """
    return "DONE" if status == "NO_MORE_TRIAL" else status


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


def traceback_errors(lines: Sequence[str]) -> list[str]:
    """The exception line of every Python traceback in ``lines``, in order.

    A traceback is ``Traceback (most recent call last):``, indented frames, then the exception
    line (the first line that is not indented). With chained exceptions ("During handling of the
    above exception...") each traceback gives one line: the first is the original error, the last
    the one that was raised.
    """
    found: list[str] = []
    in_frames = False
    for line in lines:
        if line.startswith("Traceback (most recent call last):"):
            in_frames = True
        elif in_frames and line.strip() and not line[0].isspace():
            found.append(line.strip())
            in_frames = False
    return found


_RECORD_HEAD = re.compile(
    r"^\[[^\]]*\] (?P<level>[A-Z]+) \((?P<logger>[^/()]+)/"
    r"(?P<thread>[^()]*(?:\([^()]*\))?)\) ?(?P<message>.*)$")
"""The first line of a record of NNI's log: ``[date] LEVEL (logger/thread) message``."""


@dataclass(frozen=True)
class _LogRecord:
    level: str
    logger: str
    message: str
    lines: tuple[str, ...]  # the following lines: a traceback, when there is one

    @property
    def errors(self) -> list[str]:
        return traceback_errors(self.lines)


def _log_records(text: str) -> list[_LogRecord]:
    """The records of NNI's dispatcher.log (a record's traceback follows its first line)."""
    records: list[_LogRecord] = []
    head: re.Match[str] | None = None
    lines: list[str] = []
    for line in text.splitlines():
        match = _RECORD_HEAD.match(line)
        if match is None:
            lines.append(line)
            continue
        if head is not None:
            records.append(_LogRecord(head["level"], head["logger"], head["message"], tuple(lines)))
        head, lines = match, []
    if head is not None:
        records.append(_LogRecord(head["level"], head["logger"], head["message"], tuple(lines)))
    return records


_DISPATCHER_STARTED = "Dispatcher started"
_DISPATCHER_EXIT = "Dispatcher exiting"
_DISPATCHER_MAIN = "nni.main"
"""The logger of NNI's dispatcher entry point (``python -m nni``): an ERROR with a traceback
there is the exception that ends the process, e.g. a tuner that cannot be created."""

_COMMAND_WORKER = "in command_queue_worker"
"""A traceback frame of the dispatcher's command thread, which ends on the first exception it
logs (``MsgDispatcherBase.command_queue_worker``)."""

_KNOWN_ISSUES = (
    (("is_created_in_previous_exp", "TypeError"),
     "a bug of NNI's Hyperband and BOHB, microsoft/nni#5263: use hpo_tools.tuners.SafeHyperband "
     "or SafeBOHB"),
    (("metis_tuner", "'x0' must only have one dimension"),
     "a bug of NNI's Metis with SciPy >= 1.11: use hpo_tools.tuners.SafeMetis"),
    (("No module named 'hyperopt'",), "install the extra: pip install 'hpo-tools[tuners]'"),
    (("No module named 'ConfigSpace'",), "install the extra: pip install 'hpo-tools[tuners]'"),
    (("No module named 'statsmodels'",), "install the extra: pip install 'hpo-tools[tuners]'"),
)
"""(strings all found in the traceback, what to tell the user) for NNI bugs seen here."""


@dataclass(frozen=True)
class DispatcherFailure:
    """How NNI's dispatcher (the process running the tuner and the assessor) died.

    Attributes:
        error: the exception line, e.g. ``ModuleNotFoundError: No module named 'hyperopt'``;
            ``the dispatcher exited`` when its log names no exception.
        role: ``tuner`` or ``assessor`` when the traceback tells which one raised, else None.
        at_start: the tuner or assessor could not even be created (import, classArgs).
        log: the file the error was read from.
        known_issue: what to do about a known NNI bug, or None.
    """

    error: str
    role: str | None
    at_start: bool
    log: Path
    known_issue: str | None = None

    def describe(self, tuner: str | None = None, assessor: str | None = None) -> str:
        """One line naming who failed and why, and the log to read.

        Args:
            tuner: the configured tuner's name (``name`` or ``className``), or None.
            assessor: the configured assessor's name, or None when there is no assessor (a
                failure the traceback does not attribute is then the tuner's).

        Returns:
            e.g. ``the tuner (Anneal) failed to start: ModuleNotFoundError: No module named
            'hyperopt' (see E/log/dispatcher.log)``.
        """
        role = self.role or ("tuner" if assessor is None else None)
        name = {"tuner": tuner, "assessor": assessor}.get(role or "")
        who = f"the {role}" if role else "NNI's tuner/assessor process (the dispatcher)"
        if name:
            who += f" ({name})"
        what = "failed to start" if self.at_start else "failed"
        see = f"see {self.log}"
        if self.known_issue:
            see = f"{self.known_issue}; {see}"
        return f"{who} {what}: {self.error} ({see})"


def _role(lines: Sequence[str]) -> str | None:
    """``tuner`` / ``assessor``: the deepest frame of NNI's dispatcher that called one of them."""
    role = None
    for line in lines:
        for name in ("tuner", "assessor"):
            if f"self.{name}." in line or f"exp_params['{name}']" in line:
                role = name
    return role


def _failure(record: _LogRecord, log: Path, at_start: bool) -> DispatcherFailure:
    errors = record.errors
    error = errors[-1] if errors else record.message.strip() or "the dispatcher exited"
    text = "\n".join(record.lines)
    hint = next((h for needles, h in _KNOWN_ISSUES if all(n in text for n in needles)), None)
    if at_start and "_create_algo" not in text:
        at_start = False  # raised by the running dispatcher, not while creating the algorithms
    return DispatcherFailure(error, _role(record.lines), at_start, log, hint)


def _fatal_record(records: Sequence[_LogRecord]) -> tuple[_LogRecord | None, bool, bool]:
    """(the record of the error that ended the dispatcher, whether it ended, whether that was
    at its start) from the records of dispatcher.log."""
    last_exit = max((i for i, r in enumerate(records)
                     if r.message.startswith(_DISPATCHER_EXIT)), default=-1)
    main_error = max((i for i, r in enumerate(records)
                      if r.logger == _DISPATCHER_MAIN and r.level == "ERROR" and r.errors),
                     default=-1)
    if main_error > last_exit:
        return records[main_error], True, True
    if last_exit < 0:
        # A command thread that raised has ended; the main thread notices only on NNI's next
        # command, which may never come (e.g. Metis raising while generating a trial).
        dead_worker = next((r for r in records if r.level == "ERROR" and r.errors and any(
            _COMMAND_WORKER in line for line in r.lines)), None)
        return dead_worker, dead_worker is not None, False
    started = max((i for i in range(last_exit) if records[i].message.startswith(
        _DISPATCHER_STARTED)), default=-1)
    for record in records[started + 1:last_exit]:
        if record.level == "ERROR" and record.errors:
            return record, True, False
    return None, True, False


def find_dispatcher_failure(log_dir: Path) -> DispatcherFailure | None:
    """Why NNI's dispatcher died, read from the experiment's ``E/log`` directory.

    NNI 3.0 writes the dispatcher's own log to ``dispatcher.log``: a tuner or assessor that
    cannot be created (``ModuleNotFoundError``, bad classArgs) is an ERROR of logger
    ``nni.main`` with the traceback, and the dispatcher exits (NNI's manager only says "Tuner
    did not connect in 10 seconds" 10 s later); an exception while it runs (e.g. Hyperband's
    ``TypeError``) is an ERROR with the traceback followed by "Dispatcher exiting". The
    dispatcher's stderr, ``nnictl_stderr.log``, holds the same traceback (and is the only
    place for one raised before NNI's logging is set up): it is read when dispatcher.log has
    none.

    Args:
        log_dir: ``E/log``.

    Returns:
        The failure, or None when the dispatcher did not die of an error (still running, or
        ended normally).
    """
    log = log_dir / "dispatcher.log"
    text = read_log_tail(log)
    if text is not None:
        record, _, at_start = _fatal_record(_log_records(text))
        if record is not None:
            return _failure(record, log, at_start)
    stderr_log = log_dir / "nnictl_stderr.log"
    text = read_log_tail(stderr_log)
    if text is None or "Traceback (most recent call last):" not in text:
        return None
    tail = text[text.rfind("Traceback (most recent call last):"):].splitlines()
    return _failure(_LogRecord("ERROR", "", "", tuple(tail)), stderr_log, at_start=True)


def dispatcher_failure(log_path: Path) -> str | None:
    """Why NNI's dispatcher (the process running the tuner and the assessor) died, if it did.

    When the tuner or assessor raises, the dispatcher logs the traceback and exits, but NNI's
    manager keeps reporting the experiment as RUNNING and never submits another trial (or,
    when the tuner could not be created, says ERROR only 10 s later). Called while the
    experiment has not ended, "Dispatcher exiting" in ``E/log/dispatcher.log``, or an ERROR
    with a traceback from NNI's dispatcher entry point (``nni.main``), means exactly that.

    Args:
        log_path: ``E/log/dispatcher.log``.

    Returns:
        The error line of the log (e.g. ``KeyError: 1``), or None when it did not exit.
    """
    text = read_log_tail(log_path)
    if text is None:
        return None
    record, ended, at_start = _fatal_record(_log_records(text))
    if not ended:
        return None
    if record is None:
        return "the dispatcher exited"
    return _failure(record, log_path, at_start).error


def experiment_error(
    log_dir: Path, nni_errors: Sequence[str], *, tuner: str | None = None,
    assessor: str | None = None,
) -> str:
    """Why an experiment ended in ERROR, in one line naming the log to read.

    The tuner's or assessor's own failure when NNI's dispatcher died of one (NNI itself then
    says only "Tuner did not connect in 10 seconds", or nothing at all), else NNI's first error.

    Args:
        log_dir: ``E/log``.
        nni_errors: the errors of NNI's ``/check-status``.
        tuner: the configured tuner's name, to name it.
        assessor: the configured assessor's name; None when there is none.

    Returns:
        e.g. ``the tuner (Anneal) failed to start: ModuleNotFoundError: No module named
        'hyperopt' (see E/log/dispatcher.log)``.
    """
    failure = find_dispatcher_failure(log_dir)
    if failure is not None:
        return failure.describe(tuner, assessor)
    for error in nni_errors:
        lines = [line.strip() for line in str(error).splitlines() if line.strip()]
        if lines:
            return f"NNI reported: {lines[0]} (see {log_dir / 'nnimanager.log'})"
    return (f"NNI gave no reason for the ERROR (see nnimanager.log, dispatcher.log and "
            f"nnictl_stderr.log in {log_dir})")
