"""``[output_config] summary_path / model_path`` (hpo_tools 0.1.x): read once with the trial file,
recorded by the runner in ``params.json``, and the best trial's event files and model copied at
the experiment's end (``hpo_tools.experiment.outputs``) or by hand (``experiment best
--copy-outputs``).

Everything is real files on disk; experiment directories are laid out as NNI's local training
service and the runner leave them (no NNI manager is started). OSS goes through
``hpo_tools.testing.oss.FakeBucket``, the in-memory fake at the oss2 boundary.
"""

from __future__ import annotations

import io
import json
import logging
from pathlib import Path

import pytest

from hpo_tools import experiment as ex
from hpo_tools.cli import main
from hpo_tools.errors import ConfigError
from hpo_tools.experiment.run import _copy_outputs_at_end
from hpo_tools.finetune import read_finetune_file
from hpo_tools.storage import Storage
from hpo_tools.testing.oss import FakeBucket
from hpo_tools.testing.platform import FakePlatform, registered
from hpo_tools.trial.paths import resolve_paths
from hpo_tools.trial.plan import OutputSettings, TrialVariables
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import TrialContext, run_plan
from hpo_tools.trial.settings import parse_trial_text

PLATFORM = "[platform_config]\nname=Fake\ncmd1=emit eval step=1 auc=0.7\n"
SUMMARY_METRIC = ('[metric_config]\nmetric_type=summary\nmetric_source={source}\n'
                  'metric_dict={{"auc": 1}}\n')
FAKE_METRIC = '[metric_config]\nmetric_type=fake\nmetric_source=eval\nmetric_dict={"auc": 1}\n'


@pytest.fixture(autouse=True)
def fake_registered():
    with registered():
        yield


def _plan(text: str, trial_id: str = "t1"):
    variables = TrialVariables("e1", trial_id, f"/out/{trial_id}", {})
    return parse_trial_text(text, source="trial.ini", variables=variables, environ={})


# ----------------------------------------------------------------------- the trial file


def test_the_section_is_read_into_the_plan_with_local_paths_made_absolute(
    tmp_path: Path, monkeypatch
) -> None:
    monkeypatch.chdir(tmp_path)  # where the trial runs: NNI's code directory
    plan = _plan(PLATFORM + FAKE_METRIC + "[output_config]\nsummary_path=best/summary\n"
                 "model_path=oss://bucket/best/model_${exp_id}\nmodel_dir=${NNI_OUTPUT_DIR}/m\n")
    # Relative paths resolve from where the trial runs, so the experiment side (elsewhere)
    # reads them as the trial meant; ${...} is substituted like anywhere in the file.
    assert plan.outputs == OutputSettings(
        "/out/t1/m", str(tmp_path / "best" / "summary"), "oss://bucket/best/model_e1")


def test_the_model_directory_is_the_parent_of_an_eval_event_directory(tmp_path: Path) -> None:
    source = "oss://bucket/models/${trial_id}/eval_val/"
    plan = _plan(PLATFORM + SUMMARY_METRIC.format(source=source)
                 + "[output_config]\nmodel_path=/best/model\n")
    # EasyRec writes evaluation events to <model_dir>/eval_val: the model directory follows.
    assert plan.outputs == OutputSettings("oss://bucket/models/t1", None, "/best/model")


@pytest.mark.parametrize(("metric", "why"), [
    (FAKE_METRIC, "not a summary metric"),
    (SUMMARY_METRIC.format(source="/models/t1/events"), "not an eval_* directory"),
])
def test_without_a_model_directory_to_copy_from_the_file_is_refused(metric, why) -> None:
    with pytest.raises(ConfigError,
                       match=r"\[output_config\] model_dir is required but missing") as err:
        _plan(PLATFORM + metric + "[output_config]\nsummary_path=/best/summary\n")
    # Found when the file is read (check, or before any job runs), carrying where it is.
    assert (err.value.section, err.value.key) == ("output_config", "model_dir"), why


def test_an_unknown_key_is_refused_with_a_suggestion() -> None:
    with pytest.raises(ConfigError,
                       match=r"\[output_config\] summary_pth: unknown key.*summary_path"):
        _plan(PLATFORM + FAKE_METRIC + "[output_config]\nsummary_pth=/best\nmodel_dir=/m\n")


@pytest.mark.parametrize(("line", "message"), [
    ("summary_path=s3://b/best", r"summary_path: s3://b/best: unsupported scheme"),
    ("model_path=oss:///best", r"model_path: expected oss://BUCKET/DIR"),
    # A copy into its own source would copy itself again on every re-run.
    ("model_path=/models/t1/best", r"model_path: '/models/t1/best' lies inside the trial's "
                                   r"model directory '/models/t1'"),
])
def test_a_destination_that_cannot_work_is_refused(line, message) -> None:
    with pytest.raises(ConfigError, match=message):
        _plan(PLATFORM + FAKE_METRIC + f"[output_config]\nmodel_dir=/models/t1\n{line}\n")


