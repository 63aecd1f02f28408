"""NNI's own record of which trial ran which parameters is true with 8 concurrent trials.

NNI 3.0's local training service hands parameter sets to trials first come, first served
(API-NOTES §0.1, microsoft/nni#5726), so NNI's web UI, its REST API and `nnictl experiment
export` can show a trial's score beside another trial's parameters. Here the trials are made to
ask in the reverse order of their submission (each waits longer the earlier it was submitted),
which makes NNI hand out the wrong sets; the runner (`python -m hpo_tools.run`, a real Local
trial) runs the set NNI recorded for it instead. Every trial's job prints, as its metric, the
value it reads from its own edited config, so a record is true exactly when its score equals the
parameter; and each trial's config, directory and registry record are its own (issue: 8-way
concurrency touches no other trial's files).
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo_tools import experiment as ex
from hpo_tools.nni_rest import NniRest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]

CONCURRENCY = 8

# Trial k (of each batch of 8) asks NNI for parameters (8 - k) * 0.6 s after it started: the
# last one submitted asks first. Then the real runner takes over (same process: exec).
START = f"""\
import os, sys, time
time.sleep(({CONCURRENCY} - int(os.environ["NNI_TRIAL_SEQ_ID"]) % {CONCURRENCY}) * 0.6)
os.execv(sys.executable, [sys.executable, "-m", "hpo_tools.run", "--config", "trial.ini"])
"""

# Each trial's job reads the value from its own edited config (not from the parameters), so a
# score equal to the parameter in params.json also proves no trial read another's files.
TRIAL_INI = """\
[platform_config]
name=Local
cmd1={python} score.py ${{NNI_OUTPUT_DIR}}/pipeline.config

[params_config]
params_src_dst_filepath1=pipeline.config,${{NNI_OUTPUT_DIR}}/pipeline.config

[metric_config]
metric_type=stdout
metric_dict={{"score=([0-9.eE+-]+)": 1}}
optimize_mode=maximize
"""

SCORE = """\
import re, sys
text = open(sys.argv[1]).read()
print("score=" + re.search(r"l2_regularization: ([0-9.eE+-]+)", text).group(1), flush=True)
"""

X = "model_config.dbmtl.l2_regularization"

CONFIG = f"""\
searchSpace: {{{{{X}: {{{{_type: uniform, _value: [0.1, 1]}}}}}}}}
trialCommand: {{python}} start.py
trialCodeDirectory: .
trialConcurrency: {CONCURRENCY}
maxTrialNumber: {CONCURRENCY}
experimentWorkingDirectory: {{work}}
tuner:
  name: Random
  classArgs: {{{{seed: 7}}}}
trainingService:
  platform: local
