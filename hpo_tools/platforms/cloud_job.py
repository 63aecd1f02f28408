"""What every cloud-job platform shares: a submit that can be abandoned, a follower thread per
job, bounded stops, cancel from a registry record, relayed output through the masker.

A cloud-job platform (PAI training jobs, PAI-Flow; DLC and MaxCompute follow the same pattern)
is a :class:`CloudJobPlatform` subclass that supplies the SDK calls as hooks:

    prepare(command, env, command_name) -> Submission   # parse, build the SDK request
    create(submission) -> cloud id                       # the create (and start) call(s)
    status(cloud id) -> Status                            # one status call
    stop(cloud id)                                        # one stop call
    find(unique name, scope) -> [(cloud id, status)]      # list the jobs of that name
    state_of(status text) -> JobState
    on_check(job, status)                                 # optional: relay logs, metrics

and the base class does the rest, the same for every platform:

- :meth:`CloudJobPlatform.submit` first hands the job, PENDING with the id
  ``<prefix>-pending:<name>``, to ``on_update`` (the runner records it in the job registry with
  its unique name), then runs ``create`` in a thread (:class:`Creation`) and waits for it in
  50 ms slices; :meth:`~CloudJobPlatform.interrupt` (the runner's SIGINT handler) makes it
  return at once with the job still being created, which the runner then cancels: a job the
  call creates later is stopped as soon as it exists. A create that fails without an answer is
  abandoned: the job is looked for by its unique name (``find``) and stopped, recorded, and
  ``submit`` raises :class:`CreateUnanswered` (``launched`` when it was found).
- Each :class:`CloudJob` follows itself in a daemon thread (``status`` then ``on_check`` every
  ``poll_interval`` s); :meth:`CloudJob.poll` / :meth:`~CloudJob.wait` only read what that
  thread published, so no caller waits on the network.
- :meth:`CloudJob.cancel` stops within 2.5 s (``stop`` in a bounded thread);
  :meth:`CloudJobPlatform.cancel_described` stops a job from its registry record in another
  process (the assessor, ``hpo-tools kill``); a record whose create never answered is looked up
  by its unique name (:meth:`~CloudJobPlatform.cancel_and_identify` also says what was found,
  for the record), and :class:`JobNotFoundYet` says that nothing has that name yet.
- Output lines go to the trial log through the runner's masker (:meth:`CloudJob.write_log`).

:class:`CommandSinks` binds metric sources that read one command's job output (``cmd1``) to
the file the platform writes that job's output into (``stdout`` of DLC pod logs, ``api`` of
PAI training-job metrics), including a command ``resume`` skipped (its earlier file); in a
stage the runner resumes (:meth:`CloudJobPlatform.resume_stage`) new jobs append to the
earlier attempts' files instead of starting them afresh.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
import importlib
import logging
import math
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, List, Optional, Tuple

from hpo_tools.errors import ConfigError, PlatformError
from hpo_tools.platforms.base import (
    COMMAND_ENV,
    Job,
    JobState,
    OutputFilter,
    Platform,
    UpdateCallback,
)
from hpo_tools.platforms.credentials import AccessKeys

__all__ = [
    "CANCEL_TIMEOUT",
    "SEARCH_WINDOW",
    "CloudJob",
    "CloudJobPlatform",
    "CommandSinks",
    "CreateUnanswered",
    "Creation",
    "JobNotFoundYet",
    "Status",
    "Submission",
    "bounded",
    "first_line",
    "refused",
    "sdk_client",
    "seconds",
    "status_state",
]

_logger = logging.getLogger(__name__)

#: Seconds a cancel may take (the runner has 5 s between NNI's SIGINT and its SIGKILL).
CANCEL_TIMEOUT = 2.5
#: Seconds after a submit during which a job whose create never answered may still appear.
SEARCH_WINDOW = 600.0
_SUBMIT_TICK = 0.05  # how soon a waiting submit notices interrupt()
_MAX_POLL_ERRORS = 20
_MIN_POLL_PAUSE = 0.01


class CreateUnanswered(PlatformError):
    """A create (submit) that failed without an answer from the service: the job may have been
    made all the same (it was looked for by its unique name, and stopped when found).

    Attributes:
        launched: True when the job was found (the service had made it, and it was stopped):
            something was launched, so the trial runner fails the trial (exit 1) instead of
            calling its trial file bad (exit 2, nothing launched).
    """

    def __init__(self, message: str, *, launched: bool) -> None:
        super().__init__(message)
        self.launched = launched


class JobNotFoundYet(PlatformError):
    """:meth:`CloudJobPlatform.cancel_described` of a job whose create never answered: no job
    has its unique name yet, while the create may still make it (within :data:`SEARCH_WINDOW`
    s of the submit). The job registry keeps the record live, or closes it as never created
    when the runner that sent the create has ended (nothing can make the job any more).

    Attributes:
        unique_name: The name looked for.
    """

    def __init__(self, message: str, *, unique_name: str = "") -> None:
        super().__init__(message)
        self.unique_name = unique_name


def first_line(err: BaseException) -> str:
    """One line about ``err``: an SDK error's code and message, else its first line."""
    code, message = getattr(err, "code", None), getattr(err, "message", None)
    text = f"{code}: {message}" if code and message else str(err).strip()
    return text.splitlines()[0] if text.strip() else type(err).__name__


