"""``[output_config]``: the best trial's event files and model, copied where the file says.

A trial whose file has ``[output_config]`` records in its ``params.json`` (``"outputs"``, from
:class:`~hpo_tools.trial.plan.OutputSettings`) its model directory and the two destinations.
At the experiment's end (``hpo-tools experiment run``), or by hand afterwards (``hpo-tools
experiment best ID --copy-outputs``, the way after ``nnictl create``), the best trial's are
copied from that record alone:

- ``summary_path``: every TensorBoard event file (``events.out.tfevents.*``) under the model
  directory, at its path relative to it (``eval_val/events.out.tfevents...``), so TensorBoard
  can be pointed at ``summary_path``;
- ``model_path``: every file of the model directory, at its relative path; files named
  ``checkpoint`` (TensorFlow's index of the latest checkpoint) go last, so the index never
  names files that are not there yet.

Each file is copied whole or not at all (:func:`hpo_tools.storage.copy_file`: a temp file and a
rename locally, one PUT on OSS). A file of the same name at the destination is replaced; other
files there are left alone. Files that can hold credentials are never copied: names starting
with a dot (``.ossutilconfig``, temp files, ``.nni/``), trial files (``*.ini``) and the runner's
and NNI's own records and logs (``params.json``, ``trial.log``, ...), for a model directory that
is the trial directory itself.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from hpo_tools.errors import HpoError
from hpo_tools.experiment.records import TrialRun
from hpo_tools.trial.plan import OutputSettings

__all__ = [
    "EVENT_FILE_PREFIX",
    "OutputCopy",
    "copy_best_outputs",
    "copy_outputs",
    "trial_outputs",
]

_logger = logging.getLogger(__name__)

EVENT_FILE_PREFIX = "events.out.tfevents."
"""How TensorFlow names its event files (TensorBoard reads them)."""

_RECORDS = frozenset({
    "params.json", "result.json", "trial.log", "trial.stderr", "trial.stdout", "stderr",
    "stdout", "run.sh",
})
"""The runner's and NNI's own files in a trial directory: never copied."""

_KINDS = {"summary_path": "event files", "model_path": "files"}


@dataclass(frozen=True)
class OutputCopy:
    """One copy of the best trial's outputs, done or not.

    Attributes:
        key: ``summary_path`` or ``model_path``.
        trial_id: the trial copied.
        source: its model directory.
        target: the destination directory.
        copied: files copied.
        error: why the copy failed (after ``copied`` files), or None.
        same: ``target`` is the model directory itself: nothing to copy (hpo_tools 0.1.x files
            often name the trial's own directory, ``..._${trial_id}``).
    """

    key: str
    trial_id: str
    source: str
    target: str
    copied: int = 0
    error: str | None = None
    same: bool = False

    @property
    def ok(self) -> bool:
        return self.error is None

    def describe(self) -> str:
        """One line saying what was done (or why not)."""
        what = _KINDS.get(self.key, "files")
        if self.same:
            return (f"{self.key}: {self.target} is trial {self.trial_id}'s own model directory; "
                    "nothing to copy")
        if self.error is not None:
            done = f" (after {self.copied} {what})" if self.copied else ""
            return (f"{self.key}: cannot copy trial {self.trial_id}'s {what} from {self.source} "
                    f"to {self.target}{done}: {self.error}")
        return (f"{self.key}: {self.copied} {what} of trial {self.trial_id} copied from "
                f"{self.source} to {self.target}")


def trial_outputs(run: TrialRun) -> OutputSettings | None:
    """What ``run`` recorded of ``[output_config]``, or None when it recorded nothing usable."""
    return OutputSettings.from_record(run.outputs)


def copy_best_outputs(run: TrialRun, *, store: Any = None) -> list[OutputCopy]:
    """Copy the outputs ``run`` (the best trial) recorded; see the module docstring.

    Args:
        run: the trial's own record.
        store: what reads and writes paths (a :class:`hpo_tools.storage.Storage`); default the
            process's (:mod:`hpo_tools.storage`).

    Returns:
        One :class:`OutputCopy` per destination (``summary_path`` first); copy failures are in
        them, never raised.

    Raises:
        HpoError: the trial recorded no ``[output_config]`` (its file has none, or it ran
            with an hpo-tools that did not record it).
    """
    settings = trial_outputs(run)
    if settings is None:
        raise HpoError(
            f"{run.trial_dir / 'params.json'}: trial {run.trial_id} recorded no [output_config] "
            "(summary_path / model_path): its trial file has none, so there is nothing to copy")
    return copy_outputs(settings, run.trial_id, store=store)


def copy_outputs(
    settings: OutputSettings, trial_id: str, *, store: Any = None
) -> list[OutputCopy]:
    """Copy a trial's event files to ``summary_path`` and its model to ``model_path``.

    Args:
        settings: the trial's recorded ``[output_config]``.
        trial_id: for messages.
        store: see :func:`copy_best_outputs`.

    Returns:
        One :class:`OutputCopy` per destination set (``summary_path`` first); the caller says
        how each went (:meth:`OutputCopy.describe`).
    """
    if store is None:
        from hpo_tools import storage as store
    copies = []
    for key, target in (("summary_path", settings.summary_path),
                        ("model_path", settings.model_path)):
        if target is None:
            continue
        copy = _copy_one(store, settings, key, target, trial_id)
        _logger.debug("%s", copy.describe())
        copies.append(copy)
    return copies


def _copy_one(
    store: Any, settings: OutputSettings, key: str, target: str, trial_id: str
) -> OutputCopy:
    source = settings.model_dir
    overlap = settings.overlap(target)
    if overlap == "same":
        return OutputCopy(key, trial_id, source, target, same=True)
    if overlap == "inside":
        return OutputCopy(key, trial_id, source, target,
                          error="the destination lies inside the model directory")
    copied = 0
    try:
        names = _selected(store.list_tree(source), events_only=key == "summary_path")
        if not names:
            what = "no event files (events.out.tfevents.*)" if key == "summary_path" else \
                "no files"
            return OutputCopy(key, trial_id, source, target,
                              error=f"{what} under the model directory")
        for name in names:
            store.copy_file(_join(source, name), _join(target, name))
            copied += 1
    except HpoError as err:
        return OutputCopy(key, trial_id, source, target, copied, error=str(err))
    return OutputCopy(key, trial_id, source, target, copied)


def _selected(names: Sequence[str], *, events_only: bool) -> list[str]:
    """The relative paths to copy, ``checkpoint`` index files last."""
    chosen = []
    for name in names:
        parts = name.split("/")
        base = parts[-1]
        if any(part.startswith(".") for part in parts) or base.endswith(".ini"):
            continue
        if len(parts) == 1 and base in _RECORDS:
            continue
        if events_only and not base.startswith(EVENT_FILE_PREFIX):
            continue
        chosen.append(name)
    return sorted(chosen, key=lambda n: (n.rsplit("/", 1)[-1] == "checkpoint", n))


def _join(directory: str, name: str) -> str:
    return directory.rstrip("/") + "/" + name
