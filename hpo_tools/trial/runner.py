"""One trial plan, start to finish: configs written, jobs run, metrics reported, nothing left
running.

:func:`run_plan` runs the stages of a :class:`~hpo_tools.trial.plan.TrialPlan` in order, each
in its own directory (a plain trial's one stage in the trial directory, a finetune day in
``days/<YYYYMMDD>/``). For each stage it

1. writes the edited training configs and the stage's ``params.json``;
2. submits the commands in order on the platform, recording each job in the job registry as its
   state changes (``resume=1`` skips commands the registry says already succeeded);
3. follows the metrics while the jobs run: with one stage each new scored step is reported to
   NNI at once (with a budget, once per budget unit: ``Stage.unit_steps``); with several, a
   stage's steps stay in its own ``result.json``;
4. drains the metrics into the stage's final result: the trial's final result (one stage), or
   one intermediate result (several), the finals combined by ``plan.stage_mode`` at the end;
5. writes ``result.json`` whatever happened.

Each report that went to NNI is recorded in ``<trial dir>/reported.json``
(:mod:`~hpo_tools.trial.report_state`) once its call returned; with ``resume=1`` a re-run of
the trial (same experiment and trial id) reads every source from the start again, keeps every
step in ``result.json``, and sends NNI only what that record does not hold.

A failed command fails the trial (non-zero exit, the last 50 lines of its log on stderr, no final
report). So does an ``HpoError`` once a job was launched: ``error: ...`` on stderr, jobs
cancelled, exit 1. Before any launch it is raised (the entry points exit 2: bad trial file,
nothing launched). SIGINT/SIGTERM (how NNI stops a trial) and a lost NNI channel cancel every
live job, mark the registry and end the trial non-zero within 3 seconds.
"""

from __future__ import annotations

import datetime
import json
import logging
import signal
import sys
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, TextIO

from hpo_tools.errors import HpoError, MetricReadError
from hpo_tools.failpoints import failpoint
from hpo_tools.secrets import SecretMasker
from hpo_tools.storage import write_json_atomic
from hpo_tools.trial.budget import UnitReports
from hpo_tools.trial.follow import build_follower, read_stage_final
from hpo_tools.trial.launcher import Launcher
from hpo_tools.trial.notify import notify_trial_end
from hpo_tools.trial.outcome import EXIT_FAILED, TrialOutcome, TrialStatus
from hpo_tools.trial.paths import TrialPaths
from hpo_tools.trial.plan import ConfigWrite, Stage, TrialPlan
from hpo_tools.trial.registry import RegistryAdapter
from hpo_tools.trial.report_state import ReportState
from hpo_tools.trial.reporter import Reporter, ReporterChannelLost
from hpo_tools.trial.schema import ConfigSchema, config_schema
from hpo_tools.trial.signals import SignalGuard, TrialCancelled
from hpo_tools.trial.trial_log import build_masker, mask_error, masked

__all__ = ["TrialContext", "run_plan"]

_logger = logging.getLogger(__name__)

# Seconds between two looks at the clock (and the cancel flag) while waiting for the schedule.
_SCHEDULE_TICK = 0.1


def _now() -> datetime.datetime:
    """The local time (the ``[schedule_config]`` clock; tests replace it)."""
    return datetime.datetime.now()


@dataclass(frozen=True)
class TrialContext:
    """Who this trial is and where it writes."""

    exp_id: str
    trial_id: str
    params: Mapping[str, Any]
    paths: TrialPaths
    parameter_id: Any = None


def _previous_configs(path: Path) -> list[str]:
    """The configs an earlier run of the trial named (kept when resuming)."""
    try:
        configs = json.loads(path.read_text(encoding="utf-8")).get("configs")
    except (OSError, ValueError, AttributeError):
        return []
    return [str(c) for c in configs] if isinstance(configs, list) else []


class _StageFailed(Exception):
    """A stage ended without a result; its outcome says why (internal to the run loop)."""


