"""A finetune trial: its days, one after the other, each through the one trial runner.

For each day of the plan (:mod:`hpo_tools.finetune.plan`), :func:`run_finetune` builds the day's
ordinary trial settings and runs them with :func:`hpo_tools.trial.runner.run_trial`, in the day's
own directory ``<trial dir>/days/<YYYYMMDD>/`` (its ``trial.log``, ``params.json``,
``result.json``). When a day succeeds, its score is reported as one intermediate result and the
job registry records the day as finished. When every day is done, the days' scores are combined
with ``source_list_final_mode`` (default ``avg``) and reported as the final result.

A failed day stops the chain: the trial fails with a message naming the day and the command.
With ``resume=1`` a re-run of the same trial (same experiment and trial id) skips the days the
registry has seen finish (their scores are read back from their ``result.json``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any, Callable, TextIO

from hpo_tools.dates import Day
from hpo_tools.errors import HpoError
from hpo_tools.finetune.adapters import DayRegistry, DayReporter
from hpo_tools.finetune.plan import FinetunePlan, load_plan
from hpo_tools.trial.reporter import Reporter
from hpo_tools.trial.runner import (
    EXIT_FAILED,
    RegistryAdapter,
    TrialContext,
    TrialLogging,
    TrialOutcome,
    TrialPaths,
    build_masker,
    resolve_paths,
    run_trial,
    write_json_atomic,
)
from hpo_tools.trial.settings import TrialVariables

__all__ = ["run_finetune", "run_finetune_file", "day_dir", "read_day_result"]

_logger = logging.getLogger(__name__)


def day_dir(trial_dir: Path, day: Day) -> Path:
    """The directory of one day of a trial."""
    return trial_dir / "days" / day.bizdate


def read_day_result(trial_dir: Path, day: Day) -> dict[str, Any] | None:
    """The final report a finished day wrote, or None."""
    path = day_dir(trial_dir, day) / "result.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    final = data.get("final") if isinstance(data, dict) else None
    return final if isinstance(final, dict) and "score" in final else None


def _report(data: Mapping[str, Any]) -> Any:
    from hpo_tools.metrics import Report

    return Report(
        step=int(data.get("step", 0)),
        score=float(data["score"]),
        values={str(k): float(v) for k, v in dict(data.get("values") or {}).items()},
        source=int(data.get("source", 0)),
    )


def _previous_configs(path: Path) -> list[str]:
    """The configs an earlier run of the trial named (kept when resuming)."""
    try:
        configs = json.loads(path.read_text(encoding="utf-8")).get("configs")
    except (OSError, ValueError, AttributeError):
        return []
    return [str(c) for c in configs] if isinstance(configs, list) else []


def _failed_command(message: str, settings: Any) -> str:
    """`` (command cmdN: TEXT)`` when ``message`` names one of the day's commands, else ``""``."""
    name = message.split(" ", 1)[0] if message else ""
    for command in settings.commands:
        if command.name == name:
            return f" (command {command.name}: {command.text})"
    return ""


