"""`hpo-tools get`: every selected value, one per line, in text format."""

from __future__ import annotations

from pathlib import Path

import pytest

from hpo_tools import storage
from hpo_tools.cli import main
from hpo_tools.testing.oss import FakeBucket

REPO = Path(__file__).resolve().parents[2]
SAMPLE = str(REPO / "samples" / "pipeline.config")


def _get(capsys, key: str, config: str = SAMPLE) -> str:
    assert main(["get", config, key]) == 0
    return capsys.readouterr().out


def test_scalar_string_prints_quoted(capsys):
    assert _get(capsys, "model_dir") == '"experiments/dbmtl_taobao_like"\n'


def test_enum_prints_bare(capsys):
    assert _get(capsys, "data_config.input_type") == "CSVInput\n"


def test_repeated_scalar_prints_one_element_per_line(capsys):
    # hidden_units is written as a list literal [128, 64] in the sample.
    assert _get(capsys, "model_config.dbmtl.bottom_dnn.hidden_units") == "128\n64\n"


def test_condition_selects_every_matching_element(capsys):
    out = _get(capsys, "feature_configs[num_buckets<=4].input_names[0]")
    # Numeric comparison: 24 and 7 are excluded, 2..4 kept, in file order.
    assert out == '"gender"\n"pvalue_level"\n"shopping_level"\n"occupation"\n'


def test_negative_index_and_slice(capsys):
    assert _get(capsys, "feature_configs[-1].input_names[0]") == '"user_cate_affinity"\n'
    assert _get(capsys, "feature_configs[-4:-2].feature_type") == "RawFeature\nRawFeature\n"


def test_float_prints_as_written(capsys):
    assert _get(capsys, "model_config.dbmtl.l2_regularization") == "1e-6\n"


def test_message_prints_in_text_format(capsys):
    out = _get(capsys, "model_config.dbmtl.task_towers[0].relation_dnn")
    assert "hidden_units" in out and "16" in out


def test_unknown_field_is_an_error_with_did_you_mean(capsys):
    assert main(["get", SAMPLE, "model_config.dbmtl.bottom_dnm"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "did you mean 'bottom_dnn'" in err


def test_selector_matching_nothing_is_an_error(capsys):
    assert main(["get", SAMPLE, "feature_configs[input_names[0]=nobody].embedding_dim"]) == 2
    assert "nobody" in capsys.readouterr().err


def test_missing_config(tmp_path, capsys):
    assert main(["get", str(tmp_path / "x.config"), "model_dir"]) == 2
    assert "x.config: no such file" in capsys.readouterr().err


@pytest.fixture
def fake_oss(monkeypatch):
    """oss:// through the shipped storage path, with oss2.Bucket replaced by a FakeBucket."""
    import oss2

    bucket = FakeBucket("bkt")
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", "id")
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "secret")
    monkeypatch.setenv("OSS_ENDPOINT", "oss-cn-hangzhou.aliyuncs.com")
    monkeypatch.setattr(oss2, "Bucket", lambda auth, endpoint, name: bucket)
    storage._default.cache_clear()
    yield bucket
    storage._default.cache_clear()


def test_reads_oss_config(fake_oss, capsys):
    fake_oss.objects["c/p.config"] = b'model_dir: "oss://bkt/m"\n'
    assert _get(capsys, "model_dir", "oss://bkt/c/p.config") == '"oss://bkt/m"\n'
