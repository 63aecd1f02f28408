"""Finetune mode: a trial replays consecutive days through the one trial runner.

See docs/finetune.md. :mod:`~hpo_tools.finetune.plan` turns a finetune trial file into its days
and one ordinary trial file per day; :mod:`~hpo_tools.finetune.runner` runs the days in order
with :func:`hpo_tools.trial.runner.run_trial`, chaining checkpoints, reporting one intermediate
result per day and the combined final result; :mod:`~hpo_tools.finetune.adapters` holds the
per-day reporter and registry adapters.
"""

from __future__ import annotations

from hpo_tools.finetune.plan import FinetunePlan, is_finetune_text, load_plan
from hpo_tools.finetune.runner import run_finetune, run_finetune_file

__all__ = [
    "FinetunePlan",
    "is_finetune_text",
    "load_plan",
    "run_finetune",
    "run_finetune_file",
]