def refused(err: BaseException) -> bool:
    """Whether the service answered with a client error (4xx): nothing was created."""
    status = getattr(err, "status_code", None) or getattr(err, "statusCode", None)
    try:
        return 400 <= int(status) < 500
    except (TypeError, ValueError):
        return False


def bounded(name: str, call: Callable[[], Any], timeout: float) -> Tuple[bool, Any]:
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


def status_state(states: Mapping[str, JobState], status: Optional[str]) -> JobState:
    """A service's status (any case, ``Queuing``) as our state by ``states`` (lower-case
    keys); an unknown one is RUNNING: a status a service adds must never end a live job."""
    return states.get(str(status or "").strip().lower(), JobState.RUNNING)


def _real_sdk_client(client_module: str, **config: Any) -> Any:
    from alibabacloud_tea_openapi import models as open_api_models

    # The SDK is heavy: imported only here, when the platform is used.
    client_class = importlib.import_module(client_module).Client
    return client_class(open_api_models.Config(**config))


def sdk_client(service: str, client_module: str, **config: Any) -> Any:
    """An Alibaba Cloud SDK's ``Client`` (``<client_module>.Client``) from tea-openapi
    ``Config`` keywords: the one place a cloud platform's client is built, through
    :func:`hpo_tools.cloud.build` (``service``'s fake under ``HPO_TOOLS_FAKE_CLOUD``, called
    with the same keywords). Building it contacts nothing."""
    from hpo_tools import cloud

    return cloud.build(service, functools.partial(_real_sdk_client, client_module), **config)


def seconds(platform: str, name: str, value: Any) -> float:
    """``value`` as seconds >= 0.

    Raises:
        ConfigError: not such a number.
    """
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"platform {platform}: {name}={value!r} is not a number of seconds")
    return number


@dataclasses.dataclass
class Submission:
    """One command, ready to create.

    Attributes:
        request: What :meth:`CloudJobPlatform.create` sends (an SDK request).
        unique_name: The job's name on the service, unique per submission (found by it).
        scope: Where :meth:`CloudJobPlatform.find` looks (a workspace id; may be ``""``).
        summary: What the trial log says was submitted.
        extra: JSON-safe additions to the job's description.
    """

    request: Any
    unique_name: str
    scope: str = ""
    summary: str = ""
    extra: Dict[str, Any] = dataclasses.field(default_factory=dict)


@dataclasses.dataclass
class Status:
    """One status call's answer.

    Attributes:
        text: The service's status (``Running``).
        reason: Why it failed or stopped, when the service says.
        url: Where users can watch the job.
        body: The SDK's response body (for :meth:`CloudJobPlatform.on_check`).
    """

    text: str
    reason: str = ""
    url: Optional[str] = None
    body: Any = None


