"""``pai training-job create ...`` command lines -> a PAI ``CreateTrainingJob`` request.

A trial file's command on the PAI platform (``[platform_config] name=PAI``) names one training
job, in flags close to the request's own fields::

    pai training-job create --name=easyrec_${exp_id}_${trial_id}
        --algorithm=easyrec --algorithm-provider=pai --algorithm-version=v1.0.0
        --instance-type=ecs.g6.xlarge --instance-count=1 --workspace-id=12345
        --hyper-parameters='{"lr": ${lr}, "epochs": 3}'
        --input-channels=train=oss://bucket/data/train/,eval=oss://bucket/data/eval/
        --output-channels=model=oss://bucket/models/${trial_id}/
        --spec=job.json

Words are split as a POSIX shell splits them; flags are ``--key=value`` or ``--key value``
(``-`` and ``_`` alike). ``--spec`` is a JSON object (or a JSON/YAML file holding one) in the
API's own field names (``{"AlgorithmSpec": {...}, "UserVpc": {...}}``), for what no flag names;
flags win over it. :func:`parse_training_job_command` checks what can be checked offline;
the request is built with the SDK's ``CreateTrainingJobRequest.from_map`` by the platform.
"""

from __future__ import annotations

import dataclasses
import json
import re
import shlex
from pathlib import Path
from typing import Any, Dict, List, Optional, Tuple

from hpo_tools.errors import ConfigError, did_you_mean

__all__ = ["TrainingJobCommand", "parse_training_job_command", "REQUEST_FIELDS", "FLAGS"]

