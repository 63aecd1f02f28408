"""The job registry: one durable JSON record per trial, so jobs can be found after their runner.

Records live at ``E/hpo-tools/jobs/<trial_id>.json`` (``E`` = the experiment directory). The trial
runner saves one whenever a job starts or changes state; the assessor's ``trial_end`` and
``hpo-tools kill`` read them to cancel jobs still live (:meth:`JobRegistry.cancel_live`), and
``resume=1`` reads them to skip commands that already succeeded. Writes are atomic
(:func:`hpo_tools.storage.write_json_atomic`: temp file in the same directory + ``os.replace``; a
failed write raises ``StorageError``) and serialised between processes with a lock file; a job
marked cancelled by another process stays cancelled (see :meth:`JobRegistry.save`). Records never
hold credentials: only the platform's non-secret settings and each job's ``describe()``.

A cloud job is recorded *pending* before its create is sent, with the unique name (or tag) the
create gives it; each entry also names the process that recorded it (:func:`this_process`).
A sweep looks a pending job up by that name (``cancel_and_identify``), stops it and records its
id; when nothing has the name yet, the entry stays live while the runner that sent the create
may still be waiting for it, and is closed as never created once that runner has ended.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime
import json
import logging
import os
import re
import socket
import threading
import time
import traceback
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, Dict, Iterable, List, Optional, Set, Tuple, Union

from hpo_tools.platforms.base import Job, JobState, Platform, platform_for_description
from hpo_tools.platforms.cloud_job import JobNotFoundYet
from hpo_tools.platforms.local import read_proc_stat
from hpo_tools.secrets import SecretMasker, credential_env_names, is_credential_name
from hpo_tools.storage import write_json_atomic

__all__ = ["JobEntry", "TrialRecord", "JobRegistry", "RECORD_VERSION", "process_alive",
           "this_process"]

_logger = logging.getLogger(__name__)

RECORD_VERSION = 1
_SUBDIR = Path("hpo-tools") / "jobs"
_TRIAL_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
# Trials cancelled at the same time by cancel_all_live (each one's jobs in parallel again).
_MAX_PARALLEL_TRIALS = 8

try:  # pragma: no cover - always there on Linux and macOS
    import fcntl
except ImportError:  # pragma: no cover - Windows: records are still atomic, just not locked
    fcntl = None  # type: ignore[assignment]


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def _boot_id() -> str:
    try:
        with open("/proc/sys/kernel/random/boot_id", encoding="ascii") as handle:
            return handle.read().strip()
    except OSError:
        return ""


def _pid_namespace() -> str:
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def this_process() -> Dict[str, Any]:
    """This process, as a later sweep in another process tells whether it still lives: pid,
    start time (``/proc/<pid>/stat`` field 22: pids are reused), boot id, pid namespace, host.
    Empty where there is no ``/proc`` (then nobody can tell)."""
    stat = read_proc_stat(os.getpid())
    if stat is None:
        return {}
    return {"pid": os.getpid(), "start_time": stat.start_time, "boot_id": _boot_id(),
            "pid_namespace": _pid_namespace(), "host": socket.gethostname()}


def process_alive(process: Mapping[str, Any]) -> Optional[bool]:
    """Whether the process :func:`this_process` described (in another process) still lives.

    Returns:
        True or False; None when this process cannot tell (nothing recorded, another host or
        pid namespace, no ``/proc``).
    """
    here = this_process()
    if not process or not here or process.get("host") != here["host"]:
        return None
    if process.get("boot_id") and process.get("boot_id") != here["boot_id"]:
        return False  # the machine rebooted since: every process of then is gone
    if process.get("pid_namespace") != here["pid_namespace"]:
        return None
    try:
        pid = int(process["pid"])
    except (KeyError, TypeError, ValueError):
        return None
    stat = read_proc_stat(pid)
    if stat is None:
        try:
            os.kill(pid, 0)  # sends nothing: does the pid exist (hidden from /proc)?
        except ProcessLookupError:
            return False
        except OSError:  # EPERM: someone else's process of that pid
            return None
        return None
    return stat.is_alive and stat.start_time == process.get("start_time")


def _masker(descriptions: Iterable[Mapping[str, Any]] = ()) -> SecretMasker:
    """A masker for this process's credentials: the values of credential-looking env vars and
    of the env vars the descriptions' platforms take credentials from (``credential_env``).

    Cancelling runs in the assessor's or ``hpo-tools kill``'s process, where no trial masker
    filters the log: an SDK error quoting the key it refused must be masked here.
    """
    masker = SecretMasker()
    masker.add_env(credential_env_names(os.environ), os.environ)
    for description in descriptions:
        settings = description.get("settings") if isinstance(description, Mapping) else None
        for where in (description, settings):
            names = where.get("credential_env") if isinstance(where, Mapping) else None
            if isinstance(names, (list, tuple)):
                masker.add_env([str(n) for n in names], os.environ)
    return masker


def _masked_traceback(masker: SecretMasker) -> str:
    """The exception being handled, formatted, with the secrets masked."""
    return masker.mask(traceback.format_exc()).rstrip()


def _scrub(value: Any) -> Any:
    """``value`` without any mapping entry whose key names a credential.

    Names of the env vars that hold credentials (``credential_env``) are not secret and are kept.
    """
    if isinstance(value, Mapping):
        kept = {}
        for key, item in value.items():
            key = str(key)
            if key.endswith("_env"):  # names of env vars, not their values
                kept[key] = item
            elif not is_credential_name(key):  # a credential: dropped wherever it appears
                kept[key] = _scrub(item)
        return kept
    if isinstance(value, (list, tuple)):
        return [_scrub(v) for v in value]
    return value


@dataclasses.dataclass
class JobEntry:
    """One job of a trial, as the registry stores it.

    Attributes:
        command_index: Which of the trial's commands (1 for ``cmd1``) the job runs.
        job_id: The platform's id for the job.
        state: The last state seen.
        description: ``Job.describe()``: what another process needs to cancel it.
        logview: Where users can watch the job, when the platform has such a page.
        message: Why it failed or was cancelled.
        updated_at: When the entry last changed (ISO 8601, UTC).
        runner: The process that recorded the job (:func:`this_process`): while it lives, a
            job whose create never answered may still appear.
    """

    command_index: int
    job_id: str
    state: JobState
    description: Dict[str, Any] = dataclasses.field(default_factory=dict)
    logview: Optional[str] = None
    message: str = ""
    updated_at: str = dataclasses.field(default_factory=_now)
    runner: Dict[str, Any] = dataclasses.field(default_factory=dict)

    @property
    def unique_name(self) -> str:
        """The name (or tag) the platform gave the job's submission, ``""`` when none."""
        return str(self.description.get("unique_name") or "")

    def key(self) -> Tuple[int, str]:
        """What names the job across a rename of its id (pending -> the service's)."""
        return (self.command_index, self.unique_name or self.job_id)

    def to_json(self) -> Dict[str, Any]:
        """A JSON-safe dict (state as its lower-case name)."""
        return {
            "command_index": self.command_index,
            "job_id": self.job_id,
            "state": self.state.value,
            "description": _scrub(self.description),
            "logview": self.logview,
            "message": self.message,
            "updated_at": self.updated_at,
            "runner": dict(self.runner),
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> JobEntry:
        """The entry stored as ``data``."""
        return cls(
            command_index=int(data["command_index"]),
            job_id=str(data["job_id"]),
            state=JobState.parse(data["state"]),
            description=dict(data.get("description") or {}),
            logview=data.get("logview"),
            message=str(data.get("message") or ""),
            updated_at=str(data.get("updated_at") or ""),
            runner=dict(data.get("runner") or {}),
        )


@dataclasses.dataclass
class TrialRecord:
    """Everything the registry knows about one trial's jobs.

    Attributes:
        trial_id: NNI's trial id (``standalone`` outside NNI).
        experiment_id: NNI's experiment id.
        trial_dir: The trial directory (logs, params.json, result.json).
        platform: The platform's registry name (``local``, ``maxcompute``).
        settings: The platform's non-secret settings.
        jobs: Every job submitted for the trial, in submission order.
        finished_stages: Stages (e.g. finetune days) done, for resuming.
        state: The trial's state: PENDING until a job starts, then RUNNING, then finished.
        created_at: When the record was made (ISO 8601, UTC).
        updated_at: When it was last saved.
    """

    trial_id: str
    experiment_id: str = ""
    trial_dir: str = ""
    platform: str = ""
    settings: Dict[str, Any] = dataclasses.field(default_factory=dict)
    jobs: List[JobEntry] = dataclasses.field(default_factory=list)
    finished_stages: List[str] = dataclasses.field(default_factory=list)
    state: JobState = JobState.PENDING
    created_at: str = dataclasses.field(default_factory=_now)
    updated_at: str = ""

    def entry(self, command_index: int, job_id: str,
              unique_name: str = "") -> Optional[JobEntry]:
        """The entry of job ``job_id`` for command ``command_index``, if recorded; with
        ``unique_name``, also the entry of that submission under another id (a job recorded
        pending before its create answered, then under the service's id)."""
        for entry in self.jobs:
            if entry.command_index == command_index and entry.job_id == job_id:
                return entry
        if unique_name:
            for entry in self.jobs:
                if entry.command_index == command_index and entry.unique_name == unique_name:
                    return entry
        return None

    def live_jobs(self) -> List[JobEntry]:
        """Entries whose last state is not finished."""
        return [entry for entry in self.jobs if not entry.state.is_finished]

    def to_json(self) -> Dict[str, Any]:
        """A JSON-safe dict, credentials scrubbed."""
        return {
            "version": RECORD_VERSION,
            "trial_id": self.trial_id,
            "experiment_id": self.experiment_id,
            "trial_dir": self.trial_dir,
            "platform": self.platform,
            "settings": _scrub(self.settings),
            "state": self.state.value,
            "jobs": [entry.to_json() for entry in self.jobs],
            "finished_stages": list(self.finished_stages),
            "created_at": self.created_at,
            "updated_at": self.updated_at,
        }

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> TrialRecord:
        """The record stored as ``data``."""
        return cls(
            trial_id=str(data["trial_id"]),
            experiment_id=str(data.get("experiment_id") or ""),
            trial_dir=str(data.get("trial_dir") or ""),
            platform=str(data.get("platform") or ""),
            settings=dict(data.get("settings") or {}),
            jobs=[JobEntry.from_json(item) for item in data.get("jobs") or []],
            finished_stages=[str(s) for s in data.get("finished_stages") or []],
            state=JobState.parse(data.get("state") or "pending"),
            created_at=str(data.get("created_at") or ""),
            updated_at=str(data.get("updated_at") or ""),
        )


#: The key of a link record (:meth:`JobRegistry.link`): the registry's experiment directory.
_LINK_KEY = "registry_dir"


class JobRegistry:
    """Per-trial job records under ``<experiment_dir>/hpo-tools/jobs/``.

    Args:
        experiment_dir: The experiment directory ``E``.
        platform_overrides: Settings added when rebuilding a platform to cancel its jobs, per
            platform name (tests inject ``{"maxcompute": {"odps_factory": ...}}``).

    Example:
        >>> registry = JobRegistry(exp_dir)
        >>> record = registry.load("trial1") or registry.new("trial1", platform="local")
        >>> job = platform.submit("python train.py", log_path=log)
        >>> registry.mark_job(record, 1, job, JobState.RUNNING)
    """

    def __init__(
        self,
        experiment_dir: Union[str, os.PathLike],
        *,
        platform_overrides: Optional[Mapping[str, Mapping[str, Any]]] = None,
    ) -> None:
        self.experiment_dir = Path(experiment_dir)
        self.directory = self.experiment_dir / _SUBDIR
        self._overrides = {k.lower(): dict(v) for k, v in (platform_overrides or {}).items()}
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"JobRegistry({str(self.experiment_dir)!r})"

    # -- files -------------------------------------------------------------------------------

    def path(self, trial_id: str) -> Path:
        """The record file of ``trial_id``."""
        if not _TRIAL_ID.match(str(trial_id)):
            raise ValueError(f"trial id {trial_id!r} is not a plain name ([A-Za-z0-9_.-]+)")
        return self.directory / f"{trial_id}.json"

    @contextlib.contextmanager
    def _locked(self, trial_id: str) -> Iterator[None]:
        """Hold the trial's lock file (between processes) and a lock between threads."""
        self.directory.mkdir(parents=True, exist_ok=True)
        with self._thread_lock:
            if fcntl is None:  # pragma: no cover
                yield
                return
            with open(self.directory / f".{trial_id}.lock", "a+b") as handle:
                fcntl.flock(handle.fileno(), fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle.fileno(), fcntl.LOCK_UN)

    def _raw(self, trial_id: str) -> Any:
        path = self.path(trial_id)
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return None
        except ValueError as err:
            _logger.warning("ignoring unreadable job record %s: %s", path, err)
            return None

    def _read(self, trial_id: str) -> Optional[TrialRecord]:
        data = self._raw(trial_id)
        if data is None or (isinstance(data, dict) and _LINK_KEY in data):
            return None
        try:
            return TrialRecord.from_json(data)
        except (ValueError, KeyError, TypeError) as err:
            _logger.warning("ignoring unreadable job record %s: %s", self.path(trial_id), err)
            return None

    def link(self, trial_id: str, registry_dir: Union[str, os.PathLike]) -> None:
        """Record that ``trial_id``'s jobs are in the registry of ``registry_dir`` (a runner
        given ``--exp_dir`` under NNI): :meth:`load`, :meth:`records`, :meth:`cancel_live` and
        :meth:`cancel_all_live` of this registry follow the link, so the assessor's
        ``trial_end`` and ``hpo-tools kill``, which look in NNI's experiment directory, find
        them. A real record of the trial here is never replaced by a link."""
        target = Path(registry_dir).absolute()
        if target == self.experiment_dir.absolute():
            return
        with self._locked(trial_id):
            data = self._raw(trial_id)
            if data is not None and not (isinstance(data, dict) and _LINK_KEY in data):
                return
            write_json_atomic(self.path(trial_id), {"trial_id": str(trial_id),
                                                    _LINK_KEY: str(target)})

    def _linked(self, trial_id: str) -> Optional[JobRegistry]:
        """The registry a link record of ``trial_id`` points to, or None."""
        data = self._raw(trial_id)
        if not (isinstance(data, dict) and isinstance(data.get(_LINK_KEY), str)):
            return None
        target = Path(data[_LINK_KEY])
        if target.absolute() == self.experiment_dir.absolute():
            return None
        return JobRegistry(target, platform_overrides=self._overrides)

    def _write(self, record: TrialRecord) -> None:
        record.updated_at = _now()
        write_json_atomic(self.path(record.trial_id), record.to_json(), sort_keys=True)

    # -- records -----------------------------------------------------------------------------

    def new(
        self,
        trial_id: str,
        *,
        experiment_id: str = "",
        trial_dir: Union[str, os.PathLike] = "",
        platform: Union[str, Platform] = "",
        settings: Optional[Mapping[str, Any]] = None,
    ) -> TrialRecord:
        """A fresh record for ``trial_id`` (not saved yet: call :meth:`save`).

        Args:
            platform: The platform object (its name and settings are taken) or its name.
            settings: The platform's non-secret settings, when ``platform`` is a name.
        """
        self.path(trial_id)  # validates the id
        if isinstance(platform, Platform):
            name, platform_settings = platform.name, platform.settings()
        else:
            name, platform_settings = str(platform), dict(settings or {})
        return TrialRecord(
            trial_id=str(trial_id),
            experiment_id=str(experiment_id),
            trial_dir=str(trial_dir),
            platform=name,
            settings=_scrub(platform_settings),
        )

    def load(self, trial_id: str) -> Optional[TrialRecord]:
        """The saved record of ``trial_id`` (followed through a :meth:`link`), or None when
        there is none (or it is unreadable)."""
        linked = self._linked(trial_id)
        if linked is not None:
            return linked._read(trial_id)
        return self._read(trial_id)

    def save(self, record: TrialRecord) -> None:
        """Write ``record`` atomically.

        Cancellation is sticky: when the saved record says a job was CANCELLED, e.g. by
        ``cancel_live`` in another process, and ``record`` has it pending, running or failed
        (a killed job exits non-zero), CANCELLED is kept, in the file and in ``record``. The
        same holds for the trial's state, unless ``record`` has a live job (a resumed attempt).

        Raises:
            StorageError: the record cannot be written (naming its path); the old one is intact.
        """
        with self._locked(record.trial_id):
            on_disk = self._read(record.trial_id)
            if on_disk is not None:
                _keep_cancellations(record, on_disk)
            self._write(record)

    def records(self) -> List[TrialRecord]:
        """Every readable record, sorted by trial id."""
        if not self.directory.is_dir():
            return []
        found = []
        for path in sorted(self.directory.glob("*.json")):
            record = self.load(path.stem)
            if record is not None:
                found.append(record)
        return found

    # -- helpers for the runner --------------------------------------------------------------

    def mark_job(
        self,
        record: TrialRecord,
        command_index: int,
        job: Job,
        state: Optional[JobState] = None,
    ) -> JobEntry:
        """Record ``job`` (command ``command_index``) in ``state`` and save the record.

        ``state`` defaults to ``job.poll()``. The job's description, logview and message are
        refreshed too. The trial becomes RUNNING when a job runs (a resumed trial too). A job
        recorded pending under ``<prefix>-pending:<name>`` keeps its entry when its id becomes
        the service's (found by the description's ``unique_name``). A new entry names this
        process as its runner.
        """
        if state is None:
            state = job.poll()
        description = _scrub(job.describe())
        entry = record.entry(command_index, job.job_id,
                             str(description.get("unique_name") or ""))
        if entry is None:
            entry = JobEntry(command_index=command_index, job_id=job.job_id, state=state,
                             runner=this_process())
            record.jobs.append(entry)
        entry.job_id = job.job_id
        entry.state = state
        entry.description = description
        entry.logview = job.logview
        entry.message = job.message
        entry.updated_at = _now()
        if not state.is_finished:  # also a resumed trial whose last attempt had ended
            record.state = JobState.RUNNING
        self.save(record)
        return entry

    def mark_trial(self, record: TrialRecord, state: JobState) -> None:
        """Set the trial's own state and save."""
        record.state = state
        self.save(record)

    def mark_stage_finished(self, record: TrialRecord, stage: str) -> None:
        """Remember that ``stage`` (e.g. a finetune day ``20220530``) is done, and save."""
        if stage not in record.finished_stages:
            record.finished_stages.append(str(stage))
        self.save(record)

    def succeeded_commands(self, trial_id: str) -> Set[int]:
        """Indices of the commands whose latest job succeeded (what ``resume=1`` skips)."""
        record = self.load(trial_id)
        if record is None:
            return set()
        latest: Dict[int, JobEntry] = {}
        for entry in record.jobs:
            latest[entry.command_index] = entry
        return {index for index, entry in latest.items() if entry.state is JobState.SUCCEEDED}

    # -- cancellation ------------------------------------------------------------------------

    def cancel_live(self, trial_id: str, timeout: float = 10.0) -> List[str]:
        """Cancel every job of ``trial_id`` that the record has not seen finish.

        Platforms are rebuilt from the stored descriptions (credentials from this process's
        environment). Jobs are cancelled in parallel; each one handled is marked CANCELLED.
        A job recorded before its create answered is looked up by its unique name: found, its
        id goes into the record's description; not found while the runner that sent the create
        lives, it stays live (the create may still make it); not found once that runner has
        ended, it is closed as never created (CANCELLED, ``created: false``). One job failing
        to cancel is logged and never raises; the call returns within about ``timeout``
        seconds (a job still being cancelled then keeps its state).

        Returns:
            The ids of the jobs that were still running and were told to stop.
        """
        linked = self._linked(trial_id)
        if linked is not None:
            return linked.cancel_live(trial_id, timeout)
        record = self.load(trial_id)
        if record is None:
            return []
        live = record.live_jobs()
        if not live:
            return []
        outcomes = _cancel_entries(live, self._overrides, timeout)
        stopped = [entry.job_id for entry in live
                   if entry.key() in outcomes and outcomes[entry.key()].stopped]
        with self._locked(trial_id):
            record = self._read(trial_id) or record
            changed = False
            for entry in record.jobs:
                outcome = outcomes.get(entry.key())
                if outcome is None or entry.state.is_finished:
                    continue
                if outcome.learned:  # a pending job found by its name: recorded
                    entry.description.update(_scrub(outcome.learned))
                if outcome.not_found_yet and process_alive(entry.runner) is False:
                    entry.state = JobState.CANCELLED
                    entry.description["created"] = False
                    entry.message = (f"never created: no job named {entry.unique_name or '?'} "
                                     "was found once its runner had ended")
                elif outcome.error:
                    entry.message = f"cancel failed: {outcome.error}"
                else:
                    entry.state = JobState.CANCELLED
                    entry.message = ("cancelled" if outcome.stopped
                                     else "cancelled (not running any more)")
                entry.updated_at = _now()
                changed = True
            if changed and not record.state.is_finished:
                if all(e.state.is_finished for e in record.jobs):
                    record.state = JobState.CANCELLED
            if changed:
                self._write(record)
        if stopped:
            _logger.info("trial %s: cancelled jobs %s", trial_id, ", ".join(stopped))
        return stopped

    def cancel_all_live(self, timeout: float = 30.0) -> Dict[str, List[str]]:
        """:meth:`cancel_live` for every trial with live jobs, within about ``timeout`` s overall.

        Trials are cancelled in parallel (at most :data:`_MAX_PARALLEL_TRIALS` at a time), so one
        platform that hangs (an unreachable MaxCompute) does not use up the time of the others.
        One trial failing is logged and never raises; a trial whose cancel has not returned by
        the deadline is left out of the result (its jobs keep their state).

        Returns:
            Trial id -> ids of the jobs told to stop (trials with none are left out).
        """
        deadline = time.monotonic() + timeout
        trial_ids = [record.trial_id for record in self.records() if record.live_jobs()]
        if not trial_ids:
            return {}

        def cancel_trial(trial_id: str) -> List[str]:
            return self.cancel_live(trial_id, timeout=max(0.0, deadline - time.monotonic()))

        pool = concurrent.futures.ThreadPoolExecutor(
            max_workers=min(_MAX_PARALLEL_TRIALS, len(trial_ids)),
            thread_name_prefix="hpo-tools-cancel-trial",
        )
        try:
            futures = {pool.submit(cancel_trial, trial_id): trial_id for trial_id in trial_ids}
            done, _ = concurrent.futures.wait(
                futures, timeout=max(0.0, deadline - time.monotonic())
            )
        finally:
            # Never wait here for a cancel that hangs: cancel_live bounds its own threads.
            pool.shutdown(wait=False)
        cancelled: Dict[str, List[str]] = {}
        for future, trial_id in futures.items():
            if future not in done:
                future.cancel()  # not started yet: out of time
                _logger.warning("cancel_all_live: trial %s not done within %.1f s",
                                trial_id, timeout)
                continue
            try:
                stopped = future.result()
            except Exception as err:  # one broken record must not stop the sweep
                masker = _masker()
                _logger.warning("could not cancel the jobs of trial %s: %s", trial_id,
                                masker.mask(str(err) or type(err).__name__))
                _logger.debug("%s", _masked_traceback(masker))
                continue
            if stopped:
                cancelled[trial_id] = stopped
        return dict(sorted(cancelled.items()))


def _keep_cancellations(record: TrialRecord, on_disk: TrialRecord) -> None:
    for saved in on_disk.jobs:
        if saved.state is not JobState.CANCELLED:
            continue
        entry = record.entry(saved.command_index, saved.job_id, saved.unique_name)
        if entry is None or entry.state not in (JobState.RUNNING, JobState.PENDING,
                                                JobState.FAILED):
            continue
        if saved.description.get("created") is False and \
                entry.description.get("created") is not False:
            # A sweep closed it as never created, believing its runner gone; the runner
            # saving it knows better (its create may have made the job): the runner wins.
            continue
        entry.state = JobState.CANCELLED
        entry.message = saved.message or "cancelled"
        if saved.description.get("cloud_id") and not entry.description.get("cloud_id"):
            entry.description["cloud_id"] = saved.description["cloud_id"]
    if on_disk.state is not JobState.CANCELLED:
        return
    # A trial "failed" because its jobs were killed, or still "running" in a stale record with
    # no live job, was cancelled. One with a live job is a new (resumed) attempt: keep it.
    if record.state is JobState.FAILED or (
        record.state in (JobState.PENDING, JobState.RUNNING) and not record.live_jobs()
    ):
        record.state = JobState.CANCELLED


@dataclasses.dataclass
class _Outcome:
    """What cancelling one recorded job came to.

    Attributes:
        stopped: It was live and was told to stop.
        error: Why the cancel failed (one line, masked); the job keeps its state.
        not_found_yet: The job's create never answered and no job has its name yet
            (:class:`~hpo_tools.platforms.cloud_job.JobNotFoundYet`; ``error`` says so).
        learned: What the platform found out for the record's description (the id of a job
            found by its name).
    """

    stopped: bool = False
    error: str = ""
    not_found_yet: bool = False
    learned: Dict[str, Any] = dataclasses.field(default_factory=dict)


def _cancel_described(platform: Platform,
                      description: Mapping[str, Any]) -> Tuple[bool, Dict[str, Any]]:
    """``cancel_and_identify`` where the platform has it (cloud jobs), else
    ``cancel_described`` (nothing learned)."""
    identify = getattr(platform, "cancel_and_identify", None)
    if callable(identify):
        stopped, learned = identify(description)
        return bool(stopped), dict(learned or {})
    return bool(platform.cancel_described(description)), {}


def _cancel_entries(
    entries: List[JobEntry], overrides: Mapping[str, Mapping[str, Any]], timeout: float
) -> Dict[Tuple[int, str], _Outcome]:
    """Cancel ``entries`` in parallel threads; :meth:`JobEntry.key` -> its outcome.

    Jobs whose cancel has not returned when ``timeout`` runs out are left out.
    """
    platforms: Dict[Tuple[str, str], Platform] = {}
    outcomes: Dict[Tuple[int, str], _Outcome] = {}
    lock = threading.Lock()
    masker = _masker(entry.description for entry in entries)

    def platform_for(description: Mapping[str, Any]) -> Platform:
        name = str(description.get("platform", "")).lower()
        key = (name, json.dumps(description.get("settings") or {}, sort_keys=True, default=str))
        with lock:
            if key not in platforms:
                platforms[key] = platform_for_description(description, **overrides.get(name, {}))
            return platforms[key]

    def cancel_one(entry: JobEntry) -> None:
        try:
            stopped, learned = _cancel_described(platform_for(entry.description),
                                                 entry.description)
            outcome = _Outcome(stopped=stopped, learned=learned)
        except Exception as err:  # never raise for one bad job: log and go on
            # SDK errors can quote a credential; the message also goes into the record.
            message = masker.mask(str(err)) or type(err).__name__
            log = _logger.info if isinstance(err, JobNotFoundYet) else _logger.warning
            log("could not cancel job %s (command %d): %s",
                entry.job_id, entry.command_index, message)
            _logger.debug("%s", _masked_traceback(masker))
            outcome = _Outcome(
                error=next((line for line in message.splitlines() if line.strip()), message),
                not_found_yet=isinstance(err, JobNotFoundYet))
        with lock:
            outcomes[entry.key()] = outcome

    threads = [
        threading.Thread(target=cancel_one, args=(entry,), name=f"cancel-{entry.job_id}",
                         daemon=True)
        for entry in entries
    ]
    deadline = time.monotonic() + max(0.0, timeout)
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(max(0.0, deadline - time.monotonic()))
    for entry, thread in zip(entries, threads):
        if thread.is_alive():
            _logger.warning("cancelling job %s did not finish in %.1f s", entry.job_id, timeout)
    with lock:
        result = dict(outcomes)
    for platform in platforms.values():
        with contextlib.suppress(Exception):
            platform.close()
    return result
