"""``FakeODPS``: an in-memory stand-in for pyodps' ``ODPS`` client, for tests only.

This is a **fake at the SDK boundary**: it has exactly the methods that
:mod:`hpo_tools.platforms.maxcompute` calls on ``odps.ODPS`` and ``odps.models.Instance``, with
the same names and argument shapes (pyodps 0.13.2, see ``../shared/API-NOTES.md`` §6), so the
shipped code path is the one under test; only the network is missing.

- ``run_xflow`` / ``run_sql`` create a :class:`FakeInstance` and record the call in ``submitted``.
- An instance is Running until it has been asked ``is_terminated()`` ``polls`` times, then
  Terminated, successful or not as planned (:meth:`FakeODPS.plan_next`).
- A PAI instance grows its planned sub-instances one per status check
  (``get_xflow_sub_instances``).
- ``stop()`` / ``stop_instance()`` terminate an instance and are counted in ``stop_calls``.
- A service that stops answering: set ``hang_status`` to a ``threading.Event`` and every status
  call (``is_terminated``, ``is_successful``, ``get_task_statuses``,
  ``get_xflow_sub_instances``) blocks until that Event is set; ``hung_calls`` counts the calls
  blocked right now. ``stop()`` is not affected (``Plan.stop_delay`` slows it down).
  ``hang_create`` does the same to ``run_xflow`` / ``run_sql``: with ``hang_create_after`` True
  (the default) the instance exists and the call hangs before it answers (the answer is lost
  on the way), else the call hangs first and creates the instance when released.
  ``hang_connect`` blocks :meth:`FakeODPS.connect` (pyodps' ``ODPS(...)`` asks the endpoint for
  its logview host: about 6 s offline). ``lose_answer`` (an exception) makes the next
  ``run_xflow`` / ``run_sql`` create its instance, then raise it (the answer lost on the way).
- Finding a submission by its tag: ``list_instances`` lists every instance (sub-instances
  included) created since ``start_time``; an SQL instance's ``get_unique_identifier_id()`` is
  the ``unique_identifier_id`` it was run with, a PAI instance's ``hints`` are the properties
  ``get_project().xflows.get_xflow_instance(instance)`` reads back.
- SQL results for the ``table`` metric source: :meth:`FakeODPS.set_sql_result`, read with
  ``open_reader()`` (rows are dicts; ``dict(record)`` works on real pyodps records too).

Use it as the platform's ``odps_factory``::

    fake = FakeODPS()
    platform = create_platform("MaxCompute", project="p", endpoint="http://e",
                               access_id="id", access_key="key", odps_factory=fake.connect)
"""

from __future__ import annotations

import collections
import dataclasses
import itertools
import threading
import time
from typing import Any, Dict, Iterator, List, Optional, Sequence

__all__ = [
    "FakeInstance",
    "FakeODPS",
    "FakeProject",
    "FakeReader",
    "FakeTask",
    "FakeTaskStatus",
    "FakeXFlowInstance",
    "FakeXFlows",
    "Plan",
]


@dataclasses.dataclass
class Plan:
    """How the next submitted instance behaves.

    Attributes:
        polls: ``is_terminated()`` answers False this many times, then True.
        fail: The instance ends unsuccessful (one task FAILED).
        sub_instances: Names of the sub-instances a PAI instance starts, one per status check.
        stop_delay: Seconds ``stop()`` blocks (a slow network) before it returns.
    """

    polls: int = 2
    fail: bool = False
    sub_instances: Sequence[str] = ()
    stop_delay: float = 0.0


@dataclasses.dataclass
class FakeTaskStatus:
    """A task's status: ``value`` is RUNNING, SUCCESS, FAILED, CANCELLED, ..."""

    value: str


@dataclasses.dataclass
class FakeTask:
    """What ``Instance.get_task_statuses()`` maps each task name to (``.status.value``)."""

    name: str
    status: FakeTaskStatus


class FakeReader:
    """What ``Instance.open_reader()`` returns: a context manager iterating the rows (dicts)."""

    def __init__(self, rows: List[Dict[str, Any]]) -> None:
        self._rows = rows

    def __enter__(self) -> FakeReader:
        return self

    def __exit__(self, *exc: Any) -> None:
        return None

    def __iter__(self) -> Iterator[Dict[str, Any]]:
        return iter([dict(row) for row in self._rows])


