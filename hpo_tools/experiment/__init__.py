"""Headless NNI experiments: start, follow to the end, summarise, export the best trial.

``hpo-tools experiment run CONFIG.yml`` drives an NNI experiment through NNI's Python API
(imported lazily, only on the paths that start or stop an experiment) and handles two NNI 3.0
traps (``../shared/API-NOTES.md`` §0):

* ``Experiment.run()`` never returns when the tuner runs out of points (status
  ``TUNER_NO_MORE_TRIAL``), so the status is polled here and "no more trials and none running" is
  an end (:func:`experiment_finished`).
* NNI's database may pair a trial with another trial's parameters when trials run concurrently, so
  scores and parameters come from the trial's own record (``params.json`` / ``result.json``
  written by the trial runner in the trial directory), never from ``export_data()``.

Everything that reads results works on the experiment directory ``E`` alone (no NNI connection),
so ``hpo-tools experiment best ID`` works on finished and running experiments alike.

Example:
    >>> result = run_experiment("examples/search/local_easyrec/begin/config.yml", timeout=600)
    >>> result.export.config_path  # E/best/pipeline.config
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import signal
import socket
import sys
import tempfile
import threading
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable

from hpo_tools.errors import ConfigError, HpoError, StorageError
from hpo_tools.experiment.config import (
    _check_mode,
    _one_line,
    experiment_files,
    find_experiment_dir,
    load_experiment_config,
    optimize_mode_of,
    stored_optimize_mode,
    stored_trial_file,
    trial_file_from_command,
)
from hpo_tools.experiment.records import (
    ExperimentFiles,
    TrialRun,
    read_assessor_decisions,
    read_trial_run,
)
from hpo_tools.experiment.status import (
    _LIVE_TRIAL,
    Outcome,
    classify_trial,
    dispatcher_failure,
    experiment_finished,
)

__all__ = [
    "POLL_INTERVAL",
    "Outcome",
    "TrialRun",
    "TrialView",
    "Snapshot",
    "BestExport",
    "RunResult",
    "ExperimentFiles",
    "experiment_finished",
    "classify_trial",
    "read_trial_run",
    "read_assessor_decisions",
    "select_best",
    "export_best",
    "build_snapshot",
    "format_progress",
    "format_summary",
    "load_experiment_config",
    "trial_file_from_command",
    "optimize_mode_of",
    "find_experiment_dir",
    "stored_optimize_mode",
    "export_best_of_experiment",
    "run_experiment",
    "path_with_interpreter_first",
    "free_port",
    "dispatcher_failure",
    "classic_edited_config",
    "stored_trial_file",
    "experiment_files",
]

_logger = logging.getLogger(__name__)


POLL_INTERVAL = 2.0
"""Seconds between two status polls of a running experiment."""

HEARTBEAT_INTERVAL = 30.0
"""Seconds after which an unchanged progress line is printed again."""


def select_best(runs: Iterable[TrialRun], optimize_mode: str = "maximize") -> TrialRun | None:
    """The best trial by its own final score, among trials the runner recorded as succeeded.

    Ties go to the trial listed first. Trials without parameters or a finite final score are
    ignored.

    Args:
        runs: trials' own records.
        optimize_mode: ``maximize`` or ``minimize``.

    Returns:
        The best trial, or None when no trial succeeded with a score.
    """
    sign = 1.0 if _check_mode(optimize_mode) == "maximize" else -1.0
    best: TrialRun | None = None
    best_score = -math.inf
    for run in runs:
        score = run.score
        if run.status != "succeeded" or score is None or run.params is None:
            continue
        if sign * score > best_score:
            best, best_score = run, sign * score
    return best


@dataclass(frozen=True)
class BestExport:
    """What ``export_best`` wrote.

    Attributes:
        trial_id: the best trial.
        score: its final score.
        params: the parameters it ran with (from its ``params.json``).
        params_path: ``E/best/best_params.json`` (the parameters alone, as the tuner gave them).
        trial_path: ``E/best/best_trial.json`` (trial id, score, final report, sources).
        config_path: ``E/best/pipeline.config``; None when the trial wrote no edited config.
        extra_config_paths: further edited configs of the trial (``config_<n>_<name>``).
    """

    trial_id: str
    score: float
    params: dict[str, Any]
    params_path: Path
    trial_path: Path
    config_path: Path | None
    extra_config_paths: tuple[Path, ...] = ()


def _write_text_atomic(path: Path, text: str) -> None:
    """Write a local file whole or not at all (temp file in the same directory + replace)."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=str(path.parent))
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            handle.write(text)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise


