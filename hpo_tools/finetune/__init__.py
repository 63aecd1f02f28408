"""Finetune mode: a trial replays consecutive days, each day one stage of the trial's plan.

See docs/finetune.md. :mod:`~hpo_tools.finetune.plan` turns a finetune trial file into a
:class:`~hpo_tools.trial.plan.TrialPlan` with one stage per day (checkpoints chained in the
plan); the one trial runner (:func:`hpo_tools.trial.runner.run_plan`) runs it.
"""

from __future__ import annotations

from hpo_tools.finetune.plan import (
    FinetuneFile,
    is_finetune_text,
    read_finetune_file,
)

__all__ = ["FinetuneFile", "is_finetune_text", "read_finetune_file"]
