"""`python -m hpo_tools.run` as the trialCommand of a real NNI experiment (local training)."""

from __future__ import annotations

import json
import sys
import time

import pytest

from .conftest import LR_PATH, TRAIN
from .fake_train import auc_for

pytestmark = pytest.mark.e2e

TRIAL = (
    "[platform_config]\nname=Local\n"
    f"cmd1={TRAIN} --config ${{NNI_OUTPUT_DIR}}/pipeline.config"
    " --model_dir ${NNI_OUTPUT_DIR}/model --steps 3 --sleep 0.3\n"
    "[metric_config]\nmetric_type=summary\nmetric_source=${NNI_OUTPUT_DIR}/model/eval_val\n"
    'metric_dict={"auc": 1}\noptimize_mode=maximize\n'
    "[params_config]\n"
    "params_src_dst_filepath1=pipeline.config,${NNI_OUTPUT_DIR}/pipeline.config\n"
)


def test_two_trials_under_nni_report_results_of_their_own_parameters(
    tmp_path, pipeline, free_port
):
    from nni.experiment import Experiment

    (tmp_path / "trial.ini").write_text(TRIAL)
    exp = Experiment("local")
    exp.config.experiment_name = "hpo-tools runner e2e"
    exp.config.trial_command = f"{sys.executable} -m hpo_tools.run --config trial.ini"
    exp.config.trial_code_directory = str(tmp_path)
    exp.config.experiment_working_directory = str(tmp_path / "nni")
    exp.config.search_space = {LR_PATH: {"_type": "choice", "_value": [0.005, 0.02]}}
    exp.config.tuner.name = "TPE"
    exp.config.tuner.class_args = {"optimize_mode": "maximize"}
    exp.config.max_trial_number = 2
    exp.config.trial_concurrency = 2
    exp.config.max_trial_duration = "60s"
    try:
        exp.start(free_port)
        deadline = time.monotonic() + 80
        while exp.get_status() not in ("DONE", "ERROR", "STOPPED"):
            assert time.monotonic() < deadline, "experiment did not finish in time"
            time.sleep(1)
        assert exp.get_status() == "DONE"
        trials = exp.list_trial_jobs()
        metrics = exp.get_job_metrics()
        exp_id = exp.id
    finally:
        exp.stop()

    assert len(trials) == 2
    assert all(t.status == "SUCCEEDED" for t in trials), [t.status for t in trials]
    exp_dir = tmp_path / "nni" / exp_id
    for trial in trials:
        trial_dir = exp_dir / "environments" / "local-env" / "trials" / trial.trialJobId
        params = json.loads((trial_dir / "params.json").read_text())
        lr = params["params"][LR_PATH]
        data = metrics[trial.trialJobId]
        finals = [m for m in data if m.type == "FINAL"]
        periodical = [m for m in data if m.type == "PERIODICAL"]
        # Each evaluation step was reported as it came, then one final result...
        assert len(periodical) == 3 and len(finals) == 1
        # ...computed by the job from this trial's own parameters (params.json is the truth,
        # NNI's database may pair trials with the wrong parameters).
        final = finals[0].data
        final = json.loads(final) if isinstance(final, str) else final
        assert final["default"] == pytest.approx(auc_for(lr, 3), abs=1e-6)
        assert str(params["parameter_id"]) == str(finals[0].parameterId)
        record = json.loads((exp_dir / "hpo-tools" / "jobs" / f"{trial.trialJobId}.json")
                            .read_text())
        assert record["state"] == "succeeded"
        result = json.loads((trial_dir / "result.json").read_text())
        assert result["status"] == "succeeded"
        # NNI's own handler already writes trial.log: the runner adds no second one.
        log = (trial_dir / "trial.log").read_text()
        assert log.count(f"trial {trial.trialJobId} of experiment") == 1
        # The parameters come from the search space through NNI, not a default.
        assert lr in (0.005, 0.02)
