"""A 3-day finetune trial with the real local trainer: chaining, per-day reports, failure, resume.

One scenario, to stay within the time budget (each trainer run pays TensorFlow's import): a begin
model is trained; a trial over 20220614..20220616 fails on day 2 (an injected failing command);
the same trial re-run with resume=1 trains and reports only days 2 and 3, its final over all three.
"""

from __future__ import annotations

import json
import re
import shlex
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial_files import run_trial_file

pytestmark = pytest.mark.timeout(240)

PYTHON = shlex.quote(sys.executable)
LR_PATH = (
    "train_config.optimizer_config[0].adam_optimizer.learning_rate."
    "constant_learning_rate.learning_rate"
)

_FIELDS = "\n".join(
    f'  input_fields {{ input_name: "{name}" input_type: {kind} }}'
    for name, kind in [
        ("clk", "INT32"), ("buy", "INT32"), ("user_id", "STRING"), ("age_level", "INT32"),
        ("gender", "INT32"), ("pvalue_level", "INT32"), ("shopping_level", "INT32"),
        ("occupation", "INT32"), ("new_user_class_level", "INT32"), ("city_level", "INT32"),
        ("item_id", "STRING"), ("cate_id", "STRING"), ("brand_id", "STRING"),
        ("campaign_id", "STRING"), ("customer_id", "STRING"), ("price", "DOUBLE"),
        ("pid", "STRING"), ("hour", "INT32"), ("weekday", "INT32"),
        ("user_click_cnt_7d", "DOUBLE"), ("item_ctr_7d", "DOUBLE"),
        ("user_cate_affinity", "DOUBLE"),
    ]
)


def tiny_pipeline(num_steps: int = 2, learning_rate: float = 0.01) -> str:
    """A small DBMTL pipeline.config over the synthetic data (a few seconds per run)."""
    return f"""
data_config {{
  batch_size: 64
  num_epochs: 0
  input_type: CSVInput
  separator: ","
  label_fields: "clk"
  label_fields: "buy"
{_FIELDS}
}}
feature_configs {{ input_names: "user_id" feature_type: IdFeature embedding_dim: 4
                   hash_bucket_size: 200 }}
feature_configs {{ input_names: "item_id" feature_type: IdFeature embedding_dim: 4
                   hash_bucket_size: 200 }}
feature_configs {{ input_names: "pid" feature_type: IdFeature embedding_dim: 4 num_buckets: 3 }}
model_config {{
  model_class: "DBMTL"
  feature_groups {{ group_name: "all" feature_names: ["user_id", "item_id", "pid"]
                   wide_deep: DEEP }}
  dbmtl {{
    bottom_dnn {{ hidden_units: [8] }}
    task_towers {{ tower_name: "ctr" label_name: "clk" dnn {{ hidden_units: [4] }} weight: 1.0 }}
    task_towers {{ tower_name: "cvr" label_name: "buy" dnn {{ hidden_units: [4] }} weight: 1.0 }}
  }}
}}
train_config {{
  optimizer_config {{
    adam_optimizer {{ learning_rate {{ constant_learning_rate {{
      learning_rate: {learning_rate} }} }} }}
    use_moving_average: false
  }}
  num_steps: {num_steps}
  save_checkpoints_steps: {num_steps}
}}
eval_config {{ metrics_set {{ auc {{}} }} }}
"""


def train_begin_model(root: Path, data: Path) -> Path:
    """Train the begin model (from scratch, on the day before the window)."""
    config = root / "begin.config"
    config.write_text(tiny_pipeline(num_steps=2))
    model = root / "begin_model"
    subprocess.run(
        [sys.executable, "-m", "hpo_tools.trainer", "--pipeline_config_path", str(config),
         "--model_dir", str(model), "--train_input_path", str(data / "daily" / "20220613.csv"),
         "--eval_input_path", str(data / "daily" / "20220614.csv")],
        check=True, capture_output=True, timeout=180,
    )
    return model