#: ``CreateTrainingJobRequest``'s fields (the API's names), as ``from_map`` reads them.
REQUEST_FIELDS = (
    "AlgorithmName", "AlgorithmProvider", "AlgorithmSpec", "AlgorithmVersion", "AssignNodeSpec",
    "CodeDir", "ComputeResource", "CredentialConfig", "Environments", "ExperimentConfig",
    "HyperParameters", "InputChannels", "Labels", "OutputChannels", "Priority",
    "PythonRequirements", "RoleArn", "Scheduler", "Settings", "TrainingJobDescription",
    "TrainingJobName", "UserVpc", "WorkspaceId",
)
#: Flag -> what it sets (for --help texts and did-you-mean).
FLAGS = {
    "name": "TrainingJobName (the platform appends -hpo-<8 hex digits>)",
    "algorithm": "AlgorithmName",
    "algorithm_provider": "AlgorithmProvider",
    "algorithm_version": "AlgorithmVersion",
    "workspace_id": "WorkspaceId (default: the section's workspace_id)",
    "instance_type": "ComputeResource.EcsSpec",
    "instance_count": "ComputeResource.EcsCount",
    "resource_id": "ComputeResource.ResourceId (a resource quota)",
    "hyper_parameters": "HyperParameters: JSON object, or name=value,...",
    "input_channels": "InputChannels: name=uri,...",
    "output_channels": "OutputChannels: name=uri,...",
    "environments": "Environments: JSON object, or NAME=value,...",
    "priority": "Priority",
    "max_running_minutes": "Scheduler.MaxRunningTimeInMinutes",
    "role_arn": "RoleArn",
    "description": "TrainingJobDescription",
    "spec": "a JSON object or JSON/YAML file in the API's field names",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME_LENGTH = 128 - 13  # the platform appends -hpo- and 8 hex digits


@dataclasses.dataclass(frozen=True)
class TrainingJobCommand:
    """A ``pai training-job create`` line, checked.

    Attributes:
        name: ``--name``.
        fields: The request in the API's field names (``TrainingJobName`` not yet set).
        workspace_id: ``--workspace-id`` (``""``: the section's).
    """

    name: str
    fields: Dict[str, Any]
    workspace_id: str = ""

    @property
    def summary(self) -> str:
        algorithm = self.fields.get("AlgorithmName") or "(AlgorithmSpec)"
        return f"PAI training job {self.name} (algorithm {algorithm})"


def _fail(message: str) -> ConfigError:
    return ConfigError(f"pai command: {message}")


def split_flags(text: str, head: Tuple[str, ...], usage: str) -> Dict[str, str]:
    """``head`` words, then ``--key=value`` / ``--key value`` flags (keys with ``_``).

    Raises:
        ConfigError: another head, a stray word, a flag given twice.
    """
    try:
        words = shlex.split(text.replace("\\\n", " "))
    except ValueError as err:
        raise ConfigError(f"{head[0]} command: cannot split into words ({err})") from None
    if [w.lower() for w in words[:len(head)]] != list(head):
        raise ConfigError(f"{head[0]} command: expected '{usage}', got {text.strip()[:60]!r}")
    flags: Dict[str, str] = {}
    rest = words[len(head):]
    index = 0
    while index < len(rest):
        word = rest[index]
        if not word.startswith("--") or len(word) == 2:
            raise ConfigError(f"{head[0]} command: unexpected word {word!r} (flags are "
                              "--key=value)")
        key, eq, value = word[2:].partition("=")
        key = key.replace("-", "_").lower()
        if not eq:
            if index + 1 >= len(rest) or rest[index + 1].startswith("--"):
                raise ConfigError(f"{head[0]} command: --{key} needs a value")
            index += 1
            value = rest[index]
        if key in flags:
            raise ConfigError(f"{head[0]} command: --{key} given twice")
        flags[key] = value
        index += 1
    return flags


def check_flags(command: str, flags: Dict[str, str], known: Any) -> None:
    """Every flag is one of ``known`` (did-you-mean otherwise)."""
    for key in flags:
        if key not in known:
            raise ConfigError(f"{command} command: unknown flag --{key}"
                              + did_you_mean(key, list(known)))


def json_or_file(command: str, flag: str, value: str) -> Any:
    """``value`` as JSON when it starts with ``{`` or ``[``, else a JSON/YAML file's content.

    Raises:
        ConfigError: unreadable JSON, a missing file, unreadable YAML.
    """
    text = value.strip()
    if text.startswith(("{", "[")):
        try:
            return json.loads(text)
        except ValueError as err:
            raise ConfigError(f"{command} command: --{flag}: not JSON ({err})") from None
    path = Path(text[1:] if text.startswith("@") else text).expanduser()
    try:
        content = path.read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{command} command: --{flag}={value}: cannot read the file "
                          f"({err.strerror or err})") from None
    if path.suffix.lower() in (".yaml", ".yml"):
        import yaml

        try:
            return yaml.safe_load(content)
        except yaml.YAMLError as err:
            first = str(err).splitlines()[0] if str(err) else "bad YAML"
            raise ConfigError(f"{command} command: --{flag}={value}: not YAML ({first})") \
                from None
    try:
        return json.loads(content)
    except ValueError as err:
        raise ConfigError(f"{command} command: --{flag}={value}: not JSON ({err})") from None


def _pairs(flag: str, value: str, *, json_allowed: bool) -> List[Tuple[str, str]]:
    """``a=1,b=2`` (or a JSON object when allowed) -> pairs, values as strings."""
    text = value.strip()
    if json_allowed and text.startswith("{"):
        data = json_or_file("pai", flag, text)
        if not isinstance(data, dict):
            raise _fail(f"--{flag}: expected a JSON object")
        return [(str(k), v if isinstance(v, str) else json.dumps(v)) for k, v in data.items()]
    pairs = []
    for part in (p.strip() for p in text.split(",")):
        if not part:
            continue
        key, eq, item = part.partition("=")
        if not eq or not key.strip() or not item.strip():
            shape = "a JSON object or name=value,..." if json_allowed else "name=uri,..."
            raise _fail(f"--{flag}: expected {shape}, got {part!r}")
        pairs.append((key.strip(), item.strip()))
    if not pairs:
        raise _fail(f"--{flag} is empty")
    return pairs


def _positive_int(flag: str, value: str) -> int:
    try:
        number = int(value)
    except ValueError:
        number = 0
    if number < 1:
        raise _fail(f"--{flag}: expected a whole number >= 1, got {value!r}")
    return number


