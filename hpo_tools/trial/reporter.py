"""Where a trial's parameters come from and its results go: NNI, or the console.

:class:`NniReporter` talks to NNI's trial API and imports :mod:`nni` only when built (so a
standalone run never pays ``import nni``). Its reports go through one daemon thread and each
waits at most ``report_timeout`` seconds: NNI's HTTP channel has no timeout (API-NOTES §0.9), and
a report hanging on the runner's main thread would keep it from cancelling the trial's jobs
before NNI's SIGKILL. :class:`ConsoleReporter` takes the parameters it is given and prints what
it would report; ``hpo-tools run --params`` uses it to debug a trial file outside any experiment.
"""

from __future__ import annotations

import json
import logging
import queue
import sys
import threading
from collections.abc import Mapping
from typing import Any, Callable, TextIO

from hpo_tools.errors import HpoError

__all__ = [
    "DEFAULT_REPORT_TIMEOUT",
    "Reporter",
    "NniReporter",
    "ConsoleReporter",
    "ReporterChannelLost",
    "under_nni",
]

_logger = logging.getLogger(__name__)

#: Seconds one report to NNI may take before the channel counts as lost. NNI's manager answers
#: a report on localhost in milliseconds; the runner must still cancel within NNI's 5 s grace.
DEFAULT_REPORT_TIMEOUT = 2.0


class ReporterChannelLost(HpoError):
    """NNI's channel is gone (the experiment stopped): cancel the jobs and exit non-zero."""


def under_nni(environ: Mapping[str, str]) -> bool:
    """Whether this process is an NNI trial (``NNI_PLATFORM`` set and not ``unittest``)."""
    return bool(environ.get("NNI_PLATFORM")) and environ.get("NNI_PLATFORM") != "unittest"


class Reporter:
    """Parameters in, results out. Subclasses implement every method."""

    @property
    def experiment_id(self) -> str:
        """The experiment's id."""
        raise NotImplementedError

    @property
    def trial_id(self) -> str:
        """This trial's id."""
        raise NotImplementedError

    @property
    def parameter_id(self) -> Any:
        """The tuner's id of the parameter set (``None`` outside NNI)."""
        return None

    def get_parameters(self) -> dict[str, Any]:
        """The tuner's parameters for this trial (call once)."""
        raise NotImplementedError

    def report_intermediate(self, metrics: Mapping[str, float]) -> None:
        """Report one scored step (``{"default": score, ...}``)."""
        raise NotImplementedError

    def report_final(self, metrics: Mapping[str, float]) -> None:
        """Report the trial's final result (``{"default": score, ...}``)."""
        raise NotImplementedError


def _is_connection_error(err: BaseException) -> bool:
    if isinstance(err, ConnectionError):
        return True
    # requests.exceptions.ConnectionError is not a builtin ConnectionError subclass.
    return any(cls.__name__ == "ConnectionError" for cls in type(err).__mro__)


class _Call:
    """One call handed to :class:`_BoundedSender`, and what came of it."""

    def __init__(self, function: Callable[[], Any]) -> None:
        self.function = function
        self.done = threading.Event()
        self.error: BaseException | None = None


