"""Progress, summary, best export and end-condition logic of `hpo_tools.experiment`.

The experiment directories here are laid out the way NNI's local training service and the trial
runner leave them (``E/environments/local-env/trials/<id>/{params,result}.json``,
``E/hpo-tools/assessor-decisions.jsonl``); no NNI manager is started (see tests/e2e for that).
"""

from __future__ import annotations

import json
import os
import re
import sqlite3
from pathlib import Path

import pytest

from hpo_tools import experiment as ex
from hpo_tools.cli import main
from hpo_tools.errors import ConfigError

BASE_CONFIG = "train_config {\n  num_steps: 100\n}\nmodel_config {\n  embedding_dim: 8\n}\n"


def write_trial(
    root: Path,
    trial_id: str,
    params: dict | None,
    scores: list[float],
    *,
    status: str | None = "succeeded",
    config_text: str | None = None,
    final: bool = True,
) -> Path:
    """Lay out one trial directory as the runner writes it under NNI."""
    trial_dir = root / "environments" / "local-env" / "trials" / trial_id
    trial_dir.mkdir(parents=True)
    configs = []
    if config_text is not None:
        config_path = trial_dir / "configs" / "pipeline.config"
        config_path.parent.mkdir()
        config_path.write_text(config_text)
        configs.append(str(config_path))
    if params is not None:
        (trial_dir / "params.json").write_text(json.dumps({
            "trial_id": trial_id, "experiment_id": root.name, "parameter_id": 0,
            "params": params, "configs": configs}))
    reports = [{"step": 100 * (i + 1), "score": s, "values": {"auc": s}, "source": 0}
               for i, s in enumerate(scores)]
    if status is not None or reports:
        (trial_dir / "result.json").write_text(json.dumps({
            "intermediate": reports,
            "final": reports[-1] if (final and reports and status == "succeeded") else None,
            "status": status}))
    return trial_dir


def write_decisions(root: Path, *lines: str) -> None:
    path = root / "hpo-tools" / "assessor-decisions.jsonl"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


@pytest.fixture
def exp_root(tmp_path: Path) -> Path:
    root = tmp_path / "work" / "abcd1234"
    root.mkdir(parents=True)
    return root


# ----------------------------------------------------------------------- end condition


@pytest.mark.parametrize("status", ["DONE", "STOPPED", "ERROR"])
def test_final_experiment_statuses_end_the_run_even_with_live_trials(status):
    # NNI says it is over; a trial still listed RUNNING must not keep us polling forever.
    assert ex.experiment_finished(status, ["RUNNING"])


@pytest.mark.parametrize("status", ["NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL"])
def test_no_more_trials_ends_the_run_once_no_trial_is_live(status):
    # NNI never moves TUNER_NO_MORE_TRIAL to DONE (nni#3859): this is our only way out.
    assert ex.experiment_finished(status, ["SUCCEEDED", "USER_CANCELED", "FAILED"])


@pytest.mark.parametrize("live", ["RUNNING", "WAITING"])
@pytest.mark.parametrize("status", ["NO_MORE_TRIAL", "TUNER_NO_MORE_TRIAL"])
def test_no_more_trials_waits_for_running_and_waiting_trials(status, live):
    # The last trials still train; stopping now would cancel them.
    assert not ex.experiment_finished(status, ["SUCCEEDED", live])


def test_tuner_no_more_trial_waits_for_the_trials_nni_has_not_submitted_yet():
    # The tuner's last point waits up to 5 s in NNI's queue after TUNER_NO_MORE_TRIAL; stopping
    # then ran 5 trials of a grid of 6.
    assert not ex.experiment_finished("TUNER_NO_MORE_TRIAL", ["SUCCEEDED"], unsubmitted=1)
    assert ex.experiment_finished("TUNER_NO_MORE_TRIAL", ["SUCCEEDED"], unsubmitted=0)


def test_a_run_ended_at_no_more_trial_is_reported_done():
    # NNI sets DONE on its manager's next pass, seconds after /trial-jobs shows the last trial
    # ended: which poll came first must not decide what the run reports (a CI failure: a run
    # of 4 of 4 succeeded trials said NO_MORE_TRIAL).
    assert ex.settled_status("NO_MORE_TRIAL") == "DONE"
    # The tuner ran out of points: NNI never says DONE, and the summary says why it ended.
    assert ex.settled_status("TUNER_NO_MORE_TRIAL") == "TUNER_NO_MORE_TRIAL"
    for status in ("DONE", "STOPPED", "ERROR"):
        assert ex.settled_status(status) == status


def test_running_experiment_is_not_finished_when_no_trial_is_live():
    # Between two submissions RUNNING has no live trial; the tuner will send more.
    assert not ex.experiment_finished("RUNNING", ["SUCCEEDED"])


# ----------------------------------------------------------------------- classification


@pytest.mark.parametrize("nni_status", ["USER_CANCELED", "FAILED", "EARLY_STOPPED"])
def test_trial_ended_after_a_bad_decision_counts_as_stopped_by_assessor(nni_status):
    # NNI records assessor kills as USER_CANCELED or FAILED (API-NOTES §0.2).
    assert ex.classify_trial(nni_status, "cancelled", True) is ex.Outcome.ASSESSOR_STOPPED


def test_cancelled_trial_without_a_decision_counts_as_cancelled():
    assert ex.classify_trial("USER_CANCELED", "cancelled", False) is ex.Outcome.CANCELLED


def test_failed_trial_without_a_decision_counts_as_failed():
    assert ex.classify_trial("FAILED", "failed", False) is ex.Outcome.FAILED


def test_succeeded_trial_stays_succeeded_despite_a_late_bad_decision():
    # The trial finished before the kill arrived; its final result reached the tuner.
    assert ex.classify_trial("SUCCEEDED", "succeeded", True) is ex.Outcome.SUCCEEDED


@pytest.mark.parametrize("nni_status", ["RUNNING", "WAITING"])
def test_live_trial_with_a_pending_kill_counts_as_running(nni_status):
    assert ex.classify_trial(nni_status, None, True) is ex.Outcome.RUNNING


@pytest.mark.parametrize(("runner_status", "decided", "expected"), [
    ("succeeded", False, ex.Outcome.SUCCEEDED),
    ("cancelled", True, ex.Outcome.ASSESSOR_STOPPED),
    ("cancelled", False, ex.Outcome.CANCELLED),
    ("failed", False, ex.Outcome.FAILED),
    (None, False, ex.Outcome.RUNNING),
])
def test_without_nni_the_runner_status_classifies(runner_status, decided, expected):
    # `experiment best` on a stopped experiment has only the trials' own records.
    assert ex.classify_trial(None, runner_status, decided) is expected


# ----------------------------------------------------------------------- records


def test_read_trial_run_reads_params_configs_reports_and_status(exp_root):
    trial_dir = write_trial(exp_root, "T1", {"lr": 0.01}, [0.6, 0.7], config_text=BASE_CONFIG)
    run = ex.read_trial_run(trial_dir)
    assert run.params == {"lr": 0.01}
    assert run.configs == (str(trial_dir / "configs" / "pipeline.config"),)
    assert [r["score"] for r in run.intermediate] == [0.6, 0.7]
    assert run.score == 0.7 and run.status == "succeeded"


def test_read_trial_run_of_a_trial_that_has_not_written_anything(exp_root):
    trial_dir = exp_root / "environments" / "local-env" / "trials" / "T0"
    trial_dir.mkdir(parents=True)
    run = ex.read_trial_run(trial_dir)
    # Trial dirs appear before the runner writes; they must read as "nothing yet", not crash.
    assert (run.trial_id, run.params, run.status, run.score) == ("T0", None, None, None)


def test_decisions_keep_the_first_per_trial_and_skip_a_half_written_line(exp_root):
    write_decisions(
        exp_root,
        '{"trial_id": "A", "step": 2, "rule": "median"}',
        '{"trial_id": "A", "step": 3, "rule": "median"}',
        '{"trial_id": "B", "step"',
    )
    decisions = ex.read_assessor_decisions(exp_root / "hpo-tools" / "assessor-decisions.jsonl")
    assert list(decisions) == ["A"]
    assert decisions["A"]["step"] == 2  # when the assessor first said stop


