"""PAIAssessor in a real NNI experiment: trials run the trial runner on the local platform.

Six trials, two at a time, from a grid over ``quality`` (0.9 good, 0.2 bad) x ``rep`` (1..3).
Each trial's job is a small script that writes a TensorBoard event per second (AUC rising towards
``quality``). PAIAssessor (``start_step: 2``) must stop bad trials once two peers have reported
that far; the stopped trials end USER_CANCELED, their decision is on record, their job's process
group is gone within NNI's 5 s grace period and the job registry says cancelled; the good trials
succeed. About a minute on 2 cores.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time
from pathlib import Path

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(240)]

REPO = Path(__file__).resolve().parents[2]
STEPS = 6

TRAIN_SCRIPT = '''\
"""Write one TensorBoard event per --sleep seconds: auc rising from 0.5 towards --quality."""
import argparse, math, socket, time
from pathlib import Path
from tensorboard.compat.proto import event_pb2, summary_pb2
from tensorboard.summary.writer.record_writer import RecordWriter

parser = argparse.ArgumentParser()
parser.add_argument("--quality", type=float, required=True)
parser.add_argument("--model_dir", required=True)
parser.add_argument("--steps", type=int, default=6)
parser.add_argument("--sleep", type=float, default=1.0)
args = parser.parse_args()
eval_dir = Path(args.model_dir) / "eval_val"
eval_dir.mkdir(parents=True, exist_ok=True)
with open(eval_dir / f"events.out.tfevents.{int(time.time())}.{socket.gethostname()}", "ab") as f:
    writer = RecordWriter(f)
    writer.write(event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")
                 .SerializeToString())
    for step in range(1, args.steps + 1):
        time.sleep(args.sleep)
        auc = 0.5 + (args.quality - 0.5) * (1 - math.exp(-step / 2))
        value = summary_pb2.Summary.Value(tag="auc", simple_value=auc)
        event = event_pb2.Event(wall_time=time.time(), step=step * 10,
                                summary=summary_pb2.Summary(value=[value]))
        writer.write(event.SerializeToString())
        writer.flush()
        print(f"step {step} auc={auc:.4f}", flush=True)
'''

TRIAL_INI = f"""\
[platform_config]
name=Local
cmd1={sys.executable} slow_train.py --quality ${{quality}} --steps {STEPS} --sleep 1.0
    --model_dir ${{NNI_OUTPUT_DIR}}/model

[metric_config]
metric_type=summary
metric_source=${{NNI_OUTPUT_DIR}}/model/eval_val
metric_dict={{"auc": 1}}
optimize_mode=maximize
"""

SEARCH_SPACE = {
    "quality": {"_type": "choice", "_value": [0.9, 0.2]},
    "rep": {"_type": "choice", "_value": [1, 2, 3]},
}


def _group_alive(pgid: int) -> bool:
    """Whether any live (non-zombie) process is in process group ``pgid``."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if fields[0] != "Z" and int(fields[2]) == pgid:
            return True
    return False


def _iso_seconds(stamp: str) -> float:
    return datetime.datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%S.%fZ").replace(
        tzinfo=datetime.timezone.utc).timestamp()


