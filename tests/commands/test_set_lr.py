"""`hpo-tools set-lr`: the learning rate of every optimizer_config, floors, read-back, errors."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest

from hpo_tools import storage
from hpo_tools.cli import main
from hpo_tools.pbtxt import Document
from hpo_tools.testing.oss import FakeBucket

REPO = Path(__file__).resolve().parents[2]
FINETUNE = REPO / "samples" / "pipeline_finetune.config"
EXP_PATH = (
    "train_config.optimizer_config[0].adam_optimizer.learning_rate."
    "exponential_decay_learning_rate.initial_learning_rate"
)

# Four optimizers, each with another schedule, as EasyRec allows (one per optimizer_config).
MULTI = """\
train_config {
  optimizer_config {
    momentum_optimizer {
      learning_rate { constant_learning_rate { learning_rate: 0.01 } }
      momentum_optimizer_value: 0.9
    }
  }
  optimizer_config {
    adagrad_optimizer {
      learning_rate {
        cosine_decay_learning_rate {
          learning_rate_base: 0.1   # peak
          total_steps: 1000
        }
      }
    }
  }
  optimizer_config {
    adam_optimizer {
      learning_rate {
        poly_decay_learning_rate {
          learning_rate_base: 0.01 total_steps: 100 power: 1.0 end_learning_rate: 1e-5
        }
      }
    }
    use_moving_average: false
  }
  optimizer_config {
    adamw_optimizer {
      learning_rate {
        manual_step_learning_rate {
          initial_learning_rate: 0.002
          schedule { step: 100 learning_rate: 0.001 }
        }
      }
    }
  }
}
"""


def _run(*args: str) -> int:
    return main(["set-lr", *args])


def _read(path: Path, key: str) -> list[object]:
    return Document.parse(path.read_text(), source=str(path)).get(key)


def test_sets_exponential_initial_rate_and_prints_read_back(tmp_path, capsys):
    out = tmp_path / "ft.config"
    assert (
        _run(
            "--pipeline_config_path",
            str(FINETUNE),
            "--save_path",
            str(out),
            "--learning_rate",
            "3e-6",
        )
        == 0
    )
    assert _read(out, EXP_PATH) == [pytest.approx(3e-6)]
    # The printed value is what the saved file holds, read back.
    assert (
        capsys.readouterr().out
        == f"{EXP_PATH}: {Document.parse(out.read_text()).get_text(EXP_PATH)[0]}\n"
    )


def test_only_the_learning_rate_line_changes(tmp_path):
    out = tmp_path / "ft.config"
    assert _run("--pipeline_config_path", str(FINETUNE), "--save_path", str(out)) == 0
    before, after = FINETUNE.read_text().splitlines(), out.read_text().splitlines()
    changed = [(a, b) for a, b in zip(before, after) if a != b]
    # Comments and layout survive: one line differs, the one with the rate.
    assert len(before) == len(after) and len(changed) == 1
    assert changed[0][0].strip() == "initial_learning_rate: 1e-5"


def test_default_learning_rate_is_1e_minus_6(tmp_path):
    out = tmp_path / "ft.config"
    assert _run("--pipeline_config_path", str(FINETUNE), "--save_path", str(out)) == 0
    assert _read(out, EXP_PATH) == [pytest.approx(1e-6)]


def test_rate_below_min_learning_rate_is_raised_with_warning(tmp_path, caplog):
    out = tmp_path / "ft.config"
    with caplog.at_level(logging.WARNING, logger="hpo_tools.lr"):
        assert (
            _run(
                "--pipeline_config_path",
                str(FINETUNE),
                "--save_path",
                str(out),
                "--learning_rate",
                "1e-9",
            )
            == 0
        )
    # The sample's min_learning_rate is 1e-7; a decay may not start below its own floor.
    assert _read(out, EXP_PATH) == [pytest.approx(1e-7)]
    assert "below min_learning_rate" in caplog.text


def test_every_optimizer_and_schedule_is_set(tmp_path, capsys):
    src, out = tmp_path / "multi.config", tmp_path / "out.config"
    src.write_text(MULTI)
    assert (
        _run(
            "--pipeline_config_path", str(src), "--save_path", str(out), "--learning_rate", "0.0005"
        )
        == 0
    )
    doc = Document.parse(out.read_text())
    base = "train_config.optimizer_config"
    assert doc.get(
        f"{base}[0].momentum_optimizer.learning_rate.constant_learning_rate.learning_rate"
    ) == [pytest.approx(5e-4)]
    assert doc.get(
        f"{base}[1].adagrad_optimizer.learning_rate.cosine_decay_learning_rate.learning_rate_base"
    ) == [pytest.approx(5e-4)]
    assert doc.get(
        f"{base}[2].adam_optimizer.learning_rate.poly_decay_learning_rate.learning_rate_base"
    ) == [pytest.approx(5e-4)]
    assert doc.get(
        f"{base}[3].adamw_optimizer.learning_rate.manual_step_learning_rate.initial_learning_rate"
    ) == [pytest.approx(5e-4)]
    # The manual schedule's own steps are not the starting rate and stay as they are.
    assert doc.get(
        f"{base}[3].adamw_optimizer.learning_rate.manual_step_learning_rate"
        ".schedule[0].learning_rate"
    ) == [pytest.approx(1e-3)]
    assert len(capsys.readouterr().out.splitlines()) == 4


def test_rate_written_as_an_integer_takes_a_fraction(tmp_path):
    # Learning rates are float fields whatever the file spells them: `learning_rate: 1` looks
    # like an int literal, yet set-lr must write 1e-06 there, not refuse a fraction.
    src, out = tmp_path / "int.config", tmp_path / "out.config"
    src.write_text(
        "train_config {\n"
        "  optimizer_config {\n"
        "    sgd_optimizer { learning_rate { constant_learning_rate { learning_rate: 1 } } }\n"
        "  }\n"
        "}\n"
    )
    assert _run("--pipeline_config_path", str(src), "--save_path", str(out)) == 0
    assert "learning_rate: 1e-06 }" in out.read_text()


def test_poly_rate_below_end_learning_rate_is_raised(tmp_path, caplog):
    src, out = tmp_path / "multi.config", tmp_path / "out.config"
    src.write_text(MULTI)
    with caplog.at_level(logging.WARNING, logger="hpo_tools.lr"):
        assert (
            _run(
                "--pipeline_config_path",
                str(src),
                "--save_path",
                str(out),
                "--learning_rate",
                "1e-6",
            )
            == 0
        )
    path = (
        "train_config.optimizer_config[2].adam_optimizer.learning_rate."
        "poly_decay_learning_rate.learning_rate_base"
    )
    assert _read(out, path) == [pytest.approx(1e-5)]
    assert "below end_learning_rate" in caplog.text
    # Schedules without a floor take the requested rate as is.
    assert _read(
        out,
        path.replace("[2].adam_optimizer", "[1].adagrad_optimizer").replace(
            "poly_decay", "cosine_decay"
        ),
    ) == [pytest.approx(1e-6)]


def test_in_place_save(tmp_path):
    path = tmp_path / "p.config"
    path.write_text(FINETUNE.read_text())
    assert (
        _run(
            "--pipeline_config_path", str(path), "--save_path", str(path), "--learning_rate", "2e-6"
        )
        == 0
    )
    assert _read(path, EXP_PATH) == [pytest.approx(2e-6)]


def test_dashed_option_names_work(tmp_path):
    out = tmp_path / "ft.config"
    assert (
        _run(
            "--pipeline-config-path",
            str(FINETUNE),
            "--save-path",
            str(out),
            "--learning-rate",
            "4e-6",
        )
        == 0
    )
    assert _read(out, EXP_PATH) == [pytest.approx(4e-6)]


def test_config_without_optimizer_is_an_error_and_writes_nothing(tmp_path, capsys):
    src, out = tmp_path / "p.config", tmp_path / "out.config"
    src.write_text('model_dir: "m"\ntrain_config {\n  num_steps: 10\n}\n')
    assert _run("--pipeline_config_path", str(src), "--save_path", str(out)) == 2
    assert "no train_config.optimizer_config" in capsys.readouterr().err
    assert not out.exists()


def test_optimizer_without_learning_rate_is_an_error(tmp_path, capsys):
    src, out = tmp_path / "p.config", tmp_path / "out.config"
    src.write_text(
        "train_config {\n  optimizer_config {\n    adam_optimizer { beta1: 0.9 }\n  }\n}\n"
    )
    assert _run("--pipeline_config_path", str(src), "--save_path", str(out)) == 2
    assert "optimizer_config[0] has no learning rate" in capsys.readouterr().err
    assert not out.exists()


@pytest.mark.parametrize("rate", ["0", "-1e-6", "nan", "inf"])
def test_non_positive_or_non_finite_rate_is_an_error(tmp_path, capsys, rate):
    out = tmp_path / "out.config"
    assert (
        _run(
            "--pipeline_config_path",
            str(FINETUNE),
            "--save_path",
            str(out),
            f"--learning_rate={rate}",
        )
        == 2
    )
    assert "learning rate must be a positive number" in capsys.readouterr().err
    assert not out.exists()


def test_failure_leaves_existing_save_path_untouched(tmp_path, capsys):
    src, out = tmp_path / "p.config", tmp_path / "out.config"
    src.write_text("train_config {\n")  # syntax error
    out.write_text("previous\n")
    assert _run("--pipeline_config_path", str(src), "--save_path", str(out)) == 2
    assert out.read_text() == "previous\n"
    assert capsys.readouterr().err.startswith(f"error: {src}")


def test_oss_paths_use_credentials_from_oss_config(tmp_path, monkeypatch, capsys):
    import oss2

    for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    bucket = FakeBucket("bkt")
    bucket.objects["cfg/pipeline.config"] = FINETUNE.read_bytes()
    seen = []

    def fake_bucket(auth, endpoint, name):  # the SDK boundary: everything before it is real
        creds = auth.credentials_provider.get_credentials()
        seen.append((creds.get_access_key_id(), endpoint, name))
        return bucket

    monkeypatch.setattr(oss2, "Bucket", fake_bucket)
    ini = tmp_path / "ossutil.ini"
    ini.write_text(
        "[Credentials]\nendpoint=oss-cn-shanghai.aliyuncs.com\naccessKeyID=AK-ID\n"
        "accessKeySecret=AK-SECRET\n"
    )
    storage._default.cache_clear()
    assert (
        _run(
            "--pipeline_config_path",
            "oss://bkt/cfg/pipeline.config",
            "--save_path",
            "oss://bkt/cfg/finetune.config",
            "--oss_config",
            str(ini),
        )
        == 0
    )
    assert seen == [("AK-ID", "oss-cn-shanghai.aliyuncs.com", "bkt")]
    saved = bucket.objects["cfg/finetune.config"].decode()
    assert Document.parse(saved).get(EXP_PATH) == [pytest.approx(1e-6)]
    captured = capsys.readouterr()
    assert "AK-SECRET" not in captured.out + captured.err
