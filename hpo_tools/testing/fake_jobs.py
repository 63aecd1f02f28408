"""``FakeJobService``: the jobs of a fake cloud service, kept in a directory. **A fake**: what
the fake SDK clients (:mod:`hpo_tools.testing.pai_training`, :mod:`hpo_tools.testing.paiflow`)
answer with, so that every process (the runner under NNI, the assessor, ``hpo-tools kill``, a
test) sees the same jobs::

    DIR/.<service>/plan.json           how new jobs behave (optional, yours; read at each create)
    DIR/.<service>/queue.json          plans for the next jobs, in order (:meth:`plan_next`)
    DIR/.<service>/submissions.jsonl   one line per create: the request, masked
    DIR/.<service>/jobs/<id>.json      one job: its request, plan, checks so far, stops
    DIR/.<service>/stops.jsonl         one line per stop call

A *plan* (every key optional)::

    {"match": "--lr=0.2",        # plan.json rules only: text in the request
     "create": "ok",             # ok | refuse (a 400) | error (a 503, nothing created) |
                                 # lost (created, then no answer) | hang (created, then the call
                                 # hangs) | hang_before (the call hangs, then creates)
     "hang_seconds": 3600,       # how long a hang lasts in another process (in this one:
                                 # until the Event of hang("create") is set)
     "steps": [{"status": "Queuing"},
               {"status": "Running", "logs": ["step 1"], "metrics": {"auc": 0.7}},
               {"status": "Succeeded"}],
     "reason": "OOMKilled"}      # why a failed job failed

The k-th status call of a job answers ``steps[k-1]`` (the last step stays); its logs and metrics
are those of the steps so far. A stop makes a live job the service's stopped status. Without a
plan a job runs until stopped; ``plan.json`` ``{"jobs": "succeed", "polls": 2}`` (or
``HPO_TOOLS_FAKE_CLOUD_JOBS=run|succeed|fail``) makes every job end after that many running
checks, and ``{"rules": [plan, ...]}`` gives the first plan whose ``match`` is in the request.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.secrets import SecretMasker, credential_env_names

__all__ = ["FakeJobService", "Statuses", "ENV_JOBS"]

ENV_JOBS = "HPO_TOOLS_FAKE_CLOUD_JOBS"
_CREATE = ("ok", "refuse", "error", "lost", "hang", "hang_before")
_PLAN_KEYS = ("match", "create", "hang_seconds", "steps", "reason")
_FILE_KEYS = ("jobs", "polls", "rules")


class Statuses:
    """A service's status names."""

    def __init__(self, *, queued: str, running: str, succeeded: str, failed: str, stopped: str,
                 finished: tuple = ()) -> None:
        self.queued, self.running = queued, running
        self.succeeded, self.failed, self.stopped = succeeded, failed, stopped
        self.finished = (succeeded, failed, stopped, *finished)


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _check_plan(plan: Any, where: str, logs: type = list) -> Dict[str, Any]:
    """A plan, checked (naming ``where`` and the key); a step's ``logs`` are of type ``logs``
    (a list of lines, or a dict of lines by pod)."""
    if not isinstance(plan, dict):
        raise ConfigError(f"{where}: expected a JSON object")
    for key in plan:
        if key not in _PLAN_KEYS:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(key, _PLAN_KEYS)}")
    if plan.get("create", "ok") not in _CREATE:
        raise ConfigError(f"{where}: key 'create': expected one of {', '.join(_CREATE)}")
    steps = plan.get("steps", [])
    if not isinstance(steps, list) or not all(
            isinstance(s, dict) and isinstance(s.get("status"), str)
            and isinstance(s.get("logs", logs()), logs)
            and isinstance(s.get("metrics", {}), dict) for s in steps):
        example = ('{"status": "Running", "logs": ["line"], "metrics": {"auc": 0.7}}'
                   if logs is list else '{"status": "Running", "logs": {"worker": ["line", ...]}}')
        raise ConfigError(f"{where}: key 'steps': expected a list of {example}")
    return dict(plan)


