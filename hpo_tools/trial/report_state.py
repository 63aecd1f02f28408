"""What a trial has reported to NNI, kept in its directory: a resumed run sends nothing twice.

``<trial dir>/reported.json`` records each report once its call has returned::

    {"version": 1, "experiment_id": "exp1", "trial_id": "t1",
     "steps": [[0, 100], [0, 200]],   # (source, step) of each intermediate result sent
     "units": 0,                      # with a budget: how many budget units were sent
     "stages": ["20220614"],          # finetune days whose result was sent
     "final": null}                   # or the stages the final result combined ([""]: a
                                      # plain trial's one stage)

Rules (docs/running-trials.md, "Resume"):

* The record belongs to the trial that got the reports: a run under another experiment or
  trial id treats it as empty (NNI's record of that id holds nothing yet).
* It is rewritten (atomically) after each report call returns, never before: a report whose
  call did not return (it raised, timed out, or the runner died first) is sent again by a
  resumed run; one whose call returned is not. Nothing is lost; a report goes out twice only
  when NNI got it but the runner never learned so (no answer in time, a SIGKILL between NNI's
  answer and the write).
* A file that cannot be read or is malformed is one warning line and an empty record: it never
  fails a trial; neither does a record that cannot be written (one warning line).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

from hpo_tools.errors import HpoError
from hpo_tools.storage import write_json_atomic

__all__ = ["REPORTED_FILE", "ReportState"]

_logger = logging.getLogger(__name__)

#: The record's name in the trial directory.
REPORTED_FILE = "reported.json"
_VERSION = 1


class ReportState:
    """The reports an earlier run of this trial (this experiment id and trial id) sent to NNI.

    Build it with :meth:`load` (``resume=1``) or :meth:`fresh` (a run that reports everything
    again); every ``add_*`` call saves the file.

    Example::

        state = ReportState.load(paths.trial_dir, "exp1", "t1")
        if not state.has_step(report.source, report.step):
            reporter.report_intermediate(report.as_nni())
            state.add_step(report.source, report.step)   # after the call returned

    Args:
        directory: the trial directory the record lives in.
        experiment_id: the experiment id the reports went to.
        trial_id: the trial id the reports went to.
    """

    def __init__(self, directory: Path, experiment_id: str, trial_id: str) -> None:
        self.path = Path(directory) / REPORTED_FILE
        self.experiment_id = experiment_id
        self.trial_id = trial_id
        #: Budget units sent (with a budget, NNI gets one intermediate result per unit).
        self.units = 0
        self._steps: set[tuple[int, int]] = set()
        self._stages: list[str] = []
        self._final: tuple[str, ...] | None = None
        self._write_warned = False

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def load(cls, directory: Path, experiment_id: str, trial_id: str) -> ReportState:
        """The record in ``directory`` when it is this trial's; else an empty one.

        A missing file is an empty record; an unreadable or malformed one, or one of another
        trial, is an empty record and one warning line.
        """
        state = cls(directory, experiment_id, trial_id)
        try:
            text = state.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return state
        except (OSError, UnicodeDecodeError) as err:
            state._ignore(f"unreadable ({err.__class__.__name__}: {err})")
            return state
        try:
            state._restore(json.loads(text))
        except (ValueError, RecursionError) as err:
            state._ignore(f"malformed ({err})")
            return state
        return state

    @classmethod
    def fresh(cls, directory: Path, experiment_id: str, trial_id: str) -> ReportState:
        """An empty record, saved at once (it replaces an earlier run's)."""
        state = cls(directory, experiment_id, trial_id)
        state.save()
        return state

    def _ignore(self, why: str) -> None:
        _logger.warning("%s: %s; treated as empty: what it records may be reported to NNI "
                        "again", self.path, why)
        self.units, self._steps, self._stages, self._final = 0, set(), [], None

    def _restore(self, data: Any) -> None:
        """Take ``data`` (the parsed file) in, or raise ValueError saying what is wrong."""
        if not isinstance(data, Mapping):
            raise ValueError("not a JSON object")
        owner = (data.get("experiment_id"), data.get("trial_id"))
        if owner != (self.experiment_id, self.trial_id):
            self._ignore(f"records trial {owner[1]!r} of experiment {owner[0]!r}, not "
                         f"{self.trial_id!r} of {self.experiment_id!r}")
            return
        steps = data.get("steps", [])
        if not isinstance(steps, list) or not all(_is_step(item) for item in steps):
            raise ValueError("'steps' is not a list of [source, step] integer pairs")
        units = data.get("units", 0)
        if not _is_int(units) or units < 0:
            raise ValueError("'units' is not a non-negative integer")
        stages = data.get("stages", [])
        if not isinstance(stages, list) or not all(isinstance(s, str) for s in stages):
            raise ValueError("'stages' is not a list of names")
        final = data.get("final")
        if final is not None and not (
            isinstance(final, list) and all(isinstance(s, str) for s in final)
        ):
            raise ValueError("'final' is neither null nor a list of names")
        self._steps = {(int(source), int(step)) for source, step in steps}
        self.units = int(units)
        self._stages = list(stages)
        self._final = None if final is None else tuple(final)

    # -- questions --------------------------------------------------------------------------

    @property
    def empty(self) -> bool:
        """Whether nothing is recorded as sent."""
        return not (self._steps or self.units or self._stages or self._final is not None)

    def has_step(self, source: int, step: int) -> bool:
        """Whether step ``step`` of metric source ``source`` went to NNI (no budget)."""
        return (source, step) in self._steps

    def has_stage(self, name: str) -> bool:
        """Whether stage ``name``'s result (a finetune day's) went to NNI."""
        return name in self._stages

    def has_final(self, stages: Sequence[str]) -> bool:
        """Whether the final result of the stages ``stages`` (all of the plan's) went to NNI."""
        return self._final == tuple(stages)

    def describe(self) -> str:
        """What is recorded, for the log (``3 intermediate results and the final result``)."""
        count = len(self._steps) + self.units + len(self._stages)
        final = " and the final result" if self._final is not None else ""
        return (f"{count} intermediate result{'' if count == 1 else 's'}{final} already "
                f"reported to NNI for trial {self.trial_id} ({self.path})")

    # -- recording (each call returned: the report went out) --------------------------------

    def add_step(self, source: int, step: int) -> None:
        self._steps.add((source, step))
        self.save()

    def add_unit(self) -> None:
        self.units += 1
        self.save()

    def add_stage(self, name: str) -> None:
        if name not in self._stages:
            self._stages.append(name)
        self.save()

    def add_final(self, stages: Sequence[str]) -> None:
        self._final = tuple(stages)
        self.save()

    def forget_stages(self, names: Iterable[str]) -> None:
        """Stages trained again (``--retrain``): their results, and a final result that
        combined one of them, are new and go to NNI again."""
        names = set(names)
        if not names:
            return
        kept = [s for s in self._stages if s not in names]
        final = self._final
        if final is not None and names.intersection(final):
            final = None
        if kept != self._stages or final != self._final:
            self._stages, self._final = kept, final
            self.save()

    # -- the file ---------------------------------------------------------------------------

    def to_dict(self) -> dict[str, Any]:
        """The file's content."""
        return {
            "version": _VERSION,
            "experiment_id": self.experiment_id,
            "trial_id": self.trial_id,
            "steps": [list(item) for item in sorted(self._steps)],
            "units": self.units,
            "stages": list(self._stages),
            "final": None if self._final is None else list(self._final),
        }

    def save(self) -> None:
        """Write the record (atomically); a failure is one warning line, never an error."""
        try:
            write_json_atomic(self.path, self.to_dict())
        except (OSError, HpoError) as err:
            if not self._write_warned:
                self._write_warned = True
                _logger.warning("could not record what was reported to NNI (%s); a resumed "
                                "run may report it again", err)


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_step(item: Any) -> bool:
    return isinstance(item, list) and len(item) == 2 and all(_is_int(x) for x in item)
