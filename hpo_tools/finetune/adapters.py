"""Adapters that let the one trial runner run a single day of a finetune trial.

:func:`hpo_tools.trial.runner.run_trial` takes a reporter and a registry adapter. For one day,

- :class:`DayReporter` hands out the trial's parameters and keeps the day's scored steps and
  final result to itself: finetune reports the day's result to NNI as *one* intermediate result
  when the day ends, and the combined result as the final one;
- :class:`DayRegistry` scopes the day's command positions in the trial's job record
  (``cmd2`` of day ``20220616`` is command ``2022061602``), so ``resume=1`` skips only that day's
  succeeded commands, and leaves marking the trial succeeded to finetune (a day is not the trial).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from typing import Any

from hpo_tools.dates import Day
from hpo_tools.trial.reporter import Reporter

__all__ = ["DayReporter", "DayRegistry", "COMMANDS_PER_DAY", "day_position"]

_logger = logging.getLogger(__name__)

COMMANDS_PER_DAY = 100


def day_position(day: Day, position: int) -> int:
    """The registry's command index of command ``position`` (1-based) of ``day``."""
    if not 1 <= position < COMMANDS_PER_DAY:
        raise ValueError(f"a finetune day has at most {COMMANDS_PER_DAY - 1} commands")
    return int(day.bizdate) * COMMANDS_PER_DAY + position


class DayReporter(Reporter):
    """The trial's reporter as one day sees it: results are kept, not sent.

    Args:
        inner: the trial's reporter (ids and parameters come from it).
        params: the trial's parameters (already fetched from ``inner``).
        day: the day, for log lines.
    """

    def __init__(self, inner: Reporter, params: Mapping[str, Any], day: Day) -> None:
        self._inner = inner
        self._params = dict(params)
        self._day = day
        self.steps: list[dict[str, float]] = []
        self.final: dict[str, float] | None = None

    @property
    def experiment_id(self) -> str:
        return self._inner.experiment_id

    @property
    def trial_id(self) -> str:
        return self._inner.trial_id

    @property
    def parameter_id(self) -> Any:
        return self._inner.parameter_id

    def get_parameters(self) -> dict[str, Any]:
        return dict(self._params)

    def report_intermediate(self, metrics: Mapping[str, float]) -> None:
        self.steps.append(dict(metrics))
        _logger.debug("day %s: step %d: %s", self._day, len(self.steps), dict(metrics))

    def report_final(self, metrics: Mapping[str, float]) -> None:
        self.final = dict(metrics)


class DayRegistry:
    """The runner's registry adapter (:class:`hpo_tools.trial.runner.RegistryAdapter`) for one day.

    Args:
        inner: the trial's registry adapter.
        day: the day whose commands are recorded.
    """

    def __init__(self, inner: Any, day: Day) -> None:
        self._inner = inner
        self._day = day
        self._base = int(day.bizdate) * COMMANDS_PER_DAY

    def succeeded_commands(self) -> set[int]:
        """1-based positions of this day's commands whose latest job succeeded."""
        return {
            index - self._base
            for index in self._inner.succeeded_commands()
            if self._base < index < self._base + COMMANDS_PER_DAY
        }

    def job_changed(self, position: int, job: Any, state: Any = None) -> None:
        """Record ``job`` as command ``position`` of this day."""
        self._inner.job_changed(day_position(self._day, position), job, state)

    def cancel_live(self) -> None:
        """Cancel whatever the trial's record still has live."""
        self._inner.cancel_live()

    def trial_finished(self, status: str) -> None:
        """A failed or cancelled day ends the trial; a succeeded day does not."""
        if status == "succeeded":
            return
        self._inner.trial_finished(status)
