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
    """A trial file, training config, search space or option is malformed.

    Besides the one-line message, an error found in a trial file carries where it is as data:
    ``source`` (the file), ``section`` and ``key`` (None when the error is not about one
    section or key). ``hpo-tools check`` uses them to go on past a bad key and report the rest.
    """

    def __init__(
        self,
        message: str = "",
        *,
        source: str | None = None,
        section: str | None = None,
        key: str | None = None,
    ) -> None:
        super().__init__(message)
        self.source = source
        self.section = section
        self.key = key


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
