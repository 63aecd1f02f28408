"""Access keys of a cloud platform: from its trial-file section or from the environment.

A platform is given an access key id and secret (its section's keys, ``${ENV}`` already
resolved by the runner) or nothing. It keeps them in memory only; what it stores in settings
and job descriptions is the *names* of two environment variables holding them, so that another
process (the assessor, ``hpo-tools kill``) rebuilds them from its own environment::

    keys = AccessKeys.of("PAI", access_id, access_key, credential_env=None,
                         defaults=(ALIBABA_CLOUD_ENV,),
                         hint="[ts_config] access_key_id and access_key_secret")
    keys.credentials()          # (id, secret): as given, else the env pairs in order
    keys.env_names()            # the pair stored in settings

Nothing here writes or logs a value; ``repr`` shows ``***``.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any, Optional, Sequence, Tuple

from hpo_tools.errors import ConfigError, PlatformError

__all__ = ["ALIBABA_CLOUD_ENV", "EXPORTED_ENV", "AccessKeys", "credential_env",
           "env_names_holding", "mark_exported"]

#: The Alibaba Cloud SDKs' own variable names: every platform tries them.
ALIBABA_CLOUD_ENV: Tuple[str, str] = ("ALIBABA_CLOUD_ACCESS_KEY_ID",
                                      "ALIBABA_CLOUD_ACCESS_KEY_SECRET")

EnvPair = Tuple[str, str]


def credential_env(value: Any, platform: str,
                   example: EnvPair = ALIBABA_CLOUD_ENV) -> Optional[EnvPair]:
    """``"ID_VAR,SECRET_VAR"`` (or a pair, or ``{"access_id": ..., "access_key": ...}``) -> the
    pair; None for nothing. ``example`` is the pair the error message shows.

    Raises:
        ConfigError: not two non-empty names.
    """
    if value in (None, "", [], ()):
        return None
    if isinstance(value, Mapping):
        pair: Tuple[Any, ...] = (value.get("access_id"), value.get("access_key"))
    elif isinstance(value, str):
        pair = tuple(p.strip() for p in value.split(","))
    else:
        pair = tuple(value)
    if len(pair) != 2 or not all(isinstance(p, str) and p for p in pair):
        raise ConfigError(
            f"platform {platform}: credential_env={value!r} must name two env vars (access key "
            f"id, secret), e.g. {','.join(example)}"
        )
    return (str(pair[0]), str(pair[1]))


#: Names hpo-tools itself set in this process's environment (``[oss_config]``'s keys exported as
#: ``OSS_ACCESS_KEY_*`` for storage and Local jobs), comma-separated; inherited by the jobs.
EXPORTED_ENV = "HPO_TOOLS_EXPORTED_ENV"


def mark_exported(names: Sequence[str]) -> None:
    """Note that hpo-tools set ``names`` itself (see :data:`EXPORTED_ENV`)."""
    known = [n for n in os.environ.get(EXPORTED_ENV, "").split(",") if n]
    os.environ[EXPORTED_ENV] = ",".join(sorted(set(known) | set(names)))


def env_names_holding(access_id: str, access_key: str,
                      preferred: Sequence[EnvPair] = (ALIBABA_CLOUD_ENV,)) -> Optional[EnvPair]:
    """The env var names whose values are these credentials (``preferred`` pairs first).

    Names hpo-tools exported itself (:data:`EXPORTED_ENV`) come last: another process (the
    assessor, ``kill``, ``experiment run``) has only the user's own names, e.g. ``AK``/``SK``
    that the trial file reads as ``${AK}``.
    """
    ours = set(os.environ.get(EXPORTED_ENV, "").split(","))

    def names(value: str) -> list:
        return sorted((k for k, v in os.environ.items() if v == value),
                      key=lambda k: (k in ours, k))

    id_names, key_names = names(access_id), names(access_key)
    for id_name, key_name in preferred:
        if id_name in id_names and key_name in key_names:
            return (id_name, key_name)
    if id_names and key_names:
        return (id_names[0], key_names[0])
    return None


@dataclasses.dataclass
class AccessKeys:
    """One platform's access keys. ``repr`` never shows them.

    Attributes:
        platform: How messages name the platform (``PAI``).
        hint: Where a user sets them, for the "no credentials" message.
        defaults: Env var pairs tried in order when nothing is given.
        env: The pair stored in settings (found holding the given values, or configured).
        access_id: The access key id when given (never stored or logged).
        access_key: The secret when given (never stored or logged).
    """

    platform: str
    hint: str
    defaults: Tuple[EnvPair, ...] = (ALIBABA_CLOUD_ENV,)
    env: Optional[EnvPair] = None
    access_id: Optional[str] = dataclasses.field(default=None, repr=False)
    access_key: Optional[str] = dataclasses.field(default=None, repr=False)

    @classmethod
    def of(cls, platform: str, access_id: Optional[str], access_key: Optional[str], *,
           credential_env: Any = None, hint: str = "",
           defaults: Sequence[EnvPair] = (ALIBABA_CLOUD_ENV,)) -> AccessKeys:
        """The keys given (either may be None) and where another process finds them."""
        defaults = tuple(tuple(p) for p in defaults)  # type: ignore[misc]
        env = _credential_env(credential_env, platform, defaults[0])
        if env is None and access_id and access_key:
            env = env_names_holding(access_id, access_key, defaults)
        return cls(platform=platform, hint=hint, defaults=defaults, env=env,
                   access_id=access_id or None, access_key=access_key or None)

    def __repr__(self) -> str:
        return (f"AccessKeys(platform={self.platform!r}, env={self.env!r}, "
                f"access_id={'***' if self.access_id else None}, "
                f"access_key={'***' if self.access_key else None})")

    def env_names(self) -> EnvPair:
        """The env var pair another process reads the keys from."""
        return self.env or self.defaults[0]

    def credentials(self) -> Tuple[str, str]:
        """(access key id, secret): as given, else from the environment.

        Raises:
            PlatformError: nothing given and no env var pair set (names them and ``hint``).
        """
        if self.access_id and self.access_key:
            return self.access_id, self.access_key
        pairs = [self.env] if self.env else []
        pairs += [p for p in self.defaults if p not in pairs]
        for id_name, key_name in pairs:
            access_id, access_key = os.environ.get(id_name), os.environ.get(key_name)
            if access_id and access_key:
                return access_id, access_key
        names = " or ".join(f"{a} and {b}" for a, b in pairs)
        where = f"set {self.hint}, or " if self.hint else "set "
        raise PlatformError(f"platform {self.platform}: no credentials: {where}{names} in the "
                            "environment")


_credential_env = credential_env
