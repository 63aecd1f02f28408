"""``FakeTrainingJobClient``: a stand-in for the PAI Studio SDK's ``Client``
(``alibabacloud-paistudio20220112``) that keeps its training jobs in ``DIR/.pai/``.
**A fake, not PAI**: nothing is sent anywhere.

It has exactly the ``Client`` methods :mod:`hpo_tools.platforms.pai_training` calls
(``create_training_job``, ``get_training_job``, ``stop_training_job``, ``list_training_jobs``,
``list_training_job_logs``, ``list_training_job_metrics``), with their signatures, and answers
with the SDK's own response models and exceptions (``ClientException`` for a 4xx), so the
platform's shipped code path is the one tested. Jobs behave as their plans say
(:mod:`hpo_tools.testing.fake_jobs`): a step's ``logs`` are the job's log lines, its
``metrics`` (``{"auc": 0.7}``) the metrics the job reports at that step, one timestamp a step
(seconds after the job's creation, so a later job's timestamps are later, as on PAI).
"""

from __future__ import annotations

import datetime
import os
from pathlib import Path
from typing import Any, Dict, List, Mapping, Optional

from hpo_tools.testing.fake_jobs import FakeJobService, Statuses

__all__ = ["FakeTrainingJobClient", "fake_cloud_client", "STATUSES"]

STATUSES = Statuses(queued="Queuing", running="Running", succeeded="Succeeded",
                    failed="Failed", stopped="Stopped")
_EPOCH = datetime.datetime(2024, 1, 1, tzinfo=datetime.timezone.utc)


def _client_error(status: int, code: str, message: str) -> Any:
    from alibabacloud_tea_openapi.exceptions import ClientException, ServerException

    kind = ClientException if status < 500 else ServerException
    return kind(status_code=status, code=code, message=f"code: {status}, {message} request id: "
                "fake")


