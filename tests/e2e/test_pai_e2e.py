"""PAI training-job trials in a real NNI experiment, the PAI service faked at its SDK client
(``HPO_TOOLS_FAKE_CLOUD``: FakeTrainingJobClient keeps the jobs in a directory, so the trial
runners, NNI's dispatcher with PAIAssessor and this test see the same jobs).

Six trials, two at a time, over ``quality`` (0.9 good, 0.2 bad) x ``rep``; each trial is one
``pai training-job create`` whose job reports ``auc`` once a second (``DIR/.pai/plan.json``),
read through the API (``metric_type=api``, ``metric_source=cmd1``: ListTrainingJobMetrics).
PAIAssessor stops bad trials; their training jobs must get ``StopTrainingJob`` and the registry
must say cancelled.
"""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path

import pytest

from hpo_tools import experiment as ex
from hpo_tools.cloud import ENV_FAKE_CLOUD
from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState
from hpo_tools.testing.pai_training import FakeTrainingJobClient

from .procs import processes_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
ACCESS_ID = "LTAI5tE2ePaiId0001"
ACCESS_KEY = "e2ePaiSecretKey000111"

BEGIN_TRIAL = """[platform_config]
name=PAI
cmd1=pai training-job create --name=begin_${exp_id}_${trial_id} --algorithm=easyrec
    --instance-type=ecs.g6.2xlarge --workspace-id=67849
    --hyper-parameters='{"quality": ${quality}, "rep": ${rep}}'
    --input-channels=train=oss://bucket/data/train/

[metric_config]
metric_type=api
metric_source=cmd1
metric_dict={"auc": 1}
final_mode=final
optimize_mode=maximize

[ts_config]
region_id=cn-hangzhou
access_key_id=${ALIBABA_CLOUD_ACCESS_KEY_ID}
access_key_secret=${ALIBABA_CLOUD_ACCESS_KEY_SECRET}
poll_interval=1.0
"""

CONFIG_YML = """experimentName: hpo-tools pai e2e
searchSpaceFile: search_space.json
trialCommand: {python} -m hpo_tools.run --config trial.ini
trialCodeDirectory: .
trialConcurrency: 2
maxTrialNumber: {trials}
maxTrialDuration: 90s
experimentWorkingDirectory: {work}
tuner:
  name: GridSearch
{assessor}trainingService:
  platform: local
"""
ASSESSOR = f"""assessor:
  codeDirectory: {REPO / 'core'}
  className: pai_assessor.PAIAssessor
  classArgs:
    optimize_mode: maximize
    start_step: 2
"""


def _auc(quality: float, step: int) -> float:
    return round(0.5 + (quality - 0.5) * (1 - math.exp(-step / 2)), 4)


def _plan() -> dict:
    """Good jobs report six rising AUCs and succeed; bad ones six falling ones and keep
    running a while (until PAIAssessor stops them, or they end)."""
    rules = []
    for quality, tail in ((0.9, 0), (0.2, 6)):
        steps = [{"status": "Queuing"}]
        steps += [{"status": "Running", "metrics": {"auc": _auc(quality, k), "loss": 1.0 / k},
                   "logs": [f"epoch {k} done"]} for k in range(1, 7)]
        steps += [{"status": "Running"}] * tail + [{"status": "Succeeded"}]
        rules.append({"match": f'{{"Name": "quality", "Value": "{quality}"}}', "steps": steps})
    return {"rules": rules}


@pytest.fixture(scope="module")
def begin(tmp_path_factory):
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    tmp_path = tmp_path_factory.mktemp("pai_begin")
    monkeypatch = pytest.MonkeyPatch()
    try:
        cloud = tmp_path / "cloud"
        (cloud / ".pai").mkdir(parents=True)
        (cloud / ".pai" / "plan.json").write_text(json.dumps(_plan()))
        # NNI's manager, dispatcher and trials inherit the environment of this process.
        monkeypatch.setenv(ENV_FAKE_CLOUD, str(cloud))
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_ID)
        monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY)
        work = tmp_path / "exp"
        work.mkdir()
        (work / "trial.ini").write_text(BEGIN_TRIAL)
        (work / "search_space.json").write_text(json.dumps(
            {"quality": {"_type": "choice", "_value": [0.9, 0.2]},
             "rep": {"_type": "choice", "_value": [1, 2, 3, 4]}}))
        config = work / "config.yml"
        config.write_text(CONFIG_YML.format(python=sys.executable, trials=6,
                                            work=tmp_path / "nni", assessor=ASSESSOR))
        result = ex.run_experiment(config, port=port, timeout=240, poll_interval=1.0)
        yield result, FakeTrainingJobClient(cloud, access_key_id=ACCESS_ID,
                                            access_key_secret=ACCESS_KEY)
    finally:
        monkeypatch.undo()


def _jobs(result, trial_id):
    record = JobRegistry(result.files.root).load(trial_id)
    assert record is not None, trial_id
    return record


def test_begin_experiment_ends_with_six_trials(begin):
    result, fake = begin
    assert result.status == "DONE", (result.status, result.failure)
    assert len(result.snapshot.trials) == 6
    assert len(fake.submissions) == 6  # one training job per trial


def test_assessor_stopped_bad_trials_and_their_jobs_got_stop_training_job(begin):
    result, fake = begin
    stopped = [v for v in result.snapshot.trials if v.outcome is ex.Outcome.ASSESSOR_STOPPED]
    assert stopped, [(v.trial_id, v.outcome) for v in result.snapshot.trials]
    for view in stopped:
        assert view.run.params["quality"] == 0.2  # only bad trials are judged Bad
        (entry,) = _jobs(result, view.trial_id).jobs
        assert entry.state is JobState.CANCELLED  # the registry knows the job was stopped
        job_id = entry.description["cloud_id"]
        assert entry.job_id == job_id
        assert fake.stop_calls(job_id) >= 1  # ...and PAI was told


def test_good_trials_succeed_with_the_reported_auc_and_were_never_stopped(begin):
    result, fake = begin
    good = [v for v in result.snapshot.trials if v.run.params.get("quality") == 0.9]
    assert good
    for view in good:
        assert view.outcome is ex.Outcome.SUCCEEDED, view
        assert view.run.final["score"] == pytest.approx(_auc(0.9, 6))
        assert [e["score"] for e in view.run.intermediate] == pytest.approx(
            [_auc(0.9, k) for k in range(1, 7)])
        (entry,) = _jobs(result, view.trial_id).jobs
        assert fake.stop_calls(entry.description["cloud_id"]) == 0
        log = (view.run.trial_dir / "trial.log").read_text()
        assert "epoch 1 done" in log  # the job's log is in the trial log
        assert ACCESS_KEY not in log


def test_nothing_of_the_experiment_is_left_running(begin):
    result, _ = begin
    assert processes_of(result.experiment_id) == []