class FakeInstance:
    """A MaxCompute instance in memory (the ``Instance`` methods the platform calls).

    Attributes:
        id: The instance id.
        project: The project it runs in.
        status_checks: How many times ``is_terminated()`` was asked.
        stop_calls: How many times it was stopped.
    """

    def __init__(self, odps: FakeODPS, instance_id: str, project: str, plan: Plan,
                 rows: Optional[List[Dict[str, Any]]] = None) -> None:
        self.id = instance_id
        self.project = project
        self.plan = plan
        self.created_at = time.time()
        self.kind = ""  # xflow | sql ("" for sub-instances)
        self.hints: Dict[str, Any] = {}
        self.unique_identifier_id: Optional[str] = None
        self.status_checks = 0
        self.stop_calls = 0
        self.rows = rows
        self.sub_instances: "collections.OrderedDict[str, FakeInstance]" = (
            collections.OrderedDict()
        )
        self._odps = odps
        self._stopped = False
        self._lock = threading.Lock()

    @property
    def stopped(self) -> bool:
        """True once ``stop()`` (or ``stop_instance``) reached it."""
        return self._stopped

    def is_terminated(self, retry: bool = True, blocking: bool = False, **kwargs: Any) -> bool:
        """True after ``plan.polls`` checks, or once stopped."""
        self._odps._hang_if_asked()
        with self._lock:
            self.status_checks += 1
            checks = self.status_checks
        if self._odps.status_error is not None:
            raise self._odps.status_error
        for index, name in enumerate(self.plan.sub_instances):
            if checks > index and name not in self.sub_instances:
                self.sub_instances[name] = self._odps._new_instance(self.project, Plan())
        return self._stopped or checks > self.plan.polls

    def is_successful(self, retry: bool = True, **kwargs: Any) -> bool:
        """Terminated, not stopped, not planned to fail."""
        self._odps._hang_if_asked()
        return (self._stopped or self.status_checks > self.plan.polls) and not (
            self.plan.fail or self._stopped
        )

    def get_task_statuses(self, retry: bool = True, **kwargs: Any) -> Dict[str, FakeTask]:
        """One task, SUCCESS, FAILED, CANCELLED or RUNNING."""
        self._odps._hang_if_asked()
        if self._stopped:
            status = "CANCELLED"
        elif self.status_checks <= self.plan.polls:
            status = "RUNNING"
        else:
            status = "FAILED" if self.plan.fail else "SUCCESS"
        return {"AnonymousTask": FakeTask("AnonymousTask", FakeTaskStatus(status))}

    def get_logview_address(self, hours: Optional[int] = None, use_legacy: Any = None) -> str:
        """A logview-shaped address naming the instance."""
        return f"https://logview.fake.example/logview/?h={self._odps.endpoint}&p={self.project}" \
               f"&i={self.id}&token=faketoken"

    def stop(self) -> None:
        """Terminate the instance (after ``plan.stop_delay`` seconds)."""
        if self.plan.stop_delay:
            threading.Event().wait(self.plan.stop_delay)
        with self._lock:
            self.stop_calls += 1
            self._stopped = True

    def get_unique_identifier_id(self) -> Optional[str]:
        """The ``unique_identifier_id`` an SQL instance was run with (pyodps reads the job's
        ``Guid`` back from its source)."""
        if self.kind != "sql":
            raise LookupError(f"instance {self.id} has no SQL job source")
        return self.unique_identifier_id

    def open_reader(self, *args: Any, **kwargs: Any) -> FakeReader:
        """A context manager iterating the planned SQL result rows."""
        if self.rows is None:
            raise RuntimeError(f"instance {self.id} has no result to read")
        return FakeReader(self.rows)


@dataclasses.dataclass
class FakeXFlowInstance:
    """What ``XFlows.get_xflow_instance`` returns: the submitted PAI call (``properties`` are
    the ``hints`` it was run with)."""

    xflow_name: str
    xflow_project: Optional[str]
    parameters: Dict[str, Any]
    properties: Dict[str, Any]


