"""A small client for the REST API of a running NNI experiment (``hpo-tools kill`` / ``retry``).

NNI serves ``http://localhost:<port>[/<urlPrefix>]/api/v1/nni``; every call here has a timeout.
The port of an experiment id comes from NNI's experiment manifest, ``~/nni-experiments/.experiment``
(kept there whatever ``experimentWorkingDirectory`` is), unless the caller gives it.

Only the standard library is used: this module is imported by commands that must start fast.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError, HpoError, did_you_mean

__all__ = [
    "NniRestError",
    "ExperimentEntry",
    "NniRest",
    "ACTIVE_TRIAL_STATUSES",
    "DEFAULT_TIMEOUT",
    "manifest_path",
    "find_experiment",
    "connect",
]

_logger = logging.getLogger(__name__)

DEFAULT_TIMEOUT = 10.0
ACTIVE_TRIAL_STATUSES = ("RUNNING", "WAITING", "UNKNOWN")
"""Trial statuses NNI may still be running (``kill`` cancels these)."""


#: NNI's manager is reached directly, never through ``http_proxy`` (which a trial inherits
#: from the shell that started the experiment).
_DIRECT = urllib.request.build_opener(urllib.request.ProxyHandler({}))


class NniRestError(HpoError):
    """The experiment's REST server cannot be reached or refused a request."""


@dataclasses.dataclass(frozen=True)
class ExperimentEntry:
    """What NNI's manifest knows about one experiment.

    Attributes:
        experiment_id: The experiment id.
        port: The port of its REST server.
        log_dir: Its ``experimentWorkingDirectory`` (the experiment directory is
            ``log_dir/experiment_id``).
        prefix_url: The URL prefix, when one was configured.
        status: The status the manifest last recorded (``RUNNING``, ``STOPPED``, ...).
    """

    experiment_id: str
    port: int
    log_dir: str = ""
    prefix_url: str | None = None
    status: str = ""

    @property
    def experiment_dir(self) -> Path | None:
        """``log_dir/experiment_id``, or None when the manifest has no log dir."""
        return Path(self.log_dir) / self.experiment_id if self.log_dir else None


def manifest_path(home: Path | None = None) -> Path:
    """NNI's experiment manifest: ``<home>/nni-experiments/.experiment`` (home: ``~``)."""
    return (Path.home() if home is None else Path(home)) / "nni-experiments" / ".experiment"


def find_experiment(experiment_id: str, manifest: Path | None = None) -> ExperimentEntry:
    """The manifest entry of ``experiment_id``.

    Raises:
        ConfigError: the manifest is missing, unreadable, or has no such experiment.
    """
    path = manifest_path() if manifest is None else Path(manifest)
    try:
        entries = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise ConfigError(
            f"{path}: no NNI experiment manifest; give the experiment's --port"
        ) from None
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: unreadable NNI experiment manifest: {err}") from err
    if not isinstance(entries, Mapping) or experiment_id not in entries:
        known = list(entries) if isinstance(entries, Mapping) else []
        raise ConfigError(
            f"{path}: no experiment {experiment_id!r}"
            f"{did_you_mean(experiment_id, known)}; `nnictl experiment list --all` shows them"
        )
    entry = entries[experiment_id]
    try:
        port = int(entry["port"])
    except (KeyError, TypeError, ValueError):
        raise ConfigError(f"{path}: experiment {experiment_id!r} has no port") from None
    return ExperimentEntry(
        experiment_id=experiment_id,
        port=port,
        log_dir=str(entry.get("logDir") or ""),
        prefix_url=entry.get("prefixUrl") or None,
        status=str(entry.get("status") or ""),
    )