class Creation:
    """One create call in a thread: its outcome, and what becomes of a job it creates after
    everyone stopped waiting (:meth:`abandon`): it is stopped at once.

    ``platform`` is anything with ``name``, ``display``, ``create(submission)`` (the id, or an
    SDK object whose ``id`` is the id: kept in :attr:`result`) and ``stop_job(id)``: a
    :class:`CloudJobPlatform`, or MaxCompute's platform (its create returns an ``Instance``).
    """

    def __init__(self, platform: Any, submission: Submission) -> None:
        self.platform = platform
        self.submission = submission
        self.done = threading.Event()
        self.started = True  # False: never sent (the trial was being cancelled first)
        self.job_id: Optional[str] = None
        self.result: Any = None  # what create returned
        self.error: Optional[BaseException] = None
        self._abandoned = False
        self._on_late_job: Optional[Callable[[str], None]] = None
        self._lock = threading.Lock()

    def start(self) -> None:
        threading.Thread(target=self._run, daemon=True,
                         name=f"{self.platform.name}-create-{self.submission.unique_name}").start()

    def _run(self) -> None:
        try:
            result = self.platform.create(self.submission)
            job_id = str(getattr(result, "id", result))
        except Exception as err:  # handed to whoever waits (submit, or the job's thread)
            with self._lock:
                self.error = err
                self.done.set()
            return
        with self._lock:
            self.job_id = job_id
            self.result = result
            abandoned, late = self._abandoned, self._on_late_job
            self.done.set()
        if abandoned:
            _logger.warning("%s created job %s (%s) after it was given up on; stopping it",
                            self.platform.display, job_id, self.submission.unique_name)
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


