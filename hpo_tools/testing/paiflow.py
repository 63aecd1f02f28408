"""``FakePaiFlowClient``: a stand-in for the PAI-Flow SDK's ``Client``
(``alibabacloud-paiflow20210202``) that keeps its pipeline runs in ``DIR/.paiflow/``.
**A fake, not PAI-Flow**: nothing is sent anywhere.

It has exactly the ``Client`` methods :mod:`hpo_tools.platforms.paiflow` calls
(``create_pipeline_run``, ``start_pipeline_run``, ``get_pipeline_run``,
``terminate_pipeline_run``, ``list_pipeline_runs``, ``list_pipeline_run_node_logs``), with their
signatures, and answers with the SDK's own response models and exceptions. Runs behave as their
plans say (:mod:`hpo_tools.testing.fake_jobs`); a created run is ``Initialized`` until
``StartPipelineRun``, and a step's ``logs`` are its root node's log lines.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any, Dict, Mapping, Optional

from hpo_tools.testing.fake_jobs import FakeJobService, Statuses, _write_atomic

__all__ = ["FakePaiFlowClient", "fake_cloud_client", "STATUSES"]

STATUSES = Statuses(queued="Initialized", running="Running", succeeded="Succeeded",
                    failed="Failed", stopped="Terminated", finished=("Skipped",))


def _client_error(status: int, code: str, message: str) -> Any:
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

    kind = ClientException if status < 500 else ServerException
    return kind(status_code=status, code=code, message=f"code: {status}, {message} request id: "
                "fake")


class FakePaiFlowClient(FakeJobService):
    """The PAI-Flow ``Client``'s pipeline-run methods over ``DIR/.paiflow/``.

    Args:
        root: The directory (``HPO_TOOLS_FAKE_CLOUD``'s, or a test's ``tmp_path``).
        access_key_id, access_key_secret: Required as the real client needs them; only used
            to mask what is written.
        **config: The rest of the SDK ``Config``: in :attr:`config`.
    """

    def __init__(self, root: str | os.PathLike[str], *, access_key_id: Optional[str] = None,
                 access_key_secret: Optional[str] = None,
                 environ: Optional[Mapping[str, str]] = None, **config: Any) -> None:
        super().__init__(root, "paiflow", STATUSES, access_key_id=access_key_id,
                         access_key_secret=access_key_secret, environ=environ)
        self.config: Dict[str, Any] = dict(config)

    def connect(self, *, access_key_id: Optional[str] = None,
                access_key_secret: Optional[str] = None, **config: Any) -> FakePaiFlowClient:
        """The platform's ``client_factory``: record the ``Config`` keywords, return self."""
        self.remember(access_key_id, access_key_secret)
        self.config = dict(config)
        return self

    @staticmethod
    def _not_found(run_id: str) -> Any:
        return lambda: _client_error(404, "PipelineRunNotFound", f"run {run_id} not found")

    def _status(self, record: Dict[str, Any], checks: int) -> str:
        if not record.get("started") and not record.get("stopped"):
            return STATUSES.queued
        return str(self.step(record, checks)["status"])

    # -- the SDK Client's methods --------------------------------------------------------------

    def create_pipeline_run(self, request: Any) -> Any:
        """``Client.create_pipeline_run(CreatePipelineRunRequest)``."""
        from alibabacloud_paiflow20210202 import models

        request.validate()
        body = request.to_map()
        run_id = self.create(
            body, name=str(body.get("Name") or ""), id_prefix="flow-",
            refused=lambda: _client_error(400, "InvalidParameter", "fake refusal (plan: "
                                          "refuse)"),
            unavailable=lambda: _client_error(503, "ServiceUnavailable", "fake outage (plan: "
                                              "error)"))
        return models.CreatePipelineRunResponse(
            status_code=200, headers={},
            body=models.CreatePipelineRunResponseBody(pipeline_run_id=run_id, request_id="fake"))

    def start_pipeline_run(self, pipeline_run_id: str) -> Any:
        """``Client.start_pipeline_run(pipeline_run_id)``."""
        from alibabacloud_paiflow20210202 import models

        with self.locked():
            record = self.record(pipeline_run_id, self._not_found(pipeline_run_id))
            record["started"] = True
            _write_atomic(self._job_path(pipeline_run_id), json.dumps(record, indent=2))
        return models.StartPipelineRunResponse(
            status_code=200, headers={},
            body=models.StartPipelineRunResponseBody(request_id="fake"))

    def get_pipeline_run(self, pipeline_run_id: str, request: Any) -> Any:
        """``Client.get_pipeline_run(pipeline_run_id, GetPipelineRunRequest)``: the next step
        (``Initialized`` until started)."""
        from alibabacloud_paiflow20210202 import models

        record = self.record(pipeline_run_id, self._not_found(pipeline_run_id))
        if record.get("started"):
            record = self.check(pipeline_run_id, self._not_found(pipeline_run_id))
        status = self._status(record, int(record.get("checks", 0)))
        failed = status == STATUSES.failed
        body = models.GetPipelineRunResponseBody(
            pipeline_run_id=pipeline_run_id, name=record["name"], status=status,
            workspace_id=record["request"].get("WorkspaceId"),
            pipeline_id=record["request"].get("PipelineId"), node_id=f"node-{pipeline_run_id}",
            pipeline_run_uri=f"https://pai.console.fake/paiflow/{pipeline_run_id}",
            message=(record["plan"].get("reason") or "fake failure") if failed else None,
            request_id="fake")
        return models.GetPipelineRunResponse(status_code=200, headers={}, body=body)

    def terminate_pipeline_run(self, pipeline_run_id: str) -> Any:
        """``Client.terminate_pipeline_run(pipeline_run_id)``: a live run becomes Terminated."""
        from alibabacloud_paiflow20210202 import models

        self.stop(pipeline_run_id, self._not_found(pipeline_run_id))
        return models.TerminatePipelineRunResponse(
            status_code=200, headers={},
            body=models.TerminatePipelineRunResponseBody(request_id="fake"))

    def list_pipeline_runs(self, request: Any) -> Any:
        """``Client.list_pipeline_runs(ListPipelineRunsRequest)``: runs whose name contains
        ``name``, of ``workspace_id`` when given."""
        from alibabacloud_paiflow20210202 import models

        found = self.named(str(request.name or ""), "WorkspaceId", request.workspace_id)
        items = [models.ListPipelineRunsResponseBodyPipelineRuns(
            pipeline_run_id=r["job_id"], name=r["name"],
            status=self._status(r, int(r.get("checks", 0))),
            workspace_id=r["request"].get("WorkspaceId")) for r in found]
        return models.ListPipelineRunsResponse(
            status_code=200, headers={}, body=models.ListPipelineRunsResponseBody(
                pipeline_runs=items, total_count=len(items), request_id="fake"))

    def list_pipeline_run_node_logs(self, pipeline_run_id: str, node_id: str,
                                    request: Any) -> Any:
        """``Client.list_pipeline_run_node_logs(run id, node id, request)``: the lines the
        steps so far gave, from ``offset``, at most ``page_size``."""
        from alibabacloud_paiflow20210202 import models

        self.hang_if("logs")
        record = self.record(pipeline_run_id, self._not_found(pipeline_run_id))
        if node_id != f"node-{pipeline_run_id}":
            raise _client_error(404, "NodeNotFound", f"node {node_id} not found")
        lines = [str(line) for step in self.steps_so_far(record)
                 for line in step.get("logs") or []]
        start = int(request.offset or 0)
        page = lines[start:start + int(request.page_size or 100)]
        return models.ListPipelineRunNodeLogsResponse(
            status_code=200, headers={}, body=models.ListPipelineRunNodeLogsResponseBody(
                logs=page, total_count=len(lines), request_id="fake"))


def fake_cloud_client(root: Path, **config: Any) -> FakePaiFlowClient:
    """The fake cloud's PAI-Flow client (``HPO_TOOLS_FAKE_CLOUD``), from the SDK ``Config``'s
    keywords (``hpo_tools.platforms.cloud_job.sdk_client``'s arguments)."""
    return FakePaiFlowClient(root, **config)
