"""The PAI training-job platform (``name=PAI``): ``pai training-job create ...`` commands as
PAI training jobs, through ``alibabacloud-paistudio20220112``.

- A command (:mod:`hpo_tools.platforms.pai_command`) is sent as one ``CreateTrainingJob``;
  the job's name is ``--name`` plus ``-hpo-`` and 8 hex digits, unique per submission, so that
  a job whose create answer never came is found (``ListTrainingJobs``) and stopped.
- Submit, follow, cancel, cancel from a registry record: :mod:`hpo_tools.platforms.cloud_job`.
  Each check is one ``GetTrainingJob``, then the job's new log lines (``ListTrainingJobLogs``)
  to the trial log through the masker and, when a ``metric_type=api`` source names the job's
  command, its new metrics (``ListTrainingJobMetrics``) to ``pai-metrics/cmdN.jsonl``
  (:mod:`hpo_tools.platforms.pai_metrics`). Cancel is ``StopTrainingJob``.
- ``[ts_config] access_key_id, access_key_secret, region_id, endpoint`` (hpo_tools 0.1.x's
  section; ``workspace_id``, ``poll_interval`` optional); the keys default to the environment
  (``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``). Only the names of the
  env vars holding them are in settings and job descriptions.

The SDK is imported only when a client is built or a request made: importing this module costs
nothing, and only trials on PAI pay the SDK's import.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, Dict, List, Optional, Tuple

from hpo_tools.errors import ConfigError
from hpo_tools.platforms.base import JobState, TrialFileView
from hpo_tools.platforms.cloud_job import (
    CloudJob,
    CloudJobPlatform,
    CommandSinks,
    Status,
    Submission,
    command_number,
    sdk_client,
    status_state,
)
from hpo_tools.platforms.credentials import AccessKeys
from hpo_tools.platforms.pai_command import (
    create_training_job_request,
    parse_training_job_command,
)
from hpo_tools.platforms.pai_metrics import TrainingMetricSource, parse_command_location

__all__ = ["PaiTrainingPlatform", "job_state", "PAGE_SIZE"]

_STATES: Dict[str, JobState] = {
    "creating": JobState.PENDING,
    "queuing": JobState.PENDING,
    "bidding": JobState.PENDING,
    "envpreparing": JobState.PENDING,
    "sanitychecking": JobState.PENDING,
    "running": JobState.RUNNING,
    "restarting": JobState.RUNNING,
    "stopping": JobState.RUNNING,
    "succeeded": JobState.SUCCEEDED,
    "succeededreserving": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "failedreserving": JobState.FAILED,
    "stopped": JobState.CANCELLED,
}
#: Items per ``ListTrainingJobLogs`` / ``ListTrainingJobMetrics`` page.
PAGE_SIZE = 100
_SECTION_KEYS = ("access_key_id", "access_key_secret", "region_id", "endpoint", "workspace_id",
                 "poll_interval")


def job_state(status: Optional[str]) -> JobState:
    """Our state of a training job's status (``Queuing`` -> PENDING); unknown ones RUNNING."""
    return status_state(_STATES, status)


def _pai_client(**config: Any) -> Any:
    """The SDK's PAI Studio ``Client`` from ``Config`` keywords: the one place it is built,
    through :func:`hpo_tools.cloud.build` (its fake under ``HPO_TOOLS_FAKE_CLOUD``)."""
    return sdk_client("pai", "alibabacloud_paistudio20220112.client", **config)


def new_items(fetch: Callable[[int, int], Tuple[List[Any], int]], seen: int) -> List[Any]:
    """The items after the first ``seen`` of a paged list, oldest first.

    ``fetch(page_number, page_size) -> (items, total count)``, pages counted from 1.
    """
    page, skip = seen // PAGE_SIZE + 1, seen % PAGE_SIZE
    found: List[Any] = []
    while True:
        items, total = fetch(page, PAGE_SIZE)
        found.extend(items[skip:])
        skip = 0
        if len(items) < PAGE_SIZE or seen + len(found) >= int(total or 0):
            return found
        page += 1


