"""The two operations behind ``hpo-tools experiment``: run and best.

``run_experiment`` drives an NNI experiment through NNI's Python API (imported lazily): check,
start, poll to the end, always stop (also on Ctrl-C, SIGTERM and errors), export the best trial,
copy its ``[output_config]`` outputs (:mod:`hpo_tools.experiment.outputs`) and draw
``E/report.png`` (:mod:`hpo_tools.experiment.report`).
``export_best_of_experiment`` re-exports the best trial of an experiment from its directory alone.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpo_tools.errors import ConfigError, HpoError
from hpo_tools.experiment.best import BestExport, export_best, trial_file_oss_credentials
from hpo_tools.experiment.config import (
    _one_line,
    load_experiment_config,
    optimize_mode_of,
    stored_optimize_mode,
    stored_trial_file,
    trial_file_from_command,
)
from hpo_tools.experiment.outputs import OutputCopy, copy_outputs, trial_outputs
from hpo_tools.experiment.progress import Snapshot, TrialView, build_snapshot, format_progress
from hpo_tools.experiment.records import ExperimentFiles
from hpo_tools.experiment.report import REPORT_NAME, try_write_report
from hpo_tools.experiment.status import (
    _LIVE_TRIAL,
    Outcome,
    dispatcher_failure,
    experiment_error,
    experiment_finished,
    settled_status,
)

_logger = logging.getLogger(__name__)


POLL_INTERVAL = 2.0
"""Seconds between two status polls of a running experiment."""

HEARTBEAT_INTERVAL = 30.0
"""Seconds after which an unchanged progress line is printed again."""


@dataclass
class RunResult:
    """How ``run_experiment`` ended.

    Attributes:
        experiment_id: NNI's experiment id.
        files: the experiment directory.
        status: NNI's last experiment status.
        snapshot: the final state (own records re-read after the stop); its status is NNI's
            last one, or "stopped by timeout" / "interrupted" when we stopped the experiment.
        export: what ``E/best/`` holds, or None when no trial succeeded.
        timed_out: ``--timeout`` stopped the experiment.
        interrupted: Ctrl-C or SIGTERM stopped it.
        errors: NNI's errors when the status is ERROR.
        failure: why the experiment ended in ERROR, one line: the tuner's or assessor's own
            error read from NNI's dispatcher log (e.g. ``the tuner (Anneal) failed to start:
            ModuleNotFoundError: No module named 'hyperopt' (see E/log/dispatcher.log)``), else
            NNI's error; None unless the status is ERROR.
        lost_manager: set when a REST call to NNI's manager failed (the manager died or stopped
            answering): one line saying so; the experiment was stopped all the same.
        export_error: why the best trial could not be exported to ``E/best/`` (e.g. a
            StorageError reading an ``oss://`` base config); None when it was, or there was none.
        outputs: the best trial's ``[output_config]`` copies (event files to ``summary_path``,
            model to ``model_path``); a failed one is logged as a warning, never raised.
        report: ``E/report.png`` (:mod:`hpo_tools.experiment.report`); None when it was not
            drawn (no matplotlib, or drawing failed: one warning line, never raised).
    """

    experiment_id: str
    files: ExperimentFiles
    status: str
    snapshot: Snapshot
    export: BestExport | None = None
    timed_out: bool = False
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)
    export_error: str | None = None
    lost_manager: str | None = None
    failure: str | None = None
    outputs: list[OutputCopy] = field(default_factory=list)
    report: Path | None = None

    @property
    def succeeded(self) -> int:
        """Trials that succeeded."""
        return self.snapshot.count(Outcome.SUCCEEDED)


Checker = Callable[[Path, Path, str], None]
"""Runs ``hpo-tools check`` on (trial file, search space file, trialCommand); raises
ConfigError on problems."""


def default_checker(trial_file: Path, search_space_file: Path, trial_command: str = "") -> None:
    """``hpo-tools check`` of the trial file (``run_experiment`` calls it in the code directory),
    with the schema options of ``trial_command`` (``--proto-path``/``--proto-module``/
    ``--no-easyrec-schema``), as the trials will run."""
    from hpo_tools.check import check_or_raise
    from hpo_tools.trial.schema import schema_from_command

    check_or_raise(trial_file, search_space_file, schema=schema_from_command(trial_command))


@contextlib.contextmanager
def _working_directory(path: Path) -> Iterator[None]:
    """Relative paths in a trial file resolve from the trial's directory (NNI's code dir)."""
    previous = os.getcwd()
    os.chdir(path)
    try:
        yield
    finally:
        os.chdir(previous)


def free_port() -> int:
    """A TCP port on localhost nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Terminated(Exception):
    """SIGTERM arrived while the experiment ran."""


