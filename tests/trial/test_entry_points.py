"""`python -m hpo_tools.run`, `hpo-tools run`: arguments, exit codes, import hygiene."""

from __future__ import annotations

import json
import subprocess
import sys
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