def test_a_section_without_destinations_asks_for_nothing() -> None:
    # hpo_tools 0.1.x templates leave the keys blank: no copy, and no model_dir needed.
    plan = _plan(PLATFORM + FAKE_METRIC + "[output_config]\nsummary_path=\nmodel_path=\n")
    assert plan.outputs is None
    assert _plan(PLATFORM + FAKE_METRIC).outputs is None


def test_the_runner_records_the_settings_in_params_json(tmp_path: Path) -> None:
    plan = _plan(PLATFORM + FAKE_METRIC
                 + "[output_config]\nsummary_path=/best/summary\nmodel_dir=/models/t1\n")
    reporter = ConsoleReporter({}, experiment_id="e1", trial_id="t1", stream=io.StringIO())
    paths = resolve_paths("e1", "t1", exp_dir=tmp_path / "exp", environ={})
    outcome = run_plan(plan, reporter, TrialContext("e1", "t1", {}, paths),
                       platform=FakePlatform(), interval=0.02, stderr=io.StringIO())
    assert outcome.status == "succeeded", outcome.message
    # The experiment side reads this, never the trial file, to find the best trial's model.
    doc = json.loads(paths.params_path.read_text())
    assert doc["outputs"] == {"model_dir": "/models/t1", "summary_path": "/best/summary"}


FINETUNE = """\
[finetune_config]
start_time=20220601
end_time=20220603
model_dir=/models/${trial_id}/{bizdate}
fine_tune_checkpoint=/models/begin

[platform_config]
name=Fake
cmd1=echo from {fine_tune_checkpoint}; emit eval-{bizdate} step=1 auc=0.{bizdate}

[metric_config]
metric_type=fake
metric_source=eval-{bizdate}
metric_dict={"auc": 1}

[output_config]
model_dir={model_dir}
model_path=/best/model
"""


def test_a_finetune_trials_model_is_its_last_days(tmp_path: Path) -> None:
    trial = tmp_path / "trial.ini"
    trial.write_text(FINETUNE)
    variables = TrialVariables("e1", "t1", "/out/t1", {})
    plan = read_finetune_file(trial, variables=variables, environ={}).to_plan()
    # Day 3 trained last, from day 2's model: that is the model the trial ends with.
    assert plan.outputs == OutputSettings("/models/t1/20220603", None, "/best/model")


# ----------------------------------------------------------------------- the copies


def _model_dir(root: Path) -> Path:
    """A model directory as EasyRec leaves it, plus files that must never be copied."""
    files = {
        "checkpoint": "model_checkpoint_path: \"model.ckpt-4\"\n",
        "model.ckpt-4.index": "index",
        "model.ckpt-4.data-00000-of-00001": "weights",
        "graph.pbtxt": "graph",
        "events.out.tfevents.1.host": "train events",
        "eval_val/events.out.tfevents.2.host": "eval events",
        "eval_val/checkpoint": "an eval checkpoint index",
        "export/1/saved_model.pb": "saved model",
        # Credentials and our own records: never copied.
        ".ossutilconfig": "[Credentials]\naccessKeySecret=hunter2\n",
        "trial.ini": "[oss_config]\naccessKeySecret=hunter2\n",
        "params.json": "{}",
        "trial.log": "log",
        ".nni/metrics": "nni",
        "eval_val/.events.out.tfevents.3.host.1234.tmp": "half written",
    }
    for name, text in files.items():
        path = root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text)
    return root


MODEL_FILES = [
    "eval_val/checkpoint", "eval_val/events.out.tfevents.2.host", "events.out.tfevents.1.host",
    "export/1/saved_model.pb", "graph.pbtxt", "model.ckpt-4.data-00000-of-00001",
    "model.ckpt-4.index", "checkpoint",
]


def _files(root: Path) -> list[str]:
    return sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())


def test_event_files_and_the_model_are_copied_without_secrets(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "model")
    settings = OutputSettings(str(model), str(tmp_path / "summary"), str(tmp_path / "best"))
    copies = ex.copy_outputs(settings, "t1")
    assert [(c.key, c.copied, c.error) for c in copies] == [
        ("summary_path", 2, None), ("model_path", len(MODEL_FILES), None)]
    # Only event files for TensorBoard, where they were relative to the model directory.
    assert _files(tmp_path / "summary") == [
        "eval_val/events.out.tfevents.2.host", "events.out.tfevents.1.host"]
    assert (tmp_path / "summary" / "eval_val" / "events.out.tfevents.2.host").read_text() \
        == "eval events"
    # The whole model, and nothing that holds a credential or is the runner's own record.
    assert _files(tmp_path / "best") == sorted(MODEL_FILES)
    assert "hunter2" not in "".join(p.read_text() for p in (tmp_path / "best").rglob("*")
                                    if p.is_file())
    assert copies[1].describe() == (
        f"model_path: {len(MODEL_FILES)} files of trial t1 copied from {model} to "
        f"{tmp_path / 'best'}")


