"""``dlc submit ...`` command lines (the PAI-DLC command-line tool's form) -> a CreateJob request.

hpo_tools 0.1.x trial files ran DLC jobs by calling the ``dlc`` command-line tool; the DLC
platform (:mod:`hpo_tools.platforms.dlc`) reads the same lines and sends them through the SDK
instead::

    dlc submit tfjob --name=easyrec_${exp_id}_${trial_id}
        --command='python -m easy_rec.python.train_eval --pipeline_config_path ...'
        --workspace_id=67849 --data_sources=d-5sf0ox5pw1pgi4vl7e
        --workers=1 --worker_image=REGISTRY/easyrec:tf1.15 --worker_spec=ecs.g6.2xlarge
        --ps=1 --ps_image=REGISTRY/easyrec:tf1.15 --ps_spec=ecs.g6.2xlarge

The lines of a multi-line command are joined into one (a backslash ending a line is dropped;
inside a quoted ``--command`` too, so the pods run one shell line), then words are split as a
POSIX shell splits them (quotes, ``'\\''``); flags are ``--key=value`` or ``--key value``
(``-`` and ``_`` alike in keys).
:func:`parse_dlc_command` checks everything the service would refuse later that can be checked
offline; :func:`create_job_request` builds the SDK's ``CreateJobRequest`` (the only function
here that imports the SDK).
"""

from __future__ import annotations

import dataclasses
import re
import shlex
from typing import Any, Dict, List, Mapping, Optional, Tuple

from hpo_tools.errors import ConfigError, did_you_mean

__all__ = [
    "DlcCommand",
    "RoleSpec",
    "JOB_KINDS",
    "parse_dlc_command",
    "create_job_request",
    "join_lines",
    "MAX_NAME_LENGTH",
]

#: ``dlc submit <kind>`` -> (CreateJob's JobType, the roles it may have).
JOB_KINDS: Dict[str, Tuple[str, Tuple[str, ...]]] = {
    "tfjob": ("TFJob", ("chief", "ps", "worker", "evaluator", "graphlearn")),
    "pytorchjob": ("PyTorchJob", ("master", "worker")),
    "xgboostjob": ("XGBoostJob", ("master", "worker")),
    "oneflowjob": ("OneFlowJob", ("master", "worker")),
    "elasticbatchjob": ("ElasticBatchJob", ("master", "worker")),
}
# Spellings hpo_tools 0.1.x's documentation used ("dlc submit pytorch ...").
_KIND_ALIASES = {"tf": "tfjob", "tensorflow": "tfjob", "pytorch": "pytorchjob",
                 "xgboost": "xgboostjob"}
# Role -> JobSpec.Type, and the flag(s) giving its replica count.
_ROLE_TYPES = {"worker": "Worker", "ps": "PS", "chief": "Chief", "evaluator": "Evaluator",
               "graphlearn": "GraphLearn", "master": "Master"}
# The flag users write for each role's count first (in messages).
_COUNT_FLAG = {"worker": "workers", "ps": "ps", "chief": "chief", "evaluator": "evaluators",
               "graphlearn": "graphlearns", "master": "master"}
_COUNT_FLAGS = {"workers": "worker", "worker": "worker", "ps": "ps", "chief": "chief",
                "evaluators": "evaluator", "evaluator": "evaluator", "graphlearns": "graphlearn",
                "graphlearn": "graphlearn", "masters": "master", "master": "master"}
# Per-role settings: --<role>_<suffix>.
_ROLE_SUFFIXES = ("image", "spec", "cpu", "gpu", "gpu_type", "memory", "shared_memory")
_BOOL_FLAGS = frozenset({"chief", "master"})  # may stand alone: --chief means --chief=true
_STRING_FLAGS = (
    "name", "command", "workspace_id", "data_sources", "code_source", "code_branch",
    "code_commit", "thirdparty_libs", "thirdparty_lib_dir", "vpc_id", "switch_id",
    "security_group_id", "success_policy", "envs", "resource_id", "oversold_type",
)
_INT_FLAGS = ("priority", "job_max_running_time_minutes")
# Flags of the command-line tool this platform refuses, and why.
_REFUSED = {
    "job_file": "write the job's flags in the command itself",
    "interactive": "a trial's job runs unattended",
    "tags": "CreateJob takes no tags",
}
_NAME = re.compile(r"^[A-Za-z0-9_.-]+$")
#: DisplayName's limit (256) less what the platform appends (``-hpo-`` and 8 hex digits).
MAX_NAME_LENGTH = 256 - 13
_TRUE = ("true", "yes")
_FALSE = ("false", "no")