def test_missing_decisions_file_means_no_decisions(exp_root):
    assert ex.read_assessor_decisions(exp_root / "nope.jsonl") == {}


# ----------------------------------------------------------------------- best


def _runs(exp_root: Path) -> list[ex.TrialRun]:
    write_trial(exp_root, "A", {"lr": 0.1}, [0.60, 0.71])
    write_trial(exp_root, "B", {"lr": 0.2}, [0.65, 0.74])
    write_trial(exp_root, "C", {"lr": 0.3}, [0.66, 0.69])
    return ex.ExperimentFiles(exp_root).trial_runs()


def test_select_best_maximize_takes_the_highest_final_score(exp_root):
    assert ex.select_best(_runs(exp_root), "maximize").trial_id == "B"


def test_select_best_minimize_takes_the_lowest_final_score(exp_root):
    assert ex.select_best(_runs(exp_root), "minimize").trial_id == "C"


def test_select_best_ignores_trials_that_did_not_succeed(exp_root):
    write_trial(exp_root, "A", {"lr": 0.1}, [0.70], status="succeeded")
    write_trial(exp_root, "S", {"lr": 0.9}, [0.99], status="cancelled")  # stopped early
    write_trial(exp_root, "F", {"lr": 0.8}, [0.98], status="failed")
    runs = ex.ExperimentFiles(exp_root).trial_runs()
    # A half-trained or crashed trial's last report is not a result the tuner ever saw.
    assert ex.select_best(runs, "maximize").trial_id == "A"


def test_select_best_of_nothing_is_none(exp_root):
    write_trial(exp_root, "F", {"lr": 0.8}, [0.5], status="failed")
    assert ex.select_best(ex.ExperimentFiles(exp_root).trial_runs()) is None


def test_select_best_rejects_an_unknown_mode(exp_root):
    with pytest.raises(ConfigError, match="optimize_mode"):
        ex.select_best(_runs(exp_root), "max")


def test_export_best_writes_the_trials_own_params_and_edited_config(exp_root):
    edited = BASE_CONFIG.replace("embedding_dim: 8", "embedding_dim: 16")
    write_trial(exp_root, "A", {"model_config.embedding_dim": 4}, [0.6],
                config_text=BASE_CONFIG.replace("embedding_dim: 8", "embedding_dim: 4"))
    write_trial(exp_root, "B", {"model_config.embedding_dim": 16}, [0.8], config_text=edited)
    files = ex.ExperimentFiles(exp_root)
    export = ex.export_best(files, ex.select_best(files.trial_runs()), "maximize")
    # The params are the ones in B's own params.json, whatever NNI's DB pairs B with.
    assert json.loads((exp_root / "best" / "best_params.json").read_text()) == {
        "model_config.embedding_dim": 16}
    # The config is byte-for-byte the one B trained with.
    assert (exp_root / "best" / "pipeline.config").read_text() == edited
    assert export.config_path == exp_root / "best" / "pipeline.config"
    trial_doc = json.loads(export.trial_path.read_text())
    assert (trial_doc["trial_id"], trial_doc["score"]) == ("B", 0.8)


def test_export_best_replaces_a_previous_export(exp_root):
    write_trial(exp_root, "A", {"x": 1}, [0.6], config_text="a: 1\n")
    files = ex.ExperimentFiles(exp_root)
    ex.export_best(files, files.trial_runs()[0])
    write_trial(exp_root, "B", {"x": 2}, [0.9], config_text="a: 2\n")
    ex.export_best(files, ex.select_best(files.trial_runs()))
    assert (exp_root / "best" / "pipeline.config").read_text() == "a: 2\n"
    # No temp files left behind by the atomic writes.
    assert sorted(p.name for p in (exp_root / "best").iterdir()) == [
        "best_params.json", "best_trial.json", "pipeline.config"]


def test_export_best_that_cannot_write_is_a_storage_error_naming_the_file(exp_root):
    from hpo_tools.errors import StorageError

    write_trial(exp_root, "A", {"x": 1}, [0.6], config_text="a: 1\n")
    (exp_root / "best" / "pipeline.config").mkdir(parents=True)  # in the way of the export
    files = ex.ExperimentFiles(exp_root)
    # A one-line `error: ...` naming the file (exit 2), not an OSError traceback.
    with pytest.raises(StorageError, match=r"best/pipeline.config: cannot write"):
        ex.export_best(files, files.trial_runs()[0])


def test_export_best_without_an_edited_config_writes_params_only(exp_root):
    write_trial(exp_root, "A", {"x": 1}, [0.6])
    files = ex.ExperimentFiles(exp_root)
    export = ex.export_best(files, files.trial_runs()[0])
    assert export.config_path is None
    assert not (exp_root / "best" / "pipeline.config").exists()
    assert json.loads(export.params_path.read_text()) == {"x": 1}


def test_export_best_copies_further_configs_under_numbered_names(exp_root):
    trial_dir = write_trial(exp_root, "A", {"x": 1}, [0.6], config_text="a: 1\n")
    second = trial_dir / "configs" / "eval.config"
    second.write_text("b: 2\n")
    doc = json.loads((trial_dir / "params.json").read_text())
    doc["configs"].append(str(second))
    (trial_dir / "params.json").write_text(json.dumps(doc))
    files = ex.ExperimentFiles(exp_root)
    export = ex.export_best(files, files.trial_runs()[0])
    assert [p.name for p in export.extra_config_paths] == ["config_2_eval.config"]
    assert export.extra_config_paths[0].read_text() == "b: 2\n"


# ----------------------------------------------------------------------- snapshot / progress


def _recorded_experiment(exp_root: Path) -> list[tuple[str, str, int]]:
    """Five trials: two succeeded, one stopped by the assessor, one failed, one running."""
    write_trial(exp_root, "aaaaa", {"lr": 0.01}, [0.60, 0.70])
    write_trial(exp_root, "bbbbb", {"lr": 0.02}, [0.62, 0.75])
    write_trial(exp_root, "ccccc", {"lr": 0.5}, [0.51], status="cancelled")
    write_trial(exp_root, "ddddd", {"lr": 0.9}, [], status="failed")
    write_trial(exp_root, "eeeee", {"lr": 0.03}, [0.66], status=None)
    write_decisions(exp_root, '{"trial_id": "ccccc", "step": 100, "rule": "median"}')
    return [("aaaaa", "SUCCEEDED", 0), ("bbbbb", "SUCCEEDED", 1),
            ("ccccc", "USER_CANCELED", 2), ("ddddd", "FAILED", 3), ("eeeee", "RUNNING", 4)]


def test_progress_line_counts_each_outcome_and_shows_the_best_so_far(exp_root):
    listed = _recorded_experiment(exp_root)
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), status="RUNNING", nni_trials=listed,
                             elapsed=102, max_trials=8)
    assert ex.format_progress(snap) == (
        "[1:42] RUNNING trials 5/8: 2 succeeded, 1 running, 1 stopped by assessor, "
        "0 cancelled, 1 failed | best 0.7500 (trial bbbbb)")


def test_progress_line_without_elapsed_is_stable_between_polls(exp_root):
    listed = _recorded_experiment(exp_root)
    files = ex.ExperimentFiles(exp_root)
    first = ex.build_snapshot(files, status="RUNNING", nni_trials=listed, elapsed=4)
    later = ex.build_snapshot(files, status="RUNNING", nni_trials=listed, elapsed=6)
    # Only a real change should print a new line; the clock alone must not.
    assert ex.format_progress(first, with_elapsed=False) == ex.format_progress(
        later, with_elapsed=False)


def test_snapshot_lists_trials_in_nni_sequence_order(exp_root):
    listed = _recorded_experiment(exp_root)
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), nni_trials=list(reversed(listed)))
    assert [t.trial_id for t in snap.trials] == ["aaaaa", "bbbbb", "ccccc", "ddddd", "eeeee"]


def test_trial_listed_by_nni_before_its_directory_exists_counts_as_running(exp_root):
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), nni_trials=[("zzzzz", "WAITING", 0)])
    assert snap.count(ex.Outcome.RUNNING) == 1 and snap.best is None


