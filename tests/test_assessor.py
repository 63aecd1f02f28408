"""PAIAssessor: decision rules on synthetic learning curves, the decisions file, and trial_end."""

from __future__ import annotations

import json
import logging
import math
import time
from pathlib import Path

import pytest
from nni.assessor import AssessResult

import hpo_tools.assessor as assessor_module
from hpo_tools.assessor import (
    DECISIONS_FILE,
    MIN_PEERS,
    OptimizeMode,
    PAIAssessor,
    best_so_far,
    experiment_dir_from_env,
    median,
    proportion_threshold,
    reports_without_improvement,
    running_means,
    scalar_value,
)
from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState, create_platform

MODES = ["maximize", "minimize"]


def oriented(quality: list[float], mode: str) -> list[float]:
    """A curve of ``quality`` (higher is better) as the metric reports it in ``mode``.

    Maximize reports the quality itself (an AUC); minimize reports ``1 - quality`` (a loss).
    """
    return list(quality) if mode == "maximize" else [1.0 - q for q in quality]


def feed(assessor: PAIAssessor, trial_id: str, curve: list[object]) -> list[AssessResult]:
    """Report ``curve`` one value at a time, as NNI does; return every answer."""
    return [assessor.assess_trial(trial_id, curve[: i + 1]) for i in range(len(curve))]


def make(mode: str = "maximize", **kwargs: object) -> PAIAssessor:
    kwargs.setdefault("start_step", 3)
    kwargs.setdefault("experiment_dir", None)
    return PAIAssessor(optimize_mode=mode, **kwargs)  # type: ignore[arg-type]


# Fed worst first, so that no peer is itself stopped (each is above the median of those before).
PEERS = [
    [0.58, 0.68, 0.73, 0.76, 0.78],
    [0.60, 0.70, 0.75, 0.78, 0.80],
    [0.62, 0.72, 0.77, 0.80, 0.82],
]


def with_peers(mode: str, **kwargs: object) -> PAIAssessor:
    assessor = make(mode, **kwargs)
    for i, peer in enumerate(PEERS):
        feed(assessor, f"peer{i}", oriented(peer, mode))
    return assessor


# -- pure helpers ---------------------------------------------------------------------------------


def test_scalar_value_takes_numbers_and_dict_default() -> None:
    assert scalar_value(3) == 3.0
    assert scalar_value({"default": 0.7, "auc": 0.6}) == 0.7  # "default" wins, like NNI


@pytest.mark.parametrize("value", ["0.7", {"auc": 0.7}, {"default": "x"}, None, True])
def test_scalar_value_is_nan_for_anything_else(value: object) -> None:
    # NaN instead of raising: an exception in assess_trial would kill NNI's dispatcher.
    assert math.isnan(scalar_value(value))


def test_best_so_far_skips_nan_and_is_minus_inf_without_numbers() -> None:
    assert best_so_far([0.1, math.nan, 0.3, 0.2]) == 0.3
    assert best_so_far([math.nan, math.nan]) == -math.inf  # only NaN: worse than anything


def test_running_means_skip_nan() -> None:
    means = running_means([math.nan, 1.0, math.nan, 3.0])
    assert math.isnan(means[0])  # no number yet
    assert means[1:] == [1.0, 1.0, 2.0]


def test_median_of_odd_and_even_counts() -> None:
    assert median([3.0, 1.0, 2.0]) == 2.0
    assert median([4.0, 1.0, 3.0, 2.0]) == 2.5  # mean of the two middle values
    with pytest.raises(ValueError):
        median([])


def test_proportion_threshold_is_a_fraction_of_the_way_from_median_to_best() -> None:
    assert proportion_threshold(0.6, 0.8, 0.5) == pytest.approx(0.7)
    assert proportion_threshold(0.6, 0.8, 0.0) == 0.6  # 0: the median itself


def test_reports_without_improvement_counts_ties_and_nan_as_stale() -> None:
    assert reports_without_improvement([0.1, 0.2, 0.3]) == 0
    assert reports_without_improvement([0.1, 0.3, 0.3, 0.2]) == 2  # a tie is no improvement
    assert reports_without_improvement([0.1, 0.3, math.nan]) == 1  # NaN never improves


