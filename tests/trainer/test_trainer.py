"""The local trainer: models, optimizers, schedules, feature kinds, outputs, fine-tune, determinism.

All runs are in-process (one TensorFlow import for the module) on ~800 rows and a few steps;
one test runs the command line in a subprocess.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.pbtxt import Document

pytest.importorskip("tensorflow")  # the `trainer` extra

from hpo_tools.trainer.config import OptimizerSpec, settings_from_document  # noqa: E402
from hpo_tools.trainer.train import train_and_evaluate  # noqa: E402
from tests.trainer.conftest import DBMTL, DEEPFM, FEATURES, RAW_PLAIN, make_config  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def _settings(text: str):
    return settings_from_document(Document.parse(text, source="test.config"),
                                  source="test.config")


def _events(model_dir: Path) -> dict[int, dict[str, float]]:
    """step -> {tag: value} from the eval events, read with the project's own event reader."""
    from hpo_tools.metrics.events import EventDirectoryReader

    out: dict[int, dict[str, float]] = {}
    # The literal name, not train.EVAL_DIR: EasyRec's EvalSpec(name='val') -> model_dir/eval_val.
    for tag, value, step, _wall_time in EventDirectoryReader(str(model_dir / "eval_val")).poll():
        out.setdefault(step, {})[tag] = value
    return out


def _train(tmp_path: Path, text: str, name: str = "model", **kwargs):
    model_dir = tmp_path / name
    return model_dir, train_and_evaluate(_settings(text), model_dir=str(model_dir), **kwargs)


def test_dbmtl_writes_checkpoints_and_eval_tags_at_every_checkpoint(tmp_path, tiny_data):
    model_dir, result = _train(tmp_path, make_config(tiny_data, num_steps=4, save_steps=2))
    # EasyRec layout: model.ckpt-<step> in model_dir, one evaluation per checkpoint in eval_val/.
    assert (model_dir / "model.ckpt-2.index").exists()
    assert (model_dir / "model.ckpt-4.index").exists()
    events = _events(model_dir)
    assert sorted(events) == [2, 4]
    assert set(events[4]) == {"auc_ctr", "loss_ctr", "auc_cvr", "loss_cvr", "loss"}
    # The returned evaluations are the ones written (what the metrics follower will read).
    assert result.evaluations[-1]["auc_ctr"] == pytest.approx(events[4]["auc_ctr"], abs=1e-6)


def test_deepfm_writes_auc_and_loss(tmp_path, tiny_data):
    model_dir, _ = _train(tmp_path, make_config(tiny_data, model=DEEPFM, num_steps=3,
                                                save_steps=3))
    # Single-task models use EasyRec's single-task tags.
    assert set(_events(model_dir)[3]) == {"auc", "loss"}


@pytest.mark.parametrize(
    "optimizer",
    [
        "adam_optimizer { learning_rate { exponential_decay_learning_rate {"
        " initial_learning_rate: 0.01 decay_steps: 2 decay_factor: 0.5 min_learning_rate: 0.003 } }"
        " beta1: 0.8 }",
        "momentum_optimizer { learning_rate { constant_learning_rate { learning_rate: 0.05 } }"
        " momentum_optimizer_value: 0.8 }",
        "sgd_optimizer { learning_rate { exponential_decay_learning_rate {"
        " initial_learning_rate: 0.1 decay_steps: 2 decay_factor: 0.5 staircase: false } } }",
    ],
    ids=["adam-exponential", "momentum-constant", "sgd-exponential-smooth"],
)
def test_each_optimizer_and_schedule_trains(tmp_path, tiny_data, optimizer):
    model_dir, result = _train(tmp_path, make_config(tiny_data, optimizer=optimizer,
                                                     num_steps=3, save_steps=3))
    # Training ran to the end and evaluated a finite loss.
    assert result.final_step == 3
    assert 0.0 < _events(model_dir)[3]["loss"] < 10.0