def test_trial_on_disk_that_nni_has_not_listed_yet_is_in_the_snapshot(exp_root):
    # NNI's /trial-jobs lags behind the trial's start: the runner has already written its
    # params.json (and its job runs) while NNI still lists nothing.
    write_trial(exp_root, "fresh", {"lr": 0.01}, [], status=None)
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), status="RUNNING", nni_trials=[])
    assert [(t.trial_id, t.nni_status, t.outcome) for t in snap.trials] == [
        ("fresh", None, ex.Outcome.RUNNING)]
    assert snap.trials[0].run.params == {"lr": 0.01}
    assert "RUNNING trials 1: 0 succeeded, 1 running" in ex.format_progress(snap)


def test_trials_nni_has_not_listed_come_after_the_listed_ones(exp_root):
    listed = _recorded_experiment(exp_root)
    write_trial(exp_root, "fffff", {"lr": 0.04}, [], status=None)
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), nni_trials=listed)
    assert [t.trial_id for t in snap.trials] == [
        "aaaaa", "bbbbb", "ccccc", "ddddd", "eeeee", "fffff"]
    assert snap.trials[-1].nni_status is None


def test_trial_known_only_from_its_job_record_is_in_the_snapshot(exp_root, tmp_path):
    jobs = exp_root / "hpo-tools" / "jobs"
    jobs.mkdir(parents=True)
    elsewhere = write_trial(tmp_path / "other-place", "regd1", {"lr": 0.2}, [0.4],
                            status="cancelled")
    (jobs / "regd1.json").write_text(json.dumps({
        "trial_id": "regd1", "experiment_id": exp_root.name, "trial_dir": str(elsewhere),
        "state": "cancelled", "jobs": []}))
    (jobs / "nodir.json").write_text(json.dumps({
        "trial_id": "nodir", "experiment_id": exp_root.name, "trial_dir": "", "jobs": []}))
    # Not trials of this experiment, or not records at all.
    (jobs / "other.json").write_text(json.dumps({"trial_id": "other", "experiment_id": "zzz"}))
    (jobs / ".regd1.x1y2.tmp").write_text("{")
    (jobs / ".regd1.lock").write_text("")
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), nni_trials=[])
    views = {t.trial_id: t for t in snap.trials}
    assert set(views) == {"regd1", "nodir"}
    assert views["regd1"].outcome is ex.Outcome.CANCELLED
    assert views["regd1"].run.params == {"lr": 0.2}
    assert views["nodir"].outcome is ex.Outcome.RUNNING


def test_summary_after_a_stop_shows_a_trial_nni_had_not_listed_as_cancelled(exp_root):
    from hpo_tools.experiment.run import _stopped_live_as_cancelled

    # Ctrl-C right after the trial started: NNI's last list was empty, and the stop killed the
    # runner before it wrote result.json.
    write_trial(exp_root, "fresh", {"lr": 0.01}, [], status=None)
    snap = _stopped_live_as_cancelled(ex.build_snapshot(
        ex.ExperimentFiles(exp_root), status="interrupted", nni_trials=[], elapsed=12))
    lines = ex.format_summary(snap).splitlines()
    assert lines[0] == "experiment abcd1234: interrupted after 0:12, 1 trials (maximize)"
    assert lines[3].split() == ["fresh", "cancelled", "-", "0", "-", "-"]
    assert "totals: 0 succeeded, 0 running, 0 stopped by assessor, 1 cancelled, 0 failed" in lines


def test_final_read_of_nni_trials_keeps_the_last_list_when_nni_does_not_answer(free_port):
    from hpo_tools.experiment.run import _final_listed

    class Stopped:
        port = free_port
        url_prefix = None

    listed = [("aaaaa", "RUNNING", 0)]
    assert _final_listed(Stopped(), listed) == listed


def test_final_read_of_nni_trials_adds_new_trials_and_updates_statuses():
    import http.server
    import threading

    from hpo_tools.experiment.run import _final_listed

    answer = [{"trialJobId": "aaaaa", "status": "SUCCEEDED", "sequenceId": 0},
              {"trialJobId": "bbbbb", "status": "WAITING", "sequenceId": 1}]

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - http.server's name
            body = json.dumps(answer if self.path == "/api/v1/nni/trial-jobs" else {}).encode()
            self.send_response(200 if self.path == "/api/v1/nni/trial-jobs" else 404)
            self.send_header("Content-Type", "application/json")
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *args):
            pass

    server = http.server.HTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        class Running:
            port = server.server_address[1]
            url_prefix = None

        assert _final_listed(Running(), [("aaaaa", "RUNNING", 0)]) == [
            ("aaaaa", "SUCCEEDED", 0), ("bbbbb", "WAITING", 1)]
    finally:
        server.shutdown()
        server.server_close()


def test_nni_start_retry_warning_is_kept_off_the_terminal(caplog):
    import logging

    from hpo_tools.experiment.run import _nni_start_retries_quiet

    nni_logger = logging.getLogger("nni.experiment")
    with caplog.at_level(logging.WARNING), _nni_start_retries_quiet():
        nni_logger.warning("Timeout, retry...")
        nni_logger.warning("something else")
    nni_logger.warning("Timeout, retry...")  # only while the experiment starts
    assert [r.getMessage() for r in caplog.records if r.name == "nni.experiment"] == [
        "something else", "Timeout, retry..."]


def test_best_so_far_uses_the_minimize_direction(exp_root):
    listed = _recorded_experiment(exp_root)
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), nni_trials=listed,
                             optimize_mode="minimize")
    assert snap.best.trial_id == "aaaaa"


def test_summary_table_has_a_row_per_trial_and_marks_the_best(exp_root):
    listed = _recorded_experiment(exp_root)
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), status="DONE", nni_trials=listed,
                             elapsed=300)
    lines = ex.format_summary(snap).splitlines()
    rows = {line.split()[1] if line.startswith("*") else line.split()[0]: line
            for line in lines[3:8]}
    assert set(rows) == {"aaaaa", "bbbbb", "ccccc", "ddddd", "eeeee"}
    assert rows["bbbbb"].startswith("*")  # the best trial is marked
    assert "stopped by assessor" in rows["ccccc"] and "USER_CANCELED" in rows["ccccc"]
    assert "best: trial bbbbb, score 0.7500, params:" in lines
    assert '  lr = 0.02' in lines


def test_summary_names_the_exported_files(exp_root):
    write_trial(exp_root, "A", {"x": 1}, [0.6], config_text="a: 1\n")
    files = ex.ExperimentFiles(exp_root)
    export = ex.export_best(files, files.trial_runs()[0])
    text = ex.format_summary(ex.build_snapshot(files), export)
    assert f"best config: {exp_root / 'best' / 'pipeline.config'}" in text


# ----------------------------------------------------------------------- experiment config


@pytest.mark.parametrize(("command", "expected"), [
    ("python3 -m hpo_tools.run --config trial.ini", "code/trial.ini"),
    ("python3 -m hpo_tools.run --config=sub/trial.ini --exp_dir x", "code/sub/trial.ini"),
    ("python3 -m hpo_tools.run --config /abs/trial.ini", "/abs/trial.ini"),
])
def test_trial_file_comes_from_config_argument_relative_to_code_dir(command, expected, tmp_path):
    found = ex.trial_file_from_command(command, tmp_path / "code")
    assert found == (tmp_path / expected if not expected.startswith("/") else Path(expected))


def test_trial_command_without_config_is_a_config_error():
    with pytest.raises(ConfigError, match=r"config.yml: trialCommand: expected .*--config FILE"):
        ex.trial_file_from_command("python3 trial.py", ".")


def test_chained_trial_command_is_refused():
    # `a && b` keeps bash as NNI's child: SIGINT never reaches the runner (API-NOTES §0.3).
    with pytest.raises(ConfigError, match="one plain command"):
        ex.trial_file_from_command("cd x && python3 -m hpo_tools.run --config t.ini", ".")


def _write_yaml(path: Path, extra: str = "") -> Path:
    path.write_text(
        "searchSpace: {x: {_type: choice, _value: [1, 2]}}\n"
        "trialCommand: python3 -m hpo_tools.run --config trial.ini\n"
        "trialConcurrency: 1\n"
        "tuner: {name: TPE, classArgs: {optimize_mode: minimize}}\n"
        "trainingService: {platform: local}\n" + extra)
    return path