# -- classArgs ------------------------------------------------------------------------------------


def test_optimize_mode_is_case_insensitive() -> None:
    assert make("Minimize").direction is OptimizeMode.MINIMIZE


def test_assessor_and_metric_score_share_one_direction_type() -> None:
    from hpo_tools import metrics
    from hpo_tools.metrics import score

    # One source of truth: the direction the runner scores with is the one the assessor judges by.
    assert OptimizeMode is score.OptimizeMode is metrics.OptimizeMode
    assert make("maximize").direction is score.MetricSpec.from_config({"auc": 1}).optimize_mode


@pytest.mark.parametrize("text", [" maximize", "max", None, 1])
def test_optimize_mode_class_arg_is_not_stripped_or_guessed(text: object) -> None:
    # classArgs are parsed strictly (unlike a trial file's optimize_mode): the message says the fix.
    with pytest.raises(ValueError, match=r"expected 'maximize' or 'minimize' \(set assessor"):
        PAIAssessor(optimize_mode=text)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs, names",
    [
        ({"optimize_mode": "max"}, ["optimize_mode='max'", "'maximize' or 'minimize'"]),
        ({"start_step": 0}, ["start_step=0", ">= 1"]),
        ({"patience": -1}, ["patience=-1", ">= 0"]),
        ({"proportion": 1.5}, ["proportion=1.5", "0 to 1"]),
        ({"moving_avg": "yes"}, ["moving_avg='yes'", "true or false"]),
        ({"experiment_dir": 5}, ["experiment_dir=5", "a directory path"]),
        ({"platform": 3}, ["platform=3", "a platform name"]),
    ],
)
def test_bad_class_args_raise_value_error_naming_the_fix(
    kwargs: dict[str, object], names: list[str]
) -> None:
    with pytest.raises(ValueError) as info:
        PAIAssessor(**kwargs)  # type: ignore[arg-type]
    for name in names:
        assert name in str(info.value)  # names the argument, its value and what is expected


def test_the_class_args_of_hpo_tools_0_1_run_unchanged() -> None:
    # An exp.yml written for hpo_tools 0.1.x names its platform; that is accepted (the job
    # registry knows each trial's platform) and the other arguments keep their meaning.
    assessor = PAIAssessor(platform="MAXCOMPUTE", optimize_mode="maximize", start_step=1,
                           moving_avg=True, proportion=0.5)
    assert (assessor.start_step, assessor.moving_avg, assessor.proportion) == (1, True, 0.5)


