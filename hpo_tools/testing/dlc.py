"""``FakeDlcClient``: a stand-in for the DLC SDK's ``Client`` that keeps its jobs in a directory.
**A fake, not DLC**: nothing is sent anywhere.

It has exactly the ``Client`` methods :mod:`hpo_tools.platforms.dlc` calls (``create_job``,
``get_job``, ``stop_job``, ``get_pod_logs``, ``list_jobs``), with their signatures, and answers
with the SDK's own response models (``GetJobResponse``, ``GetJobResponseBody``,
``GetJobResponseBodyPods``, ...) and exceptions (``ClientException`` for a 4xx), so the
platform's shipped code path is the one tested. Its state is in files, so every process sees
the same jobs (the trial runner under NNI, the assessor, ``hpo-tools kill``, a test)::

    DIR/.dlc/plan.json           how new jobs behave (optional, yours; read at each CreateJob)
    DIR/.dlc/queue.json          plans for the next jobs, in order (:meth:`FakeDlcClient.plan_next`)
    DIR/.dlc/submissions.jsonl   one line per CreateJob: the request, masked
    DIR/.dlc/jobs/<id>.json      one job: its request, plan, checks so far, stops
    DIR/.dlc/stops.jsonl         one line per StopJob call

A *plan* (every key optional)::

    {"match": "--quality=0.2",   # plan.json rules only: text in UserCommand or DisplayName
     "create": "ok",             # ok | refuse (a 400) | error (a 503, nothing created) |
                                 # lost (created, then no answer) | hang (created, then the call
                                 # hangs) | hang_before (the call hangs, then creates)
     "hang_seconds": 3600,       # how long a hang lasts in another process (in this one:
                                 # until the Event of hang("create_job") is set)
     "steps": [{"status": "Queuing"},
               {"status": "Running", "logs": {"worker": ["step 1 auc=0.7"]}},
               {"status": "Succeeded"}],
     "reason": "OOMKilled"}      # reason_message of a Failed job

The k-th ``GetJob`` of a job answers ``steps[k-1]`` (the last step stays); a pod's log is every
line the steps so far gave its type (``worker``) or its name (``worker-0``), the last
``MaxLines`` of them. ``StopJob`` makes a live job ``Stopped``. Without a plan a job runs until
stopped; ``plan.json`` ``{"jobs": "succeed", "polls": 2}`` (or ``HPO_TOOLS_FAKE_CLOUD_JOBS=
run|succeed|fail``) makes every job end after that many running checks, and ``{"rules":
[plan, ...]}`` gives the first plan whose ``match`` is in the job's command.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import logging
import os
import re
import threading
import time
import uuid
from pathlib import Path
from typing import Any, Dict, Iterator, List, Mapping, Optional

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.secrets import SecretMasker, credential_env_names
from hpo_tools.testing.fake_jobs import Statuses

__all__ = ["DlcRestServer", "FakeDlcClient", "fake_cloud_client", "ENV_JOBS", "STATUSES"]

_logger = logging.getLogger(__name__)

ENV_JOBS = "HPO_TOOLS_FAKE_CLOUD_JOBS"
#: DLC's status names, as the cloud-job contract suite (tests/platforms/contract.py) asks them.
STATUSES = Statuses(queued="Queuing", running="Running", succeeded="Succeeded", failed="Failed",
                    stopped="Stopped")
# The contract suite's names of the calls (fake_jobs.py) -> the SDK Client's.
_METHOD_ALIASES = {"create": "create_job", "status": "get_job", "stop": "stop_job",
                   "find": "list_jobs", "logs": "get_pod_logs"}
_CREATE = ("ok", "refuse", "error", "lost", "hang", "hang_before")
_PLAN_KEYS = ("match", "create", "hang_seconds", "steps", "reason")
_FILE_KEYS = ("jobs", "polls", "rules")
_FINISHED = ("Succeeded", "Failed", "Stopped", "SucceededReserving", "FailedReserving")
_WAITING = ("Creating", "Queuing")
_POD_STATUS = {"Succeeded": "Succeeded", "SucceededReserving": "Succeeded", "Failed": "Failed",
               "FailedReserving": "Failed", "Stopped": "Failed"}


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


def _check_plan(plan: Any, where: str) -> Dict[str, Any]:
    """A plan, checked (naming ``where`` and the key)."""
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
            and isinstance(s.get("logs", {}), dict) for s in steps):
        raise ConfigError(f"{where}: key 'steps': expected a list of "
                          '{"status": "Running", "logs": {"worker": ["line", ...]}}')
    return dict(plan)


def _shortcut(jobs: str, polls: int) -> Dict[str, Any]:
    """The plan of ``jobs=run|succeed|fail``."""
    steps: List[Dict[str, Any]] = [{"status": "Queuing"}] + [{"status": "Running"}] * max(polls, 1)
    if jobs == "succeed":
        steps.append({"status": "Succeeded"})
    elif jobs == "fail":
        steps.append({"status": "Failed"})
    return {"steps": steps, "reason": "fake failure (plan: fail)"}


class FakeDlcClient:
    """The DLC SDK ``Client``'s methods over ``DIR/.dlc/`` (see the module docstring).

    Args:
        root: The directory (``HPO_TOOLS_FAKE_CLOUD``'s, or a test's ``tmp_path``).
        access_key_id, access_key_secret: Required as the real client needs them; only used
            to mask what is written.
        environ: Where ``HPO_TOOLS_FAKE_CLOUD_JOBS`` is read (default ``os.environ``).
        **config: The rest of the SDK ``Config`` (region, endpoint, timeouts): recorded in
            :attr:`config`.

    Attributes:
        config: The last ``Config`` keywords without the credentials.
        hung_calls: Calls blocked in a hang right now (tests wait for it before a signal).
    """

    def __init__(self, root: str | os.PathLike[str], *, access_key_id: Optional[str] = None,
                 access_key_secret: Optional[str] = None,
                 environ: Optional[Mapping[str, str]] = None, **config: Any) -> None:
        self.directory = Path(root) / ".dlc"
        self._environ = os.environ if environ is None else environ
        self._masker = SecretMasker()
        self._hangs: Dict[str, threading.Event] = {}
        self.hung_calls = 0
        self.config: Dict[str, Any] = {}
        self._lock = threading.Lock()
        self._remember(access_key_id, access_key_secret, config)

    def _remember(self, access_key_id: Optional[str], access_key_secret: Optional[str],
                  config: Mapping[str, Any]) -> None:
        if not access_key_id or not access_key_secret:
            raise ValueError("FakeDlcClient: credentials missing (access_key_id, "
                             "access_key_secret)")
        self._masker.add(access_key_id, access_key_secret)
        self._masker.add_env(credential_env_names(self._environ), self._environ)
        self.config = dict(config)

    def connect(self, *, access_key_id: Optional[str] = None,
                access_key_secret: Optional[str] = None, **config: Any) -> FakeDlcClient:
        """The platform's ``client_factory``: record the ``Config`` keywords, return self."""
        self._remember(access_key_id, access_key_secret, config)
        return self

    # -- plans and records -------------------------------------------------------------------

    def plan_next(self, **plan: Any) -> None:
        """How the next job created behaves (queued: one plan per job, in order)."""
        plan = _check_plan(plan, "plan_next")
        with self._locked():
            queue = self._read_json(self.directory / "queue.json", [])
            queue.append(plan)
            _write_atomic(self.directory / "queue.json", json.dumps(queue, indent=2))

    def hang(self, method: str) -> threading.Event:
        """Make every call of ``method`` (``create_job``, ``get_job``, ``stop_job``,
        ``get_pod_logs``, ``list_jobs``) in this process block until the Event is set.

        ``create_job`` blocks before it creates the job, unless its plan says ``hang`` (created,
        then blocked) or ``hang_before``; the Event then replaces ``hang_seconds``."""
        event = threading.Event()
        self._hangs[_METHOD_ALIASES.get(method, method)] = event
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
        """A job's record (request, plan, ``checks``, ``stop_calls``, ``stopped``)."""
        record = self._read_json(self._job_path(job_id), None)
        if record is None:
            raise KeyError(job_id)
        return dict(record)

    @property
    def submissions(self) -> List[Dict[str, Any]]:
        """Every CreateJob request (``to_map()``, masked), oldest first."""
        return self._read_lines(self.directory / "submissions.jsonl")

    @property
    def stops(self) -> List[Dict[str, Any]]:
        """Every StopJob call: ``{"job_id", "pid", "time", "was"}`` (``was``: its status)."""
        return self._read_lines(self.directory / "stops.jsonl")

    def stop_calls(self, job_id: str) -> int:
        """How many times StopJob was called for ``job_id`` (any process)."""
        return sum(1 for stop in self.stops if stop["job_id"] == job_id)

    def finish(self, job_id: str, status: str = "Succeeded") -> None:
        """End a live job now (its next GetJob answers ``status``)."""
        with self._locked():
            record = self.job(job_id)
            record["forced"] = status
            _write_atomic(self._job_path(job_id), json.dumps(record, indent=2))

    # -- files -------------------------------------------------------------------------------

    def _job_path(self, job_id: str) -> Path:
        return self.directory / "jobs" / f"{job_id}.json"

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
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
            handle.write(self._masker.mask(json.dumps(data)) + "\n")

    def _plan_for(self, text: str) -> Dict[str, Any]:
        """The queue's next plan, else the first plan.json rule matching ``text``, else the
        file's (or the environment's) ``jobs`` shortcut."""
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
            rule = _check_plan(rule, f"{path}: rules[{index}]")
            if str(rule.get("match", "")) in text:
                return rule
        jobs = self._environ.get(ENV_JOBS) or data.get("jobs", "run")
        if jobs not in ("run", "succeed", "fail"):
            raise ConfigError(f"{path}: key 'jobs': expected run, succeed or fail, got {jobs!r}")
        return _shortcut(jobs, int(data.get("polls", 1)))

    def _hang(self, method: str, seconds: float = 0.0) -> None:
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

    # -- what a job answers --------------------------------------------------------------------

    @staticmethod
    def _status(record: Dict[str, Any], checks: int) -> Dict[str, Any]:
        """The step a job is at after ``checks`` GetJob calls (a stop or finish() wins)."""
        steps = record["plan"].get("steps") or [{"status": "Running"}]
        step = dict(steps[min(max(checks, 1), len(steps)) - 1])
        if record.get("stopped") and step["status"] not in _FINISHED:
            step = {"status": "Stopped"}
        if record.get("forced") and step["status"] not in _FINISHED:
            step = {"status": record["forced"]}
        return step

    @staticmethod
    def _pods(record: Dict[str, Any]) -> List[tuple]:
        """(pod id, type, short name) of every pod the request asked for."""
        pods = []
        for spec in record["request"].get("JobSpecs") or []:
            kind = str(spec.get("Type") or "Worker")
            for index in range(int(spec.get("PodCount") or 1)):
                short = f"{kind.lower()}-{index}"
                pods.append((f"{record['job_id']}-{short}", kind, short))
        return pods

    def _get_record(self, job_id: str) -> Dict[str, Any]:
        record = self._read_json(self._job_path(job_id), None)
        if record is None:
            from alibabacloud_tea_openapi.exceptions import ClientException

            raise ClientException(status_code=404, code="JobNotFound",
                                  message=f"code: 404, job {job_id} not found request id: fake")
        return record

    # -- the SDK Client's methods --------------------------------------------------------------

    def create_job(self, request: Any) -> Any:
        """``Client.create_job(CreateJobRequest) -> CreateJobResponse``."""
        from alibabacloud_pai_dlc20201203 import models
        from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

        request.validate()
        body = request.to_map()
        with self._locked():
            plan = self._plan_for(f"{body.get('UserCommand', '')}\n{body.get('DisplayName', '')}")
        create = plan.get("create", "ok")
        self._append_locked("submissions.jsonl", {"time": _now(), "request": body,
                                                  "create": create})
        seconds = float(plan.get("hang_seconds", 3600))
        if create == "hang_before" or (create == "ok" and "create_job" in self._hangs):
            self._hang("create_job", seconds)
        if create == "refuse":
            raise ClientException(status_code=400, code="InvalidParameter",
                                  message="code: 400, fake refusal (plan: refuse) request id: "
                                          "fake")
        if create == "error":
            raise ServerException(status_code=503, code="ServiceUnavailable",
                                  message="code: 503, fake outage (plan: error) request id: fake")
        job_id = f"dlc{uuid.uuid4().hex[:14]}"
        record = {"job_id": job_id, "name": body.get("DisplayName"), "seq": time.time(),
                  "created_at": _now(),
                  "request": json.loads(self._masker.mask(json.dumps(body))), "plan": plan,
                  "checks": 0, "stopped": False}
        with self._locked():
            _write_atomic(self._job_path(job_id), json.dumps(record, indent=2))
        _logger.info("fake DLC: created job %s (%s)", job_id, body.get("DisplayName"))
        if create == "hang":
            self._hang("create_job", seconds)
        if create == "lost":
            raise ConnectionError("fake DLC: the CreateJob answer was lost (plan: lost)")
        return models.CreateJobResponse(
            status_code=200, headers={},
            body=models.CreateJobResponseBody(job_id=job_id, request_id="fake"))

    def _append_locked(self, name: str, data: Dict[str, Any]) -> None:
        with self._locked():
            self._append(name, data)

    def get_job(self, job_id: str, request: Any) -> Any:
        """``Client.get_job(job_id, GetJobRequest) -> GetJobResponse``: the next step."""
        from alibabacloud_pai_dlc20201203 import models

        self._hang("get_job")
        with self._locked():
            record = self._get_record(job_id)
            record["checks"] = int(record.get("checks", 0)) + 1
            _write_atomic(self._job_path(job_id), json.dumps(record, indent=2))
        step = self._status(record, record["checks"])
        status = step["status"]
        pods = []
        if status not in _WAITING:
            pod_status = _POD_STATUS.get(status, "Running")
            pods = [models.GetJobResponseBodyPods(pod_id=pod_id, type=kind, status=pod_status)
                    for pod_id, kind, _ in self._pods(record)]
        request_map = record["request"]
        failed = status in ("Failed", "FailedReserving")
        body = models.GetJobResponseBody(
            job_id=job_id, display_name=request_map.get("DisplayName"),
            workspace_id=request_map.get("WorkspaceId"), job_type=request_map.get("JobType"),
            status=status, pods=pods, request_id="fake",
            reason_code="JobFailed" if failed else None,
            reason_message=(record["plan"].get("reason") or "fake failure") if failed else None,
        )
        return models.GetJobResponse(status_code=200, headers={}, body=body)

    def get_pod_logs(self, job_id: str, pod_id: str, request: Any) -> Any:
        """``Client.get_pod_logs(job_id, pod_id, GetPodLogsRequest) -> GetPodLogsResponse``:
        every line the steps so far gave the pod, the last ``max_lines`` of them."""
        from alibabacloud_pai_dlc20201203 import models
        from alibabacloud_tea_openapi.exceptions import ClientException

        self._hang("get_pod_logs")
        record = self._get_record(job_id)
        pod = next((p for p in self._pods(record) if p[0] == pod_id), None)
        if pod is None:
            raise ClientException(status_code=404, code="PodNotFound",
                                  message=f"code: 404, pod {pod_id} not found request id: fake")
        _, kind, short = pod
        steps = record["plan"].get("steps") or []
        lines: List[str] = []
        for step in steps[:max(int(record.get("checks", 0)), 0)]:
            for key, more in (step.get("logs") or {}).items():
                if key.lower() in (kind.lower(), short):
                    lines.extend(str(line) for line in more)
        limit = int(getattr(request, "max_lines", None) or 2000)
        return models.GetPodLogsResponse(status_code=200, headers={}, body=(
            models.GetPodLogsResponseBody(job_id=job_id, pod_id=pod_id, logs=lines[-limit:],
                                          request_id="fake")))

    def stop_job(self, job_id: str) -> Any:
        """``Client.stop_job(job_id) -> StopJobResponse``; a live job becomes Stopped."""
        from alibabacloud_pai_dlc20201203 import models

        self._hang("stop_job")
        with self._locked():
            record = self._get_record(job_id)
            was = self._status(record, int(record.get("checks", 0)))["status"]
            if was not in _FINISHED:
                record["stopped"] = True
                _write_atomic(self._job_path(job_id), json.dumps(record, indent=2))
            self._append("stops.jsonl", {"job_id": job_id, "pid": os.getpid(), "time": _now(),
                                         "was": was})
        _logger.info("fake DLC: StopJob %s (was %s)", job_id, was)
        return models.StopJobResponse(status_code=200, headers={},
                                      body=models.StopJobResponseBody(job_id=job_id,
                                                                      request_id="fake"))

    def list_jobs(self, request: Any) -> Any:
        """``Client.list_jobs(ListJobsRequest) -> ListJobsResponse``: jobs whose name contains
        ``display_name`` (any case), of ``workspace_id`` when given."""
        from alibabacloud_pai_dlc20201203 import models

        self._hang("list_jobs")
        wanted = str(getattr(request, "display_name", None) or "").lower()
        workspace = getattr(request, "workspace_id", None)
        items = []
        for job_id in self.job_ids():
            record = self._get_record(job_id)
            name = str(record["request"].get("DisplayName") or "")
            if wanted not in name.lower():
                continue
            if workspace and str(record["request"].get("WorkspaceId")) != str(workspace):
                continue
            status = self._status(record, int(record.get("checks", 0)))["status"]
            items.append(models.JobItem(job_id=job_id, display_name=name, status=status,
                                        workspace_id=record["request"].get("WorkspaceId")))
        return models.ListJobsResponse(status_code=200, headers={}, body=(
            models.ListJobsResponseBody(jobs=items, total_count=len(items),
                                        request_id="fake")))