@dataclasses.dataclass(frozen=True)
class RoleSpec:
    """One kind of node of a job (a CreateJob ``JobSpec``).

    Attributes:
        role: The command line's name (``worker``, ``ps``, ``chief``, ...).
        count: How many pods (``PodCount``).
        image: The image the pods run.
        ecs_spec: The ECS instance type (``ecs.g6.2xlarge``), when paid by the hour.
        resources: ``cpu``, ``gpu``, ``gpu_type``, ``memory``, ``shared_memory`` as given
            (with a resource quota, ``--resource_id``).
    """

    role: str
    count: int
    image: str
    ecs_spec: str = ""
    resources: Tuple[Tuple[str, str], ...] = ()

    @property
    def type(self) -> str:
        """CreateJob's name of the role (``Worker``, ``PS``, ``Chief``, ...)."""
        return _ROLE_TYPES[self.role]


@dataclasses.dataclass(frozen=True)
class DlcCommand:
    """A ``dlc submit`` line, checked.

    Attributes:
        kind: ``tfjob``, ``pytorchjob``, ... (aliases resolved).
        job_type: CreateJob's ``JobType`` (``TFJob``).
        name: ``--name`` (the platform appends a unique suffix to make the display name).
        user_command: ``--command``: what every pod runs.
        workspace_id: ``--workspace_id``.
        roles: The roles with at least one pod, in the command line's order.
        options: The other flags as given (``data_sources``, ``envs``, ``priority``, ...).
    """

    kind: str
    job_type: str
    name: str
    user_command: str
    workspace_id: str
    roles: Tuple[RoleSpec, ...]
    options: Tuple[Tuple[str, str], ...] = ()

    def option(self, key: str) -> Optional[str]:
        """The value of flag ``key`` when given."""
        return dict(self.options).get(key)

    @property
    def pods(self) -> int:
        """How many pods the job asks for."""
        return sum(role.count for role in self.roles)


def join_lines(text: str) -> str:
    """A multi-line command as one line: the lines (a trial.ini value's continuation lines)
    joined by a space, a backslash ending a line dropped, inside quotes too: the pods get one
    shell command line (use ``&&`` or ``;`` inside ``--command`` for several)."""
    lines = (line.strip() for line in text.splitlines())
    return " ".join(line[:-1].rstrip() if line.endswith("\\") else line for line in lines if line)


def _words(text: str) -> List[str]:
    try:
        return shlex.split(join_lines(text), comments=False, posix=True)
    except ValueError as err:  # "No closing quotation", "No escaped character"
        raise ConfigError(f"dlc command: {err} (quote the --command value as in a shell)") from None


def _known_flags() -> List[str]:
    roles = [f"{role}_{suffix}" for role in _ROLE_TYPES for suffix in _ROLE_SUFFIXES]
    return [*_STRING_FLAGS, *_INT_FLAGS, *_COUNT_FLAGS, *roles]


def _flags(words: List[str]) -> Dict[str, str]:
    """``--key=value`` / ``--key value`` / ``--chief`` -> {key: value}; keys normalised."""
    known = _known_flags()
    flags: Dict[str, str] = {}
    i = 0
    while i < len(words):
        word = words[i]
        if not word.startswith("--") or word == "--":
            raise ConfigError(
                f"dlc command: unexpected {word[:60]!r}; expected --flag=value (one dlc submit "
                "per command: no '&&', ';' or pipes)"
            )
        key, sep, value = word[2:].partition("=")
        key = key.replace("-", "_").lower()
        if not sep:
            following = words[i + 1] if i + 1 < len(words) else None
            if key in _BOOL_FLAGS and (following is None or following.startswith("--")
                                       or following.lower() not in _TRUE + _FALSE + ("1", "0")):
                value = "true"
            elif following is None or (following.startswith("--") and len(following) > 2):
                raise ConfigError(f"dlc command: --{key} needs a value (--{key}=VALUE)")
            else:
                value = following
                i += 1
        if key in _REFUSED:
            raise ConfigError(f"dlc command: --{key} is not supported: {_REFUSED[key]}")
        if key not in known:
            raise ConfigError(f"dlc command: unknown flag --{key}" + did_you_mean(key, known))
        if key in flags:
            raise ConfigError(f"dlc command: --{key} is given twice")
        flags[key] = value
        i += 1
    return flags