class FakeXFlows:
    """``project.xflows``: reads a PAI instance's submission back."""

    def __init__(self, odps: FakeODPS) -> None:
        self._odps = odps

    def get_xflow_instance(self, instance: Any) -> FakeXFlowInstance:
        """The PAI call of ``instance``; an error for any other instance (as the service's)."""
        fake = self._odps.instances.get(str(getattr(instance, "id", instance)))
        if fake is None or fake.kind != "xflow":
            raise LookupError(f"instance {getattr(instance, 'id', instance)} is not an xflow")
        submitted = next(s for s in self._odps.submitted if s["instance_id"] == fake.id)
        return FakeXFlowInstance(submitted["name"], submitted["project"],
                                 dict(submitted["parameters"]), dict(fake.hints))


class FakeProject:
    """What ``ODPS.get_project()`` returns (only ``name`` and ``xflows``)."""

    def __init__(self, odps: FakeODPS, name: str) -> None:
        self.name = name
        self.xflows = FakeXFlows(odps)


class FakeODPS:
    """An in-memory ``odps.ODPS`` (see the module docstring).

    Args:
        polls: Default :attr:`Plan.polls` of new instances.
        project: Default project when the client is built directly.
        endpoint: Endpoint shown in logview addresses.

    Attributes:
        submitted: One dict per ``run_xflow`` / ``run_sql`` call (kind, name, project,
            parameters / sql, instance id), in order.
        instances: Instance id -> :class:`FakeInstance` (sub-instances included).
        connections: How many clients were built through :meth:`connect` (credentials are
            deliberately not kept).
        status_error: When set, ``is_terminated()`` raises it (network trouble).
        submit_error: When set, the next ``run_xflow``/``run_sql`` raises it.
        lose_answer: When set, the next ``run_xflow``/``run_sql`` creates its instance, then
            raises it (no error code: a connection lost before the answer came).
        hang_status: When set to an Event, status calls block until it is set (a service that
            does not answer); set the Event to release them.
        hang_create: The same for ``run_xflow`` / ``run_sql``.
        hang_create_after: True: a hung create has made its instance (its answer is lost);
            False: it makes it when released.
        hang_connect: The same for :meth:`connect` (the client's construction).
        hung_calls: How many calls are blocked by one of the hangs right now.
    """

    def __init__(self, *, polls: int = 2, project: str = "fake_project",
                 endpoint: str = "http://service.fake.example/api") -> None:
        self.project = project
        self.endpoint = endpoint
        self.default_plan = Plan(polls=polls)
        self.submitted: List[Dict[str, Any]] = []
        self.instances: Dict[str, FakeInstance] = {}
        self.connections = 0
        self.connect_kwargs: Dict[str, Any] = {}
        self.status_error: Optional[BaseException] = None
        self.submit_error: Optional[BaseException] = None
        self.lose_answer: Optional[BaseException] = None
        self.hang_status: Optional[threading.Event] = None
        self.hang_create: Optional[threading.Event] = None
        self.hang_create_after = True
        self.hang_connect: Optional[threading.Event] = None
        self.hung_calls = 0
        self._plans: List[Plan] = []
        self._sql_results: List[tuple] = []
        self._ids = itertools.count(1)
        self._lock = threading.Lock()

    # -- test controls ---------------------------------------------------------------------

    def connect(self, access_id: Optional[str] = None, secret_access_key: Optional[str] = None,
                project: Optional[str] = None, endpoint: Optional[str] = None,
                **kwargs: Any) -> FakeODPS:
        """An ``odps_factory``: takes ``ODPS(...)``'s arguments and returns this fake."""
        if not access_id or not secret_access_key:
            raise ValueError("FakeODPS.connect: credentials missing")
        self._hang(self.hang_connect)
        self.connections += 1
        self.connect_kwargs = dict(kwargs)  # what else ODPS(...) was given (logview_host, ...)
        if project:
            self.project = project
        if endpoint:
            self.endpoint = endpoint
        return self

    def plan_next(self, **plan: Any) -> Plan:
        """Queue how the next submitted instance behaves (see :class:`Plan`)."""
        queued = Plan(**{"polls": self.default_plan.polls, **plan})
        self._plans.append(queued)
        return queued

    def set_sql_result(self, sql_contains: str, rows: List[Dict[str, Any]]) -> None:
        """SQL whose text contains ``sql_contains`` returns ``rows`` (latest setting wins)."""
        self._sql_results.insert(0, (sql_contains, [dict(row) for row in rows]))

    def _new_instance(self, project: str, plan: Plan,
                      rows: Optional[List[Dict[str, Any]]] = None) -> FakeInstance:
        with self._lock:
            instance_id = f"2026112218{next(self._ids):06d}gfake"
            instance = FakeInstance(self, instance_id, project, plan, rows)
            self.instances[instance_id] = instance
        return instance

    def _next_plan(self) -> Plan:
        with self._lock:
            return self._plans.pop(0) if self._plans else dataclasses.replace(self.default_plan)

    def _hang_if_asked(self) -> None:
        self._hang(self.hang_status)

    def _hang(self, release: Optional[threading.Event]) -> None:
        if release is None:
            return
        with self._lock:
            self.hung_calls += 1
        try:
            release.wait()
        finally:
            with self._lock:
                self.hung_calls -= 1

    def _raise_submit_error(self) -> None:
        if self.submit_error is not None:
            error, self.submit_error = self.submit_error, None
            raise error

    def _lose_the_answer(self) -> None:
        if self.lose_answer is not None:
            error, self.lose_answer = self.lose_answer, None
            raise error

    # -- the pyodps ODPS methods the platform calls ------------------------------------------

    def run_xflow(self, xflow_name: str, xflow_project: Optional[str] = None,
                  parameters: Optional[Dict[str, Any]] = None, project: Optional[str] = None,
                  hints: Optional[Dict[str, Any]] = None, priority: Optional[int] = None
                  ) -> FakeInstance:
        """Start a PAI algorithm; returns its instance at once (unless ``hang_create``)."""
        self._raise_submit_error()
        if not self.hang_create_after:
            self._hang(self.hang_create)
        instance = self._new_instance(project or self.project, self._next_plan())
        instance.kind, instance.hints = "xflow", dict(hints or {})
        self.submitted.append({
            "kind": "xflow", "name": xflow_name, "project": xflow_project,
            "parameters": dict(parameters or {}), "instance_id": instance.id,
        })
        if self.hang_create_after:
            self._hang(self.hang_create)
        self._lose_the_answer()
        return instance

    def run_sql(self, sql: str, project: Optional[str] = None, priority: Optional[int] = None,
                running_cluster: Optional[str] = None, hints: Optional[Dict[str, Any]] = None,
                aliases: Optional[Dict[str, Any]] = None, default_schema: Optional[str] = None,
                quota_name: Optional[str] = None, unique_identifier_id: Optional[str] = None,
                **kwargs: Any) -> FakeInstance:
        """Start an SQL statement; returns its instance at once (unless ``hang_create``)."""
        self._raise_submit_error()
        if not self.hang_create_after:
            self._hang(self.hang_create)
        rows = next((rows for key, rows in self._sql_results if key in sql), None)
        instance = self._new_instance(project or self.project, self._next_plan(), rows)
        instance.kind, instance.hints = "sql", dict(hints or {})
        instance.unique_identifier_id = unique_identifier_id
        self.submitted.append({"kind": "sql", "sql": sql, "instance_id": instance.id})
        if self.hang_create_after:
            self._hang(self.hang_create)
        self._lose_the_answer()
        return instance

    def list_instances(self, project: Optional[str] = None, start_time: Any = None,
                       end_time: Any = None, status: Any = None, only_owner: Any = None,
                       **kwargs: Any) -> Iterator[FakeInstance]:
        """The instances created since ``start_time`` (seconds since the epoch; all of them
        when None), oldest first."""
        since = float(start_time) if start_time is not None else float("-inf")
        with self._lock:
            listed = [i for i in self.instances.values() if i.created_at >= since]
        return iter(listed)

    def get_project(self, name: Optional[str] = None, default_schema: Optional[str] = None
                    ) -> FakeProject:
        """The project ``name`` (default: the client's)."""
        return FakeProject(self, name or self.project)

    def get_xflow_sub_instances(self, instance: FakeInstance, project: Optional[str] = None
                                ) -> "collections.OrderedDict[str, FakeInstance]":
        """The sub-instances the PAI instance has started so far (name -> instance)."""
        self._hang_if_asked()
        return collections.OrderedDict(instance.sub_instances)

    def get_instance(self, id_: str, project: Optional[str] = None) -> FakeInstance:
        """The instance ``id_``; KeyError-like error when unknown (as the service's 404)."""
        try:
            return self.instances[id_]
        except KeyError:
            raise LookupError(f"NoSuchObject: instance {id_} not found") from None

    def stop_instance(self, id_: str, project: Optional[str] = None) -> None:
        """Stop the instance ``id_``."""
        self.get_instance(id_, project).stop()
