"""The learning rate of an EasyRec config: find it in every ``optimizer_config``, set it, read it.

EasyRec nests the learning rate as
``train_config.optimizer_config[i].<optimizer>.learning_rate.<schedule>.<field>``, where the
optimizer is any of the ``Optimizer`` oneof (``adam_optimizer``, ``momentum_optimizer``, ...) and
the schedule any of the ``LearningRate`` oneof. The field that holds the rate depends on the
schedule:

==================================  ========================  =====================
schedule                            rate field                floor field
==================================  ========================  =====================
constant_learning_rate              ``learning_rate``         (none)
exponential_decay_learning_rate     ``initial_learning_rate``  ``min_learning_rate``
manual_step_learning_rate           ``initial_learning_rate``  (none)
cosine_decay_learning_rate          ``learning_rate_base``    (none)
poly_decay_learning_rate            ``learning_rate_base``    ``end_learning_rate``
transformer_learning_rate           ``learning_rate_base``    (none)
==================================  ========================  =====================

The rule is by field name, not by schedule name, so a schedule we do not list still works. A rate
below its schedule's floor is raised to the floor with a warning (a decay that starts below its
own minimum makes no sense). Only the config text is edited, through :mod:`hpo_tools.pbtxt`, so
comments and layout survive.
"""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass
from typing import Any, Optional

from hpo_tools.errors import ConfigError, ConfigPathError
from hpo_tools.pbtxt.values import FloatValue

__all__ = ["LearningRateField", "find_learning_rates", "plan_learning_rate", "set_learning_rate"]

_logger = logging.getLogger(__name__)

OPTIMIZERS_PATH = "train_config.optimizer_config"

# Rate field -> the field of the same schedule that bounds it from below.
_RATE_FIELDS: dict[str, Optional[str]] = {
    "learning_rate": None,
    "initial_learning_rate": "min_learning_rate",
    "learning_rate_base": "end_learning_rate",
}


@dataclass(frozen=True)
class LearningRateField:
    """One learning-rate field found in the config.

    Attributes:
        path: The full edit path, e.g.
            ``train_config.optimizer_config[0].adam_optimizer.learning_rate.``
            ``exponential_decay_learning_rate.initial_learning_rate``.
        optimizer_index: Index of its ``optimizer_config``.
        optimizer: The optimizer field name (``adam_optimizer``).
        schedule: The schedule field name (``constant_learning_rate``).
        field: The rate field name.
        value: Its current value.
        floor: The schedule's floor (``min_learning_rate`` / ``end_learning_rate``) when present.
        floor_field: The floor's field name when present.
    """

    path: str
    optimizer_index: int
    optimizer: str
    schedule: str
    field: str
    value: float
    floor: Optional[float] = None
    floor_field: Optional[str] = None


def _safe_has(node: Any, path: str) -> bool:
    try:
        return bool(node.has(path))
    except ConfigPathError:
        return False


def _number(node: Any, path: str, where: str) -> float:
    value = node.get_one(path)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise ConfigError(f"{where}: expected a number, found {value!r}")
    return float(value)


def find_learning_rates(doc: Any, *, source: str = "config") -> list[LearningRateField]:
    """Every learning-rate field under ``train_config.optimizer_config``, in file order.

    Args:
        doc: A :class:`hpo_tools.pbtxt.Document`.
        source: The config's name, for messages.

    Raises:
        ConfigError: There is no ``optimizer_config``, or one of them has no learning rate.
    """
    if not _safe_has(doc, OPTIMIZERS_PATH):
        raise ConfigError(f"{source}: no {OPTIMIZERS_PATH} (expected at least one optimizer)")
    found: list[LearningRateField] = []
    for index, optimizer_config in enumerate(doc.get(OPTIMIZERS_PATH)):
        prefix = f"{OPTIMIZERS_PATH}[{index}]"
        before = len(found)
        for optimizer in optimizer_config.field_names():
            if not _safe_has(optimizer_config, f"{optimizer}.learning_rate"):
                continue
            learning_rate = optimizer_config.get_one(f"{optimizer}.learning_rate")
            if not hasattr(learning_rate, "field_names"):  # a bare value, not a schedule
                continue
            for schedule in learning_rate.field_names():
                schedule_node = learning_rate.get_one(schedule)
                if not hasattr(schedule_node, "field_names"):
                    continue
                names = schedule_node.field_names()
                for field, floor_field in _RATE_FIELDS.items():
                    if field not in names:
                        continue
                    path = f"{prefix}.{optimizer}.learning_rate.{schedule}.{field}"
                    floor = None
                    if floor_field is not None and floor_field in names:
                        floor = _number(schedule_node, floor_field, f"{source}: {floor_field}")
                    else:
                        floor_field = None
                    found.append(
                        LearningRateField(
                            path=path,
                            optimizer_index=index,
                            optimizer=optimizer,
                            schedule=schedule,
                            field=field,
                            value=_number(schedule_node, field, f"{source}: {path}"),
                            floor=floor,
                            floor_field=floor_field,
                        )
                    )
        if len(found) == before:
            raise ConfigError(
                f"{source}: {prefix} has no learning rate (expected <optimizer>.learning_rate."
                "<schedule> { learning_rate | initial_learning_rate | learning_rate_base })"
            )
    return found


def plan_learning_rate(
    doc: Any, learning_rate: float, *, source: str = "config"
) -> tuple[dict[str, float], list[str]]:
    """The edits that set every learning rate to ``learning_rate``, and the warnings to give.

    Returns:
        ``(edits, warnings)``: edit path -> new value; one warning per rate raised to its floor.

    Raises:
        ConfigError: ``learning_rate`` is not a positive finite number, or no rate is found.
    """
    if not isinstance(learning_rate, (int, float)) or isinstance(learning_rate, bool):
        raise ConfigError(f"learning rate must be a number, got {learning_rate!r}")
    if not math.isfinite(learning_rate) or learning_rate <= 0:
        raise ConfigError(f"learning rate must be a positive number, got {learning_rate!r}")
    edits: dict[str, float] = {}
    warnings: list[str] = []
    for rate in find_learning_rates(doc, source=source):
        value = float(learning_rate)
        if rate.floor is not None and value < rate.floor:
            warnings.append(
                f"{source}: {rate.path}: {value:g} is below {rate.floor_field} "
                f"{rate.floor:g}; using {rate.floor:g}"
            )
            value = rate.floor
        # A float even where the file writes the rate as an integer (`learning_rate: 1`).
        edits[rate.path] = FloatValue(value)
    return edits, warnings


def set_learning_rate(
    doc: Any, learning_rate: float, *, source: str = "config"
) -> dict[str, float]:
    """Set every learning rate in ``doc`` (in place, all or nothing); log a warning per floor.

    Returns:
        The edits applied: path -> value.
    """
    edits, warnings = plan_learning_rate(doc, learning_rate, source=source)
    for warning in warnings:
        _logger.warning("%s", warning)
    doc.apply(edits)
    return edits