def test_exponential_decay_follows_easyrec_formula():
    opt = OptimizerSpec(schedule="exponential", learning_rate=0.1, decay_steps=10,
                        decay_factor=0.5, staircase=True, min_learning_rate=0.02)
    # staircase: constant within a decay period, halved after; floored at min_learning_rate.
    assert [opt.rate_at(s) for s in (0, 9, 10, 25, 100)] == [0.1, 0.1, 0.05, 0.025, 0.02]
    smooth = OptimizerSpec(schedule="exponential", learning_rate=0.1, decay_steps=10,
                           decay_factor=0.5, staircase=False)
    assert smooth.rate_at(5) == pytest.approx(0.1 * 0.5**0.5)


def test_num_epochs_limits_training(tmp_path, tiny_data):
    text = make_config(tiny_data, num_steps=1000, save_steps=1000, batch_size=400)
    text = text.replace("num_epochs: 0", "num_epochs: 1")
    _, result = _train(tmp_path, text)
    # 800 train rows / 400 per batch = 2 steps in one epoch; the final step is always evaluated.
    assert result.final_step == 2
    assert [e["step"] for e in result.evaluations] == [2]


def test_same_seed_gives_identical_evaluations(tmp_path, tiny_data):
    text = make_config(tiny_data, num_steps=4, save_steps=4)
    _, first = _train(tmp_path, text, "a", seed=3)
    _, second = _train(tmp_path, text, "b", seed=3)
    _, other = _train(tmp_path, text, "c", seed=4)
    # Determinism: HPO compares trials, so the same config and seed must score the same.
    assert first.evaluations == second.evaluations
    assert first.evaluations != other.evaluations


def test_fine_tuned_run_starts_from_the_checkpoint(tmp_path, small_data):
    # One epoch of 2000 rows: enough for the begin model to learn something real.
    begin_dir, begin = _train(tmp_path, make_config(small_data, num_steps=32, save_steps=32),
                              "begin")
    # One step with a vanishing learning rate: the first evaluation shows the starting weights.
    one_step = make_config(
        small_data, num_steps=1, save_steps=1,
        optimizer="sgd_optimizer { learning_rate { constant_learning_rate {"
                  " learning_rate: 1e-12 } } }")
    _, fresh = _train(tmp_path, one_step, "fresh")
    _, tuned = _train(tmp_path, one_step, "tuned", fine_tune_checkpoint=str(begin_dir))
    # A model dir resolves to its latest checkpoint, and the run says where it started.
    assert tuned.started_from == begin.checkpoints[-1]
    # Restored weights: the first evaluation is the begin model's last one...
    assert tuned.evaluations[0]["auc_ctr"] == pytest.approx(begin.evaluations[-1]["auc_ctr"],
                                                            abs=1e-4)
    # ...and it beats a fresh model's after the same single step.
    assert tuned.evaluations[0]["auc_ctr"] > fresh.evaluations[0]["auc_ctr"] + 0.02
    # EasyRec semantics: the step counter restarts for the fine-tuned run.
    assert tuned.final_step == 1


def test_fine_tune_checkpoint_from_config_and_a_prefix(tmp_path, tiny_data):
    begin_dir, begin = _train(tmp_path, make_config(tiny_data, num_steps=2, save_steps=1),
                              "begin")
    prefix = str(begin_dir / "model.ckpt-1")
    text = make_config(tiny_data, num_steps=1, save_steps=1,
                       extra_train=f'fine_tune_checkpoint: "{prefix}"')
    _, tuned = _train(tmp_path, text, "tuned")
    # An explicit prefix is used as is (not the latest checkpoint of its directory).
    assert tuned.started_from == prefix


def test_fine_tune_checkpoint_that_does_not_exist_is_a_config_error(tmp_path, tiny_data):
    with pytest.raises(ConfigError, match="fine_tune_checkpoint: .*nowhere"):
        _train(tmp_path, make_config(tiny_data), fine_tune_checkpoint=str(tmp_path / "nowhere"))


def test_fine_tune_checkpoint_of_another_shape_is_a_config_error(tmp_path, tiny_data):
    begin_dir, _ = _train(tmp_path, make_config(tiny_data, num_steps=1, save_steps=1), "begin")
    wider = make_config(tiny_data).replace("bottom_dnn { hidden_units: [16] }",
                                           "bottom_dnn { hidden_units: [32] }")
    with pytest.raises(ConfigError, match="does not fit this model"):
        _train(tmp_path, wider, "tuned", fine_tune_checkpoint=str(begin_dir))