def _count(key: str, value: str) -> int:
    lowered = value.strip().lower()
    if lowered in _TRUE:
        return 1
    if lowered in _FALSE:
        return 0
    try:
        number = int(lowered)
    except ValueError:
        raise ConfigError(f"dlc command: --{key}={value!r} is not a number of pods") from None
    if number < 0:
        raise ConfigError(f"dlc command: --{key}={value} is negative")
    return number


def _positive_int(key: str, value: str) -> str:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1 or str(number) != value.strip():
        raise ConfigError(f"dlc command: --{key}={value!r} is not a positive whole number")
    return str(number)


def _pairs(key: str, value: str) -> Dict[str, str]:
    """``k1=v1,k2=v2`` (``--envs``)."""
    result: Dict[str, str] = {}
    for part in (p.strip() for p in value.split(",")):
        if not part:
            continue
        name, sep, item = part.partition("=")
        if not sep or not name.strip():
            raise ConfigError(f"dlc command: --{key}: {part!r} is not KEY=VALUE "
                              "(expected k1=v1,k2=v2)")
        result[name.strip()] = item.strip()
    return result


def _roles(kind: str, allowed: Tuple[str, ...], flags: Dict[str, str]) -> Tuple[RoleSpec, ...]:
    counts: Dict[str, Tuple[str, int]] = {}
    for key, value in flags.items():
        role = _COUNT_FLAGS.get(key)
        if role is None:
            continue
        if role in counts:
            raise ConfigError(f"dlc command: --{counts[role][0]} and --{key} both give the "
                              f"number of {role} pods")
        counts[role] = (key, _count(key, value))
    for key in flags:
        role, _, suffix = key.partition("_")
        if suffix in _ROLE_SUFFIXES and role in _ROLE_TYPES and counts.get(role, ("", 0))[1] < 1:
            raise ConfigError(f"dlc command: --{key} is given but the job has no {role} pod "
                              f"(--{_COUNT_FLAG[role]}=N)")
    roles = []
    for role, (key, count) in counts.items():
        if count < 1:
            continue
        if role not in allowed:
            raise ConfigError(f"dlc command: a {kind} has no {role} pods (--{key}); its roles "
                              f"are {', '.join(allowed)}")
        image = flags.get(f"{role}_image", "").strip()
        if not image:
            raise ConfigError(f"dlc command: --{role}_image is missing ({count} {role} pod"
                              f"{'s' if count > 1 else ''})")
        resources = tuple(
            (suffix, flags[f"{role}_{suffix}"].strip())
            for suffix in ("cpu", "gpu", "gpu_type", "memory", "shared_memory")
            if flags.get(f"{role}_{suffix}", "").strip()
        )
        spec = flags.get(f"{role}_spec", "").strip()
        if not spec and not flags.get("resource_id"):
            raise ConfigError(f"dlc command: --{role}_spec is missing (an ECS type such as "
                              f"ecs.g6.2xlarge; or --resource_id with --{role}_cpu and "
                              f"--{role}_memory)")
        roles.append(RoleSpec(role, count, image, spec, resources))
    if not roles:
        raise ConfigError("dlc command: the job has no pods: give --workers=N (or --chief, "
                          "--ps=N, --master ...) with their --<role>_image and --<role>_spec")
    return tuple(roles)


