"""The seed systems' experiment directories (tests/seed/) through real NNI, as their users start
them: `hpo-tools experiment run CONFIG` (a real subprocess, NNI's Python API inside).

- EasyRec hpo_nni's search/begin and search/finetune, after `hpo-tools migrate` (the only
  change: trialCommand and the assessor's codeDirectory), on the fake cloud (MaxCompute and OSS
  faked at the pyodps / oss2 client; `EvalWriter` writes the evaluation events EasyRec would);
- hpo_tools 0.1.x's exp.yml + trial.ini for MaxCompute, unchanged, with `assessor: {name:
  PAIAssessor}` registered by `hpo-tools register` in a throw-away NNI config directory;
- hpo_tools 0.1.x's local exp.yml + trial_local.ini, unchanged, training for real with the
  local trainer, with [output_config] (the best trial copied at the end) and [monitor_config]
  (DingTalk messages to a real HTTP server on localhost).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_tools import experiment as ex
from tests.seed.cloud import KEY_ID, KEY_SECRET, EvalWriter, copy_seed, training_config
from tests.test_monitor import Robot

pytestmark = [pytest.mark.e2e, pytest.mark.timeout(300)]

REPO = Path(__file__).resolve().parents[2]
TIMEOUT = 200


def _environ(tmp: Path, cloud: Path | None = None, **more: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("OSS_", "ODPS_", "NNI_", "HPO_TOOLS_"))}
    env.update(PYTHONPATH=str(REPO), AK=KEY_ID, SK=KEY_SECRET,
               NNI_CONFIG_DIR=str(tmp / "nni-config"), **more)
    if cloud is not None:
        env.update(HPO_TOOLS_FAKE_CLOUD=str(cloud), HPO_TOOLS_FAKE_CLOUD_JOBS="succeed")
    return env


def _experiment_run(config: Path, work: Path, env: dict[str, str]) -> tuple[
        subprocess.CompletedProcess, ex.Snapshot]:
    done = subprocess.run(
        [sys.executable, "-m", "hpo_tools", "experiment", "run", str(config), "--working-dir",
         str(work), "--timeout", str(TIMEOUT)],
        cwd=config.parent, env=env, capture_output=True, text=True, timeout=TIMEOUT + 60)
    assert work.is_dir(), done.stdout + done.stderr  # the experiment never started
    (root,) = [p for p in work.iterdir() if p.is_dir() and not p.is_symlink()]  # not _latest
    return done, ex.build_snapshot(ex.experiment_files(root))


def _cloud(tmp: Path) -> Path:
    cloud = tmp / "cloud"
    (cloud / "hpo-seed-fixture").mkdir(parents=True)
    return cloud


def _migrated(tmp: Path) -> Path:
    search = copy_seed("hpo_nni", tmp / "hpo_nni" / "search")
    done = subprocess.run([sys.executable, "-m", "hpo_tools", "migrate", str(search)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return search


def test_hpo_nni_begin_after_migrate(tmp_path):
    search, cloud = _migrated(tmp_path), _cloud(tmp_path)
    training_config(cloud, "oss://hpo-seed-fixture/begin/ctr_model.config")
    with EvalWriter(cloud, auc=0.781) as writer:
        done, snapshot = _experiment_run(search / "begin" / "config.yml", tmp_path / "nni",
                                         _environ(tmp_path, cloud))
    assert done.returncode == 0, done.stdout + done.stderr
    (view,) = snapshot.trials
    assert view.outcome is ex.Outcome.SUCCEEDED, done.stdout
    assert view.run.score == pytest.approx(0.781, abs=1e-6)
    assert len(writer.model_dirs) == 1 and view.trial_id in writer.model_dirs[0]


def test_hpo_nni_finetune_after_migrate_chains_its_two_days(tmp_path):
    search, cloud = _migrated(tmp_path), _cloud(tmp_path)
    training_config(cloud, "oss://hpo-seed-fixture/finetune/rank_finetune.config")
    with EvalWriter(cloud, auc_is_click=0.70, auc_is_like=0.65) as writer:
        done, snapshot = _experiment_run(search / "finetune" / "config.yml", tmp_path / "nni",
                                         _environ(tmp_path, cloud))
    assert done.returncode == 0, done.stdout + done.stderr
    (view,) = snapshot.trials
    assert view.outcome is ex.Outcome.SUCCEEDED, done.stdout
    assert view.run.score == pytest.approx(0.6 * 0.70 + 0.4 * 0.65, abs=1e-6)
    # One job per day, with the day's tables; day 2 starts from day 1's model.
    assert [d.split("/")[4] for d in writer.model_dirs] == ["20240311_rank_model",
                                                           "20240312_rank_model"]
    jobs = [json.loads(line) for line in
            (cloud / ".maxcompute" / "submissions.jsonl").read_text().splitlines()]
    assert "video_rank_sample_20240312" in jobs[1]["command"]
    day2_edits = json.loads(jobs[1]["parameters"]["edit_config_json"])
    assert day2_edits["train_config.fine_tune_checkpoint"] == writer.model_dirs[0]


def test_v01_maxcompute_with_the_registered_pai_assessor(tmp_path):
    trial, cloud = copy_seed("v01/maxcompute", tmp_path / "mc"), _cloud(tmp_path)
    env = _environ(tmp_path, cloud)
    registered = subprocess.run([sys.executable, "-m", "hpo_tools", "register"], env=env,
                                capture_output=True, text=True, timeout=120)
    assert registered.returncode == 0, registered.stderr
    with EvalWriter(cloud, auc=0.752):
        done, snapshot = _experiment_run(trial / "exp.yml", tmp_path / "nni", env)
    assert done.returncode == 0, done.stdout + done.stderr
    (view,) = snapshot.trials
    assert view.outcome is ex.Outcome.SUCCEEDED, done.stdout
    assert view.run.score == pytest.approx(0.752, abs=1e-6)
    assert set(view.run.params) == {"${initial_learning_rate}", "${batch_size}"}


def test_v01_finetune_runs_its_days_as_written(tmp_path):
    """0.1.x's finetune file writes each day's command out (Jinja) and chains the days itself
    (-Dfine_tune_checkpoint of the day before): the days run in order, as written."""
    trial, cloud = copy_seed("v01/finetune", tmp_path / "ft"), _cloud(tmp_path)
    env = _environ(tmp_path, cloud)
    registered = subprocess.run([sys.executable, "-m", "hpo_tools", "register"], env=env,
                                capture_output=True, text=True, timeout=120)
    assert registered.returncode == 0, registered.stderr
    with EvalWriter(cloud, auc_is_click=0.71, auc_is_like=0.66) as writer:
        done, snapshot = _experiment_run(trial / "config_finetune.yml", tmp_path / "nni", env)
    assert done.returncode == 0, done.stdout + done.stderr
    (view,) = snapshot.trials
    assert view.outcome is ex.Outcome.SUCCEEDED, done.stdout
    assert view.run.score == pytest.approx(0.6 * 0.71 + 0.4 * 0.66, abs=1e-6)
    assert len(view.run.intermediate) == 2  # one result per day
    jobs = [json.loads(line) for line in
            (cloud / ".maxcompute" / "submissions.jsonl").read_text().splitlines()]
    assert [j["parameters"]["train_tables"] for j in jobs] == [
        "odps://ctr_fixture_dev/tables/video_rank_sample/dt=20240311",
        "odps://ctr_fixture_dev/tables/video_rank_sample/dt=20240312"]
    assert jobs[1]["parameters"]["fine_tune_checkpoint"] == writer.model_dirs[0]


def test_v01_local_trains_copies_the_best_and_messages_the_robot(tmp_path):
    from hpo_tools.trainer.data import write_dataset

    trial = copy_seed("v01/local", tmp_path / "local")
    write_dataset(trial / "samples" / "data", days=2, rows_per_day=800, seed=0)
    robot = Robot()
    try:
        env = _environ(tmp_path, DINGTALK_WEBHOOK=robot.url)
        registered = subprocess.run([sys.executable, "-m", "hpo_tools", "register"], env=env,
                                    capture_output=True, text=True, timeout=120)
        assert registered.returncode == 0, registered.stderr
        done, snapshot = _experiment_run(trial / "exp.yml", tmp_path / "nni", env)
    finally:
        robot.close()
    assert done.returncode == 0, done.stdout + done.stderr
    (view,) = snapshot.trials
    assert view.outcome is ex.Outcome.SUCCEEDED, done.stdout
    assert 0.0 < view.run.score < 1.0
    exp_id = view.run.experiment_id
    # [output_config]: the best trial's event files and model, copied at the end.
    assert list((trial / "best_summary" / exp_id / "eval_val").glob("events.out.tfevents.*"))
    assert (trial / "best_model" / exp_id / "checkpoint").is_file()
    # [monitor_config]: a new best score was messaged, keyword first, as DingTalk expects.
    contents = [body["text"]["content"] for body in robot.bodies]
    assert any(text.startswith("hpo") and "best" in text for text in contents), contents
    assert robot.bodies[0]["at"]["atMobiles"] == ["13800000000"]