@contextlib.contextmanager
def _sigterm_raises() -> Iterator[None]:
    """Turn SIGTERM into an exception so the experiment is stopped in ``finally``."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: Any) -> None:
        raise _Terminated()

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


@contextlib.contextmanager
def _signals_ignored() -> Iterator[None]:
    """Ignore SIGINT/SIGTERM while the experiment is stopping, so a second Ctrl-C does not leave
    NNI's manager running."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.signal(s, signal.SIG_IGN) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        yield
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)


def _search_space_file(config: Any, tmp_dir: Path) -> Path:
    if getattr(config, "search_space_file", None):
        return Path(config.search_space_file)
    path = tmp_dir / "search_space.json"
    path.write_text(json.dumps(config.search_space or {}), encoding="utf-8")
    return path


def path_with_interpreter_first(path: str, executable: str) -> str:
    """``path`` (a PATH value) with the directory of ``executable`` moved to the front.

    NNI's manager and every trial inherit the environment of the process that starts the
    experiment, so with this PATH ``python3 -m hpo_tools.run`` in ``trialCommand`` runs the
    interpreter that has hpo-tools (the venv's), even when the venv is not activated.
    """
    bin_dir = str(Path(executable).parent)
    parts = [p for p in path.split(os.pathsep) if p and p != bin_dir]
    return os.pathsep.join([bin_dir] + parts)


@contextlib.contextmanager
def _interpreter_first_on_path() -> Iterator[None]:
    """Set PATH for NNI's manager (which passes its environment on to trials) while it starts."""
    previous = os.environ.get("PATH")
    os.environ["PATH"] = path_with_interpreter_first(previous or "", sys.executable)
    try:
        yield
    finally:
        if previous is None:
            os.environ.pop("PATH", None)
        else:
            os.environ["PATH"] = previous


def _decisions_dir_of(config: Any) -> Path | None:
    """Where PAIAssessor writes its decisions: its ``experiment_dir`` class argument, if set
    (else NNI's experiment directory)."""
    args = getattr(getattr(config, "assessor", None), "class_args", None) or {}
    exp_dir = args.get("experiment_dir")
    return Path(exp_dir).expanduser() if exp_dir else None


def _request_failure(err: Exception) -> str:
    """A REST failure in a few words (requests' own message spans a connection pool repr)."""
    response = getattr(err, "response", None)
    if response is not None:
        return f"HTTP {response.status_code}"
    return type(err).__name__


@contextlib.contextmanager
def _nni_stop_quiet(quiet: bool) -> Iterator[None]:
    """When NNI's manager is known to be gone, ``Experiment.stop()`` logs the failed
    ``DELETE /experiment`` with a traceback before killing the process: expected, so not shown."""
    if not quiet:
        yield
        return
    nni_logger = logging.getLogger("nni.experiment")
    previous = nni_logger.level
    nni_logger.setLevel(logging.CRITICAL)
    try:
        yield
    finally:
        nni_logger.setLevel(previous)


