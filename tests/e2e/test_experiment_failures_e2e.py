"""How `hpo-tools experiment run` ends when things go wrong, each through a real NNI experiment.

One tiny setup is shared: a platform trial file whose job prints a stdout metric line (and, per
test, sleeps or removes its own edited config), a one-choice search space, one trial at a time.
Each experiment takes roughly 10-20 s, most of it NNI starting and stopping. After every test no
process of the experiment may be left: NNI's manager and dispatcher, the trial runner, the job.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

from hpo_tools.cli import main

from .procs import live_processes

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

BASE_CONFIG = "train_config {\n  num_steps: 100\n}\n"
SEARCH_SPACE = {"train_config.num_steps": {"_type": "choice", "_value": [5]}}

# The job prints one scored step (the stdout regex below) and then does what the test needs.
# MARKER is passed as the job's argv[1] so the job's process can be found (and killed) by it.
TRIAL_INI = """\
[platform_config]
name=Local
cmd1=python -c "import sys, time; print('auc=0.6', flush=True); time.sleep({sleep})" {marker}
{more}
[metric_config]
metric_type=stdout
metric_dict={{"auc=([0-9.]+)": 1}}
optimize_mode=maximize

[params_config]
params_src_dst_filepath1=pipeline.config,${{NNI_OUTPUT_DIR}}/configs/pipeline.config
"""

CONFIG_YML = """\
searchSpaceFile: search_space.json
trialCommand: python3 -m hpo_tools.run --config trial.ini
trialCodeDirectory: .
trialConcurrency: 1
maxTrialNumber: {max_trials}
maxTrialDuration: 120s
experimentWorkingDirectory: {work}
{tuner}
trainingService:
  platform: local
"""

RANDOM_TUNER = """\
tuner:
  name: Random
  classArgs: {optimize_mode: maximize, seed: 1}"""

# How long the test waits for NNI to start a trial's job (a few seconds on an idle machine).
JOB_START_TIMEOUT = 90


class Setup:
    """The experiment files of one test, and what identifies its processes."""

    def __init__(self, root: Path, *, sleep: float, more: str = "", tuner: str = RANDOM_TUNER,
                 max_trials: int = 1) -> None:
        self.root = root
        self.marker = f"hpo-failures-e2e-{uuid.uuid4().hex[:12]}"
        (root / "pipeline.config").write_text(BASE_CONFIG)
        (root / "search_space.json").write_text(json.dumps(SEARCH_SPACE))
        (root / "trial.ini").write_text(TRIAL_INI.format(sleep=sleep, marker=self.marker,
                                                         more=more))
        self.config = root / "config.yml"
        self.config.write_text(CONFIG_YML.format(work=root / "nni", tuner=tuner,
                                                 max_trials=max_trials))
        self.work = root / "nni"
        self._experiment_id: str | None = None

    def experiment_id(self) -> str | None:
        """The id of the (single) experiment started under this setup's working directory."""
        if self._experiment_id is not None:
            return self._experiment_id
        # NNI adds a `_latest` symlink beside the experiment directory.
        dirs = ([d.name for d in self.work.iterdir() if d.is_dir() and not d.is_symlink()]
                if self.work.is_dir() else [])
        if len(dirs) == 1:
            self._experiment_id = dirs[0]
        return self._experiment_id

    def processes(self) -> dict[int, str]:
        """Live processes of this setup: NNI's manager and dispatcher (the experiment id is on
        their command line), the runner (NNI_EXP_ID in its environment), the job (the marker)."""
        exp_id = self.experiment_id()
        found = {}
        for pid, cmdline, environ in live_processes():
            if cmdline and (self.marker in cmdline or (exp_id is not None and (
                    exp_id in cmdline or f"NNI_EXP_ID={exp_id}".encode() in environ))):
                found[pid] = cmdline
        return found

    def wait_for_job(self, proc: subprocess.Popen | None = None) -> None:
        """Wait until NNI has started the trial's job (its process carries the marker)."""
        deadline = time.monotonic() + JOB_START_TIMEOUT
        while not any(self.marker in c for c in self.processes().values()):
            if proc is not None and proc.poll() is not None:
                pytest.fail(f"hpo-tools exited ({proc.returncode}) before the job started")
            if time.monotonic() > deadline:
                pytest.fail(f"no job started within {JOB_START_TIMEOUT} s; load average "
                            f"{os.getloadavg()}")
            time.sleep(0.2)

    def kill_leftovers(self) -> dict[int, str]:
        """SIGKILL whatever of this setup still runs (so a failed test leaves nothing behind);
        returns what was found."""
        left = self.processes()
        for pid in left:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        return left

    def assert_nothing_left(self) -> None:
        # The stop must take everything with it: a left manager holds its port, a left job
        # keeps using the machine. NNI reaps its children asynchronously: allow a moment.
        deadline = time.monotonic() + 10
        while self.processes() and time.monotonic() < deadline:
            time.sleep(0.2)
        assert self.processes() == {}


