"""The local finetune example through real NNI: two trials, each replaying three days with the
real TensorFlow trainer from a begin model, one intermediate result per day, the average final.

The example's files are copied as they are into tmp_path (same layout as the repository, so its
relative paths hold) next to a tiny data set; only config.yml gets 2 trials, a working directory
under tmp_path and the absolute path of core/. About 2 minutes on 2 busy cores.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_tools import experiment as ex

from .procs import processes_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
EXAMPLES = REPO / "examples" / "search" / "local_easyrec"
DAYS = ["20220614", "20220615", "20220616"]


@pytest.fixture
def finished(tmp_path: Path, free_port: int):
    from hpo_tools.trainer.data import write_dataset

    local = tmp_path / "examples" / "search" / "local_easyrec"
    shutil.copytree(EXAMPLES / "finetune", local / "finetune")
    (local / "begin").mkdir()
    shutil.copy(EXAMPLES / "begin" / "pipeline.config", local / "begin" / "pipeline.config")
    # 20220610..20220617, 300 rows a day: one training step per day.
    write_dataset(tmp_path / "demo-data", days=8, rows_per_day=300, seed=0)
    # The documented first step: the begin model, with this interpreter.
    subprocess.run(["sh", str(local / "finetune" / "begin_model.sh")], check=True,
                   capture_output=True, timeout=120, env={**os.environ, "PYTHON": sys.executable})
    config = local / "finetune" / "config.yml"
    text = config.read_text()
    text = text.replace("maxTrialNumber: 6", "maxTrialNumber: 2")
    text = text.replace("codeDirectory: ../../../../core", f"codeDirectory: {REPO / 'core'}")
    text += f"experimentWorkingDirectory: {tmp_path / 'nni'}\nmaxTrialDuration: 150s\n"
    config.write_text(text)
    result = ex.run_experiment(config, port=free_port, timeout=220, poll_interval=1.0)
    return tmp_path, result


def test_local_finetune_example_runs_day_by_day_through_nni(finished) -> None:
    root, result = finished
    assert result.status == "DONE" and not result.timed_out
    assert len(result.snapshot.trials) == 2
    succeeded = [v for v in result.snapshot.trials if v.outcome is ex.Outcome.SUCCEEDED]
    # The assessor may stop one trial after two days, but not both before any is done.
    assert succeeded
    for view in result.snapshot.trials:
        assert view.outcome in (ex.Outcome.SUCCEEDED, ex.Outcome.ASSESSOR_STOPPED), view
    for view in succeeded:
        run = view.run
        # One intermediate result per day, in order, and the final one is their average.
        assert [entry["day"] for entry in run.intermediate] == DAYS
        scores = [entry["score"] for entry in run.intermediate]
        assert run.final is not None
        assert run.final["score"] == pytest.approx(sum(scores) / len(scores))
        days = run.trial_dir / "days"
        # Day 1 started from the begin model; days 2 and 3 from this trial's own model of the
        # day before, under its own NNI_OUTPUT_DIR (never another trial's).
        starts = {
            day: [line for line in (days / day / "trial.log").read_text().splitlines()
                  if line.startswith("start:")]
            for day in DAYS
        }
        assert "demo-begin-model/model.ckpt-" in starts[DAYS[0]][0]
        for previous, day in zip(DAYS, DAYS[1:]):
            assert f"{run.trial_dir}/model/{previous}/model.ckpt-" in starts[day][0]
    # The exported best parameters are the learning rate the best trial really ran with.
    best = json.loads(result.export.params_path.read_text())
    space = json.loads((EXAMPLES / "finetune" / "search_space.json").read_text())
    assert set(best) == set(space)
    own = next(v for v in succeeded if v.trial_id == result.export.trial_id)
    assert best == own.run.params
    # Nothing of the experiment is left running.
    assert processes_of(result.experiment_id) == []
