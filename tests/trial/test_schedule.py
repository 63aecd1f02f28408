"""[schedule_config]: the window a trial may start its jobs in (hpo_tools 0.1.x's section)."""

from __future__ import annotations

import datetime
import io
import os
import signal
import threading
from pathlib import Path

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.testing.platform import FakePlatform, registered
from hpo_tools.trial import runner as runner_module
from hpo_tools.trial.paths import resolve_paths
from hpo_tools.trial.plan import TrialVariables
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import TrialContext, run_plan
from hpo_tools.trial.schedule import ScheduleDays, ScheduleWindow, parse_clock
from hpo_tools.trial.settings import parse_trial_text

# 2026-12-04 is a Friday.
FRIDAY_NOON = datetime.datetime(2026, 12, 4, 12, 0)


def _window(days: str, start: str, end: str) -> ScheduleWindow:
    return ScheduleWindow(ScheduleDays(days), parse_clock(start), parse_clock(end))


@pytest.mark.parametrize(
    ("window", "now", "expected"),
    [
        # Inside: None.
        (("everyday", "09:00", "18:00"), FRIDAY_NOON, None),
        # Before today's opening: later today; after closing: tomorrow.
        (("everyday", "13:30", "18:00"), FRIDAY_NOON, datetime.datetime(2026, 12, 4, 13, 30)),
        (("everyday", "08:00", "11:00"), FRIDAY_NOON, datetime.datetime(2026, 12, 5, 8, 0)),
        # Over midnight: the evening, and the morning after, are inside.
        (("everyday", "22:00", "06:00"), FRIDAY_NOON, datetime.datetime(2026, 12, 4, 22, 0)),
        (("everyday", "22:00", "06:00"), datetime.datetime(2026, 12, 5, 3, 0), None),
        # Weekend: Saturday; Friday night's window over midnight is not Saturday's.
        (("weekend", "09:00", "18:00"), FRIDAY_NOON, datetime.datetime(2026, 12, 5, 9, 0)),
        (("weekend", "22:00", "06:00"), datetime.datetime(2026, 12, 5, 3, 0),
         datetime.datetime(2026, 12, 5, 22, 0)),
        (("weekend", "22:00", "06:00"), datetime.datetime(2026, 12, 6, 3, 0), None),
        # Equal ends: the whole day.
        (("everyday", "00:00", "00:00"), FRIDAY_NOON, None),
    ],
)
def test_next_start(window, now, expected) -> None:
    assert _window(*window).next_start(now) == expected


@pytest.mark.parametrize("text", ["24:00", "9", "09:60", "nine"])
def test_a_bad_clock_is_refused(text) -> None:
    with pytest.raises(ValueError, match="expected HH:MM"):
        parse_clock(text)


METRIC = '[metric_config]\nmetric_type=fake\nmetric_source=eval\nmetric_dict={"auc": 1}\n'
TRIAL = ("[platform_config]\nname=Fake\ncmd1=emit eval step=1 auc=0.7\n" + METRIC
         + "[schedule_config]\nday=everyday\nstart_time=13:00\nend_time=14:00\n")


@pytest.fixture(autouse=True)
def fake_registered():
    with registered():
        yield


def _plan(text: str):
    return parse_trial_text(text, source="trial.ini",
                            variables=TrialVariables("e1", "t1", "/out/t1", {}), environ={})


def test_the_section_is_read_into_the_plan_and_checked() -> None:
    assert _plan(TRIAL).schedule == _window("everyday", "13:00", "14:00")
    with pytest.raises(ConfigError, match=r"\[schedule_config\] start_time: expected HH:MM"):
        _plan(TRIAL.replace("start_time=13:00", "start_time=1pm"))
    with pytest.raises(ConfigError, match=r"\[schedule_config\] day: expected one of everyday, "
                                          r"weekend, got 'weekends' \(did you mean 'weekend'\?\)"):
        _plan(TRIAL.replace("day=everyday", "day=weekends"))


def _run(tmp_path: Path, platform: FakePlatform, stderr: io.StringIO):
    plan = _plan(TRIAL)
    reporter = ConsoleReporter({}, experiment_id="e1", trial_id="t1", stream=io.StringIO())
    paths = resolve_paths("e1", "t1", exp_dir=tmp_path / "exp", environ={})
    return run_plan(plan, reporter, TrialContext("e1", "t1", {}, paths), platform=platform,
                    interval=0.02, stderr=stderr)


def test_a_trial_outside_its_window_waits_and_says_until_when(tmp_path, monkeypatch) -> None:
    clock = iter([FRIDAY_NOON] * 3)
    # Noon three times (outside 13:00-14:00), then inside.
    monkeypatch.setattr(runner_module, "_now",
                        lambda: next(clock, datetime.datetime(2026, 12, 4, 13, 5)))
    platform, stderr = FakePlatform(), io.StringIO()
    outcome = _run(tmp_path, platform, stderr)
    assert outcome.status == "succeeded", outcome.message
    # Said once, with the start time; the job ran once the window opened.
    assert stderr.getvalue().count("waits for its [schedule_config] window") == 1
    assert "starts at 2026-12-04 13:00" in stderr.getvalue()
    assert platform.submitted == ["emit eval step=1 auc=0.7"]


def test_sigint_while_waiting_cancels_at_once_with_nothing_launched(tmp_path, monkeypatch) -> None:
    monkeypatch.setattr(runner_module, "_now", lambda: FRIDAY_NOON)  # never inside
    platform = FakePlatform()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        outcome = _run(tmp_path, platform, io.StringIO())
    finally:
        timer.cancel()
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    assert platform.submitted == []
