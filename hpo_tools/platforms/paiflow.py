"""The PAI-Flow platform (``name=PAIFLOW``): ``paiflow run ...`` commands as pipeline runs,
through ``alibabacloud-paiflow20210202``.

- A command (:mod:`hpo_tools.platforms.paiflow_command`) is one ``CreatePipelineRun`` then
  ``StartPipelineRun``; the run's name is ``--name`` plus ``-hpo-`` and 8 hex digits, unique per
  submission, so that a run whose create answer never came is found (``ListPipelineRuns``) and
  terminated. A run created but refused its start is terminated before the submit fails.
- Submit, follow, cancel, cancel from a registry record: :mod:`hpo_tools.platforms.cloud_job`.
  Each check is one ``GetPipelineRun``, then the run's new log lines
  (``ListPipelineRunNodeLogs`` of its root node) to the trial log through the masker. Cancel is
  ``TerminatePipelineRun``.
- ``[paiflow_config] access_key_id, access_key_secret, region_id, workspace_id`` (hpo_tools
  0.1.x's section; ``endpoint``, ``poll_interval`` optional); the keys default to the
  environment (``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``).

The SDK is imported only when a client is built or a request made.
"""

from __future__ import annotations

import secrets
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Tuple

from hpo_tools.errors import ConfigError, PlatformError
from hpo_tools.platforms.base import JobState, TrialFileView
from hpo_tools.platforms.cloud_job import (
    CANCEL_TIMEOUT,
    CloudJob,
    CloudJobPlatform,
    Status,
    Submission,
    bounded,
    first_line,
    sdk_client,
    status_state,
)
from hpo_tools.platforms.credentials import AccessKeys
from hpo_tools.platforms.paiflow_command import (
    create_pipeline_run_request,
    parse_paiflow_command,
)

__all__ = ["PaiFlowPlatform", "run_state"]

_STATES: Dict[str, JobState] = {
    "initialized": JobState.PENDING,
    "created": JobState.PENDING,
    "pending": JobState.PENDING,
    "running": JobState.RUNNING,
    "suspended": JobState.RUNNING,
    "terminating": JobState.RUNNING,
    "succeeded": JobState.SUCCEEDED,
    "skipped": JobState.SUCCEEDED,
    "failed": JobState.FAILED,
    "terminated": JobState.CANCELLED,
}
_LOG_PAGE = 100
_SECTION_KEYS = ("access_key_id", "access_key_secret", "region_id", "workspace_id", "endpoint",
                 "poll_interval")


def run_state(status: Optional[str]) -> JobState:
    """Our state of a pipeline run's status (``Initialized`` -> PENDING); unknown: RUNNING."""
    return status_state(_STATES, status)


def _paiflow_client(**config: Any) -> Any:
    """The SDK's PAI-Flow ``Client`` from ``Config`` keywords, through
    :func:`hpo_tools.cloud.build` (its fake under ``HPO_TOOLS_FAKE_CLOUD``)."""
    return sdk_client("paiflow", "alibabacloud_paiflow20210202.client", **config)


