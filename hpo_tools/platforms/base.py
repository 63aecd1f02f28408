"""The platform interface: submit a command, follow it, cancel it; and the registry of platforms.

A *platform* runs the trial's training commands somewhere (this machine, MaxCompute, ...). It hands
back a :class:`Job` per command. Jobs are followed with :meth:`Job.poll` / :meth:`Job.wait`,
stopped with :meth:`Job.cancel`, and described with :meth:`Job.describe`: a JSON-safe dict without
secrets that the job registry (``hpo_tools.jobs``) stores so that *another* process (the assessor,
``hpo-tools kill``) can rebuild the platform with :func:`platform_for_description` and cancel
the job with :meth:`Platform.cancel_described`.

Adding a platform: write a module with a :class:`Platform` subclass and add one line to
``_PLATFORMS`` below (or call :func:`register_platform`). See docs/platforms.md.
"""

from __future__ import annotations

import abc
import enum
import importlib
import inspect
import logging
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Callable, ClassVar, Dict, Iterable, List, Optional, Protocol, Tuple, Union

from hpo_tools.errors import ConfigError, PlatformError, did_you_mean

__all__ = [
    "JobState",
    "Job",
    "Platform",
    "OutputFilter",
    "UpdateCallback",
    "create_platform",
    "platform_for_description",
    "platform_names",
    "register_platform",
    "platform_class",
    "platform_classes",
    "platforms_reading",
    "needs_platform_message",
    "registry_keys",
    "display_name",
    "CLASSIC_FORMAT_PLATFORM",
    "SectionView",
    "TrialFileView",
    "COMMAND_ENV",
]

_logger = logging.getLogger(__name__)

#: Applied to every line of relayed job output before it reaches the log (the runner's masker).
OutputFilter = Callable[[str], str]
#: Called with the job whenever something worth saving changed (new instance ids, a new state).
UpdateCallback = Callable[["Job"], None]
#: Set by the trial runner in each job's ``env``: which command of its stage the job runs
#: (``cmd2``). A platform reading one command's job logs as metrics (``cmd1``) goes by it.
COMMAND_ENV = "HPO_TOOLS_COMMAND"


class SectionView(Protocol):
    """One section of a trial file, as :meth:`Platform.options_from_trial_file` reads it
    (``hpo_tools.trial.ini.Section``)."""

    name: str

    def get(self, key: str, default: Optional[str] = None) -> Optional[str]: ...

    def require(self, key: str) -> str: ...

    def check_keys(self, allowed: Iterable[str], patterns: Iterable[str] = ()) -> None: ...

    def error(self, key: Optional[str], message: str) -> ConfigError: ...


class TrialFileView(Protocol):
    """A trial file's sections (``hpo_tools.trial.ini.TrialFile``)."""

    source: str

    def section(self, name: str) -> Optional[SectionView]: ...

    def require(self, name: str, why: str = "") -> SectionView: ...


class JobState(enum.Enum):
    """Where a job is in its life. ``value`` is the lower-case name stored in the job registry."""

    PENDING = "pending"
    RUNNING = "running"
    SUCCEEDED = "succeeded"
    FAILED = "failed"
    CANCELLED = "cancelled"

    @property
    def is_finished(self) -> bool:
        """True for SUCCEEDED, FAILED and CANCELLED: nothing of the job is running any more."""
        return self in (JobState.SUCCEEDED, JobState.FAILED, JobState.CANCELLED)

    @classmethod
    def parse(cls, value: str) -> JobState:
        """The state named ``value`` (``"running"`` or ``"RUNNING"``); ValueError when unknown."""
        try:
            return cls(str(value).lower())
        except ValueError:
            raise ValueError(
                f"unknown job state {value!r}: expected one of "
                + ", ".join(s.value for s in cls)
            ) from None


