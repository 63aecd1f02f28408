"""Issue 14 item 4, by fault injection: a trial run again under its id (``resume=1``) after a
fault re-reports nothing NNI already has, and loses nothing.

For each resume fault of :func:`tests.faults.cases.draw_resume` (conftest.py runs them with the
other faults; harness.py says how), one trial id runs three times with ``resume=1``, reporting
to the fake NNI manager (a real HTTP server that records every metric of each trial): an
earlier run that NNI stops (SIGINT) once it has two steps; the faulted run, SIGINTed or
SIGKILLed at its moment (``training``, ``metric_read``, ``report``, ``final_report``) and swept
after a SIGKILL as every SIGKILL case is; and a last run, whose job goes on from the steps on
disk to its end. Four checks:

- each run ends as it should: the earlier one and a SIGINTed one dead by SIGINT (within 3 s),
  a SIGKILLed one swept, the last one succeeded;
- NNI got every step the jobs wrote and the final result exactly once, except a report that
  NNI got while the runner never learned so (hpo_tools/trial/report_state.py: "a wait cut
  short"): a SIGINT lets the report in flight give up waiting after at most one tick, so a
  SIGINTed run may leave one report NNI has and reported.json does not, and the next run sends
  it again. The ``report`` failpoint sits before the call: a SIGKILL there (or at any
  failpoint) leaves none, every step reaches NNI exactly once; a SIGINT there hits the window
  whenever NNI answers later than a tick, which the harness makes certain (``SLOW_ANSWER``),
  so that case asserts the one duplicate, of the step in flight;
- the last run's result.json holds every step, the final result the last one;
- nothing is left running after the fault nor after the last run (registry, fake cloud, /proc).

"""

from __future__ import annotations

import collections
import signal
from typing import Any

import pytest

from .cases import (
    LOCAL,
    RESUME_COUNT,
    RESUME_MOMENTS,
    RESUME_PLATFORMS,
    RESUME_SIGNALS,
    Case,
    draw_resume,
    resume_grid,
)
from .harness import DEADLINE, Run, job_step, slow_report

CASES = draw_resume()

def _cases(check: str) -> list:
    params = []
    for case in CASES:
        params.append(pytest.param(case, id=case.id))
    return params


def _runs(outcome: Any) -> tuple[Run, Run, Run]:
    """The earlier, faulted and last run of a resume fault (the test fails without them)."""
    seen = outcome.describe()
    # A case whose moment never came, or whose trial was not run again, proves nothing.
    assert outcome.reached and outcome.resumed is not None, seen
    assert [run.name for run in outcome.resumed.runs] == ["earlier", "fault", "last"], seen
    earlier, fault, last = outcome.resumed.runs
    return earlier, fault, last


def _steps(case: Case, metrics: list, kind: str) -> list:
    """The job step of each metric of ``kind`` NNI got, in order (None: no step's score)."""
    return [job_step(case, value["default"]) for what, value in metrics if what == kind]


def _unrecorded(runs: tuple[Run, ...]) -> list[int]:
    """Per run: the intermediate reports NNI got from it that its reported.json did not
    record (the next run sends them again)."""
    counts = []
    sent_before = recorded_before = 0
    for run in runs:
        sent = sum(kind == "PERIODICAL" for kind, _ in run.nni)
        recorded = len(run.reported.get("steps") or [])
        counts.append((sent - sent_before) - (recorded - recorded_before))
        sent_before, recorded_before = sent, recorded
    return counts


def test_the_draw_covers_every_moment_and_kill_on_local_and_each_moment_on_dlc():
    local = {(c.moment, c.signum) for c in CASES if c.platform == LOCAL}
    # A moment the draw skipped would go untested without a word.
    assert local == {(m, s) for m in RESUME_MOMENTS for s in RESUME_SIGNALS}
    for platform in RESUME_PLATFORMS:
        assert {c.moment for c in CASES if c.platform == platform} == set(RESUME_MOMENTS)
    # At least the ten, and as many as asked for (the grid allowing).
    assert len(CASES) >= 10 and len(CASES) >= min(RESUME_COUNT, len(resume_grid()))
    # The same seed, the same faults; their tokens never meet the other faults'.
    assert draw_resume() == CASES
    assert all(c.resume and c.token.startswith("resume") for c in CASES)


