"""The platform format (``trial.ini``) -> a one-stage :class:`~hpo_tools.trial.plan.TrialPlan`.

Sections: ``[platform_config]`` (``name``, ``cmd1``, ``cmd2``, ..., ``resume``,
``job_timeout``),
``[metric_config]``, ``[params_config]`` (``params_src_dst_filepath<N> = SRC,DST``),
``[oss_config]``, ``[schedule_config]`` (:mod:`hpo_tools.trial.schedule`), ``[monitor_config]``
(:mod:`hpo_tools.monitor`), ``[output_config]`` (the best trial's copies,
:mod:`hpo_tools.experiment.outputs`), and the
platforms' own sections (``[odps_config]``, read by the platform). The tuner's parameters
become the edits of every ``[params_config]`` pair; with ``budget_path`` (and
``budget_scale``, ``budget_unit_steps``) there, Hyperband/BOHB's ``TRIAL_BUDGET`` sets that
field of every pair too (:mod:`hpo_tools.trial.budget`).
"""

from __future__ import annotations

import math
import re
from collections.abc import Mapping
from typing import Any

from hpo_tools.errors import did_you_mean
from hpo_tools.metrics import source_types
from hpo_tools.trial.budget import BUDGET_PARAM, Budget, trial_budget
from hpo_tools.trial.ini import Section, TrialFile
from hpo_tools.trial.plan import (
    ConfigWrite,
    MetricSettings,
    PlatformSpec,
    Stage,
    TrialPlan,
    params_to_edits,
)
from hpo_tools.trial.sections import (
    FINAL_MODES,
    JOB_TIMEOUT_KEY,
    MONITOR_SECTION,
    OPTIMIZE_MODES,
    OSS_SECTION,
    OUTPUT_SECTION,
    SCHEDULE_SECTION,
    check_metric_type,
    job_timeout,
    metric_spec,
    monitor_settings,
    numbered,
    oss_settings,
    output_settings,
    platform_sections,
    platform_spec,
    schedule_window,
    shape_command,
)
from hpo_tools.trial.templating import format_value, placeholder_key

__all__ = ["FORMAT", "SECTION", "COMMON_SECTIONS", "METRIC_KEYS", "BUDGET_KEYS", "build_plan"]

FORMAT = "platform"
SECTION = "platform_config"
COMMON_SECTIONS = (
    SECTION, "metric_config", "params_config", OSS_SECTION, SCHEDULE_SECTION, MONITOR_SECTION,
    OUTPUT_SECTION,
)
BUDGET_KEYS = ("budget_path", "budget_scale", "budget_unit_steps")
METRIC_KEYS = (
    "metric_type",
    "metric_source",
    "final_mode",
    "source_list_final_mode",
    "metric_dict",
    "optimize_mode",
)


# hpo_tools 0.1.x's stdout source naming a job's own log: "cmd1", "cmd", "cmd1,worker".
_JOB_LOG_SOURCE = re.compile(r"cmd\d*(,\s*\w+)?")


def _check_storage_path(section: Section, key: str, path: str) -> None:
    """A path storage cannot read or write is an error now, not after the jobs ran."""
    from hpo_tools import storage
    from hpo_tools.errors import StorageError

    try:
        storage.check_path(path)
    except StorageError as err:
        raise section.error(key, str(err)) from None


def _check_file_source(
    section: Section, key: str, location: str, metric_type: str, platform: PlatformSpec
) -> None:
    if metric_type == "stdout" and _JOB_LOG_SOURCE.fullmatch(location):
        if metric_type in platform.platform_class().metric_source_types:
            return  # the platform reads its jobs' own logs
        from hpo_tools.platforms import display_name, platforms_reading

        readers = ", ".join(display_name(cls.name) for cls in platforms_reading(metric_type))
        raise section.error(
            key,
            f"{location!r}: reading one job's own log (hpo_tools 0.1.x's cmd1 / cmd,worker) "
            f"needs a platform that reads its jobs' logs ({readers or 'none registered'}); "
            "here leave metric_source out to read the trial's log, which holds every "
            "command's output",
        )
    if location:
        _check_storage_path(section, key, location)


