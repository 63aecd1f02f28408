"""Follower: each scored step once, restarts, multiple sources, waiting, the missing-keys error."""

from __future__ import annotations

import json
import threading
import time

import pytest

from hpo_tools.errors import MetricReadError
from hpo_tools.metrics import Follower, MetricPoint, MetricSource, MetricSpec, build_source
from tests.metrics.eventlib import append_events, event_file, scalar_event

WEIGHTS = {"auc_is_valid_play": 0.5, "auc_is_like": 0.25, "loss_play_time": -0.25}


def _eval(step, valid, like, loss):
    return scalar_event(step, auc_is_valid_play=valid, auc_is_like=like, loss_play_time=loss)


def _follower(directory, **modes):
    spec = MetricSpec.from_config(WEIGHTS, **modes)
    return Follower([build_source("summary", str(directory), spec=spec)], spec, interval=0.05)


def test_each_scored_step_is_yielded_once_across_polls(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, _eval(100, 0.8, 0.6, 2.0))
    follower = _follower(tmp_path)
    first = follower.poll()
    append_events(path, _eval(200, 0.9, 0.7, 1.0))

    second = follower.poll()

    # Step 100 is not yielded again; the score is the weighted sum.
    assert [r.step for r in first] == [100]
    assert [r.step for r in second] == [200]
    assert second[0].score == pytest.approx(0.5 * 0.9 + 0.25 * 0.7 - 0.25 * 1.0)
    assert follower.poll() == []


def test_step_whose_metrics_arrive_in_separate_polls_scores_when_complete(tmp_path):
    path = event_file(tmp_path, 100)
    follower = _follower(tmp_path)
    append_events(path, scalar_event(5, auc_is_valid_play=0.8, auc_is_like=0.6))
    # TF2 writes one event per scalar: the step is not complete yet.
    assert follower.poll() == []
    append_events(path, scalar_event(5, loss_play_time=1.0))
    assert [r.step for r in follower.poll()] == [5]


def test_recreated_follower_with_state_does_not_yield_old_steps_but_counts_them(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, _eval(100, 0.9, 0.9, 0.0), _eval(200, 0.5, 0.5, 0.0))
    old = _follower(tmp_path, final_mode="best")
    assert [r.step for r in old.poll()] == [100, 200]
    saved = json.loads(json.dumps(old.state()))  # what the runner persists
    append_events(path, _eval(300, 0.6, 0.6, 0.0))

    spec = MetricSpec.from_config(WEIGHTS, final_mode="best")
    new = Follower([build_source("summary", str(tmp_path), spec=spec)], spec, state=saved)

    # Only the step the old follower never yielded...
    assert [r.step for r in new.poll()] == [300]
    # ...but "best" still sees the old steps (step 100 is the best).
    assert new.close().step == 100


def test_missing_keys_error_names_required_and_seen_metrics(tmp_path):
    append_events(event_file(tmp_path, 100), scalar_event(1, auc=0.7, loss=0.3))
    spec = MetricSpec.from_config({"auc": 1, "auc_is_like": 1})
    follower = Follower([build_source("summary", str(tmp_path), spec=spec)], spec)

    with pytest.raises(MetricReadError) as err:
        follower.close()

    # The user sees what was required, what the job wrote, and what is missing.
    message = str(err.value)
    assert "required `auc`, `auc_is_like`" in message
    assert "seen `auc`, `loss`" in message
    assert "missing `auc_is_like`" in message


def test_directory_created_late_is_waited_for_and_error_says_it_never_appeared(tmp_path):
    directory = tmp_path / "model" / "eval_val"
    follower = _follower(directory)
    # Not an error while the job has not created it.
    assert follower.poll() == []
    with pytest.raises(MetricReadError, match="does not exist"):
        _follower(directory).close()
    append_events(event_file(directory, 100), _eval(100, 0.8, 0.6, 2.0))
    assert [r.step for r in follower.poll()] == [100]


def test_error_for_an_existing_directory_without_event_files_says_so(tmp_path):
    model_dir = tmp_path / "model"
    (model_dir / "eval_val").mkdir(parents=True)  # the user named model_dir, not eval_val
    spec = MetricSpec.from_config({"auc": 1})
    follower = Follower([build_source("summary", str(model_dir), spec=spec)], spec)
    with pytest.raises(MetricReadError) as err:
        follower.close()
    # "does not exist" would send the user looking for a typo in a path that is there.
    assert f"summary:{model_dir} has no event files" in str(err.value)
    assert "does not exist" not in str(err.value)


def test_corrupt_file_does_not_crash_the_follower(tmp_path):
    path = event_file(tmp_path, 100)
    path.write_bytes(b"\x00garbage" * 100)
    append_events(path, _eval(100, 0.8, 0.6, 2.0))
    follower = _follower(tmp_path)
    # Garbage before a valid record: skipped, the record is still scored.
    assert [r.step for r in follower.poll()] == [100]