@pytest.fixture
def setup_factory(tmp_path):
    """Creates the shared tiny experiment setup; kills its leftover processes after the test."""
    made: list[Setup] = []

    def make(*, sleep: float, more: str = "", tuner: str = RANDOM_TUNER,
             max_trials: int = 1) -> Setup:
        made.append(Setup(tmp_path, sleep=sleep, more=more, tuner=tuner, max_trials=max_trials))
        return made[-1]

    yield make
    for setup in made:
        setup.kill_leftovers()


def _start_cli(setup: Setup, port: int, *extra: str) -> subprocess.Popen:
    """`hpo-tools experiment run` as a user starts it: its own session (a terminal's Ctrl-C goes
    to the foreground process group), output through pipes."""
    hpo_tools = Path(sys.executable).with_name("hpo-tools")
    return subprocess.Popen(
        [str(hpo_tools), "experiment", "run", str(setup.config), "--port", str(port), *extra],
        cwd=setup.root, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        start_new_session=True)


def _manager_pid(setup: Setup, port: int) -> int:
    """The pid of NNI's manager (node running nni_node/main.js on our port)."""
    for pid, cmdline in setup.processes().items():
        if "main.js" in cmdline and f"--port {port}" in cmdline:
            return pid
    raise AssertionError(f"no NNI manager on port {port} among {setup.processes()}")


def test_cli_run_whose_best_export_fails_prints_the_summary_then_one_error_line(
        setup_factory, free_port, capsys):
    # The trial succeeds with a score, but its last command removes the edited config that
    # params.json lists: the export of the best trial then cannot read it.
    setup = setup_factory(sleep=0, more="cmd2=rm ${NNI_OUTPUT_DIR}/configs/pipeline.config")
    code = main(["experiment", "run", str(setup.config), "--port", str(free_port)])
    out, err = capsys.readouterr()
    exp_id = setup.experiment_id()
    assert exp_id is not None, out + err
    root = setup.work / exp_id
    # The experiment ran and its trial succeeded: the summary is worth printing...
    assert f"experiment {exp_id}: DONE after" in out, out + err
    assert "best: trial " in out and "score 0.6000" in out, out + err
    # ...then exactly one error line, and exit 1 (not 0: nothing exported; not 2: the
    # input was fine).
    assert code == 1, out + err
    assert len(err.splitlines()) == 1, err
    assert err.startswith("error: could not export the best trial: "), err
    assert "configs/pipeline.config: cannot read the trial's edited config" in err
    # The retry command works as printed: --experiment-dir names the experiment itself.
    assert err.rstrip().endswith(
        f"(retry with hpo-tools experiment best {exp_id} --experiment-dir {root})"), err
    assert not (root / "best" / "pipeline.config").exists()
    setup.assert_nothing_left()


def test_summary_after_a_timeout_says_stopped_by_timeout_not_nni_status(
        setup_factory, free_port, capsys):
    setup = setup_factory(sleep=120)
    code = main(["experiment", "run", str(setup.config), "--port", str(free_port),
                 "--timeout", "3"])
    out, err = capsys.readouterr()
    exp_id = setup.experiment_id()
    assert exp_id is not None, out + err
    # NNI still said RUNNING when the timeout stopped it; the summary must say what
    # happened instead.
    header = out.split("\n\n", 1)[1].splitlines()[0]
    assert header.startswith(f"experiment {exp_id}: stopped by timeout after 0:0"), out
    assert "timeout: stopped after 3 s" in out
    assert code == 1, out + err  # no trial succeeded in 3 s (the job sleeps 120 s)
    setup.assert_nothing_left()


