"""``metric_type=api``: the metrics a PAI training job reports (``ListTrainingJobMetrics``).

``metric_source=cmd1`` (hpo_tools 0.1.x: the first command's job) names the job; the PAI
platform's follower thread fetches the job's new metrics with each status check and appends
them, one JSON object a line (``{"name", "value", "timestamp"}``), to
``<stage dir>/pai-metrics/cmd1.jsonl``. :class:`TrainingMetricSource` reads that file, so a poll
never waits on the network, and a command ``resume`` skipped is read from the earlier attempt's
file. Each distinct timestamp is one step (1, 2, ...); the metrics are those named like
``metric_dict``'s keys (exactly, else ignoring case).
"""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any, Dict, List, Optional

from hpo_tools.errors import ConfigError
from hpo_tools.metrics.sources import MetricPoint, MetricSource

__all__ = ["TrainingMetricSource", "parse_command_location"]

_LOCATION = re.compile(r"cmd(\d*)", re.IGNORECASE)


def parse_command_location(location: str) -> int:
    """``"cmd2"`` -> 2 (``"cmd"`` -> 1).

    Raises:
        ConfigError: anything else.
    """
    match = _LOCATION.fullmatch(str(location).strip())
    if match is None:
        raise ConfigError(f"metric_source={location!r}: metric_type=api names the command whose "
                          "training job reports the metrics: cmd1, cmd2, ...")
    return int(match.group(1) or 1)


class TrainingMetricSource(MetricSource):
    """The metrics of the training job of command ``command`` (see the module docstring).

    Args:
        location: As written (``cmd1``).
        spec: The metric spec (its keys are the metric names).
        command: The command's number.
    """

    type_name = "api"

    def __init__(self, location: str, spec: Any, command: int) -> None:
        super().__init__(location)
        self.command = command
        self._names = {str(k): str(k) for k in getattr(spec, "weights", {}) or {}}
        self._lower = {k.lower(): k for k in self._names}
        self._path: Optional[Path] = None
        self._offset = 0
        self._steps: Dict[str, int] = {}
        self._seen_any = False

    @property
    def file_name(self) -> str:
        return f"cmd{self.command}.jsonl"

    def bind(self, path: Path) -> None:
        """Read ``path`` from now on (once)."""
        if self._path is None:
            self._path = Path(path)

    def _metric(self, name: str) -> Optional[str]:
        return self._names.get(name) or self._lower.get(name.lower())

    def poll(self) -> List[MetricPoint]:
        if self._path is None:
            return []
        try:
            with open(self._path, "rb") as handle:
                handle.seek(self._offset)
                data = handle.read()
        except FileNotFoundError:
            return []
        end = data.rfind(b"\n") + 1  # complete lines only
        self._offset += end
        points: Dict[int, Dict[str, float]] = {}
        for raw in data[:end].splitlines():
            try:
                item = json.loads(raw)
                value = float(item["value"])
            except (ValueError, KeyError, TypeError):
                continue
            self._seen_any = True
            stamp = str(item.get("timestamp") or "")
            step = self._steps.setdefault(stamp, len(self._steps) + 1)
            metric = self._metric(str(item.get("name") or ""))
            if metric is not None:
                points.setdefault(step, {})[metric] = value
        return [MetricPoint(step, values) for step, values in sorted(points.items())]

    def found(self) -> bool:
        return self._seen_any

    def not_found_reason(self) -> str:
        if self._path is None:
            return f"cmd{self.command} ran no PAI training job in this attempt"
        return "the training job reported no metrics (ListTrainingJobMetrics)"
