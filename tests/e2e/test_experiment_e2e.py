"""`hpo-tools experiment run` through real NNI: TPE, PAIAssessor, the trial runner and the real
TensorFlow trainer on a tiny synthetic data set, then the best trial's export checked against
what the trainer really trained.

Four short trials, two at a time: the experiment takes about 40 s on 2 cores (the whole module
about a minute). When it does not end in time, every assert names the load average and prints
the summary table and the tail of each unfinished trial's log.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pytest

from hpo_tools import experiment as ex
from hpo_tools.cli import main
from hpo_tools.pbtxt import Document, apply_edits

from .procs import processes_of

# The experiment alone takes ~40 s on 2 idle cores; the bound leaves room for a machine several
# times slower, and is below pytest's timeout so that a slow run ends with our diagnosis and NNI
# stopped instead of pytest-timeout's stack dump.
EXPERIMENT_TIMEOUT = 240
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(EXPERIMENT_TIMEOUT + 60)]

REPO = Path(__file__).resolve().parents[2]
BEGIN = REPO / "examples" / "search" / "local_easyrec" / "begin"

USER_DIM = "feature_configs[input_names[0]=user_id].embedding_dim"
BOTTOM = "model_config.dbmtl.bottom_dnn.hidden_units"
LR = ("train_config.optimizer_config[0].adam_optimizer.learning_rate"
      ".exponential_decay_learning_rate.initial_learning_rate")
L2 = "model_config.dbmtl.l2_regularization"

# Every choice differs from the base config (user_id dim 16, bottom [128, 64], lr 0.001,
# l2 1e-6), so every searched key must differ in the exported config.
SEARCH_SPACE = {
    USER_DIM: {"_type": "choice", "_value": [4, 12]},
    BOTTOM: {"_type": "choice", "_value": [[32, 16], [48, 24]]},
    LR: {"_type": "loguniform", "_value": [0.002, 0.02]},
    L2: {"_type": "loguniform", "_value": [1e-5, 1e-4]},
}

TRIAL_INI = """\
[platform_config]
name=Local
cmd1=python -m hpo_tools.trainer
    --pipeline_config_path ${{NNI_OUTPUT_DIR}}/configs/pipeline.config
    --model_dir ${{NNI_OUTPUT_DIR}}/model
    --train_input_path {data}/train.csv
    --eval_input_path {data}/eval.csv

[metric_config]
metric_type=summary
metric_source=${{NNI_OUTPUT_DIR}}/model/eval_val
metric_dict={{"auc_ctr": 0.5, "auc_cvr": 0.5}}
optimize_mode=maximize

[params_config]
params_src_dst_filepath1=pipeline.config,${{NNI_OUTPUT_DIR}}/configs/pipeline.config

[output_config]
summary_path=best_outputs/${{exp_id}}/summary
model_path=best_outputs/${{exp_id}}/model
"""

CONFIG_YML = """\
searchSpaceFile: search_space.json
trialCommand: python3 -m hpo_tools.run --config trial.ini
trialCodeDirectory: .
trialConcurrency: 2
maxTrialNumber: 4
maxTrialDuration: 120s
experimentWorkingDirectory: {work}
tuner:
  codeDirectory: {core}
  className: hpo_tools.tuners.SafeTpeTuner
  classArgs: {{optimize_mode: maximize, seed: 3}}
assessor:
  codeDirectory: {core}
  className: pai_assessor.PAIAssessor
  classArgs: {{optimize_mode: maximize, start_step: 2}}
trainingService:
  platform: local
"""


def _diagnosis(result: ex.RunResult) -> str:
    """What a failed assert shows: how the run ended, the summary, unfinished trials' logs."""
    lines = [
        f"status {result.status}, timed out: {result.timed_out} (limit {EXPERIMENT_TIMEOUT} s), "
        f"errors: {result.errors}, load average: {os.getloadavg()}",
        ex.format_summary(result.snapshot, result.export),
    ]
    for view in result.snapshot.trials:
        if view.outcome is ex.Outcome.SUCCEEDED:
            continue
        log = view.run.trial_dir / "trial.log"
        tail = log.read_text(errors="replace").splitlines()[-8:] if log.is_file() else []
        lines.append(f"--- {view.trial_id} ({view.outcome.value}), {log}:")
        lines.extend(tail or ["(no trial.log)"])
    return "\n".join(lines)


