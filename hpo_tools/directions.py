"""The optimisation direction, shared by the metric score and the assessor.

A module of its own, importing nothing of ours, so that NNI's dispatcher (where
:mod:`hpo_tools.assessor` runs) and the trial runner (through :mod:`hpo_tools.metrics.score`)
can both use the one type without loading each other's modules. Each caller parses
``optimize_mode`` text with its own error (``ConfigError`` in a trial file, ``ValueError`` in the
assessor's classArgs).
"""

from __future__ import annotations

import enum
import logging

__all__ = ["OptimizeMode"]

_logger = logging.getLogger(__name__)


class OptimizeMode(enum.Enum):
    """Whether a higher or a lower score is better; ``sign`` is +1 or -1.

    Multiplying a value by ``sign`` *normalises* it: higher is better afterwards.

    Example:
        >>> OptimizeMode("minimize").sign * 0.25
        -0.25
    """

    MAXIMIZE = "maximize"
    MINIMIZE = "minimize"

    @property
    def sign(self) -> int:
        """+1 for maximize, -1 for minimize."""
        return 1 if self is OptimizeMode.MAXIMIZE else -1