class NniRest:
    """The REST API of one running experiment.

    Args:
        port: The experiment's port.
        host: Where NNI's manager runs.
        prefix_url: NNI's ``urlPrefix``, if any.
        timeout: Seconds allowed for each request.

    Example:
        >>> rest = NniRest(8080)
        >>> [t["trialJobId"] for t in rest.list_trial_jobs() if t["status"] == "RUNNING"]
    """

    def __init__(self, port: int, *, host: str = "localhost", prefix_url: str | None = None,
                 timeout: float = DEFAULT_TIMEOUT) -> None:
        prefix = f"/{prefix_url.strip('/')}" if prefix_url and prefix_url.strip("/") else ""
        self.base_url = f"http://{host}:{int(port)}{prefix}/api/v1/nni"
        self.timeout = timeout

    def __repr__(self) -> str:
        return f"NniRest({self.base_url!r})"

    @classmethod
    def from_trial_channel(cls, channel_url: str, *, timeout: float = DEFAULT_TIMEOUT) -> NniRest:
        """The REST API a local trial's command channel belongs to.

        NNI 3.0 gives a local trial ``NNI_TRIAL_COMMAND_CHANNEL=http://<host>:<port>[/<urlPrefix>]
        /env/<environment>/<trial>``, served by the same server as the REST API.

        Raises:
            ConfigError: the URL is not of that form.
        """
        parsed = urllib.parse.urlsplit(channel_url)
        head, sep, _ = parsed.path.rpartition("/env/")
        if parsed.scheme not in ("http", "https") or not parsed.port or not sep:
            raise ConfigError(
                f"NNI_TRIAL_COMMAND_CHANNEL={channel_url!r}: expected "
                "http://HOST:PORT[/PREFIX]/env/ENV/TRIAL")
        return cls(parsed.port, host=parsed.hostname or "localhost", prefix_url=head or None,
                   timeout=timeout)

    def request(self, method: str, path: str, *, body: Any = None,
                query: Mapping[str, str] | None = None) -> Any:
        """Send one request; return the decoded JSON answer (None when the body is empty).

        Raises:
            NniRestError: nothing answers, or NNI answers with an error status.
        """
        url = self.base_url + path
        if query:
            url += "?" + urllib.parse.urlencode(dict(query))
        data = None
        headers = {"Accept": "application/json"}
        if body is not None:
            data = json.dumps(body).encode("utf-8")
            headers["Content-Type"] = "application/json"
        req = urllib.request.Request(url, data=data, method=method, headers=headers)
        _logger.debug("%s %s", method, url)
        try:
            with _DIRECT.open(req, timeout=self.timeout) as answer:
                payload = answer.read()
        except urllib.error.HTTPError as err:
            detail = err.read().decode("utf-8", "replace").strip().splitlines()
            raise NniRestError(
                f"{method} {url}: HTTP {err.code}: {detail[0] if detail else err.reason}"
            ) from None
        except (urllib.error.URLError, OSError) as err:
            reason = getattr(err, "reason", err)
            raise NniRestError(
                f"{method} {url}: no answer ({reason}); is the experiment running? "
                f"(`nnictl experiment list`)"
            ) from None
        if not payload.strip():
            return None
        try:
            return json.loads(payload)
        except ValueError:
            return payload.decode("utf-8", "replace")

    # -- verbs -------------------------------------------------------------------------------

    def check_status(self) -> dict[str, Any]:
        """``{"status": "RUNNING" | "DONE" | ..., "errors": [...]}``."""
        return dict(self.request("GET", "/check-status") or {})

    def get_experiment(self) -> dict[str, Any]:
        """The experiment profile (``params`` holds the config, incl. ``maxTrialNumber``)."""
        return dict(self.request("GET", "/experiment") or {})

    def set_max_trial_number(self, value: int) -> dict[str, Any]:
        """Set ``maxTrialNumber`` (PUT the whole profile, as NNI requires); return the profile."""
        profile = self.get_experiment()
        profile.setdefault("params", {})["maxTrialNumber"] = int(value)
        self.request("PUT", "/experiment", body=profile, query={"update_type": "MAX_TRIAL_NUM"})
        return profile

    def list_trial_jobs(self) -> list[dict[str, Any]]:
        """Every trial NNI has submitted, with ``trialJobId`` and ``status``."""
        return list(self.request("GET", "/trial-jobs") or [])

    def get_trial_job(self, trial_id: str) -> dict[str, Any]:
        """NNI's record of one trial (``hyperParameters``: the parameter sets it recorded, as
        JSON texts); ``{}`` while NNI has not stored it yet."""
        answer = self.request("GET", f"/trial-jobs/{urllib.parse.quote(trial_id, safe='')}")
        return dict(answer) if isinstance(answer, dict) else {}

    def cancel_trial_job(self, trial_id: str) -> None:
        """Ask NNI to cancel a trial (SIGINT to its command, SIGKILL 5 s later)."""
        self.request("DELETE", f"/trial-jobs/{urllib.parse.quote(trial_id, safe='')}")

    def add_customized_trial(self, parameters: Mapping[str, Any]) -> int:
        """Queue a trial with the given parameters; NNI refuses once maxTrialNumber is reached.

        Returns:
            The new trial's sequence id.
        """
        answer = self.request("POST", "/trial-jobs", body=dict(parameters))
        return int((answer or {}).get("sequenceId", -1))


def connect(experiment_id: str, *, port: int | None = None,
            experiment_dir: str | Path | None = None, manifest: Path | None = None,
            timeout: float = DEFAULT_TIMEOUT) -> tuple[NniRest, Path]:
    """The REST client and the experiment directory ``E`` of a running experiment.

    The port is ``port`` or the manifest's; ``E`` is ``experiment_dir`` or the manifest's
    ``logDir/<id>``, else the profile's ``logDir``. The experiment answering on the port must
    be ``experiment_id``.

    Raises:
        ConfigError: the experiment is unknown, or another experiment answers on the port.
        NniRestError: nothing answers on the port.
    """
    entry: ExperimentEntry | None = None
    if port is None or experiment_dir is None:
        try:
            entry = find_experiment(experiment_id, manifest)
        except ConfigError:
            if port is None:
                raise
    rest = NniRest(entry.port if port is None and entry else int(port or 0),
                   prefix_url=entry.prefix_url if entry else None, timeout=timeout)
    profile = rest.get_experiment()
    answering = profile.get("id")
    if answering != experiment_id:
        raise ConfigError(f"{rest.base_url} serves experiment {answering!r}, not "
                          f"{experiment_id!r}; check --port")
    if experiment_dir is not None:
        exp_dir = Path(experiment_dir)
    elif entry is not None and entry.experiment_dir is not None:
        exp_dir = entry.experiment_dir
    elif profile.get("logDir"):
        exp_dir = Path(str(profile["logDir"]))
    else:
        raise ConfigError(f"experiment {experiment_id!r}: cannot tell its directory; "
                          f"give --experiment-dir")
    return rest, exp_dir