class FakeTrainingJobClient(FakeJobService):
    """The PAI Studio ``Client``'s training-job methods over ``DIR/.pai/``.

    Args:
        root: The directory (``HPO_TOOLS_FAKE_CLOUD``'s, or a test's ``tmp_path``).
        access_key_id, access_key_secret: Required as the real client needs them; only used
            to mask what is written.
        **config: The rest of the SDK ``Config`` (region, endpoint, timeouts): in :attr:`config`.
    """

    def __init__(self, root: str | os.PathLike[str], *, access_key_id: Optional[str] = None,
                 access_key_secret: Optional[str] = None,
                 environ: Optional[Mapping[str, str]] = None, **config: Any) -> None:
        super().__init__(root, "pai", STATUSES, access_key_id=access_key_id,
                         access_key_secret=access_key_secret, environ=environ)
        self.config: Dict[str, Any] = dict(config)

    def connect(self, *, access_key_id: Optional[str] = None,
                access_key_secret: Optional[str] = None, **config: Any) -> FakeTrainingJobClient:
        """The platform's ``client_factory``: record the ``Config`` keywords, return self."""
        self.remember(access_key_id, access_key_secret)
        self.config = dict(config)
        return self

    @staticmethod
    def _not_found(job_id: str) -> Any:
        return lambda: _client_error(404, "TrainingJobNotFound", f"job {job_id} not found")

    # -- the SDK Client's methods --------------------------------------------------------------

    def create_training_job(self, request: Any) -> Any:
        """``Client.create_training_job(CreateTrainingJobRequest)``."""
        from alibabacloud_paistudio20220112 import models

        request.validate()
        body = request.to_map()
        job_id = self.create(
            body, name=str(body.get("TrainingJobName") or ""), id_prefix="train",
            refused=lambda: _client_error(400, "InvalidParameter", "fake refusal (plan: "
                                          "refuse)"),
            unavailable=lambda: _client_error(503, "ServiceUnavailable", "fake outage (plan: "
                                              "error)"))
        return models.CreateTrainingJobResponse(
            status_code=200, headers={},
            body=models.CreateTrainingJobResponseBody(training_job_id=job_id,
                                                      request_id="fake"))

    def get_training_job(self, training_job_id: str) -> Any:
        """``Client.get_training_job(training_job_id)``: the job's next step."""
        from alibabacloud_paistudio20220112 import models

        record = self.check(training_job_id, self._not_found(training_job_id))
        status = record["step"]["status"]
        failed = status == STATUSES.failed
        request = record["request"]
        body = models.GetTrainingJobResponseBody(
            training_job_id=training_job_id, training_job_name=record["name"],
            workspace_id=request.get("WorkspaceId"), algorithm_name=request.get("AlgorithmName"),
            status=status, request_id="fake",
            training_job_url=f"https://pai.console.fake/training-jobs/{training_job_id}",
            reason_code="JobFailed" if failed else None,
            reason_message=(record["plan"].get("reason") or "fake failure") if failed else None)
        return models.GetTrainingJobResponse(status_code=200, headers={}, body=body)

    def stop_training_job(self, training_job_id: str) -> Any:
        """``Client.stop_training_job(training_job_id)``: a live job becomes Stopped."""
        from alibabacloud_paistudio20220112 import models

        self.stop(training_job_id, self._not_found(training_job_id))
        return models.StopTrainingJobResponse(
            status_code=200, headers={}, body=models.StopTrainingJobResponseBody(
                request_id="fake"))

    def list_training_jobs(self, request: Any) -> Any:
        """``Client.list_training_jobs(ListTrainingJobsRequest)``: jobs whose name contains
        ``training_job_name``, of ``workspace_id`` when given."""
        from alibabacloud_paistudio20220112 import models

        found = self.named(str(request.training_job_name or ""), "WorkspaceId",
                           request.workspace_id)
        items = [models.ListTrainingJobsResponseBodyTrainingJobs(
            training_job_id=r["job_id"], training_job_name=r["name"], status=r["status"],
            workspace_id=r["request"].get("WorkspaceId")) for r in found]
        return models.ListTrainingJobsResponse(
            status_code=200, headers={}, body=models.ListTrainingJobsResponseBody(
                training_jobs=items, total_count=len(items), request_id="fake"))

    @staticmethod
    def _page(items: List[Any], request: Any) -> List[Any]:
        size = int(request.page_size or 10)
        start = (int(request.page_number or 1) - 1) * size
        return items[start:start + size]

    def list_training_job_logs(self, training_job_id: str, request: Any) -> Any:
        """``Client.list_training_job_logs(training_job_id, ListTrainingJobLogsRequest)``: the
        lines the steps so far gave, one page."""
        from alibabacloud_paistudio20220112 import models

        self.hang_if("logs")
        record = self.record(training_job_id, self._not_found(training_job_id))
        lines = [str(line) for step in self.steps_so_far(record)
                 for line in step.get("logs") or []]
        return models.ListTrainingJobLogsResponse(
            status_code=200, headers={}, body=models.ListTrainingJobLogsResponseBody(
                logs=self._page(lines, request), total_count=len(lines), request_id="fake"))

    def list_training_job_metrics(self, training_job_id: str, request: Any) -> Any:
        """``Client.list_training_job_metrics(training_job_id, ListTrainingJobMetricsRequest)``:
        the metrics the steps so far reported (one timestamp a step), one page, oldest first
        unless ``order`` is ``desc``."""
        from alibabacloud_paistudio20220112 import models

        self.hang_if("metrics")
        record = self.record(training_job_id, self._not_found(training_job_id))
        items = []
        # A step's metrics carry the time the job reported them, after the job was created
        # (as on PAI): a later job's never meet an earlier job's, whose steps they go on from.
        created = record.get("seq")
        start = (_EPOCH if created is None else
                 datetime.datetime.fromtimestamp(float(created), datetime.timezone.utc))
        for index, step in enumerate(self.steps_so_far(record)):
            stamp = (start + datetime.timedelta(seconds=index + 1)).isoformat()
            for name, value in (step.get("metrics") or {}).items():
                if request.name and request.name != name:
                    continue
                items.append(models.ListTrainingJobMetricsResponseBodyMetrics(
                    name=name, value=float(value), timestamp=stamp))
        if str(request.order or "").lower() == "desc":
            items.reverse()
        return models.ListTrainingJobMetricsResponse(
            status_code=200, headers={}, body=models.ListTrainingJobMetricsResponseBody(
                metrics=self._page(items, request), total_count=len(items), request_id="fake"))


def fake_cloud_client(root: Path, **config: Any) -> FakeTrainingJobClient:
    """The fake cloud's PAI training-job client (``HPO_TOOLS_FAKE_CLOUD``), from the SDK
    ``Config``'s keywords (``hpo_tools.platforms.cloud_job.sdk_client``'s arguments)."""
    return FakeTrainingJobClient(root, **config)