def parse_training_job_command(text: str) -> TrainingJobCommand:
    """A ``pai training-job create ...`` line -> its request fields, checked.

    Raises:
        ConfigError: a malformed line (one line: the flag and what was expected).
    """
    flags = split_flags(text, ("pai", "training-job", "create"),
                        "pai training-job create --name=... --algorithm=... "
                        "--instance-type=... [flags]")
    check_flags("pai", flags, FLAGS)
    fields: Dict[str, Any] = {}
    if "spec" in flags:
        spec = json_or_file("pai", "spec", flags["spec"])
        if not isinstance(spec, dict):
            raise _fail("--spec: expected a JSON object in CreateTrainingJob's field names")
        for key in spec:
            if key not in REQUEST_FIELDS:
                raise _fail(f"--spec: unknown field {key!r}"
                            + did_you_mean(str(key), list(REQUEST_FIELDS)))
        fields.update(spec)
    name = flags.get("name") or str(fields.pop("TrainingJobName", "") or "")
    if not name:
        raise _fail("--name is required (the training job's name)")
    if not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise _fail(f"--name={name!r}: letters, digits, '_', '.', '-', at most "
                    f"{MAX_NAME_LENGTH} characters")
    fields.pop("TrainingJobName", None)
    for flag, field in (("algorithm", "AlgorithmName"),
                        ("algorithm_provider", "AlgorithmProvider"),
                        ("algorithm_version", "AlgorithmVersion"), ("role_arn", "RoleArn"),
                        ("description", "TrainingJobDescription")):
        if flags.get(flag):
            fields[field] = flags[flag]
    if not fields.get("AlgorithmName") and not fields.get("AlgorithmSpec"):
        raise _fail("--algorithm is required (or AlgorithmSpec in --spec)")
    compute = dict(fields.get("ComputeResource") or {})
    if flags.get("instance_type"):
        compute["EcsSpec"] = flags["instance_type"]
    if flags.get("instance_count"):
        compute["EcsCount"] = _positive_int("instance_count", flags["instance_count"])
    if flags.get("resource_id"):
        compute["ResourceId"] = flags["resource_id"]
    if not compute.get("EcsSpec") and not compute.get("ResourceId") \
            and not compute.get("InstanceSpec"):
        raise _fail("--instance-type is required (or --resource-id, or ComputeResource in "
                    "--spec)")
    if compute.get("EcsSpec"):
        compute.setdefault("EcsCount", 1)
    fields["ComputeResource"] = compute
    if "hyper_parameters" in flags:
        fields["HyperParameters"] = [{"Name": k, "Value": v} for k, v in
                                     _pairs("hyper_parameters", flags["hyper_parameters"],
                                            json_allowed=True)]
    if "input_channels" in flags:
        fields["InputChannels"] = [{"Name": k, "InputUri": v} for k, v in
                                   _pairs("input_channels", flags["input_channels"],
                                          json_allowed=False)]
    if "output_channels" in flags:
        fields["OutputChannels"] = [{"Name": k, "OutputUri": v} for k, v in
                                    _pairs("output_channels", flags["output_channels"],
                                           json_allowed=False)]
    if "environments" in flags:
        fields["Environments"] = dict(_pairs("environments", flags["environments"],
                                             json_allowed=True))
    if "priority" in flags:
        fields["Priority"] = _positive_int("priority", flags["priority"])
    if "max_running_minutes" in flags:
        fields["Scheduler"] = {**dict(fields.get("Scheduler") or {}), "MaxRunningTimeInMinutes":
                               _positive_int("max_running_minutes",
                                             flags["max_running_minutes"])}
    workspace = flags.get("workspace_id") or str(fields.pop("WorkspaceId", "") or "")
    fields.pop("WorkspaceId", None)
    return TrainingJobCommand(name=name, fields=fields, workspace_id=workspace)


def create_training_job_request(command: TrainingJobCommand, *, unique_name: str,
                                workspace_id: str, envs: Optional[Dict[str, str]]) -> Any:
    """The SDK's ``CreateTrainingJobRequest`` (imports the SDK)."""
    from alibabacloud_paistudio20220112 import models

    fields = dict(command.fields)
    fields["TrainingJobName"] = unique_name
    if workspace_id:
        fields["WorkspaceId"] = workspace_id
    if envs:
        fields["Environments"] = {**dict(fields.get("Environments") or {}), **envs}
    return models.CreateTrainingJobRequest().from_map(fields)