class PaiFlowPlatform(CloudJobPlatform):
    """Runs ``paiflow run ...`` commands as PAI-Flow pipeline runs.

    Args:
        region: ``[paiflow_config] region_id``; may be empty with ``endpoint``.
        endpoint: Default ``paiflow.<region>.aliyuncs.com``.
        workspace_id: ``[paiflow_config] workspace_id``: of commands that name none.
        access_id, access_key: The keys; default: the environment.
        credential_env: Names of the two env vars the keys come from (stored instead of them).
        poll_interval: Seconds between two checks of a run.
        call_timeout: Seconds any SDK call may take.
        client_factory: Builds the client from ``Config`` keywords (tests pass
            ``FakePaiFlowClient(...).connect``).
    """

    name = "paiflow"
    display = "PAI-Flow"
    log_tag = "paiflow"
    pending_prefix = "paiflow-pending:"
    trial_file_sections = ("paiflow_config",)
    trial_file_hint = "[paiflow_config] region_id and workspace_id"

    @classmethod
    def options_from_trial_file(cls, trial_file: TrialFileView) -> Dict[str, Any]:
        """``[paiflow_config]``: region_id (or endpoint), workspace_id, the keys."""
        section = trial_file.section("paiflow_config")
        if section is None:
            raise ConfigError(
                f"{trial_file.source}: [paiflow_config] is required for the PAIFLOW platform "
                "(region_id, workspace_id; access_key_id / access_key_secret or the "
                "environment's keys)", source=trial_file.source, section="paiflow_config")
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
        return options

    @classmethod
    def shape_command(cls, text: str) -> str:
        """The command as written; a malformed ``paiflow run`` line is a ConfigError now."""
        parse_paiflow_command(text)
        return text

    def __init__(self, *, region: str = "", endpoint: str = "", workspace_id: str = "",
                 access_id: Optional[str] = None, access_key: Optional[str] = None,
                 credential_env: Any = None, poll_interval: Any = 10.0,
                 call_timeout: Any = 30.0,
                 client_factory: Optional[Callable[..., Any]] = None) -> None:
        region, endpoint = str(region or "").strip(), str(endpoint or "").strip()
        if not region and not endpoint:
            raise ConfigError("platform PAIFLOW: region is missing ([paiflow_config] region_id, "
                              "or endpoint)")
        self.region = region
        self.endpoint = endpoint or f"paiflow.{region}.aliyuncs.com"
        self.workspace_id = str(workspace_id or "").strip()
        keys = AccessKeys.of("PAIFLOW", access_id, access_key, credential_env=credential_env,
                             hint="[paiflow_config] access_key_id and access_key_secret")
        self._init_cloud(keys, poll_interval=poll_interval, call_timeout=call_timeout,
                         client_factory=client_factory)

    def __repr__(self) -> str:
        return f"PaiFlowPlatform(region={self.region!r}, endpoint={self.endpoint!r}, " \
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
        return (factory or _paiflow_client)(
            access_key_id=access_id, access_key_secret=access_key,
            region_id=self.region or None, endpoint=self.endpoint, read_timeout=timeout_ms,
            connect_timeout=min(timeout_ms, 10_000))

    def prepare(self, command: str, env: Mapping[str, str], command_name: str) -> Submission:
        parsed = parse_paiflow_command(command)
        unique = f"{parsed.name}-hpo-{secrets.token_hex(4)}"
        workspace = parsed.workspace_id or self.workspace_id
        request = create_pipeline_run_request(parsed, unique_name=unique, workspace_id=workspace)
        return Submission(request=request, unique_name=unique, scope=workspace,
                          summary=parsed.summary.replace(parsed.name, unique, 1))

    def create(self, submission: Submission) -> str:
        """``CreatePipelineRun`` then ``StartPipelineRun``; a run whose start failed is
        terminated (bounded) and the submit fails without a status code to trust."""
        run_id = str(self.client().create_pipeline_run(submission.request).body.pipeline_run_id)
        try:
            self.client().start_pipeline_run(run_id)
        except Exception as err:
            bounded(f"paiflow-terminate-{run_id}", lambda: self.stop(run_id), CANCEL_TIMEOUT)
            raise PlatformError(f"PAI-Flow run {run_id} was created but did not start "
                                f"({first_line(err)}); terminated") from err
        return run_id

    def status(self, cloud_id: str) -> Status:
        from alibabacloud_paiflow20210202 import models

        body = self.client().get_pipeline_run(cloud_id, models.GetPipelineRunRequest()).body
        return Status(text=str(body.status or ""), reason=str(body.message or ""),
                      url=body.pipeline_run_uri or None, body=body)

    def stop(self, cloud_id: str) -> None:
        self.client().terminate_pipeline_run(cloud_id)

    def find(self, unique_name: str, scope: str) -> List[Tuple[str, str]]:
        from alibabacloud_paiflow20210202 import models

        request = models.ListPipelineRunsRequest(name=unique_name, workspace_id=scope or None,
                                                 page_size=50)
        runs = self.client().list_pipeline_runs(request).body.pipeline_runs or []
        return [(str(run.pipeline_run_id), str(run.status or "")) for run in runs
                if str(run.name or "") == unique_name]

    def state_of(self, status_text: Optional[str]) -> JobState:
        return run_state(status_text)

    def on_check(self, job: CloudJob, status: Status) -> None:
        """The root node's new log lines to the trial log."""
        from alibabacloud_paiflow20210202 import models

        node_id = getattr(status.body, "node_id", None)
        if not node_id or job.cloud_id is None:
            return
        while True:
            offset = int(job.relay.get("log_lines", 0))
            body = self.client().list_pipeline_run_node_logs(
                job.cloud_id, str(node_id),
                models.ListPipelineRunNodeLogsRequest(offset=offset, page_size=_LOG_PAGE)).body
            lines = [str(line) for line in body.logs or []]
            if lines:
                job.relay["log_lines"] = offset + len(lines)
                job.append(job.log_path, lines)
            if len(lines) < _LOG_PAGE:
                return