class FakeJobService:
    """The jobs of one fake service over ``DIR/.<service>/`` (see the module docstring).

    Args:
        root: The fake cloud's directory.
        service: The directory's name (``pai``).
        statuses: The service's status names.
        access_key_id, access_key_secret: Required as the real client needs them; used only
            to mask what is written.
        environ: Where ``HPO_TOOLS_FAKE_CLOUD_JOBS`` is read.

    Attributes:
        hung_calls: Calls blocked in a hang right now (tests wait for it before a signal).
    """

    #: The type of a step's ``logs``: lines (``list``), or lines by pod (``dict``, DLC).
    step_logs: type = list

    def __init__(self, root: str | os.PathLike[str], service: str, statuses: Statuses, *,
                 access_key_id: Optional[str], access_key_secret: Optional[str],
                 environ: Optional[Mapping[str, str]] = None) -> None:
        self.directory = Path(root) / f".{service}"
        self.statuses = statuses
        self._environ = os.environ if environ is None else environ
        self._masker = SecretMasker()
        self._hangs: Dict[str, threading.Event] = {}
        self.hung_calls = 0
        self._lock = threading.Lock()
        self.remember(access_key_id, access_key_secret)

    def remember(self, access_key_id: Optional[str], access_key_secret: Optional[str]) -> None:
        """Credentials a client was given: required, kept only to mask what is written."""
        if not access_key_id or not access_key_secret:
            raise ValueError("fake client: credentials missing (access_key_id, "
                             "access_key_secret)")
        self._masker.add(access_key_id, access_key_secret)
        self._masker.add_env(credential_env_names(self._environ), self._environ)

    # -- tests' controls ---------------------------------------------------------------------

    def plan_next(self, **plan: Any) -> None:
        """How the next job created behaves (queued: one plan per job, in order)."""
        plan = _check_plan(plan, "plan_next", self.step_logs)
        with self.locked():
            queue = self._read_json(self.directory / "queue.json", [])
            queue.append(plan)
            _write_atomic(self.directory / "queue.json", json.dumps(queue, indent=2))

    def hang(self, method: str) -> threading.Event:
        """Make every call of ``method`` (``create``, ``status``, ``stop``, ``find``, ``logs``,
        ``metrics``) in this process block until the Event is set. ``create`` blocks before it
        creates the job, unless its plan says ``hang`` (created, then blocked)."""
        event = threading.Event()
        self._hangs[method] = event
        return event

    def release(self) -> None:
        """Let every hung call go (test teardown)."""
        for event in self._hangs.values():
            event.set()

    def job_ids(self) -> List[str]:
        """Every job created, oldest first."""
        jobs = [self._read_json(p, {}) for p in (self.directory / "jobs").glob("*.json")]
        return [j["job_id"] for j in sorted(jobs, key=lambda j: j.get("seq", 0)) if j]

    def job(self, job_id: str) -> Dict[str, Any]:
        """A job's record (request, plan, ``checks``, ``stopped``)."""
        record = self._read_json(self._job_path(job_id), None)
        if record is None:
            raise KeyError(job_id)
        return dict(record)

    @property
    def submissions(self) -> List[Dict[str, Any]]:
        """Every create request (``to_map()``, masked), oldest first."""
        return self._read_lines(self.directory / "submissions.jsonl")

    @property
    def stops(self) -> List[Dict[str, Any]]:
        """Every stop call: ``{"job_id", "pid", "time", "was"}``."""
        return self._read_lines(self.directory / "stops.jsonl")

    def stop_calls(self, job_id: str) -> int:
        """How many times a stop was called for ``job_id`` (any process)."""
        return sum(1 for stop in self.stops if stop["job_id"] == job_id)

    def finish(self, job_id: str, status: str) -> None:
        """End a live job now (its next status call answers ``status``)."""
        with self.locked():
            record = self.job(job_id)
            record["forced"] = status
            _write_atomic(self._job_path(job_id), json.dumps(record, indent=2))

    # -- files -------------------------------------------------------------------------------

    def _job_path(self, job_id: str) -> Path:
        return self.directory / "jobs" / f"{job_id}.json"

    @contextlib.contextmanager
    def locked(self) -> Iterator[None]:
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / ".lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    @staticmethod
    def _read_json(path: Path, default: Any) -> Any:
        try:
            return json.loads(path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return default

    @staticmethod
    def _read_lines(path: Path) -> List[Dict[str, Any]]:
        try:
            text = path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        return [json.loads(line) for line in text.splitlines() if line.strip()]

    def _append(self, name: str, data: Dict[str, Any]) -> None:
        with open(self.directory / name, "a", encoding="utf-8") as handle:
            handle.write(self._masker.mask(json.dumps(data, default=str)) + "\n")

    def _shortcut(self, jobs: str, polls: int) -> Dict[str, Any]:
        steps: List[Dict[str, Any]] = [{"status": self.statuses.queued}]
        steps += [{"status": self.statuses.running}] * max(polls, 1)
        if jobs == "succeed":
            steps.append({"status": self.statuses.succeeded})
        elif jobs == "fail":
            steps.append({"status": self.statuses.failed})
        return {"steps": steps, "reason": "fake failure (plan: fail)"}

    def _plan_for(self, text: str) -> Dict[str, Any]:
        queue = self._read_json(self.directory / "queue.json", [])
        if queue:
            plan = queue.pop(0)
            _write_atomic(self.directory / "queue.json", json.dumps(queue, indent=2))
            return dict(plan)
        path = self.directory / "plan.json"
        try:
            data = self._read_json(path, {})
        except ValueError as err:
            raise ConfigError(f"{path}: not a readable JSON object ({err})") from err
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: expected a JSON object")
        for key in data:
            if key not in _FILE_KEYS:
                raise ConfigError(f"{path}: unknown key {key!r}{did_you_mean(key, _FILE_KEYS)}")
        for index, rule in enumerate(data.get("rules", [])):
            rule = _check_plan(rule, f"{path}: rules[{index}]", self.step_logs)
            if str(rule.get("match", "")) in text:
                return rule
        jobs = self._environ.get(ENV_JOBS) or data.get("jobs", "run")
        if jobs not in ("run", "succeed", "fail"):
            raise ConfigError(f"{path}: key 'jobs': expected run, succeed or fail, got {jobs!r}")
        return self._shortcut(jobs, int(data.get("polls", 1)))

    def hang_if(self, method: str, seconds: float = 0.0) -> None:
        """Block while ``method`` hangs (its Event here, or ``seconds`` from a plan)."""
        event = self._hangs.get(method)
        if event is None and seconds <= 0:
            return
        with self._lock:
            self.hung_calls += 1
        try:
            if event is not None:
                event.wait()
            else:
                time.sleep(seconds)
        finally:
            with self._lock:
                self.hung_calls -= 1

    # -- what the fake clients call ------------------------------------------------------------

    def create(self, body: Dict[str, Any], *, name: str, id_prefix: str,
               refused: Any, unavailable: Any, match_text: Optional[str] = None) -> str:
        """Create a job of request ``body`` (its name ``name``) as its plan says; its id.

        ``refused()`` / ``unavailable()`` build the exceptions the SDK raises for a 4xx / 5xx;
        plan.json rules ``match`` in ``match_text`` (default: the request's JSON and the name).
        """
        with self.locked():
            plan = self._plan_for(f"{json.dumps(body)}\n{name}" if match_text is None
                                  else match_text)
        create = plan.get("create", "ok")
        with self.locked():
            self._append("submissions.jsonl", {"time": _now(), "request": body,
                                               "create": create})
        seconds = float(plan.get("hang_seconds", 3600))
        if create == "hang_before" or (create == "ok" and "create" in self._hangs):
            self.hang_if("create", seconds)
        if create == "refuse":
            raise refused()
        if create == "error":
            raise unavailable()
        job_id = f"{id_prefix}{uuid.uuid4().hex[:14]}"
        record = {"job_id": job_id, "name": name, "seq": time.time(), "created_at": _now(),
                  "request": json.loads(self._masker.mask(json.dumps(body, default=str))),
                  "plan": plan, "checks": 0, "stopped": False}
        with self.locked():
            _write_atomic(self._job_path(job_id), json.dumps(record, indent=2))
        if create == "hang":
            self.hang_if("create", seconds)
        if create == "lost":
            raise ConnectionError("fake cloud: the create answer was lost (plan: lost)")
        return job_id

    def record(self, job_id: str, not_found: Any) -> Dict[str, Any]:
        """A job's record; ``not_found()`` is raised for an unknown id."""
        record = self._read_json(self._job_path(job_id), None)
        if record is None:
            raise not_found()
        return record

    def check(self, job_id: str, not_found: Any) -> Dict[str, Any]:
        """One status call: the job's record with ``checks`` counted and its ``step``."""
        self.hang_if("status")
        with self.locked():
            record = self.record(job_id, not_found)
            record["checks"] = int(record.get("checks", 0)) + 1
            _write_atomic(self._job_path(job_id), json.dumps(record, indent=2))
        record["step"] = self.step(record, record["checks"])
        return record

    def step(self, record: Dict[str, Any], checks: int) -> Dict[str, Any]:
        """The step a job is at after ``checks`` status calls (a stop or finish() wins)."""
        steps = record["plan"].get("steps") or [{"status": self.statuses.running}]
        step = dict(steps[min(max(checks, 1), len(steps)) - 1])
        if record.get("stopped") and step["status"] not in self.statuses.finished:
            step = {"status": self.statuses.stopped}
        if record.get("forced") and step["status"] not in self.statuses.finished:
            step = {"status": record["forced"]}
        return step

    def steps_so_far(self, record: Dict[str, Any]) -> List[Dict[str, Any]]:
        steps = record["plan"].get("steps") or []
        return steps[:max(int(record.get("checks", 0)), 0)]

    def stop(self, job_id: str, not_found: Any) -> str:
        """A stop call: a live job becomes stopped; the status it had."""
        self.hang_if("stop")
        with self.locked():
            record = self.record(job_id, not_found)
            was = self.step(record, int(record.get("checks", 0)))["status"]
            if was not in self.statuses.finished:
                record["stopped"] = True
                _write_atomic(self._job_path(job_id), json.dumps(record, indent=2))
            self._append("stops.jsonl", {"job_id": job_id, "pid": os.getpid(), "time": _now(),
                                         "was": was})
        return was

    def named(self, name: str, scope_key: str, scope: Optional[str]) -> List[Dict[str, Any]]:
        """Records of the jobs whose name contains ``name`` (of ``scope`` when given), with
        their current ``status``."""
        self.hang_if("find")
        found = []
        for job_id in self.job_ids():
            record = self.job(job_id)
            if name.lower() not in str(record.get("name") or "").lower():
                continue
            if scope and str(record["request"].get(scope_key)) != str(scope):
                continue
            record["status"] = self.step(record, int(record.get("checks", 0)))["status"]
            found.append(record)
        return found
