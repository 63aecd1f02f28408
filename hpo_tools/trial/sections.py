"""What every trial-file format reads the same way: ``[oss_config]``, metric scoring, the platform.

The platform's own sections and command shaping belong to the platform
(``Platform.options_from_trial_file``, ``Platform.shape_command``); this module only asks the
platform registry, and names no platform.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Mapping
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.metrics.score import FinalMode, MetricSpec, OptimizeMode
from hpo_tools.trial.ini import Section, TrialFile
from hpo_tools.trial.plan import Command, OssSettings, OutputSettings, PlatformSpec

__all__ = [
    "FINAL_MODES",
    "OPTIMIZE_MODES",
    "OSS_SECTION",
    "oss_settings",
    "metric_spec",
    "platform_sections",
    "platform_spec",
    "shape_command",
    "check_metric_type",
    "schedule_window",
    "SCHEDULE_SECTION",
    "MONITOR_SECTION",
    "monitor_settings",
    "OUTPUT_SECTION",
    "output_settings",
    "JOB_TIMEOUT_KEY",
    "job_timeout",
]

FINAL_MODES = tuple(mode.value for mode in FinalMode)
OPTIMIZE_MODES = tuple(mode.value for mode in OptimizeMode)
OSS_SECTION = "oss_config"
SCHEDULE_SECTION = "schedule_config"
MONITOR_SECTION = "monitor_config"
OUTPUT_SECTION = "output_config"
#: The key, in the section of the commands, of the no-progress limit of each command's job.
JOB_TIMEOUT_KEY = "job_timeout"
# "90", "90s", "1.5m", "2 h": a number and an optional unit.
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)\s*([A-Za-z]*)")
_UNIT_SECONDS = {"": 1.0, "s": 1.0, "m": 60.0, "h": 3600.0}


def platform_sections() -> tuple[str, ...]:
    """Every registered platform's own trial-file sections (``odps_config``, ...)."""
    from hpo_tools.platforms import platform_classes

    names: list[str] = []
    for cls in platform_classes():
        names.extend(n for n in cls.trial_file_sections if n not in names)
    return tuple(names)


def oss_settings(trial_file: TrialFile) -> OssSettings | None:
    """``[oss_config] endpoint, accessKeyID, accessKeySecret``, when the section is there."""
    section = trial_file.section(OSS_SECTION)
    if section is None:
        return None
    # role_arn: hpo_tools 0.1.x's key, read by the platform that uses it (MaxCompute: -Darn).
    section.check_keys(("endpoint", "accessKeyID", "accessKeySecret", "role_arn"))
    return OssSettings(
        endpoint=section.get("endpoint"),
        access_key_id=section.get("accessKeyID"),
        access_key_secret=section.get("accessKeySecret"),
    )


def job_timeout(section: Section) -> float | None:
    """``[section] job_timeout``: seconds, as a positive number or with a unit ``s``, ``m`` or
    ``h`` (``90``, ``90s``, ``30m``, ``2h``); None (no limit) when absent.

    A command whose job shows no sign of life (no new output in the stage's log, no new scored
    step) for that long is hung: the launcher cancels it and the trial fails
    (:mod:`hpo_tools.trial.launcher`).

    Raises:
        ConfigError: anything else, naming file, section and key.
    """
    text = section.get(JOB_TIMEOUT_KEY)
    if text is None:
        return None
    match = _DURATION.fullmatch(text)
    unit = match.group(2).lower() if match else ""
    seconds = float(match.group(1)) * _UNIT_SECONDS[unit] if match and unit in _UNIT_SECONDS else 0
    if math.isfinite(seconds) and seconds > 0:
        return seconds
    hint = ""
    if match and unit and unit not in _UNIT_SECONDS and unit[0] in _UNIT_SECONDS:
        hint = f" (did you mean '{match.group(1)}{unit[0]}'?)"
    raise section.error(
        JOB_TIMEOUT_KEY,
        "expected seconds as a positive number, or a number with the unit s, m or h "
        f"(90, 90s, 30m, 2h), got {text!r}{hint}",
    )


def schedule_window(trial_file: TrialFile) -> Any:
    """``[schedule_config] day, start_time, end_time`` as a
    :class:`~hpo_tools.trial.schedule.ScheduleWindow`; None without the section."""
    from hpo_tools.trial.schedule import ScheduleDays, ScheduleWindow, parse_clock

    section = trial_file.section(SCHEDULE_SECTION)
    if section is None:
        return None
    section.check_keys(("day", "start_time", "end_time"))
    days = ScheduleDays(section.choice("day", "everyday", [d.value for d in ScheduleDays]))
    clocks = []
    for key in ("start_time", "end_time"):
        try:
            clocks.append(parse_clock(section.require(key)))
        except ValueError as err:
            raise section.error(key, str(err)) from None
    return ScheduleWindow(days, clocks[0], clocks[1])