def test_load_experiment_config_reads_mode_and_overrides_working_dir(tmp_path):
    config = ex.load_experiment_config(_write_yaml(tmp_path / "c.yml"), str(tmp_path / "w"))
    assert ex.optimize_mode_of(config) == "minimize"
    assert Path(config.experiment_working_directory) == tmp_path / "w"


def test_unknown_key_in_experiment_config_is_a_config_error(tmp_path):
    path = _write_yaml(tmp_path / "c.yml", "maxTrialNumbr: 3\n")
    with pytest.raises(ConfigError, match=r"c.yml: not a valid NNI experiment config"):
        ex.load_experiment_config(path)


def test_a_failed_load_does_not_break_the_next_one(tmp_path):
    with pytest.raises(ConfigError):
        ex.load_experiment_config(_write_yaml(tmp_path / "bad.yml", "maxTrialNumbr: 3\n"))
    # NNI leaves global state behind on a failed load; the next good file must still load.
    config = ex.load_experiment_config(_write_yaml(tmp_path / "good.yml"))
    assert config.trial_concurrency == 1


def test_broken_yaml_names_the_line_and_the_problem(tmp_path):
    path = tmp_path / "c.yml"
    path.write_text("searchSpace: {x: 1}\ntrialCommand: [\n")
    with pytest.raises(ConfigError) as err:
        ex.load_experiment_config(path)
    # YAML's own last line is only the location ("in 'c.yml', line 3"); the user needs what
    # is wrong as well, on one line.
    message = str(err.value)
    assert "\n" not in message
    assert "line 3, column 1: expected the node content" in message


def test_missing_experiment_config_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="experiment config not found"):
        ex.load_experiment_config(tmp_path / "none.yml")


def test_path_puts_the_interpreter_directory_first_once():
    path = ex.path_with_interpreter_first("/usr/bin:/venv/bin:/bin", "/venv/bin/python")
    # `python3` in trialCommand must resolve to the venv that has hpo-tools.
    assert path == "/venv/bin:/usr/bin:/bin"


def test_stored_optimize_mode_comes_from_nni_database(exp_root):
    (exp_root / "db").mkdir()
    with sqlite3.connect(exp_root / "db" / "nni.sqlite") as conn:
        conn.execute("CREATE TABLE ExperimentProfile (params text, id text, execDuration int)")
        profile = {"tuner": {"name": "TPE", "classArgs": {"optimize_mode": "minimize"}}}
        conn.execute("INSERT INTO ExperimentProfile VALUES (?, ?, ?)",
                     (json.dumps(profile), exp_root.name, 0))
    assert ex.stored_optimize_mode(ex.ExperimentFiles(exp_root)) == "minimize"


def test_decisions_are_read_where_the_profile_sends_the_assessor(exp_root, tmp_path):
    elsewhere = tmp_path / "assessor_dir"
    write_decisions(elsewhere, '{"trial_id": "ccccc", "step": 1, "rule": "median"}')
    (exp_root / "db").mkdir()
    with sqlite3.connect(exp_root / "db" / "nni.sqlite") as conn:
        conn.execute("CREATE TABLE ExperimentProfile (params text, id text, execDuration int)")
        profile = {"assessor": {"classArgs": {"experiment_dir": str(elsewhere)}}}
        conn.execute("INSERT INTO ExperimentProfile VALUES (?, ?, ?)",
                     (json.dumps(profile), exp_root.name, 0))
    write_trial(exp_root, "ccccc", {"lr": 0.5}, [0.51], status="cancelled")
    snap = ex.build_snapshot(ex.experiment_files(exp_root))
    # PAIAssessor's experiment_dir class argument moves its decisions file; follow it.
    assert snap.trials[0].outcome is ex.Outcome.ASSESSOR_STOPPED


def test_find_experiment_dir_suggests_a_close_id(exp_root):
    with pytest.raises(ConfigError, match=r"did you mean 'abcd1234'"):
        ex.find_experiment_dir("abcd1235", str(exp_root.parent))


def test_unknown_id_under_a_given_working_dir_does_not_ask_for_that_option(exp_root):
    with pytest.raises(ConfigError) as err:
        ex.find_experiment_dir("zzzz", str(exp_root.parent))
    # The user passed --working-dir already; telling them to pass it is no help.
    assert "pass --working-dir" not in str(err.value)
    assert str(exp_root.parent / "zzzz") in str(err.value)


def test_unknown_id_without_experiment_dir_suggests_the_option(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))  # ~/nni-experiments and NNI's manifest: empty
    with pytest.raises(ConfigError, match=r"pass --working-dir or --experiment-dir"):
        ex.find_experiment_dir("zzzz")


# ----------------------------------------------------------------------- CLI


def test_cli_best_reexports_and_prints_the_summary(exp_root, capsys):
    _recorded_experiment(exp_root)
    code = main(["experiment", "best", exp_root.name, "--working-dir", str(exp_root.parent)])
    out = capsys.readouterr().out
    assert code == 0
    assert "best: trial bbbbb, score 0.7500" in out
    assert json.loads((exp_root / "best" / "best_params.json").read_text()) == {"lr": 0.02}


def test_cli_best_experiment_dir_is_the_experiment_directory_itself(exp_root, capsys):
    _recorded_experiment(exp_root)
    # Same meaning as `kill --experiment-dir` / `retry --experiment-dir`: E, not its parent.
    code = main(["experiment", "best", exp_root.name, "--experiment-dir", str(exp_root)])
    assert code == 0
    assert "best: trial bbbbb, score 0.7500" in capsys.readouterr().out
    assert json.loads((exp_root / "best" / "best_params.json").read_text()) == {"lr": 0.02}


def test_cli_best_experiment_dir_given_the_working_dir_names_both_right_options(exp_root, capsys):
    _recorded_experiment(exp_root)
    work = exp_root.parent
    code = main(["experiment", "best", exp_root.name, "--experiment-dir", str(work)])
    err = capsys.readouterr().err
    # The old meaning of the option: refuse it (nothing exported) and say what to pass instead.
    assert code == 2
    assert f"pass --working-dir {work} or --experiment-dir {exp_root}" in err
    assert not (exp_root / "best").exists()


def test_cli_best_experiment_dir_of_another_experiment_is_refused(exp_root, capsys):
    _recorded_experiment(exp_root)
    code = main(["experiment", "best", "otherid1", "--experiment-dir", str(exp_root)])
    assert code == 2
    assert "expected the directory of experiment 'otherid1'" in capsys.readouterr().err


def test_cli_best_refuses_working_dir_and_experiment_dir_together(exp_root, capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["experiment", "best", exp_root.name, "--working-dir", str(exp_root.parent),
              "--experiment-dir", str(exp_root)])
    assert exit_.value.code == 2
    assert "not allowed with argument" in capsys.readouterr().err


def test_cli_best_exits_1_when_no_trial_succeeded(exp_root, capsys):
    write_trial(exp_root, "F", {"lr": 0.8}, [0.5], status="failed")
    code = main(["experiment", "best", exp_root.name, "--working-dir", str(exp_root.parent)])
    assert code == 1
    assert "best: none" in capsys.readouterr().out


def test_cli_run_refuses_a_bad_experiment_config_with_exit_2(tmp_path, capsys):
    path = _write_yaml(tmp_path / "c.yml", "maxTrialNumbr: 3\n")
    assert main(["experiment", "run", str(path)]) == 2
    assert "error: " in capsys.readouterr().err


# ----------------------------------------------------------------------- dead dispatcher

DISPATCHER_LOG = """\
[2026-11-22 18:49:43] INFO (nni.runtime.msg_dispatcher_base/MainThread) Dispatcher started
[2026-11-22 18:50:30] ERROR (nni.runtime.msg_dispatcher_base/Thread-1) 1
Traceback (most recent call last):
  File "nni/algorithms/hpo/tpe_tuner.py", line 197, in receive_trial_result
    params = self._running_params.pop(parameter_id)
             ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
KeyError: 1
[2026-11-22 18:50:31] INFO (nni.runtime.msg_dispatcher_base/MainThread) Dispatcher exiting...
"""


