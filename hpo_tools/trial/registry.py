"""What the runner records in the job registry (:mod:`hpo_tools.jobs`), in the runner's terms.

Command ``cmdN`` of a stage is recorded under ``stage.command_base + N`` (a plain trial's one
stage has base 0; finetune day ``20220616``'s ``cmd2`` is ``2022061602``), so ``resume=1``
skips exactly the commands of that stage that already succeeded. Finished stages are kept in
the record's ``finished_stages``. Recording is best effort (a failed registry write is logged,
never fatal); what ``resume`` relies on (:meth:`RegistryAdapter.succeeded_commands`) raises.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable
from typing import Any

from hpo_tools.errors import HpoError
from hpo_tools.trial.outcome import TrialStatus
from hpo_tools.trial.paths import TrialPaths
from hpo_tools.trial.plan import COMMANDS_PER_STAGE, Stage

__all__ = ["RegistryAdapter"]

_logger = logging.getLogger(__name__)


class RegistryAdapter:
    """The trial's record in its experiment's job registry.

    Args:
        registry: the :class:`~hpo_tools.jobs.JobRegistry`.
        record: the trial's :class:`~hpo_tools.jobs.TrialRecord`.
    """

    def __init__(self, registry: Any, record: Any) -> None:
        self._registry = registry
        self._record = record
        self._lock = threading.RLock()

    @classmethod
    def open(
        cls, paths: TrialPaths, exp_id: str, trial_id: str, *, platform: Any
    ) -> RegistryAdapter:
        """Open (or start) the record of trial ``trial_id`` in ``paths``' experiment."""
        from hpo_tools.jobs import JobRegistry

        registry = JobRegistry(paths.experiment_dir)
        if paths.nni_experiment_dir is not None:  # --exp_dir under NNI: leave NNI a link
            try:
                JobRegistry(paths.nni_experiment_dir).link(trial_id, paths.experiment_dir)
            except (OSError, HpoError) as err:  # the trial runs; only NNI-side sweeps miss it
                _logger.warning("could not leave a job-registry link in %s: %s",
                                paths.nni_experiment_dir, err)
        record = registry.load(trial_id)
        if record is None:
            record = registry.new(
                trial_id, experiment_id=exp_id, trial_dir=paths.trial_dir, platform=platform
            )
            registry.save(record)
        return cls(registry, record)

    @property
    def registry(self) -> Any:
        """The :class:`~hpo_tools.jobs.JobRegistry` the record lives in."""
        return self._registry

    @property
    def record(self) -> Any:
        """The trial's :class:`~hpo_tools.jobs.TrialRecord`."""
        return self._record

    def succeeded_commands(self, stage: Stage) -> set[int]:
        """1-based positions of ``stage``'s commands whose latest job succeeded."""
        indexes = self._registry.succeeded_commands(self._record.trial_id)
        base = stage.command_base
        if not base:
            return set(indexes)
        return {i - base for i in indexes if base < i < base + COMMANDS_PER_STAGE}

    def job_changed(self, stage: Stage, position: int, job: Any, state: Any = None) -> None:
        """Record ``job`` (command ``position`` of ``stage``) in ``state`` (default: its state)."""
        with self._lock:
            try:
                self._registry.mark_job(self._record, stage.command_base + position, job, state)
            except Exception:
                _logger.exception("could not save job %s in the registry", job.job_id)

    def finished_stages(self) -> set[str]:
        """The names of the stages the record has finished."""
        return set(self._record.finished_stages)

    def forget_stages(self, names: Iterable[str] | None = None) -> None:
        """Forget that the stages ``names`` (default: all) finished: they train again."""
        names = None if names is None else set(names)
        kept = [s for s in self._record.finished_stages if names is not None and s not in names]
        if kept != list(self._record.finished_stages):
            with self._lock:
                self._record.finished_stages[:] = kept
                self._registry.save(self._record)

    def stage_finished(self, stage: Stage) -> None:
        """Record that ``stage`` finished (``resume`` skips it)."""
        with self._lock:
            self._registry.mark_stage_finished(self._record, stage.name)

    def cancel_live(self) -> None:
        """Belt and braces after the runner's own cancel: whatever the record still has live."""
        try:
            self._registry.cancel_live(self._record.trial_id, timeout=1.0)
        except Exception:
            _logger.exception("the registry could not cancel live jobs")

    def trial_finished(self, status: TrialStatus) -> None:
        """Mark the trial succeeded, failed or cancelled."""
        from hpo_tools.platforms import JobState

        with self._lock:
            try:
                self._registry.mark_trial(self._record, JobState.parse(TrialStatus(status).value))
            except Exception:
                _logger.exception("could not save the trial state in the registry")