@pytest.fixture(scope="module")
def experiment(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """Run the experiment once; the tests check different things about its outcome."""
    import socket

    from nni.experiment import CustomAlgorithmConfig, Experiment

    root = tmp_path_factory.mktemp("assessor_e2e")
    (root / "slow_train.py").write_text(TRAIN_SCRIPT)
    (root / "trial.ini").write_text(TRIAL_INI)
    exp = Experiment("local")
    exp.config.experiment_name = "hpo-tools assessor e2e"
    exp.config.trial_command = f"{sys.executable} -m hpo_tools.run --config trial.ini"
    exp.config.trial_code_directory = str(root)
    exp.config.experiment_working_directory = str(root / "nni")
    exp.config.search_space = SEARCH_SPACE
    exp.config.tuner.name = "GridSearch"
    # The codeDirectory form of a config file: `codeDirectory: <repo>/core` + `className`.
    exp.config.assessor = CustomAlgorithmConfig(
        code_directory=str(REPO / "core"), class_name="pai_assessor.PAIAssessor",
        class_args={"optimize_mode": "maximize", "start_step": 2})
    exp.config.max_trial_number = 6
    exp.config.trial_concurrency = 2
    exp.config.max_trial_duration = "60s"
    with socket.socket() as sock:  # the conftest free_port fixture is function-scoped
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    try:
        exp.start(port)
        deadline = time.monotonic() + 180
        while True:
            status = exp.get_status()
            trials = exp.list_trial_jobs()
            active = [t for t in trials if t.status in ("RUNNING", "WAITING", "UNKNOWN")]
            # GridSearch runs out of points: TUNER_NO_MORE_TRIAL never becomes DONE (§0.4).
            if status in ("DONE", "ERROR", "STOPPED") or (
                    status == "TUNER_NO_MORE_TRIAL" and not active):
                break
            assert time.monotonic() < deadline, f"experiment still {status} after 180 s"
            time.sleep(1)
        exp_id = exp.id
    finally:
        exp.stop()
    exp_dir = root / "nni" / exp_id
    decisions_path = exp_dir / "hpo-tools" / "assessor-decisions.jsonl"
    decisions = [json.loads(line) for line in decisions_path.read_text().splitlines()] \
        if decisions_path.exists() else []
    params = {}
    for trial in trials:
        own = exp_dir / "environments" / "local-env" / "trials" / trial.trialJobId / "params.json"
        params[trial.trialJobId] = json.loads(own.read_text())["params"]
    return {"status": status, "trials": {t.trialJobId: t.status for t in trials},
            "params": params, "decisions": decisions, "exp_dir": exp_dir}


def test_experiment_finished_all_six_trials(experiment: dict) -> None:
    assert experiment["status"] != "ERROR"
    assert len(experiment["trials"]) == 6


def test_at_least_one_bad_trial_is_stopped_by_the_assessor(experiment: dict) -> None:
    stopped = {d["trial_id"] for d in experiment["decisions"]}
    assert stopped, "the assessor stopped nothing"
    for trial_id in stopped:
        # Only bad trials are judged Bad; the runner dies by NNI's SIGINT, so NNI's local mode
        # shows USER_CANCELED (it never shows EARLY_STOPPED, API-NOTES 0.2).
        assert experiment["params"][trial_id]["quality"] == 0.2
        assert experiment["trials"][trial_id] == "USER_CANCELED"


def test_decision_records_the_median_rule_and_its_numbers(experiment: dict) -> None:
    for decision in experiment["decisions"]:
        assert decision["rule"] == "median"
        assert decision["step"] >= 2  # start_step: 2
        assert decision["peers"] >= 2 and decision["best"] < decision["median"]


def test_good_trials_succeed(experiment: dict) -> None:
    good = [t for t, p in experiment["params"].items() if p["quality"] == 0.9]
    assert len(good) == 3
    assert all(experiment["trials"][t] == "SUCCEEDED" for t in good), experiment["trials"]


def test_stopped_trials_jobs_are_gone_and_registry_says_cancelled(experiment: dict) -> None:
    from hpo_tools.jobs import JobRegistry
    from hpo_tools.platforms import JobState

    registry = JobRegistry(experiment["exp_dir"])
    for decision in experiment["decisions"]:
        record = registry.load(decision["trial_id"])
        assert record is not None and record.jobs, decision["trial_id"]
        job = record.jobs[0]
        assert job.state is JobState.CANCELLED  # the registry knows the job was stopped
        assert not _group_alive(int(job.description["pgid"]))  # ...and no process of it is left
        # Cancelled within NNI's 5 s grace period (+1 s of slack) after the Bad decision.
        assert _iso_seconds(job.updated_at) - decision["time"] < 6.0


def test_no_process_of_the_experiment_survives(experiment: dict) -> None:
    exp_id = experiment["exp_dir"].name
    marker = f"NNI_EXP_ID={exp_id}".encode()
    survivors = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit() or int(entry.name) == os.getpid():
            continue
        try:
            if marker in (entry / "environ").read_bytes().split(b"\0"):
                survivors.append(entry.name)
        except OSError:
            continue
    assert survivors == []


PLAIN_TRIAL = """\
import nni
nni.get_next_parameter()
for step in range(3):
    nni.report_intermediate_result({"default": 0.5 + 0.1 * step, "auc": 0.5})
nni.report_final_result(0.7)
"""


def test_registered_name_loads_in_a_real_experiment(
    tmp_path: Path, free_port: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`assessor: {name: PAIAssessor}` after `hpo-tools register` (the other config form)."""
    from nni.experiment import AlgorithmConfig, Experiment

    from hpo_tools.cli import main

    # NNI's dispatcher inherits this environment, so it reads the same registrations.
    monkeypatch.setenv("NNI_CONFIG_DIR", str(tmp_path / "nni-config"))
    assert main(["register"]) == 0
    (tmp_path / "plain_trial.py").write_text(PLAIN_TRIAL)
    exp = Experiment("local")
    exp.config.trial_command = f"{sys.executable} plain_trial.py"
    exp.config.trial_code_directory = str(tmp_path)
    exp.config.experiment_working_directory = str(tmp_path / "nni")
    exp.config.search_space = {"x": {"_type": "choice", "_value": [1, 2]}}
    exp.config.tuner.name = "GridSearch"
    exp.config.assessor = AlgorithmConfig(
        name="PAIAssessor", class_args={"optimize_mode": "minimize", "start_step": 2})
    exp.config.max_trial_number = 2
    exp.config.trial_concurrency = 2
    try:
        exp.start(free_port)
        deadline = time.monotonic() + 90
        while True:
            status = exp.get_status()
            trials = exp.list_trial_jobs()
            if status in ("DONE", "ERROR") or (
                    len(trials) == 2 and all(t.status == "SUCCEEDED" for t in trials)):
                break
            assert time.monotonic() < deadline, f"experiment still {status} after 90 s"
            time.sleep(1)
        log = (tmp_path / "nni" / exp.id / "log" / "dispatcher.log").read_text()
    finally:
        exp.stop()
    assert status != "ERROR"
    # The dispatcher built our class from the registered name, with the config's classArgs.
    assert "PAIAssessor: optimize_mode=minimize start_step=2" in log