def monitor_settings(trial_file: TrialFile) -> Any:
    """``[monitor_config] url, keyword, at_mobiles, at_user_ids, is_at_all`` as
    :class:`~hpo_tools.monitor.MonitorSettings`; None without the section. The webhook URL and
    its token join the file's secrets (masked everywhere)."""
    from hpo_tools.monitor import MonitorSettings, webhook_secrets

    section = trial_file.section(MONITOR_SECTION)
    if section is None:
        return None
    section.check_keys(("url", "keyword", "at_mobiles", "at_user_ids", "is_at_all"))
    url = section.require("url")
    trial_file.secrets.extend(webhook_secrets(url))
    if not url.startswith(("http://", "https://")):
        raise section.error("url", "expected the robot's webhook address, http(s)://...")
    return MonitorSettings(
        url=url,
        keyword=section.get("keyword") or "",
        at_mobiles=_string_list(section, "at_mobiles"),
        at_user_ids=_string_list(section, "at_user_ids"),
        is_at_all=section.flag("is_at_all"),
    )


def output_settings(
    trial_file: TrialFile,
    *,
    model_dir: str | None = None,
    summary_sources: Iterable[str] = (),
) -> OutputSettings | None:
    """``[output_config] summary_path, model_path`` (hpo_tools 0.1.x) and ``model_dir``
    (hpo-tools') as :class:`~hpo_tools.trial.plan.OutputSettings`; None without the section or
    when it sets neither destination.

    The trial's model directory (the copies' source) is ``model_dir`` from the section, else
    the one the format decides (``model_dir``), else the parent of the first summary metric
    source when that is an evaluation directory (``<model dir>/eval_val``, as EasyRec writes
    it). Local paths become absolute here (they resolve from where the trial runs, NNI's
    code directory), so the experiment side reads them from anywhere.

    Args:
        trial_file: the file.
        model_dir: the trial's model directory when the format decides it.
        summary_sources: the ``summary`` metric sources (event directories), in order.

    Raises:
        ConfigError: an unknown key, a path storage cannot write, no model directory, or a
            destination inside the model directory (a copy into its own source).
    """
    section = trial_file.section(OUTPUT_SECTION)
    if section is None:
        return None
    section.check_keys(("summary_path", "model_path", "model_dir"))
    targets = {key: _output_path(section, key) for key in ("summary_path", "model_path")}
    if not any(targets.values()):
        return None
    source = _output_path(section, "model_dir") or model_dir
    if source is None:
        source = _model_dir_of_events(next(iter(summary_sources), None))
    if source is not None:
        source = _absolute(source)
    if source is None:
        raise ConfigError(
            f"{section.source}: [{OUTPUT_SECTION}] model_dir is required but missing: this "
            "trial's model directory, which summary_path / model_path copy from (e.g. "
            "model_dir=${NNI_OUTPUT_DIR}/model); it is found without it only from a summary "
            "metric_source <model dir>/eval_<name>",
            source=section.source, section=OUTPUT_SECTION, key="model_dir",
        )
    settings = OutputSettings(source, targets["summary_path"], targets["model_path"])
    for key, target in targets.items():
        if target is not None and settings.overlap(target) == "inside":
            raise section.error(
                key, f"{target!r} lies inside the trial's model directory {source!r}, which it "
                "is copied from; choose a directory outside it")
    return settings


def _output_path(section: Section, key: str) -> str | None:
    """A directory of ``[output_config]``: local (made absolute) or ``oss://BUCKET/...``."""
    from hpo_tools import storage
    from hpo_tools.errors import StorageError

    value = section.get(key)
    if value is None:
        return None
    try:
        path = storage.check_path(value)
    except StorageError as err:
        raise section.error(key, str(err)) from None
    if path.startswith("oss://") and not path[len("oss://"):].split("/", 1)[0]:
        raise section.error(key, f"expected oss://BUCKET/DIR, got {value!r}")
    return _absolute(path)


def _absolute(path: str) -> str:
    """A local path made absolute (``~`` expanded, ``file://`` dropped); others unchanged."""
    import os

    from hpo_tools import storage

    if storage.is_remote(path):
        return path
    if path.startswith("file://"):
        path = path[len("file://"):]
    return os.path.abspath(os.path.expanduser(path))


def _model_dir_of_events(source: str | None) -> str | None:
    """``<model dir>`` of an evaluation event directory ``<model dir>/eval_<name>``, else None."""
    if not source:
        return None
    trimmed = source.rstrip("/")
    parent, _, name = trimmed.rpartition("/")
    if not name.startswith("eval_") or not parent or parent.endswith(":/"):
        return None
    return parent