def finetune_trial_file(root: Path, data: Path, begin: Path) -> Path:
    """A platform-format finetune trial: cmd1 fails on a day whose marker file exists."""
    (root / "pipeline.config").write_text(tiny_pipeline(num_steps=2, learning_rate=0.001))
    path = root / "trial.ini"
    path.write_text(f"""\
[finetune_config]
model_dir=${{NNI_OUTPUT_DIR}}/model/{{bizdate}}
fine_tune_checkpoint={begin}

[platform_config]
name=Local
resume=1
cmd1=test ! -e {root}/fail-{{bizdate}}
cmd2={PYTHON} -m hpo_tools.trainer
    --pipeline_config_path ${{NNI_OUTPUT_DIR}}/days/{{bizdate}}/pipeline.config
    --model_dir {{model_dir}} --fine_tune_checkpoint {{fine_tune_checkpoint}}
    --train_input_path {data}/daily/{{bizdate}}.csv
    --eval_input_path {data}/daily/{{eval_ymd}}.csv

[metric_config]
metric_type=summary
metric_source={{model_dir}}/eval_val
metric_dict={{"auc_ctr": 0.5, "auc_cvr": 0.5}}

[params_config]
params_src_dst_filepath1={root}/pipeline.config,${{NNI_OUTPUT_DIR}}/days/{{bizdate}}/pipeline.config
""")
    return path


def start_lines(log: Path) -> list[str]:
    """The trainer's "start: ..." lines in a day's log (what it restored from)."""
    if not log.exists():
        return []
    return [line for line in log.read_text().splitlines() if line.startswith("start:")]


def test_three_days_chain_fail_on_day_two_then_resume(tmp_path: Path) -> None:
    from hpo_tools.trainer.data import write_dataset

    data = tmp_path / "data"
    write_dataset(data, days=5, rows_per_day=200, seed=0)  # 20220613 .. 20220617
    begin = train_begin_model(tmp_path, data)
    trial = finetune_trial_file(tmp_path, data, begin)
    exp_dir = tmp_path / "exp"
    params = {LR_PATH: 0.002}
    window = {"start_time": "2022-06-14", "end_time": "2022-06-16"}
    (tmp_path / "fail-20220615").touch()

    first = ConsoleReporter(params, trial_id="t1")
    failed = run_trial_file(trial, first, exp_dir=exp_dir, interval=0.2, **window)

    # The injected failure stops the chain on day 2, and the message says where.
    assert failed.status == "failed" and failed.exit_code != 0
    assert "day 20220615" in failed.message
    assert "cmd1: test ! -e" in failed.message
    # Day 1 was reported as it ended; no final result for a broken chain.
    assert len(first.intermediate) == 1 and first.final is None
    trial_dir = Path(failed.trial_dir)
    days = trial_dir / "days"
    # Day 3 never started.
    assert not (days / "20220616").exists()
    day1_starts = start_lines(days / "20220614" / "trial.log")
    # Day 1 started from the begin model given in the file.
    assert len(day1_starts) == 1 and f"{begin}/model.ckpt-" in day1_starts[0]

    (tmp_path / "fail-20220615").unlink()
    second = ConsoleReporter(params, trial_id="t1")
    resumed = run_trial_file(trial, second, exp_dir=exp_dir, interval=0.2, **window)

    assert resumed.status == "succeeded", resumed.message
    # Day 1 was not trained again: its log still has its one start line.
    assert start_lines(days / "20220614" / "trial.log") == day1_starts
    # Day 2 restored day 1's checkpoint of this same trial, day 3 day 2's (the trainer's log
    # names the checkpoint it read).
    model = trial_dir / "model"
    day2_starts = start_lines(days / "20220615" / "trial.log")
    day3_starts = start_lines(days / "20220616" / "trial.log")
    assert len(day2_starts) == 1 and f"{model}/20220614/model.ckpt-" in day2_starts[0]
    assert len(day3_starts) == 1 and f"{model}/20220615/model.ckpt-" in day3_starts[0]
    # Days 2 and 3 are reported; day 1's result, read back from its result.json, went to
    # this trial id in the first run and is not sent again. The final result is the average
    # of all three days.
    assert len(second.intermediate) == 2
    scores = [report["default"] for report in first.intermediate + second.intermediate]
    assert second.final is not None
    assert second.final["default"] == pytest.approx(sum(scores) / 3)
    # The trial's own result.json tells the same, day by day.
    result = json.loads((trial_dir / "result.json").read_text())
    assert [entry["day"] for entry in result["intermediate"]] == ["20220614", "20220615",
                                                                   "20220616"]
    assert result["status"] == "succeeded"
    # params.json: the parameters and the last day's edited config (what `experiment best`
    # exports).
    own = json.loads((trial_dir / "params.json").read_text())
    assert own["params"] == params
    assert own["configs"] == [str(days / "20220616" / "pipeline.config")]
    # Each day's edited config carries the trial's learning rate.
    edited = (days / "20220616" / "pipeline.config").read_text()
    assert re.search(r"learning_rate:\s*0\.002\b", edited)