class _Run:
    """The mutable state of one :func:`run_plan` call."""

    def __init__(
        self,
        plan: TrialPlan,
        reporter: Reporter,
        context: TrialContext,
        *,
        masker: SecretMasker,
        platform: Any,
        registry: RegistryAdapter,
        interval: float,
        stderr: TextIO,
        schema: ConfigSchema,
    ) -> None:
        self.plan = plan
        self.schema = schema
        # Paths whose passthrough notice was logged (once a trial).
        self.noticed: set[str] = set()
        self.reporter = reporter
        self.context = context
        self.masker = masker
        self.platform = platform
        self.registry = registry
        self.interval = interval
        self.stderr = stderr
        self.staged = plan.stage_mode is not None
        self.outcome = TrialOutcome(
            TrialStatus.RUNNING, EXIT_FAILED, trial_dir=str(context.paths.trial_dir)
        )
        # The stage running now and its own outcome (the trial's when there is one stage).
        self.stage: Stage | None = None
        self.stage_outcome = self.outcome
        # What NNI already got from this trial id (set by run(); empty until then).
        self.reported = ReportState(context.paths.trial_dir, context.exp_id, context.trial_id)
        self.launcher = Launcher(platform, registry, masker, interval=interval, stderr=stderr)

    @property
    def launched(self) -> bool:
        """True once a job was launched: from then on an error fails the trial (exit 1)
        instead of being a bad trial file (exit 2, nothing launched)."""
        return self.launcher.launched

    def check_cancelled(self) -> None:
        """Raise a cancellation whose exception was swallowed on the way."""
        self.launcher.check_cancelled()

    # -- files -------------------------------------------------------------------------------

    def stage_paths(self, stage: Stage) -> TrialPaths:
        return self.context.paths.stage(stage.directory)

    def write_result(self, outcome: TrialOutcome, paths: TrialPaths) -> None:
        # Messages can quote a job's output or an error: they go through the masker too.
        outcome.message = self.masker.mask(outcome.message)
        outcome.warnings = [self.masker.mask(w) for w in outcome.warnings]
        write_json_atomic(paths.result_path, outcome.to_dict())

    def write_results(self) -> None:
        """The running stage's result.json (several stages) and the trial's."""
        if self.staged and self.stage is not None and self.stage_outcome is not self.outcome:
            self.write_result(self.stage_outcome, self.stage_paths(self.stage))
        self.write_result(self.outcome, self.context.paths)

    def write_params(self, paths: TrialPaths, configs: Sequence[str], **extra: Any) -> None:
        write_json_atomic(
            paths.params_path,
            {
                "trial_id": self.context.trial_id,
                "experiment_id": self.context.exp_id,
                "parameter_id": self.context.parameter_id,
                # A parameter value can be a secret too (a tuned key, a typo'd --params).
                "params": masked(dict(self.context.params), self.masker),
                "configs": list(configs),
                **masked(dict(extra), self.masker),
            },
        )

    def trial_record(self) -> dict[str, Any]:
        """What the trial's own ``params.json`` holds besides the parameters: the plan's
        ``record`` and, with ``[output_config]``, ``"outputs"`` (read at the experiment's end)."""
        record = dict(self.plan.record)
        if self.plan.outputs is not None:
            record["outputs"] = self.plan.outputs.to_record()
        return record

    def write_configs(self, stage: Stage, paths: TrialPaths) -> list[str]:
        return [
            target
            for write in stage.config_writes
            if (target := self.write_config(write, paths)) is not None
        ]

    def write_config(self, write: ConfigWrite, paths: TrialPaths) -> str | None:
        """Write one edited config; None when an optional source cannot be read."""
        from hpo_tools import storage
        from hpo_tools.errors import StorageError
        from hpo_tools.pbtxt import Document

        try:
            text = storage.read_text(write.src)
        except StorageError as err:
            if write.required:
                raise
            _logger.warning("no local copy of the edited config: %s", err)
            return None
        text = write.source_text(text)
        if write.edits_anything:
            document = Document.parse(text, source=write.src)
            schema = self.schema.for_document(document)
            left = write.left_to_platform(document, schema)
            for path in left:
                if path not in self.noticed:  # once a trial, not once a finetune day
                    self.noticed.add(path)
                    _logger.warning("%s", write.passthrough_notice(path))
            edits = write.edits_for(document, schema)
            if write.budget is not None and write.budget.path in edits:
                _logger.info("budget: %s = %s (TRIAL_BUDGET %s x budget_scale %s)",
                             write.budget.path, edits[write.budget.path],
                             write.budget.trial_budget, write.budget.scale)
            document.apply(edits, schema=schema)
            edited = document.to_text()
        else:  # the file as it is, replacements made (it need not be protobuf text)
            edited = text
        target = write.dst
        if target is None:
            name = write.src.rstrip("/").rsplit("/", 1)[-1] or "pipeline.config"
            target = str(paths.trial_dir / "configs" / name)
        storage.write_text(target, edited)
        _logger.info("wrote edited config %s (from %s)", target, write.src)
        return target

    # -- metrics -----------------------------------------------------------------------------

    def report_new_steps(
        self, follower: Any, *, last: bool = False, units: UnitReports | None = None
    ) -> None:
        """Report the steps scored since the last call; ``last`` also takes what a poll keeps
        waiting for (a final log line without a newline), once the jobs are over. With
        ``units`` (a budget), NNI gets one report per budget unit, ``result.json`` every
        step. A step (or unit) an earlier run of this trial reported is not sent again."""
        failpoint("metric_read")
        for report in follower.drain() if last else follower.poll():
            self.stage_outcome.intermediate.append(report.to_dict())
            # DEBUG, not INFO: trial.log feeds the stdout metric source, and a metric regex
            # must not match the runner's own echo of the values.
            _logger.debug("step %d: score %.6g %s", report.step, report.score, report.values)
            if not self.staged:  # a stage of several reports its final result only
                for sent in self.to_send(report, units):
                    # A signal since the last tick: nothing more goes to NNI (one poll can hold
                    # many steps; a resumed run sends what was left).
                    self.check_cancelled()
                    failpoint("report")
                    self.reporter.report_intermediate(sent.as_nni())
                    self.record_sent(sent, units)
            self.write_result(self.stage_outcome, self.stage_paths(self.stage))
        if last and units is not None and not self.staged:
            for sent in units.finish():
                self.check_cancelled()
                self.reporter.report_intermediate(sent.as_nni())
                self.record_sent(sent, units)

    def to_send(self, report: Any, units: UnitReports | None) -> list[Any]:
        """The reports NNI gets for the newly scored ``report``: itself, or with a budget the
        units it completes; none when an earlier run of this trial sent it (resume)."""
        if units is not None:
            return list(units.add(report))
        if self.reported.has_step(report.source, report.step):
            _logger.debug("step %d: already reported to NNI; not sent again", report.step)
            return []
        return [report]

    def record_sent(self, report: Any, units: UnitReports | None) -> None:
        """Record a report whose call returned (so a resumed run never sends it again)."""
        if units is not None:
            self.reported.add_unit()
        else:
            self.reported.add_step(report.source, report.step)

    # -- stages ------------------------------------------------------------------------------

    def run_stage(self, stage: Stage) -> Any:
        """Run one stage; its final :class:`~hpo_tools.metrics.Report`.

        Raises:
            _StageFailed: a command failed or no final result was read (``stage_outcome`` says
                why).
        """
        paths = self.stage_paths(stage)
        paths.trial_dir.mkdir(parents=True, exist_ok=True)
        where = f"{self.plan.source}: [metric_config]"
        follower = build_follower(  # metric settings checked before any write
            stage.metric, paths.log_path, self.interval, platform=self.platform, where=where
        )
        units = UnitReports(stage.unit_steps) if stage.unit_steps else None
        if units is not None and not self.staged:
            units.sent = self.reported.units  # the units an earlier run of the trial sent
        failpoint("write_configs")
        configs = self.write_configs(stage, paths)
        self.stage_outcome.configs = configs
        if self.staged:
            self.outcome.configs.extend(configs)
        self.write_params(paths, configs, **({} if self.staged else self.trial_record()))
        resume = self.plan.resume and not stage.redo
        done = self.registry.succeeded_commands(stage) if resume else set()
        resume_stage = getattr(self.platform, "resume_stage", None)  # Platform's: a no-op
        if resume and resume_stage is not None:
            # A command's own output files (cloud job logs) go on from the earlier attempts,
            # and a command skipped below is still read from them.
            resume_stage(paths.log_path)
        for position, command in enumerate(stage.commands, start=1):
            self.check_cancelled()
            if position in done:
                _logger.info("resume: %s already succeeded for this trial; skipped", command.name)
                continue
            failure = self.launcher.run(
                stage, paths, position, command,
                lambda: self.report_new_steps(follower, units=units),
            )
            if failure is not None:
                self.stage_outcome.message = failure
                raise _StageFailed()
        self.check_cancelled()
        try:
            self.report_new_steps(follower, last=True, units=units)
            final = follower.close()
        except MetricReadError as err:
            self.check_cancelled()  # reads cut short by a cancellation are not a failure
            self.stage_outcome.message = str(err)
            _logger.error("no final result: %s", err)
            raise _StageFailed() from err
        # A signal during the last reads interrupts them (platform.interrupt()): what they
        # returned is incomplete and must not become the final result.
        self.check_cancelled()
        # A damaged event file whose good steps were read: the result stands, with its note.
        warnings = follower.warnings()
        self.stage_outcome.warnings.extend(warnings)
        if self.staged:
            self.outcome.warnings.extend(f"{stage.label}: {w}" for w in warnings)
        self.stage_outcome.final = final.to_dict()
        _logger.debug("final: score %.6g %s", final.score, final.values)
        return final

    def stage_message(self, stage: Stage, status: TrialStatus, message: str) -> str:
        """The trial's message for a stage of several that ended without a result."""
        if not self.staged:
            return message
        name = message.split(" ", 1)[0] if message else ""
        command = next(
            (f" (command {c.name}: {c.text})" for c in stage.commands if c.name == name), ""
        )
        log = self.stage_paths(stage).log_path
        return f"{stage.label} {status}: {message}{command}; log: {log}"

    def end_stage_early(self, status: TrialStatus, exit_code: int, message: str) -> None:
        """The running stage (and so the trial) ends without a result."""
        self.stage_outcome.status = status
        self.stage_outcome.exit_code = exit_code
        self.stage_outcome.message = self.stage_outcome.message or message
        self.outcome.status = status
        self.outcome.exit_code = exit_code
        if self.stage is not None and self.staged:
            self.outcome.message = self.stage_message(
                self.stage, status, self.stage_outcome.message
            )
        else:
            self.outcome.message = self.stage_outcome.message

    # -- the whole trial ---------------------------------------------------------------------

    def previous_stage_final(self, stage: Stage, finished: set[str]) -> Any:
        if not (self.plan.resume and self.staged) or stage.redo or stage.name not in finished:
            return None
        return read_stage_final(self.stage_paths(stage))

    def wait_for_schedule(self) -> None:
        """Outside its ``[schedule_config]`` window the trial waits, saying until when; a
        signal still cancels it within a tick."""
        window = self.plan.schedule
        announced = None
        while window is not None:
            self.check_cancelled()
            start = window.next_start(_now())
            if start is None:
                return
            if start != announced:
                message = (f"trial {self.context.trial_id} waits for its [schedule_config] "
                           f"window ({window}): it starts at {start:%Y-%m-%d %H:%M}")
                _logger.warning("%s", message)
                print(message, file=self.stderr, flush=True)
                announced = start
            time.sleep(_SCHEDULE_TICK)

    def run(self) -> None:
        plan = self.plan
        self.context.paths.trial_dir.mkdir(parents=True, exist_ok=True)
        self.wait_for_schedule()
        if not plan.resume:
            self.registry.forget_stages()  # a fresh run of the trial trains every stage again
        else:
            self.registry.forget_stages(s.name for s in plan.stages if s.redo)
        self.reported = self.open_report_state()
        finished = self.registry.finished_stages()
        if self.staged:
            configs = _previous_configs(self.context.paths.params_path) if plan.resume else []
            self.write_params(self.context.paths, configs, **self.trial_record())
        reports = []
        for stage in plan.stages:
            self.check_cancelled()
            report = self.previous_stage_final(stage, finished)
            if report is not None:
                _logger.info("resume: %s already finished for this trial; skipped", stage.label)
            else:
                report = self.run_one(stage)
                if report is None:
                    return
            reports.append(report)
            if self.staged:
                self.outcome.intermediate.append({**dict(stage.record), **report.to_dict()})
                if self.reported.has_stage(stage.name):
                    _logger.info("resume: %s's result was already reported to NNI for this "
                                 "trial; not sent again", stage.label)
                else:
                    self.reporter.report_intermediate(report.as_nni())
                    self.reported.add_stage(stage.name)
                self.write_result(self.outcome, self.context.paths)
        self.finish(reports)

    def open_report_state(self) -> ReportState:
        """What NNI already got from this trial id: with ``resume=1`` the record earlier runs
        left (minus the stages trained again); else a fresh record (everything is sent)."""
        plan, context = self.plan, self.context
        where = (context.paths.trial_dir, context.exp_id, context.trial_id)
        redo = [stage.name for stage in plan.stages if stage.redo]
        if not plan.resume or (redo and not self.staged):
            return ReportState.fresh(*where)
        state = ReportState.load(*where)
        state.forget_stages(redo)
        if not state.empty:
            _logger.info("resume: %s; not sent again", state.describe())
        return state

    def run_one(self, stage: Stage) -> Any:
        """Run ``stage``; its final report, or None when the trial ended with it."""
        self.stage = stage
        if self.staged:
            paths = self.stage_paths(stage)
            self.stage_outcome = TrialOutcome(
                TrialStatus.RUNNING, EXIT_FAILED, trial_dir=str(paths.trial_dir)
            )
            _logger.info("%s: training (log: %s)", stage.label, paths.log_path)
        try:
            report = self.run_stage(stage)
        except _StageFailed:
            self.end_stage_early(TrialStatus.FAILED, EXIT_FAILED, "")
            _logger.error("%s", self.outcome.message)
            self.registry.trial_finished(TrialStatus.FAILED)
            self.write_results()
            return None
        if self.staged:
            self.stage_outcome.status = TrialStatus.SUCCEEDED
            self.stage_outcome.exit_code = 0
            self.write_result(self.stage_outcome, self.stage_paths(stage))
            self.registry.stage_finished(stage)
            self.write_params(self.context.paths, self.stage_outcome.configs,
                              **self.trial_record())
        self.stage = None
        return report

    # -- how a trial ends early --------------------------------------------------------------

    def cancelled(self, err: BaseException) -> None:
        """A signal, Ctrl-C or a lost NNI channel: every live job cancelled, exit 128+signal."""
        default = signal.SIGINT if isinstance(err, KeyboardInterrupt) else 0
        signum = int(getattr(err, "signum", default))
        message = str(err) or "interrupted"
        self.end_stage_early(
            TrialStatus.CANCELLED, 128 + signum if signum else EXIT_FAILED, message
        )
        _logger.warning("%s: cancelling every live job", message)
        self.launcher.cancel_live()
        self.registry.trial_finished(TrialStatus.CANCELLED)

    def failed(self, err: BaseException) -> bool:
        """Any other error: jobs cancelled, the trial failed.

        Returns:
            True when the error is the trial's failure (an ``HpoError`` once a job was launched:
            exit 1, ``error: ...`` on stderr); False when it must propagate (a bad trial file
            before any launch, exit 2 at the entry point; or a bug).
        """
        self.launcher.cancel_live()  # a bug or config error must not leave jobs running
        # An SDK error can quote a credential (a service echoing the key it refused); the
        # error goes on to stderr ("error: ...", a traceback) and result.json.
        mask_error(err, self.masker)
        self.registry.trial_finished(TrialStatus.FAILED)
        self.end_stage_early(TrialStatus.FAILED, EXIT_FAILED, str(err))
        if not (isinstance(err, HpoError) and self.launched):
            return False
        # Not a bad trial file: a job ran, so this is a failed trial, like a failed command.
        _logger.error("trial failed after a job was launched: %s", err)
        print(f"error: {err}", file=self.stderr, flush=True)
        return True

    # -- the end -------------------------------------------------------------------------------

    def finish(self, reports: Sequence[Any]) -> None:
        from hpo_tools.metrics.score import combine

        if self.staged:
            assert self.plan.stage_mode is not None
            final = combine(reports, self.plan.stage_mode, self.plan.optimize_mode)
            self.outcome.final = final.to_dict()
        else:
            final = reports[-1]
        failpoint("final_report")
        stages = [stage.name for stage in self.plan.stages]
        if self.reported.has_final(stages):
            _logger.info("resume: the final result was already reported to NNI for this trial; "
                         "not sent again")
        else:
            self.check_cancelled()  # a signal while the result was being put together
            self.reporter.report_final(final.as_nni())
            self.reported.add_final(stages)
        # A signal during the final report (NNI stopping the trial as it ended) still ends the
        # trial by that signal, as at any other moment: never exit 0 after one.
        self.check_cancelled()
        self.outcome.status = TrialStatus.SUCCEEDED
        self.outcome.exit_code = 0
        self.registry.trial_finished(TrialStatus.SUCCEEDED)
        self.write_result(self.outcome, self.context.paths)