class CloudJob(Job):
    """One cloud job, followed by a daemon thread of its own (see the module docstring).

    ``job_id`` is the service's id; a job handed back before the create answered keeps
    ``<prefix>-pending:<unique name>`` and ``cloud_id`` is the service's id once known.

    Attributes:
        unique_name: The job's name on the service.
        cloud_id: The service's id (None while the create has not answered).
        command_name: ``cmdN`` of the job (from the runner's ``HPO_TOOLS_COMMAND``).
        status_text: The last status the service gave.
    """

    def __init__(self, creation: Creation, *, platform: CloudJobPlatform, log_path: Path,
                 command_name: str, on_update: Optional[UpdateCallback],
                 output_filter: Optional[OutputFilter]) -> None:
        submission = creation.submission
        super().__init__(creation.job_id or platform.pending_prefix + submission.unique_name,
                         log_path)
        self.unique_name = submission.unique_name
        self.scope = submission.scope
        self.extra = dict(submission.extra)
        self.command_name = command_name
        self.cloud_id: Optional[str] = creation.job_id
        self.status_text = "Creating"
        self.url: Optional[str] = None
        self.submitted_at = time.time()
        #: Per-job state of the platform's :meth:`CloudJobPlatform.on_check` (offsets, files).
        self.relay: Dict[str, Any] = {}
        self._creation = creation
        self._platform = platform
        self._on_update = on_update
        self._output_filter = output_filter
        self._state = JobState.PENDING
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._stop_following = threading.Event()
        self._poll_errors = 0

    @property
    def logview(self) -> Optional[str]:
        return self.url

    # -- output ------------------------------------------------------------------------------

    def filtered(self, text: str) -> str:
        """``text`` through the output filter (the masker); ``""`` when the filter fails."""
        if self._output_filter is None:
            return text
        try:
            return self._output_filter(text)
        except Exception:
            _logger.exception("output filter failed; a line was dropped")
            return ""

    def write_log(self, line: str) -> None:
        """Append one status line (``[tag] ...``) to the trial log, masked."""
        self.append(self.log_path, [f"[{self._platform.log_tag}] {line}"])

    def append(self, path: Path, lines: List[str]) -> None:
        """Append ``lines`` to ``path``, each through the output filter."""
        text = "".join(self.filtered(line.rstrip("\n") + "\n") for line in lines)
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
                _logger.exception("on_update failed for job %s", self.job_id)

    # -- the follower thread (every network call but cancel's stop) ---------------------------

    def start_following(self) -> None:
        threading.Thread(target=self._follow, daemon=True,
                         name=f"{self._platform.name}-follow-{self.unique_name}").start()

    def _follow(self) -> None:
        try:
            if not self._await_creation():
                return
            pause = max(self._platform.poll_interval, _MIN_POLL_PAUSE)
            while not self._stop_following.is_set():
                if self._check().is_finished:
                    return
                self._stop_following.wait(pause)
        except Exception as err:  # a bug here must not leave wait() waiting for ever
            _logger.exception("following job %s failed", self.job_id)
            self._finish(JobState.FAILED, f"following {self._platform.display} job "
                         f"{self.job_id} failed: {err}")

    def _await_creation(self) -> bool:
        """Wait for the create (a job handed back before it answered); False to stop."""
        creation = self._creation
        while not creation.done.wait(_SUBMIT_TICK):
            if self._stop_following.is_set():
                return False
        if creation.error is not None:
            if self.poll().is_finished:  # cancelled meanwhile: cancel() said what it found
                return False
            found = [] if refused(creation.error) else self._platform.find_and_stop(
                self.unique_name, self.scope, 2 * CANCEL_TIMEOUT)
            anyway = (f" ({self._platform.display} had created it anyway as {found[0]}: "
                      "stopped)" if found else "")
            if found:  # the registry records the job it stopped
                with self._lock:
                    self.cloud_id = found[0]
            self._finish(JobState.FAILED, f"creating {self.unique_name} failed: "
                         f"{first_line(creation.error)}{anyway}")
            return False
        self._created(str(creation.job_id))
        return not self.poll().is_finished

    def _answered(self, cloud_id: str) -> None:
        """The create answered while :meth:`CloudJobPlatform.submit` waited: the job takes
        the service's id, and the registry's pending entry is told (it becomes this job)."""
        with self._lock:
            self.job_id = cloud_id
            self.cloud_id = cloud_id
        self._notify()

    def _created(self, cloud_id: str) -> None:
        with self._lock:
            known = self.cloud_id == cloud_id
            self.cloud_id = cloud_id
        if not known:
            self.write_log(f"job {self.unique_name} is {self._platform.display} job {cloud_id}")
            self._notify()

    def _check(self) -> JobState:
        """One status call and the platform's relay; publish the result."""
        assert self.cloud_id is not None
        try:
            status = self._platform.status(self.cloud_id)
            state = self._platform.state_of(status.text)
            if status.url and status.url != self.url:
                self.url = status.url
                self.write_log(f"job {self.cloud_id}: {status.url}")
            if not state.is_finished:
                self._publish(state, status.text)
            self._platform.on_check(self, status)  # all output is in before the end
        except Exception as err:  # network trouble: keep going, give up after many in a row
            self._poll_errors += 1
            _logger.warning("checking %s job %s failed (%d in a row): %s",
                            self._platform.display, self.job_id, self._poll_errors,
                            first_line(err))
            if self._poll_errors < _MAX_POLL_ERRORS:
                return self.poll()
            return self._finish(JobState.FAILED, f"status unknown after {self._poll_errors} "
                                f"failed checks: {first_line(err)}")
        self._poll_errors = 0
        if state.is_finished:
            return self._finish(state, self._end_message(state, status))
        return self.poll()

    def _publish(self, state: JobState, text: str) -> None:
        """A live state; a new status is logged and saved in the registry."""
        with self._lock:
            if self._state.is_finished:  # cancelled meanwhile
                return
            changed = text != self.status_text
            self.status_text = text
            self._state = state
            if changed:
                self._changed.notify_all()
        if changed:
            _logger.info("%s job %s %s", self._platform.display, self.job_id, text)
            self.write_log(f"job {self.cloud_id} {text}")
            self._notify()

    def _end_message(self, state: JobState, status: Status) -> str:
        if state is JobState.SUCCEEDED:
            return ""
        what = "stopped (not by hpo-tools)" if state is JobState.CANCELLED else status.text
        return (f"{self._platform.display} job {self.cloud_id} {what}"
                + (f": {status.reason}" if status.reason else ""))

    def _finish(self, state: JobState, message: str) -> JobState:
        message = self.filtered(message)  # an SDK error can quote the key it refused
        if self.poll().is_finished:
            return self.poll()
        _logger.info("%s job %s %s %s", self._platform.display, self.job_id, state.value,
                     message)
        self.write_log(f"job {self.cloud_id or self.unique_name} {state.value}"
                       + (f": {message}" if message else ""))
        with self._lock:
            if self._state.is_finished:
                return self._state
            self._state = state
            self.message = message
            self._changed.notify_all()
        self._notify()
        return state

    # -- what callers use: no network but cancel's bounded stop ------------------------------

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
        """Stop the job (at most 2.5 s); idempotent.

        A job whose create has not answered is looked for by name and stopped; when it is not
        found the job stays PENDING in the registry, so the next sweep (the assessor's
        ``trial_end``, ``hpo-tools kill``) looks again, and a job the call creates later, while
        this process lives, is stopped at once.
        """
        deadline = time.monotonic() + CANCEL_TIMEOUT
        with self._lock:
            if self._state.is_finished:
                return
            cloud_id = self.cloud_id
        self._stop_following.set()
        creation = self._creation
        if cloud_id is None and not creation.abandon(self._stopped_late):
            cloud_id = creation.job_id  # the create answered just now
            if cloud_id is None and creation.error is not None and refused(creation.error):
                self._finish(JobState.CANCELLED,
                             f"cancelled; {self._platform.display} had refused the job")
                return
        if cloud_id is None:  # no answer (yet): look for the job by its name
            found = self._platform.find_and_stop(self.unique_name, self.scope,
                                                 deadline - time.monotonic())
            if not found:
                message = ("cancel asked before the create answered; no job named "
                           f"{self.unique_name} found yet (looked for again by the next cancel)")
                with self._lock:
                    self.message = message
                self.write_log(message)
                self._notify()
                return
            cloud_id = found[0]
        else:
            self._platform.stop_job(cloud_id, max(0.1, deadline - time.monotonic()))
        with self._lock:
            self.cloud_id = cloud_id
        self._finish(JobState.CANCELLED, "cancelled")

    def _stopped_late(self, cloud_id: str) -> None:
        """A job the create made after the cancel was stopped (by the creation thread)."""
        with self._lock:
            self.cloud_id = cloud_id
        self._finish(JobState.CANCELLED,
                     f"cancelled (stopped as soon as {self._platform.display} created it)")

    def close(self) -> None:
        """Stop following the job (it keeps running); :meth:`poll` keeps the last state."""
        self._stop_following.set()

    def describe(self) -> Dict[str, Any]:
        """Platform, settings (no credentials), ids, unique name, scope, submit time."""
        with self._lock:
            cloud_id = self.cloud_id
        return {
            **self.extra,
            "platform": self._platform.name,
            "settings": self._platform.settings(),
            "job_id": self.job_id,
            "cloud_id": cloud_id,
            "unique_name": self.unique_name,
            "scope": self.scope,
            "command": self.command_name,
            "submitted_at": self.submitted_at,
            **({} if self._creation.started else {"created": False}),
        }