class Job(abc.ABC):
    """One submitted command.

    Attributes:
        job_id: The platform's id for the job (``local:<pid>@<start time>``, an instance id).
        log_path: Where the job's output (local) or status lines and logview addresses (remote) go.
        message: Why the job failed or was cancelled (one line), ``""`` while it runs or succeeded.
    """

    #: Seconds between two polls in the default :meth:`wait`.
    wait_interval: ClassVar[float] = 0.2

    def __init__(self, job_id: str, log_path: Path) -> None:
        self.job_id = job_id
        self.log_path = Path(log_path)
        self.message = ""

    @abc.abstractmethod
    def poll(self) -> JobState:
        """Return the job's state now, without blocking for long."""

    @abc.abstractmethod
    def cancel(self) -> None:
        """Stop the job and everything it started. Idempotent; returns within 3 seconds."""

    @abc.abstractmethod
    def describe(self) -> Dict[str, Any]:
        """A JSON-safe dict, without secrets, that :meth:`Platform.cancel_described` accepts.

        It always holds ``"platform"`` (the registry name), ``"settings"`` (the platform's
        non-secret settings, see :meth:`Platform.settings`) and ``"job_id"``.
        """

    @property
    def logview(self) -> Optional[str]:
        """A web address where users can watch the job, when the platform has one."""
        return None

    def wait(self, timeout: Optional[float] = None) -> JobState:
        """Poll until the job finishes or ``timeout`` seconds pass; return the last state seen."""
        deadline = None if timeout is None else time.monotonic() + timeout
        pause = threading.Event()
        while True:
            state = self.poll()
            if state.is_finished:
                return state
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    return state
                pause.wait(min(self.wait_interval, left))
            else:
                pause.wait(self.wait_interval)

    def __repr__(self) -> str:
        return f"{type(self).__name__}(job_id={self.job_id!r})"


class Platform(abc.ABC):
    """Where training commands run. Subclasses set ``name`` and implement the abstract methods.

    Example:
        >>> platform = create_platform("Local")
        >>> job = platform.submit("echo hello", log_path=Path("trial.log"))
        >>> job.wait()
        <JobState.SUCCEEDED: 'succeeded'>
    """

    #: The registry name, lower case (``"local"``, ``"maxcompute"``).
    name: ClassVar[str] = ""

    @abc.abstractmethod
    def submit(
        self,
        command: str,
        *,
        log_path: Path,
        env: Optional[Mapping[str, str]] = None,
        on_update: Optional[UpdateCallback] = None,
        output_filter: Optional[OutputFilter] = None,
    ) -> Job:
        """Start ``command`` and return its job at once (the job runs in the background).

        Args:
            command: The command text as the user wrote it (after templating).
            log_path: File the job's output or status lines are appended to.
            env: Extra environment variables for the job (local platform).
            on_update: Called with the job when there is something new to save in the registry.
            output_filter: Applied to each line before it is written to ``log_path``
                (the runner's secret masker).

        Raises:
            PlatformError: The job could not be started.
        """

    @abc.abstractmethod
    def cancel_described(self, description: Mapping[str, Any]) -> bool:
        """Cancel the job ``description`` (from :meth:`Job.describe`), possibly in another process.

        Returns:
            True when something was still running and was told to stop, False when nothing was
            left to stop (already finished, or the process is not the one described).
        """

    def settings(self) -> Dict[str, Any]:
        """The non-secret settings that rebuild an equivalent platform in another process."""
        return {}

    # -- what the trial layer asks of a platform (all optional) -------------------------------

    #: Trial-file sections of this platform's own (``[odps_config]``); read by
    #: :meth:`options_from_trial_file`. A platform-format trial file may hold any registered
    #: platform's sections; those of the platform that runs the trial must be valid.
    trial_file_sections: ClassVar[Tuple[str, ...]] = ()
    #: ``metric_type`` names this platform reads metrics through (``table``): see
    #: :meth:`metric_source`.
    metric_source_types: ClassVar[Tuple[str, ...]] = ()
    #: What a trial file needs besides ``name=`` to run on this platform, for messages
    #: (``"[odps_config] project_name / odps_endpoint"``).
    trial_file_hint: ClassVar[str] = ""

    @classmethod
    def options_from_trial_file(cls, trial_file: "TrialFileView") -> Dict[str, Any]:
        """The keyword arguments of this platform's constructor, from a trial file's sections.

        Raises:
            ConfigError: a missing or malformed section or key (``section.error(key, ...)``).
        """
        return {}

    @classmethod
    def shape_command(cls, text: str) -> str:
        """A command as written in the trial file -> as it is submitted.

        Raises:
            ConfigError: the command is malformed (the message names no file: the caller adds
                where it is).
        """
        return text

    def metric_source(self, type_name: str, location: str, spec: Any) -> Any:
        """A metric source of one of :attr:`metric_source_types` that reads through this
        platform (a ``table`` query runs on MaxCompute).

        Raises:
            ConfigError: the type is not one of this platform's, or the location is bad.
        """
        raise ConfigError(f"platform {self.name}: no metric source type {type_name!r}")

    def resume_stage(self, log_path: Path) -> None:
        """Called by the trial runner before a stage's first command when it resumes that stage
        (``resume=1``; ``log_path`` is the stage's log): a platform that keeps a command's
        output in files of its own (a cloud job's logs, read as metrics) keeps and reads what
        the earlier attempts wrote instead of starting them afresh. Nothing by default."""
        return None

    def interrupt(self) -> None:
        """Make a long call in progress on this platform (a metric query) give up soon.

        Called from a signal handler: it must only set a flag (no lock, no raise, no I/O).
        """
        return None

    def close(self) -> None:
        """Release what the platform holds (clients, threads). Jobs keep running."""
        return None

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.settings()!r})"