def _metric_weights(metric: Section) -> object:
    """``metric_dict``, or, without it, hpo_tools 0.1.x's older form (the classic format's
    too): one ``metric=weight`` line per metric (``auc_is_like=0.25``) beside the other keys.

    Raises:
        ConfigError: an unknown key (a line whose value is not a number, or any extra key
            beside ``metric_dict``), naming it, with a did-you-mean.
    """
    extra = [k for k in metric.keys()
             if k not in METRIC_KEYS and not re.fullmatch(r"metric_source_.+", k)]
    if metric.get("metric_dict") is not None or not extra:
        metric.check_keys(METRIC_KEYS, (r"metric_source_.+",))
        return metric.require("metric_dict")
    weights: dict[str, float] = {}
    for key in extra:
        text = metric.get(key) or ""
        try:
            weights[key] = float(text)
        except ValueError:
            raise metric.error(
                key, "unknown key" + did_you_mean(key, METRIC_KEYS)
                + f" (a metric=weight line needs a number, got {text!r})") from None
    return weights


def _positive_number(section: Section, key: str, *, zero: bool = False) -> float | None:
    """``[section] key`` as a positive number (or 0 with ``zero``); None when absent."""
    text = section.get(key)
    if text is None:
        return None
    try:
        number = float(text)
    except ValueError:
        number = float("nan")
    if not math.isfinite(number) or number < 0 or (number == 0 and not zero):
        expected = "a number >= 0" if zero else "a positive number"
        raise section.error(key, f"expected {expected}, got {text!r}")
    return number


def _budget(
    section: Section,
    params: Mapping[str, Any],
    edits: Mapping[str, Any],
    pairs: list[str],
    metric_type: str,
) -> tuple[Budget | None, float | None]:
    """``[params_config] budget_path, budget_scale, budget_unit_steps``: the budget and the
    global steps of one budget unit (for the per-unit reports; None: one report per step).

    Raises:
        ConfigError: a scale or unit that is not a positive number, a budget key without
            ``budget_path`` or without a config pair, a budget path the parameters edit too,
            or a ``TRIAL_BUDGET`` that is not a positive number.
    """
    path = (section.get("budget_path") or "").strip()
    if not path:
        for key in ("budget_scale", "budget_unit_steps"):
            if section.get(key) is not None:
                raise section.error(key, "needs budget_path (the config field TRIAL_BUDGET "
                                         "sets)")
        return None, None
    if not pairs:
        raise section.error("budget_path", "needs a params_src_dst_filepath<N>=SRC,DST pair "
                                           "(the config it edits)")
    if path in edits:
        raise section.error("budget_path", f"{path} is also a parameter of the search space: "
                                           "tune it or budget it, not both")
    scale = _positive_number(section, "budget_scale")
    unit = _positive_number(section, "budget_unit_steps", zero=True)
    where = f"{section.source}: [{section.name}] budget_path"
    budget = Budget(path, 1.0 if scale is None else scale,
                    trial_budget(params, source=section.source), where)
    if not budget.applies:
        return budget, None
    if unit is None:  # the field counts global steps (num_steps) when the steps are global
        unit = budget.scale if metric_type == "summary" else 0.0
    return budget, unit or None


