"""DLC trials in real NNI experiments, the DLC service faked at its SDK client
(``HPO_TOOLS_FAKE_CLOUD``: FakeDlcClient keeps the jobs in a directory, so the trial runners,
NNI's dispatcher with PAIAssessor and this test see the same jobs).

- begin: six trials, two at a time, over ``quality`` (0.9 good, 0.2 bad) x ``rep`` (a grid of
  eight, so that NNI ends DONE after six rather than racing to TUNER_NO_MORE_TRIAL); each trial
  is one ``dlc submit tfjob`` whose worker pod prints ``step k auc=...`` once a second
  (``DIR/.dlc/plan.json``), read with ``metric_source=cmd1,worker``. PAIAssessor stops bad
  trials; their DLC jobs must get ``StopJob`` and the registry must say cancelled.
- finetune: two trials over the learning rate, each replaying three days, one DLC job per day;
  each day's AUC is an intermediate result and the final is their average.

About a minute on 2 cores.
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
from hpo_tools.testing.dlc import FakeDlcClient

from .procs import processes_of

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
ACCESS_ID = "LTAI5tE2eDlcId0001"
ACCESS_KEY = "e2eDlcSecretKey000111"
IMAGE = "mybigpai-public-registry.cn-beijing.cr.aliyuncs.com/easyrec/easyrec:py36-tf1.15-0.7.4"
JOB = (" --workspace_id=67849 --data_sources=d-fake01 --workers=1 --worker_image={image}"
       " --worker_spec=ecs.g6.2xlarge --ps=1 --ps_image={image} --ps_spec=ecs.g6.2xlarge")
DLC_CONFIG = """[dlc_config]
region=cn-beijing
access_id=${ALIBABA_CLOUD_ACCESS_KEY_ID}
access_key=${ALIBABA_CLOUD_ACCESS_KEY_SECRET}
poll_interval=1.0
"""

BEGIN_TRIAL = f"""[platform_config]
name=DLC
cmd1=dlc submit tfjob --name=begin_${{exp_id}}_${{trial_id}}
    --command='python -m easy_rec.python.train_eval --quality ${{quality}}'
    {JOB.format(image=IMAGE)}

[metric_config]
metric_type=stdout
metric_source=cmd1,worker
metric_dict={{"auc=([0-9.]+)": 1}}
final_mode=final
optimize_mode=maximize

{DLC_CONFIG}"""

FINETUNE_TRIAL = f"""[finetune_config]
start_time=20220614
end_time=20220616
model_dir=/mnt/data/finetune/${{exp_id}}_${{trial_id}}/{{bizdate}}
fine_tune_checkpoint=/mnt/data/begin_model

[platform_config]
name=DLC
cmd1=dlc submit tfjob --name=ft_{{bizdate}}_${{trial_id}}
    --command="python -m easy_rec.python.train_eval --lr ${{lr}} --day {{bizdate}} \\
    --model_dir {{model_dir}} --fine_tune_checkpoint {{fine_tune_checkpoint}}"
    {JOB.format(image=IMAGE)}

[metric_config]
metric_type=stdout
metric_source=cmd1,worker
metric_dict={{"auc=([0-9.]+)": 1}}
final_mode=final
source_list_final_mode=avg
optimize_mode=maximize

{DLC_CONFIG}"""

CONFIG_YML = """experimentName: hpo-tools dlc e2e
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


def _begin_plan() -> dict:
    """Good jobs log six rising steps and succeed; bad ones log six falling ones and keep
    running a while (until PAIAssessor stops them, or they end)."""
    rules = []
    for quality, tail in ((0.9, 0), (0.2, 6)):
        steps = [{"status": "Queuing"}]
        steps += [{"status": "Running",
                   "logs": {"worker": [f"step {k} auc={_auc(quality, k)}"],
                            "ps": [f"ps heartbeat {k}"]}} for k in range(1, 7)]
        steps += [{"status": "Running"}] * tail + [{"status": "Succeeded"}]
        rules.append({"match": f"--quality {quality}", "steps": steps})
    return {"rules": rules}


def _finetune_plan() -> dict:
    rules = []
    for lr, base in (("0.01", 0.7), ("0.003", 0.6)):
        for offset, day in enumerate(("20220614", "20220615", "20220616")):
            rules.append({"match": f"--lr {lr} --day {day}", "steps": [
                {"status": "Queuing"},
                {"status": "Running", "logs": {"worker": [f"{day} auc={base + 0.01 * offset}"]}},
                {"status": "Succeeded"}]})
    return {"rules": rules}


