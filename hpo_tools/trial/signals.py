"""SIGINT/SIGTERM during a trial: recorded by a handler, raised by the run loop.

NNI stops a trial with SIGINT (SIGKILL 5 s later); the runner must cancel every job and die by
that signal within 3 s. The handler only records the signal; the run loop, which wakes every
tick, raises :class:`TrialCancelled` through :meth:`SignalGuard.check`.
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from typing import Any, Callable

__all__ = ["TrialCancelled", "SignalGuard", "sigterm_raises"]


class TrialCancelled(BaseException):
    """The runner got SIGINT or SIGTERM; ``signum`` says which.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that no ``except Exception`` on the way
    (a metric source retrying a read, a registry write logged and skipped) swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"trial cancelled by {signal.Signals(signum).name}")
        self.signum = signum


class SignalGuard:
    """Records the first SIGINT/SIGTERM; the run loop turns it into :class:`TrialCancelled`.

    The handler only sets an attribute: raising from a signal handler can land between a lock's
    acquire and its ``with`` block (leaving it held) or inside someone's ``except Exception``.
    The run loop wakes every tick (0.1 s) and calls :meth:`check`.

    Args:
        on_signal: called once, in the handler, at the first signal: a platform's
            ``interrupt()``, which makes a long metric read (a ``table`` query) give up so the
            run loop gets to cancel. It must be signal-safe: set a flag, take no lock, not raise.
    """

    def __init__(self, on_signal: Callable[[], None] | None = None) -> None:
        self.signum: int | None = None
        self.extra_signals = 0
        self._delivered = False
        self._previous: dict[int, Any] = {}
        self._on_signal = on_signal

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            if self._on_signal is not None:
                self._on_signal()
        else:
            self.extra_signals += 1

    def check(self) -> None:
        """Raise :class:`TrialCancelled` once, when a signal came."""
        if self.signum is not None and not self._delivered:
            self._delivered = True
            raise TrialCancelled(self.signum)

    def __enter__(self) -> SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def quiet(self) -> None:
        """From now on signals are only counted (used while cleaning up)."""
        self._delivered = True

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


@contextlib.contextmanager
def sigterm_raises() -> Iterator[None]:
    """In the block, SIGTERM raises :class:`TrialCancelled` (as SIGINT raises
    ``KeyboardInterrupt``) until the runner installs its own handling (:class:`SignalGuard`),
    which restores this one when it is done; the previous handler again on the way out. The
    entry points wrap a trial in it, so that a SIGTERM before the runner's handlers (while NNI
    hands out the parameters, or the trial file is read) is recorded as the trial's
    cancellation too. Outside the main thread (no signal handlers there) it does nothing."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def cancel(signum: int, frame: Any) -> None:
        raise TrialCancelled(signum)

    previous = signal.signal(signal.SIGTERM, cancel)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)
