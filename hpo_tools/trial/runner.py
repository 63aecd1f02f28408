"""One trial, start to finish: parameters in, jobs run, metrics reported, nothing left running.

:func:`prepare_trial` gets the parameters from the reporter, finds the experiment and trial
directories (docs/architecture.md, "Directories of an experiment") and parses the trial file with
them. :func:`run_trial` then

1. writes the edited training configs (``[params_config]``) and ``params.json``;
2. submits the commands in order on the platform, recording each job in the job registry as its
   state changes (``resume=1`` skips commands the registry says already succeeded);
3. follows the metrics while the jobs run and reports each new scored step at once;
4. drains the metrics and reports the final result when every command succeeded;
5. writes ``result.json`` whatever happened.

A failed command fails the trial (non-zero exit, the last 50 lines of its log on stderr, no final
report). So does an ``HpoError`` once a job was launched (a platform or storage error after cmd1
ran): ``error: ...`` on stderr, jobs cancelled, exit 1. Before any launch it is raised (the entry
points exit 2: bad trial file, nothing launched). SIGINT/SIGTERM (how NNI stops a trial) and a
lost NNI channel cancel every live job, mark the registry and end the trial non-zero within 3
seconds.

The commands are data (:class:`~hpo_tools.trial.settings.Command`): finetune (issue 7) feeds its
per-day commands through the same function.
"""

from __future__ import annotations

import json
import logging
import os
import re
import signal
import sys
import threading
import time
from collections.abc import Mapping, MutableMapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, TextIO

from hpo_tools.errors import HpoError, MetricReadError
from hpo_tools.secrets import SecretMasker, credential_env_names
from hpo_tools.trial.reporter import Reporter, ReporterChannelLost
from hpo_tools.trial.settings import (
    Command,
    TrialSettings,
    TrialVariables,
    load_trial_file,
    params_to_edits,
)

__all__ = [
    "TrialPaths",
    "TrialContext",
    "TrialOutcome",
    "TrialCancelled",
    "resolve_paths",
    "prepare_trial",
    "run_trial",
    "write_json_atomic",
    "run_trial_file",
    "TrialLogging",
    "build_masker",
    "build_follower",
    "export_oss_credentials",
    "EXIT_FAILED",
    "TAIL_LINES",
]

_logger = logging.getLogger(__name__)

EXIT_FAILED = 1
# A log record in trial.log: "[2024-01-01 10:00:00,123] INFO (name...) message".
_LOG_RECORD_LINE = re.compile(r"^\[\d{4}-\d\d-\d\d [\d:.,]+\] [A-Z]+ \(")
TAIL_LINES = 50
# Seconds between two looks at the cancel flag while a job runs (cancellation must take < 3 s).
_TICK = 0.1
STANDALONE_ID = "standalone"


class TrialCancelled(BaseException):
    """The runner got SIGINT or SIGTERM; ``signum`` says which.

    A ``BaseException`` (like ``KeyboardInterrupt``), so that no ``except Exception`` on the way
    (a metric source retrying a read, a registry write logged and skipped) swallows it.
    """

    def __init__(self, signum: int) -> None:
        super().__init__(f"trial cancelled by {signal.Signals(signum).name}")
        self.signum = signum


@dataclass(frozen=True)
class TrialPaths:
    """The experiment directory ``E`` and this trial's directory."""

    experiment_dir: Path
    trial_dir: Path

    @property
    def log_path(self) -> Path:
        """``<trial dir>/trial.log``: runner log and relayed job output, masked."""
        return self.trial_dir / "trial.log"

    @property
    def params_path(self) -> Path:
        return self.trial_dir / "params.json"

    @property
    def result_path(self) -> Path:
        return self.trial_dir / "result.json"


