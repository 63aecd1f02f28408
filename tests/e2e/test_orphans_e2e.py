"""A trial runner SIGKILLed while its cloud job runs (nothing of it can clean up then): the job
is stopped at the end of `hpo-tools experiment run`, from the job registry, also when the
runner kept its registry elsewhere (`--exp_dir`: a link in NNI's experiment directory). No
assessor: its trial_end backstop would stop the job first (tests/test_assessor.py covers it).

MaxCompute is faked at the pyodps client (HPO_TOOLS_FAKE_CLOUD: jobs recorded in files, RUNNING
until stopped); NNI, the runner and the SIGKILL are real.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(180)]

REPO = Path(__file__).resolve().parents[2]

TRIAL_INI = """\
[oss_config]
endpoint=http://oss-cn-hangzhou.aliyuncs.com
accessKeyID=${AK}
accessKeySecret=${SK}

[odps_config]
project_name=orphan_dev
odps_endpoint=http://service.odps.aliyun.com/api

[platform_config]
name=MaxCompute
cmd1=PAI -name=easy_rec_ext -project=algo_public -Dcmd=train
    -Dconfig=oss://orphan-bucket/c.config -Dmodel_dir=oss://orphan-bucket/m/${trial_id}

[metric_config]
metric_type=summary
metric_source=oss://orphan-bucket/m/${trial_id}/eval_val
metric_dict={"auc": 1}
"""

CONFIG = """\
searchSpace: {{x: {{_type: choice, _value: [1]}}}}
trialCommand: {python} -m hpo_tools.run --config trial.ini {exp_dir}
trialCodeDirectory: .
trialConcurrency: 1
maxTrialNumber: 1
experimentWorkingDirectory: {work}
tuner:
  name: Random
trainingService:
  platform: local
"""


def _runner_pids() -> list[int]:
    pids = []
    for stat in Path("/proc").glob("[0-9]*/cmdline"):
        try:
            argv = stat.read_bytes().split(b"\0")
        except OSError:
            continue
        if b"hpo_tools.run" in argv and b"trial.ini" in argv:
            pids.append(int(stat.parent.name))
    return pids


def _kill_runner_once_submitted(cloud: Path, killed: dict) -> None:
    deadline = time.monotonic() + 90
    submissions = cloud / ".maxcompute" / "submissions.jsonl"
    while time.monotonic() < deadline:
        if submissions.exists() and submissions.read_text().strip():
            pids = _runner_pids()
            if pids:
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                killed["pids"] = pids
                return
        time.sleep(0.1)


@pytest.mark.parametrize("own_exp_dir", [False, True], ids=["nni-dir", "exp_dir-elsewhere"])
def test_a_sigkilled_runners_job_is_stopped_when_the_experiment_ends(tmp_path, own_exp_dir):
    cloud = tmp_path / "cloud"
    (cloud / "orphan-bucket").mkdir(parents=True)
    (cloud / "orphan-bucket" / "c.config").write_text(
        (REPO / "samples" / "pipeline.config").read_text())
    (tmp_path / "trial.ini").write_text(TRIAL_INI)
    exp_dir = f"--exp_dir {tmp_path / 'mine'}" if own_exp_dir else ""
    (tmp_path / "config.yml").write_text(CONFIG.format(
        python=sys.executable, exp_dir=exp_dir, work=tmp_path / "nni"))
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NNI_", "HPO_TOOLS_"))}
    env.update(PYTHONPATH=str(REPO), AK="LTAIorphanKeyId", SK="orphanKeySecret123",
               HPO_TOOLS_FAKE_CLOUD=str(cloud))  # jobs stay RUNNING until stopped
    killed: dict = {}
    killer = threading.Thread(target=_kill_runner_once_submitted, args=(cloud, killed),
                              daemon=True)
    killer.start()
    done = subprocess.run(
        [sys.executable, "-m", "hpo_tools", "experiment", "run", "config.yml", "--timeout",
         "120"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=170)
    killer.join(5)
    assert killed.get("pids"), "the runner was never killed: the test proved nothing\n" + (
        done.stdout + done.stderr)
    (job,) = [json.loads(line) for line in
              (cloud / ".maxcompute" / "submissions.jsonl").read_text().splitlines()]
    state = json.loads(
        (cloud / ".maxcompute" / "instances" / f"{job['instance_id']}.json").read_text())
    assert state["state"] == "cancelled" and state.get("stopped_at"), state
    assert "left job(s) running (its runner died): stopped" in done.stderr, done.stderr