class CommandSinks:
    """Metric sources that read one command's job output (``cmd1``), bound to files.

    A source registered with :meth:`add` waits; when the job of its command is submitted,
    :meth:`bind` starts its file afresh and hands it to the job (which writes into it); when
    a later command is submitted first (``resume`` skipped this one), the source reads the file
    the earlier attempt left. A stage the runner resumes (:meth:`resume`, through
    :meth:`CloudJobPlatform.resume_stage`) binds every source to its file at once, so a
    command ``resume`` skipped is read even when no later command runs, and its new jobs
    append to the earlier attempts' files: their lines (steps numbered on from the earlier
    ones) follow what is there, and the source reads every attempt's steps in order.
    """

    def __init__(self, directory_name: str) -> None:
        self.directory_name = directory_name
        self._waiting: List[Any] = []  # objects with .command, .file_name, .bind(path)
        self._resumed: set = set()  # directories of stages that resume an earlier attempt
        self._lock = threading.Lock()

    def add(self, source: Any) -> None:
        with self._lock:
            self._waiting.append(source)

    def resume(self, log_path: Path) -> None:
        """The stage of ``log_path`` resumes an earlier attempt: every source reads its file
        as the earlier attempt left it from now on (a command ``resume`` skipped included),
        and a job submitted later appends to it instead of starting it afresh."""
        directory = log_path.parent / self.directory_name
        with self._lock:
            self._resumed.add(directory)
            for source in self._waiting:
                source.bind(directory / source.file_name)

    def bind(self, command_number: Optional[int], log_path: Path) -> List[Tuple[Any, Path]]:
        """The (source, file) pairs the job of command ``command_number`` feeds."""
        if command_number is None:
            return []
        directory = log_path.parent / self.directory_name
        sinks: List[Tuple[Any, Path]] = []
        with self._lock:
            resumed = directory in self._resumed
            for source in list(self._waiting):
                path = directory / source.file_name
                if source.command == command_number:
                    directory.mkdir(parents=True, exist_ok=True)
                    if not resumed:
                        path.write_bytes(b"")
                    sinks.append((source, path))
                elif source.command > command_number:
                    continue
                source.bind(path)
                self._waiting.remove(source)
        return sinks

    def clear(self) -> None:
        with self._lock:
            self._waiting = []
            self._resumed = set()


