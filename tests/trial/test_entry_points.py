"""`python -m hpo_tools.run`, `hpo-tools run`: arguments, exit codes, import hygiene."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo_tools import cli
from hpo_tools import run as run_module
from hpo_tools.commands.run import parse_params
from hpo_tools.errors import ConfigError

from .conftest import TRAIN

REPO = Path(__file__).resolve().parents[2]
TRIAL = (
    "[platform_config]\nname=Local\n"
    f"cmd1={TRAIN} --lr ${{lr}} --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 2\n"
    "[metric_config]\nmetric_source=${NNI_OUTPUT_DIR}/model/eval_val\nmetric_dict={\"auc\": 1}\n"
)


def test_hpo_tools_run_prints_results_and_exits_0(tmp_path, write_trial, capsys):
    trial = write_trial(TRIAL)
    code = cli.main(["run", "--config", str(trial), "--params", '{"lr": 0.01}',
                     "--exp_dir", str(tmp_path / "exp"), "--interval", "0.05"])
    out = capsys.readouterr().out
    assert code == 0
    # What would have gone to NNI is printed: each step, then the final result.
    assert out.count("intermediate result") == 2
    assert "final result: {\"default\": 0.6" in out
    assert (tmp_path / "exp/standalone/trials/standalone/result.json").exists()


def test_hpo_tools_run_reads_params_from_a_file(tmp_path, write_trial, capsys):
    trial = write_trial(TRIAL)
    params = tmp_path / "p.json"
    params.write_text('{"lr": 0.01}')
    code = cli.main(["run", "--config", str(trial), "--params", f"@{params}",
                     "--exp_dir", str(tmp_path / "exp"), "--trial-id", "mine",
                     "--interval", "0.05"])
    assert code == 0
    saved = json.loads((tmp_path / "exp/standalone/trials/mine/params.json").read_text())
    assert saved["params"] == {"lr": 0.01} and saved["trial_id"] == "mine"


@pytest.mark.parametrize(
    ("text", "message"),
    [("{bad", "--params: not valid JSON"), ("[1]", "expected a JSON object, got list"),
     ("@/no/such/file", "cannot read")],
)
def test_bad_params_are_config_errors(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_params(text)


def test_hpo_tools_run_config_error_exits_2(tmp_path, write_trial, capsys):
    trial = write_trial(TRIAL.replace("name=Local", "name=Lokal"))
    code = cli.main(["run", "--config", str(trial), "--params", "{}",
                     "--exp_dir", str(tmp_path / "exp")])
    assert code == 2
    err = capsys.readouterr().err
    # One line naming file, section and key, with the near miss.
    assert "error: " in err and "[platform_config] name" in err and "'local'" in err


def test_module_run_config_error_exits_2(tmp_path, write_trial, capsys):
    trial = write_trial(TRIAL.replace("${lr}", "${lrr}"))
    assert run_module.main(["--config", str(trial), "--exp_dir", str(tmp_path / "e")]) == 2
    assert "${lrr} is not defined" in capsys.readouterr().err


def test_module_run_rejects_unknown_flags():
    # parse_known_args silently ignored typos in the old runner; ours stops.
    with pytest.raises(SystemExit) as info:
        run_module.main(["--config", "x.ini", "--exp-dri", "d"])
    assert info.value.code == 2


def test_module_run_standalone_succeeds(tmp_path, write_trial):
    trial = write_trial(TRIAL.replace("${lr}", "0.01"))
    code = run_module.main(["--config", str(trial), "--exp_dir", str(tmp_path / "e"),
                            "--interval", "0.05"])
    assert code == 0


def test_the_trial_command_of_hpo_tools_0_1_runs_the_same_runner(tmp_path, write_trial):
    # exp.yml files written for hpo_tools 0.1.x say
    # `trialCommand: python3 -m hpo_tools.core.utils.run --config=./trial.ini`.
    write_trial(TRIAL.replace("${lr}", "0.01"))
    done = subprocess.run(
        [sys.executable, "-m", "hpo_tools.core.utils.run", "--config=./trial.ini",
         "--exp_dir", str(tmp_path / "e"), "--interval", "0.05"],
        cwd=tmp_path, capture_output=True, text=True, timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads((tmp_path / "e/standalone/trials/standalone/result.json").read_text())
    assert result["status"] == "succeeded" and result["final"]["score"] > 0
    # A bad trial file is the same exit 2 with one error line as `python -m hpo_tools.run`.
    bad = subprocess.run([sys.executable, "-m", "hpo_tools.core.utils.run", "--config=nope.ini"],
                         cwd=tmp_path, capture_output=True, text=True, timeout=60)
    assert bad.returncode == 2 and bad.stderr.startswith("error: nope.ini: cannot read")


def test_runner_path_imports_neither_tensorflow_nor_nni_outside_nni(tmp_path, write_trial):
    trial = write_trial(TRIAL.replace("${lr}", "0.01"))
    # A whole standalone trial, then a look at what it imported.
    code = (
        "import sys, hpo_tools.run\n"
        f"code = hpo_tools.run.main(['--config', {str(trial)!r}, '--exp_dir', "
        f"{str(tmp_path / 'e')!r}, '--interval', '0.05'])\n"
        "bad = [m for m in ('tensorflow', 'nni', 'odps', 'oss2') if m in sys.modules]\n"
        "print(code, bad)"
    )
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                          env=env, timeout=60, cwd=tmp_path)
    # TensorFlow costs ~3 s and NNI ~1 s per trial start; neither belongs on this path.
    assert done.stdout.strip().splitlines()[-1] == "0 []", done.stderr


def test_hpo_tools_run_keeps_stderr_quiet_without_verbose(tmp_path, write_trial):
    trial = write_trial(TRIAL)
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO)}
    done = subprocess.run(
        [sys.executable, "-m", "hpo_tools", "run", "--config", str(trial), "--params",
         '{"lr": 0.01}', "--exp_dir", str(tmp_path / "exp"), "--interval", "0.05"],
        capture_output=True, text=True, env=env, timeout=60, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr
    # The runner's INFO lines go to trial.log, not to the terminal (that is what -v is for).
    assert "INFO" not in done.stderr
    log = (tmp_path / "exp/standalone/trials/standalone/trial.log").read_text()
    assert "INFO (hpo_tools.trial.runner) trial standalone" in log


def test_module_run_help_names_the_default_exp_dir_outside_nni():
    help_text = " ".join(run_module.build_parser().format_help().split())
    # Outside NNI the experiment directory is ./exp/<id> (resolve_paths); the help must say so.
    assert "(default: NNI's own experiment directory under NNI, else ./exp)" in help_text


@pytest.mark.parametrize("trial_id", ["../x", "a/b", "..", ".", "", "x\n", "a b", "x" * 65])
def test_hpo_tools_run_rejects_a_trial_id_that_is_not_a_plain_name(
    tmp_path, write_trial, capsys, trial_id
):
    trial = write_trial(TRIAL)
    code = cli.main(["run", "--config", str(trial), "--params", "{}",
                     "--exp_dir", str(tmp_path / "exp"), "--trial-id", trial_id])
    err = capsys.readouterr().err
    # The id becomes a directory: a user error in one line (was a ValueError traceback), and
    # nothing is written anywhere.
    assert code == 2
    assert err.startswith("error: --trial-id ") and err.count("\n") == 1
    assert not (tmp_path / "exp").exists()


@pytest.mark.parametrize("trial_id", ["Ab3dE", "try-2", "run_1.b"])
def test_hpo_tools_run_accepts_plain_trial_ids(trial_id):
    from hpo_tools.commands.run import check_trial_id

    assert check_trial_id(trial_id) == trial_id


# -- an HpoError after a job was launched is a failed trial (exit 1), not a bad file (exit 2) --

KEY_VALUE = "unreachableKeyValue77"
MAXCOMPUTE_TRIAL = (
    "[platform_config]\nname=MaxCompute\n"
    "cmd1=PAI -name easy_rec_ext -Dcmd=train\ncmd2=PAI -name easy_rec_ext -Dcmd=evaluate\n"
    '[metric_config]\nmetric_source=/nowhere\nmetric_dict={"auc": 1}\n'
    "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
    "access_id=${HPO_TEST_ID}\naccess_key=${HPO_TEST_KEY}\n"
)


@pytest.fixture
def odps_down_after_cmd1(monkeypatch):
    """MaxCompute through FakeODPS: cmd1 runs and succeeds, then submitting cmd2 fails the way
    an unreachable service does (the SDK error quotes the access key)."""
    from hpo_tools.platforms import maxcompute
    from hpo_tools.testing.odps import FakeODPS

    class OdpsDownAfterFirstSubmit(FakeODPS):
        def run_xflow(self, *args, **kwargs):
            instance = super().run_xflow(*args, **kwargs)
            self.submit_error = ConnectionError(f"cannot reach http://odps with key {KEY_VALUE}")
            return instance

    fake = OdpsDownAfterFirstSubmit(polls=0)
    monkeypatch.setattr(maxcompute, "_default_odps_factory", fake.connect)
    monkeypatch.setenv("HPO_TEST_ID", "someAccessId")
    monkeypatch.setenv("HPO_TEST_KEY", KEY_VALUE)
    return fake


def _assert_failed_trial_after_cmd1(fake, trial_dir, err):
    # One line "error: ..." naming what failed, the key masked.
    lines = [line for line in err.splitlines() if line.startswith("error: ")]
    assert len(lines) == 1 and "cannot reach http://odps" in lines[0], err
    assert KEY_VALUE not in err
    assert len(fake.submitted) == 1  # cmd1 really ran before the error
    result = json.loads((trial_dir / "result.json").read_text())
    assert result["status"] == "failed" and result["final"] is None
    assert "with key ***" in result["message"]


def test_module_run_platform_error_after_cmd1_ran_exits_1(
    tmp_path, write_trial, capsys, odps_down_after_cmd1
):
    trial = write_trial(MAXCOMPUTE_TRIAL)
    code = run_module.main(["--config", str(trial), "--exp_dir", str(tmp_path / "e"),
                            "--interval", "0.05"])
    # Exit 2 promises "bad trial file, nothing launched"; cmd1 ran, so the trial failed.
    assert code == 1
    _assert_failed_trial_after_cmd1(
        odps_down_after_cmd1, tmp_path / "e/standalone/trials/standalone",
        capsys.readouterr().err,
    )


def test_hpo_tools_run_platform_error_after_cmd1_ran_exits_1(
    tmp_path, write_trial, capsys, odps_down_after_cmd1
):
    from hpo_tools.jobs import JobRegistry
    from hpo_tools.platforms import JobState

    trial = write_trial(MAXCOMPUTE_TRIAL)
    code = cli.main(["run", "--config", str(trial), "--params", "{}",
                     "--exp_dir", str(tmp_path / "e"), "--trial-id", "T", "--interval", "0.05"])
    assert code == 1
    _assert_failed_trial_after_cmd1(
        odps_down_after_cmd1, tmp_path / "e/standalone/trials/T", capsys.readouterr().err
    )
    # The registry says the trial failed (and cmd1's job is recorded), so kill/resume see it;
    # cmd2's submission, recorded before it was sent, failed: nothing is left live.
    record = JobRegistry(tmp_path / "e/standalone").load("T")
    assert record.state is JobState.FAILED
    assert [(j.command_index, j.state) for j in record.jobs] == [
        (1, JobState.SUCCEEDED), (2, JobState.FAILED)]


def test_module_run_platform_error_before_any_launch_still_exits_2(
    tmp_path, write_trial, capsys, odps_down_after_cmd1
):
    odps_down_after_cmd1.submit_error = ConnectionError("cannot reach http://odps")
    trial = write_trial(MAXCOMPUTE_TRIAL)
    code = run_module.main(["--config", str(trial), "--exp_dir", str(tmp_path / "e")])
    # cmd1 never started: nothing launched, the documented exit 2.
    assert code == 2
    assert odps_down_after_cmd1.submitted == []
    assert "error: " in capsys.readouterr().err


# -- a signal before the runner's handlers: SIGTERM as SIGINT (issue 14) ---------------------


@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM])
def test_module_run_stopped_while_reading_the_trial_file_records_it_and_dies_by_the_signal(
    tmp_path, write_trial, signum
):
    from hpo_tools.failpoints import ENV_FAILPOINT_DIR, ENV_FAILPOINTS

    trial = write_trial(TRIAL.replace("${lr}", "0.01"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           ENV_FAILPOINTS: "read_trial_file=pause", ENV_FAILPOINT_DIR: str(tmp_path)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "hpo_tools.run", "--config", str(trial), "--exp_dir",
         str(tmp_path / "e")], env=env, cwd=tmp_path, stderr=subprocess.PIPE, text=True)
    try:
        # Paused where the trial file is about to be read: the runner's handlers not in yet.
        deadline = time.monotonic() + 60
        while not (tmp_path / "read_trial_file").exists():
            assert runner.poll() is None and time.monotonic() < deadline, runner.stderr.read()
            time.sleep(0.01)
        runner.send_signal(signum)
        err = runner.communicate(timeout=30)[1]
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    name = signal.Signals(signum).name
    # Dead by the signal it got (NNI: USER_CANCELED), saying so.
    assert runner.returncode == -signum, err
    assert f"interrupted by {name}" in err
    # The trial's record says it was cancelled by that signal, nothing having been launched.
    result = json.loads((tmp_path / "e/standalone/trials/standalone/result.json").read_text())
    assert result["status"] == "cancelled" and result["final"] is None, result
    assert result["message"] == f"interrupted by {name} before any job was launched", result
    assert not (tmp_path / "e/standalone/trials/standalone/params.json").exists()


def test_hpo_tools_run_stopped_by_sigterm_while_reading_the_trial_file_records_it(
    tmp_path, write_trial
):
    """`hpo-tools run` as `python -m hpo_tools.run`: a SIGTERM before the runner's handlers
    is the trial's recorded cancellation, not a silent death (its exit code: 128 + 15)."""
    from hpo_tools.failpoints import ENV_FAILPOINT_DIR, ENV_FAILPOINTS

    trial = write_trial(TRIAL.replace("${lr}", "0.01"))
    env = {"PATH": "/usr/bin:/bin", "PYTHONPATH": str(REPO),
           ENV_FAILPOINTS: "read_trial_file=pause", ENV_FAILPOINT_DIR: str(tmp_path)}
    runner = subprocess.Popen(
        [sys.executable, "-m", "hpo_tools", "run", "--config", str(trial), "--params", "{}",
         "--exp_dir", str(tmp_path / "e")], env=env, cwd=tmp_path,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        deadline = time.monotonic() + 60
        while not (tmp_path / "read_trial_file").exists():
            assert runner.poll() is None and time.monotonic() < deadline, runner.stderr.read()
            time.sleep(0.01)
        runner.send_signal(signal.SIGTERM)
        err = runner.communicate(timeout=30)[1]
    finally:
        if runner.poll() is None:
            runner.kill()
            runner.wait()
    assert runner.returncode == 128 + signal.SIGTERM, err
    assert "interrupted by SIGTERM" in err
    result = json.loads((tmp_path / "e/standalone/trials/standalone/result.json").read_text())
    assert result["status"] == "cancelled" and result["final"] is None, result
    assert result["message"] == "interrupted by SIGTERM before any job was launched", result