def test_dispatcher_failure_names_the_exception_that_killed_it(tmp_path):
    log = tmp_path / "dispatcher.log"
    log.write_text(DISPATCHER_LOG)
    # NNI keeps saying RUNNING after this; the log is the only sign the experiment is dead.
    assert ex.dispatcher_failure(log) == "KeyError: 1"


def test_running_dispatcher_is_no_failure(tmp_path):
    log = tmp_path / "dispatcher.log"
    log.write_text(DISPATCHER_LOG.split("[2026-11-22 18:50:30]")[0])
    assert ex.dispatcher_failure(log) is None
    assert ex.dispatcher_failure(tmp_path / "missing.log") is None


# What NNI 3.0 wrote (paths shortened) when the tuner could not be created: Anneal without
# hyperopt installed. No "Dispatcher exiting": the dispatcher dies in `python -m nni` itself.
ANNEAL_LOG = """\
[2026-12-04 05:32:03] ERROR (nni.main/MainThread) No module named 'hyperopt'
Traceback (most recent call last):
  File "nni/__main__.py", line 85, in <module>
    main()
  File "nni/__main__.py", line 42, in main
    tuner = _create_algo(exp_params['tuner'], 'tuner')
            ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "nni/__main__.py", line 75, in _create_algo
    algo = create_builtin_class_instance(algo_config['name'], algo_config.get('classArgs'))
  File "<frozen importlib._bootstrap>", line 1204, in _gcd_import
  File "nni/algorithms/hpo/hyperopt_tuner.py", line 11, in <module>
    import hyperopt as hp
ModuleNotFoundError: No module named 'hyperopt'
"""

# A customized assessor whose module raises at import (the tuner was created first).
ASSESSOR_START_LOG = """\
[2026-12-04 05:37:56] INFO (nni.tuner.random/MainThread) Using random seed 496872216
[2026-12-04 05:37:56] ERROR (nni.main/MainThread) assessor module is broken
Traceback (most recent call last):
  File "nni/__main__.py", line 85, in <module>
    main()
  File "nni/__main__.py", line 52, in main
    assessor = _create_algo(exp_params['assessor'], 'assessor')
               ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "pkg/bad_assessor.py", line 1, in <module>
    raise RuntimeError("assessor module is broken")
RuntimeError: assessor module is broken
"""

# Hyperband, NNI 3.0 (microsoft/nni#5263): both command threads die on the first metric; the
# second traceback comes after "Dispatcher exiting".
HYPERBAND_TRACEBACK = """\
Traceback (most recent call last):
  File "nni/runtime/msg_dispatcher_base.py", line 154, in process_command
    command_handlers[command](data)
  File "nni/algorithms/hpo/hyperband_advisor.py", line 544, in handle_report_metric_data
    if self.is_created_in_previous_exp(data['parameter_id']):
       ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
  File "nni/recoverable.py", line 49, in is_created_in_previous_exp
    return param_id <= self.recovered_max_param_id
           ^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^^
TypeError: '<=' not supported between instances of 'str' and 'int'
"""
HYPERBAND_LOG = (
    "[2026-12-04 05:32:36] INFO (nni.runtime.msg_dispatcher_base/MainThread) Dispatcher started\n"
    "[2026-12-04 05:32:39] ERROR (nni.runtime.msg_dispatcher_base/Thread-2 "
    "(command_queue_worker)) '<=' not supported between instances of 'str' and 'int'\n"
    + HYPERBAND_TRACEBACK
    + "[2026-12-04 05:32:39] INFO (nni.runtime.msg_dispatcher_base/MainThread) "
    "Dispatcher exiting...\n"
    "[2026-12-04 05:32:39] ERROR (nni.runtime.msg_dispatcher_base/Thread-1 "
    "(command_queue_worker)) '<=' not supported between instances of 'str' and 'int'\n"
    + HYPERBAND_TRACEBACK
    + "[2026-12-04 05:32:39] INFO (nni.runtime.msg_dispatcher_base/MainThread) "
    "Dispatcher terminiated\n")


def _log_dir(tmp_path: Path, dispatcher_log: str | None = None, stderr_log: str | None = None):
    log_dir = tmp_path / "log"
    log_dir.mkdir()
    if dispatcher_log is not None:
        (log_dir / "dispatcher.log").write_text(dispatcher_log)
    if stderr_log is not None:
        (log_dir / "nnictl_stderr.log").write_text(stderr_log)
    return log_dir


def test_a_tuner_that_cannot_be_created_is_a_dead_dispatcher_at_once(tmp_path):
    log_dir = _log_dir(tmp_path, ANNEAL_LOG)
    # NNI says ERROR ("Tuner did not connect in 10 seconds") only 10 s later; the log says it now.
    assert ex.dispatcher_failure(log_dir / "dispatcher.log") == (
        "ModuleNotFoundError: No module named 'hyperopt'")


def test_the_error_of_a_tuner_that_cannot_start_names_the_tuner_its_error_and_the_log(tmp_path):
    log_dir = _log_dir(tmp_path, ANNEAL_LOG)
    line = ex.experiment_error(
        log_dir, ["tuner_command_channel: Tuner did not connect in 10 seconds. Please check "
                  "tuner (dispatcher) log."], tuner="Anneal")
    # The tuner's own error, not NNI's "did not connect" that only points at a log.
    assert line == ("the tuner (Anneal) failed to start: ModuleNotFoundError: No module named "
                    "'hyperopt' (install the extra: pip install 'hpo-tools[tuners]'; "
                    f"see {log_dir / 'dispatcher.log'})")


def test_an_assessor_that_cannot_be_created_is_named_as_the_assessor(tmp_path):
    failure = ex.find_dispatcher_failure(_log_dir(tmp_path, ASSESSOR_START_LOG))
    # The traceback goes through _create_algo(exp_params['assessor']): the assessor failed.
    assert (failure.role, failure.at_start) == ("assessor", True)
    assert failure.describe("Random", "bad_assessor.BadAssessor").startswith(
        "the assessor (bad_assessor.BadAssessor) failed to start: RuntimeError: assessor module "
        "is broken (see ")


def test_hyperband_crash_is_the_tuners_failure_with_the_known_nni_bug(tmp_path):
    log_dir = _log_dir(tmp_path, HYPERBAND_LOG)
    assert ex.dispatcher_failure(log_dir / "dispatcher.log") == (
        "TypeError: '<=' not supported between instances of 'str' and 'int'")
    line = ex.experiment_error(log_dir, [], tuner="Hyperband")
    # No assessor configured: whatever killed the dispatcher was the tuner (an advisor here).
    assert line.startswith("the tuner (Hyperband) failed: TypeError: '<=' not supported ")
    # The user is told it is NNI's bug, not theirs, and where to read more.
    assert "microsoft/nni#5263" in line
    assert line.endswith(f"see {log_dir / 'dispatcher.log'})")


def test_an_assessor_raising_while_running_is_named_as_the_assessor(tmp_path):
    log = (
        "[2026-12-04 06:00:00] INFO (nni.runtime.msg_dispatcher_base/MainThread) "
        "Dispatcher started\n"
        "[2026-12-04 06:00:09] ERROR (nni.runtime.msg_dispatcher/Thread-2) Assessor error\n"
        "[2026-12-04 06:00:09] ERROR (nni.runtime.msg_dispatcher/Thread-2) boom\n"
        "Traceback (most recent call last):\n"
        '  File "nni/runtime/msg_dispatcher.py", line 226, in _handle_intermediate_metric_data\n'
        "    result = self.assessor.assess_trial(trial_job_id, ordered_history)\n"
        '  File "my_assessor.py", line 9, in assess_trial\n'
        "    raise ValueError('boom')\n"
        "ValueError: boom\n"
        "[2026-12-04 06:00:09] INFO (nni.runtime.msg_dispatcher_base/MainThread) "
        "Dispatcher exiting...\n")
    failure = ex.find_dispatcher_failure(_log_dir(tmp_path, log))
    # "Assessor error" has no traceback: the record after it holds the exception.
    assert (failure.error, failure.role, failure.at_start) == (
        "ValueError: boom", "assessor", False)
    assert failure.describe("TPE", "Mine").startswith("the assessor (Mine) failed: ValueError")


