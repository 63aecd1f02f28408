"""Access keys given through ${ENV} never reach a file we write, a log line or relayed output."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from .conftest import TRAIN

# Env var names that do not look like credentials: they are masked because the trial file
# names them in credential keys, not because of their names.
ID_VALUE = "LTAIexampleKeyId4242"
SECRET_VALUE = "s3cr3tValueThatMustNotLeak"


def _run_cli(tmp_path: Path, trial: Path, *extra: str,
             params: str = '{"lr": 0.01}') -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env.update(HPO_TEST_VALUE_A=ID_VALUE, HPO_TEST_VALUE_B=SECRET_VALUE)
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[2])
    return subprocess.run(
        [sys.executable, "-m", "hpo_tools", "-vv", "run", "--config", str(trial),
         "--params", params, "--exp_dir", str(tmp_path / "exp"), "--interval", "0.05",
         *extra],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60,
    )


def _trial(write_trial, cmd1: str) -> Path:
    return write_trial(
        "[platform_config]\nname=Local\n"
        f"cmd1={cmd1}\n"
        f"cmd2={TRAIN} --lr ${{lr}} --model_dir ${{NNI_OUTPUT_DIR}}/model --steps 2\n"
        "[metric_config]\nmetric_source=${NNI_OUTPUT_DIR}/model/eval_val\n"
        'metric_dict={"auc": 1}\n'
        "[oss_config]\nendpoint=http://oss-cn-beijing.aliyuncs.com\n"
        "accessKeyID=${HPO_TEST_VALUE_A}\naccessKeySecret=${HPO_TEST_VALUE_B}\n"
    )


def _files_containing(root: Path, *values: str) -> list[str]:
    found = []
    for path in root.rglob("*"):
        if path.is_file():
            data = path.read_bytes()
            if any(v.encode() in data for v in values):
                found.append(str(path))
    return found


def test_secrets_are_in_no_file_and_no_log_line_after_a_trial(tmp_path, write_trial):
    # The job prints both values: relayed output must be masked too.
    trial = _trial(write_trial, 'echo "id=$HPO_TEST_VALUE_A key=$HPO_TEST_VALUE_B"')
    done = _run_cli(tmp_path, trial)
    assert done.returncode == 0, done.stderr
    assert _files_containing(tmp_path / "exp", ID_VALUE, SECRET_VALUE) == []
    for stream in (done.stdout, done.stderr):
        assert ID_VALUE not in stream and SECRET_VALUE not in stream
    # The masked line is there, so the job really printed it.
    log = (tmp_path / "exp/standalone/trials/standalone/trial.log").read_text()
    assert "id=*** key=***" in log


def test_failed_command_tail_on_stderr_is_masked(tmp_path, write_trial):
    trial = _trial(write_trial, 'echo "key=$HPO_TEST_VALUE_B"; exit 4')
    done = _run_cli(tmp_path, trial)
    assert done.returncode == 1
    assert "key=***" in done.stderr  # the tail is shown...
    assert SECRET_VALUE not in done.stderr  # ...masked
    assert _files_containing(tmp_path / "exp", ID_VALUE, SECRET_VALUE) == []


def test_a_parameter_whose_value_is_a_secret_is_masked_in_params_json(tmp_path, write_trial):
    trial = _trial(write_trial, "true")
    done = _run_cli(tmp_path, trial, params=f'{{"lr": 0.01, "key": "{SECRET_VALUE}"}}')
    assert done.returncode == 0, done.stderr
    # params.json is a file we write: the secret must not be in it, even as a parameter.
    assert _files_containing(tmp_path / "exp", ID_VALUE, SECRET_VALUE) == []
    params = json.loads((tmp_path / "exp/standalone/trials/standalone/params.json").read_text())
    assert params["params"] == {"lr": 0.01, "key": "***"}  # the rest of the record is kept


def test_an_sdk_error_quoting_the_access_key_is_masked_in_the_raised_error(
    tmp_path, write_trial, monkeypatch
):
    """A service error that echoes a key (as MaxCompute's InvalidAccessKeyId does) reaches
    stderr through the CLI's "error: ..." line and result.json: both masked."""
    import pytest

    from hpo_tools.errors import PlatformError
    from hpo_tools.platforms import maxcompute
    from hpo_tools.testing.odps import FakeODPS
    from hpo_tools.trial.reporter import ConsoleReporter
    from hpo_tools.trial_files import run_trial_file

    fake = FakeODPS()
    fake.submit_error = RuntimeError(f"InvalidAccessKeyId: the key {SECRET_VALUE} is not found")
    monkeypatch.setattr(maxcompute, "_default_odps_factory", fake.connect)
    monkeypatch.setenv("HPO_TEST_VALUE_A", ID_VALUE)
    monkeypatch.setenv("HPO_TEST_VALUE_B", SECRET_VALUE)
    trial = write_trial(
        "[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext -Dcmd=train\n"
        '[metric_config]\nmetric_source=/nowhere\nmetric_dict={"auc": 1}\n'
        "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
        "access_id=${HPO_TEST_VALUE_A}\naccess_key=${HPO_TEST_VALUE_B}\n"
    )
    reporter = ConsoleReporter({}, trial_id="T")
    with pytest.raises(PlatformError) as info:
        run_trial_file(trial, reporter, exp_dir=tmp_path / "exp")
    # The error says what failed, without the key.
    assert "InvalidAccessKeyId" in str(info.value)
    assert SECRET_VALUE not in str(info.value)
    assert _files_containing(tmp_path / "exp", ID_VALUE, SECRET_VALUE) == []
    result = json.loads((tmp_path / "exp/standalone/trials/T/result.json").read_text())
    assert result["status"] == "failed" and "InvalidAccessKeyId: the key ***" in result["message"]
