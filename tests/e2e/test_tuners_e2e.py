"""NNI 3.0's parameter mix-up between concurrent trials, forced, through real NNI.

The first trial of each pair waits until the second has asked for its parameters, so the second
one gets the first one's parameters (NNI hands them out first come, first served) and NNI's
dispatcher is later told the wrong parameter id when a trial ends. Plain TPE then dies with
KeyError; SafeTpeTuner goes on, and `experiment run` notices a dead dispatcher instead of
waiting forever.

The trial here is a plain NNI trial (`nni.get_next_parameter()`), as a user's own script is:
our runner's trials run the set NNI recorded for them and never mix up
(tests/e2e/test_nni_record_e2e.py).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hpo_tools import experiment as ex

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]

# A stand-in for the trial runner: asks NNI for parameters (after the next trial when its sequence
# id is even, and then reports its final result late),
# writes params.json / result.json as the runner does, reports two results.
TRIAL = """\
import glob, json, os, sys, time
import nni

seq = int(os.environ["NNI_TRIAL_SEQ_ID"])
out = os.environ["NNI_OUTPUT_DIR"]
if seq % 2 == 0:  # wait until the next trial has taken its parameters (at most 20 s)
    deadline = time.time() + 20
    while time.time() < deadline and not any(
            json.load(open(p)).get("seq") == seq + 1
            for p in glob.glob(os.path.join(out, "..", "*", "params.json"))):
        time.sleep(0.2)
params = nni.get_next_parameter()
with open(os.path.join(out, ".params.tmp"), "w") as f:
    json.dump({"trial_id": nni.get_trial_id(), "experiment_id": nni.get_experiment_id(),
               "parameter_id": nni.trial._params["parameter_id"], "params": params,
               "configs": [], "seq": seq}, f)
os.replace(os.path.join(out, ".params.tmp"), os.path.join(out, "params.json"))
report = {"step": 1, "score": params["x"], "values": {"auc": params["x"]}, "source": 0}
nni.report_intermediate_result({"default": params["x"]})
if seq % 2 == 0:  # the other trial ends first: NNI then calls trial_end with our id
    time.sleep(4)
nni.report_final_result({"default": params["x"]})
json.dump({"intermediate": [report], "final": report, "status": "succeeded"},
          open(os.path.join(out, "result.json"), "w"))
"""

CONFIG = """\
searchSpace: {{x: {{_type: uniform, _value: [0, 1]}}}}
trialCommand: {python} trial.py --config trial.ini
trialCodeDirectory: .
trialConcurrency: 2
maxTrialNumber: 4
experimentWorkingDirectory: {work}
tuner:
{tuner}
trainingService:
  platform: local
"""

SAFE_TPE = f"""\
  codeDirectory: {REPO / "core"}
  className: hpo_tools.tuners.SafeTpeTuner
  classArgs: {{optimize_mode: maximize, seed: 1}}"""

PLAIN_TPE = """\
  name: TPE
  classArgs: {optimize_mode: maximize, seed: 1}"""


def _setup(tmp_path: Path, tuner: str) -> Path:
    (tmp_path / "trial.py").write_text(TRIAL)
    config = tmp_path / "config.yml"
    config.write_text(CONFIG.format(python=sys.executable, work=tmp_path / "nni", tuner=tuner))
    return config


def _mispaired(result: ex.RunResult) -> bool:
    """Whether NNI's database paired some trial with another trial's parameters."""
    import sqlite3

    db = result.files.root / "db" / "nni.sqlite"
    with sqlite3.connect(db) as conn:
        rows = conn.execute(
            "SELECT trialJobId, data FROM TrialJobEvent WHERE event = 'RUNNING'").fetchall()
    nni_ids = {trial: json.loads(data)["parameter_id"] for trial, data in rows}
    return any(nni_ids.get(v.trial_id) != v.run.parameter_id for v in result.snapshot.trials)


def test_safe_tpe_finishes_despite_mispaired_trials(tmp_path, free_port):
    result = ex.run_experiment(_setup(tmp_path, SAFE_TPE), port=free_port, timeout=90,
                               poll_interval=1.0, checker=None)
    assert _mispaired(result)  # the mix-up really happened...
    # ...and the experiment still ran every trial to the end.
    assert result.status == "DONE" and not result.timed_out, result.errors
    assert result.succeeded == 4


def test_run_reports_a_dead_dispatcher_instead_of_waiting_forever(tmp_path, free_port):
    result = ex.run_experiment(_setup(tmp_path, PLAIN_TPE), port=free_port, timeout=90,
                               poll_interval=1.0, checker=None)
    # Plain TPE dies on the mix-up; without detection this would run into the timeout.
    assert result.status == "ERROR" and not result.timed_out
    assert any("KeyError" in error for error in result.errors), result.errors
