"""The MaxCompute platform: PAI commands through ``run_xflow``, anything else as SQL, via pyodps.

- ``PAI -name X -project Y -Dk=v ...`` (one or several lines, an optional trailing ``;``) is parsed
  by :func:`parse_command` and submitted with ``odps.run_xflow(X, Y, {k: v, ...})``: quotes around
  a value are stripped, JSON values (``-Dcluster='{"ps":{"count":1}}'``, quoted or not) are kept
  whole. Any other command is submitted with ``odps.run_sql``.
- pyodps' own wait loops swallow KeyboardInterrupt (API-NOTES §0.5), so :class:`MaxComputeJob`
  polls the instance itself, in a daemon thread of its own: any status call can hang on the
  network, and the caller's thread (the runner's, which must cancel within NNI's 5 s) only reads
  the state that thread publishes. Sub-instances of a PAI job are recorded as they appear; every
  logview address is written to the job's log and the ``on_update`` callback runs (from that
  thread) so that the runner saves them in the registry.
- :meth:`MaxComputeJob.cancel` stops every recorded instance, in parallel, within 2.5 s.
- The submit (building the ``ODPS`` client, ~6 s offline, then ``run_xflow`` / ``run_sql``)
  runs in a thread (:class:`~hpo_tools.platforms.cloud_job.Creation`) that
  :meth:`MaxComputePlatform.interrupt` abandons: ``submit`` then returns at once a PENDING job
  (id ``maxcompute-pending:<tag>``), which the runner cancels; an instance the call creates
  later is stopped as soon as it exists, and one created by a call that never answered is
  found by its tag (a fresh uuid per submission: ``run_sql(..., unique_identifier_id=tag)``,
  read back with ``Instance.get_unique_identifier_id()``; ``run_xflow(..., hints={"hpo_tools.tag":
  tag})``, read back from the PAI instance's properties) among the instances
  ``list_instances(start_time=..., only_owner=True)`` lists, and stopped. No submit creates
  anything after :meth:`~MaxComputePlatform.interrupt`.
- Credentials: ``access_id`` / ``access_key`` (as the runner resolved them) or, when not given,
  the environment variables named by ``credential_env`` (default ``ODPS_ACCESS_ID`` /
  ``ODPS_ACCESS_KEY``, then ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``).
  Only the variable *names* are in :meth:`MaxComputePlatform.settings` and job descriptions, so
  another process (the assessor) rebuilds the client from its own environment.
- The ``table`` metric source (``metric_type=table``, ``metric_source=<SQL query>``) runs its query
  through the client of the MaxCompute platform passed to ``build_source(..., platform=...)`` (the
  trial runner passes the platform running the trial); without one it is a ConfigError.

``odps`` is imported only inside functions: importing this module costs nothing.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import re
import threading
import time
import uuid
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Dict, List, Optional, Tuple

from hpo_tools import cloud
from hpo_tools.errors import ConfigError, HpoError, MetricReadError, PlatformError
from hpo_tools.metrics.sources import MetricPoint, MetricSource
from hpo_tools.platforms.base import (
    COMMAND_ENV,
    Job,
    JobState,
    OutputFilter,
    Platform,
    TrialFileView,
    UpdateCallback,
)
from hpo_tools.platforms.cloud_job import (
    CANCEL_TIMEOUT,
    SEARCH_WINDOW,
    CreateUnanswered,
    Creation,
    JobNotFoundYet,
    Submission,
    bounded,
    first_line,
)
from hpo_tools.platforms.credentials import AccessKeys, env_names_holding
from hpo_tools.platforms.credentials import credential_env as credential_env_pair

if TYPE_CHECKING:  # pragma: no cover
    from hpo_tools.metrics.score import MetricSpec

__all__ = [
    "DEFAULT_CREDENTIAL_ENV",
    "PENDING_PREFIX",
    "TAG_HINT",
    "MaxComputeJob",
    "MaxComputePlatform",
    "MaxComputeSettings",
    "ParsedCommand",
    "TableSource",
    "parse_command",
]

_logger = logging.getLogger(__name__)

#: Env var pairs (access id, access key) tried in order when no credentials are given.
DEFAULT_CREDENTIAL_ENV: Tuple[Tuple[str, str], ...] = (
    ("ODPS_ACCESS_ID", "ODPS_ACCESS_KEY"),
    ("ALIBABA_CLOUD_ACCESS_KEY_ID", "ALIBABA_CLOUD_ACCESS_KEY_SECRET"),
)
_CANCEL_TIMEOUT = CANCEL_TIMEOUT
#: The id of a job whose submit has not answered: this plus its tag.
PENDING_PREFIX = "maxcompute-pending:"
#: The ``run_xflow`` hint (a property of the PAI instance) that carries a submission's tag.
TAG_HINT = "hpo_tools.tag"
_SUBMIT_TICK = 0.05  # how soon a waiting submit notices interrupt()
_SEARCH_SLACK = 120.0  # s before a submit that a search by tag lists instances from (clocks)
_INTERRUPT_TICK = 0.1  # how soon a waiting metric query notices interrupt()
_INTERRUPTED_STOP_TIMEOUT = 0.5
_MAX_POLL_ERRORS = 20
_MIN_POLL_PAUSE = 0.01
_STEP_COLUMNS = ("step", "global_step")


class _NotSubmitted(Exception):
    """The client was built after :meth:`MaxComputePlatform.interrupt`: nothing was sent."""


# ---------------------------------------------------------------------------------------------
# Command parsing


@dataclasses.dataclass(frozen=True)
class ParsedCommand:
    """A command as MaxCompute receives it.

    Attributes:
        kind: ``"xflow"`` for ``PAI ...`` commands, ``"sql"`` otherwise.
        name: The PAI algorithm (``easy_rec_ext``); empty for SQL.
        project: The PAI algorithm's project (``algo_public``); empty for SQL.
        parameters: ``-Dkey=value`` pairs in order, quotes stripped.
        sql: The SQL text; empty for PAI commands.
    """

    kind: str
    name: str = ""
    project: str = ""
    parameters: Dict[str, str] = dataclasses.field(default_factory=dict)
    sql: str = ""


def _split_words(text: str) -> List[str]:
    """Split at blanks outside quotes and outside ``{...}`` / ``[...]`` (JSON stays whole).

    Quotes are kept in the words; ``\\`` + newline is a blank.
    """
    words: List[str] = []
    current: List[str] = []
    quote = ""
    depth = 0
    i = 0
    while i < len(text):
        char = text[i]
        if quote:
            current.append(char)
            if char == "\\" and quote == '"' and i + 1 < len(text):
                current.append(text[i + 1])  # an escaped character never ends the quote
                i += 1
            elif char == quote:
                quote = ""
        elif char in "'\"":
            quote = char
            current.append(char)
        elif char in "{[":
            depth += 1
            current.append(char)
        elif char in "}]":
            depth = max(0, depth - 1)
            current.append(char)
        elif char == "\\" and text[i + 1 : i + 2] == "\n":
            i += 1  # line continuation
            if depth == 0 and current:
                words.append("".join(current))
                current = []
        elif char.isspace() and depth == 0:
            if current:
                words.append("".join(current))
                current = []
        else:
            current.append(char)
        i += 1
    if quote:
        raise ConfigError(f"PAI command: unclosed {quote} quote in {''.join(current)[:60]!r}")
    if current:
        words.append("".join(current))
    return words


def _unquote(value: str) -> str:
    """Remove one pair of surrounding quotes; inside "...", \\" and \\\\ are unescaped."""
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        inner = value[1:-1]
        if value[0] == '"':
            inner = re.sub(r'\\(["\\])', r"\1", inner)
        return inner
    return value


