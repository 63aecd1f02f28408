"""The exceptions a user can cause.

Each message names the file/section/key/path and what was expected.

The CLI prints ``error: <message>`` and exits 2 for every :class:`HpoError`; anything else is a bug
and keeps its traceback.
"""

from __future__ import annotations

import difflib
from collections.abc import Iterable

__all__ = [
    "HpoError",
    "ConfigError",
    "ConfigPathError",
    "StorageError",
    "MetricReadError",
    "PlatformError",
    "did_you_mean",
]


class HpoError(Exception):
    """Root of every user-facing error; the message is one line."""


class ConfigError(HpoError):
    """A trial file, training config, search space or option is malformed."""


class ConfigPathError(ConfigError):
    """A config path (``a.b[key=v].c``) does not resolve, or a value does not fit its field."""


class StorageError(HpoError):
    """A local or remote (``oss://``) path cannot be read or written."""


class MetricReadError(HpoError):
    """Metrics could not be read or never held every weighted key."""


class PlatformError(HpoError):
    """A training job could not be submitted, followed or cancelled."""


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    """Return ``" (did you mean 'x'?)"`` for the closest candidate, or ``""`` when none is close."""
    matches = difflib.get_close_matches(name, sorted(set(candidates)), n=1, cutoff=0.6)
    return f" (did you mean '{matches[0]}'?)" if matches else ""
