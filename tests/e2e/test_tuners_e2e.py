"""NNI 3.0's parameter mix-up between concurrent trials, forced, through real NNI.

The first trial of each pair waits before asking for its parameters, so the second one gets the
first one's parameters (NNI hands them out first come, first served) and NNI's dispatcher is later
told the wrong parameter id when a trial ends. Plain TPE then dies with KeyError; SafeTpeTuner
goes on, and `experiment run` notices a dead dispatcher instead of waiting forever.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hpo_tools import experiment as ex

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(150)]

REPO = Path(__file__).resolve().parents[2]

# A stand-in for the trial runner: asks NNI for parameters (late when its sequence id is even),
# writes params.json / result.json as the runner does, reports two results.
TRIAL = """\
import json, os, sys, time
from hpo_tools.trial.reporter import NniReporter

if int(os.environ["NNI_TRIAL_SEQ_ID"]) % 2 == 0:
    time.sleep(4)
reporter = NniReporter()
params = reporter.get_parameters()
out = os.environ["NNI_OUTPUT_DIR"]
json.dump({"trial_id": reporter.trial_id, "experiment_id": reporter.experiment_id,
           "parameter_id": reporter.parameter_id, "params": params, "configs": []},
          open(os.path.join(out, "params.json"), "w"))
report = {"step": 1, "score": params["x"], "values": {"auc": params["x"]}, "source": 0}
reporter.report_intermediate({"default": params["x"]})
if int(os.environ["NNI_TRIAL_SEQ_ID"]) % 2 == 1:
    time.sleep(1)
reporter.report_final({"default": params["x"]})
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
