"""The PAI-DLC platform: ``dlc submit ...`` commands as DLC jobs, through the official SDK.

- A command is a ``dlc submit <kind> --name=... --command=... --workers=... ...`` line (the DLC
  command-line tool's form, as hpo_tools 0.1.x ran it), parsed and checked by
  :mod:`hpo_tools.platforms.dlc_command` when the trial file is read and sent as one
  ``CreateJob`` (``alibabacloud-pai-dlc20201203``). The job's display name is ``--name`` plus
  ``-hpo-`` and 8 hex digits, unique per submission, so that a job whose ``CreateJob`` answer
  never came can be found by name (``ListJobs``) and stopped.
- :meth:`DlcPlatform.submit` runs ``CreateJob`` in a thread and waits for it in 50 ms slices:
  :meth:`DlcPlatform.interrupt` (the runner's SIGINT/SIGTERM handler) makes it return at once
  with the job still being created, which the runner then cancels (the job, if DLC creates it,
  is stopped). A ``CreateJob`` that fails without an answer (a timeout, a server error) is
  abandoned: the job is looked for by name and stopped, and ``submit`` raises.
- Each job follows itself in a daemon thread of its own (every ``poll_interval`` seconds one
  ``GetJob`` and one ``GetPodLogs`` per pod; the last logs are fetched before the final state is
  published); :meth:`DlcJob.poll` and :meth:`DlcJob.wait` only read
  what that thread published, so no call waits on the network. Pod log lines go to the trial
  log through the runner's masker, and into ``dlc-logs/cmdN[.<pod type>].log`` for the
  ``stdout`` metric sources ``cmdN`` / ``cmdN,<pod type>`` (:mod:`.dlc_logs`).
- :meth:`DlcJob.cancel` calls ``StopJob`` (bounded, 2.5 s); :meth:`DlcPlatform.cancel_described`
  does it from a registry record in another process (the assessor, ``hpo-tools kill``).
- Credentials: ``[dlc_config] access_id / access_key`` as the runner resolved them (``${ENV}``),
  else ``[oss_config]``'s, else the environment (``ALIBABA_CLOUD_ACCESS_KEY_ID`` /
  ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, then ``DLC_ACCESS_ID`` / ``DLC_ACCESS_KEY``). Only the
  names of the env vars holding them are in settings and job descriptions.

The SDK is imported only inside :func:`_dlc_client` and the request builders: importing this
module costs nothing, and only trials that run on DLC pay the SDK's import (about 0.4 s).
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import secrets
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from hpo_tools.errors import ConfigError, PlatformError
from hpo_tools.platforms.base import (
    COMMAND_ENV,
    Job,
    JobState,
    OutputFilter,
    Platform,
    TrialFileView,
    UpdateCallback,
)
from hpo_tools.platforms.dlc_command import (
    DlcCommand,
    create_job_request,
    join_lines,
    parse_dlc_command,
)
from hpo_tools.platforms.dlc_logs import (
    JobLogSource,
    PodLogTracker,
    parse_job_log_location,
    pod_matches,
)

__all__ = [
    "DEFAULT_CREDENTIAL_ENV",
    "DlcJob",
    "DlcPlatform",
    "DlcSettings",
    "job_state",
]

_logger = logging.getLogger(__name__)

#: Env var pairs (access key id, secret) tried in order when no credentials are given.
DEFAULT_CREDENTIAL_ENV: Tuple[Tuple[str, str], ...] = (
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
    ("DLC_ACCESS_ID", "DLC_ACCESS_KEY"),
)
# DLC job status -> our state. The *Reserving states keep the nodes after the outcome is known.
_STATES: Dict[str, JobState] = {
    "creating": JobState.PENDING,
    "queuing": JobState.PENDING,
    "bidding": JobState.PENDING,
    "envpreparing": JobState.PENDING,
    "sanitychecking": JobState.PENDING,
    "running": JobState.RUNNING,
    "restarting": JobState.RUNNING,
    "stopping": JobState.RUNNING,
    "succeededreserving": JobState.SUCCEEDED,
    "succeeded": JobState.SUCCEEDED,
    "failedreserving": JobState.FAILED,
    "failed": JobState.FAILED,
    "stopped": JobState.CANCELLED,
}
_CANCEL_TIMEOUT = 2.5
_SUBMIT_TICK = 0.05  # how soon a waiting submit notices interrupt()
_MAX_POLL_ERRORS = 20
_MIN_POLL_PAUSE = 0.01
#: Seconds after a submit during which a job whose CreateJob never answered may still appear.
SEARCH_WINDOW = 600.0
_LOG_MAX_LINES = 5000  # GetPodLogs MaxLines per call (the service's default is 2000)
_PENDING_PREFIX = "dlc-pending:"


def job_state(status: Optional[str]) -> JobState:
    """Our state of a DLC job status (``Queuing`` -> PENDING); unknown ones are RUNNING."""
    return _STATES.get(str(status or "").strip().lower(), JobState.RUNNING)


# ---------------------------------------------------------------------------------------------
# Settings, credentials and the client


def _credential_env(value: Any) -> Optional[Tuple[str, str]]:
    if value in (None, "", [], ()):
        return None
    pair = tuple(p.strip() for p in value.split(",")) if isinstance(value, str) else tuple(value)
    if len(pair) != 2 or not all(isinstance(p, str) and p for p in pair):
        raise ConfigError(
            f"platform DLC: credential_env={value!r} must name two env vars (access key id, "
            "secret), e.g. ALIBABA_CLOUD_ACCESS_KEY_ID,ALIBABA_CLOUD_ACCESS_KEY_SECRET"
        )
    return (str(pair[0]), str(pair[1]))


def _env_names_holding(access_id: str, access_key: str) -> Optional[Tuple[str, str]]:
    """The env var names whose values are these credentials (defaults preferred), if any."""
    id_names = sorted(k for k, v in os.environ.items() if v == access_id)
    key_names = sorted(k for k, v in os.environ.items() if v == access_key)
    for id_name, key_name in DEFAULT_CREDENTIAL_ENV:
        if id_name in id_names and key_name in key_names:
            return (id_name, key_name)
    if id_names and key_names:
        return (id_names[0], key_names[0])
    return None


@dataclasses.dataclass
class DlcSettings:
    """Where and as whom jobs are created. ``repr`` never shows the credentials.

    Attributes:
        region: The region (``cn-shanghai``); may be empty when ``endpoint`` is given.
        endpoint: The service address (``pai-dlc.cn-shanghai.aliyuncs.com``).
        protocol: ``https`` or ``http``.
        credential_env: Names of the env vars holding the access key id and secret.
        access_id: The access key id when given explicitly (never stored or logged).
        access_key: The access key secret when given explicitly (never stored or logged).
    """

    region: str
    endpoint: str
    protocol: str = "https"
    credential_env: Optional[Tuple[str, str]] = None
    access_id: Optional[str] = dataclasses.field(default=None, repr=False)
    access_key: Optional[str] = dataclasses.field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"DlcSettings(region={self.region!r}, endpoint={self.endpoint!r}, "
            f"protocol={self.protocol!r}, credential_env={self.credential_env!r}, "
            f"access_id={'***' if self.access_id else None}, "
            f"access_key={'***' if self.access_key else None})"
        )

    def credentials(self) -> Tuple[str, str]:
        """(access key id, secret): as given, else from the environment.

        Raises:
            PlatformError: nothing given and no env var pair set (names them).
        """
        if self.access_id and self.access_key:
            return self.access_id, self.access_key
        pairs = [self.credential_env] if self.credential_env else []
        pairs += [p for p in DEFAULT_CREDENTIAL_ENV if p not in pairs]
        for id_name, key_name in pairs:
            access_id, access_key = os.environ.get(id_name), os.environ.get(key_name)
            if access_id and access_key:
                return access_id, access_key
        names = " or ".join(f"{a} and {b}" for a, b in pairs)
        raise PlatformError(f"platform DLC: no credentials: set [dlc_config] access_id and "
                            f"access_key, or {names} in the environment")


def _real_dlc_client(**config: Any) -> Any:
    from alibabacloud_pai_dlc20201203.client import Client  # heavy: only when DLC is used
    from alibabacloud_tea_openapi import models as open_api_models

    return Client(open_api_models.Config(**config))


def _dlc_client(**config: Any) -> Any:
    """The SDK's DLC ``Client`` built from ``Config`` keywords (``access_key_id``,
    ``access_key_secret``, ``region_id``, ``endpoint``, ``protocol``, ``read_timeout``,
    ``connect_timeout``): the one place a DLC client is built, through :func:`hpo_tools.cloud.build`
    (its fake under ``HPO_TOOLS_FAKE_CLOUD``). Building it contacts nothing."""
    from hpo_tools import cloud

    return cloud.build("dlc", _real_dlc_client, **config)


def _first_line(err: BaseException) -> str:
    """One line about ``err``: an SDK error's code and message (``InvalidParameter: code: 400,
    ... request id: ...``), else its first line."""
    code, message = getattr(err, "code", None), getattr(err, "message", None)
    text = f"{code}: {message}" if code and message else str(err).strip()
    return text.splitlines()[0] if text.strip() else type(err).__name__


def _refused(err: BaseException) -> bool:
    """Whether DLC answered a call with a client error (4xx): nothing was created."""
    status = getattr(err, "status_code", None) or getattr(err, "statusCode", None)
    try:
        return 400 <= int(status) < 500
    except (TypeError, ValueError):
        return False


def _bounded(name: str, call: Callable[[], Any], timeout: float) -> Tuple[bool, Any]:
    """Run ``call`` in a daemon thread for at most ``timeout`` s: ``(returned, result or error)``.

    A call still running when the time is up goes on in its thread, unobserved.
    """
    outcome: List[Any] = []

    def run() -> None:
        try:
            outcome.append((True, call()))
        except Exception as err:  # handed to the caller
            outcome.append((False, err))

    thread = threading.Thread(target=run, name=name, daemon=True)
    thread.start()
    thread.join(max(0.0, timeout))
    if not outcome:
        return False, TimeoutError(f"{name} did not return in {timeout:.1f} s")
    ok, value = outcome[0]
    return ok, value


# ---------------------------------------------------------------------------------------------
# CreateJob in a thread of its own


class _Creation:
    """One ``CreateJob`` call in a thread: its outcome, and what becomes of a job it creates
    after everyone stopped waiting (:meth:`abandon`): it is stopped at once."""

    def __init__(self, platform: DlcPlatform, request: Any, display_name: str,
                 workspace_id: str) -> None:
        self.platform = platform
        self.request = request
        self.display_name = display_name
        self.workspace_id = workspace_id
        self.done = threading.Event()
        self.started = True  # False: never sent (the trial was cancelled first)
        self.job_id: Optional[str] = None
        self.error: Optional[BaseException] = None
        self._abandoned = False
        self._on_late_job: Optional[Callable[[str], None]] = None
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._run, name=f"dlc-create-{self.display_name}",
                         daemon=True).start()

    def _run(self) -> None:
        try:
            response = self.platform.client().create_job(self.request)
            job_id = str(response.body.job_id)
        except Exception as err:  # handed to whoever waits (submit, or the job's thread)
            with self._lock:
                self.error = err
                self.done.set()
            return
        with self._lock:
            self.job_id = job_id
            abandoned, late = self._abandoned, self._on_late_job
            self.done.set()
        if abandoned:
            _logger.warning("DLC created job %s (%s) after it was given up on; stopping it",
                            job_id, self.display_name)
            self.platform.stop_job(job_id)
            if late is not None:
                late(job_id)

    def abandon(self, on_late_job: Optional[Callable[[str], None]] = None) -> bool:
        """From now on a job this call creates is stopped (then ``on_late_job(job_id)``).

        Returns:
            False when the call had already returned (nothing to abandon).
        """
        with self._lock:
            if self.done.is_set():
                return False
            self._abandoned = True
            self._on_late_job = on_late_job
            return True


# ---------------------------------------------------------------------------------------------
# Jobs


class DlcJob(Job):
    """One DLC job, followed by a daemon thread of its own (see the module docstring).

    ``job_id`` is DLC's job id; a job handed back before ``CreateJob`` answered (the runner got
    a signal meanwhile) keeps ``dlc-pending:<display name>`` as its id, and ``dlc_job_id`` (its
    description's ``cloud_id``, as on the other cloud-job platforms) is DLC's id once known.

    Attributes:
        display_name: The job's unique name on DLC.
        dlc_job_id: DLC's id (None while ``CreateJob`` has not answered).
        pods: Pod id -> pod type, as ``GetJob`` listed them.
    """

    def __init__(
        self,
        creation: _Creation,
        command: DlcCommand,
        *,
        platform: DlcPlatform,
        log_path: Path,
        command_name: str,
        on_update: Optional[UpdateCallback],
        output_filter: Optional[OutputFilter],
        sinks: List[Tuple[str, Path]],
    ) -> None:
        super().__init__(creation.job_id or _PENDING_PREFIX + creation.display_name, log_path)
        self.display_name = creation.display_name
        self.workspace_id = command.workspace_id
        self.command_name = command_name
        self.dlc_job_id: Optional[str] = creation.job_id
        self.pods: Dict[str, str] = {}
        self.submitted_at = time.time()
        self._creation = creation
        self._platform = platform
        self._on_update = on_update
        self._output_filter = output_filter
        self._sinks = sinks  # (pod filter, file) for the job-log metric sources
        self._tracker = PodLogTracker()
        self._state = JobState.PENDING
        self._status = "Creating"
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop_following = threading.Event()
        self._poll_errors = 0
        self._log_errors: set = set()

    # -- output ------------------------------------------------------------------------------

    def _filtered(self, text: str) -> str:
        if self._output_filter is None:
            return text
        try:
            return self._output_filter(text)
        except Exception:
            _logger.exception("output filter failed; a line was dropped")
            return ""

    def write_log(self, line: str) -> None:
        """Append one status line to the trial log (through the output filter)."""
        self._append(self.log_path, [line])

    def _append(self, path: Path, lines: List[str]) -> None:
        text = "".join(self._filtered(line.rstrip("\n") + "\n") for line in lines)
        if not text:
            return
        try:
            with open(path, "a", encoding="utf-8") as handle:
                handle.write(text)
        except OSError as err:
            _logger.warning("cannot write to %s: %s", path, err)

    def _notify(self) -> None:
        if self._on_update is not None:
            try:
                self._on_update(self)
            except Exception:  # the runner logs its own failures; never break the follower
                _logger.exception("on_update failed for DLC job %s", self.job_id)

    # -- the follower thread (every network call but cancel's StopJob) ------------------------

    def _start_following(self) -> None:
        threading.Thread(target=self._follow, name=f"dlc-follow-{self.display_name}",
                         daemon=True).start()

    def _follow(self) -> None:
        try:
            if not self._await_creation():
                return
            # A poll_interval of 0 (tests) must not spin a core: checks are 10 ms apart at least.
            pause = max(self._platform.poll_interval, _MIN_POLL_PAUSE)
            while not self._stop_following.is_set():
                if self._check().is_finished:
                    return
                self._stop_following.wait(pause)
        except Exception as err:  # a bug here must not leave wait() waiting for ever
            _logger.exception("following DLC job %s failed", self.job_id)
            self._finish(JobState.FAILED, f"following DLC job {self.job_id} failed: {err}")

    def _await_creation(self) -> bool:
        """Wait for ``CreateJob`` (a job handed back before it answered); False to stop."""
        creation = self._creation
        while not creation.done.wait(_SUBMIT_TICK):
            if self._stop_following.is_set():
                return False
        if creation.error is not None:
            if self.poll().is_finished:  # cancelled meanwhile: cancel() said what it found
                return False
            found = [] if _refused(creation.error) else self._platform.find_and_stop(
                self.display_name, self.workspace_id, 2 * _CANCEL_TIMEOUT)
            anyway = f" (DLC had created it anyway as {found[0]}: stopped)" if found else ""
            self._finish(JobState.FAILED, f"CreateJob of {self.display_name} failed: "
                         f"{_first_line(creation.error)}{anyway}")
            return False
        self._created(str(creation.job_id))
        return not self.poll().is_finished

    def _created(self, dlc_job_id: str) -> None:
        with self._lock:
            known = self.dlc_job_id == dlc_job_id
            self.dlc_job_id = dlc_job_id
        if not known:
            self.write_log(f"[dlc] job {self.display_name} is DLC job {dlc_job_id}")
            self._notify()

    def _check(self) -> JobState:
        """One ``GetJob`` and the pods' ``GetPodLogs``; publish the result."""
        assert self.dlc_job_id is not None
        try:
            body = self._platform.get_job(self.dlc_job_id)
            status = str(body.status or "")
            state = job_state(status)
            self._record_pods(body.pods or [])
            if not state.is_finished:
                self._publish(state, status)
            self._relay_logs()  # every line is in the log before the end is published
        except Exception as err:  # network trouble: keep going, give up after many in a row
            self._poll_errors += 1
            _logger.warning("checking DLC job %s failed (%d in a row): %s",
                            self.job_id, self._poll_errors, _first_line(err))
            if self._poll_errors < _MAX_POLL_ERRORS:
                return self.poll()
            return self._finish(JobState.FAILED, f"status unknown after {self._poll_errors} "
                                f"failed checks: {_first_line(err)}")
        self._poll_errors = 0
        if state.is_finished:
            return self._finish(state, self._end_message(state, status, body))
        return self.poll()

    def _publish(self, state: JobState, status: str) -> None:
        """A live state; a new DLC status is logged and saved in the registry."""
        with self._lock:
            if self._state.is_finished:  # cancelled meanwhile
                return
            changed = status != self._status
            self._status = status
            self._state = state
            if changed:
                self._changed.notify_all()
        if changed:
            _logger.info("DLC job %s %s", self.job_id, status)
            self.write_log(f"[dlc] job {self.dlc_job_id} {status}")
            self._notify()

    def _record_pods(self, pods: List[Any]) -> None:
        for pod in pods:
            pod_id = str(getattr(pod, "pod_id", "") or "")
            if pod_id and pod_id not in self.pods:
                self.pods[pod_id] = str(getattr(pod, "type", "") or "")

    def _relay_logs(self) -> None:
        """New lines of every pod: to the trial log, and to the job-log metric files."""
        for pod_id, pod_type in list(self.pods.items()):
            try:
                lines = self._platform.pod_logs(str(self.dlc_job_id), pod_id)
            except Exception as err:  # a pod not started yet has no log: try again later
                if pod_id not in self._log_errors:
                    self._log_errors.add(pod_id)
                    _logger.info("no log of pod %s yet: %s", pod_id, _first_line(err))
                continue
            new, gap = self._tracker.new_lines(pod_id, lines)
            if not new:
                continue
            header = f"[dlc] --- pod {pod_id} ({pod_type or 'pod'}) ---"
            if gap:
                header += " (lines missing before these: the log grew past the fetch limit)"
            self._append(self.log_path, [header, *new])
            for pod_filter, path in self._sinks:
                if pod_matches(pod_filter, pod_type, pod_id):
                    self._append(path, new)

    def _end_message(self, state: JobState, status: str, body: Any) -> str:
        if state is JobState.SUCCEEDED:
            return ""
        reason = " ".join(str(part) for part in (getattr(body, "reason_code", None),
                                                 getattr(body, "reason_message", None)) if part)
        what = "stopped (not by hpo-tools)" if state is JobState.CANCELLED else status
        return f"DLC job {self.dlc_job_id} {what}" + (f": {reason}" if reason else "")

    def _finish(self, state: JobState, message: str) -> JobState:
        message = self._filtered(message)  # an SDK error can quote the key it refused
        if self.poll().is_finished:
            return self.poll()
        _logger.info("DLC job %s %s %s", self.job_id, state.value, message)
        self.write_log(f"[dlc] job {self.dlc_job_id or self.display_name} {state.value}"
                       + (f": {message}" if message else ""))
        with self._lock:
            if self._state.is_finished:
                return self._state
            self._state = state
            self.message = message
            self._changed.notify_all()
        self._notify()
        return state

    # -- what callers use: no network but cancel's bounded StopJob -------------------------

    def poll(self) -> JobState:
        """The state the follower thread last published (never a network call)."""
        with self._lock:
            return self._state

    def wait(self, timeout: Optional[float] = None) -> JobState:
        """Block until the job finishes or ``timeout`` s pass; :meth:`cancel` wakes it."""
        deadline = None if timeout is None else time.monotonic() + timeout
        with self._changed:
            while not self._state.is_finished:
                if deadline is None:
                    self._changed.wait()
                    continue
                left = deadline - time.monotonic()
                if left <= 0:
                    break
                self._changed.wait(left)
            return self._state

    def cancel(self) -> None:
        """``StopJob`` (at most 2.5 s); idempotent.

        A job whose ``CreateJob`` has not answered is looked for by name and stopped; when it
        is not found the job stays PENDING in the registry, so the next sweep (the assessor's
        ``trial_end``, ``hpo-tools kill``) looks again (:meth:`DlcPlatform.cancel_described`),
        and a job the call creates later, while this process lives, is stopped at once.
        """
        deadline = time.monotonic() + _CANCEL_TIMEOUT
        with self._lock:
            if self._state.is_finished:
                return
            dlc_job_id = self.dlc_job_id
        self._stop_following.set()
        creation = self._creation
        if dlc_job_id is None and not creation.abandon(self._stopped_late):
            dlc_job_id = creation.job_id  # CreateJob answered just now
            if dlc_job_id is None and creation.error is not None and _refused(creation.error):
                self._finish(JobState.CANCELLED, "cancelled; DLC had refused the job")
                return
        if dlc_job_id is None:  # no answer (yet): look for the job by its name
            found = self._platform.find_and_stop(
                self.display_name, self.workspace_id, deadline - time.monotonic())
            if not found:
                message = ("cancel asked before CreateJob answered; no job named "
                           f"{self.display_name} found yet (looked for again by the next cancel)")
                with self._lock:
                    self.message = message
                self.write_log(f"[dlc] {message}")
                self._notify()
                return
            dlc_job_id = found[0]
        else:
            self._platform.stop_job(dlc_job_id, max(0.1, deadline - time.monotonic()))
        with self._lock:
            self.dlc_job_id = dlc_job_id
        self._finish(JobState.CANCELLED, "cancelled")

    def _stopped_late(self, dlc_job_id: str) -> None:
        """A job ``CreateJob`` created after the cancel was stopped (by the creation thread)."""
        with self._lock:
            self.dlc_job_id = dlc_job_id
        self._finish(JobState.CANCELLED, "cancelled (stopped as soon as DLC created it)")

    def close(self) -> None:
        """Stop following the job (it keeps running); :meth:`poll` keeps the last state."""
        self._stop_following.set()

    def describe(self) -> Dict[str, Any]:
        """Platform, settings (no credentials), ids, display name, workspace, submit time."""
        with self._lock:
            dlc_job_id = self.dlc_job_id
        return {
            "platform": DlcPlatform.name,
            "settings": self._platform.settings(),
            "job_id": self.job_id,
            "cloud_id": dlc_job_id,
            "display_name": self.display_name,
            "workspace_id": self.workspace_id,
            "command": self.command_name,
            "submitted_at": self.submitted_at,
            "created": None if self._creation.started else False,
        }


# ---------------------------------------------------------------------------------------------
# The platform


def _seconds(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"platform DLC: {name}={value!r} is not a number of seconds")
    return number


class DlcPlatform(Platform):
    """Runs ``dlc submit ...`` commands as PAI-DLC jobs through ``alibabacloud-pai-dlc20201203``.

    Args:
        region: The region (``[dlc_config] region``, ``cn-shanghai``).
        endpoint: The service address (``[dlc_config] end_point``); default
            ``pai-dlc.<region>.aliyuncs.com``.
        protocol: ``https`` (default) or ``http`` (``[dlc_config] protocol``).
        access_id: Access key id (the runner resolves ``${ENV}``); default: the environment.
        access_key: Access key secret.
        credential_env: Names of the two env vars the credentials come from, stored instead of
            the credentials so another process can rebuild them. Default: the variables found
            holding the given values, else ``ALIBABA_CLOUD_ACCESS_KEY_ID`` /
            ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, then ``DLC_ACCESS_ID`` / ``DLC_ACCESS_KEY``.
        poll_interval: Seconds between two checks of a job (``GetJob``, ``GetPodLogs``).
        call_timeout: Seconds any SDK call may take (its read timeout).
        client_factory: Builds the client from ``Config`` keywords (default: the SDK's
            ``Client``; tests pass ``FakeDlcClient(...).connect``).

    Raises:
        ConfigError: neither region nor endpoint, or a malformed setting.
    """

    name = "dlc"
    trial_file_sections = ("dlc_config",)
    # `stdout` sources named cmdN / cmdN,<pod type> read a job's own pod logs (the others are
    # the ordinary stdout source of a file).
    metric_source_types = ("stdout",)
    trial_file_hint = "[dlc_config] region (or end_point)"

    @classmethod
    def options_from_trial_file(cls, trial_file: TrialFileView) -> Dict[str, Any]:
        """``[dlc_config] access_id, access_key, end_point, region, protocol, poll_interval``;
        the credentials default to ``[oss_config]``'s, then to the environment."""
        section = trial_file.section("dlc_config")
        if section is None:
            raise ConfigError(
                f"{trial_file.source}: [dlc_config] is required for the DLC platform "
                "(region or end_point; access_id / access_key or the environment's keys)",
                source=trial_file.source, section="dlc_config",
            )
        section.check_keys(("access_id", "access_key", "end_point", "region", "protocol",
                            "poll_interval"))
        region, endpoint = section.get("region") or "", section.get("end_point") or ""
        if not region and not endpoint:
            raise section.error("region", "is required (e.g. cn-shanghai), or end_point")
        protocol = (section.get("protocol") or "https").strip().lower()
        if protocol not in ("http", "https"):
            raise section.error("protocol", f"expected http or https, got {protocol!r}")
        access_id, access_key = section.get("access_id"), section.get("access_key")
        oss = trial_file.section("oss_config")
        if oss is not None:
            access_id = access_id or oss.get("accessKeyID")
            access_key = access_key or oss.get("accessKeySecret")
        options: Dict[str, Any] = {"region": region, "endpoint": endpoint, "protocol": protocol,
                                   "access_id": access_id, "access_key": access_key}
        if section.get("poll_interval"):
            try:
                options["poll_interval"] = _seconds("poll_interval", section.get("poll_interval"))
            except ConfigError:
                raise section.error("poll_interval", "expected seconds (a number >= 0)") from None
        return options

    @classmethod
    def shape_command(cls, text: str) -> str:
        """The command on one line (:func:`~hpo_tools.platforms.dlc_command.join_lines`); a
        malformed ``dlc submit`` line is a ConfigError now, not when its turn comes."""
        parse_dlc_command(text)
        return join_lines(text)

    def __init__(
        self,
        *,
        region: str = "",
        endpoint: str = "",
        protocol: str = "https",
        access_id: Optional[str] = None,
        access_key: Optional[str] = None,
        credential_env: Any = None,
        poll_interval: Any = 10.0,
        call_timeout: Any = 30.0,
        client_factory: Optional[Callable[..., Any]] = None,
    ) -> None:
        region, endpoint = str(region or "").strip(), str(endpoint or "").strip()
        if not region and not endpoint:
            raise ConfigError("platform DLC: region is missing ([dlc_config] region, or "
                              "end_point)")
        if not endpoint:
            endpoint = f"pai-dlc.{region}.aliyuncs.com"
        protocol = str(protocol or "https").strip().lower()
        if protocol not in ("http", "https"):
            raise ConfigError(f"platform DLC: protocol={protocol!r}: expected http or https")
        env_names = _credential_env(credential_env)
        if env_names is None and access_id and access_key:
            env_names = _env_names_holding(access_id, access_key)
        self._settings = DlcSettings(region=region, endpoint=endpoint, protocol=protocol,
                                     credential_env=env_names, access_id=access_id or None,
                                     access_key=access_key or None)
        self.poll_interval = _seconds("poll_interval", poll_interval)
        self.call_timeout = _seconds("call_timeout", call_timeout)
        self._factory = client_factory or _dlc_client
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._interrupted = False  # set by interrupt(), from a signal handler: no lock
        self._closed = False
        self._jobs: List[DlcJob] = []
        self._log_sources: List[JobLogSource] = []
        self._lock = threading.Lock()

    def __repr__(self) -> str:
        return f"DlcPlatform({self._settings!r})"

    def settings(self) -> Dict[str, Any]:
        """Region, endpoint, protocol, env var names of the credentials, intervals."""
        names = self._settings.credential_env or DEFAULT_CREDENTIAL_ENV[0]
        return {
            "region": self._settings.region,
            "endpoint": self._settings.endpoint,
            "protocol": self._settings.protocol,
            "credential_env": list(names),
            "poll_interval": self.poll_interval,
            "call_timeout": self.call_timeout,
        }

    # -- SDK calls ---------------------------------------------------------------------------

    def client(self) -> Any:
        """The SDK client, built on first use (building it contacts nothing)."""
        with self._client_lock:
            if self._client is None:
                access_id, access_key = self._settings.credentials()
                timeout_ms = max(1, int(self.call_timeout * 1000))
                self._client = self._factory(
                    access_key_id=access_id, access_key_secret=access_key,
                    region_id=self._settings.region or None, endpoint=self._settings.endpoint,
                    protocol=self._settings.protocol, read_timeout=timeout_ms,
                    connect_timeout=min(timeout_ms, 10_000),
                )
            return self._client

    def get_job(self, dlc_job_id: str) -> Any:
        """``GetJob``: the response body (``status``, ``pods``, ``reason_message``, ...)."""
        from alibabacloud_pai_dlc20201203 import models

        return self.client().get_job(dlc_job_id, models.GetJobRequest()).body

    def pod_logs(self, dlc_job_id: str, pod_id: str) -> List[str]:
        """``GetPodLogs``: the pod's log lines (at most :data:`_LOG_MAX_LINES`)."""
        from alibabacloud_pai_dlc20201203 import models

        response = self.client().get_pod_logs(
            dlc_job_id, pod_id, models.GetPodLogsRequest(max_lines=_LOG_MAX_LINES))
        return [str(line) for line in (response.body.logs or [])]

    def stop_job(self, dlc_job_id: str, timeout: float = _CANCEL_TIMEOUT) -> bool:
        """``StopJob`` in a thread, for at most ``timeout`` s; whether it returned without error.

        Never raises: a job that already ended refuses to stop, which is fine.
        """
        ok, value = _bounded(f"dlc-stop-{dlc_job_id}",
                             lambda: self.client().stop_job(dlc_job_id), timeout)
        if ok:
            _logger.info("stopped DLC job %s", dlc_job_id)
        else:
            _logger.warning("StopJob %s: %s", dlc_job_id, _first_line(value))
        return bool(ok)

    def jobs_named(self, display_name: str, workspace_id: str) -> List[Tuple[str, str]]:
        """``ListJobs``: ``(job id, status)`` of the workspace's jobs named ``display_name``."""
        from alibabacloud_pai_dlc20201203 import models

        request = models.ListJobsRequest(display_name=display_name,
                                         workspace_id=workspace_id or None, page_size=50)
        jobs = self.client().list_jobs(request).body.jobs or []
        return [(str(job.job_id), str(job.status or "")) for job in jobs
                if str(job.display_name or "") == display_name]

    def find_and_stop(self, display_name: str, workspace_id: str, timeout: float) -> List[str]:
        """Look for the jobs named ``display_name`` and stop those still live, within about
        ``timeout`` s; their ids (empty when none was found or the search did not answer)."""
        deadline = time.monotonic() + max(0.0, timeout)
        ok, found = _bounded(f"dlc-find-{display_name}",
                             lambda: self.jobs_named(display_name, workspace_id),
                             max(0.0, timeout))
        if not ok:
            _logger.warning("looking for DLC job %s: %s", display_name, _first_line(found))
            return []
        for job_id, status in found:
            if not job_state(status).is_finished:
                self.stop_job(job_id, max(0.1, deadline - time.monotonic()))
        return [job_id for job_id, _ in found]

    # -- jobs --------------------------------------------------------------------------------

    def submit(
        self,
        command: str,
        *,
        log_path: Path,
        env: Optional[Mapping[str, str]] = None,
        on_update: Optional[UpdateCallback] = None,
        output_filter: Optional[OutputFilter] = None,
    ) -> DlcJob:
        """Create the job of ``command`` (a ``dlc submit`` line) and start following it.

        Waits for ``CreateJob`` in 50 ms slices; after :meth:`interrupt` it returns at once
        with the job still being created (PENDING, id ``dlc-pending:<name>``).

        Raises:
            ConfigError: a malformed command.
            PlatformError: DLC refused the job, no credentials, or ``CreateJob`` failed
                without an answer (the job, if created anyway, was looked for and stopped).
        """
        parsed = parse_dlc_command(command)
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        command_name = str((env or {}).get(COMMAND_ENV, ""))
        display_name = f"{parsed.name}-hpo-{secrets.token_hex(4)}"
        request = create_job_request(parsed, display_name=display_name, envs=env)
        self.client()  # no credentials: an error now, on this thread
        _logger.info("submitting DLC %s %s (%d pods) to workspace %s", parsed.job_type,
                     display_name, parsed.pods, parsed.workspace_id)
        creation = _Creation(self, request, display_name, parsed.workspace_id)
        if self._interrupted or self._closed:  # a signal came first: create nothing
            return self._not_created(creation, parsed, log_path, command_name, on_update)
        creation.start()
        while not creation.done.wait(_SUBMIT_TICK):
            if self._interrupted or self._closed:
                break  # the runner cancels the job next: hand it back unconfirmed
        if creation.done.is_set() and creation.error is not None:
            self._creation_failed(creation, parsed)
        job = DlcJob(creation, parsed, platform=self, log_path=log_path,
                     command_name=command_name, on_update=on_update,
                     output_filter=output_filter, sinks=self._bind_log_sources(command_name,
                                                                              log_path))
        job.write_log(f"[dlc] submitted {parsed.job_type} {display_name}"
                      + (f" as DLC job {job.dlc_job_id}" if job.dlc_job_id else
                         " (CreateJob has not answered yet)"))
        with self._lock:
            self._jobs.append(job)
        job._start_following()
        return job

    def _not_created(self, creation: _Creation, parsed: DlcCommand, log_path: Path,
                     command_name: str, on_update: Optional[UpdateCallback]) -> DlcJob:
        """The job of a submit that came after :meth:`interrupt`: CANCELLED, never sent."""
        creation.started = False
        creation.done.set()
        job = DlcJob(creation, parsed, platform=self, log_path=log_path,
                     command_name=command_name, on_update=on_update, output_filter=None,
                     sinks=[])
        job._finish(JobState.CANCELLED, "not created: the trial was being cancelled")
        return job

    def _creation_failed(self, creation: _Creation, parsed: DlcCommand) -> None:
        """Raise for a failed ``CreateJob``; one that failed without an answer may have created
        the job all the same: it is looked for by name and stopped first."""
        err = creation.error
        assert err is not None
        where = f"platform DLC: CreateJob of {creation.display_name} (workspace " \
                f"{parsed.workspace_id})"
        if _refused(err):
            raise PlatformError(f"{where} was refused: {_first_line(err)}") from err
        found = self.find_and_stop(creation.display_name, parsed.workspace_id, 2 * _CANCEL_TIMEOUT)
        after = (f"DLC had created it anyway as {', '.join(found)}, stopped" if found
                 else "no job of that name was found")
        raise PlatformError(f"{where} failed without an answer ({_first_line(err)}); "
                            f"{after}") from err

    def cancel_described(self, description: Mapping[str, Any]) -> bool:
        """Stop the described job if it still runs; a job whose ``CreateJob`` never answered is
        looked for by name (and stopped when live).

        Raises:
            PlatformError: such a job was not found yet while ``CreateJob`` may still create it
                (within :data:`SEARCH_WINDOW` s of the submit): the registry keeps it live and
                the next sweep looks again.
        """
        if description.get("created") is False:  # never sent: nothing to stop
            return False
        dlc_job_id = description.get("cloud_id")
        job_id = str(description.get("job_id") or "")
        if not dlc_job_id and job_id and not job_id.startswith(_PENDING_PREFIX):
            dlc_job_id = job_id
        if dlc_job_id:
            if job_state(self.get_job(str(dlc_job_id)).status).is_finished:
                return False
            _logger.info("stopping DLC job %s from its description", dlc_job_id)
            self.client().stop_job(str(dlc_job_id))
            return True
        name = str(description.get("display_name") or job_id[len(_PENDING_PREFIX):])
        if not name:
            raise PlatformError(f"DLC job description names no job: {dict(description)!r}")
        found = self.jobs_named(name, str(description.get("workspace_id") or ""))
        live = [job for job, status in found if not job_state(status).is_finished]
        for job in live:
            _logger.info("stopping DLC job %s (%s), found by name", job, name)
            self.client().stop_job(job)
        if live or found:
            return bool(live)
        submitted = float(description.get("submitted_at") or 0)
        if time.time() - submitted < SEARCH_WINDOW:
            raise PlatformError(f"no DLC job named {name} yet (its CreateJob had not answered); "
                                "looked for again by the next cancel")
        return False

    # -- job-log metric sources --------------------------------------------------------------

    def metric_source(self, type_name: str, location: str, spec: Any) -> Any:
        """``stdout`` of ``cmdN`` / ``cmdN,<pod type>``: that job's pod logs; of a file: the
        ordinary ``stdout`` source."""
        if type_name.strip().lower() != "stdout":
            return super().metric_source(type_name, location, spec)
        where = parse_job_log_location(location)
        if where is None:
            from hpo_tools.metrics.sources import build_source

            return build_source("stdout", location, spec=spec)
        source = JobLogSource(location, spec, *where)
        with self._lock:
            self._log_sources.append(source)
        return source

    def _bind_log_sources(self, command_name: str, log_path: Path) -> List[Tuple[str, Path]]:
        """The job of ``command_name`` feeds the waiting sources that name it (their files are
        started afresh); sources of earlier commands still waiting were skipped by ``resume``:
        they read what the earlier attempt left."""
        number = parse_job_log_location(command_name) if command_name else None
        if number is None:
            return []
        directory = log_path.parent / "dlc-logs"
        sinks: List[Tuple[str, Path]] = []
        with self._lock:
            waiting = list(self._log_sources)
            for source in waiting:
                path = directory / source.file_name
                if source.command == number[0]:
                    directory.mkdir(parents=True, exist_ok=True)
                    path.write_bytes(b"")
                    sinks.append((source.pod_filter, path))
                elif source.command > number[0]:
                    continue
                source.bind(path)
                self._log_sources.remove(source)
        return sinks

    # -- the end -----------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Make a waiting :meth:`submit` return at once; safe in a signal handler (a flag)."""
        self._interrupted = True

    def close(self) -> None:
        """Stop following jobs (they keep running)."""
        self._closed = True
        with self._lock:
            jobs, self._jobs = self._jobs, []
            self._log_sources = []
        for job in jobs:
            job.close()