class _StartRetryFilter(logging.Filter):
    """Drops NNI's ``Timeout, retry...`` warning: while its manager starts, NNI asks it up to
    three times whether it is up and warns before each retry, which on a busy machine is routine
    and would be a stray line on stderr. It is logged at debug level instead."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.getMessage().startswith("Timeout, retry"):
            _logger.debug("NNI's manager is slow to answer while starting (NNI retries)")
            return False
        return True


@contextlib.contextmanager
def _nni_start_retries_quiet() -> Iterator[None]:
    """Keep NNI's start-up retry warning off the terminal while ``Experiment.start()`` runs."""
    nni_logger = logging.getLogger("nni.experiment")
    retry_filter = _StartRetryFilter()
    nni_logger.addFilter(retry_filter)
    try:
        yield
    finally:
        nni_logger.removeFilter(retry_filter)


def _listed(trials: list[dict[str, Any]]) -> list[tuple[str, str, int | None]]:
    """``(trial id, status, sequence id)`` of each trial of NNI's ``/trial-jobs``."""
    return [
        (str(t["trialJobId"]), str(t.get("status", "UNKNOWN")), t.get("sequenceId"))
        for t in trials
    ]


def _poll(exp: Any) -> tuple[str, list[tuple[str, str, int | None]], list[str], int]:
    """NNI's status, its trial list, its errors, and how many trials it created but does not
    list yet (the tuner's last points wait up to 5 s in the manager's queue)."""
    from nni.experiment import rest

    check = rest.get(exp.port, "/check-status", exp.url_prefix)
    trials = rest.get(exp.port, "/trial-jobs", exp.url_prefix)
    errors = [str(e) for e in (check.get("errors") or [])]
    status = str(check.get("status", "UNKNOWN"))
    unsubmitted = 0
    if status == "TUNER_NO_MORE_TRIAL":  # (NO_MORE_TRIAL: maxTrialNumber submitted, all listed)
        profile = rest.get(exp.port, "/experiment", exp.url_prefix) or {}
        created = profile.get("nextSequenceId")
        if isinstance(created, int):
            unsubmitted = created - len(trials)
    return status, _listed(trials), errors, unsubmitted


FINAL_POLL_TIMEOUT = 5.0
"""Seconds allowed for the last read of NNI's trial list, just before the stop."""


def _final_listed(
    exp: Any, listed: list[tuple[str, str, int | None]]
) -> list[tuple[str, str, int | None]]:
    """``listed`` updated by one more read of NNI's trial list, just before the stop.

    The last poll can be up to ``poll_interval`` old when Ctrl-C, SIGTERM or the timeout ends
    the run, and a trial started since then would be missing from it. A failed read (bounded
    by ``FINAL_POLL_TIMEOUT``) keeps ``listed``: the stop must happen whatever NNI answers.
    """
    from hpo_tools.nni_rest import NniRest

    try:
        rest = NniRest(exp.port, prefix_url=exp.url_prefix, timeout=FINAL_POLL_TIMEOUT)
        latest = _listed(rest.list_trial_jobs())
    except Exception as err:  # never keep the experiment from being stopped
        _logger.debug("could not read NNI's trial list before the stop: %s", err)
        return listed
    merged = {t[0]: t for t in listed}
    merged.update((t[0], t) for t in latest)
    return list(merged.values())