def test_an_error_without_traceback_from_nnis_entry_point_is_no_failure(tmp_path):
    log = ("[2026-12-04 06:00:00] ERROR (nni.main/MainThread) Tuner Hyperband has built-in "
           "early stopping logic. Assessor is ignored.\n"
           "[2026-12-04 06:00:00] INFO (nni.runtime.msg_dispatcher_base/MainThread) "
           "Dispatcher started\n")
    log_dir = _log_dir(tmp_path, log)
    # NNI logs this at ERROR level and goes on: the dispatcher is alive.
    assert ex.dispatcher_failure(log_dir / "dispatcher.log") is None
    assert ex.find_dispatcher_failure(log_dir) is None


def test_a_dispatcher_that_ended_normally_has_no_failure_to_report(tmp_path):
    log = ("[2026-12-04 06:00:00] INFO (nni.runtime.msg_dispatcher_base/MainThread) "
           "Dispatcher started\n"
           "[2026-12-04 06:00:30] INFO (nni.runtime.msg_dispatcher_base/MainThread) "
           "Dispatcher exiting...\n")
    log_dir = _log_dir(tmp_path, log)
    assert ex.find_dispatcher_failure(log_dir) is None
    # While NNI still says RUNNING, an exit is a death all the same.
    assert ex.dispatcher_failure(log_dir / "dispatcher.log") == "the dispatcher exited"


def test_a_traceback_only_on_the_dispatchers_stderr_is_read_from_there(tmp_path):
    stderr = ("-" * 80 + "\nExperiment abc start: 2026-12-04\n" + "-" * 80 + "\n"
              "Traceback (most recent call last):\n"
              '  File "<frozen runpy>", line 198, in _run_module_as_main\n'
              "ImportError: cannot import name 'x' from 'nni'\n"
              "Error: tuner_command_channel: Tuner did not connect in 10 seconds.\n"
              "    at Timeout._onTimeout (tuner_command_channel.js:47:41)\n")
    log_dir = _log_dir(tmp_path, "", stderr)
    assert ex.experiment_error(log_dir, ["Tuner did not connect"], tuner="TPE") == (
        "the tuner (TPE) failed: ImportError: cannot import name 'x' from 'nni' "
        f"(see {log_dir / 'nnictl_stderr.log'})")


def test_an_error_nni_reports_itself_is_named_when_the_dispatcher_did_not_fail(tmp_path):
    log_dir = _log_dir(tmp_path)
    line = ex.experiment_error(log_dir, ["Training service error:\n  at x.js:1"], tuner="TPE")
    assert line == f"NNI reported: Training service error: (see {log_dir / 'nnimanager.log'})"
    # Even without any reason the line says where to look.
    assert str(log_dir) in ex.experiment_error(log_dir, [], tuner="TPE")


# ----------------------------------------------------------------------- failed trials


def test_a_failed_trials_error_is_the_runners_message(exp_root):
    trial_dir = write_trial(exp_root, "fffff", {"lr": 1}, [], status="failed")
    result = json.loads((trial_dir / "result.json").read_text())
    result["message"] = "cmd1 failed: exit code 1\nsecond line"
    (trial_dir / "result.json").write_text(json.dumps(result))
    (trial_dir / "trial.stderr").write_text("error: something else\n")
    # The runner's own account wins, first line only.
    assert ex.trial_error(ex.read_trial_run(trial_dir)) == "cmd1 failed: exit code 1"


def test_without_a_message_the_first_error_line_of_stderr_is_the_trials_error(exp_root):
    trial_dir = write_trial(exp_root, "fffff", {"lr": 1}, [], status=None)
    (trial_dir / "trial.stderr").write_text(
        "INFO hpo_tools.trial.runner: trial fffff\n"
        "Traceback (most recent call last):\n"
        '  File "x.py", line 1, in <module>\n'
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)\n"
        "error: a later error\n")
    (trial_dir / "trial.log").write_text("error: from the log\n")
    assert ex.trial_error(ex.read_trial_run(trial_dir)) == (
        "json.decoder.JSONDecodeError: Expecting value: line 1 column 1 (char 0)")


def test_without_stderr_errors_the_trial_log_is_read(exp_root):
    trial_dir = write_trial(exp_root, "fffff", {"lr": 1}, [], status=None)
    (trial_dir / "trial.stderr").write_text("ERROR hpo_tools.trial.runner: not this\n")
    (trial_dir / "trial.log").write_text(
        "[2026-12-04 05:34:45] ERROR (hpo_tools.trial.runner/MainThread) cmd1 failed\n"
        "error: train_config.nope: no field 'nope' in train_config\n")
    assert ex.trial_error(ex.read_trial_run(trial_dir)) == (
        "error: train_config.nope: no field 'nope' in train_config")


def test_a_trial_without_any_error_line_has_none(exp_root):
    trial_dir = write_trial(exp_root, "fffff", {"lr": 1}, [], status=None)
    (trial_dir / "trial.log").write_text("RuntimeWarning: not an error\nKilled\n")
    assert ex.trial_error(ex.read_trial_run(trial_dir)) is None
    # A trial known only from NNI has no directory: nothing is read (not the current dir).
    assert ex.trial_error(ex.TrialRun("ggggg", Path())) is None


def test_summary_gives_each_failed_trial_its_first_error_line(exp_root):
    listed = _recorded_experiment(exp_root)
    trial_dir = exp_root / "environments" / "local-env" / "trials" / "ddddd"
    result = json.loads((trial_dir / "result.json").read_text())
    result["message"] = "cmd1 failed: exit code 1"
    (trial_dir / "result.json").write_text(json.dumps(result))
    write_trial(exp_root, "hhhhh", {"lr": 2}, [], status=None)
    listed.append(("hhhhh", "FAILED", 5))
    snap = ex.build_snapshot(ex.ExperimentFiles(exp_root), status="DONE", nni_trials=listed)
    lines = ex.format_summary(snap).splitlines()
    failed = [line for line in lines if line.startswith("trial ")]
    # One line per failed trial, none for the succeeded, stopped or running ones.
    assert failed == [
        "trial ddddd failed: cmd1 failed: exit code 1",
        f"trial hhhhh failed: no error line in its result.json, trial.stderr or trial.log "
        f"({exp_root / 'environments' / 'local-env' / 'trials' / 'hhhhh'})",
    ]
    # Right after the totals, before the best trial.
    totals = next(i for i, line in enumerate(lines) if line.startswith("totals: "))
    assert lines[totals + 1] == failed[0]


# ----------------------------------------------------------------------- exit of `run`


def _cli_run_with(monkeypatch, exp_root, **result_fields):
    """`hpo-tools experiment run` whose experiment ended as ``result_fields`` say (no NNI)."""
    files = ex.ExperimentFiles(exp_root)

    def fake_run(config, **kwargs):
        status = result_fields.pop("status")
        snapshot = ex.build_snapshot(files, status=status, nni_trials=None)
        return ex.RunResult(experiment_id=exp_root.name, files=files, status=status,
                            snapshot=snapshot, **result_fields)

    monkeypatch.setattr(ex, "run_experiment", fake_run)
    return main(["experiment", "run", "unused.yml"])


def test_cli_run_that_ended_in_error_exits_1_even_with_a_succeeded_trial(
        exp_root, monkeypatch, capsys):
    write_trial(exp_root, "aaaaa", {"lr": 0.01}, [0.6])
    reason = "the tuner (Hyperband) failed: TypeError: x (see E/log/dispatcher.log)"
    code = _cli_run_with(monkeypatch, exp_root, status="ERROR", failure=reason,
                         errors=["NNI's tuner/assessor process exited (TypeError: x)"])
    out, err = capsys.readouterr()
    # A trial succeeded, but the experiment did not run as configured: not a success.
    assert code == 1
    assert f"experiment {exp_root.name}: ERROR after " in out
    # The summary first, then one error line saying why, last on stderr.
    assert err.splitlines() == [f"error: {reason}"]