def _write_json(path: Path, doc: Any) -> None:
    _write_text_atomic(path, json.dumps(doc, indent=2) + "\n")


def _read_config(source: str) -> str:
    """An edited config the runner wrote: a local file, or ``oss://`` through storage."""
    if "://" in source:
        from hpo_tools import storage

        return storage.read_text(source)
    try:
        return Path(source).read_text(encoding="utf-8")
    except OSError as err:
        raise StorageError(f"{source}: cannot read the trial's edited config: {err}") from err


def classic_edited_config(
    trial_file: Path, best: TrialRun, experiment_id: str, code_dir: Path | None = None
) -> tuple[str, str] | None:
    """Rebuild the config EasyRec trained for a classic (``config_begin.ini``) trial.

    A classic trial sends its edits to PAI as ``-Dedit_config_json``; EasyRec applies them on
    the cluster and no edited config exists locally. The trial file is rendered again with the
    trial's own identity and parameters, and its edits (the file's ``-Dedit_config_json``
    merged with the parameters, as the runner sent them) are applied to ``-Dconfig``.

    Args:
        trial_file: the experiment's trial file.
        best: the trial's own record.
        experiment_id: NNI's experiment id.
        code_dir: where relative paths resolve (``trialCodeDirectory``); default: the trial
            file's directory.

    Returns:
        ``(source config path, edited text)``, or None when the trial file is not classic.

    Raises:
        HpoError: the trial file does not render or the base config cannot be read or edited.
    """
    from hpo_tools import storage
    from hpo_tools.pbtxt import apply_edits
    from hpo_tools.trial.settings import TrialVariables, parse_trial_text

    text = trial_file.read_text(encoding="utf-8")
    variables = TrialVariables(experiment_id, best.trial_id, str(best.trial_dir),
                               dict(best.params or {}))
    settings = parse_trial_text(text, source=str(trial_file), variables=variables)
    if settings.format != "classic" or not settings.config_path:
        return None
    source = settings.config_path
    if not storage.is_remote(source) and not Path(source).is_absolute():
        source = str((code_dir or trial_file.parent) / source)
    edited = apply_edits(storage.read_text(source), dict(settings.edit_config_json or {}),
                         source=source)
    return source, edited


def export_best(
    files: ExperimentFiles,
    best: TrialRun,
    optimize_mode: str = "maximize",
    *,
    trial_file: Path | None = None,
    code_dir: Path | None = None,
) -> BestExport:
    """Write the best trial's parameters and its fully edited training config(s) to ``E/best/``.

    Everything comes from the trial's own record: ``params.json`` gives the parameters and the
    paths of the configs the runner edited for exactly those parameters; the first config is
    copied to ``pipeline.config``, any further ones to ``config_<n>_<name>``. A classic trial
    (no edited config of its own) gets ``pipeline.config`` rebuilt from its trial file (see
    :func:`classic_edited_config`) when ``trial_file`` is given and its base config readable.

    Args:
        files: the experiment directory.
        best: the trial to export (usually :func:`select_best`'s choice).
        optimize_mode: recorded in ``best_trial.json``.
        trial_file: the experiment's trial file, for classic trials.
        code_dir: ``trialCodeDirectory``, where the trial file's relative paths resolve.

    Returns:
        The paths written.

    Raises:
        StorageError: an edited config cannot be read (e.g. an ``oss://`` path without keys).
    """
    if best.params is None or best.score is None:
        raise HpoError(f"{best.trial_dir}: trial {best.trial_id} has no parameters or final score")
    best_dir = files.best_dir
    best_dir.mkdir(parents=True, exist_ok=True)
    config_path: Path | None = None
    extra: list[Path] = []
    for index, source in enumerate(best.configs):
        text = _read_config(source)
        if index == 0:
            target = best_dir / "pipeline.config"
            config_path = target
        else:
            name = source.rstrip("/").rsplit("/", 1)[-1] or "config"
            target = best_dir / f"config_{index + 1}_{name}"
            extra.append(target)
        _write_text_atomic(target, text)
    sources = list(best.configs)
    if config_path is None and trial_file is not None:
        try:
            rebuilt = classic_edited_config(trial_file, best, files.experiment_id, code_dir)
        except (HpoError, OSError) as err:
            _logger.warning("cannot rebuild the edited config of trial %s: %s",
                            best.trial_id, err)
            rebuilt = None
        if rebuilt is not None:
            config_path = best_dir / "pipeline.config"
            _write_text_atomic(config_path, rebuilt[1])
            sources.append(rebuilt[0])
    if config_path is None:
        _logger.warning(
            "trial %s wrote no edited config (no [params_config] in its trial file); "
            "only best_params.json is exported", best.trial_id)
    params_path = best_dir / "best_params.json"
    trial_path = best_dir / "best_trial.json"
    _write_json(params_path, best.params)
    _write_json(trial_path, {
        "experiment_id": best.experiment_id or files.experiment_id,
        "trial_id": best.trial_id,
        "parameter_id": best.parameter_id,
        "optimize_mode": optimize_mode,
        "score": best.score,
        "final": best.final,
        "trial_dir": str(best.trial_dir),
        "configs": sources,
        "exported": [str(p) for p in ([config_path] if config_path else []) + extra],
    })
    return BestExport(
        trial_id=best.trial_id, score=best.score, params=dict(best.params),
        params_path=params_path, trial_path=trial_path, config_path=config_path,
        extra_config_paths=tuple(extra),
    )


