"""The fault cases: (platform, moment, signal), drawn from the whole grid with a fixed seed.

Every (moment, signal) pair the grid has is drawn at least once (on a platform drawn for it),
then more cases are drawn from the rest of the grid until there are :data:`COUNT`; the same
seed gives the same cases, in the same order, on every run. To explore, set
``HPO_TOOLS_FAULTS_SEED`` and ``HPO_TOOLS_FAULTS_COUNT`` (a count past the grid's size runs the
whole grid, about 140 cases).

The resume faults (issue 14 item 4; :func:`draw_resume`, ``HPO_TOOLS_FAULTS_RESUME_COUNT``)
come from their own grid: a trial reporting to (a fake of) NNI with ``resume=1``, hit while it
trains, reads its metrics, reports a step or its final result, by a SIGINT or a SIGKILL, then
run again under the same trial id. Every (moment, signal) pair is drawn on the local platform,
every moment once on each other platform (DLC's fake: a new job in each run), the rest at
random.
"""

from __future__ import annotations

import dataclasses
import os
import random
import signal
from typing import Callable, Hashable

from hpo_tools.failpoints import NAMES

#: The seed of the draw (change it to explore other cases; a failure names its case).
SEED = int(os.environ.get("HPO_TOOLS_FAULTS_SEED") or 20261214)
#: How many faults one run injects.
COUNT = int(os.environ.get("HPO_TOOLS_FAULTS_COUNT") or 72)

LOCAL = "local"
#: The cloud platforms whose fake is a :class:`~hpo_tools.testing.fake_jobs.FakeJobService`.
CLOUD = ("dlc", "pai", "paiflow")
#: MaxCompute's fake (odps_dir.py) has one plan for every instance (they run until stopped):
#: only the failpoint moments while the job runs, no hung create, no job fault.
MAXCOMPUTE = "maxcompute"
PLATFORMS = (LOCAL, *CLOUD, MAXCOMPUTE)

#: Moments a failpoint marks in the product (hpo_tools/failpoints.py), on every platform.
FAILPOINT_MOMENTS = NAMES
#: A cloud job's create call hangs before it creates the job (during submit), or after (the
#: job exists, its id not known yet): the fake service's ``hang_before`` / ``hang`` plans.
CREATE_MOMENTS = ("create_hang_before", "create_hang")
#: NNI's manager takes a report and never answers (a real HTTP channel, NniReporter).
NNI_MOMENTS = ("nni_report", "nni_final_report")
#: The create's answer is lost (the job was created): no signal, the runner fails the trial.
CREATE_LOST = "create_lost"
#: The training job itself fails (issue 14 item 3), the runner untouched: it crashes after two
#: steps, is killed (local) or stopped (cloud) from outside after two, or hangs silent past the
#: trial file's ``job_timeout``; a local job leaves a damaged event file (``summary`` metric).
JOB_FAULTS = ("job_crash", "job_killed", "job_hang")
CORRUPT_EVENTS = "corrupt_events"

SIGNALS = (signal.SIGINT, signal.SIGTERM, signal.SIGKILL)

#: How many resume faults one run injects (at least those :func:`draw_resume` covers, 12).
RESUME_COUNT = int(os.environ.get("HPO_TOOLS_FAULTS_RESUME_COUNT") or 12)
#: The resume faults' moments: the failpoints of a running trial that has (or is about to
#: have) something reported to NNI.
RESUME_MOMENTS = ("training", "metric_read", "report", "final_report")
#: NNI's stop (the runner cancels, records what went out, dies by it) and a death with no
#: last word (the sweep stops the job; reported.json is as the last returned report left it).
RESUME_SIGNALS = (signal.SIGINT, signal.SIGKILL)
RESUME_PLATFORMS = (LOCAL, "dlc")


