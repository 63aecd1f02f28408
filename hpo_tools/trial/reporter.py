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
import time
from collections.abc import Mapping
from typing import Any, Callable, TextIO

from hpo_tools.errors import HpoError

__all__ = [
    "DEFAULT_REPORT_TIMEOUT",
    "DEFAULT_RECORD_WAIT",
    "Reporter",
    "NniReporter",
    "ConsoleReporter",
    "ReporterChannelLost",
    "recorded_parameter_set",
    "under_nni",
]

_logger = logging.getLogger(__name__)

#: Seconds one report to NNI may take before the channel counts as lost. NNI's manager answers
#: a report on localhost in milliseconds; the runner must still cancel within NNI's 5 s grace.
DEFAULT_REPORT_TIMEOUT = 2.0

#: Seconds a trial waits for NNI to store its record (NNI stores it right after starting the
#: trial's process, so it is there by the time the trial asks, but for a loaded machine).
DEFAULT_RECORD_WAIT = 10.0


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

    def interrupt(self) -> None:
        """From a signal handler: a report waiting on its answer gives up at once (the trial is
        being cancelled). Signal-safe: sets a flag only."""


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
        self.interrupted = False  # set from a signal handler: no lock

    #: Seconds between two looks at :attr:`interrupted` while a call is waited for.
    TICK = 0.05

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
        deadline = time.monotonic() + self.timeout
        while not item.done.wait(min(self.TICK, max(0.0, deadline - time.monotonic()))):
            if self.interrupted:  # the trial is being cancelled: no reason to wait on
                self._stuck = f"{what} abandoned: the trial was cancelled"
                raise ReporterChannelLost(f"NNI channel not waited for: {self._stuck}")
            if time.monotonic() >= deadline:
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

    Under NNI 3.0's local training service the trial runs the parameter set NNI *recorded* for
    it (read from NNI's REST API), which is not always the one NNI handed it (see
    :meth:`_recorded_set`).

    Args:
        report_timeout: Seconds one report may take (default :data:`DEFAULT_REPORT_TIMEOUT`).
        record_wait: Seconds to wait for NNI's record of this trial (default
            :data:`DEFAULT_RECORD_WAIT`).
    """

    def __init__(self, report_timeout: float = DEFAULT_REPORT_TIMEOUT,
                 record_wait: float = DEFAULT_RECORD_WAIT) -> None:
        import nni  # only under NNI: about 1 s and most of the runner's memory

        self._nni = nni
        self._parameter_id: Any = None
        self._record_wait = record_wait
        #: The parameter id NNI handed out when it was not the one recorded for this trial.
        self.handed_parameter_id: Any = None
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
        trial_module = sys.modules.get("nni.trial")
        handed = getattr(trial_module, "_params", None)
        record = self._recorded_set(handed)
        if record is not handed and trial_module is not None:
            # Reports carry nni.trial._params["parameter_id"]: report under the adopted set.
            trial_module._params = record  # type: ignore[attr-defined]
        self._parameter_id = record.get("parameter_id") if isinstance(record, dict) else None
        return dict(record["parameters"]) if record is not handed else dict(params)

    def _recorded_set(self, handed: Any) -> Any:
        """The parameter set NNI recorded for this trial, if it differs from the one handed out.

        NNI 3.0's local training service hands parameter sets out first come, first served
        (API-NOTES §0.1, microsoft/nni#5726): with concurrent trials, a trial can be handed the
        set NNI recorded for another, and NNI's web UI, REST API and ``nnictl experiment
        export`` then show each score beside parameters its trial never ran. The trial runs
        the set NNI recorded for it instead, so every record agrees. Each set is still handed
        out (and run) exactly once: the recorded sets are the handed sets, in another order.
        """
        import os

        channel = os.environ.get("NNI_TRIAL_COMMAND_CHANNEL")
        if not channel or not isinstance(handed, dict):
            return handed  # not NNI 3.0's local channel: nothing to correct
        recorded = recorded_parameter_set(channel, self.trial_id, self._record_wait)
        if recorded is None:
            _logger.warning(
                "NNI's record of trial %s was not readable in %.0f s; running the parameters "
                "NNI handed out (its web UI may show other ones)", self.trial_id,
                self._record_wait)
            return handed
        if recorded.get("parameter_id") == handed.get("parameter_id"):
            return handed
        _logger.warning(
            "NNI handed this trial parameter set %s but recorded set %s for it "
            "(microsoft/nni#5726); running and reporting set %s, the one NNI shows",
            handed.get("parameter_id"), recorded.get("parameter_id"),
            recorded.get("parameter_id"))
        self.handed_parameter_id = handed.get("parameter_id")
        return recorded

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

    def interrupt(self) -> None:
        self._sender.interrupted = True


def recorded_parameter_set(channel_url: str, trial_id: str, wait: float) -> dict[str, Any] | None:
    """The last parameter set NNI's REST API records for ``trial_id`` (``{"parameter_id": ...,
    "parameters": {...}, ...}``), or None when it cannot be read within ``wait`` seconds."""
    import time

    from hpo_tools.errors import ConfigError
    from hpo_tools.nni_rest import NniRest, NniRestError

    try:
        rest = NniRest.from_trial_channel(channel_url, timeout=min(2.0, max(wait, 0.1)))
    except ConfigError as err:
        _logger.warning("%s", err)
        return None
    deadline = time.monotonic() + wait
    while True:
        try:
            texts = rest.get_trial_job(trial_id).get("hyperParameters") or []
        except NniRestError as err:  # not stored yet (NNI answers 500), or no answer
            _logger.debug("reading NNI's record of trial %s: %s", trial_id, err)
            texts = []
        sets = []
        for text in texts:
            try:
                value = json.loads(text) if isinstance(text, str) else text
            except ValueError:
                continue
            if isinstance(value, dict) and isinstance(value.get("parameters"), dict):
                sets.append(value)
        if sets:
            return max(sets, key=lambda s: s.get("parameter_index") or 0)
        if time.monotonic() >= deadline:
            return None
        time.sleep(0.2)


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