def run_experiment(
    config_path: str | os.PathLike[str],
    *,
    port: int | None = None,
    timeout: float | None = None,
    working_dir: str | None = None,
    poll_interval: float = POLL_INTERVAL,
    checker: Checker | None = default_checker,
    on_start: Callable[[str, Path, int], None] | None = None,
    on_progress: Callable[[Snapshot], None] | None = None,
) -> RunResult:
    """Run an NNI experiment headless, to its end, and export its best trial.

    Checks the trial file and search space first, starts the experiment through NNI's Python API,
    polls every ``poll_interval`` seconds until :func:`experiment_finished` (or ``timeout``),
    always stops it (also on Ctrl-C, SIGTERM and errors), then exports the best trial to
    ``E/best/`` and, when its trial file has ``[output_config]``, copies its event files and
    model there (:mod:`hpo_tools.experiment.outputs`), and draws ``E/report.png``
    (:mod:`hpo_tools.experiment.report`).

    Args:
        config_path: the experiment YAML.
        port: NNI's port; default: a free one.
        timeout: seconds after which the experiment is stopped; None for no limit.
        working_dir: overrides ``experimentWorkingDirectory``.
        poll_interval: seconds between polls.
        checker: runs ``hpo-tools check`` (None skips it).
        on_start: called with (experiment id, experiment directory, port) once NNI is up.
        on_progress: called with each snapshot whose progress line changed, and every 30 s.

    Returns:
        How it ended; a failed export of the best trial is ``export_error``, not an exception.

    Raises:
        ConfigError: the experiment config, trial file or search space is wrong (before start).
    """
    config_path = Path(config_path)
    config = load_experiment_config(config_path, working_dir)
    canonical = config.canonical_copy()
    mode = optimize_mode_of(canonical)
    trial_file = trial_file_from_command(
        canonical.trial_command, canonical.trial_code_directory, str(config_path))
    if checker is not None:
        if not trial_file.is_file():
            raise ConfigError(f"{config_path}: trialCommand: trial file {trial_file} not found")
        with tempfile.TemporaryDirectory(prefix="hpo-tools-check-") as tmp:
            space_file = _search_space_file(canonical, Path(tmp)).resolve()
            # Relative paths in the trial file resolve from where the trials run.
            with _working_directory(Path(canonical.trial_code_directory)):
                checker(trial_file.resolve(), space_file, canonical.trial_command)

    import nni.runtime.log
    import requests
    from nni.experiment import Experiment, RunMode

    nni.runtime.log.silence_stdout()
    if not _logger.isEnabledFor(logging.INFO):
        # NNI sets its logger to INFO and its records reach the CLI's stderr handler.
        logging.getLogger("nni").setLevel(logging.WARNING)
    port = port or free_port()
    exp = Experiment(config)
    files = ExperimentFiles(
        Path(canonical.experiment_working_directory).expanduser() / exp.id,
        _decisions_dir_of(canonical))
    status = "INITIALIZED"
    listed: list[tuple[str, str, int | None]] = []
    errors: list[str] = []
    timed_out = interrupted = manager_up = False
    lost_manager: str | None = None
    started = time.monotonic()
    last_line: str | None = None
    last_print = 0.0
    try:
        with _sigterm_raises():
            try:
                with _interpreter_first_on_path(), _nni_start_retries_quiet():
                    try:
                        exp.start(port, run_mode=RunMode.Detach)
                    except RuntimeError as err:
                        if "not idle" in str(err):
                            raise ConfigError(f"--port {port}: {_one_line(err)}") from err
                        raise
                manager_up = True
                started = time.monotonic()
                if on_start is not None:
                    on_start(exp.id, files.root, port)
                while True:
                    try:
                        status, listed, errors, unsubmitted = _poll(exp)
                    except requests.RequestException as err:
                        lost_manager = (
                            f"NNI's manager stopped answering on port {port} "
                            f"({_request_failure(err)}); the experiment was stopped; see "
                            f"{files.root / 'log' / 'nnimanager.log'}")
                        break
                    elapsed = time.monotonic() - started
                    if on_progress is not None:
                        snapshot = build_snapshot(
                            files, status=status, nni_trials=listed, elapsed=elapsed,
                            optimize_mode=mode, max_trials=canonical.max_trial_number)
                        line = format_progress(snapshot, with_elapsed=False)
                        if line != last_line or elapsed - last_print >= HEARTBEAT_INTERVAL:
                            on_progress(snapshot)
                            last_line, last_print = line, elapsed
                    if experiment_finished(status, (s for _, s, _ in listed), unsubmitted):
                        status = settled_status(status)
                        break
                    failure = dispatcher_failure(files.root / "log" / "dispatcher.log")
                    if failure is not None:
                        status = "ERROR"
                        errors.append(
                            f"NNI's tuner/assessor process exited ({failure}): see "
                            f"{files.root / 'log' / 'dispatcher.log'}")
                        break
                    if timeout is not None and elapsed >= timeout:
                        timed_out = True
                        _logger.warning("timeout of %s s reached; stopping the experiment", timeout)
                        break
                    time.sleep(poll_interval)
            except (KeyboardInterrupt, _Terminated):
                interrupted = True
    finally:
        with _signals_ignored(), _nni_stop_quiet(lost_manager is not None):
            if manager_up and lost_manager is None:
                listed = _final_listed(exp, listed)
            _logger.info("stopping experiment %s", exp.id)
            try:
                exp.stop()
            except Exception:  # never mask the error that brought us here
                _logger.exception("could not stop experiment %s cleanly; check with "
                                  "`nnictl experiment list` and `nnictl stop %s`", exp.id, exp.id)
            if manager_up and lost_manager is None:
                # Trials NNI had seen end before the stop, whose jobs the registry still has
                # live: their runner died without cancelling (trials still running were
                # stopped with the experiment and cancel their own jobs).
                _sweep_orphans(files, {tid for tid, s, _ in listed if s not in _LIVE_TRIAL})
    elapsed = time.monotonic() - started
    # After the stop every trial process is gone; trials NNI still listed as live were stopped
    # with the experiment, so their own records (cancelled) now tell what became of them.
    # build_snapshot adds the trials NNI had not listed yet from the experiment directory.
    final_trials: list[tuple[str, str | None, int | None]] | None = [
        (tid, None if s in _LIVE_TRIAL else s, seq) for tid, s, seq in listed
    ]
    if lost_manager is not None:
        final_trials = None  # NNI's last list is stale (or was never read): own records only
    snapshot = build_snapshot(
        files, status=_end_label(status, timed_out, interrupted, lost_manager is not None),
        nni_trials=final_trials,
        elapsed=elapsed, optimize_mode=mode, max_trials=canonical.max_trial_number)
    snapshot = _stopped_live_as_cancelled(snapshot)
    best = snapshot.best
    export = export_error = None
    outputs: list[OutputCopy] = []
    if best is not None:
        with trial_file_oss_credentials(trial_file, best.run, exp.id):
            # The experiment has run: a failed export must not lose its summary, and
            # `hpo-tools experiment best ID` can export again once the cause is fixed.
            try:
                export = export_best(files, best.run, mode, trial_file=trial_file,
                                     code_dir=Path(canonical.trial_code_directory))
            except HpoError as err:
                export_error = _one_line(err)
            outputs = _copy_outputs_at_end(best.run, exp.id, files)
    report = try_write_report(snapshot, files.root / REPORT_NAME)
    failure = None
    if status == "ERROR":  # read after the stop: the dispatcher's log is complete by now
        failure = experiment_error(files.root / "log", errors, tuner=_algorithm_name(
            canonical.tuner), assessor=_algorithm_name(getattr(canonical, "assessor", None)))
    return RunResult(
        experiment_id=exp.id, files=files, status=status, snapshot=snapshot, export=export,
        timed_out=timed_out, interrupted=interrupted, errors=errors, export_error=export_error,
        lost_manager=lost_manager, failure=failure, outputs=outputs, report=report)


