"""The classic format (EasyRec ``config_begin.ini``) -> a one-stage
:class:`~hpo_tools.trial.plan.TrialPlan`.

``[easyrec_cmd_config]`` holds ``-name``, ``-project`` and ``-Dkey=value`` lines of one
``PAI -name easy_rec_ext`` command (and hpo-tools' own ``job_timeout``, which is not
passed to PAI); ``[metric_config]`` holds ``metric=weight`` lines, read from
the ``eval_val`` event files of ``-Dmodel_dir``; ``[oss_config]`` and the PAI platform's own
section (``[odps_config]``) complete it. The command runs on the platform registered as
``CLASSIC_FORMAT_PLATFORM``.

The tuner's parameters (and a finetune day's ``extra_edits``) are merged into
``-Dedit_config_json``, which PAI applies; the same edits are applied to a copy of ``-Dconfig``
kept in the trial directory as the record of what was sent (an unreadable ``-Dconfig`` only
costs that copy). Without a schema, the file's own edits of a field ``-Dconfig`` lacks are left
to PAI's EasyRec, which creates it, with a notice (``ConfigWrite.passthrough``; the tuner's
are refused: docs/config-editor.md, "Schema in trials"). ``-Dmodel_dir`` gets
``/<exp_id>_<trial_id>`` appended, so concurrent trials never share a model directory.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.trial.ini import TrialFile
from hpo_tools.trial.plan import (
    ConfigWrite,
    MetricSettings,
    Stage,
    TrialPlan,
    TrialVariables,
    params_to_edits,
)
from hpo_tools.trial.sections import (
    JOB_TIMEOUT_KEY,
    OSS_SECTION,
    job_timeout,
    json_object,
    metric_spec,
    oss_settings,
    platform_spec,
    shape_command,
)

__all__ = ["FORMAT", "SECTION", "CHECKPOINT_EDIT", "build_plan", "pai_value"]

FORMAT = "classic"
SECTION = "easyrec_cmd_config"
#: The EasyRec config field a classic trial starts training from.
CHECKPOINT_EDIT = "train_config.fine_tune_checkpoint"
_REQUIRED = ("-name", "-project", "-Dconfig", "-Dmodel_dir")


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def pai_value(value: str) -> str:
    """A ``-D`` value as written into the PAI command: JSON compacted and single-quoted.

    JSON holding a ``'`` (a string parameter such as ``it's``) is double-quoted instead, with
    ``\\`` and ``"`` escaped, which the MaxCompute command parser undoes.
    """
    stripped = value.strip()
    if stripped[:1] in "{[":
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError:
            return stripped
        compact = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)
        if "'" not in compact:
            return "'" + compact + "'"
        return '"' + compact.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return stripped


def _passthrough(
    file_edits: Mapping[str, Any],
    tuner_edits: Mapping[str, Any],
    extra_edits: Mapping[str, Any],
    source: str,
) -> dict[str, str]:
    """The edits PAI's EasyRec ``edit_config`` applies even where ``-Dconfig`` lacks the field
    (see ``ConfigWrite.passthrough``), each with where it came from: the file's own
    ``-Dedit_config_json`` edits (the user's; EasyRec creates any field of its schema), and
    ``train_config.fine_tune_checkpoint`` (a field of EasyRec's TrainConfig, from anywhere).
    The tuner's edits are not among them, even on a key the file sets too: a typo such as
    ``num_stepz`` in a search space is caught before anything is launched."""
    where = f"{source}: [{SECTION}] -Dedit_config_json"
    later = {**tuner_edits, **extra_edits}  # replace the file's value of the same key
    passthrough = {key: where for key in file_edits if key not in later}
    if CHECKPOINT_EDIT in extra_edits:
        passthrough[CHECKPOINT_EDIT] = f"{source}: the finetune day's checkpoint"
    elif CHECKPOINT_EDIT in tuner_edits:
        passthrough[CHECKPOINT_EDIT] = "the tuner's parameters"
    else:
        passthrough[CHECKPOINT_EDIT] = where
    return passthrough


def build_plan(
    trial_file: TrialFile,
    variables: TrialVariables,
    *,
    extra_edits: Mapping[str, Any] | None = None,
) -> TrialPlan:
    """Read a classic trial file into its plan.

    Args:
        trial_file: the file, rendered and read.
        variables: the trial's identity (``-Dmodel_dir`` suffix) and parameters.
        extra_edits: more edits, applied after the file's and the parameters (a finetune day's
            checkpoint).

    Raises:
        ConfigError: any problem, carrying file, section and key.
    """
    from hpo_tools.platforms import CLASSIC_FORMAT_PLATFORM, platform_class

    source = trial_file.source
    platform_cls = platform_class(CLASSIC_FORMAT_PLATFORM)
    trial_file.check_sections(
        (OSS_SECTION, *platform_cls.trial_file_sections, SECTION, "metric_config")
    )
    metric_section = trial_file.section("metric_config")
    if metric_section is None:
        raise ConfigError(f"{source}: [metric_config] is required (metric=weight lines)",
                          source=source, section="metric_config")
    cmd = trial_file.require(SECTION)
    for key in cmd.keys():
        if key in ("-Dbudget_path", "-Dbudget_scale", "-Dbudget_unit_steps"):
            raise cmd.error(key, "the classic format has no budget (PAI applies its edits, "
                                 "without the field's type here): use the platform format's "
                                 "[params_config] budget_path (docs/trial-files.md, Budgets)")
        if key in ("-name", "-project", JOB_TIMEOUT_KEY) or key.startswith("-D"):
            continue
        raise cmd.error(key, f"unknown key; expected -name, -project, -D<parameter> or "
                             f"{JOB_TIMEOUT_KEY}"
                        + did_you_mean(key, ("-name", "-project", JOB_TIMEOUT_KEY)))
    timeout = job_timeout(cmd)
    values: dict[str, str] = {}
    for key in cmd.keys():
        if key == JOB_TIMEOUT_KEY:  # hpo-tools' own: never a PAI parameter
            continue
        value = cmd.get(key)
        values[key] = _unquote(value) if value is not None else ""
    for key in _REQUIRED:
        if not values.get(key):
            raise cmd.missing(key)

    file_edits: dict[str, Any] = {}
    if values.get("-Dedit_config_json"):
        file_edits = json_object(
            cmd, "-Dedit_config_json", values["-Dedit_config_json"], python_literal=True
        )
    tuner_edits = params_to_edits(variables.params)
    edits = {**file_edits, **tuner_edits, **dict(extra_edits or {})}
    passthrough = _passthrough(file_edits, tuner_edits, extra_edits or {}, source)
    if "-Dcluster" in values:
        json_object(cmd, "-Dcluster", values["-Dcluster"])
    model_dir = values["-Dmodel_dir"].rstrip("/") + f"/{variables.exp_id}_{variables.trial_id}"
    values["-Dmodel_dir"] = model_dir
    if edits:
        values["-Dedit_config_json"] = json.dumps(edits, separators=(",", ":"))

    platform = platform_spec(trial_file, platform_cls.name)
    lines = [f"PAI -name {values['-name']} -project {values['-project']}"]
    for key, value in values.items():  # each -D line must reach PAI as one parameter
        if key.startswith("-D"):
            line = f"{key}={pai_value(value)}"
            shape_command(platform, cmd, key, f"PAI -name x {line}")
            lines.append(line)
    command = shape_command(platform, cmd, SECTION, "\n".join(lines), name="cmd1")

    weights: dict[str, float] = {}
    for key in metric_section.keys():
        text = metric_section.get(key)
        try:
            weights[key] = float(text or "")
        except ValueError:
            raise metric_section.error(
                key, f"expected a metric weight (a number), got {text!r}"
            ) from None
    if not weights:
        raise ConfigError(
            f"{source}: [metric_config] needs at least one metric=weight line",
            source=source, section="metric_config",
        )
    spec = metric_spec(metric_section, weights)
    oss = oss_settings(trial_file)
    stage = Stage(
        name="",
        commands=(command,),
        metric=MetricSettings("summary", (model_dir + "/eval_val/",), spec),
        config_writes=(
            ConfigWrite(
                "-Dconfig", values["-Dconfig"], None, edits, required=False,
                passthrough=passthrough,
            ),
        ),
        job_timeout=timeout,
    )
    begin = file_edits.get(CHECKPOINT_EDIT)
    return TrialPlan(
        source=source,
        format=FORMAT,
        platform=platform,
        stages=(stage,),
        params=dict(variables.params),
        oss=oss,
        secrets=tuple(trial_file.secrets),
        model_dir=model_dir,
        checkpoint_edit=CHECKPOINT_EDIT,
        start_checkpoint=str(begin) if begin else None,
    )