def _string_list(section: Section, key: str) -> tuple[str, ...]:
    """``['138...', '139...']`` (a list literal, as 0.1.x files write it) or ``a, b``."""
    import ast

    text = section.get(key)
    if not text:
        return ()
    if text.startswith("["):
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise section.error(key, f"expected a list such as ['a', 'b'], got {text!r}") from None
        if not isinstance(value, list):
            raise section.error(key, f"expected a list such as ['a', 'b'], got {text!r}")
        return tuple(str(v) for v in value)
    return tuple(part.strip() for part in text.split(",") if part.strip())


def metric_spec(
    section: Section,
    metric_dict: object,
    *,
    final_mode: str = "final",
    optimize_mode: str = "maximize",
    source_list_final_mode: str | None = None,
    key: str = "metric_dict",
) -> MetricSpec:
    """The scoring, checked once (:meth:`MetricSpec.from_config`), errors naming the section."""
    try:
        return MetricSpec.from_config(
            metric_dict,
            final_mode=final_mode,
            optimize_mode=optimize_mode,
            source_list_final_mode=source_list_final_mode,
            key=key,
        )
    except ConfigError as err:
        raise ConfigError(
            f"{section.source}: [{section.name}] {err}",
            source=section.source, section=section.name, key=key,
        ) from err


def platform_spec(
    trial_file: TrialFile, name: str, *, section: Section | None = None
) -> PlatformSpec:
    """The platform ``name`` with its options from its own sections.

    The sections of the other registered platforms that the file holds are read too (and
    dropped), so a mistyped key there is an error whichever platform runs the trial.

    Args:
        trial_file: the file.
        name: the registry name (any case).
        section: where ``name`` was read (``[platform_config]``), for an unknown name.

    Raises:
        ConfigError: an unknown name, or a problem in a platform's sections.
    """
    from hpo_tools.platforms import platform_class, platform_classes

    chosen = platform_class(name) if section is None else _known_platform(section, name)
    for cls in platform_classes():
        if cls is not chosen and any(trial_file.has(s) for s in cls.trial_file_sections):
            cls.options_from_trial_file(trial_file)
    return PlatformSpec(chosen.name, chosen.options_from_trial_file(trial_file))


def _known_platform(section: Section, name: str) -> type:
    from hpo_tools.platforms import platform_class, registry_keys

    keys = registry_keys()
    lowered = name.strip().lower()
    if lowered not in keys:
        raise section.error(
            "name", f"expected one of {', '.join(keys)}, got {name!r}{did_you_mean(lowered, keys)}"
        )
    return platform_class(lowered)


def shape_command(
    platform: PlatformSpec, section: Section, key: str, text: str, *, name: str | None = None
) -> Command:
    """``text`` shaped by the platform into a :class:`Command`; a malformed command is an error
    naming ``[section] key``."""
    try:
        shaped = platform.platform_class().shape_command(text)
    except ConfigError as err:
        raise section.error(key, str(err)) from err
    return Command(name or key, shaped)


def check_metric_type(section: Section, metric_type: str, platform: PlatformSpec) -> None:
    """``metric_type`` is a source type the runner can build on ``platform``.

    Raises:
        ConfigError: unknown type (with a did-you-mean), or a type another platform reads
            (``table`` without MaxCompute), naming that platform.
    """
    from hpo_tools.metrics import source_types
    from hpo_tools.platforms import needs_platform_message

    own = tuple(platform.platform_class().metric_source_types)
    if metric_type in source_types() or metric_type in own:
        return
    message = needs_platform_message(metric_type)
    if message is not None:
        raise section.error("metric_type", message)
    known = sorted({*source_types(), *own})
    raise section.error(
        "metric_type",
        f"unknown source type {metric_type!r}; expected one of {', '.join(known)}"
        + did_you_mean(metric_type, known),
    )


def numbered(keys: Iterable[str], pattern: str) -> list[str]:
    """The keys matching ``pattern`` (a regex), in natural order (``cmd2`` before ``cmd10``)."""
    import re

    from hpo_tools.trial.ini import natural_key

    return sorted((k for k in keys if re.fullmatch(pattern, k)), key=natural_key)


def json_object(
    section: Section, key: str, text: str, *, python_literal: bool = False
) -> dict[str, Any]:
    """A JSON object, or ConfigError naming ``[section] key``.

    With ``python_literal``, a Python dict literal is read too (``{'lr': 0.1, 'flag': True}``,
    as the old EasyRec tools took ``-Dedit_config_json``), with ``ast.literal_eval``: only
    literals, nothing in the file is ever executed.
    """
    import ast
    import json

    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        value = None
        if python_literal:
            try:
                value = ast.literal_eval(text.strip())
            except (ValueError, SyntaxError, TypeError, MemoryError, RecursionError):
                value = None
        if value is None:
            also = " or a Python dict literal" if python_literal else ""
            raise section.error(
                key, f"is not valid JSON{also}: {err.msg} at column {err.colno}"
            ) from err
    if not isinstance(value, Mapping):
        raise section.error(key, f"expected a JSON object, got {type(value).__name__}")
    return dict(value)