def command_number(command_name: str) -> Optional[int]:
    """``"cmd2"`` -> 2; None for anything else."""
    text = str(command_name or "").strip().lower()
    if text.startswith("cmd") and text[3:].isdigit():
        return int(text[3:])
    return None


class CloudJobPlatform(Platform):
    """A platform whose commands are jobs of a cloud service (see the module docstring).

    Subclasses set ``name``, :attr:`display`, :attr:`log_tag`, :attr:`pending_prefix`, build
    :attr:`keys` and their settings in ``__init__`` (calling :meth:`_init_cloud`), and
    implement the hooks.
    """

    #: How messages name the service (``PAI training``).
    display: ClassVar[str] = ""
    #: The trial log's prefix of status lines (``pai``).
    log_tag: ClassVar[str] = ""
    #: The id of a job whose create has not answered: this plus its unique name.
    pending_prefix: ClassVar[str] = ""
    #: False (every cloud platform): a submit after :meth:`interrupt` creates nothing (its job
    #: is CANCELLED and its description says ``created: false``, so a registry sweep does not
    #: look for it); a job is never created on a paid cluster only to be stopped.
    create_after_interrupt: ClassVar[bool] = False

    def _init_cloud(self, keys: AccessKeys, *, poll_interval: Any, call_timeout: Any,
                    client_factory: Optional[Callable[..., Any]]) -> None:
        self.keys = keys
        self.poll_interval = seconds(self.display, "poll_interval", poll_interval)
        self.call_timeout = seconds(self.display, "call_timeout", call_timeout)
        self._factory = client_factory
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._interrupted = False  # set by interrupt(), from a signal handler: no lock
        self._closed = False
        self._jobs: List[CloudJob] = []
        self._lock = threading.Lock()

    # -- hooks -------------------------------------------------------------------------------

    @abc.abstractmethod
    def build_client(self, factory: Optional[Callable[..., Any]], access_id: str,
                     access_key: str) -> Any:
        """The SDK client (``factory`` when tests gave one); building it contacts nothing."""

    @abc.abstractmethod
    def prepare(self, command: str, env: Mapping[str, str], command_name: str) -> Submission:
        """Parse ``command`` and build its request (ConfigError when malformed)."""

    @abc.abstractmethod
    def create(self, submission: Submission) -> str:
        """Create (and start) the job; its id on the service."""

    @abc.abstractmethod
    def status(self, cloud_id: str) -> Status:
        """One status call."""

    @abc.abstractmethod
    def stop(self, cloud_id: str) -> None:
        """One stop call."""

    @abc.abstractmethod
    def find(self, unique_name: str, scope: str) -> List[Tuple[str, str]]:
        """``(cloud id, status)`` of the jobs named ``unique_name`` in ``scope``."""

    @abc.abstractmethod
    def state_of(self, status_text: Optional[str]) -> JobState:
        """Our state of a status (unknown ones are RUNNING)."""

    def on_check(self, job: CloudJob, status: Status) -> None:
        """After each status call: relay the job's new output (default: nothing)."""
        return None

    def on_submit(self, job: CloudJob) -> None:
        """A job was just handed back (bind metric files to it; default: nothing)."""
        return None

    def command_sinks(self) -> List[CommandSinks]:
        """The platform's :class:`CommandSinks` (default: none)."""
        return []

    def resume_stage(self, log_path: Path) -> None:
        """For the trial runner to call, before the stage's first command, when it resumes the
        stage whose log is ``log_path`` (``resume=1``, not a redone finetune day): the sources
        of one command's output read what the earlier attempts wrote (a command ``resume``
        skipped included), and the stage's new jobs append to those files."""
        for sinks in self.command_sinks():
            sinks.resume(Path(log_path))

    # -- SDK calls ---------------------------------------------------------------------------

    def client(self) -> Any:
        """The SDK client, built on first use (building it contacts nothing)."""
        with self._client_lock:
            if self._client is None:
                access_id, access_key = self.keys.credentials()
                self._client = self.build_client(self._factory, access_id, access_key)
            return self._client

    def stop_job(self, cloud_id: str, timeout: float = CANCEL_TIMEOUT) -> bool:
        """``stop`` in a thread, for at most ``timeout`` s; whether it returned without error.

        Never raises: a job that already ended refuses to stop, which is fine.
        """
        ok, value = bounded(f"{self.name}-stop-{cloud_id}", lambda: self.stop(cloud_id),
                            timeout)
        if ok:
            _logger.info("stopped %s job %s", self.display, cloud_id)
        else:
            _logger.warning("stopping %s job %s: %s", self.display, cloud_id, first_line(value))
        return bool(ok)

    def find_and_stop(self, unique_name: str, scope: str, timeout: float) -> List[str]:
        """Look for the jobs named ``unique_name`` and stop those still live, within about
        ``timeout`` s; their ids (empty when none was found or the search did not answer)."""
        deadline = time.monotonic() + max(0.0, timeout)
        ok, found = bounded(f"{self.name}-find-{unique_name}",
                            lambda: self.find(unique_name, scope), max(0.0, timeout))
        if not ok:
            _logger.warning("looking for %s job %s: %s", self.display, unique_name,
                            first_line(found))
            return []
        for cloud_id, text in found:
            if not self.state_of(text).is_finished:
                self.stop_job(cloud_id, max(0.1, deadline - time.monotonic()))
        return [cloud_id for cloud_id, _ in found]

    # -- jobs --------------------------------------------------------------------------------

    def submit(self, command: str, *, log_path: Path, env: Optional[Mapping[str, str]] = None,
               on_update: Optional[UpdateCallback] = None,
               output_filter: Optional[OutputFilter] = None) -> CloudJob:
        """Create the job of ``command`` and start following it.

        Waits for the create in 50 ms slices; after :meth:`interrupt` it returns at once with
        the job still being created (PENDING, id ``<prefix><unique name>``).

        Raises:
            ConfigError: a malformed command.
            PlatformError: the service refused the job, no credentials, or the create failed
                without an answer (the job, if created anyway, was looked for and stopped).
        """
        command_name = str((env or {}).get(COMMAND_ENV, ""))
        submission = self.prepare(command, dict(env or {}), command_name)
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self.client()  # no credentials: an error now, on this thread
        _logger.info("submitting %s", submission.summary or submission.unique_name)
        creation = Creation(self, submission)
        if not self.create_after_interrupt and (self._interrupted or self._closed):
            return self._not_created(creation, log_path, command_name, on_update)
        job = CloudJob(creation, platform=self, log_path=log_path, command_name=command_name,
                       on_update=on_update, output_filter=output_filter)
        # Recorded (pending, with the unique name the create carries) before the create is
        # sent: a runner killed from here on leaves a record that a sweep looks up by name.
        job._notify()
        creation.start()
        while not creation.done.wait(_SUBMIT_TICK):
            if self._interrupted or self._closed:
                break  # the runner cancels the job next: hand it back unconfirmed
        if creation.done.is_set():
            if creation.error is not None:
                self._creation_failed(job)
            job._answered(str(creation.job_id))
        self.on_submit(job)
        job.write_log(f"submitted {submission.summary or submission.unique_name}"
                      + (f" as {self.display} job {job.cloud_id}" if job.cloud_id else
                         " (the create has not answered yet)"))
        with self._lock:
            self._jobs.append(job)
        job.start_following()
        return job

    def _not_created(self, creation: Creation, log_path: Path, command_name: str,
                     on_update: Optional[UpdateCallback]) -> CloudJob:
        """The job of a submit that came after :meth:`interrupt`: CANCELLED, never sent."""
        creation.started = False
        creation.done.set()
        job = CloudJob(creation, platform=self, log_path=log_path, command_name=command_name,
                       on_update=on_update, output_filter=None)
        job._finish(JobState.CANCELLED, "not created: the trial was being cancelled")
        return job

    def _creation_failed(self, job: CloudJob) -> None:
        """Raise for the failed create of ``job``; one that failed without an answer may have
        created the job all the same: it is looked for by name and stopped first. The job
        ends either way (the registry records it: refused, stopped with the id found, or
        failed with nothing found; no create is in flight any more).

        Raises:
            PlatformError: the service refused the job (nothing was created).
            CreateUnanswered: no answer (``launched`` when the job was found and stopped).
        """
        creation = job._creation
        err = creation.error
        assert err is not None
        name = creation.submission.unique_name
        where = f"platform {self.display}: creating {name}"
        if creation.submission.scope:
            where += f" (workspace {creation.submission.scope})"
        if refused(err):
            job._finish(JobState.FAILED, f"refused: {first_line(err)}")
            raise PlatformError(f"{where} was refused: {first_line(err)}") from err
        found = self.find_and_stop(name, creation.submission.scope, 2 * CANCEL_TIMEOUT)
        after = (f"{self.display} had created it anyway as {', '.join(found)}, stopped"
                 if found else "no job of that name was found")
        message = f"{where} failed without an answer ({first_line(err)}); {after}"
        if found:
            with job._lock:
                job.cloud_id = found[0]
            job._finish(JobState.CANCELLED, message)
        else:
            job._finish(JobState.FAILED, message)
        raise CreateUnanswered(job.filtered(message), launched=bool(found)) from err

    def cancel_described(self, description: Mapping[str, Any]) -> bool:
        """Stop the described job if it still runs; one whose create never answered is looked
        for by name (and stopped when live).

        Raises:
            JobNotFoundYet: such a job was not found yet while its create may still make it
                (within :data:`SEARCH_WINDOW` s of the submit): the registry keeps it live and
                the next sweep looks again (or closes it once its runner has ended).
        """
        return self.cancel_and_identify(description)[0]

    def cancel_and_identify(self, description: Mapping[str, Any]) -> Tuple[bool, Dict[str, Any]]:
        """:meth:`cancel_described`, and what the call learned about the job for its record:
        ``{"cloud_id": ...}`` when a job whose create never answered was found by its name
        (the job registry adds it to the record's description, so the job is recorded).

        Raises:
            JobNotFoundYet: as :meth:`cancel_described`.
        """
        if description.get("created") is False:  # never sent: nothing to stop
            return False, {}
        cloud_id = description.get("cloud_id")
        job_id = str(description.get("job_id") or "")
        if not cloud_id and job_id and not job_id.startswith(self.pending_prefix):
            cloud_id = job_id
        if cloud_id:
            if self.state_of(self.status(str(cloud_id)).text).is_finished:
                return False, {}
            _logger.info("stopping %s job %s from its description", self.display, cloud_id)
            self.stop(str(cloud_id))
            return True, {}
        name = str(description.get("unique_name") or job_id[len(self.pending_prefix):])
        if not name:
            raise PlatformError(f"{self.display} job description names no job: "
                                f"{dict(description)!r}")
        found = self.find(name, str(description.get("scope") or ""))
        live = [job for job, text in found if not self.state_of(text).is_finished]
        for job in live:
            _logger.info("stopping %s job %s (%s), found by name", self.display, job, name)
            self.stop(job)
        if live or found:
            return bool(live), {"cloud_id": (live or [job for job, _ in found])[0]}
        submitted = float(description.get("submitted_at") or 0)
        if time.time() - submitted < SEARCH_WINDOW:
            raise JobNotFoundYet(f"no {self.display} job named {name} yet (its create had "
                                 "not answered); looked for again by the next cancel",
                                 unique_name=name)
        return False, {}

    # -- the end -----------------------------------------------------------------------------

    def interrupt(self) -> None:
        """Make a waiting :meth:`submit` return at once; safe in a signal handler (a flag)."""
        self._interrupted = True

    def close(self) -> None:
        """Stop following jobs (they keep running)."""
        self._closed = True
        with self._lock:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.close()
