"""The masker: credential values become ``***`` in logs and relayed job output.

A :class:`SecretMasker` holds the values to hide. It is both a :class:`logging.Filter` (attach it
to a handler and every record it emits is masked) and a line filter (:meth:`SecretMasker.mask`)
for job output the runner relays.

Example:
    >>> masker = SecretMasker(["s3cr3t"])
    >>> masker.mask("key=s3cr3t")
    'key=***'
"""

from __future__ import annotations

import logging
import os
import re
import threading
from collections.abc import Iterable, Mapping

__all__ = ["MASK", "SecretMasker", "credential_env_names", "is_credential_name"]

_logger = logging.getLogger(__name__)

MASK = "***"

# Values shorter than this are not masked: masking "1" or "ab" would garble every log line while
# hiding nothing (no real access key is that short).
_MIN_SECRET_LENGTH = 4

_CREDENTIAL_NAME = re.compile(
    r"secret|access_?key|access_?id|api_?key|private_?key|password|passwd|token", re.IGNORECASE
)


def is_credential_name(name: str) -> bool:
    """Whether a config key or env var name names a credential (``accessKeySecret``, ``*_TOKEN``).

    Args:
        name: a trial-file key or an environment variable name.

    Returns:
        True for names such as ``accessKeyID``, ``accessKeySecret``, ``OSS_ACCESS_KEY_SECRET``,
        ``DASHSCOPE_API_KEY``.
    """
    return bool(_CREDENTIAL_NAME.search(name))


def credential_env_names(environ: Mapping[str, str] | None = None) -> list[str]:
    """The names of environment variables that look like credentials.

    Args:
        environ: the environment to look at (default ``os.environ``).

    Returns:
        Sorted names such as ``OSS_ACCESS_KEY_SECRET``.
    """
    env = os.environ if environ is None else environ
    return sorted(name for name in env if is_credential_name(name))


class SecretMasker(logging.Filter):
    """Replaces every known secret value with ``***``.

    Thread-safe: the runner adds values while a relay thread may be masking lines.

    Args:
        secrets: initial secret values (empty and very short values are ignored).
    """

    def __init__(self, secrets: Iterable[str] = ()) -> None:
        super().__init__()
        self._lock = threading.Lock()
        self._secrets: set[str] = set()
        self._pattern: re.Pattern[str] | None = None
        self.add(*secrets)

    def add(self, *values: str | None) -> None:
        """Add secret values to hide from now on."""
        with self._lock:
            for value in values:
                if value is None:
                    continue
                value = str(value).strip()
                if len(value) >= _MIN_SECRET_LENGTH:
                    self._secrets.add(value)
            # Longest first, so that a secret containing another is masked whole.
            ordered = sorted(self._secrets, key=len, reverse=True)
            self._pattern = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    def add_env(self, names: Iterable[str], environ: Mapping[str, str] | None = None) -> None:
        """Hide the values of the named environment variables (missing names are skipped)."""
        env = os.environ if environ is None else environ
        self.add(*(env.get(name) for name in names))

    @property
    def secret_count(self) -> int:
        """How many distinct values are masked."""
        return len(self._secrets)

    def mask(self, text: str) -> str:
        """Return ``text`` with every secret replaced by ``***``."""
        pattern = self._pattern
        if pattern is None or not text:
            return text
        return pattern.sub(MASK, text)

    def filter(self, record: logging.LogRecord) -> bool:
        """Mask the record's formatted message in place; never drops a record."""
        if self._pattern is None:
            return True
        try:
            message = record.getMessage()
        except Exception:  # a bad %-format is logging's problem to report, not ours
            return True
        masked = self.mask(message)
        if record.exc_info and not record.exc_text:
            record.exc_text = logging.Formatter().formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.mask(record.exc_text)
        record.msg, record.args = masked, None
        return True