def parse_command(text: str) -> ParsedCommand:
    """Parse a MaxCompute command: ``PAI -name X -project Y -Dk=v ...`` or SQL.

    Rules: the first word ``PAI`` (any case) makes it a PAI command; options are ``-name X``,
    ``-project Y`` (or ``-name=X``) and ``-Dkey=value``; words end at blanks or line ends outside
    quotes and braces; one pair of quotes around a value (or the whole word) is removed; a
    trailing ``;`` is dropped. Anything else is SQL, passed on as written (trimmed).

    Raises:
        ConfigError: A PAI command without ``-name``, with an unknown option, or a malformed
            ``-D`` word.
    """
    stripped = text.strip()
    first = stripped.split(None, 1)[0] if stripped else ""
    if first.upper() != "PAI":
        if not stripped:
            raise ConfigError("MaxCompute command is empty")
        return ParsedCommand(kind="sql", sql=stripped)
    body = stripped[len(first) :].strip()
    while body.endswith(";"):
        body = body[:-1].rstrip()
    words = [_unquote(w) for w in _split_words(body)]
    options: Dict[str, str] = {}
    parameters: Dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if word.startswith("-D"):
            key, sep, value = word[2:].partition("=")
            if not sep and i + 1 < len(words) and not key:
                key, sep, value = words[i + 1].partition("=")
                i += 1
            if not sep or not key:
                raise ConfigError(f"PAI command: {word!r} is not -Dkey=value")
            parameters[key.strip()] = _unquote(value)
        elif word.lower().lstrip("-").split("=", 1)[0] in ("name", "project") and word[:1] == "-":
            option, sep, value = word.lstrip("-").partition("=")
            if not sep:
                if i + 1 >= len(words):
                    raise ConfigError(f"PAI command: {word} needs a value")
                value = words[i + 1]
                i += 1
            options[option.lower()] = _unquote(value)
        else:
            raise ConfigError(
                f"PAI command: unexpected {word[:60]!r}; expected -name NAME, -project PROJECT "
                "or -Dkey=value"
            )
        i += 1
    if not options.get("name"):
        raise ConfigError("PAI command: -name is missing (e.g. PAI -name easy_rec_ext ...)")
    return ParsedCommand(
        kind="xflow",
        name=options["name"],
        project=options.get("project", ""),
        parameters=parameters,
    )


# ---------------------------------------------------------------------------------------------
# Settings and credentials


@dataclasses.dataclass
class MaxComputeSettings:
    """Where and as whom to run. ``repr`` never shows the credentials.

    Attributes:
        project: The MaxCompute project jobs run in.
        endpoint: The service address (``http://service.cn-hangzhou.maxcompute.aliyun.com/api``).
        credential_env: Names of the env vars holding the access id and key.
        access_id: The access key id, when given explicitly (never stored or logged).
        access_key: The access key secret, when given explicitly (never stored or logged).
    """

    project: str
    endpoint: str
    credential_env: Optional[Tuple[str, str]] = None
    access_id: Optional[str] = dataclasses.field(default=None, repr=False)
    access_key: Optional[str] = dataclasses.field(default=None, repr=False)

    def __repr__(self) -> str:
        return (
            f"MaxComputeSettings(project={self.project!r}, endpoint={self.endpoint!r}, "
            f"credential_env={self.credential_env!r}, "
            f"access_id={'***' if self.access_id else None}, "
            f"access_key={'***' if self.access_key else None})"
        )

    def credentials(self) -> Tuple[str, str]:
        """(access id, access key): as given, else from the environment.

        Raises:
            PlatformError: Nothing given and no env var pair set (names them).
        """
        return AccessKeys(platform="MaxCompute", hint="", defaults=DEFAULT_CREDENTIAL_ENV,
                          env=self.credential_env, access_id=self.access_id,
                          access_key=self.access_key).credentials()


def _real_odps(**kwargs: Any) -> Any:
    from odps import ODPS  # heavy (0.5 s): only when a MaxCompute client is really needed

    return ODPS(**kwargs)


def _default_odps_factory(**kwargs: Any) -> Any:
    """``odps.ODPS(**kwargs)``, or its fake under ``HPO_TOOLS_FAKE_CLOUD`` (hpo_tools.cloud)."""
    return cloud.build("maxcompute", _real_odps, **kwargs)


# ---------------------------------------------------------------------------------------------
# Jobs


def _stop_all(stops: Sequence[Tuple[str, Callable[[], Any]]], timeout: float) -> int:
    """Run each ``(instance id, stop)`` in its own thread; return how many returned in time."""
    done: List[str] = []
    lock = threading.Lock()

    def run(instance_id: str, stop: Callable[[], Any]) -> None:
        try:
            stop()
        except Exception as err:  # already terminated, network: log and go on
            _logger.info("stopping instance %s: %s", instance_id, err)
        with lock:
            done.append(instance_id)

    threads = [
        threading.Thread(target=run, args=item, name=f"odps-stop-{item[0]}", daemon=True)
        for item in stops
    ]
    deadline = time.monotonic() + timeout
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    with lock:
        finished = list(done)
    missing = [instance_id for instance_id, _ in stops if instance_id not in finished]
    if missing:
        _logger.warning("stopping instances %s did not return in %.1f s", missing, timeout)
    return len(finished)


class _Query:
    """A ``table`` metric query running in its own thread: its instance, result, and one stop."""

    def __init__(self) -> None:
        self.done = threading.Event()
        self.rows: List[Dict[str, Any]] = []
        self.error: Optional[BaseException] = None
        self._instance: Any = None
        self._stopped = False
        self._lock = threading.Lock()

    def run(self, query: Callable[[], List[Dict[str, Any]]]) -> None:
        """Run ``query`` (in the query's thread) and keep what came of it."""
        try:
            self.rows = query()
        except BaseException as err:  # handed to the waiting thread, which raises it
            self.error = err
        finally:
            self.done.set()

    def started(self, instance: Any) -> None:
        """The query's instance exists: stop it at once if a stop was asked for meanwhile."""
        with self._lock:
            self._instance = instance
            stop_now = self._stopped
        if stop_now:
            _stop_all([(str(instance.id), instance.stop)], _CANCEL_TIMEOUT)

    def name(self) -> str:
        """``instance <id>``, or a placeholder before ``run_sql`` returned."""
        instance = self._instance
        return f"instance {instance.id}" if instance is not None else "(not started)"

    def stop(self, timeout: float) -> None:
        """Stop the query's instance once (within ``timeout`` s); later if not started yet."""
        with self._lock:
            if self._stopped:
                return
            self._stopped = True
            instance = self._instance
        if instance is not None:
            _stop_all([(str(instance.id), instance.stop)], timeout)


