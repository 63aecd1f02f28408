"""``FakeDirectoryODPS``: a pyodps ``ODPS`` stand-in that keeps its instances in a directory.
**A fake, not MaxCompute**: nothing is sent anywhere.

It is the MaxCompute client of the fake cloud (``HPO_TOOLS_FAKE_CLOUD=DIR``,
:mod:`hpo_tools.cloud`), with the ``ODPS`` / ``Instance`` methods
:mod:`hpo_tools.platforms.maxcompute` calls, like :class:`hpo_tools.testing.odps.FakeODPS`; but
its state is in files under ``DIR/.maxcompute/``, so every process sees the same instances (the
trial runner under NNI, ``hpo-tools kill``, the assessor, the user)::

    DIR/.maxcompute/plan.json            how new instances behave (optional, read at each submit)
    DIR/.maxcompute/submissions.jsonl    one line per submission: the exact PAI command or SQL
    DIR/.maxcompute/instances/<id>.json  one instance's state: edit "state" to end it

``plan.json`` (every key optional)::

    {"jobs": "run",        # "run": RUNNING until stopped (default) | "succeed" | "fail"
     "polls": 1,           # status checks answered RUNNING before a succeed/fail job ends
     "sql_results": [{"match": "FROM eval_result", "rows": [{"step": 100, "auc": 0.71}]}]}

``HPO_TOOLS_FAKE_CLOUD_JOBS=run|succeed|fail`` overrides ``jobs``. SQL containing a
``sql_results`` ``match`` (the first that matches) is a query: it succeeds after ``polls`` checks,
whatever ``jobs`` says, and reads back those rows (the ``table`` metric source). An instance's
``state`` is ``running``, ``succeeded``, ``failed`` or ``cancelled``; ``stop()`` makes a running
one ``cancelled`` (with ``stopped_at``); writing ``succeeded`` or ``failed`` into the file ends a
running one at its next status check, from any process.

A submission's tag (``run_sql``'s ``unique_identifier_id``, ``run_xflow``'s ``hints``) is kept
in the instance's file and read back as pyodps does (``Instance.get_unique_identifier_id()``,
``get_project().xflows.get_xflow_instance(instance).properties``); ``list_instances`` lists
the instances submitted since ``start_time``, so a submit that never answered can be found.

Credentials are required as by ``ODPS(...)`` and never kept: the submission records and the log
lines are masked (the client's keys, credential-looking environment variables, ``-D`` parameters
with credential-looking names).
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import threading
import time
import types
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.secrets import MASK, SecretMasker, credential_env_names, is_credential_name
from hpo_tools.testing.odps import FakeReader, FakeTask, FakeTaskStatus

__all__ = [
    "ENV_JOBS",
    "FakeDirectoryInstance",
    "FakeDirectoryODPS",
    "FakeCloudPlan",
    "pai_command",
]

_logger = logging.getLogger(__name__)

ENV_JOBS = "HPO_TOOLS_FAKE_CLOUD_JOBS"
JOBS = ("run", "succeed", "fail")
_PLAN_KEYS = ("jobs", "polls", "sql_results")
_FINAL_STATES = {"succeeded", "failed", "cancelled"}
_STATES = _FINAL_STATES | {"running"}
_OUTCOME_STATE = {"succeed": "succeeded", "fail": "failed"}


def _now() -> str:
    return datetime.datetime.now().astimezone().isoformat(timespec="seconds")


def _write_atomic(path: Path, text: str) -> None:
    """``text`` to ``path`` through a temp file beside it and ``os.replace``."""
    temp = path.with_name(f".{path.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    try:
        temp.write_text(text, encoding="utf-8")
        os.replace(temp, path)
    finally:
        with contextlib.suppress(FileNotFoundError):
            temp.unlink()


def _quote(value: str) -> str:
    """A ``-D`` value as a PAI command writes it (``parse_command`` reads it back unchanged)."""
    if value and not any(c.isspace() or c in "'\";{}[]\\" for c in value):
        return value
    if "'" not in value:
        return f"'{value}'"
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def pai_command(name: str, project: Optional[str], parameters: Mapping[str, Any]) -> str:
    """The ``PAI -name ... -project ... -Dk=v ...`` command of a ``run_xflow`` call."""
    words = ["PAI", "-name", _quote(name)]
    if project:
        words += ["-project", _quote(project)]
    words += [f"-D{key}={_quote(str(value))}" for key, value in parameters.items()]
    return " ".join(words)


class FakeCloudPlan:
    """``DIR/.maxcompute/plan.json`` with ``HPO_TOOLS_FAKE_CLOUD_JOBS`` applied.

    Attributes:
        jobs: ``run``, ``succeed`` or ``fail``.
        polls: Status checks answered RUNNING before a succeed/fail instance ends.
        sql_results: ``(match, rows)`` pairs, in the file's order.
    """

    def __init__(self, jobs: str = "run", polls: int = 1,
                 sql_results: Optional[List[tuple]] = None) -> None:
        self.jobs = jobs
        self.polls = polls
        self.sql_results: List[tuple] = list(sql_results or [])

    @classmethod
    def load(cls, path: Path, environ: Optional[Mapping[str, str]] = None) -> FakeCloudPlan:
        """Read ``path`` (absent: the defaults) and the environment.

        Raises:
            ConfigError: Not JSON, an unknown key, or a bad value (naming the file and key).
        """
        env = os.environ if environ is None else environ
        data: Dict[str, Any] = {}
        if path.exists():
            try:
                data = json.loads(path.read_text(encoding="utf-8"))
            except (OSError, ValueError) as err:
                raise ConfigError(f"{path}: not a readable JSON object ({err})") from err
            if not isinstance(data, dict):
                raise ConfigError(f"{path}: expected a JSON object")
        for key in data:
            if key not in _PLAN_KEYS:
                raise ConfigError(f"{path}: unknown key {key!r}{did_you_mean(key, _PLAN_KEYS)}; "
                                  f"expected {', '.join(_PLAN_KEYS)}")
        jobs = env.get(ENV_JOBS) or data.get("jobs", "run")
        where = f"{ENV_JOBS}" if env.get(ENV_JOBS) else f"{path}: key 'jobs'"
        if jobs not in JOBS:
            raise ConfigError(f"{where}: expected run, succeed or fail, got {jobs!r}")
        polls = data.get("polls", 1)
        if isinstance(polls, bool) or not isinstance(polls, int) or polls < 0:
            raise ConfigError(f"{path}: key 'polls': expected a whole number >= 0, got {polls!r}")
        results = data.get("sql_results", [])
        pairs = []
        if not isinstance(results, list):
            raise ConfigError(f"{path}: key 'sql_results': expected a list of "
                              '{"match": "...", "rows": [{...}, ...]}')
        for index, item in enumerate(results):
            ok = (isinstance(item, dict) and isinstance(item.get("match"), str)
                  and isinstance(item.get("rows"), list)
                  and all(isinstance(row, dict) for row in item["rows"]))
            if not ok:
                raise ConfigError(f"{path}: sql_results[{index}]: expected "
                                  '{"match": "<text in the SQL>", "rows": [{column: value}, ...]}')
            pairs.append((item["match"], [dict(row) for row in item["rows"]]))
        return cls(jobs, polls, pairs)

    def rows_for(self, sql: str) -> Optional[List[Dict[str, Any]]]:
        """The rows of the first ``sql_results`` entry whose ``match`` is in ``sql``."""
        return next((rows for match, rows in self.sql_results if match in sql), None)


class FakeDirectoryInstance:
    """One instance, its state in ``DIR/.maxcompute/instances/<id>.json`` (the ``Instance``
    methods the platform calls).

    Attributes:
        id: The instance id.
        project: The project it runs in.
        status_checks: How many times this object was asked ``is_terminated()``.
    """

    def __init__(self, odps: FakeDirectoryODPS, record: Dict[str, Any],
                 rows: Optional[List[Dict[str, Any]]] = None) -> None:
        self.id = str(record["id"])
        self.project = str(record.get("project", ""))
        self.status_checks = 0
        self.rows = rows
        self._odps = odps
        self._polls = int(record.get("polls", 1))
        self._outcome = str(record.get("outcome", "run"))
        self._lock = threading.Lock()

    @property
    def path(self) -> Path:
        """The instance's state file."""
        return self._odps.instance_path(self.id)

    def state(self) -> str:
        """``running``, ``succeeded``, ``failed`` or ``cancelled``, as the file says."""
        state = str(self._odps.read_instance(self.id).get("state", "running"))
        return state if state in _STATES else "running"

    def is_terminated(self, retry: bool = True, blocking: bool = False, **kwargs: Any) -> bool:
        """True once the file says so, or after ``polls`` checks of a succeed/fail instance."""
        with self._lock:
            self.status_checks += 1
            checks = self.status_checks
        if self.state() != "running":
            return True
        if self._outcome in _OUTCOME_STATE and checks > self._polls:
            self._odps.set_state(self.id, _OUTCOME_STATE[self._outcome], only_if_running=True)
            return True
        return False

    def is_successful(self, retry: bool = True, **kwargs: Any) -> bool:
        """Whether the file says ``succeeded``."""
        return self.state() == "succeeded"

    def get_task_statuses(self, retry: bool = True, **kwargs: Any) -> Dict[str, FakeTask]:
        """One task: RUNNING, SUCCESS, FAILED or CANCELLED."""
        status = {"running": "RUNNING", "succeeded": "SUCCESS", "failed": "FAILED",
                  "cancelled": "CANCELLED"}[self.state()]
        return {"AnonymousTask": FakeTask("AnonymousTask", FakeTaskStatus(status))}

    def get_logview_address(self, hours: Optional[int] = None, use_legacy: Any = None) -> str:
        """The instance's state file: what there is to look at (and edit) for a fake."""
        return self.path.as_uri()

    def stop(self) -> None:
        """A running instance becomes ``cancelled`` (its file records when)."""
        self._odps.set_state(self.id, "cancelled", only_if_running=True)

    def get_unique_identifier_id(self) -> Optional[str]:
        """The ``unique_identifier_id`` an SQL instance was run with."""
        record = self._odps.read_instance(self.id)
        if record.get("kind") != "sql":
            raise LookupError(f"instance {self.id} has no SQL job source")
        return record.get("unique_identifier_id")

    def open_reader(self, *args: Any, **kwargs: Any) -> FakeReader:
        """The planned SQL result rows (``sql_results``)."""
        if self.rows is None:
            raise RuntimeError(f"instance {self.id} has no result to read (no sql_results "
                               f"entry of {self._odps.plan_path} matches its SQL)")
        return FakeReader(self.rows)