# Registry name -> "module:Class" (imported on first use so that the runner imports only what it
# runs) or the class itself.
_PLATFORMS: Dict[str, Union[str, type]] = {
    "local": "hpo_tools.platforms.local:LocalPlatform",
    "maxcompute": "hpo_tools.platforms.maxcompute:MaxComputePlatform",
    "datascience": "hpo_tools.platforms.datascience:DataSciencePlatform",
    "dlc": "hpo_tools.platforms.dlc:DlcPlatform",
    "pai": "hpo_tools.platforms.pai_training:PaiTrainingPlatform",
    "paiflow": "hpo_tools.platforms.paiflow:PaiFlowPlatform",
}
# The platform that runs the classic format's one ``PAI -name ...`` command (config_begin.ini).
CLASSIC_FORMAT_PLATFORM = "maxcompute"
# How users spell them in trial files, for messages.
_DISPLAY_NAMES: Dict[str, str] = {
    "local": "Local", "maxcompute": "MaxCompute", "datascience": "DataScience", "dlc": "DLC",
    "pai": "PAI", "paiflow": "PAIFLOW",
}
_registry_lock = threading.Lock()


def register_platform(name: str, platform_class: Union[str, type], display_name: str = "") -> None:
    """Add a platform under ``name`` (case-insensitive).

    Args:
        name: The name users write in ``[platform_config] name=...``.
        platform_class: A :class:`Platform` subclass, or ``"package.module:ClassName"``.
        display_name: How the name is spelled in messages (defaults to ``name``).
    """
    key = name.lower()
    with _registry_lock:
        _PLATFORMS[key] = platform_class
        _DISPLAY_NAMES[key] = display_name or name


def platform_names() -> list:
    """The registered platform names as users write them (``["Local", "MaxCompute"]``)."""
    return [_DISPLAY_NAMES.get(key, key) for key in sorted(_PLATFORMS)]


def registry_keys() -> List[str]:
    """The registered names, lower case, sorted (``["local", "maxcompute"]``)."""
    return sorted(_PLATFORMS)


