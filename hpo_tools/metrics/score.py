"""Weighted multi-metric score: which steps count, their score, and the final value.

A *step* is one evaluation: ``{metric name: value}`` at a step number. It counts only when it holds
every metric whose weight is non-zero; its score is ``sum(weight * value)``. Weights may be negative
(a loss that should go down) or zero (the metric is shown beside the score but does not count).

Per source, the final value is the ``final`` (last) step, the ``best`` step under ``optimize_mode``,
or the ``avg`` (mean) over steps. Across several sources, ``source_list_final_mode`` (default: the
same as ``final_mode``) combines the per-source finals the same way, ``final`` meaning the last
source in list order.
"""

from __future__ import annotations

import ast
import enum
import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from hpo_tools.directions import OptimizeMode
from hpo_tools.errors import ConfigError, did_you_mean

# OptimizeMode lives in hpo_tools.directions (the assessor uses it too); re-exported here.
__all__ = ["FinalMode", "OptimizeMode", "MetricSpec", "Report", "combine"]


class FinalMode(enum.Enum):
    """How several scored steps become one value."""

    FINAL = "final"
    BEST = "best"
    AVG = "avg"


def _parse_enum(kind: type[enum.Enum], value: object, key: str) -> enum.Enum:
    if isinstance(value, kind):
        return value
    names = [member.value for member in kind]
    text = str(value).strip().lower() if isinstance(value, str) else None
    if text in names:
        return kind(text)
    raise ConfigError(
        f"{key}: expected one of {', '.join(names)}, got {value!r}"
        + did_you_mean(str(value).lower(), names)
    )


@dataclass(frozen=True)
class Report:
    """One scored evaluation step (or the final result).

    Attributes:
        step: The step number (global step for event files, evaluation count for stdout/json).
        score: The weighted sum of the step's metrics.
        values: ``{metric: value}`` for every metric of ``metric_dict`` the step holds.
        source: Index of the source in the follower's list (0 for the first).
    """

    step: int
    score: float
    values: dict[str, float] = field(default_factory=dict)
    source: int = 0

    def as_nni(self) -> dict[str, float]:
        """The dict NNI's web UI shows: ``{"default": score, "<metric>": value, ...}``."""
        result = {"default": float(self.score)}
        result.update((name, float(value)) for name, value in self.values.items())
        return result

    def to_dict(self) -> dict[str, object]:
        """A JSON-safe dict of every field."""
        return {
            "step": self.step,
            "score": self.score,
            "values": dict(self.values),
            "source": self.source,
        }


def _parse_metric_dict_text(text: str, key: str) -> object:
    """JSON, or a Python dict literal as the old EasyRec tool's users wrote it (``{'auc': 1}``).

    ``ast.literal_eval`` only accepts literals (no names, calls or operators but unary minus), so
    nothing in the file is ever executed.
    """
    try:
        return json.loads(text)
    except json.JSONDecodeError as err:
        try:
            return ast.literal_eval(text)
        except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
            raise ConfigError(
                f"{key}: expected a JSON object of metric weights ({err.msg} at column "
                f'{err.colno}), e.g. {{"auc": 1, "loss": -0.5}}'
            ) from None


def _parse_metric_dict(metric_dict: object, key: str) -> dict[str, float]:
    if isinstance(metric_dict, str):
        metric_dict = _parse_metric_dict_text(metric_dict.strip(), key)
    if not isinstance(metric_dict, Mapping):
        raise ConfigError(
            f"{key}: expected a dict of metric name -> weight, got {type(metric_dict).__name__}"
        )
    if not metric_dict:
        raise ConfigError(f"{key}: is empty; name at least one metric with a non-zero weight")
    weights: dict[str, float] = {}
    for name, weight in metric_dict.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}: metric names must be non-empty strings, got {name!r}")
        if name == "default":
            raise ConfigError(
                f"{key}['default']: 'default' is the name NNI gives the score; rename the metric"
            )
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise ConfigError(f"{key}[{name!r}]: weight must be a number, got {weight!r}")
        if not math.isfinite(weight):
            raise ConfigError(f"{key}[{name!r}]: weight must be finite, got {weight!r}")
        weights[name] = float(weight)
    if all(weight == 0 for weight in weights.values()):
        raise ConfigError(
            f"{key}: every weight is zero ({', '.join(weights)}); give one a non-zero weight"
        )
    return weights