def test_experiment_dir_defaults_to_parent_of_nni_log_directory(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # NNI starts its dispatcher with NNI_LOG_DIRECTORY = <exp>/log.
    monkeypatch.setenv("NNI_LOG_DIRECTORY", str(tmp_path / "exp1" / "log"))
    assert PAIAssessor().experiment_dir == tmp_path / "exp1"
    assert experiment_dir_from_env({}) is None


# -- median rule ----------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_weak_trial_is_stopped_at_start_step_and_not_before(mode: str) -> None:
    assessor = with_peers(mode)
    answers = feed(assessor, "weak", oriented([0.50, 0.52, 0.53, 0.54], mode))
    # start_step=3: two reports are never judged; the third is below the peers' median.
    assert answers[:2] == [AssessResult.Good, AssessResult.Good]
    assert answers[2] is AssessResult.Bad


@pytest.mark.parametrize("mode", MODES)
def test_strong_trial_goes_on(mode: str) -> None:
    assessor = with_peers(mode)
    answers = feed(assessor, "strong", oriented([0.65, 0.75, 0.80, 0.85, 0.86], mode))
    assert set(answers) == {AssessResult.Good}  # above the median at every step


@pytest.mark.parametrize("mode", MODES)
def test_best_equal_to_median_is_a_tie_and_goes_on(mode: str) -> None:
    assessor = with_peers(mode)
    # Peers at step 3 are 0.73, 0.75, 0.77: median 0.75; the trial's best is exactly 0.75.
    answers = feed(assessor, "tie", oriented([0.70, 0.75, 0.70], mode))
    assert answers[-1] is AssessResult.Good  # only strictly worse than the median stops


@pytest.mark.parametrize("mode", MODES)
def test_best_so_far_not_the_last_value_is_compared(mode: str) -> None:
    assessor = with_peers(mode)
    # Dips to 0.60 at step 3, but its best (0.80 at step 2) beats the median (0.75).
    answers = feed(assessor, "dip", oriented([0.70, 0.80, 0.60], mode))
    assert answers[-1] is AssessResult.Good


@pytest.mark.parametrize("mode", MODES)
def test_too_few_peers_never_stop_a_trial(mode: str) -> None:
    assessor = make(mode)
    feed(assessor, "peer0", oriented(PEERS[0], mode))
    answers = feed(assessor, "weak", oriented([0.1, 0.1, 0.1, 0.1], mode))
    # One peer is fewer than MIN_PEERS: no median to trust, so the trial goes on.
    assert MIN_PEERS > 1
    assert set(answers) == {AssessResult.Good}


def test_peers_shorter_than_the_step_do_not_count() -> None:
    assessor = make()
    feed(assessor, "a", [0.9, 0.9])  # two reports only
    feed(assessor, "b", [0.9, 0.9])
    answers = feed(assessor, "weak", [0.1, 0.1, 0.1])
    assert answers[-1] is AssessResult.Good  # nobody else reached step 3


@pytest.mark.parametrize("mode", MODES)
def test_moving_avg_compares_with_peers_running_means(mode: str) -> None:
    curve = oriented([0.50, 0.55, 0.60, 0.72], mode)
    raw = with_peers(mode, start_step=4)
    avg = with_peers(mode, start_step=4, moving_avg=True)
    # At step 4 the peers' raw median is 0.78 but their running-mean median is 0.7075.
    assert feed(raw, "t", curve)[-1] is AssessResult.Bad
    assert feed(avg, "t", curve)[-1] is AssessResult.Good


def test_stopped_trial_stays_bad_and_is_recorded_once(tmp_path: Path) -> None:
    assessor = with_peers("maximize", experiment_dir=tmp_path)
    answers = feed(assessor, "weak", [0.5, 0.5, 0.5, 0.9, 0.9])
    # NNI keeps asking until its kill lands; the answer must not flip back to Good.
    assert answers[2:] == [AssessResult.Bad] * 3
    lines = (tmp_path / DECISIONS_FILE).read_text().splitlines()
    assert len(lines) == 1


# -- proportion and patience ----------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_proportion_stops_a_trial_above_median_but_far_from_the_best(mode: str) -> None:
    # Peers at step 3: 0.73, 0.75, 0.77 -> median 0.75, best 0.77; 0.5 of the way is 0.76.
    curve = oriented([0.70, 0.72, 0.755], mode)
    assert feed(with_peers(mode), "t", curve)[-1] is AssessResult.Good  # off by default
    assessor = with_peers(mode, proportion=0.5)
    assert feed(assessor, "t", curve)[-1] is AssessResult.Bad


@pytest.mark.parametrize("mode", MODES)
def test_patience_stops_a_trial_that_stopped_improving(mode: str) -> None:
    assessor = make(mode, start_step=1, patience=3)
    answers = feed(assessor, "flat", oriented([0.5, 0.6, 0.6, 0.59, 0.6, 0.6], mode))
    # Best 0.6 at report 2; reports 3, 4, 5 do not beat it -> stopped at report 5.
    assert answers[:4] == [AssessResult.Good] * 4
    assert answers[4] is AssessResult.Bad


@pytest.mark.parametrize("mode", MODES)
def test_patience_keeps_an_improving_trial(mode: str) -> None:
    assessor = make(mode, start_step=1, patience=2)
    answers = feed(assessor, "up", oriented([0.5, 0.5, 0.6, 0.6, 0.7], mode))
    assert set(answers) == {AssessResult.Good}  # never two stale reports in a row


# -- metric values --------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_dict_metrics_are_judged_by_their_default_value(mode: str) -> None:
    curve = oriented([0.50, 0.52, 0.53], mode)
    as_dicts = [{"default": v, "auc": 0.99} for v in curve]
    scalar = feed(with_peers(mode), "t", curve)
    dicts = feed(with_peers(mode), "t", as_dicts)  # type: ignore[arg-type]
    assert dicts == scalar  # "auc" is ignored, "default" decides
    assert dicts[-1] is AssessResult.Bad


def test_a_trial_reporting_only_nan_is_stopped(tmp_path: Path) -> None:
    assessor = with_peers("minimize", experiment_dir=tmp_path)
    answers = feed(assessor, "diverged", [math.nan, math.nan, math.nan])
    assert answers[-1] is AssessResult.Bad  # a diverged loss never wins
    record = json.loads((tmp_path / DECISIONS_FILE).read_text())
    assert record["best"] is None  # -inf is written as null, the file stays valid JSON


def test_nan_in_own_history_is_not_a_best_value() -> None:
    assessor = with_peers("maximize")
    answers = feed(assessor, "t", [0.5, math.nan, 0.55])
    assert answers[-1] is AssessResult.Bad  # best is 0.55 < median 0.75; NaN is not "best"


def test_nan_values_of_peers_are_left_out_of_the_median() -> None:
    assessor = make()
    feed(assessor, "p1", [0.9, 0.9, math.nan])
    feed(assessor, "p2", [0.9, 0.9, math.nan])
    feed(assessor, "p3", [0.9, 0.9, 0.9])
    answers = feed(assessor, "t", [0.1, 0.1, 0.1])
    # Only p3 has a number at step 3: fewer than MIN_PEERS, so no decision.
    assert answers[-1] is AssessResult.Good


# -- per-trial state ------------------------------------------------------------------------------


def test_trials_have_separate_state_even_when_reports_interleave() -> None:
    interleaved = with_peers("maximize")
    good = [0.7, 0.8, 0.85, 0.86]
    bad = [0.5, 0.5, 0.5, 0.5]
    answers_good, answers_bad = [], []
    for i in range(len(good)):
        answers_good.append(interleaved.assess_trial("good", good[: i + 1]))
        answers_bad.append(interleaved.assess_trial("bad", bad[: i + 1]))
    # Each trial is judged on its own history only (reports of one never leak into another).
    assert set(answers_good) == {AssessResult.Good}
    assert answers_bad[2] is AssessResult.Bad


def test_history_is_replaced_not_appended(tmp_path: Path) -> None:
    assessor = with_peers("maximize", experiment_dir=tmp_path)
    assessor.assess_trial("t", [0.5])
    assessor.assess_trial("t", [0.5, 0.5])
    assert assessor.assess_trial("t", [0.5, 0.5, 0.5]) is AssessResult.Bad
    record = json.loads((tmp_path / DECISIONS_FILE).read_text())
    # NNI passes the whole history every time: 3 reports are step 3, not 1 + 2 + 3 = 6.
    assert record["step"] == 3


def test_stopped_trials_remain_peers() -> None:
    assessor = with_peers("maximize")
    feed(assessor, "weak1", [0.1, 0.1, 0.1])
    assessor.trial_end("weak1", False)
    feed(assessor, "weak2", [0.1, 0.1, 0.1])
    assessor.trial_end("weak2", False)
    # Peers at step 3: 0.73, 0.75, 0.77, 0.1, 0.1 -> median 0.73; ended trials still count.
    assert feed(assessor, "t", [0.5, 0.6, 0.735])[-1] is AssessResult.Good


# -- decisions file -------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", MODES)
def test_each_bad_decision_is_appended_with_its_numbers(tmp_path: Path, mode: str) -> None:
    assessor = with_peers(mode, experiment_dir=tmp_path)
    feed(assessor, "weak", oriented([0.50, 0.52, 0.53], mode))
    feed(assessor, "weaker", oriented([0.40, 0.41, 0.42], mode))
    lines = (tmp_path / "hpo-tools" / "assessor-decisions.jsonl").read_text().splitlines()
    records = [json.loads(line) for line in lines]
    assert [r["trial_id"] for r in records] == ["weak", "weaker"]
    first = records[0]
    assert (first["step"], first["rule"], first["peers"]) == (3, "median", 3)
    # Numbers are in the metric's own direction (a loss stays a loss).
    assert first["best"] == pytest.approx(oriented([0.53], mode)[0])
    assert first["median"] == pytest.approx(oriented([0.75], mode)[0])
    assert first["optimize_mode"] == mode


def test_decision_logged_with_its_numbers(caplog: pytest.LogCaptureFixture) -> None:
    assessor = with_peers("maximize")
    with caplog.at_level(logging.INFO, logger="hpo_tools.assessor"):
        feed(assessor, "weak", [0.5, 0.5, 0.5])
    message = "\n".join(r.getMessage() for r in caplog.records)
    assert "trial weak step 3: Bad by the median rule" in message
    assert "median=0.75" in message and "best=0.5" in message


def test_unwritable_decisions_file_does_not_raise(tmp_path: Path) -> None:
    blocker = tmp_path / "exp"
    blocker.write_text("a file where the experiment directory should be")
    assessor = with_peers("maximize", experiment_dir=blocker)
    # The decision still stands; only the record is lost (and logged).
    assert feed(assessor, "weak", [0.5, 0.5, 0.5])[-1] is AssessResult.Bad


# -- trial_end ------------------------------------------------------------------------------------


def _running_local_job(exp_dir: Path, trial_id: str) -> tuple[object, JobRegistry]:
    """A real `sleep` process group on the local platform, registered as RUNNING."""
    platform = create_platform("local", grace_period=0.5)
    registry = JobRegistry(exp_dir)
    record = registry.new(trial_id, platform=platform)
    job = platform.submit("sleep 60", log_path=exp_dir / "trials" / trial_id / "job.log")
    registry.mark_job(record, 1, job, JobState.RUNNING)
    return job, registry


def test_unsuccessful_trial_end_cancels_live_jobs(tmp_path: Path) -> None:
    job, registry = _running_local_job(tmp_path, "T1")
    try:
        PAIAssessor(experiment_dir=tmp_path).trial_end("T1", False)
        # The backstop: the job's processes are gone and the registry says so.
        assert job.wait(timeout=5) is not JobState.RUNNING  # type: ignore[attr-defined]
        record = registry.load("T1")
        assert record is not None
        assert record.jobs[0].state is JobState.CANCELLED
    finally:
        job.cancel()  # type: ignore[attr-defined]


def test_successful_trial_end_leaves_jobs_alone(tmp_path: Path) -> None:
    job, registry = _running_local_job(tmp_path, "T2")
    try:
        PAIAssessor(experiment_dir=tmp_path).trial_end("T2", True)
        assert job.poll() is JobState.RUNNING  # type: ignore[attr-defined]
    finally:
        job.cancel()  # type: ignore[attr-defined]


def test_trial_end_swallows_registry_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def broken(self: JobRegistry, trial_id: str, timeout: float = 10.0) -> list[str]:
        raise RuntimeError("registry exploded")

    monkeypatch.setattr(JobRegistry, "cancel_live", broken)
    with caplog.at_level(logging.ERROR, logger="hpo_tools.assessor"):
        PAIAssessor(experiment_dir=tmp_path).trial_end("T3", False)  # must not raise
    assert "registry exploded" in caplog.text  # ...but says what went wrong


def test_trial_end_with_an_unusable_trial_id_does_not_raise(tmp_path: Path) -> None:
    # JobRegistry rejects ids that are not plain names; the dispatcher must survive it.
    PAIAssessor(experiment_dir=tmp_path).trial_end("../../etc", False)


def test_trial_end_is_bounded_in_time(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def slow(self: JobRegistry, trial_id: str, timeout: float = 10.0) -> list[str]:
        time.sleep(5)
        return []

    monkeypatch.setattr(JobRegistry, "cancel_live", slow)
    monkeypatch.setattr(assessor_module, "TRIAL_END_TIMEOUT", 0.2)
    started = time.monotonic()
    PAIAssessor(experiment_dir=tmp_path).trial_end("T4", False)
    # TRIAL_END_TIMEOUT + 2 s of slack, not the 5 s the hung cancel would take.
    assert time.monotonic() - started < 3.0


# -- core/pai_assessor.py shim --------------------------------------------------------------------


def test_code_directory_shim_builds_pai_assessor_the_way_the_dispatcher_does(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import sys

    from nni.tools.package_utils.tuner_factory import create_customized_class_instance

    monkeypatch.setattr(sys, "path", list(sys.path))  # NNI appends codeDirectory to sys.path
    monkeypatch.delitem(sys.modules, "pai_assessor", raising=False)
    core = Path(__file__).resolve().parent.parent / "core"
    # `assessor: {codeDirectory: .../core, className: pai_assessor.PAIAssessor}` in a config.
    assessor = create_customized_class_instance({
        "codeDirectory": str(core),
        "className": "pai_assessor.PAIAssessor",
        "classArgs": {"optimize_mode": "minimize", "start_step": 2,
                      "experiment_dir": str(tmp_path)},
    })
    assert type(assessor) is PAIAssessor  # the very class, re-exported, not a copy
    assert (assessor.direction, assessor.start_step) == (OptimizeMode.MINIMIZE, 2)
    monkeypatch.delitem(sys.modules, "pai_assessor")


def test_proportion_and_patience_decisions_record_their_own_numbers(tmp_path: Path) -> None:
    assessor = with_peers("maximize", experiment_dir=tmp_path, proportion=0.5, patience=2)
    feed(assessor, "close", [0.70, 0.72, 0.755])  # above median 0.75, below threshold 0.76
    feed(assessor, "flat", [0.70, 0.80, 0.80, 0.80])  # best 0.80 at report 2, then 2 stale
    lines = (tmp_path / DECISIONS_FILE).read_text().splitlines()
    close, flat = (json.loads(line) for line in lines)
    assert close["rule"] == "proportion"
    assert close["threshold"] == pytest.approx(0.76)  # the bar it missed...
    assert close["best_peer"] == pytest.approx(0.77)  # ...and where it came from
    assert flat["rule"] == "patience" and flat["reports_without_improvement"] == 2


def test_trial_end_with_a_hanging_odps_client_returns_and_says_the_job_is_still_live(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    import threading

    import hpo_tools.platforms.maxcompute as maxcompute
    from hpo_tools.testing.odps import FakeODPS

    monkeypatch.setenv("ODPS_ACCESS_ID", "id")
    monkeypatch.setenv("ODPS_ACCESS_KEY", "key")
    platform = create_platform("maxcompute", project="p", endpoint="http://odps.invalid",
                               odps_factory=FakeODPS(polls=1000).connect)
    registry = JobRegistry(tmp_path)
    record = registry.new("T5", platform=platform)
    job = platform.submit("PAI -name easy_rec_ext -project algo_public -Dcmd=train",
                          log_path=tmp_path / "job.log")
    registry.mark_job(record, 1, job, JobState.RUNNING)
    # In the dispatcher the client is rebuilt from the record: pyodps' ODPS() can hang on the
    # network (DNS, proxy). Here it never returns until the test ends.
    release = threading.Event()
    monkeypatch.setattr(maxcompute, "_default_odps_factory", lambda **kw: release.wait(30))
    monkeypatch.setattr(assessor_module, "TRIAL_END_TIMEOUT", 0.3)
    try:
        started = time.monotonic()
        with caplog.at_level(logging.INFO, logger="hpo_tools.assessor"):
            PAIAssessor(experiment_dir=tmp_path).trial_end("T5", False)
        # The real registry path is capped too, not only a stubbed cancel_live.
        assert time.monotonic() - started < 3.0
        messages = [r.getMessage() for r in caplog.records if r.name == "hpo_tools.assessor"]
        # The operator must learn that a paid job may still run, not "no live job left".
        assert not any("no live job left" in m for m in messages), messages
        assert any(job.job_id in m and "still live" in m for m in messages), messages
    finally:
        release.set()
