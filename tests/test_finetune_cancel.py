"""SIGINT to a finetune trial (how NNI stops one) during its second day: the day's job is
cancelled, the chain stops, the runner exits 128+2 within 3 s, result.json says cancelled."""

from __future__ import annotations

import json
import os
import shlex
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

PYTHON = shlex.quote(sys.executable)


def _alive(pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as handle:
            return handle.read().rsplit(")", 1)[1].split()[0] != "Z"
    except FileNotFoundError:
        return False


def test_sigint_on_day_two_cancels_its_job_and_stops_the_chain(tmp_path: Path) -> None:
    pidfile = tmp_path / "job.pid"
    # Day 1 prints its metric and ends; day 2 (and any later day) writes its pid and sleeps.
    job = tmp_path / "job.py"
    job.write_text(
        "import os, sys, time\n"
        "if sys.argv[1] == '20220614':\n"
        "    print('auc=0.7', flush=True)\n"
        "    sys.exit(0)\n"
        f"open({str(pidfile)!r}, 'w').write(str(os.getpid()))\n"
        "time.sleep(60)\n"
    )
    trial = tmp_path / "trial.ini"
    trial.write_text(f"""\
[finetune_config]
model_dir=${{NNI_OUTPUT_DIR}}/model/{{bizdate}}
fine_tune_checkpoint=/begin

[platform_config]
name=Local
cmd1=echo from {{fine_tune_checkpoint}} && {PYTHON} {job} {{bizdate}}

[metric_config]
metric_type=stdout
metric_dict={{"auc=([0-9.]+)": 1}}
""")
    env = {k: v for k, v in os.environ.items() if not k.startswith("NNI_")}
    env["PYTHONPATH"] = str(Path(__file__).resolve().parents[1])
    runner = subprocess.Popen(
        [sys.executable, "-m", "hpo_tools.run", "--config", str(trial), "--exp_dir",
         str(tmp_path / "exp"), "--interval", "0.2", "--start_time", "20220614",
         "--end_time", "20220616"],
        cwd=tmp_path, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    job_pid = 0
    try:
        deadline = time.monotonic() + 30
        while not (pidfile.exists() and pidfile.read_text()):
            if runner.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"day 2 never started: {runner.communicate(timeout=5)}")
            time.sleep(0.05)
        job_pid = int(pidfile.read_text())
        started = time.monotonic()
        runner.send_signal(signal.SIGINT)
        code = runner.wait(timeout=10)
        elapsed = time.monotonic() - started
        err = runner.communicate(timeout=5)[1].decode("utf-8", errors="replace")
    finally:
        if runner.poll() is None:
            runner.kill()
        if job_pid and _alive(job_pid):
            os.kill(job_pid, signal.SIGKILL)
    # NNI sends SIGKILL 5 s after SIGINT; a non-zero exit keeps a half result from the tuner.
    assert elapsed < 3.0, (elapsed, err)
    # It dies by SIGINT itself (Popen: -2), so NNI records USER_CANCELED, not FAILED.
    assert code == -signal.SIGINT, err
    assert not _alive(job_pid)
    trial_dir = tmp_path / "exp" / "standalone" / "trials" / "standalone"
    result = json.loads((trial_dir / "result.json").read_text())
    # Day 1 was reported; the chain stopped at day 2, which is named; day 3 never started.
    assert result["status"] == "cancelled" and "day 20220615" in result["message"]
    assert [entry["day"] for entry in result["intermediate"]] == ["20220614"]
    assert not (trial_dir / "days" / "20220616").exists()