def test_copies_to_oss_put_each_file_once_and_the_checkpoint_index_last(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "model")
    bucket = FakeBucket()
    store = Storage(bucket_factory=lambda name: bucket)
    settings = OutputSettings(str(model), "oss://b/best/summary/", "oss://b/best/model")
    copies = ex.copy_outputs(settings, "t1", store=store)
    assert all(c.ok for c in copies), [c.describe() for c in copies]
    assert sorted(bucket.objects) == sorted(
        ["best/summary/eval_val/events.out.tfevents.2.host",
         "best/summary/events.out.tfevents.1.host"]
        + [f"best/model/{name}" for name in MODEL_FILES])
    puts = [call[1][0] for call in bucket.calls if call[0] == "put_object"]
    # One PUT per object (each appears whole or not at all), checkpoint indexes after the
    # files they name.
    assert len(puts) == len(set(puts))
    model_puts = [p for p in puts if p.startswith("best/model/")]
    assert [p.rsplit("/", 1)[-1] for p in model_puts[-2:]] == ["checkpoint", "checkpoint"]


def test_a_model_directory_on_oss_is_copied_to_a_local_path(tmp_path: Path) -> None:
    bucket = FakeBucket(objects={
        "models/t1/checkpoint": b"ckpt", "models/t1/eval_val/events.out.tfevents.9": b"ev",
        "models/t1/eval_val/": b"",  # a directory marker object, as consoles create them
        "models/t10/checkpoint": b"another trial's",
    })
    store = Storage(bucket_factory=lambda name: bucket)
    settings = OutputSettings("oss://b/models/t1", str(tmp_path / "s"), str(tmp_path / "m"))
    copies = ex.copy_outputs(settings, "t1", store=store)
    assert [c.copied for c in copies] == [1, 2], [c.describe() for c in copies]
    assert _files(tmp_path / "s") == ["eval_val/events.out.tfevents.9"]
    # Only this trial's prefix (models/t1/, not models/t10).
    assert (tmp_path / "m" / "checkpoint").read_bytes() == b"ckpt"
    assert _files(tmp_path / "m") == ["checkpoint", "eval_val/events.out.tfevents.9"]


def test_a_destination_that_is_the_model_directory_itself_copies_nothing(tmp_path: Path) -> None:
    model = _model_dir(tmp_path / "model")
    # hpo_tools 0.1.x files often name the trial's own directory (model_${trial_id}).
    (copy,) = ex.copy_outputs(OutputSettings(str(model), str(model) + "/"), "t1")
    assert copy.ok and copy.same and copy.copied == 0
    assert "is trial t1's own model directory; nothing to copy" in copy.describe()


def test_a_model_directory_without_event_files_is_a_failed_summary_copy(tmp_path: Path) -> None:
    (tmp_path / "model").mkdir()
    (tmp_path / "model" / "checkpoint").write_text("x")
    (copy,) = ex.copy_outputs(OutputSettings(str(tmp_path / "model"), str(tmp_path / "s")), "t1")
    assert copy.error == "no event files (events.out.tfevents.*) under the model directory"
    assert not (tmp_path / "s").exists()


def test_a_failed_file_copy_names_the_destination_and_leaves_no_partial_file(
    tmp_path: Path,
) -> None:
    model = _model_dir(tmp_path / "model")
    blocker = tmp_path / "best"
    blocker.mkdir()
    (blocker / "export").write_text("a file where the model's export/ directory would go")
    (summary, copy) = ex.copy_outputs(
        OutputSettings(str(model), str(tmp_path / "summary"), str(blocker)), "t1")
    assert summary.ok  # one destination failing does not cost the other
    assert not copy.ok and str(blocker / "export" / "1" / "saved_model.pb") in copy.error
    # The files before it (in name order) were copied whole; no temp file is left anywhere.
    assert copy.copied == 2 and "(after 2 files)" in copy.describe()
    assert not [p for p in blocker.rglob(".*")]


# ----------------------------------------------------------------------- experiment level