@pytest.fixture(scope="module")
def finished(tmp_path_factory):
    """Run the experiment once; the tests below check different things about it."""
    from hpo_tools.trainer.data import write_dataset

    root = tmp_path_factory.mktemp("exp_e2e")
    write_dataset(root / "data", days=3, rows_per_day=1200, seed=0)
    base = (BEGIN / "pipeline.config").read_text()
    # Four steps per trial (2400 rows / 512), evaluated every second step: 2-3 reports each.
    # 1000 hash buckets instead of up to 100000: checkpoints of ~2 MB instead of ~60 MB each
    # (embeddings plus Adam's slots), which a loaded machine's disk felt more than the training.
    base = apply_edits(base, {"train_config.save_checkpoints_steps": 2,
                              "feature_configs[hash_bucket_size>1000].hash_bucket_size": 1000})
    (root / "pipeline.config").write_text(base)
    (root / "search_space.json").write_text(json.dumps(SEARCH_SPACE))
    (root / "trial.ini").write_text(TRIAL_INI.format(data=root / "data"))
    config = root / "config.yml"
    config.write_text(CONFIG_YML.format(work=root / "nni", core=REPO / "core"))
    # A free port (the conftest fixture is function-scoped; this fixture is per module).
    result = ex.run_experiment(config, port=ex.free_port(), timeout=EXPERIMENT_TIMEOUT,
                               poll_interval=1.0)
    return root, base, result


def test_experiment_ends_done_with_every_trial_succeeded_or_stopped_by_assessor(finished):
    _, _, result = finished
    assert result.status == "DONE" and not result.timed_out, _diagnosis(result)
    assert len(result.snapshot.trials) == 4, _diagnosis(result)
    for view in result.snapshot.trials:
        # Nothing failed or was cancelled: each trial either ran to the end or was judged.
        assert view.outcome in (ex.Outcome.SUCCEEDED, ex.Outcome.ASSESSOR_STOPPED), _diagnosis(
            result)
        if view.outcome is ex.Outcome.ASSESSOR_STOPPED:
            # Recorded as such: a decision line, and the runner's own record says cancelled.
            assert view.decision is not None and view.run.status == "cancelled", view
        else:
            assert view.nni_status == "SUCCEEDED" and view.run.status == "succeeded", view
    assert result.succeeded >= 1, _diagnosis(result)
    assert result.report == result.files.root / "report.png" and result.report.is_file()


def test_every_trial_reported_intermediate_results(finished):
    _, _, result = finished
    assert result.snapshot.trials, _diagnosis(result)
    for view in result.snapshot.trials:
        # The assessor can only judge trials that report while they train.
        assert len(view.run.intermediate) >= 1, _diagnosis(result)


def test_exported_config_differs_from_the_base_exactly_at_the_searched_keys(finished):
    _, base, result = finished
    assert result.export is not None, _diagnosis(result)
    exported = result.export.config_path.read_text()
    params = json.loads(result.export.params_path.read_text())
    assert set(params) == set(SEARCH_SPACE)
    doc = Document.parse(exported, source="best/pipeline.config")  # it parses
    base_doc = Document.parse(base)
    for key, value in params.items():
        expected = value if isinstance(value, list) else [value]
        got = doc.get(key)
        assert got == pytest.approx(expected), key
        assert base_doc.get(key) != got, key  # every searched key really changed
    # ...and nothing else changed: the base with these parameters applied is the same text.
    assert apply_edits(base, params) == exported


def test_exported_params_are_the_ones_the_best_trial_ran_with(finished):
    _, _, result = finished
    assert result.export is not None, _diagnosis(result)
    best = next(v for v in result.snapshot.trials if v.trial_id == result.export.trial_id)
    own = json.loads((best.run.trial_dir / "params.json").read_text())
    exported = json.loads(result.export.params_path.read_text())
    assert exported == own["params"]
    # The config the trainer was given is byte for byte the exported one.
    assert (best.run.trial_dir / "configs" / "pipeline.config").read_text() == (
        result.export.config_path.read_text())
    # The best score is that trial's own final result, the best among succeeded trials.
    scores = [v.run.score for v in result.snapshot.trials if v.outcome is ex.Outcome.SUCCEEDED]
    assert result.export.score == max(scores)


def test_the_trainer_built_the_model_the_exported_params_describe(finished):
    import tensorflow as tf

    _, _, result = finished
    assert result.export is not None, _diagnosis(result)
    params = result.export.params
    best = next(v for v in result.snapshot.trials if v.trial_id == result.export.trial_id)
    shapes = dict(tf.train.list_variables(str(best.run.trial_dir / "model")))
    # What the trainer actually read: the checkpoint's shapes follow the searched values.
    assert shapes["model/tables/user_id/.ATTRIBUTES/VARIABLE_VALUE"][1] == params[USER_DIM]
    bottom = [shapes[f"model/bottom/layers/{i}/bias/.ATTRIBUTES/VARIABLE_VALUE"][0]
              for i in range(len(params[BOTTOM]))]
    assert bottom == params[BOTTOM]


