"""The fault run: every case of :func:`tests.faults.cases.draw` and of
:func:`~tests.faults.cases.draw_resume` run once per session, a few at a time, before the first
fault test looks at its own; and the count of faults in the summary."""

from __future__ import annotations

import collections
import concurrent.futures
import json
from typing import Dict, List

import pytest

from .cases import PLATFORMS, draw, draw_resume
from .harness import CREDENTIALS, Faults, Outcome, Resumed

#: Cases run at once: each mostly waits (a job, a signal, a sweep), so more than the 2 cores.
WORKERS = 3

_OUTCOMES = pytest.StashKey[Dict[str, Outcome]]()
_SECONDS = pytest.StashKey[float]()


@pytest.fixture(scope="session")
def fault_outcomes(request: pytest.FixtureRequest,
                   tmp_path_factory: pytest.TempPathFactory) -> Dict[str, Outcome]:
    """Every case's :class:`Outcome` (the resume faults' too), by case id."""
    import time

    from hpo_tools.cloud import ENV_FAKE_CLOUD

    cases = draw_resume() + draw()  # the longest first: the pool ends together
    faults = Faults(tmp_path_factory.mktemp("faults"))
    faults.plan(cases)
    started = time.monotonic()
    with pytest.MonkeyPatch.context() as patch:
        # The in-process sweep (PAIAssessor.trial_end) rebuilds the cloud platforms from the
        # registry with this process's environment, as NNI's dispatcher does with its own.
        patch.setenv(ENV_FAKE_CLOUD, str(faults.cloud))
        for name, value in CREDENTIALS.items():
            patch.setenv(name, value)
        try:
            with concurrent.futures.ThreadPoolExecutor(WORKERS) as pool:
                outcomes = list(pool.map(faults.run, cases))
        finally:
            faults.close()
    request.config.stash[_SECONDS] = time.monotonic() - started
    results = {o.case.id: o for o in outcomes}
    request.config.stash[_OUTCOMES] = results
    return results


def pytest_terminal_summary(terminalreporter, exitstatus, config) -> None:
    """``fault injection: 56 faults injected (...), 0 survivors, ...`` after the run."""
    outcomes: List[Outcome] = list(config.stash.get(_OUTCOMES, {}).values())
    if not outcomes:
        return
    injected = [o for o in outcomes if o.reached]
    platforms = collections.Counter(o.case.platform for o in injected)
    kinds = collections.Counter(o.case.kind for o in injected)
    resumed = [o.resumed for o in injected if o.resumed is not None]
    survivors = sum(len(o.survivors) for o in outcomes) + sum(len(r.survivors) for r in resumed)
    live = sum(1 for o in outcomes if o.registry_live or o.cloud_live) + sum(
        1 for r in resumed if r.registry_live or r.cloud_live)
    slowest = max((o.elapsed or 0.0 for o in injected if o.case.signum in (2, 15)), default=0.0)
    terminalreporter.write_line(
        f"fault injection: {len(injected)} faults injected of {len(outcomes)} drawn ("
        + ", ".join(f"{k} {platforms[k]}" for k in PLATFORMS if platforms[k]) + "; "
        + ", ".join(f"{k} {v}" for k, v in sorted(kinds.items())) + f"; {len(resumed)} "
        f"resumed under their trial id, {_twice(resumed)} reports NNI got twice), {survivors} "
        f"survivors, {live} with a job left live, slowest death {slowest:.2f} s after "
        f"SIGINT/SIGTERM, {config.stash.get(_SECONDS, 0.0):.0f} s")


def _twice(resumed: List[Resumed]) -> int:
    """Reports NNI got more than once from the trials run again (resume faults)."""
    counts = (collections.Counter(json.dumps(m, sort_keys=True) for m in r.nni) for r in resumed)
    return sum(n - 1 for c in counts for n in c.values())
