"""Hyperband/BOHB budgets: ``TRIAL_BUDGET`` applied to a numeric config field, and the
intermediate results reported once per budget unit.

NNI's Hyperband and BOHB add ``TRIAL_BUDGET`` (a positive number) to each parameter set. A
platform-format trial file says what it means with ``[params_config] budget_path=<config path>``
and ``budget_scale=<number>`` (default 1): the field is set to ``TRIAL_BUDGET * budget_scale``,
rounded to the nearest integer (at least 1) when the field is an integer field, so the job trains
that long (:class:`Budget`, applied by the runner like any edit, checked by ``hpo-tools check``).

So that the curves of trials with different budgets line up, the runner then reports one
intermediate result per budget unit (:class:`UnitReports`): the k-th is the first evaluation at
or past ``k * unit_steps`` global steps, whatever the evaluation cadence; a trial of budget B
reports B of them (docs/trial-files.md, "Budgets").
"""

from __future__ import annotations

import math
import numbers
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from hpo_tools.errors import ConfigError

__all__ = ["BUDGET_PARAM", "Budget", "UnitReports", "trial_budget", "field_kind"]

#: The parameter Hyperband and BOHB add to each parameter set.
BUDGET_PARAM = "TRIAL_BUDGET"

_INT_KINDS = frozenset({"int32", "int64", "uint32", "uint64"})


def trial_budget(params: Mapping[str, Any], *, source: str) -> float | None:
    """``TRIAL_BUDGET`` of ``params`` as a float; None when the tuner gave none.

    Raises:
        ConfigError: it is not a positive finite number.
    """
    if BUDGET_PARAM not in params:
        return None
    value = params[BUDGET_PARAM]
    number: float | None = None
    if isinstance(value, numbers.Real) and not isinstance(value, bool):
        number = float(value)
    elif isinstance(value, str):
        try:
            number = float(value)
        except ValueError:
            number = None
    if number is None or not math.isfinite(number) or number <= 0:
        raise ConfigError(
            f"{source}: parameter {BUDGET_PARAM}: expected a positive number (the trial's "
            f"budget), got {value!r}", source=source, key=BUDGET_PARAM,
        )
    return number


def field_kind(document: Any, path: str, schema: Any = None, *, where: str = "") -> str:
    """``"int"`` or ``"float"``: the kind of the numeric field ``path`` names in ``document``
    (from its value there, else from ``schema``).

    Raises:
        ConfigError: the path does not resolve (and the schema does not know it), or the
            field is not a number (a message, a string, an enum, a bool).
    """
    from hpo_tools.errors import ConfigPathError

    prefix = f"{where}={path}: " if where else f"{path}: "
    try:
        values = document.get(path, strict=True)
    except ConfigPathError as err:
        kind = _schema_kind(schema, path)
        if kind is None:
            raise ConfigError(f"{prefix}not in {document.source}: {err}") from None
        values, schema_kind = [], kind
    else:
        schema_kind = None
    if values:
        value = values[-1]
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(
                f"{prefix}expected a numeric field (such as train_config.num_steps), but it "
                f"holds {_describe(value)} in {document.source}"
            )
        return "int" if isinstance(value, int) else "float"
    if schema_kind in _INT_KINDS:
        return "int"
    if schema_kind == "float":
        return "float"
    raise ConfigError(
        f"{prefix}expected a numeric field (such as train_config.num_steps), but the schema "
        f"says it is {schema_kind or 'absent'} ({document.source})"
    )


def _describe(value: object) -> str:
    if isinstance(value, bool):
        return f"a bool ({str(value).lower()})"
    if isinstance(value, str):
        return f"a string or enum ({value!r})"
    return "a message"


def _schema_kind(schema: Any, path: str) -> str | None:
    """The kind of ``path``'s field by the schema (selectors ignored); None when unknown."""
    import re

    from hpo_tools.pbtxt.values import schema_kind

    if schema is None:
        return None
    descriptor, fd = schema, None
    for name in re.sub(r"\[[^\]]*\]", "", path).split("."):
        if descriptor is None:
            return None
        fd = descriptor.fields_by_name.get(name)
        if fd is None:
            return None
        descriptor = fd.message_type
    return schema_kind(fd) if fd is not None else None


@dataclass(frozen=True)
class Budget:
    """``[params_config] budget_path`` / ``budget_scale`` and this trial's ``TRIAL_BUDGET``.

    Attributes:
        path: the config path set to the budget (``train_config.num_steps``).
        scale: config units per budget unit.
        trial_budget: ``TRIAL_BUDGET``; None when the tuner gave none (nothing is edited, but
            ``hpo-tools check`` still checks the path).
        where: how messages name the key (``trial.ini: [params_config] budget_path``).
    """

    path: str
    scale: float = 1.0
    trial_budget: float | None = None
    where: str = ""

    @property
    def applies(self) -> bool:
        """Whether this trial has a budget to apply."""
        return self.trial_budget is not None

    def value(self, kind: str) -> int | float:
        """``TRIAL_BUDGET * scale`` for a field of ``kind`` (1 stands in for a missing budget):
        the nearest integer, at least 1, for ``"int"``; else the float (to 12 digits, so
        BOHB's ``3.0000000000000004`` becomes 3.0)."""
        amount = (self.trial_budget if self.trial_budget is not None else 1.0) * self.scale
        if kind == "int":
            return max(1, math.floor(amount + 0.5))
        return float(f"{amount:.12g}")

    def edit(self, document: Any, schema: Any = None) -> dict[str, int | float]:
        """The edit ``{path: value}`` for ``document``, typed by its field.

        Raises:
            ConfigError: the path is not a numeric field of ``document`` (or ``schema``).
        """
        kind = field_kind(document, self.path, schema, where=self.where)
        return {self.path: self.value(kind)}


class UnitReports:
    """Which scored steps go to NNI when a trial has a budget: one per budget unit.

    The k-th report (k = 1, 2, ...) is the first scored step of the first metric source at or
    past ``k * unit_steps`` global steps; a step that passes several boundaries at once stands
    for each of them. When the metrics end short of the next boundary, :meth:`finish` reports
    the last step once more for it (the job trained its whole budget). Other sources' steps
    are not reported (they stay in ``result.json``).
    """

    def __init__(self, unit_steps: float) -> None:
        if unit_steps <= 0:
            raise ValueError(f"unit_steps must be positive, got {unit_steps}")
        self.unit_steps = unit_steps
        self.sent = 0
        self._last: Any = None

    def add(self, report: Any) -> list[Any]:
        """The reports ``report`` (a :class:`~hpo_tools.metrics.Report`) stands for, in order."""
        if report.source != 0:
            return []
        self._last = report
        reached = math.floor(report.step / self.unit_steps + 1e-9)
        if reached <= self.sent:
            return []
        count, self.sent = reached - self.sent, reached
        return [report] * count

    def finish(self) -> list[Any]:
        """The last step again for the unit it falls short of, once the metrics have ended."""
        last = self._last
        if last is None or last.step <= self.sent * self.unit_steps + 1e-9:
            return []
        self.sent += 1
        return [last]
