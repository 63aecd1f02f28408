"""How a trial (or one stage of it) ended: :class:`TrialStatus` and :class:`TrialOutcome`."""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Any

__all__ = ["TrialStatus", "TrialOutcome", "EXIT_FAILED"]

#: The exit code of a failed trial (a bad trial file, nothing launched, is 2: the entry points').
EXIT_FAILED = 1


class TrialStatus(str, enum.Enum):
    """Where a trial is; ``value`` is what ``result.json`` and the job registry store.

    A ``str`` enum: ``TrialStatus.SUCCEEDED == "succeeded"``, and it prints as its value.
    """

    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    def __str__(self) -> str:
        return self.value

    def __format__(self, spec: str) -> str:
        return format(self.value, spec)

    @property
    def is_finished(self) -> bool:
        return self is not TrialStatus.RUNNING


@dataclass
class TrialOutcome:
    """How a trial ended.

    Attributes:
        status: succeeded, failed or cancelled (running while it runs).
        exit_code: 0 only when it succeeded and its final result was reported.
        intermediate: the intermediate reports (``Report.to_dict()``; a stage's with its name).
        final: the final report, when there is one.
        message: why it failed or was cancelled (one line, masked).
        warnings: problems of a trial that still has its result, one line each (masked): a
            damaged event file whose good steps were read (``Follower.warnings()``).
        configs: the edited configs written.
        trial_dir: the trial's directory.
    """

    status: TrialStatus
    exit_code: int
    intermediate: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    message: str = ""
    warnings: list[str] = field(default_factory=list)
    configs: list[str] = field(default_factory=list)
    trial_dir: str = ""

    def __post_init__(self) -> None:
        self.status = TrialStatus(self.status)

    def to_dict(self) -> dict[str, Any]:
        """The ``result.json`` content."""
        result: dict[str, Any] = {
            "intermediate": self.intermediate,
            "final": self.final,
            "status": self.status.value,
        }
        if self.message:
            result["message"] = self.message
        if self.warnings:
            result["warnings"] = self.warnings
        return result