class FakeDirectoryODPS:
    """The fake cloud's ``odps.ODPS`` (see the module docstring).

    Args:
        root: The fake cloud's directory (``HPO_TOOLS_FAKE_CLOUD``).
        access_id, secret_access_key, project, endpoint: As ``ODPS(...)``; the keys must be
            given (as the real client needs them) and are only used to mask records.
        environ: Where ``HPO_TOOLS_FAKE_CLOUD_JOBS`` is read (default ``os.environ``).
    """

    def __init__(self, root: str | os.PathLike[str], access_id: Optional[str] = None,
                 secret_access_key: Optional[str] = None, project: Optional[str] = None,
                 endpoint: Optional[str] = None, *, environ: Optional[Mapping[str, str]] = None,
                 **kwargs: Any) -> None:
        if not access_id or not secret_access_key:
            raise ValueError("FakeDirectoryODPS: credentials missing")
        self.directory = Path(root) / ".maxcompute"
        self.project = project or "fake_project"
        self.endpoint = endpoint or ""
        self._environ = os.environ if environ is None else environ
        self._masker = SecretMasker([access_id, secret_access_key])
        self._masker.add_env(credential_env_names(self._environ), self._environ)
        self._instances: Dict[str, FakeDirectoryInstance] = {}
        self._lock = threading.Lock()

    # -- files -------------------------------------------------------------------------------

    @property
    def plan_path(self) -> Path:
        """``DIR/.maxcompute/plan.json``."""
        return self.directory / "plan.json"

    @property
    def submissions_path(self) -> Path:
        """``DIR/.maxcompute/submissions.jsonl``."""
        return self.directory / "submissions.jsonl"

    def instance_path(self, instance_id: str) -> Path:
        """``DIR/.maxcompute/instances/<id>.json``."""
        return self.directory / "instances" / f"{instance_id}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """This process's lock and the directory's (other processes change instances too)."""
        with self._lock:
            self.directory.mkdir(parents=True, exist_ok=True)
            with open(self.directory / ".lock", "a") as handle:
                fcntl.flock(handle, fcntl.LOCK_EX)
                try:
                    yield
                finally:
                    fcntl.flock(handle, fcntl.LOCK_UN)

    def read_instance(self, instance_id: str) -> Dict[str, Any]:
        """The instance's record; LookupError (the service's 404) when there is none."""
        try:
            record = json.loads(self.instance_path(instance_id).read_text(encoding="utf-8"))
        except FileNotFoundError:
            raise LookupError(f"NoSuchObject: instance {instance_id} not found") from None
        except ValueError:  # edited by hand, badly: keep it running, say why
            _logger.warning("fake cloud: %s is not JSON; instance %s stays running",
                            self.instance_path(instance_id), instance_id)
            return {"id": instance_id, "state": "running"}
        return record if isinstance(record, dict) else {"id": instance_id, "state": "running"}

    def _write_instance(self, record: Dict[str, Any]) -> None:
        path = self.instance_path(str(record["id"]))
        path.parent.mkdir(parents=True, exist_ok=True)
        _write_atomic(path, json.dumps(record, indent=2) + "\n")

    def set_state(self, instance_id: str, state: str, *, only_if_running: bool) -> bool:
        """Write ``state`` into the instance's file; False when it had ended already."""
        with self._locked():
            record = self.read_instance(instance_id)
            if only_if_running and record.get("state", "running") != "running":
                return False
            record["state"] = state
            record["stopped_at" if state == "cancelled" else "ended_at"] = _now()
            self._write_instance(record)
        _logger.info("fake cloud: MaxCompute instance %s %s", instance_id, state)
        return True

    # -- submissions -------------------------------------------------------------------------

    def _submit(self, kind: str, command: str, project: str, details: Dict[str, Any],
                sql: str = "", tags: Optional[Dict[str, Any]] = None) -> FakeDirectoryInstance:
        """Record one submission (masked) and create its instance's file."""
        plan = FakeCloudPlan.load(self.plan_path, self._environ)
        rows = plan.rows_for(sql) if kind == "sql" else None
        outcome = "succeed" if rows is not None else plan.jobs
        stamp = datetime.datetime.now().strftime("%Y%m%d%H%M%S")
        instance_id = f"{stamp}fake{uuid.uuid4().hex[:10]}"
        record = {"id": instance_id, "project": project, "kind": kind, "state": "running",
                  "outcome": outcome, "polls": plan.polls, "submitted_at": _now(),
                  "created": time.time(), **(tags or {})}
        line = {"time": record["submitted_at"], "instance_id": instance_id, "project": project,
                "kind": kind, "command": self._masker.mask(command), **details,
                "outcome": outcome}
        with self._locked():
            self._write_instance(record)
            with open(self.submissions_path, "a", encoding="utf-8") as handle:
                handle.write(json.dumps(line) + "\n")
        _logger.warning("fake cloud: MaxCompute instance %s (%s, not submitted): %s",
                        instance_id, outcome, line["command"])
        instance = FakeDirectoryInstance(self, record, rows)
        with self._lock:
            self._instances[instance_id] = instance
        return instance

    def run_xflow(self, xflow_name: str, xflow_project: Optional[str] = None,
                  parameters: Optional[Dict[str, Any]] = None, project: Optional[str] = None,
                  hints: Optional[Dict[str, Any]] = None, priority: Optional[int] = None
                  ) -> FakeDirectoryInstance:
        """Record a PAI command; its instance behaves as ``plan.json`` says."""
        shown = {str(k): MASK if is_credential_name(str(k)) else self._masker.mask(str(v))
                 for k, v in (parameters or {}).items()}
        details = {"name": xflow_name, "xflow_project": xflow_project, "parameters": shown}
        hints = {str(k): str(v) for k, v in (hints or {}).items() if not is_credential_name(str(k))}
        return self._submit("xflow", pai_command(xflow_name, xflow_project, shown),
                            project or self.project, details, tags={"hints": hints})

    def run_sql(self, sql: str, project: Optional[str] = None, priority: Optional[int] = None,
                running_cluster: Optional[str] = None, hints: Optional[Dict[str, Any]] = None,
                aliases: Optional[Dict[str, Any]] = None, default_schema: Optional[str] = None,
                quota_name: Optional[str] = None, unique_identifier_id: Optional[str] = None,
                **kwargs: Any) -> FakeDirectoryInstance:
        """Record an SQL statement; a ``sql_results`` query succeeds with its rows."""
        return self._submit("sql", sql, project or self.project, {}, sql=sql,
                            tags={"unique_identifier_id": unique_identifier_id})

    def list_instances(self, project: Optional[str] = None, start_time: Any = None,
                       end_time: Any = None, status: Any = None, only_owner: Any = None,
                       **kwargs: Any) -> Iterator[FakeDirectoryInstance]:
        """The instances submitted (by any process) since ``start_time`` (epoch seconds)."""
        since = float(start_time) if start_time is not None else float("-inf")
        listed = []
        for path in sorted((self.directory / "instances").glob("*.json")):
            record = self.read_instance(path.stem)
            if float(record.get("created") or 0) >= since:
                listed.append(self.get_instance(path.stem))
        return iter(listed)

    def get_project(self, name: Optional[str] = None, default_schema: Optional[str] = None
                    ) -> Any:
        """The project ``name``: its ``xflows.get_xflow_instance(instance).properties`` are
        the hints a PAI instance was run with."""
        def get_xflow_instance(instance: Any) -> Any:
            record = self.read_instance(str(getattr(instance, "id", instance)))
            if record.get("kind") != "xflow":
                raise LookupError(f"instance {record.get('id')} is not an xflow")
            return types.SimpleNamespace(properties=dict(record.get("hints") or {}))

        xflows = types.SimpleNamespace(get_xflow_instance=get_xflow_instance)
        return types.SimpleNamespace(name=name or self.project, xflows=xflows)

    # -- instances ---------------------------------------------------------------------------

    def get_xflow_sub_instances(self, instance: FakeDirectoryInstance,
                                project: Optional[str] = None) -> Dict[str, Any]:
        """None: a fake PAI instance starts no sub-instances."""
        return {}

    def get_instance(self, id_: str, project: Optional[str] = None) -> FakeDirectoryInstance:
        """The instance ``id_``, submitted by this or any other process."""
        with self._lock:
            known = self._instances.get(id_)
        return known if known is not None else FakeDirectoryInstance(self, self.read_instance(id_))

    def stop_instance(self, id_: str, project: Optional[str] = None) -> None:
        """Stop the instance ``id_``."""
        self.get_instance(id_, project).stop()