@dataclasses.dataclass(frozen=True)
class Case:
    """One fault: ``platform``'s trial, hit at ``moment`` by ``signum`` (None: no signal);
    with ``resume``, the trial is then run again under its id (:func:`draw_resume`)."""

    index: int
    platform: str
    moment: str
    signum: int | None
    resume: bool = False

    @property
    def token(self) -> str:
        """Unique to the case: in its job names, its marker, its directories."""
        return f"{'resume' if self.resume else 'fault'}{self.index:03d}"

    @property
    def signal_name(self) -> str:
        return signal.Signals(self.signum).name if self.signum is not None else "none"

    @property
    def kind(self) -> str:
        """How the summary counts it: the signal, else the fault itself."""
        return self.signal_name if self.signum is not None else self.moment

    @property
    def job_fault(self) -> bool:
        return self.moment in JOB_FAULTS or self.moment == CORRUPT_EVENTS

    @property
    def id(self) -> str:
        return f"{self.token}-{self.platform}-{self.moment}-{self.signal_name}"

    @property
    def failpoint(self) -> bool:
        return self.moment in FAILPOINT_MOMENTS

    @property
    def nni(self) -> bool:
        """Whether the runner reports to (a fake of) NNI's manager instead of the console."""
        return self.moment in NNI_MOMENTS or self.resume

    @property
    def job_ends(self) -> bool:
        """Whether the trial's job ends by itself (the moment comes after it)."""
        return self.moment in ("final_report", "nni_final_report", CORRUPT_EVENTS)


def grid() -> list[tuple[str, str, int | None]]:
    """Every (platform, moment, signal) the module knows how to inject."""
    cases: list[tuple[str, str, int | None]] = []
    for platform in PLATFORMS:
        moments = list(FAILPOINT_MOMENTS)
        if platform in CLOUD:
            moments += CREATE_MOMENTS
        elif platform == LOCAL:
            moments += NNI_MOMENTS
        else:  # its jobs never end by themselves
            moments.remove("final_report")
        for moment in moments:
            # SIGKILL while NNI holds a report is SIGKILL anywhere: left to the failpoints.
            signums = SIGNALS[:2] if moment in NNI_MOMENTS else SIGNALS
            cases += [(platform, moment, s) for s in signums]
        if platform in CLOUD:
            cases.append((platform, CREATE_LOST, None))
        if platform != MAXCOMPUTE:
            cases += [(platform, fault, None) for fault in JOB_FAULTS]
        if platform == LOCAL:
            cases.append((platform, CORRUPT_EVENTS, None))
    return cases


def resume_grid() -> list[tuple[str, str, int | None]]:
    """Every (platform, moment, signal) of a resume fault."""
    return [(platform, moment, signum) for platform in RESUME_PLATFORMS
            for moment in RESUME_MOMENTS for signum in RESUME_SIGNALS]


def draw(seed: int = SEED, count: int = COUNT) -> list[Case]:
    """``count`` cases: each (moment, signal) pair once, the rest at random (see above)."""
    return _draw(grid(), seed, count)


def draw_resume(seed: int = SEED, count: int = RESUME_COUNT) -> list[Case]:
    """``count`` resume faults (tokens ``resumeNNN``): each (moment, signal) pair on the local
    platform, each moment once on every other platform, the rest at random (see above)."""
    return _draw(resume_grid(), seed, count, resume=True,
                 cover=lambda p, m, s: (m, s) if p == LOCAL else (p, m))


def _draw(pool: list[tuple[str, str, int | None]], seed: int, count: int, *,
          resume: bool = False, cover: Callable[[str, str, int | None], Hashable] | None = None
          ) -> list[Case]:
    """One case of each kind ``cover(platform, moment, signal)`` says (default: each
    (moment, signal) pair once), then the rest at random up to ``count``, in a random order."""
    rng = random.Random(seed)
    rng.shuffle(pool)
    chosen: list[tuple[str, str, int | None]] = []
    pairs = set()
    for item in pool:
        kind = cover(*item) if cover is not None else (item[1], item[2])
        if kind not in pairs:
            pairs.add(kind)
            chosen.append(item)
    rest = [item for item in pool if item not in chosen]
    chosen += rest[: max(0, count - len(chosen))]
    rng.shuffle(chosen)
    return [Case(i, p, m, s, resume) for i, (p, m, s) in enumerate(chosen, start=1)]