class MaxComputeJob(Job):
    """One MaxCompute instance (a PAI xflow or an SQL statement) and its sub-instances.

    A daemon thread owned by the job (started by :meth:`MaxComputePlatform.submit`) makes every
    status call: it asks the instance every ``poll_interval`` seconds, records sub-instances and
    logview addresses, publishes the state under a lock and calls ``on_update``. :meth:`poll`
    and :meth:`wait` only read what it published, so a status call that hangs on the network
    never blocks the caller (the runner's main thread, which must cancel within NNI's 5 s).

    A job handed back before its submit answered (after :meth:`MaxComputePlatform.interrupt`)
    is PENDING with the id ``maxcompute-pending:<tag>``; its thread waits for the submit first.

    Attributes:
        instance_ids: The main instance id, then each sub-instance id as it appeared (empty
            while the submit has not answered).
        logviews: Instance id -> logview address.
        unique_name: The submission's tag (how an instance whose submit never answered is
            found).
    """

    def __init__(
        self,
        creation: Creation,
        parsed: ParsedCommand,
        *,
        platform: MaxComputePlatform,
        log_path: Path,
        on_update: Optional[UpdateCallback],
        output_filter: Optional[OutputFilter],
    ) -> None:
        instance = creation.result
        tag = creation.submission.unique_name
        super().__init__(str(instance.id) if instance is not None else PENDING_PREFIX + tag,
                         log_path)
        self.kind = parsed.kind
        self.name = parsed.name
        self.unique_name = tag
        self.submitted_at = time.time()
        self.instance_ids: List[str] = [str(instance.id)] if instance is not None else []
        self.logviews: Dict[str, str] = {}
        self._creation = creation
        self._instance = instance
        self._instances: Dict[str, Any] = {} if instance is None else {str(instance.id): instance}
        self._platform = platform
        self._on_update = on_update
        self._output_filter = output_filter
        self._state = JobState.RUNNING if instance is not None else JobState.PENDING
        self._lock = threading.Lock()  # guards the fields above
        self._changed = threading.Condition(self._lock)  # notified when the state changes
        self._stop_following = threading.Event()  # set by cancel() and close()
        self._follower: Optional[threading.Thread] = None
        self._poll_errors = 0  # only the follower thread touches it

    @property
    def logview(self) -> Optional[str]:
        """The main instance's logview address (sub-instances' are in :attr:`logviews`)."""
        with self._lock:
            main = self.instance_ids[0] if self.instance_ids else None
        return self.logviews.get(main) if main else None

    def _filtered(self, text: str) -> str:
        """``text`` through the output filter (the runner's masker); a failing filter drops it."""
        if self._output_filter is None:
            return text
        try:
            return self._output_filter(text)
        except Exception:
            _logger.exception("output filter failed; a status line was dropped")
            return ""

    def write_log(self, line: str) -> None:
        """Append one status line to the job's log (through the output filter)."""
        text = self._filtered(line.rstrip("\n") + "\n")
        if not text:
            return
        try:
            with open(self.log_path, "a", encoding="utf-8") as log:
                log.write(text)
        except OSError as err:
            _logger.warning("cannot write to %s: %s", self.log_path, err)

    def _notify(self) -> None:
        """Run ``on_update`` (from the follower thread, or the thread that cancels)."""
        if self._on_update is not None:
            try:
                self._on_update(self)
            except Exception:  # the runner logs its own failures; never break the poll loop
                _logger.exception("on_update failed for instance %s", self.job_id)

    # -- the follower thread (every network call but cancel's stop() calls) -------------------

    def _start_following(self) -> None:
        """Start the thread that follows the instance (once, from ``submit``)."""
        self._follower = threading.Thread(
            target=self._follow, name=f"odps-follow-{self.job_id}", daemon=True
        )
        self._follower.start()

    def _await_creation(self) -> bool:
        """Wait for a submit that had not answered when the job was handed back; False to
        stop following."""
        creation = self._creation
        while not creation.done.wait(_SUBMIT_TICK):
            if self._stop_following.is_set():
                return False
        if self._instance is not None:
            return True
        if creation.error is not None:
            if self.poll().is_finished:  # cancelled meanwhile: cancel() said what it found
                return False
            found = self._platform.search_and_stop(self.description_for_search(),
                                                   2 * _CANCEL_TIMEOUT)
            anyway = f" (MaxCompute had created it anyway as {found[0]}: stopped)" if found else ""
            self._finish(JobState.FAILED, f"submitting {self.kind} {self.name} failed: "
                         f"{first_line(creation.error)}{anyway}".replace("  ", " "))
            return False
        self._created(creation.result)
        return not self.poll().is_finished

    def _answered(self, instance: Any) -> None:
        """The submit answered while :meth:`MaxComputePlatform.submit` waited: the job takes
        the instance's id, and the registry's pending entry is told (it becomes this job)."""
        instance_id = str(instance.id)
        with self._lock:
            self.job_id = instance_id
            self._instance = instance
            self._instances[instance_id] = instance
            self.instance_ids.insert(0, instance_id)
            self._state = JobState.RUNNING
        self._notify()

    def _created(self, instance: Any) -> None:
        """The submit answered late with ``instance``: record it (and tell the registry)."""
        instance_id = str(instance.id)
        with self._lock:
            if self._instance is not None:
                return
            self._instance = instance
            self._instances[instance_id] = instance
            self.instance_ids.insert(0, instance_id)
            if not self._state.is_finished:
                self._state = JobState.RUNNING
        self.write_log(f"[maxcompute] submission {self.unique_name} is instance {instance_id}")
        self._notify()

    def _stopped_late(self, instance_id: str) -> None:
        """The submit's instance appeared after the cancel and was stopped (by the submit's
        thread): record it."""
        with self._lock:
            if instance_id not in self.instance_ids:
                self.instance_ids.insert(0, instance_id)
            finished = self._state.is_finished
        if finished:
            self.write_log(f"[maxcompute] instance {instance_id} of {self.unique_name} stopped "
                           "as soon as MaxCompute created it")
            self._notify()
        else:
            self._finish(JobState.CANCELLED, "cancelled (stopped as soon as MaxCompute created "
                         f"instance {instance_id})")

    def description_for_search(self) -> Dict[str, Any]:
        """What :meth:`MaxComputePlatform.search_and_stop` needs: tag, kind, submit time."""
        return {"unique_name": self.unique_name, "kind": self.kind,
                "project": self._platform.project, "submitted_at": self.submitted_at}

    def _follow(self) -> None:
        """Check the instance now and then every ``poll_interval`` s until it ends or we stop."""
        try:
            if not self._await_creation():
                return
            if self._record_logview("", self._instance):
                self._notify()
            # A poll_interval of 0 (tests) must not spin a core: checks are 10 ms apart at least.
            pause = max(self._platform.poll_interval, _MIN_POLL_PAUSE)
            while not self._stop_following.is_set():
                if self._check().is_finished:
                    return
                self._stop_following.wait(pause)
        except Exception as err:  # a bug here must not leave wait() waiting for ever
            _logger.exception("following instance %s failed", self.job_id)
            self._finish(JobState.FAILED, f"following instance {self.job_id} failed: {err}")

    def _record_logview(self, name: str, instance: Any) -> bool:
        """Ask for ``instance``'s logview address, log it; False when there is none."""
        instance_id = str(instance.id)
        try:
            address = str(instance.get_logview_address())
        except Exception as err:
            _logger.info("no logview for instance %s: %s", instance_id, err)
            return False
        with self._lock:
            self.logviews[instance_id] = address
        label = f"{self.kind} {self.name}".strip() if name == "" else f"sub-instance {name}"
        _logger.info("%s instance %s logview: %s", label, instance_id, address)
        self.write_log(f"[maxcompute] {label} instance {instance_id} logview: {address}")
        return True

    def _record_sub_instances(self) -> bool:
        """Record the sub-instances that appeared; stop them when the job was cancelled."""
        if self.kind != "xflow":
            return False
        subs = self._platform.client().get_xflow_sub_instances(self._instance)
        new = False
        for name, sub in subs.items():
            sub_id = str(sub.id)
            with self._lock:
                if sub_id in self._instances:
                    continue
                self._instances[sub_id] = sub
                self.instance_ids.append(sub_id)
                cancelled = self._state is JobState.CANCELLED
            if cancelled:  # appeared after cancel() took its list: stop it here
                _logger.info("stopping sub-instance %s, which appeared after the cancel", sub_id)
                _stop_all([(sub_id, sub.stop)], _CANCEL_TIMEOUT)
            self._record_logview(str(name), sub)
            new = True
        return new

    def _check(self) -> JobState:
        """One round of status calls (network); publish the result."""
        try:
            terminated = bool(self._instance.is_terminated())
            changed = self._record_sub_instances()  # also those that appeared at the end
            successful = bool(self._instance.is_successful()) if terminated else False
        except Exception as err:  # network trouble: keep going, give up after many in a row
            self._poll_errors += 1
            _logger.warning("checking instance %s failed (%d in a row): %s",
                            self.job_id, self._poll_errors, err)
            if self._poll_errors < _MAX_POLL_ERRORS:
                return self.poll()
            return self._finish(JobState.FAILED, f"status unknown after {self._poll_errors} "
                                f"failed checks: {err}")
        self._poll_errors = 0
        if changed:
            self._notify()  # new instance ids: the runner saves them at once
        if self.poll().is_finished:  # cancelled meanwhile
            return self.poll()
        if not terminated:
            return JobState.RUNNING
        if successful:
            return self._finish(JobState.SUCCEEDED, "")
        return self._finish(JobState.FAILED, self._failure_message())

    def _failure_message(self) -> str:
        try:
            statuses = self._instance.get_task_statuses()
            failed = [
                f"{name} {getattr(task.status, 'value', task.status)}"
                for name, task in statuses.items()
                if str(getattr(task.status, "value", task.status)).upper() != "SUCCESS"
            ]
        except Exception as err:
            return f"instance {self.job_id} failed ({err})"
        detail = ", ".join(failed) if failed else "not successful"
        return f"instance {self.job_id} failed: {detail}"

    def _finish(self, state: JobState, message: str) -> JobState:
        message = self._filtered(message)  # an SDK error can quote the key it refused
        if self.poll().is_finished:
            return self.poll()
        # In the log before waiters wake: the runner prints the log's tail when a job failed.
        _logger.info("maxcompute instance %s %s %s", self.job_id, state.value, message)
        self.write_log(f"[maxcompute] instance {self.job_id} {state.value}"
                       + (f": {message}" if message else ""))
        with self._lock:
            if self._state.is_finished:  # cancelled meanwhile
                return self._state
            self._state = state
            self.message = message
            self._changed.notify_all()
        self._notify()
        return state

    # -- what callers use: no network but cancel's bounded stop() calls -----------------------

    def poll(self) -> JobState:
        """The state the follower thread last published (never a network call)."""
        with self._lock:
            return self._state

    def wait(self, timeout: Optional[float] = None) -> JobState:
        """Block until the job finishes or ``timeout`` s pass; :meth:`cancel` wakes it at once."""
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
        """Stop following and stop every recorded instance (in parallel, within 2.5 s).

        Idempotent. A sub-instance that the follower thread finds after this is stopped there.
        A job whose submit has not answered is looked for by its tag and stopped; when it is not
        found the job stays PENDING (the registry keeps it live, so the next sweep looks again),
        and an instance the submit creates later, while this process lives, is stopped at once.
        """
        deadline = time.monotonic() + _CANCEL_TIMEOUT
        with self._lock:
            if self._state.is_finished:
                return
            answered = self._instance is not None
        if not answered and not self._cancel_unanswered(deadline):
            return
        with self._lock:
            if self._state.is_finished:
                return
            self._state = JobState.CANCELLED
            self.message = "cancelled"
            instances = list(self._instances.items())
            self._changed.notify_all()
        self._stop_following.set()
        _logger.info("cancelling maxcompute instances %s", ", ".join(i for i, _ in instances))
        # Sub-instances first: they are what burns resources.
        stops = [(instance_id, instance.stop) for instance_id, instance in reversed(instances)]
        _stop_all(stops, max(0.1, deadline - time.monotonic()))
        self.write_log(f"[maxcompute] instance {self.job_id} cancelled")
        self._notify()

    def _cancel_unanswered(self, deadline: float) -> bool:
        """Cancel before the submit answered; True when an instance is known now (the caller
        stops it), False when this settled the cancel."""
        self._stop_following.set()
        creation = self._creation
        if not creation.abandon(self._stopped_late) and creation.error is None:
            self._created(creation.result)  # the submit answered just now
            return True
        if isinstance(creation.error, _NotSubmitted) or (creation.error is None
                                                         and self._platform.unsent()):
            creation.started = False  # the registry's sweep has nothing to look for
            self._finish(JobState.CANCELLED, "not created: the trial was being cancelled "
                         "before the submit reached MaxCompute")
            return False
        found = self._platform.search_and_stop(self.description_for_search(),
                                               deadline - time.monotonic())
        if found:
            with self._lock:
                self.instance_ids[:0] = [i for i in found if i not in self.instance_ids]
            self._finish(JobState.CANCELLED, f"cancelled (instance {', '.join(found)}, "
                         f"found by its tag {self.unique_name}, stopped)")
        elif creation.error is not None:
            self._finish(JobState.CANCELLED, "cancelled; its submit had failed: "
                         f"{first_line(creation.error)}")
        else:
            message = ("cancel asked before the submit answered; no instance tagged "
                       f"{self.unique_name} found yet (looked for again by the next cancel)")
            with self._lock:
                self.message = message
            self.write_log(f"[maxcompute] {message}")
            self._notify()
        return False

    def close(self) -> None:
        """Stop following the instance (it keeps running); :meth:`poll` keeps the last state."""
        self._stop_following.set()

    def describe(self) -> Dict[str, Any]:
        """Platform, settings (no credentials), job id, project and every instance id."""
        with self._lock:
            instance_ids = list(self.instance_ids)
        return {
            "platform": MaxComputePlatform.name,
            "settings": self._platform.settings(),
            "job_id": self.job_id,
            "kind": self.kind,
            "name": self.name,
            "project": self._platform.project,
            "instance_ids": instance_ids,
            "unique_name": self.unique_name,
            "submitted_at": self.submitted_at,
            **({} if self._creation.started else {"created": False}),
        }


