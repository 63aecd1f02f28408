"""The seed systems' own experiment files run on hpo-tools: EasyRec's hpo_nni (search/begin,
search/finetune) and hpo_tools 0.1.x (exp.yml + trial.ini), written out in tests/seed/ with our
own values. `hpo-tools check` and `hpo-tools run` (real subprocesses) take them unchanged, apart
from `hpo-tools migrate` for hpo_nni's trial command, under the fake cloud
(`HPO_TOOLS_FAKE_CLOUD`: fakes at the pyodps / oss2 client boundary; the PAI jobs are recorded,
not run). tests/e2e/test_seed_e2e.py runs them through real NNI.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from tests.seed.cloud import (
    KEY_ID,
    KEY_SECRET,
    SEED,
    copy_seed,
    oss_path,
    submissions,
    training_config,
    write_eval_events,
)

REPO = Path(__file__).resolve().parents[1]
HPO_TOOLS = [sys.executable, "-m", "hpo_tools"]


def _run(args: list[str], cwd: Path, env: dict[str, str],
         timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([*HPO_TOOLS, *args], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=timeout)


@pytest.fixture
def cloud(tmp_path: Path) -> Path:
    """The fake cloud's directory, with the buckets the seed files name."""
    root = tmp_path / "cloud"
    (root / "hpo-seed-fixture").mkdir(parents=True)
    return root


@pytest.fixture
def env(cloud: Path) -> dict[str, str]:
    environ = {k: v for k, v in os.environ.items()
               if not k.startswith(("OSS_", "ODPS_", "NNI_", "HPO_TOOLS_"))}
    environ.update(HPO_TOOLS_FAKE_CLOUD=str(cloud), HPO_TOOLS_FAKE_CLOUD_JOBS="succeed",
                   PYTHONPATH=str(REPO), AK=KEY_ID, SK=KEY_SECRET)
    return environ


def _training_config(cloud: Path, url: str) -> None:
    """The base training config the trial file names on OSS (a small valid one)."""
    training_config(cloud, url)


def _no_secret_in_files(*roots: Path) -> None:
    for root in roots:
        for path in root.rglob("*"):
            if path.is_file() and path.suffix not in (".ini",):  # the user's own trial files
                data = path.read_bytes()
                assert KEY_SECRET.encode() not in data and KEY_ID.encode() not in data, path


# -- hpo_nni (EasyRec's first HPO tool) -----------------------------------------------------


def test_hpo_nni_directory_migrates_and_nothing_but_the_two_lines_change(tmp_path):
    search = copy_seed("hpo_nni", tmp_path / "hpo_nni" / "search")
    before = {p: p.read_bytes() for p in search.rglob("*") if p.is_file()}
    done = subprocess.run([*HPO_TOOLS, "migrate", str(search)], capture_output=True, text=True,
                          timeout=60)
    assert done.returncode == 0, done.stderr
    begin = (search / "begin" / "config.yml").read_text()
    finetune = (search / "finetune" / "config.yml").read_text()
    assert "trialCommand: python3 -m hpo_tools.run --config ./config_begin.ini\n" in begin
    assert ("trialCommand: python3 -m hpo_tools.run --config ./config_finetune.ini "
            "--start_time 2024-03-11 --end_time 2024-03-12\n") in finetune
    assert f"codeDirectory: {REPO / 'core'}" in begin
    for path, data in before.items():
        if path.name != "config.yml":
            assert path.read_bytes() == data, path  # trial files and search spaces unchanged
        else:
            changed = [line for line in path.read_text().splitlines()
                       if line not in data.decode().splitlines()]
            assert len(changed) == 2, changed  # trialCommand and codeDirectory only


def test_hpo_nni_begin_file_passes_check_unchanged(tmp_path, cloud, env):
    begin = copy_seed("hpo_nni/begin", tmp_path / "begin")
    _training_config(cloud, "oss://hpo-seed-fixture/begin/ctr_model.config")
    done = _run(["check", "--config", "config_begin.ini", "--search-space",
                 "search_space.json"], begin, env)
    assert done.returncode == 0, done.stderr
    assert "fake cloud" in done.stderr.splitlines()[0]