def _trial(root: Path, trial_id: str, score: float, outputs: dict | None) -> Path:
    """One trial directory as the runner writes it under NNI, with its model directory."""
    trial_dir = root / "environments" / "local-env" / "trials" / trial_id
    trial_dir.mkdir(parents=True)
    model = _model_dir(trial_dir / "model")
    (model / "graph.pbtxt").write_text(f"graph of {trial_id}")
    doc = {"trial_id": trial_id, "experiment_id": root.name, "parameter_id": 0,
           "params": {"lr": score}, "configs": []}
    if outputs is not None:
        doc["outputs"] = {"model_dir": str(model), **outputs}
    (trial_dir / "params.json").write_text(json.dumps(doc))
    report = {"step": 100, "score": score, "values": {"auc": score}, "source": 0}
    (trial_dir / "result.json").write_text(json.dumps(
        {"intermediate": [report], "final": report, "status": "succeeded"}))
    return trial_dir


@pytest.fixture
def exp_root(tmp_path: Path) -> Path:
    root = tmp_path / "work" / "abcd1234"
    root.mkdir(parents=True)
    return root


def test_experiment_best_copy_outputs_copies_the_best_trials_model(exp_root, tmp_path, capsys):
    outputs = {"summary_path": str(tmp_path / "summary"), "model_path": str(tmp_path / "best")}
    _trial(exp_root, "aaaaa", 0.6, outputs)
    _trial(exp_root, "bbbbb", 0.8, outputs)
    _trial(exp_root, "ccccc", 0.7, outputs)
    code = main(["experiment", "best", exp_root.name, "--experiment-dir", str(exp_root),
                 "--copy-outputs"])
    out = capsys.readouterr().out
    assert code == 0, out
    # The best trial's (bbbbb) model, nobody else's.
    assert (tmp_path / "best" / "graph.pbtxt").read_text() == "graph of bbbbb"
    assert _files(tmp_path / "summary") == [
        "eval_val/events.out.tfevents.2.host", "events.out.tfevents.1.host"]
    assert "summary_path: 2 event files of trial bbbbb copied from" in out
    assert f"model_path: {len(MODEL_FILES)} files of trial bbbbb copied" in out
    # best_trial.json says where the model came from and went.
    best = json.loads((exp_root / "best" / "best_trial.json").read_text())
    assert best["outputs"]["model_path"] == str(tmp_path / "best")


def test_experiment_best_without_copy_outputs_copies_nothing(exp_root, tmp_path, capsys):
    _trial(exp_root, "aaaaa", 0.6, {"model_path": str(tmp_path / "best")})
    assert main(["experiment", "best", exp_root.name, "--experiment-dir", str(exp_root)]) == 0
    assert not (tmp_path / "best").exists()


def test_a_failed_copy_by_hand_is_one_error_line_and_exit_1(exp_root, tmp_path, capsys):
    (tmp_path / "blocked").write_text("a file, not a directory")
    _trial(exp_root, "aaaaa", 0.6, {"summary_path": str(tmp_path / "summary"),
                                    "model_path": str(tmp_path / "blocked" / "model")})
    code = main(["experiment", "best", exp_root.name, "--experiment-dir", str(exp_root),
                 "--copy-outputs"])
    captured = capsys.readouterr()
    assert code == 1
    errors = [line for line in captured.err.splitlines() if line]
    assert len(errors) == 1 and errors[0].startswith(
        "error: model_path: cannot copy trial aaaaa's files from "), captured.err
    # The summary copy did not depend on it.
    assert "summary_path: 2 event files of trial aaaaa copied" in captured.out


def test_copy_outputs_for_a_trial_without_output_config_says_so(exp_root, capsys):
    _trial(exp_root, "aaaaa", 0.6, None)
    code = main(["experiment", "best", exp_root.name, "--experiment-dir", str(exp_root),
                 "--copy-outputs"])
    err = capsys.readouterr().err
    assert code == 1
    assert "trial aaaaa recorded no [output_config]" in err


def test_at_the_experiments_end_a_failed_copy_is_a_warning_naming_the_retry(
    exp_root, tmp_path, caplog
) -> None:
    (tmp_path / "blocked").write_text("a file, not a directory")
    _trial(exp_root, "aaaaa", 0.6, {"model_path": str(tmp_path / "blocked" / "m")})
    files = ex.experiment_files(exp_root)
    run = ex.select_best(files.trial_runs())
    with caplog.at_level(logging.WARNING, logger="hpo_tools.experiment.run"):
        copies = _copy_outputs_at_end(run, exp_root.name, files)  # never raises
    assert [c.ok for c in copies] == [False]
    messages = [r.getMessage() for r in caplog.records]
    assert any(m.startswith("model_path: cannot copy trial aaaaa's files") for m in messages)
    assert any(f"hpo-tools experiment best {exp_root.name} --experiment-dir {exp_root} "
               "--copy-outputs" in m for m in messages)


def test_at_the_experiments_end_a_trial_without_the_section_copies_nothing(exp_root) -> None:
    _trial(exp_root, "aaaaa", 0.6, None)
    files = ex.experiment_files(exp_root)
    assert _copy_outputs_at_end(ex.select_best(files.trial_runs()), exp_root.name, files) == []
