"""Commands onto the platform: submit, follow to the end, record, cancel what still runs.

The runner (:mod:`hpo_tools.trial.runner`) hands each command of a stage to
:meth:`Launcher.run`, which submits it, records the job in the job registry as it changes,
wakes every tick to look at the cancel flag, polls the metrics every ``interval`` meanwhile, and
on failure prints the tail of the command's own output (masked) to stderr.
"""

from __future__ import annotations

import logging
import re
import time
from pathlib import Path
from typing import Any, Callable, TextIO

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


class Launcher:
    """Runs commands on one platform for one trial.

    Args:
        platform: the platform object.
        registry: the trial's record in the job registry.
        masker: applied to every line of relayed output and of the failure tail.
        interval: seconds between two metric polls while a job runs.
        stderr: where the tail of a failed command's output goes.

    Attributes:
        launched: True once a submit returned a job (from then on an error fails the trial
            instead of being a bad trial file).
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
        poll_metrics: Callable[[], None],
    ) -> str | None:
        """Run command ``position`` (1-based) of ``stage`` to its end, polling metrics meanwhile.

        Returns:
            None when it succeeded, else why not (``cmd2 failed: exit code 3``).
        """
        from hpo_tools.platforms import JobState
        from hpo_tools.platforms.base import COMMAND_ENV

        log_path = paths.log_path
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        _logger.info("running %s on %s", command.name, getattr(self.platform, "name", "?"))
        job = self.platform.submit(
            command.text,
            log_path=log_path,
            # Which command the job runs: in its environment (a platform may read
            # one command's job logs as metrics: metric_source=cmd1).
            env={COMMAND_ENV: command.name},
            on_update=lambda j: self.registry.job_changed(stage, position, j),
            output_filter=self.masker.mask,
        )
        self.launched = True
        self.live_jobs.append(job)
        self.registry.job_changed(stage, position, job, JobState.RUNNING)
        next_poll = time.monotonic() + self.interval
        while True:
            state = job.wait(timeout=min(_TICK, self.interval))
            self.check_cancelled()
            if state.is_finished or time.monotonic() >= next_poll:
                poll_metrics()
                self.check_cancelled()
                next_poll = time.monotonic() + self.interval
            if state.is_finished:
                break
        self.live_jobs.remove(job)
        self.registry.job_changed(stage, position, job, state)
        if state is JobState.SUCCEEDED:
            _logger.info("%s succeeded (%s)", command.name, job.job_id)
            return None
        message = f"{command.name} {state.value}: {job.message or 'no message'}"
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
