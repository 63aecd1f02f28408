"""A trial's log and its secrets: ``<trial dir>/trial.log`` through the masker.

:func:`build_masker` knows every credential of the trial file and of the environment;
:class:`TrialLogging` makes every root log handler pass through it while a trial runs;
:func:`masked` and :func:`mask_error` hide secrets in JSON data and in errors.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Iterable, Mapping
from typing import Any

from hpo_tools.secrets import SecretMasker, credential_env_names
from hpo_tools.trial.paths import TrialPaths

__all__ = ["TrialLogging", "build_masker", "masked", "mask_error"]


def build_masker(secrets: Iterable[str], environ: Mapping[str, str] | None = None) -> SecretMasker:
    """A masker for the trial file's credential values and credential-looking env vars."""
    env = os.environ if environ is None else environ
    masker = SecretMasker(tuple(secrets))
    masker.add_env(credential_env_names(env), env)
    return masker


def masked(value: Any, masker: SecretMasker) -> Any:
    """``value`` (JSON data) with every secret in its strings replaced by ``***``."""
    if isinstance(value, str):
        return masker.mask(value)
    if isinstance(value, Mapping):
        return {masker.mask(str(k)): masked(v, masker) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [masked(v, masker) for v in value]
    return value


def mask_error(err: BaseException, masker: SecretMasker) -> None:
    """Mask the string arguments of ``err`` and of the errors it was raised from, in place."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(
            masker.mask(arg) if isinstance(arg, str) else arg for arg in current.args
        )
        current = current.__cause__ or current.__context__


class TrialLogging:
    """Log to ``<trial dir>/trial.log`` through the masker while a trial runs.

    Under NNI, importing ``nni`` already put a root handler on ``trial.log``; then no second one
    is added. Every root handler gets the masker as a filter, so nothing any handler writes
    shows a secret. Everything is undone on exit.
    """

    def __init__(self, paths: TrialPaths, masker: SecretMasker, level: int = logging.INFO):
        self._paths = paths
        self._masker = masker
        self._level = level
        self._added: logging.Handler | None = None
        self._filtered: list[logging.Handler] = []
        self._pinned: list[logging.Handler] = []
        self._old_level: int | None = None

    def __enter__(self) -> TrialLogging:
        root = logging.getLogger()
        target = os.path.realpath(self._paths.log_path)

        def writes_target(handler: logging.Handler) -> bool:
            name = getattr(handler, "baseFilename", None) or getattr(
                getattr(handler, "stream", None), "name", None
            )
            return isinstance(name, str) and os.path.realpath(name) == target

        writes_log = any(writes_target(h) for h in root.handlers)
        if not writes_log:
            self._paths.trial_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(target, encoding="utf-8")
            handler.setFormatter(
                logging.Formatter("[%(asctime)s] %(levelname)s (%(name)s) %(message)s")
            )
            handler.setLevel(self._level)
            root.addHandler(handler)
            self._added = handler
        for handler in root.handlers:
            if self._masker not in handler.filters:
                handler.addFilter(self._masker)
                self._filtered.append(handler)
        package = logging.getLogger("hpo_tools")
        if package.getEffectiveLevel() > self._level:
            # Our INFO records must reach trial.log, but not handlers that were quieter
            # before (the CLI's stderr at WARNING): pin those to the root's level.
            for handler in root.handlers:
                if handler is not self._added and handler.level == logging.NOTSET:
                    handler.setLevel(root.getEffectiveLevel())
                    self._pinned.append(handler)
            self._old_level = package.level
            package.setLevel(self._level)
        return self

    def __exit__(self, *exc: Any) -> None:
        root = logging.getLogger()
        for handler in self._filtered:
            handler.removeFilter(self._masker)
        if self._added is not None:
            root.removeHandler(self._added)
            self._added.close()
        if self._old_level is not None:
            logging.getLogger("hpo_tools").setLevel(self._old_level)
        for handler in self._pinned:
            handler.setLevel(logging.NOTSET)