def parse_dlc_command(text: str) -> DlcCommand:
    """Parse and check ``dlc submit <kind> --flag=value ...``.

    Raises:
        ConfigError: not a ``dlc submit`` line, an unknown kind or flag (with a suggestion),
            a missing ``--name`` / ``--command`` / ``--workspace_id``, a role without its image
            or instance type, a malformed number or name.
    """
    words = _words(text)
    if len(words) < 2 or words[0].rsplit("/", 1)[-1] != "dlc" or words[1] != "submit":
        start = " ".join(words[:3])[:60]
        raise ConfigError(f"dlc command: expected 'dlc submit <kind> --name=... --command=...', "
                          f"got {start!r}")
    if len(words) < 3 or words[2].startswith("-"):
        raise ConfigError(f"dlc command: the job kind is missing after 'dlc submit' (one of "
                          f"{', '.join(JOB_KINDS)})")
    given_kind = words[2].lower()
    kind = _KIND_ALIASES.get(given_kind, given_kind)
    if kind not in JOB_KINDS:
        raise ConfigError(f"dlc command: unknown job kind {words[2]!r}; expected one of "
                          f"{', '.join(JOB_KINDS)}" + did_you_mean(given_kind, JOB_KINDS))
    job_type, allowed = JOB_KINDS[kind]
    flags = _flags(words[3:])
    for required in ("name", "command", "workspace_id"):
        if not flags.get(required, "").strip():
            raise ConfigError(f"dlc command: --{required} is missing")
    name = flags["name"].strip()
    if not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise ConfigError(f"dlc command: --name={name[:60]!r}: expected at most "
                          f"{MAX_NAME_LENGTH} letters, digits, '_', '.' or '-'")
    roles = _roles(kind, allowed, flags)
    options = {}
    for key in _STRING_FLAGS[3:] + _INT_FLAGS:
        if key not in flags:
            continue
        value = flags[key].strip()
        if key in _INT_FLAGS:
            value = _positive_int(key, value)
        elif key == "envs":
            _pairs(key, value)
        options[key] = value
    if options.get("switch_id") and not options.get("vpc_id"):
        raise ConfigError("dlc command: --switch_id needs --vpc_id")
    return DlcCommand(
        kind=kind, job_type=job_type, name=name, user_command=flags["command"],
        workspace_id=flags["workspace_id"].strip(), roles=roles,
        options=tuple(sorted(options.items())),
    )


def _split_list(value: Optional[str]) -> List[str]:
    return [part.strip() for part in (value or "").split(",") if part.strip()]


def create_job_request(
    command: DlcCommand, *, display_name: str, envs: Optional[Mapping[str, str]] = None
) -> Any:
    """The SDK's ``CreateJobRequest`` for ``command``, named ``display_name``.

    Args:
        command: The parsed line.
        display_name: The job's name on DLC (``--name`` plus the platform's unique suffix).
        envs: Environment variables added to ``--envs`` (the runner's, e.g. which command
            this is); ``--envs`` wins for a name in both.
    """
    from alibabacloud_pai_dlc20201203 import models  # the SDK: only when a job is submitted

    def option(key: str) -> Optional[str]:
        return command.option(key)

    job_specs = []
    for role in command.roles:
        resources = dict(role.resources)
        resource_config = None
        if resources:
            resource_config = models.ResourceConfig(
                cpu=resources.get("cpu"), gpu=resources.get("gpu"),
                gputype=resources.get("gpu_type"), memory=resources.get("memory"),
                shared_memory=resources.get("shared_memory"),
            )
        job_specs.append(models.JobSpec(
            type=role.type, pod_count=role.count, image=role.image,
            ecs_spec=role.ecs_spec or None, resource_config=resource_config,
            oversold_type=option("oversold_type"),
        ))
    all_envs = {**dict(envs or {}), **_pairs("envs", option("envs") or "")}
    code_source = None
    if option("code_source"):
        code_source = models.CreateJobRequestCodeSource(
            code_source_id=option("code_source"), branch=option("code_branch"),
            commit=option("code_commit"),
        )
    user_vpc = None
    if option("vpc_id"):
        user_vpc = models.CreateJobRequestUserVpc(
            vpc_id=option("vpc_id"), switch_id=option("switch_id"),
            security_group_id=option("security_group_id"),
        )
    priority = option("priority")
    minutes = option("job_max_running_time_minutes")
    return models.CreateJobRequest(
        display_name=display_name,
        job_type=command.job_type,
        job_specs=job_specs,
        user_command=command.user_command,
        workspace_id=command.workspace_id,
        data_sources=[models.CreateJobRequestDataSources(data_source_id=source)
                      for source in _split_list(option("data_sources"))] or None,
        code_source=code_source,
        thirdparty_libs=_split_list(option("thirdparty_libs")) or None,
        thirdparty_lib_dir=option("thirdparty_lib_dir"),
        user_vpc=user_vpc,
        envs=all_envs or None,
        priority=int(priority) if priority else None,
        resource_id=option("resource_id"),
        job_max_running_time_minutes=int(minutes) if minutes else None,
        success_policy=option("success_policy"),
    )