def _experiment(tmp_path, monkeypatch, port, *, trial, space, plan, trials, assessor):
    cloud = tmp_path / "cloud"
    (cloud / ".dlc").mkdir(parents=True)
    (cloud / ".dlc" / "plan.json").write_text(json.dumps(plan))
    # NNI's manager, dispatcher and trials inherit the environment of this process.
    monkeypatch.setenv(ENV_FAKE_CLOUD, str(cloud))
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY)
    work = tmp_path / "exp"
    work.mkdir()
    (work / "trial.ini").write_text(trial)
    (work / "search_space.json").write_text(json.dumps(space))
    config = work / "config.yml"
    config.write_text(CONFIG_YML.format(python=sys.executable, trials=trials,
                                        work=tmp_path / "nni",
                                        assessor=ASSESSOR if assessor else ""))
    result = ex.run_experiment(config, port=port, timeout=240, poll_interval=1.0)
    fake = FakeDlcClient(cloud, access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
    return result, fake


@pytest.fixture(scope="module")
def begin(tmp_path_factory, free_port_module):
    monkeypatch = pytest.MonkeyPatch()
    try:
        yield _experiment(
            tmp_path_factory.mktemp("dlc_begin"), monkeypatch, free_port_module,
            trial=BEGIN_TRIAL, plan=_begin_plan(), trials=6, assessor=True,
            space={"quality": {"_type": "choice", "_value": [0.9, 0.2]},
                   "rep": {"_type": "choice", "_value": [1, 2, 3, 4]}})
    finally:
        monkeypatch.undo()


@pytest.fixture(scope="module")
def free_port_module():
    import socket

    with socket.socket() as sock:  # the conftest free_port fixture is function-scoped
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _dlc_jobs(result, trial_id):
    record = JobRegistry(result.files.root).load(trial_id)
    assert record is not None, trial_id
    return record


def test_begin_experiment_ends_with_six_trials(begin):
    result, fake = begin
    assert result.status == "DONE", (result.status, result.failure)
    assert len(result.snapshot.trials) == 6
    assert len(fake.submissions) == 6  # one DLC job per trial


def test_assessor_stopped_bad_trials_and_their_dlc_jobs_got_stop_job(begin):
    result, fake = begin
    stopped = [v for v in result.snapshot.trials if v.outcome is ex.Outcome.ASSESSOR_STOPPED]
    assert stopped, [(v.trial_id, v.outcome) for v in result.snapshot.trials]
    for view in stopped:
        assert view.run.params["quality"] == 0.2  # only bad trials are judged Bad
        record = _dlc_jobs(result, view.trial_id)
        (entry,) = record.jobs
        assert entry.state is JobState.CANCELLED  # the registry knows the job was stopped
        dlc_id = entry.description["cloud_id"]
        assert entry.job_id == dlc_id
        assert fake.stop_calls(dlc_id) >= 1  # ...and DLC was told


def test_good_trials_succeed_with_the_worker_pods_auc_and_were_never_stopped(begin):
    result, fake = begin
    good = [v for v in result.snapshot.trials if v.run.params.get("quality") == 0.9]
    assert good
    for view in good:
        assert view.outcome is ex.Outcome.SUCCEEDED, view
        assert view.run.final["score"] == pytest.approx(_auc(0.9, 6))
        (entry,) = _dlc_jobs(result, view.trial_id).jobs
        assert fake.stop_calls(entry.description["cloud_id"]) == 0
        log = (view.run.trial_dir / "trial.log").read_text()
        assert "ps heartbeat 1" in log  # every pod's log is in the trial log
        assert ACCESS_KEY not in log


def test_nothing_of_the_begin_experiment_is_left_running(begin):
    result, _ = begin
    assert processes_of(result.experiment_id) == []


def test_finetune_experiment_runs_one_dlc_job_per_day_chained(
    tmp_path, monkeypatch, free_port
):
    result, fake = _experiment(
        tmp_path, monkeypatch, free_port, trial=FINETUNE_TRIAL, plan=_finetune_plan(),
        trials=2, assessor=False,
        space={"${lr}": {"_type": "choice", "_value": [0.01, 0.003]}})
    assert result.status == "DONE", (result.status, result.failure)
    views = result.snapshot.trials
    assert [v.outcome for v in views] == [ex.Outcome.SUCCEEDED] * 2
    days = ["20220614", "20220615", "20220616"]
    for view in views:
        lr = view.run.params["${lr}"]
        base = 0.7 if lr == 0.01 else 0.6
        assert [e["day"] for e in view.run.intermediate] == days
        assert [e["score"] for e in view.run.intermediate] == pytest.approx(
            [base, base + 0.01, base + 0.02])
        assert view.run.final["score"] == pytest.approx(base + 0.01)  # their average
        commands = [s["request"]["UserCommand"] for s in fake.submissions
                    if s["request"]["DisplayName"].split("-hpo-")[0].endswith(view.trial_id)]
        assert [c.split("--day ")[1][:8] for c in commands] == days
        # day 1 starts from the begin model, each later day from this trial's day before
        assert "--fine_tune_checkpoint /mnt/data/begin_model" in commands[0]
        for previous, command in zip(days, commands[1:]):
            assert f"_{view.trial_id}/{previous} " in command.split("--fine_tune_checkpoint")[1] \
                + " "
    assert processes_of(result.experiment_id) == []