#: Seconds the end-of-experiment sweep of the job registry may take.
SWEEP_TIMEOUT = 30.0


def _sweep_orphans(files: ExperimentFiles, ended: set[str]) -> None:
    """Stop the jobs the registry still has live for trials that NNI saw end: their runner
    died without cancelling them (SIGKILL, a crash). Records elsewhere (``--exp_dir``) are
    reached through their links. Bounded by :data:`SWEEP_TIMEOUT`; never raises."""
    deadline = time.monotonic() + SWEEP_TIMEOUT
    try:
        from hpo_tools.jobs import JobRegistry

        registry = JobRegistry(files.root)
        for trial_id in sorted(ended):
            record = registry.load(trial_id)
            if record is None or not record.live_jobs():
                continue
            left = deadline - time.monotonic()
            if left <= 0:
                _logger.error("sweeping the job registry of %s: out of time at trial %s; "
                              "run `hpo-tools kill`", files.root, trial_id)
                return
            stopped = registry.cancel_live(trial_id, timeout=min(left, 10.0))
            if stopped:
                _logger.warning("trial %s left job(s) running (its runner died): stopped %s",
                                trial_id, ", ".join(stopped))
    except Exception as err:  # noqa: BLE001 - a sweep must not mask how the run ended
        _logger.error("sweeping the job registry of %s failed: %s", files.root, err)