# ---------------------------------------------------------------------------------------------
# The platform


class MaxComputePlatform(Platform):
    """Runs PAI commands and SQL on MaxCompute through pyodps.

    Args:
        project: The MaxCompute project (``[odps_config] project_name``).
        endpoint: The service endpoint (``[odps_config] odps_endpoint``).
        access_id: Access key id (the runner resolves ``${ENV}``); default: from the environment.
        access_key: Access key secret; ``secret_access_key`` (pyodps' name) is accepted too.
        credential_env: Names of the two env vars the credentials come from, stored instead of
            the credentials so another process can rebuild them. Default: the variables found
            holding the given values, else ``ODPS_ACCESS_ID`` / ``ODPS_ACCESS_KEY``, then
            ``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``.
        poll_interval: Seconds between two status checks of an instance.
        query_timeout: Seconds a ``table`` metric query may run.
        logview_host: The logview server pyodps gives instances' addresses from
            (``[odps_config] log_view_host``); default: pyodps asks the endpoint.
        role_arn: The RAM role PAI jobs read OSS with (``[odps_config]`` or ``[oss_config]``
            ``role_arn``): added as ``-Darn`` to a ``PAI`` command that has none.
        odps_factory: Builds the client from ``access_id``, ``secret_access_key``, ``project``,
            ``endpoint`` keywords (default ``odps.ODPS``, its fake under ``HPO_TOOLS_FAKE_CLOUD``;
            tests pass a ``FakeODPS``).

    Raises:
        ConfigError: Missing project or endpoint, or a malformed setting.
    """

    name = "maxcompute"
    display = "MaxCompute"  # how messages name the service (cloud_job.Creation's too)
    trial_file_sections = ("odps_config",)
    metric_source_types = ("table",)
    trial_file_hint = "[odps_config] project_name / odps_endpoint"

    @classmethod
    def options_from_trial_file(cls, trial_file: TrialFileView) -> Dict[str, Any]:
        """``[odps_config] project_name, odps_endpoint, access_id, access_key``; the credentials
        default to ``[oss_config]``'s (as in the classic files)."""
        section = trial_file.section("odps_config")
        if section is None:
            raise ConfigError(
                f"{trial_file.source}: [odps_config] is required for the MaxCompute platform",
                source=trial_file.source, section="odps_config",
            )
        section.check_keys((
            "project_name", "odps_endpoint", "end_point", "access_id", "access_key",
            "log_view_host", "role_arn",
        ))
        project = section.require("project_name")
        # end_point: hpo_tools 0.1.x's name of odps_endpoint.
        endpoint = section.get("odps_endpoint") or section.get("end_point")
        if not endpoint:
            raise section.error("odps_endpoint", "is required but missing (or end_point)")
        access_id, access_key = section.get("access_id"), section.get("access_key")
        role_arn = section.get("role_arn")
        oss = trial_file.section("oss_config")
        if oss is not None:
            access_id = access_id or oss.get("accessKeyID")
            access_key = access_key or oss.get("accessKeySecret")
            role_arn = role_arn or oss.get("role_arn")
        options = {
            "project": project,
            "endpoint": endpoint,
            "access_id": access_id,
            "secret_access_key": access_key,
        }
        if section.get("log_view_host"):
            options["logview_host"] = section.get("log_view_host")
        if role_arn:
            options["role_arn"] = role_arn
        return options

    @classmethod
    def shape_command(cls, text: str) -> str:
        """The command as written (lines kept); a malformed ``PAI ...`` is a ConfigError now,
        not when its turn comes."""
        parse_command(text)
        return text

    def metric_source(self, type_name: str, location: str, spec: Any) -> "TableSource":
        """``metric_type=table``: the SQL query ``location``, run on this platform."""
        if type_name.strip().lower() != "table":
            return super().metric_source(type_name, location, spec)
        return self.table_source(location, spec)

    def __init__(
        self,
        *,
        project: str = "",
        endpoint: str = "",
        access_id: Optional[str] = None,
        access_key: Optional[str] = None,
        secret_access_key: Optional[str] = None,
        credential_env: Any = None,
        poll_interval: Any = 5.0,
        query_timeout: Any = 600.0,
        logview_host: Optional[str] = None,
        role_arn: Optional[str] = None,
        odps_factory: Optional[Callable[..., Any]] = None,
    ) -> None:
        if not project or not endpoint:
            missing = "project" if not project else "endpoint"
            raise ConfigError(
                f"platform MaxCompute: {missing} is missing ([odps_config] project_name and "
                "odps_endpoint)"
            )
        access_key = access_key or secret_access_key
        env_names = credential_env_pair(credential_env, "MaxCompute", DEFAULT_CREDENTIAL_ENV[0])
        if env_names is None and access_id and access_key:
            env_names = env_names_holding(access_id, access_key, DEFAULT_CREDENTIAL_ENV)
        self._settings = MaxComputeSettings(
            project=str(project),
            endpoint=str(endpoint),
            credential_env=env_names,
            access_id=access_id or None,
            access_key=access_key or None,
        )
        self.poll_interval = _seconds("poll_interval", poll_interval)
        self.query_timeout = _seconds("query_timeout", query_timeout)
        self.logview_host = str(logview_host) if logview_host else None
        self.role_arn = str(role_arn) if role_arn else None
        self._factory = odps_factory or _default_odps_factory
        self._client: Any = None
        self._client_lock = threading.Lock()
        self._closed = threading.Event()
        self._interrupted = False  # set by interrupt(), from a signal handler: no lock
        self._jobs: List[MaxComputeJob] = []
        self._jobs_lock = threading.Lock()

    @property
    def project(self) -> str:
        """The project jobs run in."""
        return self._settings.project

    def __repr__(self) -> str:
        return f"MaxComputePlatform({self._settings!r})"

    def settings(self) -> Dict[str, Any]:
        """Project, endpoint, env var names of the credentials, intervals: never credentials."""
        names = self._settings.credential_env or DEFAULT_CREDENTIAL_ENV[0]
        return {
            "project": self._settings.project,
            "endpoint": self._settings.endpoint,
            "credential_env": list(names),
            "poll_interval": self.poll_interval,
            "query_timeout": self.query_timeout,
            "logview_host": self.logview_host,
            "role_arn": self.role_arn,
        }

    def client(self) -> Any:
        """The pyodps ``ODPS`` client, built on first use."""
        with self._client_lock:
            if self._client is None:
                access_id, access_key = self._settings.credentials()
                extra = {"logview_host": self.logview_host} if self.logview_host else {}
                self._client = self._factory(
                    access_id=access_id,
                    secret_access_key=access_key,
                    project=self._settings.project,
                    endpoint=self._settings.endpoint,
                    **extra,
                )
            return self._client

    def submit(
        self,
        command: str,
        *,
        log_path: Path,
        env: Optional[Mapping[str, str]] = None,
        on_update: Optional[UpdateCallback] = None,
        output_filter: Optional[OutputFilter] = None,
    ) -> MaxComputeJob:
        """Submit ``command`` (``PAI ...`` -> run_xflow, else run_sql) and follow it.

        The client's construction and the submit run in a thread; this one waits in 50 ms
        slices and, after :meth:`interrupt`, returns at once a PENDING job (the runner cancels
        it). After :meth:`interrupt` (or :meth:`close`) nothing is submitted: the job is
        CANCELLED and its description says ``created: false``. ``env`` has no meaning on
        MaxCompute and is ignored (but for the command's name, in the log).

        Raises:
            ConfigError: A malformed PAI command.
            PlatformError: MaxCompute refused the job, no credentials, or the submit failed
                without an answer (an instance it created anyway was looked for and stopped).
        """
        parsed = parse_command(command)
        log_path = Path(log_path)
        log_path.parent.mkdir(parents=True, exist_ok=True)
        self._settings.credentials()  # none: an error now, on this thread
        what = f"PAI -name {parsed.name}" if parsed.kind == "xflow" else "SQL"
        name = str((env or {}).get(COMMAND_ENV, ""))
        submission = Submission(request=parsed, unique_name=str(uuid.uuid4()),
                                scope=self.project, summary=f"{name} {what}".strip())
        creation = Creation(self, submission)
        if self._stop_queries():
            return self._not_created(creation, parsed, log_path, on_update)
        job = MaxComputeJob(
            creation, parsed, platform=self, log_path=log_path,
            on_update=on_update, output_filter=output_filter,
        )
        # Recorded (pending, with its tag) before anything is sent: a runner killed from here
        # on leaves a record that a sweep looks up by the tag.
        job._notify()
        creation.start()
        while not creation.done.wait(_SUBMIT_TICK):
            if self._stop_queries():
                break  # the runner cancels the job next: hand it back unconfirmed
        if creation.done.is_set() and isinstance(creation.error, _NotSubmitted):
            creation.started = False  # the registry's sweep has nothing to look for
            job._finish(JobState.CANCELLED, "not created: the trial was being cancelled")
            return job
        if creation.done.is_set() and creation.error is not None:
            self._submit_failed(job, what)
        if creation.done.is_set():
            job._answered(creation.result)  # the registry holds the instance id at once
        if job.instance_ids:
            job.write_log(f"[maxcompute] submitted {parsed.kind} {parsed.name} instance "
                          f"{job.job_id}".replace("  ", " "))
        else:
            job.write_log(f"[maxcompute] submitted {parsed.kind} {parsed.name} tagged "
                          f"{submission.unique_name} (MaxCompute has not answered yet)"
                          .replace("  ", " "))
        with self._jobs_lock:
            self._jobs.append(job)
        job._start_following()  # its logview and status: in the job's thread, off this one
        return job

    def create(self, submission: Submission) -> Any:
        """The submit (in the submission's thread): build the client, run the command tagged
        with ``submission.unique_name``; the instance."""
        client = self.client()
        if self._stop_queries():  # interrupted while the client was built: send nothing
            raise _NotSubmitted("not submitted: the trial was being cancelled")
        parsed: ParsedCommand = submission.request
        tag = submission.unique_name
        if parsed.kind == "xflow":
            _logger.info(
                "submitting PAI -name %s -project %s with parameters %s (tag %s)",
                parsed.name, parsed.project or "(default)", ", ".join(parsed.parameters), tag,
            )
            parameters = dict(parsed.parameters)
            if self.role_arn and "arn" not in parameters:
                # The role PAI reads OSS with ([odps_config] / [oss_config] role_arn).
                parameters["arn"] = self.role_arn
            return client.run_xflow(parsed.name, parsed.project or None, parameters,
                                    hints={TAG_HINT: tag})
        _logger.info("submitting SQL (%d characters, tag %s)", len(parsed.sql), tag)
        return client.run_sql(parsed.sql, unique_identifier_id=tag)

    def stop_job(self, instance_id: str, timeout: float = _CANCEL_TIMEOUT) -> bool:
        """Stop the instance within ``timeout`` s (a submit's late instance); never raises."""
        stop = (instance_id, lambda: self.client().stop_instance(instance_id,
                                                                 project=self.project))
        return _stop_all([stop], timeout) == 1

    def unsent(self) -> bool:
        """Whether a submit still building the client is certain to send nothing (it looks at
        :meth:`interrupt` once the client is built)."""
        return self._client is None and self._stop_queries()

    def _not_created(self, creation: Creation, parsed: ParsedCommand, log_path: Path,
                     on_update: Optional[UpdateCallback]) -> MaxComputeJob:
        """The job of a submit that came after :meth:`interrupt`: CANCELLED, never sent."""
        creation.started = False
        creation.done.set()
        job = MaxComputeJob(creation, parsed, platform=self, log_path=log_path,
                            on_update=on_update, output_filter=None)
        job._finish(JobState.CANCELLED, "not created: the trial was being cancelled")
        return job

    def _submit_failed(self, job: MaxComputeJob, what: str) -> None:
        """Raise for the failed submit of ``job``; one that failed without an answer from
        MaxCompute (no error code) may have created the instance all the same: it is looked
        for and stopped. The job ends either way (the registry records it, with the instances
        found).

        Raises:
            HpoError: nothing was sent (no credentials, ...), or MaxCompute refused the job.
            CreateUnanswered: no answer (``launched`` when an instance was found and
                stopped).
        """
        err = job._creation.error
        assert err is not None
        if isinstance(err, HpoError):  # no credentials, ...: nothing was sent
            job._creation.started = False
            job._finish(JobState.FAILED, f"not submitted: {err}")
            raise err
        message = (f"platform MaxCompute: submitting {what} to project {self.project!r} "
                   f"failed: {str(err).splitlines()[0] if str(err) else type(err).__name__}")
        if self._client is None:  # building the client failed: nothing was sent
            job._creation.started = False
            job._finish(JobState.FAILED, message)
            raise PlatformError(message) from err
        if getattr(err, "code", None):  # MaxCompute answered: nothing was created
            job._finish(JobState.FAILED, message)
            raise PlatformError(message) from err
        found = self.search_and_stop(job.description_for_search(), 2 * _CANCEL_TIMEOUT)
        if found:
            message += f" (MaxCompute had created it anyway as {', '.join(found)}: stopped)"
            with job._lock:
                job.instance_ids[:0] = [i for i in found if i not in job.instance_ids]
        job._finish(JobState.CANCELLED if found else JobState.FAILED, message)
        raise CreateUnanswered(message, launched=bool(found)) from err

    # -- finding a submission by its tag -----------------------------------------------------

    def search(self, description: Mapping[str, Any]) -> List[Tuple[str, bool]]:
        """``(instance id, terminated)`` of the instances tagged ``description["unique_name"]``
        among this user's instances started since shortly before ``submitted_at``."""
        tag = str(description.get("unique_name") or "")
        kind = str(description.get("kind") or "")
        project = str(description.get("project") or self.project)
        since = float(description.get("submitted_at") or 0) - _SEARCH_SLACK
        client = self.client()
        found = []
        for instance in client.list_instances(project=project, start_time=int(max(0, since)),
                                              only_owner=True):
            if _tag_of(client, instance, kind, project) == tag:
                found.append((str(instance.id), bool(instance.is_terminated())))
        return found

    def search_and_stop(self, description: Mapping[str, Any], timeout: float) -> List[str]:
        """:meth:`search`, then stop the live ones, within about ``timeout`` s; the ids found
        (empty when none was, or the search did not answer in time)."""
        deadline = time.monotonic() + max(0.0, timeout)
        tag = description.get("unique_name")
        if self._client is None:  # being built by the submit, which sends nothing before
            return []
        ok, found = bounded(f"odps-search-{tag}", lambda: self.search(description),
                            max(0.0, timeout))
        if not ok:
            _logger.warning("looking for the instance tagged %s: %s", tag, first_line(found))
            return []
        live = [instance_id for instance_id, terminated in found if not terminated]
        if live:
            _logger.info("stopping instances %s, found by their tag %s", ", ".join(live), tag)
            project = str(description.get("project") or self.project)
            client = self.client()
            _stop_all([(i, lambda i=i: client.stop_instance(i, project=project)) for i in live],
                      max(0.1, deadline - time.monotonic()))
        return [instance_id for instance_id, _ in found]

    def cancel_described(self, description: Mapping[str, Any]) -> bool:
        """Stop every instance of the description that has not terminated (within 2.5 s); one
        whose submit never answered is looked for by its tag (and stopped when live).

        Raises:
            PlatformError: No instance ids and no tag.
            JobNotFoundYet: no instance with the tag yet while its submit may still create it
                (within 600 s of the submit): the registry keeps it live and the next sweep
                looks again (or closes it once its runner has ended).
        """
        return self.cancel_and_identify(description)[0]

    def cancel_and_identify(self, description: Mapping[str, Any]) -> Tuple[bool, Dict[str, Any]]:
        """:meth:`cancel_described`, and what the call learned for the job's record:
        ``{"instance_ids": [...]}`` when a submission that never answered was found by its tag.

        Raises:
            PlatformError, JobNotFoundYet: as :meth:`cancel_described`.
        """
        if description.get("created") is False:  # never sent: nothing to stop
            return False, {}
        instance_ids = [str(i) for i in description.get("instance_ids") or []]
        job_id = str(description.get("job_id") or "")
        if not instance_ids and job_id and not job_id.startswith(PENDING_PREFIX):
            instance_ids = [job_id]
        if not instance_ids:
            return self._cancel_by_tag(description, job_id)
        return self._cancel_instances(description, instance_ids), {}

    def _cancel_instances(self, description: Mapping[str, Any], instance_ids: List[str]) -> bool:
        """Stop those of ``instance_ids`` that have not terminated; whether any had not."""
        project = str(description.get("project") or self.project)
        client = self.client()
        live = []
        for instance_id in instance_ids:
            try:
                terminated = client.get_instance(instance_id, project=project).is_terminated()
            except Exception as err:  # unknown: try to stop it anyway
                _logger.info("status of instance %s unknown: %s", instance_id, err)
                terminated = False
            if not terminated:
                live.append(instance_id)
        if not live:
            return False
        _logger.info("stopping maxcompute instances %s from their description", ", ".join(live))
        stops = [
            (instance_id, lambda i=instance_id: client.stop_instance(i, project=project))
            for instance_id in reversed(live)
        ]
        _stop_all(stops, _CANCEL_TIMEOUT)
        return True

    def _cancel_by_tag(self, description: Mapping[str, Any],
                       job_id: str) -> Tuple[bool, Dict[str, Any]]:
        """A described job whose submit never answered: look for its tag, stop what lives;
        whether something lived, and the instances found."""
        tag = str(description.get("unique_name") or job_id[len(PENDING_PREFIX):])
        if not tag:
            raise PlatformError(f"maxcompute job description lacks instance ids: {description!r}")
        found = self.search({**description, "unique_name": tag})
        live = [instance_id for instance_id, terminated in found if not terminated]
        if live:
            project = str(description.get("project") or self.project)
            client = self.client()
            _logger.info("stopping maxcompute instances %s, found by their tag %s",
                         ", ".join(live), tag)
            _stop_all([(i, lambda i=i: client.stop_instance(i, project=project)) for i in live],
                      _CANCEL_TIMEOUT)
        if found:
            return bool(live), {"instance_ids": [instance_id for instance_id, _ in found]}
        if time.time() - float(description.get("submitted_at") or 0) < SEARCH_WINDOW:
            raise JobNotFoundYet(f"no MaxCompute instance tagged {tag} yet (its submit had "
                                 "not answered); looked for again by the next cancel",
                                 unique_name=tag)
        return False, {}

    # -- the table metric source -------------------------------------------------------------

    def run_query(self, sql: str) -> List[Dict[str, Any]]:
        """Run ``sql`` and return its rows as dicts (column -> value).

        The query's pyodps calls run in a daemon thread (any of them can hang on the network);
        this thread waits for it and gives up within 0.1 s of :meth:`interrupt` or
        :meth:`close`, stopping the query instance. Our own wait loop (pyodps' would swallow
        KeyboardInterrupt), bounded by ``query_timeout``.

        Raises:
            MetricReadError: The query failed, timed out, was interrupted or the platform closed.
        """
        query = _Query()
        # The client's construction too (it asks the endpoint: ~6 s offline).
        worker = threading.Thread(target=query.run,
                                  args=(lambda: self._query(self.client(), sql, query),),
                                  name="odps-metric-query", daemon=True)
        worker.start()
        try:
            while not (query.done.wait(_INTERRUPT_TICK) or self._stop_queries()):
                pass
            if self._stop_queries():
                # The trial's jobs are cancelled next: a slow stop of this query goes on
                # in its thread and must not use up their time.
                query.stop(_INTERRUPTED_STOP_TIMEOUT)
                raise MetricReadError(f"metric_source table: query {query.name()} was interrupted")
        except BaseException:  # KeyboardInterrupt without the runner's handler, or the above
            query.stop(_INTERRUPTED_STOP_TIMEOUT)
            raise
        if query.error is not None:
            raise query.error
        return query.rows

    def _query(self, client: Any, sql: str, query: _Query) -> List[Dict[str, Any]]:
        """The query's pyodps calls (in the query's thread)."""
        try:
            instance = client.run_sql(sql)
        except Exception as err:
            raise MetricReadError(f"metric_source table: query failed to start: {err}") from err
        query.started(instance)
        deadline = time.monotonic() + self.query_timeout
        pause = min(1.0, self.poll_interval) if self.poll_interval > 0 else 0.0
        try:
            while not instance.is_terminated():
                if self._stop_queries():  # the waiting thread stops the instance and says so
                    return []
                if time.monotonic() > deadline:
                    query.stop(_CANCEL_TIMEOUT)
                    raise MetricReadError(f"metric_source table: query instance {instance.id} "
                                          f"did not finish in {self.query_timeout:g} s")
                self._pause(pause)
            if not instance.is_successful():
                raise MetricReadError(f"metric_source table: query instance {instance.id} failed")
            with instance.open_reader() as reader:
                return [dict(record) for record in reader]
        except MetricReadError:  # ours, from the loop above: as it is
            raise
        except Exception as err:
            raise MetricReadError(f"metric_source table: reading query results: {err}") from err

    def table_source(self, location: str, spec: MetricSpec) -> TableSource:
        """The ``table`` metric source for the query ``location``, run by this platform."""
        return TableSource(location, spec, run_query=self.run_query)

    def _stop_queries(self) -> bool:
        """Whether metric queries must give up (:meth:`interrupt` or :meth:`close` came)."""
        return self._interrupted or self._closed.is_set()

    def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, waking within 0.1 s of :meth:`close` or :meth:`interrupt`."""
        end = time.monotonic() + seconds
        while not self._interrupted:
            left = end - time.monotonic()
            if left <= 0 or self._closed.wait(min(left, _INTERRUPT_TICK)):
                return

    def interrupt(self) -> None:
        """Make a running ``table`` metric query stop within 0.1 s; safe in a signal handler.

        The runner calls it from its SIGINT/SIGTERM handler, so that a long metric query does not
        hold up the cancellation past NNI's 5 s: it only sets a flag (no lock, cannot raise).
        """
        self._interrupted = True

    def close(self) -> None:
        """Interrupt running metric queries and stop following jobs; the jobs keep running."""
        self._closed.set()
        with self._jobs_lock:
            jobs, self._jobs = self._jobs, []
        for job in jobs:
            job.close()


def _tag_of(client: Any, instance: Any, kind: str, project: str) -> Optional[str]:
    """The tag ``instance`` was submitted with (None: not one of ours, or unreadable): an SQL
    job's ``unique_identifier_id``, a PAI instance's ``hpo_tools.tag`` property."""
    try:
        if kind == "xflow":
            xflow = client.get_project(project).xflows.get_xflow_instance(instance)
            return (xflow.properties or {}).get(TAG_HINT)
        return instance.get_unique_identifier_id()
    except Exception as err:  # another kind of instance (its source reads otherwise), gone
        _logger.debug("no tag on instance %s: %s", getattr(instance, "id", instance), err)
        return None


def _seconds(name: str, value: Any) -> float:
    try:
        number = float(value)
    except (TypeError, ValueError):
        number = float("nan")
    if not math.isfinite(number) or number < 0:
        raise ConfigError(f"platform MaxCompute: {name}={value!r} is not a number of seconds")
    return number


# ---------------------------------------------------------------------------------------------
# The `table` metric source


def _number(value: Any) -> Optional[float]:
    if isinstance(value, bool) or value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


class TableSource(MetricSource):
    """Metrics in the rows of an SQL query's result (``metric_type=table``).

    Each row is one step: its ``step`` (or ``global_step``) column, else its position (1, 2, ...);
    the metric values are the columns named like the keys of ``metric_dict`` (MaxCompute column
    names are lower case, so the match ignores case). The query runs at most every
    ``min_interval`` seconds while the job runs, and once more when the follower drains.

    Args:
        location: The SQL query, e.g. ``SELECT step, auc FROM eval_result WHERE trial='t1'``.
        spec: The metric spec (its keys pick the columns).
        run_query: Runs an SQL query, returns rows as dicts.
        min_interval: Seconds between two queries while polling.
    """

    type_name = "table"

    def __init__(
        self,
        location: str,
        spec: MetricSpec,
        *,
        run_query: Callable[[str], List[Dict[str, Any]]],
        min_interval: float = 60.0,
    ) -> None:
        super().__init__(location)
        self._keys = list(getattr(spec, "weights", {}) or {})
        self._run_query = run_query
        self._min_interval = min_interval
        self._last_query = float("-inf")
        self._seen: Dict[int, Dict[str, float]] = {}
        self._rows_seen = False

    def poll(self) -> List[MetricPoint]:
        """New steps, querying at most every ``min_interval`` s."""
        if time.monotonic() - self._last_query < self._min_interval:
            return []
        return self._query()

    def drain(self) -> List[MetricPoint]:
        """Query now, whatever the interval: the job is over."""
        return self._query()

    def found(self) -> bool:
        """False until a query returned a row."""
        return self._rows_seen

    def _query(self) -> List[MetricPoint]:
        self._last_query = time.monotonic()
        rows = self._run_query(self.location)
        points = []
        for position, row in enumerate(rows, start=1):
            self._rows_seen = True
            lower = {str(k).lower(): v for k, v in row.items()}
            step = position
            for column in _STEP_COLUMNS:
                number = _number(lower.get(column))
                if number is not None and number.is_integer():
                    step = int(number)
                    break
            values = {}
            for key in self._keys:
                number = _number(lower.get(key.lower()))
                if number is not None:
                    values[key] = number
            if not values or self._seen.get(step) == values:
                continue
            self._seen[step] = values
            points.append(MetricPoint(step, values))
        return points
