"""Failpoints: named moments of a trial's life where a test makes the process pause or die.

A test-only hook, in the manner of etcd's gofail and TiKV's fail-rs. The product calls
``failpoint("after_submit")`` at a few named moments (:data:`NAMES`); the call does nothing
unless the environment variable ``HPO_TOOLS_FAILPOINTS`` (read once, at the first call) arms
that name::

    HPO_TOOLS_FAILPOINTS=after_submit=pause               # one failpoint
    HPO_TOOLS_FAILPOINTS=training=kill,submit=pause       # several, comma-separated
    HPO_TOOLS_FAILPOINT_DIR=/tmp/case7                    # where ``pause`` leaves its marker

Actions:

- ``pause``: write the marker file ``$HPO_TOOLS_FAILPOINT_DIR/<name>`` (the pid; written
  atomically), then wait in short ticks until a SIGINT or SIGTERM arrives (at most
  :data:`PAUSE_LIMIT` s). The signal is handled as it would be at that moment without the
  pause: whatever handler is installed (the runner's ``SignalGuard``, Python's
  ``KeyboardInterrupt``, the default action) gets it, and the code goes on from the failpoint.
  In a thread other than the main one (where Python runs no signal handler) the pause simply
  lasts :data:`PAUSE_LIMIT` s: a call that hangs.
- ``kill``: write the marker, then SIGKILL this process (a runner killed at that moment:
  nothing of it cleans up).

Each armed failpoint fires once per process (a failpoint in a loop pauses the first time).
With ``HPO_TOOLS_FAILPOINTS`` unset the cost of a call is one test of a module global.
``tests/faults/`` drives every moment; docs/architecture.md lists where each one is.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
import time
from collections.abc import Mapping
from typing import Any

__all__ = ["ENV_FAILPOINTS", "ENV_FAILPOINT_DIR", "ACTIONS", "NAMES", "PAUSE_LIMIT",
           "failpoint", "parse"]

_logger = logging.getLogger(__name__)

ENV_FAILPOINTS = "HPO_TOOLS_FAILPOINTS"
ENV_FAILPOINT_DIR = "HPO_TOOLS_FAILPOINT_DIR"

#: The moments the product marks, in the order of a trial's life.
NAMES = (
    "read_trial_file",  # trial_files.prepare_trial: parameters in, the trial file not read yet
    "write_configs",  # runner: a stage's edited configs about to be written
    "submit",  # launcher: a command about to be handed to platform.submit
    "after_submit",  # launcher: submit returned a job, not yet recorded by the runner
    "training",  # launcher: the job recorded and live, the runner waiting on it
    "metric_read",  # runner: the follower about to read the metric sources
    "report",  # runner: an intermediate result about to go to the reporter
    "final_report",  # runner: the final result about to go to the reporter
)
ACTIONS = ("pause", "kill")

#: Seconds a pause waits for a signal before the code goes on.
PAUSE_LIMIT = 60.0
_TICK = 0.02

_armed: dict[str, str] | None = None  # None: the environment not read yet
_lock = threading.Lock()


def parse(text: str) -> dict[str, str]:
    """``"name=action,..."`` -> ``{name: action}``.

    Raises:
        ValueError: an unknown name or action, or an entry that is not ``name=action``.
    """
    armed: dict[str, str] = {}
    for entry in (e.strip() for e in text.split(",")):
        if not entry:
            continue
        name, sep, action = (part.strip() for part in entry.partition("="))
        if not sep or name not in NAMES or action not in ACTIONS:
            raise ValueError(f"{ENV_FAILPOINTS}: {entry!r}: expected NAME=ACTION, NAME one of "
                             f"{', '.join(NAMES)}, ACTION one of {', '.join(ACTIONS)}")
        armed[name] = action
    return armed


def _read(environ: Mapping[str, str]) -> dict[str, str]:
    try:
        armed = parse(environ.get(ENV_FAILPOINTS, ""))
    except ValueError as err:  # a test's typo must not break the run it tests
        _logger.error("%s; no failpoint armed", err)
        return {}
    if armed:
        _logger.warning("failpoints armed (a test run): %s",
                        ", ".join(f"{k}={v}" for k, v in armed.items()))
    return armed


def failpoint(name: str) -> None:
    """The product is at moment ``name``: do what ``HPO_TOOLS_FAILPOINTS`` says, if anything."""
    global _armed
    if _armed is None:
        _armed = _read(os.environ)
    if not _armed or name not in _armed:
        return
    with _lock:
        action = _armed.pop(name, None)  # once per process
    if action == "kill":
        _write_marker(name)
        os.kill(os.getpid(), signal.SIGKILL)
    elif action == "pause":
        _pause(name)


def _write_marker(name: str) -> None:
    directory = os.environ.get(ENV_FAILPOINT_DIR)
    if not directory:
        return
    path = os.path.join(directory, name)
    temp = f"{path}.{os.getpid()}.tmp"
    with open(temp, "w", encoding="ascii") as handle:
        handle.write(str(os.getpid()))
    os.replace(temp, path)


def _pause(name: str) -> None:
    """Wait for a SIGINT/SIGTERM (see the module docstring), then let it be handled."""
    deadline = time.monotonic() + PAUSE_LIMIT
    if threading.current_thread() is not threading.main_thread():
        _write_marker(name)
        while time.monotonic() < deadline:
            time.sleep(_TICK)
        return
    seen: list[int] = []
    previous: dict[int, Any] = {s: signal.getsignal(s) for s in (signal.SIGINT, signal.SIGTERM)}

    def restore() -> None:
        for signum, handler in previous.items():
            if handler is not None:  # None: not set from Python, nothing to put back
                signal.signal(signum, handler)

    def passed_on(signum: int, frame: Any) -> None:
        seen.append(signum)
        restore()  # the handler of the moment handles it, as if nobody had paused here
        handler = previous[signum]
        if callable(handler):
            handler(signum, frame)
        elif handler == signal.SIG_DFL:
            os.kill(os.getpid(), signum)  # the default action: the process dies by it

    for signum in previous:
        signal.signal(signum, passed_on)
    try:
        _write_marker(name)  # after the handlers: a signal sent on seeing it is never missed
        while not seen and time.monotonic() < deadline:
            time.sleep(_TICK)
    finally:
        if not seen:
            restore()