def test_summary_after_ctrl_c_says_interrupted_not_nni_status(setup_factory, free_port):
    setup = setup_factory(sleep=120)
    proc = _start_cli(setup, free_port)
    try:
        setup.wait_for_job(proc)
        # Ctrl-C in a terminal: SIGINT to the foreground process group. The job runs, so NNI has
        # started the trial (its directory and params.json exist), but NNI's /trial-jobs may not
        # list it yet (it lags behind the trial's start, and the last poll may be 2 s old): the
        # summary must show the trial all the same, whichever NNI's list was.
        os.killpg(proc.pid, signal.SIGINT)
        out, err = proc.communicate(timeout=60)
        exp_id = setup.experiment_id()
        trial_ids = [d.name for d in
                     (setup.work / exp_id / "environments" / "local-env" / "trials").iterdir()]
        assert len(trial_ids) == 1, trial_ids
        assert "interrupted: experiment stopped" in out, out + err
        summary = out.split("\n\n", 1)[1]
        header = summary.splitlines()[0]
        # The elapsed time is not checked to the minute: a loaded machine may take long to start.
        assert re.fullmatch(
            rf"experiment {exp_id}: interrupted after \d+:\d\d, 1 trials \(maximize\)",
            header), out
        # The interrupted trial was stopped with the experiment, and says so.
        assert " cancelled " in summary, out
        row = next(line for line in summary.splitlines() if trial_ids[0] in line)
        assert row.split()[:2] == [trial_ids[0], "cancelled"], out
        assert "totals: 0 succeeded, 0 running, 0 stopped by assessor, 1 cancelled, 0 failed" \
            in summary, out
        assert proc.returncode == 130, out + err
        assert "Traceback" not in err, err
        setup.assert_nothing_left()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def test_cli_run_whose_nni_manager_dies_stops_it_and_prints_one_error_line(
        setup_factory, free_port):
    setup = setup_factory(sleep=120)
    proc = _start_cli(setup, free_port)
    try:
        setup.wait_for_job(proc)
        os.kill(_manager_pid(setup, free_port), signal.SIGKILL)
        out, err = proc.communicate(timeout=90)
        exp_id = setup.experiment_id()
        log = setup.work / exp_id / "log" / "nnimanager.log"
        # A run whose manager died did not end as it should: not a success, one error line,
        # and no traceback (neither ours nor the one NNI logs when it cannot stop the manager).
        assert proc.returncode == 1, out + err
        assert err.splitlines() == [
            f"error: NNI's manager stopped answering on port {free_port} (ConnectionError); "
            f"the experiment was stopped; see {log}"], err
        header = out.split("\n\n", 1)[1].splitlines()[0]
        assert header.startswith(f"experiment {exp_id}: NNI's manager lost after 0:"), out
        # The trial the dead manager had started must not be left running.
        setup.assert_nothing_left()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.communicate()


def _summary(out: str) -> list[str]:
    """The summary's lines (after the blank line that ends the progress lines)."""
    return out.split("\n\n", 1)[1].splitlines()


def test_cli_run_whose_tuner_dies_after_a_success_ends_in_error_and_exits_1(
        setup_factory, free_port, capsys):
    # NNI 3.0's Hyperband dies on the first metric of the first trial (microsoft/nni#5263):
    # TypeError on its own string parameter ids. That trial still succeeds, NNI never submits
    # another one and keeps saying RUNNING.
    setup = setup_factory(sleep=0, max_trials=4, tuner="""\
tuner:
  name: Hyperband
  classArgs: {optimize_mode: maximize, R: 2, eta: 2}""")
    code = main(["experiment", "run", str(setup.config), "--port", str(free_port),
                 "--timeout", "90"])
    out, err = capsys.readouterr()
    exp_id = setup.experiment_id()
    assert exp_id is not None, out + err
    log = setup.work / exp_id / "log" / "dispatcher.log"
    summary = _summary(out)
    # The header says how the experiment ended, and the run was not cut short by the timeout.
    assert summary[0].startswith(f"experiment {exp_id}: ERROR after 0:"), out
    assert "totals: 1 succeeded, " in out, out
    # One succeeded trial does not make an experiment whose tuner died a success...
    assert code == 1, out + err
    # ...and the one error line names the tuner, its own error, the NNI bug and the log.
    assert err.splitlines() == [
        "error: the tuner (Hyperband) failed: TypeError: '<=' not supported between instances "
        "of 'str' and 'int' (a bug of NNI's Hyperband and BOHB, microsoft/nni#5263: use "
        f"hpo_tools.tuners.SafeHyperband or SafeBOHB; see {log})"], err
    setup.assert_nothing_left()