@pytest.mark.parametrize(
    ("mode", "expected"),
    [("final", 0.1), ("best", 0.5), ("avg", (0.5 + 0.2 + 0.1) / 3)],
)
def test_multiple_sources_combine_with_source_list_final_mode(tmp_path, mode, expected):
    spec = MetricSpec.from_config({"auc": 1}, final_mode="final", source_list_final_mode=mode)
    folds = []
    for fold, value in enumerate([0.5, 0.2, 0.1]):
        directory = tmp_path / f"fold{fold}"
        # Each fold's last step holds its value; an earlier better step is ignored by "final".
        append_events(
            event_file(directory, 100), scalar_event(1, auc=0.9), scalar_event(2, auc=value)
        )
        folds.append(build_source("summary", str(directory), spec=spec))
    follower = Follower(folds, spec)

    reports = follower.poll()

    # Steps are reported per source; the final combines the per-fold finals.
    assert [(r.source, r.step) for r in reports] == [(i, s) for i in range(3) for s in (1, 2)]
    assert follower.close().score == pytest.approx(expected)


def test_source_that_never_scores_is_left_out_of_the_final(tmp_path, caplog):
    spec = MetricSpec.from_config({"auc": 1}, source_list_final_mode="avg")
    append_events(event_file(tmp_path / "a", 100), scalar_event(1, auc=0.4))
    follower = Follower(
        [
            build_source("summary", str(tmp_path / "a"), spec=spec),
            build_source("summary", str(tmp_path / "missing"), spec=spec),
        ],
        spec,
    )
    # The average is over the sources that scored, with a warning for the other.
    assert follower.close().score == pytest.approx(0.4)
    assert "never held every weighted metric" in caplog.text


def test_follow_yields_a_flushed_event_and_stops_when_the_event_is_set(tmp_path):
    path = event_file(tmp_path, 100)
    follower = _follower(tmp_path)
    stop = threading.Event()

    def job():
        time.sleep(0.1)
        append_events(path, _eval(100, 0.8, 0.6, 2.0))

    writer = threading.Thread(target=job)
    writer.start()
    seen = []
    for report in follower.follow(stop):
        seen.append(report.step)
        stop.set()  # the runner sets it when the job ends
    writer.join()

    # The step written while following was yielded, and follow() returned after stop.
    assert seen == [100]


def test_follow_returns_promptly_when_stop_is_already_set(tmp_path):
    follower = Follower(
        [build_source("summary", str(tmp_path), spec=MetricSpec.from_config({"a": 1}))],
        MetricSpec.from_config({"a": 1}),
        interval=60,
    )
    stop = threading.Event()
    stop.set()
    started = time.monotonic()
    assert list(follower.follow(stop)) == []
    # stop.wait(interval) returns at once: no sleeping through the interval.
    assert time.monotonic() - started < 5


def test_drain_reports_the_last_stdout_line_without_newline(tmp_path):
    log = tmp_path / "job.log"
    log.write_text("acc=0.5\nacc=0.6")
    spec = MetricSpec.from_config({r"acc=([0-9.]+)": 1})
    follower = Follower([build_source("stdout", str(log), spec=spec)], spec)
    assert [r.step for r in follower.poll()] == [1]
    # The job is over: the unterminated last line is a step too.
    assert [r.score for r in follower.drain()] == [0.6]
    assert follower.close().score == 0.6


def test_close_is_idempotent(tmp_path):
    append_events(event_file(tmp_path, 100), _eval(100, 0.8, 0.6, 2.0))
    follower = _follower(tmp_path)
    # The runner may call close() from a signal path and from finally.
    assert follower.close() == follower.close()


def test_read_error_is_retried_not_raised(caplog):
    class Flaky(MetricSource):
        calls = 0

        def poll(self):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise OSError("connection reset")
            return [MetricPoint(1, {"a": 1.0})]

    spec = MetricSpec.from_config({"a": 1})
    follower = Follower([Flaky("remote")], spec)
    # First poll fails (logged), the next one succeeds.
    assert follower.poll() == []
    assert "connection reset" in caplog.text
    assert [r.step for r in follower.poll()] == [1]


def test_values_after_a_step_scored_do_not_change_it(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, scalar_event(1, auc=0.5))
    spec = MetricSpec.from_config({"auc": 1})
    follower = Follower([build_source("summary", str(tmp_path), spec=spec)], spec)
    follower.poll()
    append_events(event_file(tmp_path, 200), scalar_event(1, auc=0.9))  # a restarted job
    # The re-evaluated step 1 is not yielded again, and the first value stands.
    assert follower.poll() == []
    assert follower.close().score == 0.5