def display_name(name: str) -> str:
    """How users spell the platform ``name`` (``MaxCompute``)."""
    key = str(name).strip().lower()
    return _DISPLAY_NAMES.get(key, key)


def platform_classes() -> List[type]:
    """Every registered platform class (imports each platform module; no SDK is imported)."""
    return [platform_class(key) for key in registry_keys()]


def platforms_reading(type_name: str) -> List[type]:
    """The registered platforms that read metrics of ``metric_type=type_name`` themselves."""
    key = str(type_name).strip().lower()
    return [cls for cls in platform_classes() if key in cls.metric_source_types]


def needs_platform_message(type_name: str) -> Optional[str]:
    """``metric_type=table runs on the MaxCompute platform: set ...`` when only a registered
    platform reads ``type_name`` (not a type every caller can build, such as ``stdout``, which
    a platform may read from its jobs' logs as well), else None."""
    from hpo_tools.metrics.sources import source_types

    if str(type_name).strip().lower() in source_types():
        return None
    readers = platforms_reading(type_name)
    if not readers:
        return None
    cls = readers[0]
    shown = display_name(cls.name)
    hint = f" and {cls.trial_file_hint}" if cls.trial_file_hint else ""
    return (f"metric_type={str(type_name).strip().lower()} runs on the {shown} platform: set "
            f"[platform_config] name={shown}{hint}")


def platform_class(name: str) -> type:
    """The class registered as ``name`` (case-insensitive).

    Raises:
        ConfigError: unknown name.
    """
    key = str(name).strip().lower()
    target = _PLATFORMS.get(key)
    if target is None:
        names = platform_names()
        raise ConfigError(
            f"unknown platform {name!r}: expected one of {', '.join(names)}"
            + did_you_mean(str(name), names + sorted(_PLATFORMS))
        )
    if isinstance(target, str):
        module_name, _, class_name = target.partition(":")
        target = getattr(importlib.import_module(module_name), class_name)
    return target


def create_platform(name: str, **settings: Any) -> Platform:
    """Build the platform called ``name`` (case-insensitive: ``Local``, ``maxcompute``).

    Args:
        name: A registered platform name.
        **settings: The platform's settings (see each platform's class docstring).

    Raises:
        ConfigError: Unknown platform name, or a setting the platform does not know.
    """
    platform_class_ = platform_class(name)
    accepted = _accepted_settings(platform_class_)
    if accepted is not None:
        display = _DISPLAY_NAMES.get(platform_class_.name, platform_class_.name or str(name))
        for key in settings:
            if key not in accepted:
                raise ConfigError(
                    f"platform {display}: unknown setting {key!r}; expected one of "
                    + ", ".join(sorted(accepted))
                    + did_you_mean(key, accepted)
                )
    return platform_class_(**settings)


def _accepted_settings(platform_class: type) -> Optional[set]:
    """The keyword names ``platform_class`` accepts, or None when it takes ``**kwargs``."""
    parameters = inspect.signature(platform_class).parameters.values()
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in parameters):
        return None
    return {
        p.name
        for p in parameters
        if p.kind in (inspect.Parameter.KEYWORD_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    }


def platform_for_description(
    description: Mapping[str, Any], **overrides: Any
) -> Platform:
    """Rebuild, in this process, the platform that ran the job ``description``.

    Only non-secret settings are in a description; credentials come from this process's
    environment (see each platform). ``overrides`` replace or add settings (tests inject fakes).

    Raises:
        PlatformError: The description names no platform.
        ConfigError: The platform is unknown or a stored setting is not accepted.
    """
    name = description.get("platform") if isinstance(description, Mapping) else None
    if not name:
        raise PlatformError(f"job description names no platform: {dict(description or {})!r}")
    settings = dict(description.get("settings") or {})
    settings.update(overrides)
    return create_platform(str(name), **settings)
