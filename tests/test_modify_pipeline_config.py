"""finetune/modify_pipeline_config.py, run as users run it: a real subprocess from a checkout."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
SCRIPT = REPO / "finetune" / "modify_pipeline_config.py"
FINETUNE = REPO / "samples" / "pipeline_finetune.config"
EXP_PATH = (
    "train_config.optimizer_config[0].adam_optimizer.learning_rate."
    "exponential_decay_learning_rate.initial_learning_rate"
)


def _run(*args: str, cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSS_", "PYTHON"))}
    return subprocess.run(
        [sys.executable, str(SCRIPT), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_sets_rate_and_prints_it_read_back(tmp_path):
    out = tmp_path / "ft.config"
    proc = _run(
        "--pipeline_config_path",
        str(FINETUNE),
        "--save_path",
        str(out),
        "--learning_rate",
        "5e-6",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith(f"{EXP_PATH}: ")
    printed = proc.stdout.split(": ", 1)[1].strip()
    # The printed rate is the one in the saved file.
    assert float(printed) == pytest.approx(5e-6)
    assert f"initial_learning_rate: {printed}\n" in out.read_text()


def test_default_rate_and_default_oss_config_need_no_oss_for_local_paths(tmp_path):
    out = tmp_path / "ft.config"
    proc = _run("--pipeline_config_path", str(FINETUNE), "--save_path", str(out), cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr
    assert float(proc.stdout.split(": ", 1)[1]) == pytest.approx(1e-6)


def test_warns_on_stderr_when_raised_to_min(tmp_path):
    out = tmp_path / "ft.config"
    proc = _run(
        "--pipeline_config_path",
        str(FINETUNE),
        "--save_path",
        str(out),
        "--learning_rate",
        "1e-9",
        cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr
    assert "below min_learning_rate" in proc.stderr
    assert float(proc.stdout.split(": ", 1)[1]) == pytest.approx(1e-7)


def test_user_error_exits_2_with_one_line_and_no_traceback(tmp_path):
    out = tmp_path / "ft.config"
    proc = _run(
        "--pipeline_config_path",
        str(tmp_path / "missing.config"),
        "--save_path",
        str(out),
        cwd=tmp_path,
    )
    assert proc.returncode == 2
    assert proc.stderr.startswith("error: ") and "missing.config: no such file" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert not out.exists()


def test_does_not_import_easyrec_or_tensorflow(tmp_path):
    # The script must work on a machine without EasyRec (and without TensorFlow).
    probe = (
        "import runpy, sys; sys.argv = [sys.argv[1]] + sys.argv[2:]\n"
        "try:\n    runpy.run_path(sys.argv[0], run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('easy_rec', 'tensorflow'))\n"
        "print('HEAVY', bad)\nsys.exit(code)\n"
    )
    out = tmp_path / "ft.config"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            probe,
            str(SCRIPT),
            "--pipeline_config_path",
            str(FINETUNE),
            "--save_path",
            str(out),
        ],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout


def test_help_lists_seed_options(tmp_path):
    proc = _run("--help", cwd=tmp_path)
    assert proc.returncode == 0
    for option in ("--pipeline_config_path", "--save_path", "--learning_rate", "--oss_config"):
        assert option in proc.stdout


def test_runs_from_a_checkout_without_the_installed_package(tmp_path):
    # -S skips site-packages' .pth files, so the editable install of hpo_tools is invisible; the
    # dependencies stay importable through PYTHONPATH. The script must find the checkout itself.
    import sysconfig

    env = {k: v for k, v in os.environ.items() if not k.startswith(("OSS_", "PYTHON"))}
    env["PYTHONPATH"] = sysconfig.get_paths()["purelib"]
    out = tmp_path / "ft.config"
    probe = subprocess.run(
        [sys.executable, "-S", "-c", "import hpo_tools"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert probe.returncode != 0  # the premise: hpo_tools is not importable by installation
    proc = subprocess.run(
        [
            sys.executable,
            "-S",
            str(SCRIPT),
            "--pipeline_config_path",
            str(FINETUNE),
            "--save_path",
            str(out),
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    assert out.exists()