class PaiTrainingPlatform(CloudJobPlatform):
    """Runs ``pai training-job create ...`` commands as PAI training jobs.

    Args:
        region: ``[ts_config] region_id`` (``cn-hangzhou``); may be empty with ``endpoint``.
        endpoint: ``[ts_config] endpoint``; default ``pai.<region>.aliyuncs.com``.
        workspace_id: The workspace of commands that name none.
        access_id, access_key: The keys (the runner resolves ``${ENV}``); default: the
            environment.
        credential_env: Names of the two env vars the keys come from (stored instead of them).
        poll_interval: Seconds between two checks of a job.
        call_timeout: Seconds any SDK call may take (its read timeout).
        client_factory: Builds the client from ``Config`` keywords (tests pass
            ``FakeTrainingJobClient(...).connect``).

    Raises:
        ConfigError: neither region nor endpoint, or a malformed setting.
    """

    name = "pai"
    display = "PAI training"
    log_tag = "pai"
    pending_prefix = "pai-pending:"
    trial_file_sections = ("ts_config",)
    metric_source_types = ("api",)
    trial_file_hint = "[ts_config] region_id (or endpoint)"

    @classmethod
    def options_from_trial_file(cls, trial_file: TrialFileView) -> Dict[str, Any]:
        """``[ts_config]``; ``metric_type=api`` sources must name a command (``cmd1``)."""
        section = trial_file.section("ts_config")
        if section is None:
            raise ConfigError(
                f"{trial_file.source}: [ts_config] is required for the PAI platform (region_id "
                "or endpoint; access_key_id / access_key_secret or the environment's keys)",
                source=trial_file.source, section="ts_config")
        section.check_keys(_SECTION_KEYS)
        region, endpoint = section.get("region_id") or "", section.get("endpoint") or ""
        if not region.strip() and not endpoint.strip():
            raise section.error("region_id", "is required (e.g. cn-hangzhou), or endpoint")
        options: Dict[str, Any] = {
            "region": region.strip(), "endpoint": endpoint.strip(),
            "workspace_id": (section.get("workspace_id") or "").strip(),
            "access_id": section.get("access_key_id"),
            "access_key": section.get("access_key_secret"),
        }
        if section.get("poll_interval"):
            try:
                float(section.get("poll_interval") or "")
            except ValueError:
                raise section.error("poll_interval", "expected seconds (a number >= 0)") \
                    from None
            options["poll_interval"] = section.get("poll_interval")
        _check_api_sources(trial_file)
        return options

    @classmethod
    def shape_command(cls, text: str) -> str:
        """The command as written; a malformed ``pai training-job create`` line is a
        ConfigError now."""
        parse_training_job_command(text)
        return text

    def __init__(self, *, region: str = "", endpoint: str = "", workspace_id: str = "",
                 access_id: Optional[str] = None, access_key: Optional[str] = None,
                 credential_env: Any = None, poll_interval: Any = 10.0,
                 call_timeout: Any = 30.0,
                 client_factory: Optional[Callable[..., Any]] = None) -> None:
        region, endpoint = str(region or "").strip(), str(endpoint or "").strip()
        if not region and not endpoint:
            raise ConfigError("platform PAI: region is missing ([ts_config] region_id, or "
                              "endpoint)")
        self.region = region
        self.endpoint = endpoint or f"pai.{region}.aliyuncs.com"
        self.workspace_id = str(workspace_id or "").strip()
        keys = AccessKeys.of("PAI", access_id, access_key, credential_env=credential_env,
                             hint="[ts_config] access_key_id and access_key_secret")
        self._init_cloud(keys, poll_interval=poll_interval, call_timeout=call_timeout,
                         client_factory=client_factory)
        self._metric_sinks = CommandSinks("pai-metrics")

    def __repr__(self) -> str:
        return f"PaiTrainingPlatform(region={self.region!r}, endpoint={self.endpoint!r}, " \
               f"keys={self.keys!r})"

    def settings(self) -> Dict[str, Any]:
        """Region, endpoint, workspace, env var names of the keys, intervals."""
        return {"region": self.region, "endpoint": self.endpoint,
                "workspace_id": self.workspace_id, "credential_env": list(self.keys.env_names()),
                "poll_interval": self.poll_interval, "call_timeout": self.call_timeout}

    # -- the SDK calls -----------------------------------------------------------------------

    def build_client(self, factory: Optional[Callable[..., Any]], access_id: str,
                     access_key: str) -> Any:
        timeout_ms = max(1, int(self.call_timeout * 1000))
        return (factory or _pai_client)(
            access_key_id=access_id, access_key_secret=access_key,
            region_id=self.region or None, endpoint=self.endpoint, read_timeout=timeout_ms,
            connect_timeout=min(timeout_ms, 10_000))

    def prepare(self, command: str, env: Mapping[str, str], command_name: str) -> Submission:
        parsed = parse_training_job_command(command)
        unique = f"{parsed.name}-hpo-{secrets.token_hex(4)}"
        workspace = parsed.workspace_id or self.workspace_id
        request = create_training_job_request(parsed, unique_name=unique, workspace_id=workspace,
                                              envs=dict(env))
        return Submission(request=request, unique_name=unique, scope=workspace,
                          summary=parsed.summary.replace(parsed.name, unique, 1))

    def create(self, submission: Submission) -> str:
        return str(self.client().create_training_job(submission.request).body.training_job_id)

    def status(self, cloud_id: str) -> Status:
        body = self.client().get_training_job(cloud_id).body
        reason = " ".join(str(p) for p in (body.reason_code, body.reason_message) if p)
        return Status(text=str(body.status or ""), reason=reason,
                      url=body.training_job_url or None, body=body)

    def stop(self, cloud_id: str) -> None:
        self.client().stop_training_job(cloud_id)

    def find(self, unique_name: str, scope: str) -> List[Tuple[str, str]]:
        from alibabacloud_paistudio20220112 import models

        request = models.ListTrainingJobsRequest(training_job_name=unique_name,
                                                 workspace_id=scope or None, page_size=50)
        jobs = self.client().list_training_jobs(request).body.training_jobs or []
        return [(str(job.training_job_id), str(job.status or "")) for job in jobs
                if str(job.training_job_name or "") == unique_name]

    def state_of(self, status_text: Optional[str]) -> JobState:
        return job_state(status_text)

    def log_lines(self, cloud_id: str, seen: int) -> List[str]:
        """``ListTrainingJobLogs``: the lines after the first ``seen``."""
        from alibabacloud_paistudio20220112 import models

        def fetch(page: int, size: int) -> Tuple[List[Any], int]:
            body = self.client().list_training_job_logs(
                cloud_id, models.ListTrainingJobLogsRequest(page_number=page,
                                                            page_size=size)).body
            return [str(line) for line in body.logs or []], int(body.total_count or 0)

        return new_items(fetch, seen)

    def metrics(self, cloud_id: str, seen: int) -> List[Dict[str, Any]]:
        """``ListTrainingJobMetrics`` (oldest first): the metrics after the first ``seen``."""
        from alibabacloud_paistudio20220112 import models

        def fetch(page: int, size: int) -> Tuple[List[Any], int]:
            body = self.client().list_training_job_metrics(
                cloud_id, models.ListTrainingJobMetricsRequest(page_number=page, page_size=size,
                                                               order="asc")).body
            items = [{"name": m.name, "value": m.value, "timestamp": m.timestamp}
                     for m in body.metrics or []]
            return items, int(body.total_count or 0)

        return new_items(fetch, seen)

    # -- relaying ----------------------------------------------------------------------------

    def command_sinks(self) -> List[CommandSinks]:
        return [self._metric_sinks]

    def on_submit(self, job: CloudJob) -> None:
        job.relay["metric_files"] = [path for _, path in self._metric_sinks.bind(
            command_number(job.command_name), job.log_path)]

    def on_check(self, job: CloudJob, status: Status) -> None:
        """New log lines to the trial log; new metrics to the api sources' files."""
        assert job.cloud_id is not None
        lines = self.log_lines(job.cloud_id, int(job.relay.get("log_lines", 0)))
        if lines:
            job.relay["log_lines"] = int(job.relay.get("log_lines", 0)) + len(lines)
            job.append(job.log_path, lines)
        files: List[Path] = job.relay.get("metric_files") or []
        if not files:
            return
        found = self.metrics(job.cloud_id, int(job.relay.get("metrics", 0)))
        if not found:
            return
        job.relay["metrics"] = int(job.relay.get("metrics", 0)) + len(found)
        text = [json.dumps(item, default=str) for item in found]
        for path in files:
            job.append(path, text)

    def metric_source(self, type_name: str, location: str, spec: Any) -> Any:
        """``metric_type=api`` of ``cmdN``: the metrics that command's training job reports."""
        if type_name.strip().lower() != "api":
            return super().metric_source(type_name, location, spec)
        source = TrainingMetricSource(location, spec, parse_command_location(location))
        self._metric_sinks.add(source)
        return source

    def close(self) -> None:
        super().close()
        self._metric_sinks.clear()


def _check_api_sources(trial_file: TrialFileView) -> None:
    """``metric_type=api`` sources name a command of the file (``cmd1``), checked now."""
    metric = trial_file.section("metric_config")
    if metric is None or str(metric.get("metric_type") or "").strip().lower() != "api":
        return
    platform = trial_file.section("platform_config")
    numbers = [command_number(k) for k in getattr(platform, "keys", lambda: [])()]
    last = max((n for n in numbers if n is not None), default=0)
    keys = getattr(metric, "keys", lambda: [])()
    for key in keys:
        if not (key == "metric_source" or key.startswith("metric_source_")):
            continue
        location = metric.get(key) or ""
        try:
            number = parse_command_location(location)
        except ConfigError as err:
            raise metric.error(key, str(err).replace(f"metric_source={location!r}: ", "")) \
                from None
        if last and number > last:  # (check drops a bad cmdN: only past the last one)
            raise metric.error(key, f"{location!r}: [platform_config] has no cmd{number}")
