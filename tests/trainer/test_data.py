"""Synthetic data: files, columns, determinism, labels and day-to-day drift (numpy only)."""

from __future__ import annotations

import numpy as np
import pytest

from hpo_tools.cli import main
from hpo_tools.errors import ConfigError, StorageError
from hpo_tools.trainer.data import COLUMNS, generate_days, read_columns, write_dataset


def test_make_data_writes_daily_files_and_splits(tmp_path):
    code = main(["make-data", str(tmp_path), "--days", "3", "--rows-per-day", "50",
                 "--end-date", "20230101"])
    assert code == 0
    # Days end at --end-date and cross the year end: the finetune examples rely on these names.
    daily = sorted(p.name for p in (tmp_path / "daily").iterdir())
    assert daily == ["20221230.csv", "20221231.csv", "20230101.csv"]
    train = read_columns(tmp_path / "train.csv")
    evaluation = read_columns(tmp_path / "eval.csv")
    # train = every day but the last, eval = the last day.
    assert len(train["clk"]) == 100
    assert evaluation == read_columns(tmp_path / "daily" / "20230101.csv")


def test_columns_are_exactly_the_documented_ones_in_order():
    # samples/pipeline.config lists input_fields in this order; CSV files carry no header.
    assert COLUMNS == (
        "clk", "buy", "user_id", "age_level", "gender", "pvalue_level", "shopping_level",
        "occupation", "new_user_class_level", "city_level", "item_id", "cate_id", "brand_id",
        "campaign_id", "customer_id", "price", "pid", "hour", "weekday", "user_click_cnt_7d",
        "item_ctr_7d", "user_cate_affinity",
    )


def test_value_formats_match_the_input_types(tmp_path):
    paths = write_dataset(tmp_path, days=2, rows_per_day=200, seed=3)
    cols = read_columns(paths.eval)
    # ids are prefixed strings, small categoricals ints, numeric features floats.
    assert all(v.startswith("u") and v[1:].isdigit() for v in cols["user_id"])
    assert all(v.startswith("i") and v[1:].isdigit() for v in cols["item_id"])
    assert {int(v) for v in cols["hour"]} <= set(range(24))
    assert {int(v) for v in cols["gender"]} <= {1, 2}
    for name in ("price", "user_click_cnt_7d", "item_ctr_7d", "user_cate_affinity"):
        assert all(np.isfinite(float(v)) for v in cols[name]), name


def test_buy_only_happens_after_a_click():
    (_, day), = generate_days(2, 5000, seed=1)[-1:]
    # buy depends on clk: a buy without a click would break the dbmtl relation the data models.
    assert np.all(day["buy"] <= day["clk"])
    assert 0 < day["buy"].sum() < day["clk"].sum()


def test_same_seed_gives_identical_files(tmp_path):
    a = write_dataset(tmp_path / "a", days=2, rows_per_day=300, seed=7)
    b = write_dataset(tmp_path / "b", days=2, rows_per_day=300, seed=7)
    c = write_dataset(tmp_path / "c", days=2, rows_per_day=300, seed=8)
    # Determinism: trials must see the same data for the same seed.
    assert a.train.read_bytes() == b.train.read_bytes()
    assert a.train.read_bytes() != c.train.read_bytes()


def test_item_popularity_drifts_from_day_to_day():
    days = generate_days(8, 20000, seed=0)
    counts = [np.bincount(day["item_id"], minlength=3000) for _, day in days]
    head = counts[0] >= 20  # items seen often enough for their counts to mean something

    def corr(x, y):
        return float(np.corrcoef(np.log1p(x[head]), np.log1p(y[head]))[0, 1])

    # Drift: adjacent days are alike, distant days less so (finetuning has something to track).
    assert corr(counts[0], counts[1]) > corr(counts[0], counts[7]) + 0.1


def test_bad_arguments_are_config_errors():
    with pytest.raises(ConfigError, match="--days"):
        generate_days(1, 100)
    with pytest.raises(ConfigError, match="--end-date"):
        generate_days(2, 100, end_date="2022-06-17")


def test_unwritable_output_is_a_storage_error(tmp_path):
    blocker = tmp_path / "file"
    blocker.write_text("x")
    # OUT_DIR below a regular file cannot be created: a one-line error, not a traceback.
    with pytest.raises(StorageError, match="cannot write"):
        write_dataset(blocker / "out", days=2, rows_per_day=10)
