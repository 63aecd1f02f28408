"""DLC pods' logs: the lines new since the last fetch, and metrics read from one job's logs.

``GetPodLogs`` answers with a pod's log lines, not with an offset to go on from, so each fetch
asks again and :class:`PodLogTracker` keeps what was already relayed: the count of lines and the
last few of them, which find where the new ones start whether the service returns the log from
its first line or only its last ``MaxLines``.

``metric_type=stdout`` with ``metric_source=cmd1`` (hpo_tools 0.1.x: the first command's job) or
``cmd1,worker`` (only its worker pods) reads a job's own logs: :class:`JobLogSource` is a
``stdout`` source over the file the DLC platform writes that job's (matching) pod lines into,
``<stage dir>/dlc-logs/cmd1.worker.log``; it knows the file once the job is submitted.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING, List, Optional, Sequence, Tuple

from hpo_tools.metrics.sources import MetricPoint, MetricSource, StdoutSource

if TYPE_CHECKING:  # pragma: no cover
    from hpo_tools.metrics.score import MetricSpec

__all__ = ["PodLogTracker", "JobLogSource", "parse_job_log_location", "pod_matches"]

# hpo_tools 0.1.x's names of a job's own log: "cmd" (= cmd1), "cmd2", "cmd1,worker".
_LOCATION = re.compile(r"cmd(\d*)\s*(?:,\s*(\w[\w-]*))?", re.IGNORECASE)
# Lines of the previous fetch compared to find the new ones.
_OVERLAP = 20


def parse_job_log_location(location: str) -> Optional[Tuple[int, str]]:
    """``"cmd1,worker"`` -> ``(1, "worker")``, ``"cmd"`` -> ``(1, "")``; None for a file path."""
    match = _LOCATION.fullmatch(location.strip())
    if match is None:
        return None
    return int(match.group(1) or 1), (match.group(2) or "").lower()


def pod_matches(pod_filter: str, pod_type: str, pod_id: str) -> bool:
    """Whether a pod is one of those ``pod_filter`` names (its type, ``Worker``, any case; or a
    part of its id between dashes, ``dlc1x-worker-0``); an empty filter takes every pod."""
    if not pod_filter:
        return True
    wanted = pod_filter.lower()
    return pod_type.lower() == wanted or wanted in pod_id.lower().split("-")


class PodLogTracker:
    """What was relayed of each pod's log, and so which lines of a new fetch are new."""

    def __init__(self) -> None:
        self._count: dict = {}
        self._tail: dict = {}

    def new_lines(self, pod_id: str, lines: Sequence[str]) -> Tuple[List[str], bool]:
        """The lines of ``lines`` (a pod's log as fetched now) not relayed before.

        Returns:
            ``(new lines, gap)``; ``gap`` is True when the fetch no longer holds what was seen
            last (the log grew past the service's line limit between two fetches): the new
            lines are then the whole fetch and some lines in between are missing.
        """
        lines = list(lines)
        count, tail = self._count.get(pod_id, 0), self._tail.get(pod_id, [])
        self._count[pod_id] = len(lines)
        self._tail[pod_id] = lines[-_OVERLAP:]
        if not tail:  # first fetch of this pod
            return lines, False
        # The log from its first line: what we had is where it was.
        if len(lines) >= count and lines[count - len(tail):count] == tail:
            return lines[count:], False
        # The last lines only: find the end of what we had.
        for end in range(len(lines), len(tail) - 1, -1):
            if lines[end - len(tail):end] == tail:
                return lines[end:], False
        return lines, True


class JobLogSource(MetricSource):
    """``metric_type=stdout`` over one command's job logs (``cmd1`` / ``cmd1,worker``).

    A ``stdout`` source (same regexes, same steps) over the file the DLC platform writes the
    job's pod lines into; until the platform binds it (:meth:`bind`, when the command is
    submitted, or when a later one is and this one was skipped by ``resume``) it reads nothing.

    Args:
        location: As written (``cmd1,worker``).
        spec: The metric spec (its keys are the regexes; checked now).
        command: The command's number (1 for ``cmd1``).
        pod_filter: Only pods of this type or id part (``worker``); ``""`` for all.
    """

    type_name = "stdout"

    def __init__(self, location: str, spec: MetricSpec, command: int, pod_filter: str) -> None:
        super().__init__(location)
        StdoutSource(location, spec)  # a bad regex is an error when the file is read
        self._spec = spec
        self.command = command
        self.pod_filter = pod_filter
        self._inner: Optional[StdoutSource] = None

    @property
    def file_name(self) -> str:
        """The file under ``dlc-logs/`` that holds the lines (``cmd1.worker.log``)."""
        return f"cmd{self.command}" + (f".{self.pod_filter}" if self.pod_filter else "") + ".log"

    @property
    def bound(self) -> bool:
        """Whether the source knows its file."""
        return self._inner is not None

    def bind(self, path: Path) -> None:
        """Read ``path`` from now on (once: a bound source stays with its file)."""
        if self._inner is None:
            self._inner = StdoutSource(str(path), self._spec)

    def poll(self) -> List[MetricPoint]:
        return self._inner.poll() if self._inner is not None else []

    def drain(self) -> List[MetricPoint]:
        return self._inner.drain() if self._inner is not None else []

    def found(self) -> bool:
        return self._inner is not None and self._inner.found()

    def not_found_reason(self) -> str:
        if self._inner is None:
            return f"cmd{self.command} ran no DLC job in this attempt"
        return f"no log lines of the job's {self.pod_filter or 'pods'} ({self._inner.location})"