def test_the_best_trials_event_files_and_model_are_copied_at_the_end(finished):
    root, _, result = finished
    assert result.export is not None, _diagnosis(result)
    assert [c.ok for c in result.outputs] == [True, True], [c.describe() for c in result.outputs]
    model = result.snapshot.best.run.trial_dir / "model"
    assert result.snapshot.best.trial_id == result.export.trial_id
    # [output_config]'s relative paths resolved from trialCodeDirectory (root), per experiment.
    out = root / "best_outputs" / result.experiment_id

    def files(directory: Path) -> list[str]:
        return sorted(p.relative_to(directory).as_posix() for p in directory.rglob("*")
                      if p.is_file())

    # The best trial's model directory, file for file, byte for byte.
    assert files(out / "model") == files(model)
    assert (out / "model" / "checkpoint").read_bytes() == (model / "checkpoint").read_bytes()
    # Only its event files for TensorBoard, the evaluation ones still under eval_val/.
    summary = files(out / "summary")
    assert summary and all(n.rsplit("/", 1)[-1].startswith("events.out.tfevents.")
                           for n in summary)
    assert any(n.startswith("eval_val/") for n in summary)


def test_no_trial_or_nni_process_is_left_running(finished):
    _, _, result = finished
    assert processes_of(result.experiment_id) == []


def test_best_reexport_from_the_directory_alone_matches(finished, capsys):
    _, _, result = finished
    assert result.export is not None, _diagnosis(result)
    first = result.export.params_path.read_text()
    result.export.params_path.unlink()
    code = main(["experiment", "best", result.experiment_id, "--experiment-dir",
                 str(result.files.root)])
    assert code == 0
    # Same choice from the directory alone (mode read back from NNI's database).
    assert result.export.params_path.read_text() == first
    assert f"best: trial {result.export.trial_id}" in capsys.readouterr().out


def test_progress_and_scores_are_finite(finished):
    _, _, result = finished
    for view in result.snapshot.trials:
        for report in view.run.intermediate:
            assert math.isfinite(report["score"]) and 0.0 <= report["score"] <= 1.0


def test_cli_run_refuses_a_trial_file_that_does_not_check(tmp_path, capsys):
    (tmp_path / "pipeline.config").write_text((BEGIN / "pipeline.config").read_text())
    (tmp_path / "search_space.json").write_text(json.dumps(
        {"model_config.dbmtl.no_such_field": {"_type": "choice", "_value": [1]}}))
    (tmp_path / "trial.ini").write_text(TRIAL_INI.format(data=tmp_path))
    (tmp_path / "config.yml").write_text(
        CONFIG_YML.format(work=tmp_path / "nni", core=REPO / "core"))
    code = main(["experiment", "run", str(tmp_path / "config.yml")])
    # Refused before NNI starts: exit 2, the unresolved key named, no experiment directory.
    assert code == 2
    assert "no_such_field" in capsys.readouterr().err
    assert not (tmp_path / "nni").exists()


SLEEPER_INI = """\
[platform_config]
name=Local
cmd1=python -c "import time; time.sleep(120)"

[metric_config]
metric_type=summary
metric_source=${NNI_OUTPUT_DIR}/model/eval_val
metric_dict={"auc": 1}
optimize_mode=maximize
"""


def test_timeout_stops_the_experiment_and_every_trial_job(tmp_path, free_port):
    (tmp_path / "trial.ini").write_text(SLEEPER_INI)
    (tmp_path / "search_space.json").write_text(
        json.dumps({"x": {"_type": "choice", "_value": [1, 2]}}))
    config = tmp_path / "config.yml"
    config.write_text(CONFIG_YML.format(work=tmp_path / "nni", core=REPO / "core"))
    progress: list[ex.Snapshot] = []
    # 25 s: NNI and both runners are up within a few seconds on an idle machine (the check
    # below needs both runners to have started), and the sleepers would run for 120 s.
    result = ex.run_experiment(config, port=free_port, timeout=25, poll_interval=1.0,
                               checker=None, on_progress=progress.append)
    assert result.timed_out, _diagnosis(result)
    # Both trials were running when the time was up...
    assert max(s.count(ex.Outcome.RUNNING) for s in progress) == 2, _diagnosis(result)
    # ...and the stop cancelled them: the runner recorded it, nothing succeeded, no best.
    assert [v.outcome for v in result.snapshot.trials] == [ex.Outcome.CANCELLED] * 2, (
        _diagnosis(result))
    assert all(v.run.status == "cancelled" for v in result.snapshot.trials), _diagnosis(result)
    assert result.export is None
    # No NNI manager, runner or sleeping job survives the stop.
    assert processes_of(result.experiment_id) == []