def test_rerun_in_the_same_model_dir_resumes(tmp_path, tiny_data):
    model_dir, _ = _train(tmp_path, make_config(tiny_data, num_steps=2, save_steps=2))
    _, again = _train(tmp_path, make_config(tiny_data, num_steps=4, save_steps=2))
    # Like Estimator: the latest checkpoint of model_dir wins, training continues at its step.
    assert again.started_from == str(model_dir / "model.ckpt-2")
    assert [e["step"] for e in again.evaluations] == [4]


@pytest.mark.parametrize(
    ("old", "new", "named"),
    [
        ("l2_regularization: 1e-6\n  }", "l2_regularization: 1e-6\n expert_dnn { hidden_units: 8 }"
         "\n  }", "model_config.dbmtl.expert_dnn"),
        ("input_type: CSVInput", "input_type: OdpsInputV2", "data_config.input_type"),
        ("bottom_dnn { hidden_units: [16] }", "bottom_dnn { hidden_units: [16] use_bn: true }",
         "model_config.dbmtl.bottom_dnn.use_bn"),
        ("num_steps: 4", "num_steps: 4\n  gradient_clipping_by_norm: 5.0",
         "train_config.gradient_clipping_by_norm"),
        ("use_moving_average: false", "use_moving_average: true",
         "train_config.optimizer_config.use_moving_average"),
        ('feature_type: RawFeature }', 'feature_type: SequenceFeature }',
         "feature_configs[7].feature_type"),
        ('metrics_set { auc {} } dnn', 'metrics_set { gauc {} } dnn',
         "model_config.dbmtl.task_towers[0].metrics_set[0]"),
        ('relation_tower_names: "ctr"', 'relation_tower_names: "ctx"',
         "did you mean 'ctr'"),
        ("batch_size: 64", "batch_size: 64\n  batch_sise: 3", "did you mean 'batch_size'"),
        ('input_name: "gender" input_type: INT32', 'input_name: "gender" input_type: INT32'
         ' default_val: "male"', "data_config.input_fields[4].default_val"),
    ],
    ids=["dbmtl-field", "input-type", "batch-norm", "train-field", "moving-average",
         "feature-type", "metric", "relation-name", "typo", "default-val"],
)
def test_unsupported_or_wrong_fields_are_named_in_one_line(tiny_data, old, new, named):
    text = make_config(tiny_data)
    assert old in text  # the edit must really change the config
    with pytest.raises(ConfigError) as info:
        _settings(text.replace(old, new, 1))
    message = str(info.value)
    # One line, naming the file and the offending field (or the closest valid name).
    assert "\n" not in message
    assert message.startswith("test.config: ")
    assert named in message


def test_deepfm_needs_one_embedding_dim_for_the_fm_part(tiny_data):
    text = make_config(tiny_data, model=DEEPFM).replace(
        'input_names: "pid" feature_type: IdFeature embedding_dim: 8',
        'input_names: "pid" feature_type: IdFeature embedding_dim: 4')
    with pytest.raises(ConfigError, match="one embedding_dim"):
        _settings(text)


def test_data_with_the_wrong_column_count_is_a_config_error(tmp_path, tiny_data):
    bad = tmp_path / "bad.csv"
    bad.write_text("1,0,u1\n")
    with pytest.raises(ConfigError, match="bad.csv: cannot read as 22"):
        _train(tmp_path, make_config(tiny_data), train_input_path=str(bad))


