"""A stage's metrics: its follower, and the final result a finished stage left behind."""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo_tools.trial.paths import TrialPaths
from hpo_tools.trial.plan import MetricSettings

__all__ = ["build_follower", "read_stage_final"]


def build_follower(
    metric: MetricSettings,
    log_path: Path,
    interval: float = 1.0,
    *,
    platform: Any = None,
    where: str = "[metric_config]",
) -> Any:
    """The metrics follower of a stage (nothing is read yet).

    Args:
        metric: the stage's metric settings.
        log_path: the stage's log, the location of a ``stdout`` source given none.
        interval: seconds between polls.
        platform: the platform running the trial, for the source types it reads itself.
        where: how messages name the metric settings (``trial.ini: [metric_config]``).

    Raises:
        ConfigError: a source the type rejects (a stdout regex without a capture group).
    """
    from hpo_tools.errors import ConfigError
    from hpo_tools.metrics import Follower, build_source

    locations = [s or str(log_path) for s in metric.sources] or [str(log_path)]
    try:
        sources = [
            build_source(metric.metric_type, loc, spec=metric.spec, platform=platform)
            for loc in locations
        ]
    except ConfigError as err:
        raise ConfigError(f"{where} {err}", section="metric_config") from err
    return Follower(sources, metric.spec, interval=interval)


def read_stage_final(paths: TrialPaths) -> Any:
    """The final :class:`~hpo_tools.metrics.Report` a finished stage wrote in its
    ``result.json``, or None."""
    try:
        data = json.loads(paths.result_path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    final = data.get("final") if isinstance(data, dict) else None
    if not (isinstance(final, dict) and "score" in final):
        return None
    return _report(final)


def _report(data: Mapping[str, Any]) -> Any:
    from hpo_tools.metrics import Report

    return Report(
        step=int(data.get("step", 0)),
        score=float(data["score"]),
        values={str(k): float(v) for k, v in dict(data.get("values") or {}).items()},
        source=int(data.get("source", 0)),
    )
