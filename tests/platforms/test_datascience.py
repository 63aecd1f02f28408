"""The DataScience platform: Local commands with hdfs:// configs and metrics, end to end over a
real WebHDFS server on localhost (hpo_tools.testing.webhdfs.WebHdfsServer)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_tools import cli
from hpo_tools.errors import ConfigError
from hpo_tools.platforms import JobState, create_platform, platform_for_description
from hpo_tools.platforms.datascience import DataSciencePlatform
from hpo_tools.testing.webhdfs import WebHdfsServer
from tests.trial.conftest import LR_PATH, PIPELINE, TRAIN
from tests.trial.fake_train import auc_for

REPO = Path(__file__).resolve().parents[2]
NN = "hdfs://emr-header-1:9000"  # how 0.1.x trial files name the cluster (its RPC port)


@pytest.fixture
def server(tmp_path):
    with WebHdfsServer(tmp_path / "hdfs") as running:
        (running.root / "configs").mkdir()
        (running.root / "configs/pipeline.config").write_text(PIPELINE)
        yield running


def _trial_file(tmp_path: Path, server: WebHdfsServer) -> Path:
    # The job sees the cluster's file system directly (the server's directory), as a job on
    # the master sees HDFS; the runner goes through WebHDFS for the config and the metrics.
    root = server.root
    text = (
        "[platform_config]\nname=DataScience\n"
        f"cmd1={TRAIN} --config {root}/exp/${{trial_id}}/pipeline.config "
        f"--model_dir {root}/model/${{trial_id}} --steps 3 --sleep 0.05\n"
        "[params_config]\n"
        f"params_src_dst_filepath1={NN}/configs/pipeline.config,"
        f"{NN}/exp/${{trial_id}}/pipeline.config\n"
        "[metric_config]\nmetric_type=summary\n"
        f"metric_source={NN}/model/${{trial_id}}/eval_val\n"
        "metric_dict={'auc': 1}\nfinal_mode=final\n"
    )
    path = tmp_path / "trial.ini"
    path.write_text(text)
    return path


def test_a_datascience_trial_runs_end_to_end_on_hdfs(tmp_path, server):
    trial = _trial_file(tmp_path, server)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
           "HOME": str(tmp_path), "HPO_TOOLS_WEBHDFS": server.url, "HADOOP_USER_NAME": "hpo"}
    done = subprocess.run(
        [sys.executable, "-m", "hpo_tools", "run", "--config", str(trial),
         "--params", json.dumps({LR_PATH: 0.02}), "--exp_dir", str(tmp_path / "exp"),
         "--trial-id", "t1", "--interval", "0.05"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr + done.stdout

    # The runner read the config from HDFS and wrote the edited one there (temp + RENAME)...
    edited = (server.root / "exp/t1/pipeline.config").read_text()
    assert "learning_rate: 0.02" in edited and "learning_rate: 0.001" not in edited
    renames = [r for r in server.requests if r.op == "RENAME"]
    assert [r.query["destination"] for r in renames] == ["/exp/t1/pipeline.config"]
    # ...the job trained with it (its score is a function of the learning rate it read)...
    result = json.loads((tmp_path / "exp/standalone/trials/t1/result.json").read_text())
    assert result["status"] == "succeeded"
    assert result["final"]["score"] == pytest.approx(auc_for(0.02, 3), abs=1e-6)
    # ...and each step was read back from the event file on HDFS as it grew.
    assert [r["step"] for r in result["intermediate"]] == [100, 200, 300]
    assert done.stdout.count("intermediate result") == 3
    tails = [int(r.query.get("offset", 0)) for r in server.requests
             if r.op == "OPEN" and r.role == "datanode"
             and r.path.startswith("/model/t1/eval_val/events.out.tfevents.")]
    assert tails and tails == sorted(tails) and tails[-1] > 0  # reads from where it left off
    # Every request was made as HADOOP_USER_NAME.
    assert server.users() == {"hpo"}
    # The job registry records a DataScience job (rebuilt as one to cancel it elsewhere).
    record = json.loads((tmp_path / "exp/standalone/hpo-tools/jobs/t1.json").read_text())
    assert "datascience" in json.dumps(record)


def test_check_refuses_hdfs_paths_without_a_webhdfs_address(tmp_path, server, monkeypatch,
                                                            capsys):
    trial = _trial_file(tmp_path, server)
    space = tmp_path / "search_space.json"
    space.write_text(json.dumps({LR_PATH: {"_type": "choice", "_value": [0.01, 0.1]}}))
    monkeypatch.setenv("HADOOP_USER_NAME", "hpo")
    monkeypatch.delenv("HPO_TOOLS_FAKE_CLOUD", raising=False)

    monkeypatch.delenv("HPO_TOOLS_WEBHDFS", raising=False)
    code = cli.main(["check", "--config", str(trial), "--search-space", str(space),
                     "--no-easyrec-schema"])
    text = "".join(capsys.readouterr())
    # The hdfs:// key is named, with what to set, before anything runs or is requested.
    assert code == 1
    assert ("[metric_config] metric_source: hdfs://emr-header-1:9000/model/corner1/eval_val: "
            "HDFS is read through WebHDFS and port 9000 is not a namenode HTTP port") in text
    assert "e.g. HPO_TOOLS_WEBHDFS=http://emr-header-1:9870 (port 50070 on Hadoop 2)" in text
    # The config pair is checked the same way (here with a local metric source).
    original = trial.read_text()
    trial.write_text(original.replace(f"metric_source={NN}/", f"metric_source={tmp_path}/"))
    code = cli.main(["check", "--config", str(trial), "--search-space", str(space),
                     "--no-easyrec-schema"])
    text = "".join(capsys.readouterr())
    assert code == 1
    assert ("[params_config] params_src_dst_filepath1: hdfs://emr-header-1:9000/configs/"
            "pipeline.config: HDFS is read through WebHDFS") in text
    assert server.requests == []

    trial.write_text(original)
    monkeypatch.setenv("HPO_TOOLS_WEBHDFS", server.url)
    code = cli.main(["check", "--config", str(trial), "--search-space", str(space),
                     "--no-easyrec-schema"])
    out = capsys.readouterr()
    # With the address the file checks clean: the config was read from HDFS at each corner.
    assert code == 0, out.out + out.err
    assert any(r.op == "OPEN" and r.path == "/configs/pipeline.config" for r in server.requests)


def test_the_name_is_case_insensitive_and_near_misses_are_suggested():
    assert isinstance(create_platform("DataScience"), DataSciencePlatform)
    assert isinstance(create_platform("datascience"), DataSciencePlatform)
    with pytest.raises(ConfigError, match=r"unknown platform 'DataScince'.*did you mean "
                       r"'DataScience'"):
        create_platform("DataScince")


def test_a_datascience_job_is_cancelled_from_its_description(tmp_path):
    platform = create_platform("DataScience", grace_period=0.2)
    job = platform.submit("sleep 30", log_path=tmp_path / "trial.log")
    try:
        description = json.loads(json.dumps(job.describe()))  # as the registry stores it
        assert description["platform"] == "datascience"
        # Another process (the assessor, `hpo-tools kill`) rebuilds a DataScience platform.
        again = platform_for_description(description)
        assert isinstance(again, DataSciencePlatform)
        assert again.cancel_described(description) is True
        assert job.wait(5).is_finished
    finally:
        job.cancel()
    assert job.poll() in (JobState.FAILED, JobState.CANCELLED)


def test_a_datascience_trial_dry_runs_on_the_fake_clouds_hdfs(tmp_path):
    """HPO_TOOLS_FAKE_CLOUD=DIR: hdfs:// paths are files under DIR/.hdfs (the WebHDFS address
    is still required, as in a real run); the job here writes its events there itself."""
    cloud = tmp_path / "cloud"
    hdfs = cloud / ".hdfs"
    (hdfs / "configs").mkdir(parents=True)
    (hdfs / "configs/pipeline.config").write_text(PIPELINE)
    text = (
        "[platform_config]\nname=DataScience\n"
        f"cmd1={TRAIN} --config {hdfs}/exp/${{trial_id}}/pipeline.config "
        f"--model_dir {hdfs}/model/${{trial_id}} --steps 2 --sleep 0.05\n"
        "[params_config]\n"
        f"params_src_dst_filepath1={NN}/configs/pipeline.config,"
        f"{NN}/exp/${{trial_id}}/pipeline.config\n"
        "[metric_config]\nmetric_type=summary\n"
        f"metric_source={NN}/model/${{trial_id}}/eval_val\n"
        "metric_dict={'auc': 1}\nfinal_mode=final\n"
    )
    (tmp_path / "trial.ini").write_text(text)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "PYTHONPATH": str(REPO),
           "HOME": str(tmp_path), "HPO_TOOLS_FAKE_CLOUD": str(cloud),
           "HPO_TOOLS_WEBHDFS": "http://emr-header-1:9870"}
    done = subprocess.run(
        [sys.executable, "-m", "hpo_tools", "run", "--config", "trial.ini",
         "--params", json.dumps({LR_PATH: 0.02}), "--exp_dir", str(tmp_path / "exp"),
         "--trial-id", "t1", "--interval", "0.05"],
        capture_output=True, text=True, env=env, timeout=120, cwd=tmp_path,
    )
    assert done.returncode == 0, done.stderr + done.stdout
    assert "HDFS at" in done.stderr.splitlines()[0]  # the fake cloud's notice
    assert "learning_rate: 0.02" in (hdfs / "exp/t1/pipeline.config").read_text()
    assert not list((hdfs / "exp/t1").glob(".*.tmp"))  # written through a renamed temp file
    result = json.loads((tmp_path / "exp/standalone/trials/t1/result.json").read_text())
    assert result["final"]["score"] == pytest.approx(auc_for(0.02, 2), abs=1e-6)
    assert [r["step"] for r in result["intermediate"]] == [100, 200]