def test_cli_run_whose_tuner_cannot_start_names_the_tuners_own_error(
        setup_factory, free_port, capsys, tmp_path):
    # A tuner whose module cannot be imported (a built-in's missing dependency is refused before
    # the start now: tests/test_tuners.py): the dispatcher dies at once, and NNI itself only
    # says "Tuner did not connect in 10 seconds" 10 s later.
    package = tmp_path / "tuner_pkg"
    package.mkdir()
    (package / "broken_tuner.py").write_text(
        "raise ModuleNotFoundError(\"No module named 'hyperopt_like'\")\n")
    setup = setup_factory(sleep=0, tuner=f"""\
tuner:
  codeDirectory: {package}
  className: broken_tuner.BrokenTuner""")
    started = time.monotonic()
    code = main(["experiment", "run", str(setup.config), "--port", str(free_port),
                 "--timeout", "60"])
    took = time.monotonic() - started
    out, err = capsys.readouterr()
    exp_id = setup.experiment_id()
    assert exp_id is not None, out + err
    log = setup.work / exp_id / "log" / "dispatcher.log"
    assert code == 1, out + err
    assert _summary(out)[0].startswith(f"experiment {exp_id}: ERROR after 0:"), out
    assert err.splitlines() == [
        "error: the tuner (broken_tuner.BrokenTuner) failed to start: ModuleNotFoundError: "
        f"No module named 'hyperopt_like' (see {log})"], err
    # Noticed from the dispatcher's log, not from NNI's 10 s connect timeout (NNI's start and
    # stop take a few seconds more; generous for a loaded machine).
    assert "did not connect" not in out + err
    assert took < 45, took
    setup.assert_nothing_left()


def test_cli_run_whose_assessor_cannot_be_imported_names_the_assessor(
        setup_factory, free_port, capsys, tmp_path):
    package = tmp_path / "assessor_pkg"
    package.mkdir()
    (package / "broken_assessor.py").write_text(
        "raise ImportError('broken_assessor needs a module that is not installed')\n")
    setup = setup_factory(sleep=0, tuner=RANDOM_TUNER + f"""
assessor:
  codeDirectory: {package}
  className: broken_assessor.BrokenAssessor""")
    code = main(["experiment", "run", str(setup.config), "--port", str(free_port),
                 "--timeout", "60"])
    out, err = capsys.readouterr()
    exp_id = setup.experiment_id()
    assert exp_id is not None, out + err
    log = setup.work / exp_id / "log" / "dispatcher.log"
    assert code == 1, out + err
    # The tuner was created; the assessor's module raised: the assessor is named, not "NNI".
    assert err.splitlines() == [
        "error: the assessor (broken_assessor.BrokenAssessor) failed to start: ImportError: "
        f"broken_assessor needs a module that is not installed (see {log})"], err
    setup.assert_nothing_left()


def test_summary_of_a_failed_trial_shows_its_first_error_line(setup_factory, free_port, capsys):
    setup = setup_factory(sleep=0, more='cmd2=python -c "import sys; sys.exit(3)"')
    code = main(["experiment", "run", str(setup.config), "--port", str(free_port),
                 "--timeout", "90"])
    out, err = capsys.readouterr()
    exp_id = setup.experiment_id()
    assert exp_id is not None, out + err
    trials = setup.work / exp_id / "environments" / "local-env" / "trials"
    (trial_id,) = [d.name for d in trials.iterdir()]
    summary = _summary(out)
    assert "totals: 0 succeeded, 0 running, 0 stopped by assessor, 0 cancelled, 1 failed" \
        in summary, out
    # The runner's own account of the failure, right in the summary: no log digging needed.
    assert f"trial {trial_id} failed: cmd2 failed: exit code 3" in summary, out
    assert code == 1, out + err
    setup.assert_nothing_left()
