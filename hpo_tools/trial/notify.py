"""``[monitor_config]`` at a trial's end: a message when it failed or set a new best score.

"New best" compares the trial's final score with every other trial of the experiment that
succeeded so far (their ``result.json`` under the experiment directory, NNI's or standalone),
in the plan's direction. Concurrent trials finishing together may both announce a best; a
cancelled trial (stopped by the assessor or the user) says nothing.
"""

from __future__ import annotations

import json
import logging
import math
from pathlib import Path
from typing import Any

from hpo_tools.secrets import SecretMasker
from hpo_tools.trial.outcome import TrialOutcome, TrialStatus
from hpo_tools.trial.plan import TrialPlan

__all__ = ["notify_trial_end", "best_other_score"]

_logger = logging.getLogger(__name__)

# Where trials keep their result.json: NNI's environments, or E/trials/ (standalone runs).
_RESULT_GLOBS = ("environments/*/trials/*/result.json", "trials/*/result.json")


def best_other_score(experiment_dir: Path, own_trial_dir: Path, sign: int) -> float | None:
    """The best final score among the experiment's other succeeded trials, or None."""
    best: float | None = None
    own = own_trial_dir.resolve()
    for pattern in _RESULT_GLOBS:
        for path in experiment_dir.glob(pattern):
            if path.parent.resolve() == own:
                continue
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
                score = float(data["final"]["score"]) if data.get("status") == "succeeded" else None
            except (OSError, ValueError, KeyError, TypeError):
                continue
            if score is not None and math.isfinite(score):
                if best is None or sign * score > sign * best:
                    best = score
    return best


def notify_trial_end(
    plan: TrialPlan, context: Any, outcome: TrialOutcome, masker: SecretMasker
) -> None:
    """Send the trial's end to the plan's webhook, if it has one and there is news."""
    if plan.monitor is None:
        return
    from hpo_tools.monitor import DingTalkNotifier

    who = f"trial {context.trial_id} of experiment {context.exp_id}"
    text = None
    if outcome.status is TrialStatus.FAILED:
        text = f"hpo-tools: {who} failed: {outcome.message}"
    elif outcome.status is TrialStatus.SUCCEEDED and outcome.final is not None:
        score = float(outcome.final["score"])
        sign = plan.optimize_mode.sign
        best = best_other_score(context.paths.experiment_dir, context.paths.trial_dir, sign)
        if best is None or sign * score > sign * best:
            params = json.dumps(dict(context.params), sort_keys=True)
            text = f"hpo-tools: new best score {score:.6g} ({who}), parameters {params}"
    if text is None:
        return
    notifier = DingTalkNotifier(plan.monitor)
    notifier.send(masker.mask(text))
    notifier.close()
    _logger.info("[monitor_config]: %s", masker.mask(text))
