"""Fixtures for the trainer tests: tiny synthetic data and a small DBMTL config."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo_tools.trainer.data import write_dataset

_FIELDS = """
  input_fields { input_name: "clk" input_type: INT32 default_val: "0" }
  input_fields { input_name: "buy" input_type: INT64 default_val: "0" }
  input_fields { input_name: "user_id" input_type: STRING }
  input_fields { input_name: "age_level" input_type: INT32 }
  input_fields { input_name: "gender" input_type: INT32 }
  input_fields { input_name: "pvalue_level" input_type: INT32 }
  input_fields { input_name: "shopping_level" input_type: INT32 }
  input_fields { input_name: "occupation" input_type: INT32 }
  input_fields { input_name: "new_user_class_level" input_type: INT32 }
  input_fields { input_name: "city_level" input_type: INT32 }
  input_fields { input_name: "item_id" input_type: STRING }
  input_fields { input_name: "cate_id" input_type: STRING }
  input_fields { input_name: "brand_id" input_type: STRING }
  input_fields { input_name: "campaign_id" input_type: STRING }
  input_fields { input_name: "customer_id" input_type: STRING }
  input_fields { input_name: "price" input_type: DOUBLE default_val: "0.0" }
  input_fields { input_name: "pid" input_type: STRING }
  input_fields { input_name: "hour" input_type: INT32 }
  input_fields { input_name: "weekday" input_type: INT32 }
  input_fields { input_name: "user_click_cnt_7d" input_type: FLOAT }
  input_fields { input_name: "item_ctr_7d" input_type: DOUBLE }
  input_fields { input_name: "user_cate_affinity" input_type: DOUBLE }
"""

# Every feature kind: hashed string ids, hashed int ids, identity ids (num_buckets),
# bucketized raw values (boundaries), a raw value times a vector, and a bare raw value (DeepFM's
# wide group only: an unscaled price would swamp DBMTL's DNN).
FEATURES = """
feature_configs { input_names: "user_id" feature_type: IdFeature embedding_dim: 8
                  hash_bucket_size: 500 }
feature_configs { input_names: "item_id" feature_type: IdFeature embedding_dim: 8
                  hash_bucket_size: 500 }
feature_configs { input_names: "age_level" feature_type: IdFeature embedding_dim: 8
                  hash_bucket_size: 10 }
feature_configs { input_names: "gender" feature_type: IdFeature embedding_dim: 8 num_buckets: 3 }
feature_configs { input_names: "pid" feature_type: IdFeature embedding_dim: 8 num_buckets: 3 }
feature_configs { input_names: "item_ctr_7d" feature_type: RawFeature embedding_dim: 8
                  boundaries: [0.1, 0.2, 0.3] }
feature_configs { input_names: "user_cate_affinity" feature_type: RawFeature embedding_dim: 8 }
"""
RAW_PLAIN = """
feature_configs { input_names: "price" feature_type: RawFeature }
"""

DBMTL = """
model_config {
  model_class: "DBMTL"
  feature_groups { group_name: "all" feature_names: ["user_id", "item_id", "age_level", "gender",
                   "pid", "item_ctr_7d", "user_cate_affinity"] wide_deep: DEEP }
  dbmtl {
    bottom_dnn { hidden_units: [16] }
    task_towers { tower_name: "ctr" label_name: "clk" loss_type: CLASSIFICATION
                  metrics_set { auc {} } dnn { hidden_units: [8] } relation_dnn { hidden_units: 4 }
                  weight: 1.0 }
    task_towers { tower_name: "cvr" label_name: "buy" dnn { hidden_units: [8] }
                  relation_tower_names: "ctr" relation_dnn { hidden_units: 4 } weight: 0.5 }
    l2_regularization: 1e-6
  }
  embedding_regularization: 1e-6
}
"""

DEEPFM = """
model_config {
  model_class: "DeepFM"
  feature_groups { group_name: "wide" feature_names: ["user_id", "item_id", "gender", "price"]
                   wide_deep: WIDE }
  feature_groups { group_name: "deep" feature_names: ["user_id", "item_id", "age_level", "pid",
                   "item_ctr_7d", "user_cate_affinity"] wide_deep: DEEP }
  deepfm { dnn { hidden_units: [16, 8] } l2_regularization: 1e-6 }
  embedding_regularization: 1e-6
}
"""

ADAM_CONSTANT = """
    adam_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.01 } } }
"""


def make_config(data: Path, *, model: str = DBMTL, optimizer: str = ADAM_CONSTANT,
                num_steps: int = 4, save_steps: int = 2, extra_train: str = "",
                extra_top: str = "", batch_size: int = 64) -> str:
    """A complete pipeline.config over the tiny data set."""
    return f"""
train_input_path: "{data / 'train.csv'}"
eval_input_path: "{data / 'eval.csv'}"
{extra_top}
data_config {{
  batch_size: {batch_size}
  num_epochs: 0
  input_type: CSVInput
  separator: ","
  label_fields: "clk"
  label_fields: "buy"
  prefetch_size: 4
{_FIELDS}
}}
{FEATURES}{RAW_PLAIN}
{model}
train_config {{
  optimizer_config {{ {optimizer} use_moving_average: false }}
  num_steps: {num_steps}
  save_checkpoints_steps: {save_steps}
  log_step_count_steps: 2
  sync_replicas: true
{extra_train}
}}
eval_config {{ metrics_set {{ auc {{}} }} }}
"""


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory) -> Path:
    """Three days of 400 rows: train = 800 rows, eval = 400 rows."""
    out = tmp_path_factory.mktemp("data")
    write_dataset(out, days=3, rows_per_day=400, seed=0)
    return out


@pytest.fixture(scope="session")
def small_data(tmp_path_factory) -> Path:
    """Three days of 1000 rows: enough for one epoch to learn something (fine-tune test)."""
    out = tmp_path_factory.mktemp("small-data")
    write_dataset(out, days=3, rows_per_day=1000, seed=0)
    return out
