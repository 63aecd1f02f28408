"""`hpo-tools finetune-daily`: one day with fixed parameters, idempotent, exit codes for cron.

The day's command runs tests/trial/fake_train.py through the real runner and Local platform; it
appends the day to runs.txt, so a test can count trainings.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest

from hpo_tools.cli import main

FAKE_TRAIN = Path(__file__).resolve().parents[1] / "trial" / "fake_train.py"
TRAIN = f"{shlex.quote(sys.executable)} {shlex.quote(str(FAKE_TRAIN))}"
LR_PATH = (
    "train_config.optimizer_config[0].adam_optimizer.learning_rate."
    "constant_learning_rate.learning_rate"
)
PIPELINE = """\
train_config {
  optimizer_config {
    adam_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.05 } } }
  }
}
"""


@pytest.fixture
def daily(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A finetune trial file, best params, and a runner of `hpo-tools finetune-daily`."""
    monkeypatch.chdir(tmp_path)
    for name in ("NNI_PLATFORM", "NNI_OUTPUT_DIR", "NNI_LOG_DIRECTORY"):
        monkeypatch.delenv(name, raising=False)
    (tmp_path / "pipeline.config").write_text(PIPELINE)
    (tmp_path / "trial.ini").write_text(f"""\
[finetune_config]
model_dir=${{NNI_OUTPUT_DIR}}/model/{{bizdate}}
fine_tune_checkpoint={tmp_path}/begin

[platform_config]
name=Local
cmd1=echo {{bizdate}} >> {tmp_path}/runs.txt && echo start from {{fine_tune_checkpoint}} &&
    test ! -e {tmp_path}/fail-{{bizdate}} &&
    {TRAIN} --config ${{NNI_OUTPUT_DIR}}/days/{{bizdate}}/pipeline.config
    --model_dir {{model_dir}} --steps 2 --sleep 0

[metric_config]
metric_source={{model_dir}}/eval_val
metric_dict={{"auc": 1}}

[params_config]
params_src_dst_filepath1=pipeline.config,${{NNI_OUTPUT_DIR}}/days/{{bizdate}}/pipeline.config
""")
    (tmp_path / "best_params.json").write_text(json.dumps({LR_PATH: 0.01}))

    def run(*extra: str) -> int:
        return main(["finetune-daily", "--config", "trial.ini", "--params", "best_params.json",
                     "--interval", "0.1", *extra])

    return run


def runs(tmp_path: Path) -> list[str]:
    path = tmp_path / "runs.txt"
    return path.read_text().split() if path.exists() else []


def day_log(tmp_path: Path, day: str) -> str:
    return (tmp_path / "exp" / "daily" / "trials" / "daily" / "days" / day / "trial.log"
            ).read_text()


def test_a_normal_day_trains_from_the_begin_model_and_exits_zero(daily, tmp_path, capsys):
    assert daily("--bizdate", "20220616") == 0
    out = capsys.readouterr().out
    # The best parameters reached the config: lr 0.01 is the fake trainer's best (0.6).
    assert "day 20220616 finetuned: score 0.6 " in out
    assert runs(tmp_path) == ["20220616"]
    # The first daily run starts from the begin model of the file.
    assert f"start from {tmp_path}/begin" in day_log(tmp_path, "20220616")


def test_the_same_day_twice_does_not_train_again(daily, tmp_path, capsys):
    assert daily("--bizdate", "20220616") == 0
    capsys.readouterr()
    assert daily("--bizdate", "20220616") == 0
    # Recorded as done: the command did not run a second time, the score is the recorded one.
    assert runs(tmp_path) == ["20220616"]
    assert "day 20220616 already done, not trained again: score 0.6 " in capsys.readouterr().out


def test_retrain_trains_the_day_again(daily, tmp_path):
    assert daily("--bizdate", "20220616") == 0
    assert daily("--bizdate", "20220616", "--retrain") == 0
    # --retrain is how to force a second training of a recorded day.
    assert runs(tmp_path) == ["20220616", "20220616"]


def test_the_next_day_starts_from_the_previous_days_model(daily, tmp_path):
    assert daily("--bizdate", "20220616") == 0
    assert daily("--bizdate", "20220617") == 0
    model = tmp_path / "exp" / "daily" / "trials" / "daily" / "model"
    assert f"start from {model}/20220616" in day_log(tmp_path, "20220617")


def test_a_gap_in_the_chain_is_refused(daily, tmp_path, capsys):
    assert daily("--bizdate", "20220616") == 0
    capsys.readouterr()
    # 20220617 was never run: 20220618 must not silently start from a stale model.
    assert daily("--bizdate", "20220618") == 1
    assert "day 20220617 is not finished" in capsys.readouterr().err
    assert runs(tmp_path) == ["20220616"]


def test_a_failing_day_exits_non_zero_naming_day_and_command(daily, tmp_path, capsys):
    (tmp_path / "fail-20220616").touch()
    assert daily("--bizdate", "20220616") == 1
    err = capsys.readouterr().err
    assert "day 20220616 failed" in err and "cmd1" in err
    # A failed day is not recorded as done: the next run trains it again.
    (tmp_path / "fail-20220616").unlink()
    assert daily("--bizdate", "20220616") == 0
    assert runs(tmp_path) == ["20220616", "20220616"]


def test_a_score_under_the_floor_exits_three(daily, tmp_path, capsys):
    assert daily("--bizdate", "20220616", "--min-score", "0.65") == 3
    assert "score 0.6 is worse than --min-score 0.65" in capsys.readouterr().err


def test_a_score_over_the_floor_exits_zero(daily):
    assert daily("--bizdate", "20220616", "--min-score", "0.55") == 0


def test_learning_rate_option_sets_every_learning_rate(daily, tmp_path, capsys):
    # lr 0.03 instead of the best 0.01: the fake trainer's score drops by 0.02.
    assert daily("--bizdate", "20220616", "--learning-rate", "0.03") == 0
    assert "score 0.58 " in capsys.readouterr().out


def test_bad_bizdate_is_a_usage_error(daily, capsys):
    assert daily("--bizdate", "20220230") == 2
    assert "--bizdate: '20220230' is not a date" in capsys.readouterr().err


def test_params_file_may_be_given_as_at_file_like_hpo_tools_run(daily, tmp_path, capsys):
    # `hpo-tools run --params @best_params.json` is the other command's spelling: same parser.
    assert daily("--bizdate", "20220616", "--params", "@best_params.json") == 0
    assert "score 0.6 " in capsys.readouterr().out  # lr 0.01 from the file, as in the plain form


def test_a_job_name_that_is_not_a_plain_name_is_a_usage_error(daily, tmp_path, capsys):
    # The job name becomes a file name (registry, trial directory): '../x' would escape them.
    assert daily("--bizdate", "20220616", "--job", "../x") == 2
    assert "--job '../x': expected a plain name" in capsys.readouterr().err
    assert runs(tmp_path) == []  # nothing ran


def test_the_daily_job_may_write_its_models_where_serving_reads_them(daily, tmp_path, capsys):
    trial = tmp_path / "trial.ini"
    trial.write_text(trial.read_text().replace("model_dir=${NNI_OUTPUT_DIR}/model/{bizdate}",
                                               f"model_dir={tmp_path}/serving/{{bizdate}}"))
    # One chain outside any search: no other trial can share the directory, so it need not
    # hold the job name (a search trial's model_dir must hold its trial id).
    assert daily("--bizdate", "20220616", "--job", "nightly42") == 0, capsys.readouterr().err
    assert (tmp_path / "serving" / "20220616" / "eval_val").is_dir()