def resolve_paths(
    exp_id: str,
    trial_id: str,
    *,
    exp_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> TrialPaths:
    """Find the experiment and trial directories (docs/architecture.md).

    ``E`` is ``<exp_dir>/<exp_id>`` when ``exp_dir`` is given; else NNI's experiment directory
    (``NNI_OUTPUT_DIR`` = ``E/environments/<env>/trials/<trial_id>``, or ``NNI_LOG_DIRECTORY`` =
    ``E/log``); else ``./exp/<exp_id>``. The trial directory is ``NNI_OUTPUT_DIR`` when set, else
    ``E/trials/<trial_id>``.
    """
    env = os.environ if environ is None else environ
    output_dir = env.get("NNI_OUTPUT_DIR")
    if exp_dir:
        experiment = Path(exp_dir) / exp_id
    elif output_dir and Path(output_dir).parent.name == "trials":
        experiment = Path(output_dir).parents[3]
    elif env.get("NNI_LOG_DIRECTORY"):
        experiment = Path(env["NNI_LOG_DIRECTORY"]).parent
    else:
        experiment = Path("exp") / exp_id
    trial = Path(output_dir) if output_dir else experiment / "trials" / trial_id
    return TrialPaths(experiment.absolute(), trial.absolute())


@dataclass(frozen=True)
class TrialContext:
    """Who this trial is and where it writes."""

    exp_id: str
    trial_id: str
    params: Mapping[str, Any]
    paths: TrialPaths
    parameter_id: Any = None


@dataclass
class TrialOutcome:
    """How a trial ended: ``status`` is ``succeeded``, ``failed`` or ``cancelled``."""

    status: str
    exit_code: int
    intermediate: list[dict[str, Any]] = field(default_factory=list)
    final: dict[str, Any] | None = None
    message: str = ""
    configs: list[str] = field(default_factory=list)
    trial_dir: str = ""

    def to_dict(self) -> dict[str, Any]:
        """The ``result.json`` content."""
        result = {"intermediate": self.intermediate, "final": self.final, "status": self.status}
        if self.message:
            result["message"] = self.message
        return result


def write_json_atomic(path: Path, data: Any) -> None:
    """Write JSON to ``path`` through a temp file in the same directory and ``os.replace``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    with open(tmp, "w", encoding="utf-8") as handle:
        json.dump(data, handle, indent=2, sort_keys=False)
        handle.write("\n")
    os.replace(tmp, path)


def prepare_trial(
    config_path: str | os.PathLike[str],
    reporter: Reporter,
    *,
    exp_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
) -> tuple[TrialSettings, TrialContext]:
    """Get the parameters, resolve the directories and parse the trial file.

    Raises:
        ConfigError: anything wrong in the trial file (nothing has been launched).
        ReporterChannelLost: NNI's channel is gone.
    """
    env = os.environ if environ is None else environ
    params = reporter.get_parameters()
    exp_id, trial_id = reporter.experiment_id, reporter.trial_id
    paths = resolve_paths(exp_id, trial_id, exp_dir=exp_dir, environ=env)
    variables = TrialVariables(exp_id, trial_id, str(paths.trial_dir), params)
    settings = load_trial_file(config_path, variables=variables, environ=env)
    context = TrialContext(exp_id, trial_id, params, paths, reporter.parameter_id)
    return settings, context


def build_follower(
    settings: TrialSettings, log_path: Path, interval: float = 1.0, *, platform: Any = None
) -> Any:
    """The metrics follower of a trial (nothing is read yet).

    Args:
        settings: the trial's settings (``[metric_config]``).
        log_path: the trial log, the default location of a ``stdout`` source.
        interval: seconds between polls.
        platform: the platform running the trial, for sources that read through it (``table``
            queries run on the MaxCompute platform); None when there is none.

    Raises:
        ConfigError: a bad metric setting, naming the trial file and ``[metric_config]``.
    """
    from hpo_tools.errors import ConfigError
    from hpo_tools.metrics import Follower, MetricSpec, build_source

    metric = settings.metric
    where = f"{settings.source}: [metric_config]"
    try:
        spec = MetricSpec.from_config(
            dict(metric.metric_dict),
            final_mode=metric.final_mode,
            optimize_mode=metric.optimize_mode,
            source_list_final_mode=metric.source_list_final_mode,
            key="metric_dict",
        )
        # stdout without a source: the trial log the jobs write to.
        locations = [s or str(log_path) for s in metric.sources] or [str(log_path)]
        sources = [
            build_source(metric.metric_type, loc, spec=spec, platform=platform)
            for loc in locations
        ]
    except ConfigError as err:
        raise ConfigError(f"{where} {err}") from err
    return Follower(sources, spec, interval=interval)


def export_oss_credentials(settings: TrialSettings, environ: MutableMapping[str, str]) -> list[str]:
    """Make ``[oss_config]``'s keys the process's OSS credentials, where none are set.

    ``hpo_tools.storage`` (edited configs, ``oss://`` metric sources) and Local jobs read OSS
    credentials from ``OSS_ACCESS_KEY_ID`` / ``OSS_ACCESS_KEY_SECRET`` / ``OSS_ENDPOINT``. When
    the trial file gives all three and the environment has none of them, they are set in
    ``environ`` (never written anywhere; the masker hides the values).

    Returns:
        The names set.
    """
    from hpo_tools.storage import ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ENDPOINT

    oss = settings.oss
    names = (ENV_ACCESS_KEY_ID, ENV_ACCESS_KEY_SECRET, ENV_ENDPOINT)
    if oss is None or any(environ.get(name) for name in names):
        return []
    values = (oss.access_key_id, oss.access_key_secret, oss.endpoint)
    if not all(values):
        return []
    for name, value in zip(names, values):
        environ[name] = str(value)
    _logger.info("OSS credentials from [oss_config] exported as %s", ", ".join(names))
    return list(names)


def build_masker(settings: TrialSettings, environ: Mapping[str, str] | None = None) -> SecretMasker:
    """A masker for the trial file's credential values and credential-looking env vars."""
    env = os.environ if environ is None else environ
    masker = SecretMasker(settings.secrets)
    masker.add_env(credential_env_names(env), env)
    return masker


# ---------------------------------------------------------------------------------------------
# Signals


class _SignalGuard:
    """Records the first SIGINT/SIGTERM; the run loop turns it into :class:`TrialCancelled`.

    The handler only sets an attribute: raising from a signal handler can land between a lock's
    acquire and its ``with`` block (leaving it held) or inside someone's ``except Exception``.
    The run loop wakes every :data:`_TICK` seconds and calls :meth:`check`.

    Args:
        on_signal: called once, in the handler, at the first signal: a platform's
            ``interrupt()``, which makes a long metric read (a ``table`` query) give up so the
            run loop gets to cancel. It must be signal-safe: set a flag, take no lock, not raise.
    """

    def __init__(self, on_signal: Callable[[], None] | None = None) -> None:
        self.signum: int | None = None
        self.extra_signals = 0
        self._delivered = False
        self._previous: dict[int, Any] = {}
        self._on_signal = on_signal

    def _handle(self, signum: int, frame: Any) -> None:
        if self.signum is None:
            self.signum = signum
            if self._on_signal is not None:
                self._on_signal()
        else:
            self.extra_signals += 1

    def check(self) -> None:
        """Raise :class:`TrialCancelled` once, when a signal came."""
        if self.signum is not None and not self._delivered:
            self._delivered = True
            raise TrialCancelled(self.signum)

    def __enter__(self) -> _SignalGuard:
        if threading.current_thread() is threading.main_thread():
            for signum in (signal.SIGINT, signal.SIGTERM):
                self._previous[signum] = signal.signal(signum, self._handle)
        return self

    def quiet(self) -> None:
        """From now on signals are only counted (used while cleaning up)."""
        self._delivered = True

    def __exit__(self, *exc: Any) -> None:
        for signum, handler in self._previous.items():
            signal.signal(signum, handler)


# ---------------------------------------------------------------------------------------------
# The run


class _Run:
    """The mutable state of one :func:`run_trial` call."""

    def __init__(
        self,
        settings: TrialSettings,
        reporter: Reporter,
        context: TrialContext,
        *,
        masker: SecretMasker,
        platform: Any,
        registry: Any,
        interval: float,
        stderr: TextIO,
    ) -> None:
        self.settings = settings
        self.reporter = reporter
        self.context = context
        self.masker = masker
        self.platform = platform
        self.registry = registry
        self.interval = interval
        self.stderr = stderr
        self.outcome = TrialOutcome(
            status="running", exit_code=EXIT_FAILED, trial_dir=str(context.paths.trial_dir)
        )
        self.live_jobs: list[Any] = []
        # True once a submit returned a job: from then on an error fails the trial (exit 1)
        # instead of being a bad trial file (exit 2, nothing launched).
        self.launched = False
        self.follower: Any = None
        # Re-raises a cancellation whose exception was swallowed on the way (set by run_trial).
        self.check_cancelled: Callable[[], None] = lambda: None

    # -- files -------------------------------------------------------------------------------

    def write_result(self) -> None:
        # Messages can quote a job's output or an error: they go through the masker too.
        self.outcome.message = self.masker.mask(self.outcome.message)
        write_json_atomic(self.context.paths.result_path, self.outcome.to_dict())

    def write_configs(self) -> list[str]:
        if self.settings.format == "classic":
            return self.write_classic_config()
        if not self.settings.config_edits:
            return []
        from hpo_tools import storage
        from hpo_tools.pbtxt import apply_edits

        edits = params_to_edits(self.context.params)
        written = []
        for edit in self.settings.config_edits:
            text = storage.read_text(edit.src)
            storage.write_text(edit.dst, apply_edits(text, edits, source=edit.src))
            _logger.info("wrote edited config %s (from %s)", edit.dst, edit.src)
            written.append(edit.dst)
        return written

    def write_classic_config(self) -> list[str]:
        """Keep ``-Dconfig`` with ``-Dedit_config_json`` applied in ``<trial dir>/configs/``.

        PAI applies the edits itself; this copy is the trial's record (and checks the edit paths
        before anything is launched). An unreadable ``-Dconfig`` only costs the copy.
        """
        from hpo_tools import storage
        from hpo_tools.errors import StorageError
        from hpo_tools.pbtxt import apply_edits

        source = self.settings.config_path
        if not source:
            return []
        try:
            text = storage.read_text(source)
        except StorageError as err:
            _logger.warning("no local copy of the edited config: %s", err)
            return []
        edited = apply_edits(text, dict(self.settings.edit_config_json or {}), source=source)
        name = source.rstrip("/").rsplit("/", 1)[-1] or "pipeline.config"
        target = self.context.paths.trial_dir / "configs" / name
        storage.write_text(str(target), edited)
        _logger.info("wrote edited config %s (from %s)", target, source)
        return [str(target)]

    def write_params(self, configs: Sequence[str]) -> None:
        write_json_atomic(
            self.context.paths.params_path,
            {
                "trial_id": self.context.trial_id,
                "experiment_id": self.context.exp_id,
                "parameter_id": self.context.parameter_id,
                # A parameter value can be a secret too (a tuned key, a typo'd --params).
                "params": _masked(dict(self.context.params), self.masker),
                "configs": list(configs),
            },
        )

    # -- metrics -----------------------------------------------------------------------------

    def build_follower(self) -> Any:
        return build_follower(
            self.settings, self.context.paths.log_path, self.interval, platform=self.platform
        )

    def report_new_steps(self, *, last: bool = False) -> None:
        """Report the steps scored since the last call; ``last`` also takes what a poll keeps
        waiting for (a final log line without a newline), once the jobs are over."""
        if self.follower is None:
            return
        for report in self.follower.drain() if last else self.follower.poll():
            self.outcome.intermediate.append(report.to_dict())
            # DEBUG, not INFO: trial.log feeds the stdout metric source, and a metric regex
            # must not match the runner's own echo of the values.
            _logger.debug("step %d: score %.6g %s", report.step, report.score, report.values)
            self.reporter.report_intermediate(report.as_nni())
            self.write_result()

    # -- jobs --------------------------------------------------------------------------------

    def run_command(self, position: int, command: Command) -> bool:
        """Run command ``position`` (1-based) to its end, reporting metrics meanwhile.

        Returns:
            True when it succeeded.
        """
        from hpo_tools.platforms import JobState

        log_path = self.context.paths.log_path
        log_offset = log_path.stat().st_size if log_path.exists() else 0
        _logger.info("running %s on %s", command.name, self.settings.platform)
        job = self.platform.submit(
            command.text,
            log_path=log_path,
            on_update=lambda j: self.registry.job_changed(position, j),
            output_filter=self.masker.mask,
        )
        self.launched = True
        self.live_jobs.append(job)
        self.registry.job_changed(position, job, JobState.RUNNING)
        next_poll = time.monotonic() + self.interval
        while True:
            state = job.wait(timeout=min(_TICK, self.interval))
            self.check_cancelled()
            if state.is_finished or time.monotonic() >= next_poll:
                self.report_new_steps()
                self.check_cancelled()
                next_poll = time.monotonic() + self.interval
            if state.is_finished:
                break
        self.live_jobs.remove(job)
        self.registry.job_changed(position, job, state)
        if state is JobState.SUCCEEDED:
            _logger.info("%s succeeded (%s)", command.name, job.job_id)
            return True
        self.outcome.message = f"{command.name} {state.value}: {job.message or 'no message'}"
        _logger.error("%s", self.outcome.message)
        self.print_tail(log_path, log_offset, command.name)
        return False

    def print_tail(self, log_path: Path, offset: int, name: str) -> None:
        try:
            with open(log_path, "rb") as handle:
                handle.seek(offset)
                data = handle.read()
        except OSError:
            return
        # trial.log also holds log records (ours and NNI's); the tail shows the job's own output.
        lines = [
            line
            for line in data.decode("utf-8", errors="replace").splitlines()
            if not _LOG_RECORD_LINE.match(line)
        ][-TAIL_LINES:]
        header = f"--- last {len(lines)} lines of the log of {name} ({log_path}) ---"
        print(header, file=self.stderr)
        for line in lines:
            print(self.masker.mask(line), file=self.stderr)
        print("---", file=self.stderr, flush=True)

    def cancel_live(self) -> None:
        for job in list(self.live_jobs):
            try:
                job.cancel()
            except Exception:  # one job failing to stop must not keep the others running
                _logger.exception("could not cancel job %s", getattr(job, "job_id", job))
        self.registry.cancel_live()

    # -- the whole trial ---------------------------------------------------------------------

    def run(self, commands: Sequence[Command]) -> None:
        self.context.paths.trial_dir.mkdir(parents=True, exist_ok=True)
        self.follower = self.build_follower()  # metric settings checked before any write
        configs = self.write_configs()
        self.outcome.configs = configs
        self.write_params(configs)
        done = self.registry.succeeded_commands() if self.settings.resume else set()
        for position, command in enumerate(commands, start=1):
            self.check_cancelled()
            if position in done:
                _logger.info("resume: %s already succeeded for this trial; skipped", command.name)
                continue
            if not self.run_command(position, command):
                self.outcome.status = "failed"
                self.outcome.exit_code = EXIT_FAILED
                self.registry.trial_finished("failed")
                return
        self.check_cancelled()
        try:
            self.report_new_steps(last=True)
            final = self.follower.close()
        except MetricReadError as err:
            self.check_cancelled()  # reads cut short by a cancellation are not a failure
            self.outcome.status = "failed"
            self.outcome.message = str(err)
            _logger.error("no final result: %s", err)
            self.registry.trial_finished("failed")
            return
        # A signal during the last reads interrupts them (platform.interrupt()): what they
        # returned is incomplete and must not become the final result.
        self.check_cancelled()
        self.outcome.final = final.to_dict()
        _logger.debug("final: score %.6g %s", final.score, final.values)
        self.reporter.report_final(final.as_nni())
        self.outcome.status = "succeeded"
        self.outcome.exit_code = 0
        self.registry.trial_finished("succeeded")


def _masked(value: Any, masker: SecretMasker) -> Any:
    """``value`` (JSON data) with every secret in its strings replaced by ``***``."""
    if isinstance(value, str):
        return masker.mask(value)
    if isinstance(value, Mapping):
        return {masker.mask(str(k)): _masked(v, masker) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_masked(v, masker) for v in value]
    return value


def run_trial(
    settings: TrialSettings,
    reporter: Reporter,
    context: TrialContext,
    *,
    masker: SecretMasker | None = None,
    platform: Any = None,
    registry: Any = None,
    commands: Sequence[Command] | None = None,
    interval: float = 1.0,
    stderr: TextIO | None = None,
    handle_signals: bool = True,
) -> TrialOutcome:
    """Run one trial; see the module docstring.

    Args:
        settings: the parsed trial file.
        reporter: where parameters came from and results go.
        context: the trial's ids, parameters and directories (:func:`prepare_trial`).
        masker: hides secrets in relayed output and stderr (default: from ``settings``).
        platform: a platform object (default: ``create_platform(settings.platform, ...)``).
        registry: a job-registry adapter (default: the experiment's :mod:`hpo_tools.jobs`).
        commands: the commands to run (default ``settings.commands``; finetune passes its days).
        interval: seconds between metric polls.
        stderr: where the tail of a failed command's log goes (default ``sys.stderr``).
        handle_signals: turn SIGINT/SIGTERM into cancellation (main thread only).

    Returns:
        The outcome; ``exit_code`` is 0 only when the trial succeeded and its final result
        was reported. An ``HpoError`` raised once a job was launched (a platform or storage
        error after cmd1 ran) fails the trial: ``status`` ``failed``, exit code 1, the masked
        error as ``message`` and as an ``error: ...`` line on ``stderr``, the jobs cancelled.

    Raises:
        HpoError: a config, storage or platform problem found before any job was launched.
    """
    masker = masker or build_masker(settings)
    if platform is None:
        from hpo_tools.platforms import create_platform

        platform = create_platform(settings.platform, **settings.platform_options())
    if registry is None:
        registry = RegistryAdapter.open(context, platform=platform)
    run = _Run(
        settings,
        reporter,
        context,
        masker=masker,
        platform=platform,
        registry=registry,
        interval=interval,
        stderr=stderr or sys.stderr,
    )
    guard = _SignalGuard(getattr(platform, "interrupt", None)) if handle_signals else None
    if guard is not None:
        run.check_cancelled = guard.check
    started = time.monotonic()
    try:
        if guard is not None:
            guard.__enter__()
        try:
            run.run(settings.commands if commands is None else commands)
        except (TrialCancelled, ReporterChannelLost, KeyboardInterrupt) as err:
            if guard is not None:
                guard.quiet()
            default = signal.SIGINT if isinstance(err, KeyboardInterrupt) else 0
            signum = int(getattr(err, "signum", default))
            run.outcome.status = "cancelled"
            run.outcome.exit_code = 128 + signum if signum else EXIT_FAILED
            run.outcome.message = str(err) or "interrupted"
            _logger.warning("%s: cancelling every live job", run.outcome.message)
            run.cancel_live()
            run.registry.trial_finished("cancelled")
        except BaseException as err:
            if guard is not None:
                guard.quiet()
            run.cancel_live()  # a bug or config error must not leave jobs running
            run.outcome.status = "failed"
            # An SDK error can quote a credential (a service echoing the key it refused); the
            # error goes on to stderr ("error: ...", a traceback) and result.json.
            _mask_error(err, masker)
            run.registry.trial_finished("failed")
            if isinstance(err, HpoError) and run.launched:
                # Not a bad trial file: a job ran, so this is a failed trial (exit 1), like a
                # failed command. The error is its message; the jobs are cancelled above.
                run.outcome.exit_code = EXIT_FAILED
                run.outcome.message = str(err)
                _logger.error("trial failed after a job was launched: %s", err)
                print(f"error: {err}", file=run.stderr, flush=True)
            else:
                run.outcome.message = run.outcome.message or str(err)
                raise
        finally:
            if run.outcome.status != "running":
                run.write_result()
    finally:
        if guard is not None:
            guard.__exit__(None, None, None)
        _close(platform)
    _logger.info(
        "trial %s %s in %.1f s", context.trial_id, run.outcome.status, time.monotonic() - started
    )
    return run.outcome


def _mask_error(err: BaseException, masker: SecretMasker) -> None:
    """Mask the string arguments of ``err`` and of the errors it was raised from, in place."""
    seen: set[int] = set()
    current: BaseException | None = err
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        current.args = tuple(
            masker.mask(arg) if isinstance(arg, str) else arg for arg in current.args
        )
        current = current.__cause__ or current.__context__


def _close(platform: Any) -> None:
    close: Callable[[], None] | None = getattr(platform, "close", None)
    if close is not None:
        try:
            close()
        except Exception:
            _logger.exception("closing the platform failed")


class TrialLogging:
    """Log to ``<trial dir>/trial.log`` through the masker while a trial runs.

    Under NNI, importing ``nni`` already put a root handler on ``trial.log``; then no second one
    is added. Every root handler gets the masker as a filter, so nothing any handler writes
    shows a secret. Everything is undone on exit.
    """

    def __init__(self, paths: TrialPaths, masker: SecretMasker, level: int = logging.INFO):
        self._paths = paths
        self._masker = masker
        self._level = level
        self._added: logging.Handler | None = None
        self._filtered: list[logging.Handler] = []
        self._pinned: list[logging.Handler] = []
        self._old_level: int | None = None

    def __enter__(self) -> TrialLogging:
        root = logging.getLogger()
        target = os.path.realpath(self._paths.log_path)

        def writes_target(handler: logging.Handler) -> bool:
            name = getattr(handler, "baseFilename", None) or getattr(
                getattr(handler, "stream", None), "name", None
            )
            return isinstance(name, str) and os.path.realpath(name) == target

        writes_log = any(writes_target(h) for h in root.handlers)
        if not writes_log:
            self._paths.trial_dir.mkdir(parents=True, exist_ok=True)
            handler = logging.FileHandler(target, encoding="utf-8")
            handler.setFormatter(
                logging.Formatter("[%(asctime)s] %(levelname)s (%(name)s) %(message)s")
            )
            handler.setLevel(self._level)
            root.addHandler(handler)
            self._added = handler
        for handler in root.handlers:
            if self._masker not in handler.filters:
                handler.addFilter(self._masker)
                self._filtered.append(handler)
        package = logging.getLogger("hpo_tools")
        if package.getEffectiveLevel() > self._level:
            # Our INFO records must reach trial.log, but not handlers that were quieter
            # before (the CLI's stderr at WARNING): pin those to the root's level.
            for handler in root.handlers:
                if handler is not self._added and handler.level == logging.NOTSET:
                    handler.setLevel(root.getEffectiveLevel())
                    self._pinned.append(handler)
            self._old_level = package.level
            package.setLevel(self._level)
        return self

    def __exit__(self, *exc: Any) -> None:
        root = logging.getLogger()
        for handler in self._filtered:
            handler.removeFilter(self._masker)
        if self._added is not None:
            root.removeHandler(self._added)
            self._added.close()
        if self._old_level is not None:
            logging.getLogger("hpo_tools").setLevel(self._old_level)
        for handler in self._pinned:
            handler.setLevel(logging.NOTSET)


def _is_finetune_file(config_path: str | os.PathLike[str]) -> bool:
    from hpo_tools.finetune.plan import is_finetune_text

    try:
        return is_finetune_text(Path(config_path).read_text(encoding="utf-8"))
    except OSError:
        return False  # load_trial_file reports the unreadable file


def run_trial_file(
    config_path: str | os.PathLike[str],
    reporter: Reporter,
    *,
    exp_dir: str | os.PathLike[str] | None = None,
    environ: Mapping[str, str] | None = None,
    interval: float = 1.0,
    stderr: TextIO | None = None,
) -> TrialOutcome:
    """Everything an entry point does: parse the trial file, log to trial.log, run the trial.

    Raises:
        HpoError: a problem in the trial file, found before anything was launched.
    """
    env = os.environ if environ is None else environ
    if _is_finetune_file(config_path):  # days of its own: hpo_tools.finetune runs them
        from hpo_tools.finetune import run_finetune_file

        return run_finetune_file(
            config_path, reporter, exp_dir=exp_dir, environ=env, interval=interval, stderr=stderr
        )
    try:
        settings, context = prepare_trial(config_path, reporter, exp_dir=exp_dir, environ=env)
        masker = build_masker(settings, env)
        if environ is None:
            export_oss_credentials(settings, os.environ)
        with TrialLogging(context.paths, masker):
            _logger.info(
                "trial %s of experiment %s: %s (%s platform), parameters %s",
                context.trial_id,
                context.exp_id,
                settings.source,
                settings.platform,
                json.dumps(dict(context.params), sort_keys=True),
            )
            return run_trial(
                settings, reporter, context, masker=masker, interval=interval, stderr=stderr
            )
    except KeyboardInterrupt:
        # SIGINT before run_trial took the signals over (while NNI hands out the parameters,
        # which takes seconds): nothing was launched, but the trial's record says it stopped.
        paths = resolve_paths(reporter.experiment_id, reporter.trial_id, exp_dir=exp_dir,
                              environ=env)
        if not paths.result_path.exists():
            outcome = TrialOutcome("cancelled", 128 + signal.SIGINT, message="interrupted "
                                   "before any job was launched")
            write_json_atomic(paths.result_path, outcome.to_dict())
        raise


# ---------------------------------------------------------------------------------------------
# Registry


class RegistryAdapter:
    """What the runner records in the job registry (:mod:`hpo_tools.jobs`), in the runner's terms.

    Commands are recorded by their 1-based position (``cmd1`` -> 1). Recording is best effort (a
    failed registry write is logged, never fatal); :meth:`succeeded_commands`, which ``resume=1``
    relies on, raises.
    """

    def __init__(self, registry: Any, record: Any) -> None:
        self._registry = registry
        self._record = record
        self._lock = threading.RLock()

    @classmethod
    def open(cls, context: TrialContext, *, platform: Any) -> RegistryAdapter:
        """Open (or start) the record of ``context``'s trial in its experiment's registry."""
        from hpo_tools.jobs import JobRegistry

        registry = JobRegistry(context.paths.experiment_dir)
        record = registry.load(context.trial_id)
        if record is None:
            record = registry.new(
                context.trial_id,
                experiment_id=context.exp_id,
                trial_dir=context.paths.trial_dir,
                platform=platform,
            )
            registry.save(record)
        return cls(registry, record)

    @property
    def registry(self) -> Any:
        """The :class:`~hpo_tools.jobs.JobRegistry` the record lives in."""
        return self._registry

    @property
    def record(self) -> Any:
        """The trial's :class:`~hpo_tools.jobs.TrialRecord` (finetune keeps its days there)."""
        return self._record

    def succeeded_commands(self) -> set[int]:
        """1-based positions of the commands whose latest job succeeded."""
        return set(self._registry.succeeded_commands(self._record.trial_id))

    def job_changed(self, position: int, job: Any, state: Any = None) -> None:
        """Record ``job`` (command ``position``) in ``state`` (default: its state now)."""
        with self._lock:
            try:
                self._registry.mark_job(self._record, position, job, state)
            except Exception:
                _logger.exception("could not save job %s in the registry", job.job_id)

    def cancel_live(self) -> None:
        """Belt and braces after the runner's own cancel: whatever the record still has live."""
        try:
            self._registry.cancel_live(self._record.trial_id, timeout=1.0)
        except Exception:
            _logger.exception("the registry could not cancel live jobs")

    def trial_finished(self, status: str) -> None:
        """Mark the trial succeeded, failed or cancelled."""
        from hpo_tools.platforms import JobState

        with self._lock:
            try:
                self._registry.mark_trial(self._record, JobState.parse(status))
            except Exception:
                _logger.exception("could not save the trial state in the registry")