@dataclass(frozen=True)
class MetricSpec:
    """Which metrics make the score, with which weights, and how steps become the final value.

    Build it with :meth:`from_config`. Example::

        spec = MetricSpec.from_config({"auc": 1.0, "loss": -0.5}, final_mode="best")
        spec.score({"auc": 0.8, "loss": 0.4})    # -> 0.6

    Attributes:
        weights: ``{metric: weight}`` in the order given.
        final_mode: How a source's steps become its final value.
        optimize_mode: Whether higher scores are better (``best`` picks by it).
        source_list_final_mode: How the finals of several sources combine.
    """

    weights: dict[str, float]
    final_mode: FinalMode = FinalMode.FINAL
    optimize_mode: OptimizeMode = OptimizeMode.MAXIMIZE
    source_list_final_mode: FinalMode = FinalMode.FINAL

    @classmethod
    def from_config(
        cls,
        metric_dict: object,
        final_mode: object = "final",
        optimize_mode: object = "maximize",
        source_list_final_mode: object = None,
        *,
        key: str = "metric_dict",
    ) -> MetricSpec:
        """Validate a ``metric_dict`` and the modes.

        Args:
            metric_dict: ``{metric: weight}``, or its JSON text (as written in an INI file).
            final_mode: ``final``, ``best`` or ``avg``.
            optimize_mode: ``maximize`` or ``minimize``.
            source_list_final_mode: ``final``, ``best``, ``avg``, or None for ``final_mode``.
            key: How error messages name the metric dict (e.g. ``trial.ini [metric] metric_dict``).

        Raises:
            ConfigError: ``metric_dict`` is not a dict, a weight is not a number, every weight is
                zero, or a mode is unknown. The message names the key.
        """
        weights = _parse_metric_dict(metric_dict, key)
        final = _parse_enum(FinalMode, final_mode, "final_mode")
        optimize = _parse_enum(OptimizeMode, optimize_mode, "optimize_mode")
        across = (
            final
            if source_list_final_mode in (None, "")
            else _parse_enum(FinalMode, source_list_final_mode, "source_list_final_mode")
        )
        return cls(weights, final, optimize, across)  # type: ignore[arg-type]

    @property
    def required(self) -> tuple[str, ...]:
        """The metrics a step must hold to count: those with a non-zero weight."""
        return tuple(name for name, weight in self.weights.items() if weight != 0)

    def is_complete(self, values: Mapping[str, float]) -> bool:
        """True when ``values`` holds every required metric."""
        return all(name in values for name in self.required)

    def score(self, values: Mapping[str, float]) -> float:
        """The weighted sum over the required metrics.

        Raises:
            KeyError: ``values`` misses a required metric (check :meth:`is_complete` first).
        """
        return math.fsum(
            weight * float(values[name]) for name, weight in self.weights.items() if weight != 0
        )

    def make_report(self, step: int, values: Mapping[str, float], source: int = 0) -> Report:
        """Score a complete step; ``values`` keeps only the metrics of ``weights``."""
        kept = {name: float(values[name]) for name in self.weights if name in values}
        return Report(step=step, score=self.score(values), values=kept, source=source)

    def final(self, reports: Sequence[Report]) -> Report:
        """Combine one source's scored steps with ``final_mode``."""
        return combine(reports, self.final_mode, self.optimize_mode)

    def final_across(self, finals: Sequence[Report]) -> Report:
        """Combine the per-source finals with ``source_list_final_mode``."""
        return combine(finals, self.source_list_final_mode, self.optimize_mode)


def combine(reports: Sequence[Report], mode: FinalMode, optimize: OptimizeMode) -> Report:
    """Reduce reports to one: the last, the best under ``optimize``, or the average.

    ``final`` takes the last report of the sequence. ``best`` takes the first report with the best
    score, ignoring NaN scores unless every score is NaN. ``avg`` averages the scores and, metric
    by metric, the values (over the reports that hold the metric); its ``step`` and ``source``
    are those of the last report.

    Raises:
        ValueError: ``reports`` is empty.
    """
    if not reports:
        raise ValueError("combine() needs at least one report")
    if mode is FinalMode.FINAL:
        return reports[-1]
    if mode is FinalMode.BEST:
        sign = optimize.sign
        # A NaN score (a diverged evaluation) compares false with everything: skip it, or a
        # NaN first step would stay "best" for good. Only NaN scores: the first of them.
        numbers = [report for report in reports if not math.isnan(report.score)]
        best = (numbers or reports)[0]
        for report in numbers[1:]:
            if sign * report.score > sign * best.score:
                best = report
        return best
    sums: dict[str, list[float]] = {}
    for report in reports:
        for name, value in report.values.items():
            sums.setdefault(name, []).append(value)
    last = reports[-1]
    return Report(
        step=last.step,
        score=math.fsum(r.score for r in reports) / len(reports),
        values={name: math.fsum(v) / len(v) for name, v in sums.items()},
        source=last.source,
    )
