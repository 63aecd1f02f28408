"""The PAI-DLC platform: ``dlc submit ...`` commands as DLC jobs, through the official SDK.

- A command is a ``dlc submit <kind> --name=... --command=... --workers=... ...`` line (the DLC
  command-line tool's form, as hpo_tools 0.1.x ran it), parsed and checked by
  :mod:`hpo_tools.platforms.dlc_command` when the trial file is read and sent as one
  ``CreateJob`` (``alibabacloud-pai-dlc20201203``). The job's display name is ``--name`` plus
  ``-hpo-`` and 8 hex digits, unique per submission, so that a job whose ``CreateJob`` answer
  never came can be found by name (``ListJobs``) and stopped.
- Submit, follow, cancel, cancel from a registry record: :mod:`hpo_tools.platforms.cloud_job`
  (a ``CreateJob`` in a thread that :meth:`~DlcPlatform.interrupt` stops waiting for, a follower
  thread per job, ``StopJob`` bounded to 2.5 s). A submit after the runner's signal creates
  nothing. Each check is one ``GetJob`` and one ``GetPodLogs`` per pod (the last logs are
  fetched before the final state is published); pod log lines go to the trial log through the
  runner's masker, and into ``dlc-logs/cmdN[.<pod type>].log`` for the ``stdout`` metric
  sources ``cmdN`` / ``cmdN,<pod type>`` (:mod:`.dlc_logs`).
- Credentials (:mod:`.credentials`): ``[dlc_config] access_id / access_key`` as the runner
  resolved them (``${ENV}``), else ``[oss_config]``'s, else the environment
  (``ALIBABA_CLOUD_ACCESS_KEY_ID`` / ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, then ``DLC_ACCESS_ID`` /
  ``DLC_ACCESS_KEY``). Only the names of the env vars holding them are in settings and job
  descriptions.

The SDK is imported only inside :func:`_dlc_client` and the request builders: importing this
module costs nothing, and only trials that run on DLC pay the SDK's import (about 0.4 s).
"""

from __future__ import annotations

import logging
import secrets
from collections.abc import Mapping
from typing import Any, Callable, Dict, List, Optional, Tuple

from hpo_tools.errors import ConfigError
from hpo_tools.platforms.base import JobState, TrialFileView
from hpo_tools.platforms.cloud_job import (
    SEARCH_WINDOW,
    CloudJob,
    CloudJobPlatform,
    CommandSinks,
    Status,
    Submission,
    command_number,
    first_line,
    sdk_client,
    seconds,
    status_state,
)
from hpo_tools.platforms.credentials import ALIBABA_CLOUD_ENV, AccessKeys
from hpo_tools.platforms.dlc_command import create_job_request, join_lines, parse_dlc_command
from hpo_tools.platforms.dlc_logs import (
    JobLogSource,
    PodLogTracker,
    parse_job_log_location,
    pod_matches,
)

__all__ = [
    "DEFAULT_CREDENTIAL_ENV",
    "SEARCH_WINDOW",
    "DlcPlatform",
    "job_state",
]

_logger = logging.getLogger(__name__)

#: Env var pairs (access key id, secret) tried in order when no credentials are given.
DEFAULT_CREDENTIAL_ENV: Tuple[Tuple[str, str], ...] = (
    ALIBABA_CLOUD_ENV,
    ("DLC_ACCESS_ID", "DLC_ACCESS_KEY"),
)
# DLC job status -> our state. The *Reserving states keep the nodes after the outcome is known.
_STATES: Dict[str, JobState] = {
    "creating": JobState.PENDING,
    "queuing": JobState.PENDING,
    "bidding": JobState.PENDING,
    "envpreparing": JobState.PENDING,
    "sanitychecking": JobState.PENDING,
    "running": JobState.RUNNING,
    "restarting": JobState.RUNNING,
    "stopping": JobState.RUNNING,
    "succeededreserving": JobState.SUCCEEDED,
    "succeeded": JobState.SUCCEEDED,
    "failedreserving": JobState.FAILED,
    "failed": JobState.FAILED,
    "stopped": JobState.CANCELLED,
}
_LOG_MAX_LINES = 5000  # GetPodLogs MaxLines per call (the service's default is 2000)


def job_state(status: Optional[str]) -> JobState:
    """Our state of a DLC job status (``Queuing`` -> PENDING); unknown ones are RUNNING."""
    return status_state(_STATES, status)