def build_plan(
    trial_file: TrialFile,
    params: Mapping[str, Any],
    *,
    extra_edits: Mapping[str, Any] | None = None,
) -> TrialPlan:
    """Read a platform-format trial file into its plan.

    Args:
        trial_file: the file, rendered and read.
        params: the tuner's parameters (edits of every ``[params_config]`` pair).
        extra_edits: more edits, applied after the parameters.

    Raises:
        ConfigError: any problem, carrying file, section and key.
    """
    source = trial_file.source
    trial_file.check_sections(COMMON_SECTIONS + platform_sections())
    plat = trial_file.require(SECTION)
    metric = trial_file.require("metric_config")
    plat.check_keys(("name", "resume", JOB_TIMEOUT_KEY), (r"cmd\d+",))
    platform = platform_spec(trial_file, plat.require("name"), section=plat)
    names = numbered(plat.keys(), r"cmd\d+")
    if not names:
        raise plat.missing("cmd1")
    commands = tuple(shape_command(platform, plat, name, plat.require(name)) for name in names)
    resume = plat.flag("resume")
    timeout = job_timeout(plat)

    metric_dict = _metric_weights(metric)
    metric_type = (metric.get("metric_type") or "summary").lower()
    check_metric_type(metric, metric_type, platform)
    final_mode = metric.choice("final_mode", "final", FINAL_MODES)
    list_mode = None
    if metric.get("source_list_final_mode") is not None:
        list_mode = metric.choice("source_list_final_mode", "final", FINAL_MODES)
    optimize_mode = metric.choice("optimize_mode", "maximize", OPTIMIZE_MODES)
    spec = metric_spec(
        metric,
        metric_dict,
        final_mode=final_mode,
        optimize_mode=optimize_mode,
        source_list_final_mode=list_mode,
    )
    source_keys = numbered(metric.keys(), r"metric_source(_.+)?")
    sources = tuple(metric.get(k) or "" for k in source_keys)
    if not sources and metric_type != "stdout":
        raise metric.missing("metric_source")
    if metric_type in source_types():  # files (not a platform's own type such as `table`)
        for key, location in zip(source_keys, sources):
            _check_file_source(metric, key, location, metric_type, platform)

    # hpo_tools 0.1.x's search keys written as placeholders (${lr}) are replaced as text;
    # the others are config paths, edited.
    replacements = {
        name: format_value(value) for name, value in params.items() if placeholder_key(name)
    }
    path_params = {k: v for k, v in params.items() if k not in replacements}
    edits = {**params_to_edits(path_params), **dict(extra_edits or {})}
    writes: list[ConfigWrite] = []
    budget: Budget | None = None
    unit_steps: float | None = None
    params_section = trial_file.section("params_config")
    if params_section is not None:
        params_section.check_keys(BUDGET_KEYS, (r"params_src_dst_filepath.*",))
        keys = numbered(params_section.keys(), r"params_src_dst_filepath.*")
        budget, unit_steps = _budget(params_section, params, edits, keys, metric_type)
        for key in keys:
            pair = params_section.require(key)
            parts = [p.strip() for p in pair.split(",")]
            if len(parts) != 2 or not all(parts):
                raise params_section.error(key, f"expected SRC,DST (two paths), got {pair!r}")
            for path in parts:
                _check_storage_path(params_section, key, path)
            writes.append(
                ConfigWrite(key, parts[0], parts[1], edits, replacements=replacements,
                            budget=budget)
            )

    oss = oss_settings(trial_file)
    monitor = monitor_settings(trial_file)
    outputs = output_settings(
        trial_file, summary_sources=sources if metric_type == "summary" else ()
    )
    stage = Stage(
        name="",
        commands=commands,
        metric=MetricSettings(metric_type, sources, spec),
        config_writes=tuple(writes),
        unit_steps=unit_steps,
        job_timeout=timeout,
    )
    record = {}
    if budget is not None and budget.applies:
        record["budget"] = {BUDGET_PARAM: budget.trial_budget, "budget_path": budget.path,
                            "budget_scale": budget.scale}
    return TrialPlan(
        source=source,
        format=FORMAT,
        platform=platform,
        stages=(stage,),
        resume=resume,
        params=dict(params),
        oss=oss,
        secrets=tuple(trial_file.secrets),
        schedule=schedule_window(trial_file),
        monitor=monitor,
        outputs=outputs,
        record=record,
    )