def fake_cloud_client(root: Path, **config: Any) -> FakeDlcClient:
    """The fake cloud's DLC client (``HPO_TOOLS_FAKE_CLOUD``), from the SDK ``Config``'s
    keywords (``hpo_tools.platforms.dlc._real_dlc_client``'s arguments)."""
    return FakeDlcClient(root, **config)


class DlcRestServer:
    """A real HTTP server on localhost that answers DLC's REST API (CreateJob, GetJob,
    GetPodLogs, StopJob, ListJobs: the paths and JSON of ``alibabacloud-pai-dlc20201203``)
    from a :class:`FakeDlcClient`, so the SDK's own ``Client`` (signing, HTTP, parsing) can be
    tested end to end: ``DlcPlatform(endpoint=server.endpoint, protocol="http", ...)``.

    SDK errors of the fake become their HTTP status with ``{"Code", "Message"}``; any other
    error (a ``lost`` CreateJob answer) closes the connection without an answer. Use it as a
    context manager (it serves from a daemon thread until closed).

    Args:
        fake: Where the jobs live.
    """

    def __init__(self, fake: FakeDlcClient) -> None:
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.fake = fake
        self.requests: List[str] = []  # "METHOD path" of every request, in order
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:  # noqa: N802 (http.server's name)
                server._handle(self, "GET")

            def do_POST(self) -> None:  # noqa: N802
                server._handle(self, "POST")

            def log_message(self, *args: Any) -> None:
                return None

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._httpd.daemon_threads = True
        self._thread = threading.Thread(target=self._httpd.serve_forever,
                                        name="fake-dlc-rest", daemon=True)
        self._thread.start()

    @property
    def endpoint(self) -> str:
        """``127.0.0.1:<port>`` (the platform's ``endpoint``, with ``protocol="http"``)."""
        host, port = self._httpd.server_address[:2]
        return f"{host}:{port}"

    def close(self) -> None:
        """Stop serving."""
        self._httpd.shutdown()
        self._httpd.server_close()

    def __enter__(self) -> DlcRestServer:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    def _answer(self, method: str, path: str, query: Dict[str, str], body: bytes) -> Any:
        """The fake's answer (an SDK response body) to one request."""
        from alibabacloud_pai_dlc20201203 import models

        parts = [p for p in path.split("/") if p][2:]  # after api/v1
        if parts[:1] != ["jobs"]:
            raise LookupError(path)
        if method == "POST" and len(parts) == 1:
            request = models.CreateJobRequest().from_map(json.loads(body or b"{}"))
            return self.fake.create_job(request).body
        if method == "POST" and len(parts) == 3 and parts[2] == "stop":
            return self.fake.stop_job(parts[1]).body
        if method == "GET" and len(parts) == 1:
            request = models.ListJobsRequest(display_name=query.get("DisplayName"),
                                             workspace_id=query.get("WorkspaceId"))
            return self.fake.list_jobs(request).body
        if method == "GET" and len(parts) == 2:
            return self.fake.get_job(parts[1], models.GetJobRequest()).body
        if method == "GET" and len(parts) == 5 and parts[2] == "pods" and parts[4] == "logs":
            lines = int(query.get("MaxLines") or 2000)
            return self.fake.get_pod_logs(parts[1], parts[3],
                                          models.GetPodLogsRequest(max_lines=lines)).body
        raise LookupError(f"{method} {path}")

    def _handle(self, handler: Any, method: str) -> None:
        from urllib.parse import parse_qsl, unquote, urlsplit

        url = urlsplit(handler.path)
        self.requests.append(f"{method} {url.path}")
        length = int(handler.headers.get("Content-Length") or 0)
        body = handler.rfile.read(length) if length else b""
        query = {k: v for k, v in parse_qsl(url.query)}
        try:
            answer = self._answer(method, unquote(url.path), query, body)
            status, data = 200, answer.to_map()
        except LookupError as err:
            status, data = 404, {"Code": "NotFound", "Message": str(err), "RequestId": "fake"}
        except Exception as err:
            code = getattr(err, "status_code", None)
            if not isinstance(code, int):  # no answer at all
                handler.close_connection = True
                return
            status = code
            # The fake's message is in the SDK's form; the SDK adds "code: N, ..." again.
            message = str(getattr(err, "message", err))
            message = re.sub(r"^code: \d+, | request id: \S+$", "", message)
            data = {"Code": getattr(err, "code", "Error"), "RequestId": "fake",
                    "Message": message}
        payload = json.dumps(data).encode()
        try:
            handler.send_response(status)
            handler.send_header("Content-Type", "application/json;charset=utf-8")
            handler.send_header("Content-Length", str(len(payload)))
            handler.end_headers()
            handler.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):  # the client gave up (its timeout)
            handler.close_connection = True