def run_plan(
    plan: TrialPlan,
    reporter: Reporter,
    context: TrialContext,
    *,
    masker: SecretMasker | None = None,
    platform: Any = None,
    registry: RegistryAdapter | None = None,
    interval: float = 1.0,
    stderr: TextIO | None = None,
    handle_signals: bool = True,
    schema: Any = None,
) -> TrialOutcome:
    """Run one trial plan; see the module docstring.

    Args:
        plan: the parsed trial file.
        reporter: where results go (the parameters are already in ``context``).
        context: the trial's ids, parameters and directories.
        masker: hides secrets in relayed output and stderr (default: from ``plan.secrets``).
        platform: a platform object (default: built from ``plan.platform``).
        registry: the job-registry adapter (default: the experiment's :mod:`hpo_tools.jobs`).
        interval: seconds between metric polls.
        stderr: where the tail of a failed command's log goes (default ``sys.stderr``).
        handle_signals: turn SIGINT/SIGTERM into cancellation (main thread only).
        schema: what config edits are checked against and may create fields of
            (:func:`hpo_tools.trial.schema.config_schema`): a
            :class:`~hpo_tools.trial.schema.ConfigSchema`, a ``Descriptor``, or None for an
            installed EasyRec's, if any.

    Returns:
        The outcome; ``exit_code`` is 0 only when the trial succeeded and its final result
        was reported. An ``HpoError`` raised once a job was launched (a platform or storage
        error after cmd1 ran) fails the trial: ``status`` ``failed``, exit code 1, the masked
        error as ``message`` and as an ``error: ...`` line on ``stderr``, the jobs cancelled.

    Raises:
        HpoError: a config, storage or platform problem found before any job was launched.
    """
    masker = masker or build_masker(plan.secrets)
    if platform is None:
        platform = plan.platform.create()
    if registry is None:
        registry = RegistryAdapter.open(
            context.paths, context.exp_id, context.trial_id, platform=platform
        )
    run = _Run(
        plan,
        reporter,
        context,
        masker=masker,
        platform=platform,
        registry=registry,
        interval=interval,
        stderr=stderr or sys.stderr,
        schema=config_schema(schema),
    )
    days = plan.record.get("days")
    _logger.info(
        "trial %s of experiment %s: %s (%s platform%s), parameters %s",
        context.trial_id,
        context.exp_id,
        plan.source,
        plan.platform.name,
        f", days {days[0]}..{days[-1]}" if days else "",
        json.dumps(masked(dict(context.params), masker), sort_keys=True),
    )
    platform_interrupt = getattr(platform, "interrupt", None)

    def interrupt() -> None:  # in the signal handler: flags only
        if platform_interrupt is not None:
            platform_interrupt()  # a long metric read gives up
        reporter.interrupt()  # so does a report waiting on NNI

    guard = SignalGuard(interrupt) if handle_signals else None
    if guard is not None:
        run.launcher.check_cancelled = guard.check
    started = time.monotonic()
    try:
        if guard is not None:
            guard.__enter__()
        try:
            run.run()
        except (TrialCancelled, ReporterChannelLost, KeyboardInterrupt) as err:
            if guard is not None:
                guard.quiet()
                if guard.signum is not None and not isinstance(err, TrialCancelled):
                    # A signal came (a report it cut short, or a channel lost meanwhile): the
                    # trial dies by the signal, so NNI records USER_CANCELED, not FAILED.
                    err = TrialCancelled(guard.signum)
            run.cancelled(err)
        except BaseException as err:
            if guard is not None:
                guard.quiet()
            if not run.failed(err):
                raise
        finally:
            if run.outcome.status is not TrialStatus.RUNNING:
                run.write_results()
    finally:
        if guard is not None:
            guard.__exit__(None, None, None)
        _close(platform)
    _logger.info(
        "trial %s %s in %.1f s", context.trial_id, run.outcome.status, time.monotonic() - started
    )
    notify_trial_end(plan, context, run.outcome, masker)
    return run.outcome


def _close(platform: Any) -> None:
    close: Callable[[], None] | None = getattr(platform, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            _logger.exception("closing the platform failed")