class _BoundedSender:
    """Runs calls one at a time, in order, in a daemon thread; each caller waits ``timeout`` s.

    A call that has not returned in time leaves the thread stuck in it: every later call fails
    at once (they would queue behind it), and being a daemon the thread never keeps the process
    alive.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._calls: queue.Queue[_Call] = queue.Queue()
        self._thread: threading.Thread | None = None
        self._stuck = ""

    def call(self, function: Callable[[], Any], what: str) -> None:
        """Run ``function`` in the sender thread and wait for it; re-raise what it raised.

        Raises:
            ReporterChannelLost: it took more than ``timeout`` s, or an earlier call did.
        """
        if self._stuck:
            raise ReporterChannelLost(f"NNI channel lost: {what} not sent, {self._stuck}")
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="nni-reporter", daemon=True)
            self._thread.start()
        item = _Call(function)
        self._calls.put(item)
        if not item.done.wait(self.timeout):
            self._stuck = f"reporting {what} got no answer in {self.timeout:g} s"
            raise ReporterChannelLost(f"NNI channel lost: {self._stuck}")
        if item.error is not None:
            raise item.error

    def _run(self) -> None:
        while True:
            item = self._calls.get()
            try:
                item.function()
            except BaseException as err:  # handed to the caller, which decides
                item.error = err
            finally:
                item.done.set()


class NniReporter(Reporter):
    """NNI's trial API (``nni.get_next_parameter`` / ``report_*_result``).

    A lost channel (``ConnectionError`` after the experiment stopped, ``None`` parameters from a
    closed channel, or a report that got no answer in ``report_timeout`` seconds) raises
    :class:`ReporterChannelLost`. Reports are sent in order, each one before the call returns.

    Args:
        report_timeout: Seconds one report may take (default :data:`DEFAULT_REPORT_TIMEOUT`).
    """

    def __init__(self, report_timeout: float = DEFAULT_REPORT_TIMEOUT) -> None:
        import nni  # only under NNI: about 1 s and most of the runner's memory

        self._nni = nni
        self._parameter_id: Any = None
        self._sender = _BoundedSender(report_timeout)
        try:
            from nni.runtime.log import silence_stdout

            silence_stdout()  # trial.log already gets NNI's log lines
        except ImportError:  # pragma: no cover - older NNI
            pass

    @property
    def experiment_id(self) -> str:
        return str(self._nni.get_experiment_id())

    @property
    def trial_id(self) -> str:
        return str(self._nni.get_trial_id())

    @property
    def parameter_id(self) -> Any:
        return self._parameter_id

    def get_parameters(self) -> dict[str, Any]:
        try:
            params = self._nni.get_next_parameter()
        except Exception as err:
            if _is_connection_error(err):
                message = f"NNI channel lost while getting parameters: {err}"
                raise ReporterChannelLost(message) from err
            raise
        if params is None:
            raise ReporterChannelLost("NNI channel closed: no parameters for this trial")
        # NNI keeps the record (with its parameter_id) only in a module global.
        record = getattr(sys.modules.get("nni.trial"), "_params", None)
        self._parameter_id = record.get("parameter_id") if isinstance(record, dict) else None
        return dict(params)

    def _send(self, what: str, call: Any, metrics: Mapping[str, float]) -> None:
        metric = dict(metrics)
        try:
            self._sender.call(lambda: call(metric), what)
        except ReporterChannelLost:
            raise
        except Exception as err:
            if _is_connection_error(err):
                message = f"NNI channel lost while reporting {what}: {err}"
                raise ReporterChannelLost(message) from err
            raise

    def report_intermediate(self, metrics: Mapping[str, float]) -> None:
        self._send("an intermediate result", self._nni.report_intermediate_result, metrics)

    def report_final(self, metrics: Mapping[str, float]) -> None:
        self._send("the final result", self._nni.report_final_result, metrics)


class ConsoleReporter(Reporter):
    """Prints what it would report; parameters are given up front.

    Args:
        params: the parameters to run with.
        experiment_id: defaults to ``standalone``.
        trial_id: defaults to ``standalone``.
        stream: where to print (default stdout).
    """

    def __init__(
        self,
        params: Mapping[str, Any],
        *,
        experiment_id: str = "standalone",
        trial_id: str = "standalone",
        stream: TextIO | None = None,
    ) -> None:
        self._params = dict(params)
        self._experiment_id = experiment_id
        self._trial_id = trial_id
        self._stream = stream
        self.intermediate: list[dict[str, float]] = []
        self.final: dict[str, float] | None = None

    @property
    def experiment_id(self) -> str:
        return self._experiment_id

    @property
    def trial_id(self) -> str:
        return self._trial_id

    def get_parameters(self) -> dict[str, Any]:
        return dict(self._params)

    def _print(self, text: str) -> None:
        stream = self._stream or sys.stdout
        print(text, file=stream, flush=True)

    def report_intermediate(self, metrics: Mapping[str, float]) -> None:
        self.intermediate.append(dict(metrics))
        self._print(f"intermediate result {len(self.intermediate)}: {json.dumps(dict(metrics))}")

    def report_final(self, metrics: Mapping[str, float]) -> None:
        self.final = dict(metrics)
        self._print(f"final result: {json.dumps(dict(metrics))}")