def test_cli_run_that_ended_in_error_puts_its_reason_after_an_export_error(
        exp_root, monkeypatch, capsys):
    write_trial(exp_root, "aaaaa", {"lr": 0.01}, [0.6])
    code = _cli_run_with(monkeypatch, exp_root, status="ERROR", failure="the tuner failed",
                         export_error="cannot read x")
    err = capsys.readouterr().err.splitlines()
    assert code == 1
    assert err[0].startswith("error: could not export the best trial: cannot read x")
    assert err[-1] == "error: the tuner failed"


def test_cli_run_that_is_done_with_a_success_still_exits_0(exp_root, monkeypatch, capsys):
    write_trial(exp_root, "aaaaa", {"lr": 0.01}, [0.6])
    assert _cli_run_with(monkeypatch, exp_root, status="DONE") == 0
    assert capsys.readouterr().err == ""


# ----------------------------------------------------------------------- the shipped examples

EXAMPLES = Path(__file__).resolve().parents[1] / "examples" / "search"
MC_ENV = {
    "OSS_ENDPOINT": "oss-cn-hangzhou.aliyuncs.com", "OSS_ACCESS_KEY_ID": "AKIDfake",
    "OSS_ACCESS_KEY_SECRET": "secretfake", "OSS_BUCKET": "my-bucket",
    "ODPS_PROJECT": "my_project", "ODPS_ENDPOINT": "http://service.example/api",
    "PAI_ROLE_ARN": "acs:ram::1:role/r",
}


@pytest.mark.parametrize("example", ["local_easyrec", "maxcompute_easyrec"])
def test_example_experiment_configs_load_and_maximize(example):
    config = ex.load_experiment_config(EXAMPLES / example / "begin" / "config.yml")
    canonical = config.canonical_copy()
    # TPE minimizes unless told; AUC must be maximized by tuner and assessor alike.
    assert canonical.tuner.class_args["optimize_mode"] == "maximize"
    assert canonical.assessor.class_args["optimize_mode"] == "maximize"
    assert canonical.assessor.class_name == "pai_assessor.PAIAssessor"
    assert canonical.trial_concurrency == 2 and canonical.max_trial_number >= 8
    trial_file = ex.trial_file_from_command(canonical.trial_command,
                                            canonical.trial_code_directory)
    assert trial_file.is_file()


def test_local_example_checks_at_every_corner(monkeypatch):
    from hpo_tools.check import check_trial_file

    begin = EXAMPLES / "local_easyrec" / "begin"
    monkeypatch.chdir(begin)  # where the trials run
    assert check_trial_file("trial.ini", "search_space.json") == []


def test_maxcompute_example_checks_against_its_base_config_on_oss(monkeypatch):
    from hpo_tools import storage
    from hpo_tools.check import check_trial_file
    from hpo_tools.testing.oss import FakeBucket

    base = (Path(__file__).resolve().parents[1] / "samples" / "pipeline.config").read_bytes()
    bucket = FakeBucket("my-bucket", {"hpo_tools_example/dbmtl/pipeline.config": base})
    monkeypatch.setattr(storage, "_default",
                        lambda: storage.Storage(bucket_factory=lambda name: bucket))
    for name, value in MC_ENV.items():
        monkeypatch.setenv(name, value)
    monkeypatch.chdir(EXAMPLES / "maxcompute_easyrec" / "begin")
    # With the keys in the environment, every ${VAR} resolves and every searched key fits
    # samples/pipeline.config as uploaded to OSS (README step 3).
    assert check_trial_file("config_begin.ini", "search_space.json") == []


def _fake_oss(monkeypatch, objects: dict[str, bytes]):
    from hpo_tools import storage
    from hpo_tools.testing.oss import FakeBucket

    bucket = FakeBucket("my-bucket", objects)
    monkeypatch.setattr(storage, "_default",
                        lambda: storage.Storage(bucket_factory=lambda name: bucket))
    for name, value in MC_ENV.items():
        monkeypatch.setenv(name, value)
    return bucket


def test_classic_best_gets_the_config_easyrec_trained_rebuilt(exp_root, monkeypatch):
    from hpo_tools.pbtxt import apply_edits

    base = (Path(__file__).resolve().parents[1] / "samples" / "pipeline.config").read_text()
    _fake_oss(monkeypatch, {"hpo_tools_example/dbmtl/pipeline.config": base.encode()})
    params = {"feature_configs[:].embedding_dim": 4,
              "feature_configs[input_names[0]=user_id].embedding_dim": 32}
    write_trial(exp_root, "T1", params, [0.7])  # classic: the runner wrote no config
    files = ex.ExperimentFiles(exp_root)
    trial_file = EXAMPLES / "maxcompute_easyrec" / "begin" / "config_begin.ini"
    export = ex.export_best(files, files.trial_runs()[0], trial_file=trial_file)
    # The same edits the runner sent as -Dedit_config_json, applied to -Dconfig from OSS.
    assert export.config_path.read_text() == apply_edits(base, params)
    assert json.loads(export.trial_path.read_text())["configs"] == [
        "oss://my-bucket/hpo_tools_example/dbmtl/pipeline.config"]


def test_classic_best_leaves_the_users_absent_field_to_easyrec_as_the_runner_did(
        exp_root, monkeypatch, tmp_path, caplog):
    """The file's own -Dedit_config_json may name a field the base config lacks (EasyRec's
    edit_config creates it on the platform): the rebuilt config is exported without it, with
    the runner's notice, instead of no config at all."""
    from hpo_tools.pbtxt import apply_edits

    base = (Path(__file__).resolve().parents[1] / "samples" / "pipeline.config").read_text()
    assert "fine_tune_checkpoint" not in base
    _fake_oss(monkeypatch, {"hpo_tools_example/dbmtl/pipeline.config": base.encode()})
    text = (EXAMPLES / "maxcompute_easyrec" / "begin" / "config_begin.ini").read_text()
    trial_file = tmp_path / "config_begin.ini"
    trial_file.write_text(text.replace(
        "[easyrec_cmd_config]\n", "[easyrec_cmd_config]\n-Dedit_config_json="
        '{"train_config.fine_tune_checkpoint": "oss://my-bucket/m/model.ckpt-100"}\n', 1))
    params = {"feature_configs[:].embedding_dim": 4}
    write_trial(exp_root, "T1", params, [0.7])
    files = ex.ExperimentFiles(exp_root)
    with caplog.at_level("WARNING"):
        export = ex.export_best(files, files.trial_runs()[0], trial_file=trial_file)
    assert export.config_path.read_text() == apply_edits(base, params)
    assert "train_config.fine_tune_checkpoint is not in this config" in caplog.text


def test_classic_best_without_a_readable_base_config_still_exports_params(exp_root, monkeypatch):
    _fake_oss(monkeypatch, {})  # the base config is not on OSS
    write_trial(exp_root, "T1", {"model_config.dbmtl.l2_regularization": 1e-5}, [0.7])
    files = ex.ExperimentFiles(exp_root)
    trial_file = EXAMPLES / "maxcompute_easyrec" / "begin" / "config_begin.ini"
    export = ex.export_best(files, files.trial_runs()[0], trial_file=trial_file)
    assert export.config_path is None  # warned, not failed: the parameters are what matter
    assert json.loads(export.params_path.read_text()) == {
        "model_config.dbmtl.l2_regularization": 1e-5}