def _copy_outputs_at_end(run: Any, experiment_id: str, files: ExperimentFiles) -> list[OutputCopy]:
    """The best trial's ``[output_config]`` copies; a failure is a warning naming the command
    that copies again (the experiment has run: its summary and export must not be lost)."""
    settings = trial_outputs(run)
    if settings is None:
        return []
    copies = copy_outputs(settings, run.trial_id)
    for copy in copies:
        if not copy.ok:
            _logger.warning("%s", copy.describe())
    if not all(c.ok for c in copies):
        _logger.warning("copy the outputs again with: hpo-tools experiment best %s "
                        "--experiment-dir %s --copy-outputs", experiment_id, files.root)
    return copies


def _algorithm_name(algorithm: Any) -> str | None:
    """A configured tuner's or assessor's ``name`` (built-in) or ``className``; None for none."""
    if algorithm is None:
        return None
    return getattr(algorithm, "name", None) or getattr(algorithm, "class_name", None) or "?"


def _end_label(status: str, timed_out: bool, interrupted: bool, lost_manager: bool) -> str:
    """What the summary says ended the run: NNI's last status, unless we stopped it (then NNI's
    last polled status is RUNNING, which it no longer is)."""
    if lost_manager:
        return "NNI's manager lost"
    if interrupted:
        return "interrupted"
    if timed_out:
        return "stopped by timeout"
    return status


def _stopped_live_as_cancelled(snapshot: Snapshot) -> Snapshot:
    """Trials still 'running' after the experiment stopped were cancelled by the stop."""
    views = tuple(
        TrialView(v.trial_id, v.sequence, v.nni_status, Outcome.CANCELLED, v.run, v.decision)
        if v.outcome is Outcome.RUNNING else v
        for v in snapshot.trials
    )
    return Snapshot(snapshot.experiment_id, snapshot.status, snapshot.elapsed, views,
                    snapshot.optimize_mode, snapshot.max_trials)


def export_best_of_experiment(
    files: ExperimentFiles, optimize_mode: str | None = None
) -> tuple[Snapshot, BestExport | None]:
    """Re-export the best trial of a finished or running experiment from its directory alone.

    Args:
        files: the experiment directory.
        optimize_mode: overrides the mode stored in NNI's database.

    Returns:
        The snapshot built from the trials' own records, and what was exported (None when no
        trial has succeeded yet).
    """
    mode = optimize_mode or stored_optimize_mode(files) or "maximize"
    snapshot = build_snapshot(files, optimize_mode=mode)
    best = snapshot.best
    if best is None:
        return snapshot, None
    trial_file, code_dir = stored_trial_file(files) or (None, None)
    with trial_file_oss_credentials(trial_file, best.run, files.experiment_id):
        export = export_best(files, best.run, mode, trial_file=trial_file, code_dir=code_dir)
    return snapshot, export