@dataclass(frozen=True)
class TrialView:
    """One trial as progress and summary show it.

    Attributes:
        trial_id: NNI's trial id.
        sequence: NNI's sequence id (order of submission); None when unknown.
        nni_status: NNI's status, or None when NNI is not asked.
        outcome: see :func:`classify_trial`.
        run: the trial's own record.
        decision: the assessor's first Bad decision for it, or None.
    """

    trial_id: str
    sequence: int | None
    nni_status: str | None
    outcome: Outcome
    run: TrialRun
    decision: dict[str, Any] | None = None


@dataclass(frozen=True)
class Snapshot:
    """The state of an experiment at one poll.

    Attributes:
        experiment_id: NNI's experiment id.
        status: NNI's experiment status (``"-"`` when NNI is not asked).
        elapsed: seconds since the experiment started.
        trials: every trial, in submission order.
        optimize_mode: ``maximize`` or ``minimize``.
        max_trials: ``maxTrialNumber``, or None.
    """

    experiment_id: str
    status: str
    elapsed: float
    trials: tuple[TrialView, ...]
    optimize_mode: str = "maximize"
    max_trials: int | None = None

    def count(self, outcome: Outcome) -> int:
        """How many trials have this outcome."""
        return sum(1 for t in self.trials if t.outcome is outcome)

    @property
    def best(self) -> TrialView | None:
        """The best trial so far by its own final score (see :func:`select_best`)."""
        runs = [t.run for t in self.trials if t.outcome is Outcome.SUCCEEDED]
        chosen = select_best(runs, self.optimize_mode)
        if chosen is None:
            return None
        return next(t for t in self.trials if t.run is chosen)


def build_snapshot(
    files: ExperimentFiles,
    *,
    status: str = "-",
    nni_trials: Sequence[tuple[str, str, int | None]] | None = None,
    elapsed: float = 0.0,
    optimize_mode: str = "maximize",
    max_trials: int | None = None,
) -> Snapshot:
    """Join NNI's trial list with the trials' own records and the assessor's decisions.

    Args:
        files: the experiment directory.
        status: NNI's experiment status.
        nni_trials: ``(trial_id, status, sequence)`` for every trial NNI lists; None to classify
            from the trials' own records alone (experiment not running).
        elapsed: seconds since the start.
        optimize_mode: ``maximize`` or ``minimize``.
        max_trials: ``maxTrialNumber``, shown in the progress line.

    Returns:
        The snapshot.
    """
    decisions = read_assessor_decisions(files.decisions_path)
    dirs = files.trial_dirs()
    views: list[TrialView] = []
    if nni_trials is None:
        listed: list[tuple[str, str | None, int | None]] = [
            (trial_id, None, None) for trial_id in dirs
        ]
    else:
        listed = sorted(nni_trials, key=lambda t: (t[2] is None, t[2] or 0))
    for trial_id, nni_status, sequence in listed:
        trial_dir = dirs.get(trial_id)
        run = read_trial_run(trial_dir) if trial_dir else TrialRun(trial_id, Path())
        decision = decisions.get(trial_id)
        outcome = classify_trial(nni_status, run.status, decision is not None)
        views.append(TrialView(trial_id, sequence, nni_status, outcome, run, decision))
    return Snapshot(
        experiment_id=files.experiment_id, status=status, elapsed=elapsed, trials=tuple(views),
        optimize_mode=_check_mode(optimize_mode), max_trials=max_trials,
    )