def test_the_sample_pipeline_config_trains(tmp_path, tiny_data):
    text = (REPO / "samples" / "pipeline.config").read_text()
    short = {"num_steps: 2000": "num_steps: 2", "save_checkpoints_steps: 500":
             "save_checkpoints_steps: 2", "batch_size: 512": "batch_size: 64"}
    for old, new in short.items():
        assert old in text  # the sample changed: update this test's shortcuts
        text = text.replace(old, new)
    settings = settings_from_document(Document.parse(text, source="samples/pipeline.config"),
                                      source="samples/pipeline.config")
    model_dir = tmp_path / "sample"
    train_and_evaluate(settings, model_dir=str(model_dir),
                       train_input_path=str(tiny_data / "train.csv"),
                       eval_input_path=str(tiny_data / "eval.csv"))
    # The shipped sample is a config the local trainer fully supports.
    assert {"auc_ctr", "auc_cvr", "loss"} <= set(_events(model_dir)[2])


def test_command_line_trains_and_logs_each_evaluation(tmp_path, tiny_data):
    config = tmp_path / "pipeline.config"
    config.write_text(make_config(tiny_data, num_steps=2, save_steps=1))
    proc = subprocess.run(
        [sys.executable, "-m", "hpo_tools.trainer", "--pipeline_config_path", str(config),
         "--model_dir", str(tmp_path / "cli"), "--seed", "1"],
        capture_output=True, text=True, timeout=120, cwd=REPO,
        env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    # stdout carries where training started and one line per evaluation (issue 7 reads these).
    assert "start: fresh model (seed=1)" in proc.stdout
    assert proc.stdout.count("eval step=") == 2
    assert "auc_ctr=" in proc.stdout


def test_command_line_reports_a_bad_config_in_one_line(tmp_path, tiny_data):
    config = tmp_path / "pipeline.config"
    config.write_text(make_config(tiny_data).replace("DBMTL", "MMoE", 1))
    proc = subprocess.run(
        [sys.executable, "-m", "hpo_tools.trainer", "--pipeline_config_path", str(config),
         "--model_dir", str(tmp_path / "cli")],
        capture_output=True, text=True, timeout=120, cwd=REPO,
    )
    # Exit 2 and a single `error:` line naming the field, no traceback.
    assert proc.returncode == 2
    assert proc.stderr.strip().startswith("error: ")
    assert "model_config.model_class" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_command_line_help_states_the_exit_codes():
    from hpo_tools.trainer.__main__ import build_parser

    help_text = " ".join(build_parser().format_help().split())
    # Scripts wrapping the trainer branch on these; --help is where a user looks for them.
    assert "exit codes: 0 done; 2 bad config or input" in help_text
    assert "130 interrupted" in help_text


def test_dbmtl_and_deepfm_configs_read_without_tensorflow_names(tiny_data):
    dbmtl = _settings(make_config(tiny_data, model=DBMTL))
    deepfm = _settings(make_config(tiny_data, model=DEEPFM))
    # The relation and weights reach the model spec as written.
    assert dbmtl.model.towers[1].relation_tower_names == ("ctr",)
    assert dbmtl.model.towers[1].weight == 0.5
    assert deepfm.model.groups["wide"] == ("user_id", "item_id", "gender", "price")


def test_feature_config_features_is_read_like_feature_configs(tiny_data):
    text = make_config(tiny_data)
    every = FEATURES + RAW_PLAIN
    nested = every.replace("feature_configs {", "features {")
    # EasyRec's newer spelling: feature_config { features { ... } }.
    converted = text.replace(every, f"feature_config {{ {nested} }}")
    assert converted != text
    flat, wrapped = _settings(text), _settings(converted)
    assert wrapped.features == flat.features


def test_task_towers_without_label_name_take_label_fields_in_order(tiny_data):
    text = make_config(tiny_data).replace(' label_name: "clk"', "", 1).replace(
        ' label_name: "buy"', "", 1)
    assert "label_name" not in text  # both towers really lost their label_name
    towers = _settings(text).model.towers
    # EasyRec (tower.proto): "label for the task, default is label_fields by order".
    assert [t.label for t in towers] == ["clk", "buy"]


def test_a_tower_without_label_name_beyond_the_label_fields_is_a_config_error(tiny_data):
    third = ('task_towers { tower_name: "extra" dnn { hidden_units: [8] } }\n'
             '    l2_regularization: 1e-6')
    text = make_config(tiny_data).replace("l2_regularization: 1e-6", third, 1)
    with pytest.raises(ConfigError, match=r"task_towers\[2\]\.label_name: required"):
        # Two label fields, three towers: nothing to match the third by order.
        _settings(text)


@pytest.mark.parametrize("model", [DBMTL, DEEPFM], ids=["dbmtl", "deepfm"])
def test_l2_regularization_left_out_takes_easyrec_default(tiny_data, model):
    text = make_config(tiny_data, model=model).replace("l2_regularization: 1e-6", "", 1)
    assert "l2_regularization" not in text
    # EasyRec's dbmtl.proto and deepfm.proto: l2_regularization [default = 1e-4], not 0.
    assert _settings(text).model.l2_regularization == pytest.approx(1e-4)


def test_deepfm_fm_group_is_a_config_error_not_ignored(tiny_data):
    fm_group = ('feature_groups { group_name: "fm" feature_names: ["user_id", "item_id"]\n'
                '                   wide_deep: DEEP }\n  deepfm {')
    text = make_config(tiny_data, model=DEEPFM).replace("deepfm {", fm_group, 1)
    # In EasyRec an `fm` group replaces the deep group in the FM part; training without it
    # would silently train another model.
    with pytest.raises(ConfigError, match=r"model_config\.feature_groups\[2\].*'fm'"):
        _settings(text)


def test_exponential_decay_reaches_the_optimizer_step_by_step(tmp_path, tiny_data, caplog):
    optimizer = ("sgd_optimizer { learning_rate { exponential_decay_learning_rate {"
                 " initial_learning_rate: 0.1 decay_steps: 1 decay_factor: 0.5 } } }")
    caplog.set_level("INFO", logger="hpo_tools.trainer")
    _train(tmp_path, make_config(tiny_data, optimizer=optimizer, num_steps=4, save_steps=4))
    rates = [line.split("lr=")[1].split()[0] for line in caplog.messages if "lr=" in line]
    # The update of global step s uses rate_at(s): steps 2 and 4 log the rates of steps 1 and 3.
    assert rates == ["0.05", "0.0125"]


@pytest.mark.parametrize(
    ("model", "old", "new", "named"),
    [
        (DBMTL, "wide_deep: DEEP", "wide_deep: WIDE", "feature_groups[0].wide_deep"),
        (DEEPFM, "wide_deep: WIDE", "wide_deep: DEEP", "feature_groups[0].wide_deep"),
        (DEEPFM, "wide_deep: DEEP", "wide_deep: WIDE_AND_DEEP", "feature_groups[1].wide_deep"),
        (DBMTL, "wide_deep: DEEP", "wide_deep: DEPE", "feature_groups[0].wide_deep"),
    ],
    ids=["dbmtl-all-wide", "deepfm-wide-deep", "deepfm-deep-both", "typo"],
)
def test_a_group_wide_deep_the_trainer_does_not_read_that_way_is_a_config_error(
        tiny_data, model, old, new, named):
    text = make_config(tiny_data, model=model)
    assert old in text
    # EasyRec embeds a WIDE group with wide_output_dim, a DEEP one with embedding_dim: a role
    # the local model does not give the group would silently train another model.
    with pytest.raises(ConfigError, match=re.escape(f"model_config.{named}:")):
        _settings(text.replace(old, new, 1))


def test_comma_separated_input_paths_are_read_like_easyrec(tmp_path, tiny_data):
    days = sorted(str(p) for p in (tiny_data / "daily").glob("*.csv"))
    text = make_config(tiny_data, num_steps=1000, save_steps=1000, batch_size=400)
    text = text.replace("num_epochs: 0", "num_epochs: 1")
    # EasyRec's CSVInput splits input paths on ',' and globs each part: two days of 400 rows
    # make one epoch of two batches of 400.
    _, result = _train(tmp_path, text, train_input_path=",".join(days[:2]))
    assert result.final_step == 2


def test_an_input_path_that_is_a_directory_is_a_config_error(tmp_path, tiny_data):
    with pytest.raises(ConfigError, match="daily: is a directory"):
        _train(tmp_path, make_config(tiny_data), train_input_path=str(tiny_data / "daily"))