def run_finetune(
    plan: FinetunePlan,
    reporter: Reporter,
    context: TrialContext,
    *,
    interval: float = 1.0,
    stderr: TextIO | None = None,
    chain_first_day: bool = False,
    environ: Mapping[str, str] | None = None,
    resume: bool | None = None,
    retrain: Sequence[Day] = (),
    platform_factory: Callable[[Any], Any] | None = None,
) -> TrialOutcome:
    """Run the days of ``plan`` in order; see the module docstring.

    Args:
        plan: the finetune trial file, read.
        reporter: gets one intermediate result per day and the combined final result.
        context: the trial (parameters already fetched from ``reporter``).
        interval: seconds between metric polls.
        stderr: where a failed command's log tail goes.
        chain_first_day: the first day starts from the model of the day before it (this trial's
            own), not from the begin model (``finetune-daily`` after its first day).
        environ: the environment (default ``os.environ``).
        resume: skip finished days (default: the file's ``resume``).
        retrain: days to train again even when the registry has them finished.
        platform_factory: builds a day's platform from its settings (default: the platform
            the settings name, built by the runner).

    Returns:
        The trial's outcome; ``intermediate`` holds one entry per day (with ``"day"``).
    """
    from hpo_tools.metrics import FinalMode, OptimizeMode
    from hpo_tools.metrics.score import combine

    env = os.environ if environ is None else environ
    trial_dir = context.paths.trial_dir
    trial_dir.mkdir(parents=True, exist_ok=True)
    first = plan.day_settings(plan.days[0], chain_first_day=chain_first_day)
    if resume is None:
        resume = plan.resume or first.resume
    adapter = RegistryAdapter.open(context, platform=first.platform)
    registry, record = adapter.registry, adapter.record
    again = {day.bizdate for day in retrain}
    if again & set(record.finished_stages):
        record.finished_stages[:] = [d for d in record.finished_stages if d not in again]
        registry.save(record)
    if not resume and record.finished_stages:
        record.finished_stages.clear()  # a fresh run of the trial trains every day again
        registry.save(record)
    outcome = TrialOutcome(status="running", exit_code=EXIT_FAILED, trial_dir=str(trial_dir))

    def write_params(configs: Sequence[str]) -> None:
        # "configs": the latest day's edited configs (what `experiment best` exports).
        write_json_atomic(
            context.paths.params_path,
            {
                "trial_id": context.trial_id,
                "experiment_id": context.exp_id,
                "parameter_id": context.parameter_id,
                "params": dict(context.params),
                "configs": list(configs),
                "days": [d.bizdate for d in plan.days],
            },
        )

    write_params(_previous_configs(context.paths.params_path) if resume else [])
    reports = []
    for index, day in enumerate(plan.days):
        chain = chain_first_day if index == 0 else True
        done = read_day_result(trial_dir, day) if day.bizdate in record.finished_stages else None
        if done is not None:
            _logger.info("resume: day %s already finished for this trial; skipped", day)
            report = _report(done)
        else:
            day_context = TrialContext(
                context.exp_id,
                context.trial_id,
                context.params,
                TrialPaths(context.paths.experiment_dir, day_dir(trial_dir, day)),
                context.parameter_id,
            )
            settings = first
            try:
                config_dir = day_dir(trial_dir, day) / "sources"
                settings = plan.day_settings(day, chain_first_day=chain, config_dir=config_dir)
                day_reporter = DayReporter(reporter, context.params, day)
                _logger.info("day %s: training (log: %s)", day, day_context.paths.log_path)
                # Within a day, resume skips the commands that already succeeded for it.
                settings = dataclasses.replace(
                    settings, resume=resume and day.bizdate not in again
                )
                day_outcome = run_trial(
                    settings,
                    day_reporter,
                    day_context,
                    masker=build_masker(settings, env),
                    registry=DayRegistry(adapter, day),
                    platform=platform_factory(settings) if platform_factory else None,
                    interval=interval,
                    stderr=stderr,
                )
            except HpoError as err:
                if not reports:
                    raise  # nothing has trained yet: a bad trial file (exit 2, nothing launched)
                # Earlier days trained: a later day's config or storage problem fails the trial
                # (exit 1) like a failed command, rather than calling the file bad.
                day_outcome = TrialOutcome(status="failed", exit_code=EXIT_FAILED, message=str(err))
            outcome.configs.extend(day_outcome.configs)
            if day_outcome.status != "succeeded" or day_outcome.final is None:
                command = build_masker(settings, env).mask(
                    _failed_command(day_outcome.message, settings)
                )
                outcome.status = day_outcome.status
                outcome.exit_code = day_outcome.exit_code or EXIT_FAILED
                outcome.message = (
                    f"day {day} {day_outcome.status}: {day_outcome.message}{command}; "
                    f"log: {day_context.paths.log_path}"
                )
                _logger.error("%s", outcome.message)
                write_json_atomic(context.paths.result_path, outcome.to_dict())
                return outcome
            report = _report(day_outcome.final)
            registry.mark_stage_finished(record, day.bizdate)
            write_params(day_outcome.configs)
        reports.append(report)
        entry = {"day": day.bizdate, **report.to_dict()}
        outcome.intermediate.append(entry)
        reporter.report_intermediate(report.as_nni())
        write_json_atomic(context.paths.result_path, outcome.to_dict())
    final = combine(
        reports,
        FinalMode(plan.source_list_final_mode),
        OptimizeMode(first.metric.optimize_mode),
    )
    outcome.final = final.to_dict()
    reporter.report_final(final.as_nni())
    outcome.status = "succeeded"
    outcome.exit_code = 0
    adapter.trial_finished("succeeded")
    write_json_atomic(context.paths.result_path, outcome.to_dict())
    return outcome


def run_finetune_file(
    config_path: str | os.PathLike[str],
    reporter: Reporter,
    *,
    exp_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    interval: float = 1.0,
    stderr: TextIO | None = None,
    start_time: str | None = None,
    end_time: str | None = None,
    days: Sequence[Day] | None = None,
    chain_first_day: bool | None = None,
    resume: bool | None = None,
    retrain: Sequence[Day] = (),
) -> TrialOutcome:
    """Everything an entry point does for a finetune trial file.

    Args:
        config_path: the finetune trial file.
        reporter: NNI or console.
        exp_dir: experiment directories go under it (default: NNI's, else ``./exp``).
        start_time, end_time: the window, overriding nothing else (see
            :func:`hpo_tools.finetune.plan.load_plan`).
        days: the days, given directly.
        chain_first_day: start the first day from this trial's model of the day before (None:
            only when the registry has that day finished).
        resume, retrain: see :func:`run_finetune`.

    Raises:
        HpoError: a problem in the trial file, found before anything was launched.
    """
    env = os.environ if environ is None else environ
    params = reporter.get_parameters()
    exp_id, trial_id = reporter.experiment_id, reporter.trial_id
    paths = resolve_paths(exp_id, trial_id, exp_dir=exp_dir, environ=env)
    variables = TrialVariables(exp_id, trial_id, str(paths.trial_dir), params)
    plan = load_plan(
        config_path,
        variables=variables,
        environ=env,
        start_time=start_time,
        end_time=end_time,
        days=days,
    )
    context = TrialContext(exp_id, trial_id, params, paths, reporter.parameter_id)
    if chain_first_day is None:
        chain_first_day = _previous_day_finished(context, plan.days[0])
    masker = build_masker(plan.day_settings(plan.days[0], chain_first_day=chain_first_day), env)
    with TrialLogging(paths, masker):
        _logger.info(
            "finetune trial %s of experiment %s: %s, days %s..%s, parameters %s",
            trial_id,
            exp_id,
            plan.source,
            plan.days[0],
            plan.days[-1],
            json.dumps(dict(params), sort_keys=True),
        )
        return run_finetune(
            plan,
            reporter,
            context,
            interval=interval,
            stderr=stderr,
            chain_first_day=chain_first_day,
            environ=env,
            resume=resume,
            retrain=retrain,
        )


def _previous_day_finished(context: TrialContext, day: Day) -> bool:
    from hpo_tools.jobs import JobRegistry

    record = JobRegistry(context.paths.experiment_dir).load(context.trial_id)
    return record is not None and day.previous().bizdate in record.finished_stages