def _clock(seconds: float) -> str:
    seconds = max(0, int(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


def _fmt_score(score: float | None) -> str:
    return "-" if score is None else f"{score:.4f}"


def format_progress(snapshot: Snapshot, *, with_elapsed: bool = True) -> str:
    """One progress line: status, trial counts by outcome, best score so far, elapsed time.

    Args:
        snapshot: the experiment's state.
        with_elapsed: False leaves the time out (to tell whether anything changed).

    Returns:
        e.g. ``[1:42] RUNNING trials 5/8: 2 succeeded, 2 running, 1 stopped by assessor,
        0 cancelled, 0 failed | best 0.7312 (trial Ab3dE)``.
    """
    total = f"{len(snapshot.trials)}/{snapshot.max_trials}" if snapshot.max_trials else str(
        len(snapshot.trials))
    counts = ", ".join(f"{snapshot.count(o)} {o.value}" for o in Outcome)
    best = snapshot.best
    best_text = f"best {_fmt_score(best.run.score)} (trial {best.trial_id})" if best else "best -"
    line = f"{snapshot.status} trials {total}: {counts} | {best_text}"
    return f"[{_clock(snapshot.elapsed)}] {line}" if with_elapsed else line


def _params_text(params: Mapping[str, Any] | None) -> list[str]:
    if not params:
        return []
    return [f"  {key} = {json.dumps(value)}" for key, value in params.items()]


def format_summary(snapshot: Snapshot, export: BestExport | None = None) -> str:
    """The summary table printed at the end, plus the best trial's parameters and files.

    Args:
        snapshot: the final state.
        export: what was exported, when anything was.

    Returns:
        Multi-line text.
    """
    best = snapshot.best
    header = ("", "trial", "outcome", "nni status", "reports", "last report", "final score")
    rows: list[tuple[str, ...]] = [header]
    for view in snapshot.trials:
        rows.append((
            "*" if best is not None and view.trial_id == best.trial_id else "",
            view.trial_id,
            view.outcome.value,
            view.nni_status or "-",
            str(len(view.run.intermediate)),
            _fmt_score(view.run.last_intermediate_score),
            _fmt_score(view.run.score),
        ))
    widths = [max(len(row[i]) for row in rows) for i in range(len(header))]
    lines = [
        f"experiment {snapshot.experiment_id}: {snapshot.status} after {_clock(snapshot.elapsed)}"
        f", {len(snapshot.trials)} trials ({snapshot.optimize_mode})",
    ]
    for index, row in enumerate(rows):
        lines.append("  ".join(cell.ljust(w) for cell, w in zip(row, widths)).rstrip())
        if index == 0:
            lines.append("  ".join("-" * w for w in widths))
    counts = ", ".join(f"{snapshot.count(o)} {o.value}" for o in Outcome)
    lines.append(f"totals: {counts}")
    if best is None:
        lines.append("best: none (no trial succeeded with a final score)")
    else:
        lines.append(f"best: trial {best.trial_id}, score {_fmt_score(best.run.score)}, params:")
        lines.extend(_params_text(best.run.params))
    if export is not None:
        lines.append(f"best params: {export.params_path}")
        if export.config_path is not None:
            lines.append(f"best config: {export.config_path}")
        for extra in export.extra_config_paths:
            lines.append(f"best config: {extra}")
    return "\n".join(lines)


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
    export = export_best(files, best.run, mode, trial_file=trial_file, code_dir=code_dir)
    return snapshot, export


@dataclass
class RunResult:
    """How ``run_experiment`` ended.

    Attributes:
        experiment_id: NNI's experiment id.
        files: the experiment directory.
        status: NNI's last experiment status.
        snapshot: the final state (own records re-read after the stop).
        export: what ``E/best/`` holds, or None when no trial succeeded.
        timed_out: ``--timeout`` stopped the experiment.
        interrupted: Ctrl-C or SIGTERM stopped it.
        errors: NNI's errors when the status is ERROR.
    """

    experiment_id: str
    files: ExperimentFiles
    status: str
    snapshot: Snapshot
    export: BestExport | None = None
    timed_out: bool = False
    interrupted: bool = False
    errors: list[str] = field(default_factory=list)

    @property
    def succeeded(self) -> int:
        """Trials that succeeded."""
        return self.snapshot.count(Outcome.SUCCEEDED)


Checker = Callable[[Path, Path], None]
"""Runs ``hpo-tools check`` on (trial file, search space file); raises ConfigError on problems."""


def default_checker(trial_file: Path, search_space_file: Path) -> None:
    """``hpo-tools check`` of the trial file (``run_experiment`` calls it in the code directory)."""
    from hpo_tools.trial.check import check_or_raise

    check_or_raise(trial_file, search_space_file)


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


def _poll(exp: Any) -> tuple[str, list[tuple[str, str, int | None]], list[str]]:
    from nni.experiment import rest

    check = rest.get(exp.port, "/check-status", exp.url_prefix)
    trials = rest.get(exp.port, "/trial-jobs", exp.url_prefix)
    listed = [
        (str(t["trialJobId"]), str(t.get("status", "UNKNOWN")), t.get("sequenceId"))
        for t in trials
    ]
    errors = [str(e) for e in (check.get("errors") or [])]
    return str(check.get("status", "UNKNOWN")), listed, errors


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
    ``E/best/``.

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
        How it ended.

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
                checker(trial_file.resolve(), space_file)

    import nni.runtime.log
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
    timed_out = interrupted = False
    started = time.monotonic()
    last_line: str | None = None
    last_print = 0.0
    try:
        with _sigterm_raises():
            try:
                with _interpreter_first_on_path():
                    try:
                        exp.start(port, run_mode=RunMode.Detach)
                    except RuntimeError as err:
                        if "not idle" in str(err):
                            raise ConfigError(f"--port {port}: {_one_line(err)}") from err
                        raise
                started = time.monotonic()
                if on_start is not None:
                    on_start(exp.id, files.root, port)
                while True:
                    status, listed, errors = _poll(exp)
                    elapsed = time.monotonic() - started
                    if on_progress is not None:
                        snapshot = build_snapshot(
                            files, status=status, nni_trials=listed, elapsed=elapsed,
                            optimize_mode=mode, max_trials=canonical.max_trial_number)
                        line = format_progress(snapshot, with_elapsed=False)
                        if line != last_line or elapsed - last_print >= HEARTBEAT_INTERVAL:
                            on_progress(snapshot)
                            last_line, last_print = line, elapsed
                    if experiment_finished(status, (s for _, s, _ in listed)):
                        break
                    failure = dispatcher_failure(files.root / "log" / "dispatcher.log")
                    if failure is not None:
                        status = "ERROR"
                        errors.append(
                            f"NNI's tuner/assessor process exited ({failure}); NNI would wait "
                            f"forever: see {files.root / 'log' / 'dispatcher.log'}")
                        break
                    if timeout is not None and elapsed >= timeout:
                        timed_out = True
                        _logger.warning("timeout of %s s reached; stopping the experiment", timeout)
                        break
                    time.sleep(poll_interval)
            except (KeyboardInterrupt, _Terminated):
                interrupted = True
    finally:
        with _signals_ignored():
            _logger.info("stopping experiment %s", exp.id)
            try:
                exp.stop()
            except Exception:  # never mask the error that brought us here
                _logger.exception("could not stop experiment %s cleanly; check with "
                                  "`nnictl experiment list` and `nnictl stop %s`", exp.id, exp.id)
    elapsed = time.monotonic() - started
    # After the stop every trial process is gone; trials NNI still listed as live were stopped
    # with the experiment, so their own records (cancelled) now tell what became of them.
    final_trials = [
        (tid, None if s in _LIVE_TRIAL else s, seq) for tid, s, seq in listed
    ]
    snapshot = build_snapshot(
        files, status=status, nni_trials=final_trials, elapsed=elapsed, optimize_mode=mode,
        max_trials=canonical.max_trial_number)
    snapshot = _stopped_live_as_cancelled(snapshot)
    best = snapshot.best
    export = None
    if best is not None:
        export = export_best(files, best.run, mode, trial_file=trial_file,
                             code_dir=Path(canonical.trial_code_directory))
    return RunResult(
        experiment_id=exp.id, files=files, status=status, snapshot=snapshot, export=export,
        timed_out=timed_out, interrupted=interrupted, errors=errors)


def _stopped_live_as_cancelled(snapshot: Snapshot) -> Snapshot:
    """Trials still 'running' after the experiment stopped were cancelled by the stop."""
    views = tuple(
        TrialView(v.trial_id, v.sequence, v.nni_status, Outcome.CANCELLED, v.run, v.decision)
        if v.outcome is Outcome.RUNNING else v
        for v in snapshot.trials
    )
    return Snapshot(snapshot.experiment_id, snapshot.status, snapshot.elapsed, views,
                    snapshot.optimize_mode, snapshot.max_trials)