def _demo_module():
    import importlib.util

    spec = importlib.util.spec_from_file_location("demo", EXAMPLES / "local_easyrec" / "demo.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_demo_refuses_to_wipe_a_work_dir_it_did_not_write(tmp_path):
    (tmp_path / "notes.txt").write_text("mine")
    problem = _demo_module()._fresh_work_dir(tmp_path)
    # `--work-dir ~` must never delete a home directory: only a previous demo's output goes.
    assert "notes.txt" in problem
    assert (tmp_path / "notes.txt").read_text() == "mine"


def test_demo_clears_its_own_previous_output(tmp_path):
    work = tmp_path / "demo-exp"
    (work / "nni" / "old").mkdir(parents=True)
    (work / "baseline").mkdir()
    assert _demo_module()._fresh_work_dir(work) is None
    assert work.is_dir() and list(work.iterdir()) == []


@pytest.mark.parametrize("port", ["99999", "-1"])
def test_cli_run_with_a_port_out_of_range_is_a_user_error(tmp_path, capsys, port):
    code = main(["experiment", "run", str(_write_yaml(tmp_path / "c.yml")), "--no-check",
                 "--port", port, "--working-dir", str(tmp_path / "w")])
    # Refused before NNI starts (NNI itself dies with an OverflowError traceback).
    assert code == 2
    assert f"error: --port: expected a TCP port 1-65535, got {port}" in capsys.readouterr().err
    assert not (tmp_path / "w").exists()


def test_cli_run_on_a_busy_port_is_a_user_error(tmp_path, capsys):
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        code = main(["experiment", "run", str(_write_yaml(tmp_path / "c.yml")), "--no-check",
                     "--port", str(port), "--working-dir", str(tmp_path / "w")])
    assert code == 2
    assert f"error: --port {port}: " in capsys.readouterr().err


def _experiment_parsers():
    import argparse

    from hpo_tools.commands import experiment as command

    parser = argparse.ArgumentParser()
    command.add_arguments(parser)
    actions = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return command.DESCRIPTION, actions.choices


@pytest.mark.parametrize("action", ["run", "best"])
def test_help_usage_line_names_every_option_of_the_action(action):
    description, parsers = _experiment_parsers()
    # The usage block of `hpo-tools experiment --help`: from the action's line to its text.
    usage = re.split(r"\n {6}(?! )", description.split(f"hpo-tools experiment {action} ", 1)[1])[0]
    options = [a.option_strings[0] for a in parsers[action]._actions
               if a.option_strings and a.option_strings[0] != "-h"]
    # Hand-written help drifts from the parser; every option must be in the usage line.
    assert [o for o in options if o not in usage] == []


def test_trial_file_oss_credentials_are_the_processes_only_while_exporting(tmp_path, monkeypatch):
    """The experiment side reads the best trial's oss:// files with the trial file's
    [oss_config] keys (as run and check do) when the environment has none; nothing is left."""
    from hpo_tools.experiment.best import trial_file_oss_credentials
    from hpo_tools.experiment.records import TrialRun

    for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("MY_SECRET", "s3cr3t")
    trial_file = tmp_path / "trial.ini"
    trial_file.write_text(
        "[oss_config]\nendpoint=http://oss.example.com\naccessKeyID=kid\n"
        "accessKeySecret=${MY_SECRET}\n\n[platform_config]\nname=Local\ncmd1=true\n\n"
        "[metric_config]\nmetric_type=stdout\nmetric_dict={\"a=(.*)\": 1}\n")
    run = TrialRun("T1", tmp_path / "T1", params={})
    with trial_file_oss_credentials(trial_file, run, "E1"):
        assert os.environ["OSS_ACCESS_KEY_ID"] == "kid"
        assert os.environ["OSS_ACCESS_KEY_SECRET"] == "s3cr3t"
    assert "OSS_ACCESS_KEY_ID" not in os.environ and "OSS_ACCESS_KEY_SECRET" not in os.environ
    # The environment's own keys win, and are left as they were.
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", "env-kid")
    with trial_file_oss_credentials(trial_file, run, "E1"):
        assert os.environ["OSS_ACCESS_KEY_ID"] == "env-kid"
        assert "OSS_ACCESS_KEY_SECRET" not in os.environ
    assert os.environ["OSS_ACCESS_KEY_ID"] == "env-kid"


def test_pre_check_uses_the_schema_options_of_the_trial_command(tmp_path, monkeypatch):
    """`experiment run` checks the trial file with the schema its trials will use."""
    from hpo_tools.experiment.run import default_checker

    repo = Path(__file__).resolve().parents[1]
    monkeypatch.chdir(EXAMPLES / "local_easyrec" / "begin")
    space = tmp_path / "space.json"
    # Not in the example's pipeline.config: only the schema knows the field may be set.
    space.write_text(json.dumps(
        {"train_config.keep_checkpoint_max": {"_type": "choice", "_value": [3, 5]}}))
    plain = "python3 -m hpo_tools.run --config trial.ini --no-easyrec-schema"
    with pytest.raises(ConfigError, match="keep_checkpoint_max"):
        default_checker(Path("trial.ini"), space, plain)
    with_schema = (f"python3 -m hpo_tools.run --config trial.ini --proto-path "
                   f"{repo / 'tests' / 'protos'} --message easyrec_like.EasyRecConfig")
    default_checker(Path("trial.ini"), space, with_schema)


# NNI 3.0's Metis with SciPy >= 1.11: the command thread dies while generating a trial; the
# main thread logs "Dispatcher exiting" only on NNI's next command, which never comes.
METIS_LOG = (
    "[2026-12-04 08:50:40] INFO (nni.runtime.msg_dispatcher_base/MainThread) Dispatcher started\n"
    "[2026-12-04 08:51:14] ERROR (nni.runtime.msg_dispatcher_base/Thread-1 "
    "(command_queue_worker)) 'x0' must only have one dimension.\n"
    "Traceback (most recent call last):\n"
    '  File "nni/runtime/msg_dispatcher_base.py", line 108, in command_queue_worker\n'
    "    self.process_command(command, data)\n"
    '  File "nni/algorithms/hpo/metis_tuner/metis_tuner.py", line 259, in generate_parameters\n'
    "    results = self._selection(\n"
    "ValueError: 'x0' must only have one dimension.\n")


def test_a_dead_command_thread_is_a_dead_dispatcher_before_it_says_exiting(tmp_path):
    log_dir = _log_dir(tmp_path, METIS_LOG)
    # No "Dispatcher exiting" yet, but no command will ever be processed again.
    assert ex.dispatcher_failure(log_dir / "dispatcher.log") == (
        "ValueError: 'x0' must only have one dimension.")
    line = ex.experiment_error(log_dir, [], tuner="Metis")
    assert "use hpo_tools.tuners.SafeMetis" in line


def test_an_error_outside_the_command_threads_is_not_a_dead_dispatcher(tmp_path):
    log = METIS_LOG.replace("in command_queue_worker", "in send")
    assert ex.dispatcher_failure(_log_dir(tmp_path, log) / "dispatcher.log") is None


def test_best_of_a_budgeted_trial_is_exported_for_a_full_training(exp_root, tmp_path):
    """Hyperband/BOHB's best trial trained `TRIAL_BUDGET * budget_scale` steps: the exported
    config trains the base config's own number of steps, and best_params.json (what
    finetune-daily takes) has no TRIAL_BUDGET to shorten the next run."""
    from hpo_tools.pbtxt import apply_edits

    (tmp_path / "pipeline.config").write_text(BASE_CONFIG)  # num_steps: 100
    trial_file = tmp_path / "trial.ini"
    trial_file.write_text(
        "[platform_config]\nname=Local\ncmd1=echo hi\n"
        "[metric_config]\nmetric_source=${NNI_OUTPUT_DIR}/m\nmetric_dict={\"auc\": 1}\n"
        "[params_config]\n"
        "params_src_dst_filepath1=pipeline.config,${NNI_OUTPUT_DIR}/configs/pipeline.config\n"
        "budget_path=train_config.num_steps\nbudget_scale=10\n")
    dim = "model_config.embedding_dim"
    params = {dim: 16, "TRIAL_BUDGET": 3}
    trained = apply_edits(BASE_CONFIG, {dim: 16, "train_config.num_steps": 30})
    write_trial(exp_root, "T1", params, [0.7], config_text=trained)
    files = ex.ExperimentFiles(exp_root)
    export = ex.export_best(files, files.trial_runs()[0], trial_file=trial_file)
    assert export.config_path.read_text() == apply_edits(BASE_CONFIG, {dim: 16})
    assert json.loads(export.params_path.read_text()) == {dim: 16}
    record = json.loads(export.trial_path.read_text())
    assert record["trial_budget"] == 3
    assert list(record["budget_restored"].values()) == [
        {"path": "train_config.num_steps", "value": 100}]
    # Without the trial file there is nothing to restore from: the trained copy, as before.
    export = ex.export_best(files, files.trial_runs()[0])
    assert "num_steps: 30" in export.config_path.read_text()
