"""Every tuner of NNI's built-in list runs a short experiment end to end, through real NNI.

Each tuner gets its own experiment (``hpo-tools experiment run`` in a subprocess, its own port
and working directory) whose trials are our runner (``python -m hpo_tools.run``) with a Local
command that prints its score: 4 trials, 2 at a time. All experiments run at once in one
module fixture, so the matrix takes about as long as its slowest experiment.

Metis and GP are our ``SafeMetis`` / ``SafeGP`` (NNI's fail with SciPy >= 1.11); Hyperband and
BOHB are our guarded ``hpo_tools.tuners.SafeHyperband`` / ``SafeBOHB`` (NNI's own
die on their string parameter ids, microsoft/nni#5263); their trials score ``x`` times the
``TRIAL_BUDGET`` they were given, and their brackets are sized so that the 4th trial is a
promoted one (a larger budget after the bracket's first round). PBT's trials write a checkpoint
into the ``save_checkpoint_dir`` PBT hands them; with a population of 2 the 4 trials are two PBT
steps. SMAC is not here: its dependencies do not install on Python 3.11 (docs/experiments.md).
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from hpo_tools import experiment as ex
from tests.e2e.procs import processes_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]

MAX_TRIALS = 4
RUN_TIMEOUT = 150  # seconds each experiment may take before `experiment run` stops it

def _score(expression: str) -> str:
    """A Local command printing ``score=<expression>`` (``PYTHON`` is the test's interpreter)."""
    return f"PYTHON -c \"print('score=%s' % ({expression}))\""


TRIAL_INI = """\
[platform_config]
name=Local
cmd1={command}

[metric_config]
metric_type=stdout
metric_dict={{"score=([0-9.eE+-]+)": 1}}
optimize_mode=maximize
"""

# PBT's contract: each trial saves its checkpoint in save_checkpoint_dir (a later step loads it
# from load_checkpoint_dir). The trial only writes a marker file there and prints its score.
PBT_COMMAND = (
    "PYTHON -c \"import os; os.makedirs('${save_checkpoint_dir}', exist_ok=True); "
    "open(os.path.join('${save_checkpoint_dir}', 'ckpt'), 'w').write('${x}'); "
    "print('score=${x}')\"")

UNIFORM = {"x": {"_type": "uniform", "_value": [0.0, 1.0]}}
BATCH = {"combine_params": {"_type": "choice", "_value": [{"x": 0.2}, {"x": 0.9}, {"x": 0.5}]}}

CONFIG = """\
searchSpace: {space}
trialCommand: {python} -m hpo_tools.run --config trial.ini
trialCodeDirectory: .
trialConcurrency: 2
maxTrialNumber: {max_trials}
experimentWorkingDirectory: {work}
tuner:
{tuner}
trainingService:
  platform: local
"""


@dataclass(frozen=True)
class Case:
    """One tuner of the matrix: its ``tuner:`` section, search space, trial command, needs."""

    name: str
    tuner: str
    space: dict = None  # type: ignore[assignment]
    command: str = _score("${x}")
    needs: tuple[str, ...] = ()  # modules of the extra hpo-tools[tuners]
    trials: int = MAX_TRIALS  # trials the tuner can give at most


def _builtin(name: str, args: str = "optimize_mode: maximize") -> str:
    return f"  name: {name}\n  classArgs: {{{args}}}"


def _safe(class_name: str, args: str) -> str:
    return (f"  codeDirectory: {REPO / 'core'}\n  className: hpo_tools.tuners.{class_name}\n"
            f"  classArgs: {{{args}}}")


BUDGET_SCORE = _score("${x} * ${TRIAL_BUDGET}")

CASES = [
    Case("TPE", _safe("SafeTpeTuner", "optimize_mode: maximize, seed: 1")),
    Case("Random", _builtin("Random", "seed: 1")),
    Case("Anneal", _builtin("Anneal"), needs=("hyperopt",)),
    Case("Evolution", _builtin("Evolution", "optimize_mode: maximize, population_size: 4")),
    Case("GridSearch", "  name: GridSearch"),
    # Metis and GP as our SafeMetis / SafeGP (NNI's die on SciPy >= 1.11); one trial past the
    # cold start, and Metis kept small: each of its suggestions takes seconds.
    Case("Metis", _safe("SafeMetis", "optimize_mode: maximize, cold_start_num: 3, "
                                     "selection_num_starting_points: 10, no_candidates: true")),
    Case("GP", _safe("SafeGP", "optimize_mode: maximize, cold_start_num: 3")),
    Case("PBT", _builtin("PBT", "optimize_mode: maximize, population_size: 2"),
         command=PBT_COMMAND),
    # R=3, eta=3: a bracket of 3 configs on budget 1, then the best one on budget 3.
    Case("Hyperband", _safe("SafeHyperband", "optimize_mode: maximize, R: 3, eta: 3"),
         command=BUDGET_SCORE),
    Case("BOHB", _safe("SafeBOHB", "optimize_mode: maximize, min_budget: 1, max_budget: 3, "
                                   "eta: 3, min_points_in_model: 2"),
         command=BUDGET_SCORE, needs=("ConfigSpace", "statsmodels")),
    Case("BatchTuner", "  name: BatchTuner", space=BATCH, trials=3),
]


def _missing(case: Case) -> list[str]:
    return [m for m in case.needs if importlib.util.find_spec(m) is None]


MAX_PARALLEL = 3
"""Experiments running at once: more NNI managers, dispatchers and trials than this on a 2-core
machine only make each slower (and NNI gives a manager 3 s to answer when it starts)."""

START_TIMEOUT = 60.0


@dataclass
class Ran:
    """An experiment of the matrix, after ``experiment run`` returned."""

    case: Case
    code: int
    out: str
    work: Path

    def experiment_dir(self) -> Path:
        dirs = [d for d in self.work.iterdir() if d.is_dir() and not d.is_symlink()]
        assert len(dirs) == 1, (dirs, self.out)
        return dirs[0]


@dataclass
class _Running:
    case: Case
    proc: subprocess.Popen
    log: Path
    work: Path

    def output(self) -> str:
        return self.log.read_text(errors="replace")


def _start(case: Case, root: Path) -> _Running:
    """``experiment run`` of ``case`` in a subprocess, returned once its first trials run: only
    one NNI manager and dispatcher start at a time (NNI gives each a few seconds to answer)."""
    python = sys.executable
    root.mkdir()
    (root / "trial.ini").write_text(TRIAL_INI.format(
        command=case.command.replace("PYTHON", python)))
    work = root / "nni"
    (root / "config.yml").write_text(CONFIG.format(
        space=json.dumps(case.space or UNIFORM), python=python, max_trials=MAX_TRIALS,
        work=work, tuner=case.tuner))
    cli = Path(python).with_name("hpo-tools")
    log = root / "run.out"
    with open(log, "w") as out:
        proc = subprocess.Popen(
            [str(cli), "experiment", "run", str(root / "config.yml"), "--port",
             str(ex.free_port()), "--timeout", str(RUN_TIMEOUT)],
            cwd=root, stdout=out, stderr=subprocess.STDOUT, text=True)
    running = _Running(case, proc, log, work)
    deadline = time.monotonic() + START_TIMEOUT
    while proc.poll() is None and time.monotonic() < deadline and not _first_trials_listed(
            running.output()):
        time.sleep(0.2)
    return running


def _first_trials_listed(out: str) -> bool:
    """A progress line with a trial listed: ``[0:04] RUNNING trials 2/4: ...``."""
    return any(" trials " in line and " trials 0/" not in line for line in out.splitlines()
               if line.startswith("["))


def _finish(running: _Running) -> Ran:
    try:
        running.proc.wait(timeout=RUN_TIMEOUT + 60)
    except subprocess.TimeoutExpired:
        running.proc.terminate()  # `experiment run` stops its experiment on SIGTERM
        running.proc.wait(timeout=30)
    return Ran(running.case, running.proc.returncode, running.output(), running.work)


@pytest.fixture(scope="module")
def matrix(tmp_path_factory) -> dict[str, Ran]:
    """Every runnable case's experiment, run to its end, MAX_PARALLEL at a time."""
    root = tmp_path_factory.mktemp("tuner_matrix")
    started = time.monotonic()
    pending = [case for case in CASES if not _missing(case)]
    running: list[_Running] = []
    ran: dict[str, Ran] = {}
    try:
        while pending or running:
            while pending and len(running) < MAX_PARALLEL:
                case = pending.pop(0)
                running.append(_start(case, root / case.name))
            done = [r for r in running if r.proc.poll() is not None]
            for r in done:
                running.remove(r)
                ran[r.case.name] = _finish(r)
            if not done:
                time.sleep(0.5)
    finally:
        for r in running:
            ran[r.case.name] = _finish(r)
    print(f"\ntuner matrix: {len(ran)} experiments in {time.monotonic() - started:.0f} s")
    return ran


@pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
def test_tuner_runs_every_trial_to_a_best_score(matrix, case):
    missing = _missing(case)
    if missing:
        pytest.skip(f"{case.name} needs {', '.join(missing)}: pip install 'hpo-tools[tuners]'")
    ran = matrix[case.name]
    exp_dir = ran.experiment_dir()
    # `experiment run` exits 0 only when the experiment ended well (DONE, or the tuner had no
    # more points and nothing ran): no dead dispatcher, no timeout.
    assert ran.code == 0, ran.out
    header = [line for line in ran.out.splitlines() if line.startswith("experiment ")][-1]
    assert any(f": {s} after " in header for s in ("DONE", "TUNER_NO_MORE_TRIAL")), ran.out
    snapshot = ex.build_snapshot(ex.experiment_files(exp_dir), status="")
    outcomes = [view.outcome.value for view in snapshot.trials]
    # Every trial the tuner gave ran to a success under our runner...
    assert outcomes == ["succeeded"] * case.trials, (outcomes, ran.out)
    # ...and the best one was exported.
    best = json.loads((exp_dir / "best" / "best_trial.json").read_text())
    scores = [run.final["score"] for run in (view.run for view in snapshot.trials)]
    assert best["score"] == max(scores), (best, scores)
    assert not processes_of(exp_dir.name), "experiment left processes running"


def test_budget_tuners_hand_each_trial_its_budget_and_promote_one(matrix):
    for name in ("Hyperband", "BOHB"):
        if name not in matrix:
            continue
        runs = ex.experiment_files(matrix[name].experiment_dir()).trial_runs()
        budgets = sorted(float(run.params["TRIAL_BUDGET"]) for run in runs)
        # A first round of 3 configs on budget 1, then the best of them on budget 3.
        assert budgets == [1.0, 1.0, 1.0, 3.0], (name, budgets)


def test_pbt_trials_save_checkpoints_where_pbt_says(matrix):
    if "PBT" not in matrix:
        pytest.skip("PBT did not run")
    runs = ex.experiment_files(matrix["PBT"].experiment_dir()).trial_runs()
    saved = [Path(run.params["save_checkpoint_dir"]) / "ckpt" for run in runs]
    assert all(path.is_file() for path in saved), saved
    # Two PBT steps of a population of 2: the second step loads what the first one saved.
    assert {run.params["load_checkpoint_dir"] for run in runs} & {
        run.params["save_checkpoint_dir"] for run in runs}
    assert os.path.commonpath([str(p) for p in saved]) != "/"
