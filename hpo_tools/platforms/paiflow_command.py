"""``paiflow run ...`` command lines -> a PAI-Flow ``CreatePipelineRun`` request.

A trial file's command on the PAI-Flow platform (``[platform_config] name=PAIFLOW``) names a
pipeline and its arguments, as ``CreatePipelineRun`` takes them::

    paiflow run --name=easyrec_${exp_id}_${trial_id} --pipeline-id=pipeline-abc123
        --arguments='{"arguments": {"parameters": [{"name": "lr", "value": ${lr}}]}}'
    paiflow run --name=... --manifest=pipeline.yaml --arguments=@args.json

``--pipeline-id`` (a pipeline registered in PAI-Flow) or ``--manifest`` (a pipeline manifest
file, sent as its text) names the pipeline; ``--arguments`` is a JSON object, or ``@FILE`` /
``FILE`` holding JSON or YAML; ``--workspace-id`` defaults to ``[paiflow_config]
workspace_id``; ``--options`` is a JSON object passed as the run's options.
"""

from __future__ import annotations

import dataclasses
import json
import re
from pathlib import Path
from typing import Any, Optional

from hpo_tools.errors import ConfigError
from hpo_tools.platforms.pai_command import check_flags, json_or_file, split_flags

__all__ = ["PipelineRunCommand", "parse_paiflow_command", "create_pipeline_run_request", "FLAGS"]

FLAGS = {
    "name": "the run's Name (the platform appends -hpo-<8 hex digits>)",
    "pipeline_id": "PipelineId: a registered pipeline",
    "manifest": "PipelineManifest: a pipeline manifest file (JSON or YAML)",
    "arguments": "Arguments: a JSON object, or @FILE / FILE (JSON or YAML)",
    "workspace_id": "WorkspaceId (default: [paiflow_config] workspace_id)",
    "options": "Options: a JSON object",
}
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
MAX_NAME_LENGTH = 128 - 13


@dataclasses.dataclass(frozen=True)
class PipelineRunCommand:
    """A ``paiflow run`` line, checked.

    Attributes:
        name: ``--name``.
        pipeline_id: ``--pipeline-id`` (``""`` with a manifest).
        manifest: The manifest's text (``""`` with a pipeline id).
        arguments: The arguments as JSON text (``""``: none).
        workspace_id: ``--workspace-id`` (``""``: the section's).
        options: The options as JSON text (``""``: none).
    """

    name: str
    pipeline_id: str = ""
    manifest: str = ""
    arguments: str = ""
    workspace_id: str = ""
    options: str = ""

    @property
    def summary(self) -> str:
        pipeline = self.pipeline_id or "(manifest)"
        return f"PAI-Flow run {self.name} of pipeline {pipeline}"


def _fail(message: str) -> ConfigError:
    return ConfigError(f"paiflow command: {message}")


def parse_paiflow_command(text: str) -> PipelineRunCommand:
    """A ``paiflow run ...`` line, checked (files it names are read now).

    Raises:
        ConfigError: a malformed line (one line: the flag and what was expected).
    """
    flags = split_flags(text, ("paiflow", "run"),
                        "paiflow run --name=... --pipeline-id=ID|--manifest=FILE "
                        "[--arguments=JSON|@FILE]")
    check_flags("paiflow", flags, FLAGS)
    name = flags.get("name", "")
    if not name:
        raise _fail("--name is required (the run's name)")
    if not _NAME.match(name) or len(name) > MAX_NAME_LENGTH:
        raise _fail(f"--name={name!r}: letters, digits, '_', '.', '-', at most "
                    f"{MAX_NAME_LENGTH} characters")
    pipeline_id, manifest_path = flags.get("pipeline_id", ""), flags.get("manifest", "")
    if bool(pipeline_id) == bool(manifest_path):
        raise _fail("give one of --pipeline-id (a registered pipeline) and --manifest (a "
                    "pipeline manifest file)")
    manifest = ""
    if manifest_path:
        path = Path(manifest_path.lstrip("@")).expanduser()
        try:
            manifest = path.read_text(encoding="utf-8")
        except OSError as err:
            raise _fail(f"--manifest={manifest_path}: cannot read the file "
                        f"({err.strerror or err})") from None
        if not manifest.strip():
            raise _fail(f"--manifest={manifest_path}: the file is empty")
    arguments = ""
    if flags.get("arguments"):
        data = json_or_file("paiflow", "arguments", flags["arguments"])
        if not isinstance(data, dict):
            raise _fail("--arguments: expected a JSON object (the pipeline's arguments)")
        arguments = json.dumps(data)
    options = ""
    if flags.get("options"):
        data = json_or_file("paiflow", "options", flags["options"])
        if not isinstance(data, dict):
            raise _fail("--options: expected a JSON object")
        options = json.dumps(data)
    return PipelineRunCommand(name=name, pipeline_id=pipeline_id, manifest=manifest,
                              arguments=arguments, workspace_id=flags.get("workspace_id", ""),
                              options=options)


def create_pipeline_run_request(command: PipelineRunCommand, *, unique_name: str,
                                workspace_id: Optional[str]) -> Any:
    """The SDK's ``CreatePipelineRunRequest`` (imports the SDK)."""
    from alibabacloud_paiflow20210202 import models

    return models.CreatePipelineRunRequest(
        name=unique_name, pipeline_id=command.pipeline_id or None,
        pipeline_manifest=command.manifest or None, arguments=command.arguments or None,
        options=command.options or None, workspace_id=workspace_id or None)
