"""``FakeDlcClient``: a stand-in for the DLC SDK's ``Client`` that keeps its jobs in a directory.
**A fake, not DLC**: nothing is sent anywhere.

It has exactly the ``Client`` methods :mod:`hpo_tools.platforms.dlc` calls (``create_job``,
``get_job``, ``stop_job``, ``get_pod_logs``, ``list_jobs``), with their signatures, and answers
with the SDK's own response models (``GetJobResponse``, ``GetJobResponseBody``,
``GetJobResponseBodyPods``, ...) and exceptions (``ClientException`` for a 4xx), so the
platform's shipped code path is the one tested. Its jobs are a
:class:`~hpo_tools.testing.fake_jobs.FakeJobService` over ``DIR/.dlc/`` (plans, queue,
submissions, stops: see that module), so every process sees the same jobs (the trial runner
under NNI, the assessor, ``hpo-tools kill``, a test). What differs from the other fakes:

- a step's ``logs`` are lines by pod type or pod name:
  ``{"status": "Running", "logs": {"worker": ["step 1 auc=0.7"]}}``;
- plan.json rules ``match`` text in the job's ``UserCommand`` or ``DisplayName``;
- a pod's log is every line the steps so far gave its type (``worker``) or its name
  (``worker-0``), the last ``MaxLines`` of them;
- :meth:`FakeDlcClient.hang` takes the SDK's method names (``create_job``, ``get_job``,
  ``stop_job``, ``get_pod_logs``, ``list_jobs``) as well as the contract suite's.
"""

from __future__ import annotations

import json
import logging
import os
import re
import threading
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hpo_tools.testing.fake_jobs import ENV_JOBS, FakeJobService, Statuses

__all__ = ["DlcRestServer", "FakeDlcClient", "fake_cloud_client", "ENV_JOBS", "STATUSES"]

_logger = logging.getLogger(__name__)

#: DLC's status names, as the cloud-job contract suite (tests/platforms/contract.py) asks them.
STATUSES = Statuses(queued="Queuing", running="Running", succeeded="Succeeded", failed="Failed",
                    stopped="Stopped", finished=("SucceededReserving", "FailedReserving"))
# The SDK Client's names of the calls -> the contract suite's (fake_jobs.py).
_CALL_NAMES = {"create_job": "create", "get_job": "status", "stop_job": "stop",
               "list_jobs": "find", "get_pod_logs": "logs"}
_WAITING = ("Creating", "Queuing")
_POD_STATUS = {"Succeeded": "Succeeded", "SucceededReserving": "Succeeded", "Failed": "Failed",
               "FailedReserving": "Failed", "Stopped": "Failed"}


def _client_error(status: int, code: str, message: str) -> Any:
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

    kind = ClientException if status < 500 else ServerException
    return kind(status_code=status, code=code, message=f"code: {status}, {message} request id: "
                "fake")


class FakeDlcClient(FakeJobService):
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

    step_logs = dict

    def __init__(self, root: str | os.PathLike[str], *, access_key_id: Optional[str] = None,
                 access_key_secret: Optional[str] = None,
                 environ: Optional[Mapping[str, str]] = None, **config: Any) -> None:
        super().__init__(root, "dlc", STATUSES, access_key_id=access_key_id,
                         access_key_secret=access_key_secret, environ=environ)
        self.config: Dict[str, Any] = dict(config)

    def connect(self, *, access_key_id: Optional[str] = None,
                access_key_secret: Optional[str] = None, **config: Any) -> FakeDlcClient:
        """The platform's ``client_factory``: record the ``Config`` keywords, return self."""
        self.remember(access_key_id, access_key_secret)
        self.config = dict(config)
        return self

    def hang(self, method: str) -> threading.Event:
        """As :meth:`FakeJobService.hang`; ``method`` may be the SDK's name (``create_job``)."""
        return super().hang(_CALL_NAMES.get(method, method))

    def finish(self, job_id: str, status: str = "Succeeded") -> None:
        """End a live job now (its next GetJob answers ``status``)."""
        super().finish(job_id, status)

    @staticmethod
    def _not_found(job_id: str) -> Any:
        return lambda: _client_error(404, "JobNotFound", f"job {job_id} not found")

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

    # -- the SDK Client's methods --------------------------------------------------------------

    def create_job(self, request: Any) -> Any:
        """``Client.create_job(CreateJobRequest) -> CreateJobResponse``."""
        from alibabacloud_pai_dlc20201203 import models

        request.validate()
        body = request.to_map()
        name = str(body.get("DisplayName") or "")
        job_id = self.create(
            body, name=name, id_prefix="dlc",
            match_text=f"{body.get('UserCommand', '')}\n{body.get('DisplayName', '')}",
            refused=lambda: _client_error(400, "InvalidParameter", "fake refusal (plan: "
                                          "refuse)"),
            unavailable=lambda: _client_error(503, "ServiceUnavailable", "fake outage (plan: "
                                              "error)"))
        _logger.info("fake DLC: created job %s (%s)", job_id, name)
        return models.CreateJobResponse(
            status_code=200, headers={},
            body=models.CreateJobResponseBody(job_id=job_id, request_id="fake"))

    def get_job(self, job_id: str, request: Any) -> Any:
        """``Client.get_job(job_id, GetJobRequest) -> GetJobResponse``: the next step."""
        from alibabacloud_pai_dlc20201203 import models

        record = self.check(job_id, self._not_found(job_id))
        status = record["step"]["status"]
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

        self.hang_if("logs")
        record = self.record(job_id, self._not_found(job_id))
        pod = next((p for p in self._pods(record) if p[0] == pod_id), None)
        if pod is None:
            raise _client_error(404, "PodNotFound", f"pod {pod_id} not found")
        _, kind, short = pod
        lines: List[str] = []
        for step in self.steps_so_far(record):
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

        was = self.stop(job_id, self._not_found(job_id))
        _logger.info("fake DLC: StopJob %s (was %s)", job_id, was)
        return models.StopJobResponse(status_code=200, headers={},
                                      body=models.StopJobResponseBody(job_id=job_id,
                                                                      request_id="fake"))

    def list_jobs(self, request: Any) -> Any:
        """``Client.list_jobs(ListJobsRequest) -> ListJobsResponse``: jobs whose name contains
        ``display_name`` (any case), of ``workspace_id`` when given."""
        from alibabacloud_pai_dlc20201203 import models

        items = [models.JobItem(job_id=r["job_id"], display_name=r["name"], status=r["status"],
                                workspace_id=r["request"].get("WorkspaceId"))
                 for r in self.named(str(getattr(request, "display_name", None) or ""),
                                     "WorkspaceId", getattr(request, "workspace_id", None))]
        return models.ListJobsResponse(status_code=200, headers={}, body=(
            models.ListJobsResponseBody(jobs=items, total_count=len(items),
                                        request_id="fake")))


def fake_cloud_client(root: Path, **config: Any) -> FakeDlcClient:
    """The fake cloud's DLC client (``HPO_TOOLS_FAKE_CLOUD``), from the SDK ``Config``'s
    keywords (``hpo_tools.platforms.cloud_job.sdk_client``'s arguments)."""
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