def _dlc_client(**config: Any) -> Any:
    """The SDK's DLC ``Client`` built from ``Config`` keywords (``access_key_id``,
    ``access_key_secret``, ``region_id``, ``endpoint``, ``protocol``, ``read_timeout``,
    ``connect_timeout``): the one place a DLC client is built, through :func:`hpo_tools.cloud.build`
    (its fake under ``HPO_TOOLS_FAKE_CLOUD``). Building it contacts nothing."""
    return sdk_client("dlc", "alibabacloud_pai_dlc20201203.client", **config)


class DlcPlatform(CloudJobPlatform):
    """Runs ``dlc submit ...`` commands as PAI-DLC jobs through ``alibabacloud-pai-dlc20201203``.

    A job's ``unique_name`` is its DLC display name, its ``scope`` the workspace, its
    ``cloud_id`` DLC's job id; ``job.relay["pods"]`` maps pod id -> pod type as ``GetJob``
    listed them.

    Args:
        region: The region (``[dlc_config] region``, ``cn-shanghai``).
        endpoint: The service address (``[dlc_config] end_point``); default
            ``pai-dlc.<region>.aliyuncs.com``.
        protocol: ``https`` (default) or ``http`` (``[dlc_config] protocol``).
        access_id: Access key id (the runner resolves ``${ENV}``); default: the environment.
        access_key: Access key secret.
        credential_env: Names of the two env vars the credentials come from, stored instead of
            the credentials so another process can rebuild them. Default: the variables found
            holding the given values, else ``ALIBABA_CLOUD_ACCESS_KEY_ID`` /
            ``ALIBABA_CLOUD_ACCESS_KEY_SECRET``, then ``DLC_ACCESS_ID`` / ``DLC_ACCESS_KEY``.
        poll_interval: Seconds between two checks of a job (``GetJob``, ``GetPodLogs``).
        call_timeout: Seconds any SDK call may take (its read timeout).
        client_factory: Builds the client from ``Config`` keywords (default: the SDK's
            ``Client``; tests pass ``FakeDlcClient(...).connect``).

    Raises:
        ConfigError: neither region nor endpoint, or a malformed setting.
    """

    name = "dlc"
    display = "DLC"
    log_tag = "dlc"
    pending_prefix = "dlc-pending:"
    trial_file_sections = ("dlc_config",)
    # `stdout` sources named cmdN / cmdN,<pod type> read a job's own pod logs (the others are
    # the ordinary stdout source of a file).
    metric_source_types = ("stdout",)
    trial_file_hint = "[dlc_config] region (or end_point)"

    @classmethod
    def options_from_trial_file(cls, trial_file: TrialFileView) -> Dict[str, Any]:
        """``[dlc_config] access_id, access_key, end_point, region, protocol, poll_interval``;
        the credentials default to ``[oss_config]``'s, then to the environment."""
        section = trial_file.section("dlc_config")
        if section is None:
            raise ConfigError(
                f"{trial_file.source}: [dlc_config] is required for the DLC platform "
                "(region or end_point; access_id / access_key or the environment's keys)",
                source=trial_file.source, section="dlc_config",
            )
        section.check_keys(("access_id", "access_key", "end_point", "region", "protocol",
                            "poll_interval"))
        region, endpoint = section.get("region") or "", section.get("end_point") or ""
        if not region and not endpoint:
            raise section.error("region", "is required (e.g. cn-shanghai), or end_point")
        protocol = (section.get("protocol") or "https").strip().lower()
        if protocol not in ("http", "https"):
            raise section.error("protocol", f"expected http or https, got {protocol!r}")
        access_id, access_key = section.get("access_id"), section.get("access_key")
        oss = trial_file.section("oss_config")
        if oss is not None:
            access_id = access_id or oss.get("accessKeyID")
            access_key = access_key or oss.get("accessKeySecret")
        options: Dict[str, Any] = {"region": region, "endpoint": endpoint, "protocol": protocol,
                                   "access_id": access_id, "access_key": access_key}
        if section.get("poll_interval"):
            try:
                options["poll_interval"] = seconds("DLC", "poll_interval",
                                                   section.get("poll_interval"))
            except ConfigError:
                raise section.error("poll_interval", "expected seconds (a number >= 0)") from None
        return options

    @classmethod
    def shape_command(cls, text: str) -> str:
        """The command on one line (:func:`~hpo_tools.platforms.dlc_command.join_lines`); a
        malformed ``dlc submit`` line is a ConfigError now, not when its turn comes."""
        parse_dlc_command(text)
        return join_lines(text)


    def __init__(
        self,
        *,
        region: str = "",
        endpoint: str = "",
        protocol: str = "https",
        access_id: Optional[str] = None,
        access_key: Optional[str] = None,
        credential_env: Any = None,
        poll_interval: Any = 10.0,
        call_timeout: Any = 30.0,
        client_factory: Optional[Callable[..., Any]] = None,
    ) -> None:
        region, endpoint = str(region or "").strip(), str(endpoint or "").strip()
        if not region and not endpoint:
            raise ConfigError("platform DLC: region is missing ([dlc_config] region, or "
                              "end_point)")
        protocol = str(protocol or "https").strip().lower()
        if protocol not in ("http", "https"):
            raise ConfigError(f"platform DLC: protocol={protocol!r}: expected http or https")
        self.region = region
        self.endpoint = endpoint or f"pai-dlc.{region}.aliyuncs.com"
        self.protocol = protocol
        keys = AccessKeys.of("DLC", access_id, access_key, credential_env=credential_env,
                             defaults=DEFAULT_CREDENTIAL_ENV,
                             hint="[dlc_config] access_id and access_key")
        self._init_cloud(keys, poll_interval=poll_interval, call_timeout=call_timeout,
                         client_factory=client_factory)
        self._log_sinks = CommandSinks("dlc-logs")

    def __repr__(self) -> str:
        return (f"DlcPlatform(region={self.region!r}, endpoint={self.endpoint!r}, "
                f"protocol={self.protocol!r}, keys={self.keys!r})")

    def settings(self) -> Dict[str, Any]:
        """Region, endpoint, protocol, env var names of the credentials, intervals."""
        return {
            "region": self.region,
            "endpoint": self.endpoint,
            "protocol": self.protocol,
            "credential_env": list(self.keys.env_names()),
            "poll_interval": self.poll_interval,
            "call_timeout": self.call_timeout,
        }

    # -- the SDK calls -----------------------------------------------------------------------

    def build_client(self, factory: Optional[Callable[..., Any]], access_id: str,
                     access_key: str) -> Any:
        timeout_ms = max(1, int(self.call_timeout * 1000))
        return (factory or _dlc_client)(
            access_key_id=access_id, access_key_secret=access_key,
            region_id=self.region or None, endpoint=self.endpoint, protocol=self.protocol,
            read_timeout=timeout_ms, connect_timeout=min(timeout_ms, 10_000),
        )

    def prepare(self, command: str, env: Mapping[str, str], command_name: str) -> Submission:
        parsed = parse_dlc_command(command)
        display_name = f"{parsed.name}-hpo-{secrets.token_hex(4)}"
        request = create_job_request(parsed, display_name=display_name, envs=env)
        _logger.info("DLC %s %s: %d pods in workspace %s", parsed.job_type, display_name,
                     parsed.pods, parsed.workspace_id)
        return Submission(request=request, unique_name=display_name, scope=parsed.workspace_id,
                          summary=f"{parsed.job_type} {display_name}")

    def create(self, submission: Submission) -> str:
        """``CreateJob``."""
        return str(self.client().create_job(submission.request).body.job_id)

    def get_job(self, dlc_job_id: str) -> Any:
        """``GetJob``: the response body (``status``, ``pods``, ``reason_message``, ...)."""
        from alibabacloud_pai_dlc20201203 import models

        return self.client().get_job(dlc_job_id, models.GetJobRequest()).body

    def status(self, cloud_id: str) -> Status:
        """``GetJob``; the reason is its ``reason_code`` and ``reason_message``."""
        body = self.get_job(cloud_id)
        reason = " ".join(str(part) for part in (getattr(body, "reason_code", None),
                                                 getattr(body, "reason_message", None)) if part)
        return Status(text=str(body.status or ""), reason=reason, body=body)

    def stop(self, cloud_id: str) -> None:
        """``StopJob``."""
        self.client().stop_job(cloud_id)

    def find(self, unique_name: str, scope: str) -> List[Tuple[str, str]]:
        return self.jobs_named(unique_name, scope)

    def jobs_named(self, display_name: str, workspace_id: str) -> List[Tuple[str, str]]:
        """``ListJobs``: ``(job id, status)`` of the workspace's jobs named ``display_name``."""
        from alibabacloud_pai_dlc20201203 import models

        request = models.ListJobsRequest(display_name=display_name,
                                         workspace_id=workspace_id or None, page_size=50)
        jobs = self.client().list_jobs(request).body.jobs or []
        return [(str(job.job_id), str(job.status or "")) for job in jobs
                if str(job.display_name or "") == display_name]

    def state_of(self, status_text: Optional[str]) -> JobState:
        return job_state(status_text)

    def pod_logs(self, dlc_job_id: str, pod_id: str) -> List[str]:
        """``GetPodLogs``: the pod's log lines (at most :data:`_LOG_MAX_LINES`)."""
        from alibabacloud_pai_dlc20201203 import models

        response = self.client().get_pod_logs(
            dlc_job_id, pod_id, models.GetPodLogsRequest(max_lines=_LOG_MAX_LINES))
        return [str(line) for line in (response.body.logs or [])]

    # -- relaying ----------------------------------------------------------------------------

    def command_sinks(self) -> List[CommandSinks]:
        return [self._log_sinks]

    def on_submit(self, job: CloudJob) -> None:
        """Bind the job-log metric sources of the job's command (``cmdN``) to their files."""
        job.relay["pods"] = {}
        job.relay["tracker"] = PodLogTracker()
        job.relay["log_errors"] = set()
        job.relay["sinks"] = [(source.pod_filter, path) for source, path in self._log_sinks.bind(
            command_number(job.command_name), job.log_path)]

    def on_check(self, job: CloudJob, status: Status) -> None:
        """Record the pods ``GetJob`` listed; new lines of every pod to the trial log (under a
        ``--- pod`` header) and to the job-log metric files whose pod filter matches."""
        pods: Dict[str, str] = job.relay.setdefault("pods", {})
        for pod in getattr(status.body, "pods", None) or []:
            pod_id = str(getattr(pod, "pod_id", "") or "")
            if pod_id and pod_id not in pods:
                pods[pod_id] = str(getattr(pod, "type", "") or "")
        tracker: PodLogTracker = job.relay.setdefault("tracker", PodLogTracker())
        log_errors: set = job.relay.setdefault("log_errors", set())
        for pod_id, pod_type in list(pods.items()):
            try:
                lines = self.pod_logs(str(job.cloud_id), pod_id)
            except Exception as err:  # a pod not started yet has no log: try again later
                if pod_id not in log_errors:
                    log_errors.add(pod_id)
                    _logger.info("no log of pod %s yet: %s", pod_id, first_line(err))
                continue
            new, gap = tracker.new_lines(pod_id, lines)
            if not new:
                continue
            header = f"[dlc] --- pod {pod_id} ({pod_type or 'pod'}) ---"
            if gap:
                header += " (lines missing before these: the log grew past the fetch limit)"
            job.append(job.log_path, [header, *new])
            for pod_filter, path in job.relay.get("sinks") or []:
                if pod_matches(pod_filter, pod_type, pod_id):
                    job.append(path, new)

    def cancel_and_identify(self, description: Mapping[str, Any]) -> Tuple[bool, Dict[str, Any]]:
        """As :meth:`CloudJobPlatform.cancel_and_identify` (and so ``cancel_described``);
        records written before DLC moved onto :mod:`.cloud_job` name the job
        ``display_name`` / ``workspace_id``."""
        record = dict(description)
        if not record.get("unique_name"):
            record["unique_name"] = record.get("display_name")
        if not record.get("scope"):
            record["scope"] = record.get("workspace_id")
        return super().cancel_and_identify(record)

    # -- job-log metric sources --------------------------------------------------------------

    def metric_source(self, type_name: str, location: str, spec: Any) -> Any:
        """``stdout`` of ``cmdN`` / ``cmdN,<pod type>``: that job's pod logs; of a file: the
        ordinary ``stdout`` source."""
        if type_name.strip().lower() != "stdout":
            return super().metric_source(type_name, location, spec)
        where = parse_job_log_location(location)
        if where is None:
            from hpo_tools.metrics.sources import build_source

            return build_source("stdout", location, spec=spec)
        source = JobLogSource(location, spec, *where)
        self._log_sinks.add(source)
        return source

    def close(self) -> None:
        """Stop following jobs (they keep running)."""
        super().close()
        self._log_sinks.clear()