def test_hpo_nni_begin_file_runs_unchanged(tmp_path, cloud, env):
    begin = copy_seed("hpo_nni/begin", tmp_path / "begin")
    _training_config(cloud, "oss://hpo-seed-fixture/begin/ctr_model.config")
    # The classic format gives each trial its own model directory: <-Dmodel_dir>/<exp>_<trial>.
    write_eval_events(cloud, "oss://hpo-seed-fixture/begin/model/standalone_standalone",
                      auc=0.7712)
    done = _run(["run", "--config", "config_begin.ini", "--params",
                 '{"model_config.embedding_regularization": 0.00005}'], begin, env)
    assert done.returncode == 0, done.stdout + done.stderr
    jobs = submissions(cloud)
    assert len(jobs) == 1
    command = jobs[0]["command"]
    assert command.startswith("PAI -name easy_rec_ext -project algo_public")
    assert "-Dmodel_dir=oss://hpo-seed-fixture/begin/model/standalone_standalone" in command
    edits = json.loads(jobs[0]["parameters"]["edit_config_json"])
    assert edits == {"model_config.embedding_regularization": 0.00005}
    result = json.loads((begin / "exp/standalone/trials/standalone/result.json").read_text())
    assert result["status"] == "succeeded"
    assert result["final"]["score"] == pytest.approx(0.7712, abs=1e-6)
    _no_secret_in_files(begin / "exp", cloud)


def test_hpo_nni_finetune_file_passes_check_unchanged(tmp_path, cloud, env):
    finetune = copy_seed("hpo_nni/finetune", tmp_path / "finetune")
    _training_config(cloud, "oss://hpo-seed-fixture/finetune/rank_finetune.config")
    done = _run(["check", "--config", "config_finetune.ini", "--search-space",
                 "search_space.json"], finetune, env)
    assert done.returncode == 0, done.stderr


# -- hpo_tools 0.1.x -------------------------------------------------------------------------


def test_v01_maxcompute_trial_file_passes_check_unchanged(tmp_path, env):
    trial = copy_seed("v01/maxcompute", tmp_path / "mc")
    done = _run(["check", "--config", "trial.ini", "--search-space", "search_space.json"],
                trial, env)
    assert done.returncode == 0, done.stderr


def test_v01_maxcompute_trial_file_runs_unchanged(tmp_path, cloud, env):
    trial = copy_seed("v01/maxcompute", tmp_path / "mc")
    write_eval_events(cloud, "oss://hpo-seed-fixture/v01/model/ctr_standalone_standalone",
                      auc=0.7401)
    params = {"${initial_learning_rate}": 0.002, "${batch_size}": 1024}
    done = _run(["run", "--config", "trial.ini", "--params", json.dumps(params)], trial, env)
    assert done.returncode == 0, done.stdout + done.stderr
    # The placeholders were replaced in the training config, written to OSS.
    written = oss_path(cloud, "oss://hpo-seed-fixture/v01/config/"
                              "ctr_model_standalone_standalone.config").read_text()
    assert "initial_learning_rate: 0.002\n" in written and "batch_size: 1024\n" in written
    assert "${" not in written
    (job,) = submissions(cloud)
    assert ("-Dconfig=oss://hpo-seed-fixture/v01/config/ctr_model_standalone_standalone.config"
            in job["command"])
    result = json.loads((trial / "exp/standalone/trials/standalone/result.json").read_text())
    assert result["status"] == "succeeded"
    assert result["final"]["score"] == pytest.approx(0.7401, abs=1e-6)
    _no_secret_in_files(trial / "exp", cloud)


def test_v01_local_trial_file_passes_check_unchanged(tmp_path, env):
    trial = copy_seed("v01/local", tmp_path / "local")
    env = {**env, "DINGTALK_WEBHOOK": "http://127.0.0.1:9/robot/send?access_token=abc"}
    done = _run(["check", "--config", "trial_local.ini", "--search-space",
                 "search_space.json"], trial, env)
    assert done.returncode == 0, done.stderr


def test_v01_finetune_trial_file_passes_check_unchanged(tmp_path, env):
    trial = copy_seed("v01/finetune", tmp_path / "ft")
    done = _run(["check", "--config", "config_finetune.ini", "--search-space",
                 "search_space.json"], trial, env)
    assert done.returncode == 0, done.stderr


def test_every_seed_directory_is_covered():
    """A seed directory added without a test here would prove nothing."""
    dirs = {str(p.parent.relative_to(SEED)) for p in SEED.rglob("*.yml")}
    assert dirs == {"hpo_nni/begin", "hpo_nni/finetune", "v01/maxcompute", "v01/local",
                    "v01/finetune"}
