"""Commands onto the platform: submit, follow to the end, record, cancel what still runs.

The runner (:mod:`hpo_tools.trial.runner`) hands each command of a stage to
:meth:`Launcher.run`, which submits it, records the job in the job registry as it changes,
wakes every tick to look at the cancel flag, polls the metrics every ``interval`` meanwhile, and
on failure prints the tail of the command's own output (masked) to stderr.

With the stage's ``job_timeout`` (:attr:`~hpo_tools.trial.plan.Stage.job_timeout`), a job
that shows no sign of life for that long while it runs is hung: no new bytes in the stage's log
(the platforms relay job output into it), no newly scored step (the metrics poll says so, or
the stage's ``result.json``, which the runner rewrites with each new step, changed), no change
of state. The launcher then cancels it and every live job and returns why
(``cmd1 hung: no output and no new metric for 600 s (job_timeout=600s); cancelled``): the
runner fails the trial with that message. The clock runs only while the job is RUNNING (a
queued job is not hung) and restarts at each sign of life.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, TextIO

from hpo_tools.failpoints import failpoint
from hpo_tools.secrets import SecretMasker
from hpo_tools.trial.paths import TrialPaths
from hpo_tools.trial.plan import Command, Stage
from hpo_tools.trial.registry import RegistryAdapter

__all__ = ["Launcher", "TAIL_LINES"]

_logger = logging.getLogger(__name__)

# A log record in trial.log: "[2024-01-01 10:00:00,123] INFO (name...) message".
_LOG_RECORD_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:.,]+\] [A-Z]+ \(")
TAIL_LINES = 50
# Seconds between two looks at the cancel flag while a job runs (cancellation must take < 3 s).
_TICK = 0.1


def _seconds(value: float) -> str:
    """``600`` for 600.0, ``1.5`` for 1.5: how messages write a number of seconds."""
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _file_mark(path: Path) -> tuple[int, int]:
    """``(size, mtime_ns)`` of a file, ``(-1, 0)`` when there is none: it changes when the
    file is appended to or replaced."""
    try:
        stat = path.stat()
    except OSError:
        return (-1, 0)
    return (stat.st_size, stat.st_mtime_ns)


class _Watchdog:
    """When a running job last showed a sign of life, against its ``job_timeout``.

    Signs of life: a change of the watched files (the stage's log: the job's output; the
    stage's ``result.json``: a newly reported step), a newly scored step the metrics poll
    says it scored (:meth:`alive`), a change of the job's state. Time in any state but
    RUNNING does not count (a queued job waits for its resources, it is not hung).

    Args:
        watched: the files whose change is a sign of life.
        timeout: seconds without a sign of life that make the job hung; None: never.
    """

    def __init__(self, watched: tuple[Path, ...], timeout: float | None) -> None:
        self.watched = watched
        self.timeout = timeout
        self._marks = self._look()
        self._state: Any = None
        self._since = time.monotonic()

    def _look(self) -> tuple[tuple[int, int], ...]:
        return tuple(_file_mark(path) for path in self.watched)

    def alive(self) -> None:
        """A sign of life seen elsewhere (a newly scored step)."""
        self._since = time.monotonic()

    def hung(self, state: Any) -> bool:
        """True when the job, in ``state`` now, has shown no sign of life for ``timeout`` s."""
        from hpo_tools.platforms import JobState

        if self.timeout is None:
            return False
        now = time.monotonic()
        marks = self._look()
        if marks != self._marks or state is not self._state or state is not JobState.RUNNING:
            self._marks, self._state, self._since = marks, state, now
            return False
        return now - self._since >= self.timeout


class Launcher:
    """Runs commands on one platform for one trial.

    Args:
        platform: the platform object.
        registry: the trial's record in the job registry.
        masker: applied to every line of relayed output and of the failure tail.
        interval: seconds between two metric polls while a job runs.
        stderr: where the tail of a failed command's output goes.

    Attributes:
        launched: True once a submit returned a job, or raised an error whose ``launched``
            attribute is true (a create the service never answered, whose job was found and
            stopped); from then on an error fails the trial instead of being a bad trial file.
        check_cancelled: raises when a signal asked for cancellation (the runner sets it).
    """

    def __init__(
        self,
        platform: Any,
        registry: RegistryAdapter,
        masker: SecretMasker,
        *,
        interval: float,
        stderr: TextIO,
    ) -> None:
        self.platform = platform
        self.registry = registry
        self.masker = masker
        self.interval = interval
        self.stderr = stderr
        self.live_jobs: list[Any] = []
        self.launched = False
        self.check_cancelled: Callable[[], None] = lambda: None

    def run(
        self,
        stage: Stage,
        paths: TrialPaths,
        position: int,
        command: Command,
        poll_metrics: Callable[[], object],
    ) -> str | None:
        """Run command ``position`` (1-based) of ``stage`` to its end, polling metrics meanwhile.

        ``poll_metrics`` reports the steps scored since its last call and returns how many
        (anything false: none, or it does not say); a step is a sign of life for the
        stage's ``job_timeout``, and so is new output in the stage's log.

        Returns:
            None when it succeeded, else why not (``cmd2 failed: exit code 3``, ``cmd1 hung:
            no output and no new metric for 600 s (job_timeout=600s); cancelled``).
        """
        from hpo_tools.platforms import JobState
        from hpo_tools.platforms.base import COMMAND_ENV

        log_path = paths.log_path
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        _logger.info("running %s on %s", command.name, getattr(self.platform, "name", "?"))
        failpoint("submit")
        try:
            job = self.platform.submit(
                command.text,
                log_path=log_path,
                # Which command the job runs: in its environment (a platform may read
                # one command's job logs as metrics: metric_source=cmd1).
                env={COMMAND_ENV: command.name},
                on_update=lambda j: self.registry.job_changed(stage, position, j),
                output_filter=self.masker.mask,
            )
        except Exception as err:
            if getattr(err, "launched", False):  # the service made the job (then stopped)
                self.launched = True
            raise
        failpoint("after_submit")
        self.launched = True
        self.live_jobs.append(job)
        self.registry.job_changed(stage, position, job, JobState.RUNNING)
        watchdog = _Watchdog((log_path, paths.result_path), stage.job_timeout)
        next_poll = time.monotonic() + self.interval
        while True:
            state = job.wait(timeout=min(_TICK, self.interval))
            self.check_cancelled()
            if state is JobState.RUNNING:
                failpoint("training")
            if state.is_finished or time.monotonic() >= next_poll:
                if poll_metrics():
                    watchdog.alive()
                self.check_cancelled()
                next_poll = time.monotonic() + self.interval
            if state.is_finished:
                break
            if watchdog.hung(state):
                return self.hung(stage, position, command, job, log_path=log_path,
                                 log_offset=log_offset, timeout=stage.job_timeout or 0.0)
        self.live_jobs.remove(job)
        self.registry.job_changed(stage, position, job, state)
        if state is JobState.SUCCEEDED:
            _logger.info("%s succeeded (%s)", command.name, job.job_id)
            return None
        message = f"{command.name} {state.value}: {job.message or 'no message'}"
        _logger.error("%s", message)
        self.print_tail(log_path, log_offset, command.name)
        return message

    def hung(
        self,
        stage: Stage,
        position: int,
        command: Command,
        job: Any,
        *,
        log_path: Path,
        log_offset: int,
        timeout: float,
    ) -> str:
        """Cancel a hung job and every other live one; record it; return why the trial fails
        (the command's output from ``log_offset`` in ``log_path`` goes to stderr)."""
        limit = _seconds(timeout)
        why = f"no output and no new metric for {limit} s (job_timeout={limit}s)"
        _logger.info("%s (%s) hung: %s; cancelling it", command.name, job.job_id, why)
        self.cancel_live()  # this job first (it is live), then whatever the registry has
        state = job.poll()
        if state.is_finished:
            self.live_jobs.remove(job)
            job.message = f"hung: {why}; cancelled"  # the registry's record of why it stopped
            ending = "cancelled"
        else:
            ending = f"cancel requested, the job is still {state.value}"
        self.registry.job_changed(stage, position, job, state)
        message = f"{command.name} hung: {why}; {ending}"
        _logger.error("%s", message)
        self.print_tail(log_path, log_offset, command.name)
        return message

    def print_tail(self, log_path: Path, offset: int, name: str) -> None:
        """The last :data:`TAIL_LINES` lines of a command's own output (not log records)."""
        try:
            with open(log_path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return
        lines = [
            line
            for line in data.decode("utf-8", errors="replace").splitlines()
            if not _LOG_RECORD_LINE.match(line)
        ][-TAIL_LINES:]
        header = f"--- last {len(lines)} lines of the log of {name} ({log_path}) ---"
        print(header, file=self.stderr)
        for line in lines:
            print(self.masker.mask(line), file=self.stderr)
        print("---", file=self.stderr, flush=True)

    def cancel_live(self) -> None:
        """Cancel every job still running, then whatever the registry still has live."""
        for job in list(self.live_jobs):
            try:
                job.cancel()
            except Exception:  # one job failing to stop must not keep the others running
                _logger.exception("could not cancel job %s", getattr(job, "job_id", job))
        self.registry.cancel_live()