@pytest.mark.parametrize("case", _cases("runs"))
def test_each_run_ends_as_it_should(case, fault_outcomes):
    outcome = fault_outcomes[case.id]
    seen = outcome.describe()
    earlier, fault, last = _runs(outcome)
    # NNI stopped the earlier run: cancelled, dead by SIGINT (NNI: USER_CANCELED).
    assert earlier.returncode == -signal.SIGINT, seen
    assert earlier.result.get("status") == "cancelled", seen
    assert fault.returncode == -case.signum, seen
    if case.signum == signal.SIGINT:
        assert outcome.elapsed is not None and outcome.elapsed < DEADLINE, seen
        assert fault.result.get("status") == "cancelled", seen
    else:
        # The sweep that stands in for the dead runner did run before the trial ran again.
        assert outcome.sweep, seen
    # The last run goes on where the others stopped and completes the trial.
    assert last.returncode == 0, seen
    assert last.result.get("status") == "succeeded", seen


@pytest.mark.parametrize("case", _cases("nni"))
def test_nni_gets_every_step_and_the_final_once(case, fault_outcomes):
    outcome = fault_outcomes[case.id]
    seen = outcome.describe()
    runs = _runs(outcome)
    written = outcome.resumed.written
    got = _steps(case, runs[-1].nni, "PERIODICAL")
    counts = collections.Counter(got)
    # The jobs wrote steps (at least the earlier run's two), and NNI got only steps they wrote.
    assert len(written) >= 2 and set(counts) <= set(written), seen
    # Nothing lost: every step the jobs wrote, before the fault and from it on, reached NNI.
    assert set(written) <= set(counts), seen
    unrecorded = _unrecorded(runs)
    # A SIGKILL at a failpoint never comes between NNI's answer and the write of
    # reported.json, and the last run completes: they leave no report unrecorded. A SIGINT
    # may cut the wait for one report short (the documented duplicate): at most one.
    limits = [1, 1 if case.signum == signal.SIGINT else 0, 0]
    assert all(0 <= n <= limit for n, limit in zip(unrecorded, limits)), (unrecorded, seen)
    # What went to NNI twice is exactly what a run sent and did not record.
    assert sum(n - 1 for n in counts.values()) == sum(unrecorded), (unrecorded, seen)
    if slow_report(case):
        # SIGINT at the report failpoint with NNI slow to answer: the runner gives up on the
        # report in flight, which NNI has; the last run sends it again (documented).
        fault_steps = _steps(case, runs[1].nni, "PERIODICAL")[len(
            _steps(case, runs[0].nni, "PERIODICAL")):]
        # (Three times if the earlier run's stop had cut the same report short: the sum
        # above still holds.)
        assert unrecorded[1] == 1 and counts[fault_steps[0]] >= 2, (unrecorded, seen)
    if case.platform == LOCAL:  # reported.json's steps are the job's (x100): per step
        for step in (s for s, n in counts.items() if n > 1):
            assert any(step in _steps(case, run.nni, "PERIODICAL")
                       and [0, 100 * step] not in run.reported.get("steps", [])
                       for run in runs[:-1]), (step, seen)
    # The final result went to NNI once, the last step's.
    assert _steps(case, runs[-1].nni, "FINAL") == [written[-1]], seen


@pytest.mark.parametrize("case", _cases("result"))
def test_result_json_holds_every_step(case, fault_outcomes):
    outcome = fault_outcomes[case.id]
    seen = outcome.describe()
    last = _runs(outcome)[-1]
    written = outcome.resumed.written
    steps = [job_step(case, entry["score"]) for entry in last.result.get("intermediate") or []]
    # Every step of every run, in order: those read again included, each once.
    assert steps == written, seen
    final = last.result.get("final") or {}
    assert job_step(case, final.get("score", -1.0)) == written[-1], seen


@pytest.mark.parametrize("case", _cases("left"))
def test_nothing_is_left_running(case, fault_outcomes):
    outcome = fault_outcomes[case.id]
    seen = outcome.describe()
    _runs(outcome)
    resumed = outcome.resumed
    # After the fault (and the sweep): no job live in the registry or the fake cloud, no
    # process of the trial; a local job died with its SIGKILLed runner by itself.
    assert not (outcome.registry_live or outcome.cloud_live), seen
    assert not (outcome.survivors or outcome.orphans), seen
    # After the last run: the same, every run's jobs counted.
    assert not (resumed.registry_live or resumed.cloud_live or resumed.survivors), seen