"""


def _nnictl(*args: str, timeout: float = 60) -> subprocess.CompletedProcess:
    nnictl = Path(sys.executable).with_name("nnictl")
    return subprocess.run([str(nnictl), *args], capture_output=True, text=True, timeout=timeout)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """`nnictl create` as a user would; NNI's REST API and `nnictl experiment export` are read
    while its manager is still up, after every trial ended."""
    root = tmp_path_factory.mktemp("nni_record")
    (root / "start.py").write_text(START)
    (root / "score.py").write_text(SCORE)
    (root / "pipeline.config").write_text((REPO / "samples" / "pipeline.config").read_text())
    (root / "trial.ini").write_text(TRIAL_INI.format(python=sys.executable))
    config = root / "config.yml"
    config.write_text(CONFIG.format(python=sys.executable, work=root / "nni"))
    port = ex.free_port()
    env_path = ex.path_with_interpreter_first(os.environ.get("PATH", ""), sys.executable)
    created = subprocess.run(
        [str(Path(sys.executable).with_name("nnictl")), "create", "--config", str(config),
         "--port", str(port)], capture_output=True, text=True, timeout=120, cwd=root,
        env={**os.environ, "PATH": env_path})
    assert created.returncode == 0, created.stdout + created.stderr
    rest = NniRest(port)
    experiment_id = rest.get_experiment()["id"]
    try:
        deadline = time.monotonic() + 180
        status = ""
        while time.monotonic() < deadline:
            status = rest.check_status().get("status", "")
            if status in ("DONE", "ERROR", "STOPPED"):
                break
            time.sleep(1.0)
        trials = rest.list_trial_jobs()
        metrics = rest.request("GET", "/metric-data")
        exported = _nnictl("experiment", "export", experiment_id, "--filename",
                           str(root / "export.json"), "--type", "json")
        export = (json.loads((root / "export.json").read_text()) if exported.returncode == 0
                  else exported.stdout + exported.stderr)
    finally:
        _nnictl("stop", experiment_id)
    files = ex.experiment_files(root / "nni" / experiment_id)
    snapshot = ex.build_snapshot(files, status=status)
    return status, snapshot, trials, metrics, export


def _final_scores(metrics: list[dict]) -> dict[str, float]:
    scores = {}
    for metric in metrics:
        if metric["type"] == "FINAL":
            data = json.loads(metric["data"])
            data = json.loads(data) if isinstance(data, str) else data
            scores[metric["trialJobId"]] = float(data["default"] if isinstance(data, dict)
                                                 else data)
    return scores


def test_nni_handed_out_parameter_sets_in_another_order(finished):
    """The mix-up really happened: otherwise this module proves nothing."""
    status, snapshot, *_ = finished
    assert status == "DONE"
    handed_elsewhere = [
        view.trial_id for view in snapshot.trials
        if "recorded set" in (view.run.trial_dir / "trial.stderr").read_text(errors="replace")
    ]
    assert handed_elsewhere, "NNI handed every trial its own set; the mix-up was not forced"


def test_rest_api_pairs_every_score_with_the_parameters_its_trial_ran(finished):
    _, snapshot, trials, metrics, _ = finished
    scores = _final_scores(metrics)
    assert len(trials) == CONCURRENCY and len(scores) == CONCURRENCY
    ran = {view.trial_id: view.run.params[X] for view in snapshot.trials}
    for trial in trials:
        record = json.loads(trial["hyperParameters"][-1])
        trial_id = trial["trialJobId"]
        assert record["parameters"][X] == pytest.approx(scores[trial_id]), trial
        assert record["parameters"][X] == pytest.approx(ran[trial_id]), trial
        # The final metric was reported under the recorded set's id.
        final = [m for m in metrics if m["trialJobId"] == trial_id and m["type"] == "FINAL"]
        assert str(final[0]["parameterId"]) == str(record["parameter_id"])


def test_nnictl_export_pairs_every_score_with_its_parameters(finished):
    *_, export = finished
    assert isinstance(export, list), export
    assert len(export) == CONCURRENCY
    for row in export:
        value = row["value"]
        value = json.loads(value) if isinstance(value, str) else value
        score = value["default"] if isinstance(value, dict) else value
        assert row["parameter"][X] == pytest.approx(float(score)), row


def test_our_summary_agrees(finished):
    _, snapshot, trials, *_ = finished
    recorded = {t["trialJobId"]: json.loads(t["hyperParameters"][-1]) for t in trials}
    assert len(snapshot.trials) == CONCURRENCY
    for view in snapshot.trials:
        assert view.run.params == recorded[view.trial_id]["parameters"]
        assert view.run.parameter_id == recorded[view.trial_id]["parameter_id"]
        assert view.run.final["score"] == pytest.approx(view.run.params[X])
        # Its own config holds its own value; nothing of it lies in another trial's directory.
        (config,) = view.run.configs
        assert Path(config).parent == view.run.trial_dir
        written = re.search(r"l2_regularization: (\S+)", Path(config).read_text()).group(1)
        assert float(written) == pytest.approx(view.run.params[X])
    dirs = [view.run.trial_dir for view in snapshot.trials]
    assert len(set(dirs)) == CONCURRENCY  # 8 trial directories, 8 registry records
    registry = {p.stem for p in (dirs[0].parents[3] / "hpo-tools" / "jobs").glob("*.json")}
    assert registry == {view.trial_id for view in snapshot.trials}
