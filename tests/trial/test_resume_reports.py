"""Resume re-reports nothing NNI already has (issue 14 item 4): ``<trial dir>/reported.json``.

The real runner on the Local platform runs tests/trial/fake_train.py (real processes, real event
files). A trial ends after some steps; the same trial (same experiment and trial id) is run
again with resume=1, its job writing the remaining steps: every step reaches the reporter once
across both runs, result.json holds them all, the final result is reported once. The reporter
records what it is given instead of talking to NNI.
"""

from __future__ import annotations

import io
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import pytest

from hpo_tools.trial.outcome import TrialOutcome
from hpo_tools.trial.report_state import REPORTED_FILE, ReportState
from hpo_tools.trial.reporter import Reporter, ReporterChannelLost
from hpo_tools.trial_files import run_trial_file

from .conftest import LR_PATH, TRAIN
from .conftest import SUMMARY_METRIC as METRIC
from .fake_train import auc_for

LR = 0.02


class RecordingReporter(Reporter):
    """Records each report in ``log`` (shared by the runs of one trial) instead of sending it.

    Args:
        params: the trial's parameters.
        log: ``("intermediate" | "final", metrics)`` per report that went out.
        lose_channel_at: the intermediate report (1-based, of this run) that raises
            :class:`ReporterChannelLost` instead of going out, as when NNI's channel is lost.
    """

    def __init__(self, params: Mapping[str, Any], log: list[tuple[str, dict[str, float]]],
                 *, lose_channel_at: int | None = None, trial_id: str = "t1") -> None:
        self._params = dict(params)
        self._trial_id = trial_id
        self.log = log
        self.lose_channel_at = lose_channel_at
        self.calls = 0

    @property
    def experiment_id(self) -> str:
        return "exp1"

    @property
    def trial_id(self) -> str:
        return self._trial_id

    def get_parameters(self) -> dict[str, Any]:
        return dict(self._params)

    def report_intermediate(self, metrics: Mapping[str, float]) -> None:
        self.calls += 1
        if self.calls == self.lose_channel_at:
            raise ReporterChannelLost("NNI channel lost: no answer (test)")
        self.log.append(("intermediate", dict(metrics)))

    def report_final(self, metrics: Mapping[str, float]) -> None:
        self.log.append(("final", dict(metrics)))


def _trial_text(command: str, *, resume: bool = True, extra: str = "") -> str:
    return (f"[platform_config]\nname=Local\nresume={int(resume)}\ncmd1={command}\n"
            + METRIC + extra)


def _train(*options: str) -> str:
    return f"{TRAIN} --lr {LR} --model_dir ${{NNI_OUTPUT_DIR}}/model --sleep 0.02 " + " ".join(
        options)


def _run(trial: Path, log: list, exp_dir: Path, params: Mapping[str, Any] | None = None,
         **kwargs: Any) -> TrialOutcome:
    reporter = RecordingReporter(params or {}, log, **kwargs)
    return run_trial_file(trial, reporter, exp_dir=exp_dir, interval=0.05, stderr=io.StringIO())


def _steps(log: list, kind: str = "intermediate") -> list[int]:
    """The training step (1, 2, ...) of each report of ``kind``, from its score."""
    by_score = {auc_for(LR, step): step for step in range(1, 20)}
    return [by_score[round(metrics["default"], 6)] for what, metrics in log if what == kind]


def _result(exp_dir: Path) -> dict[str, Any]:
    return json.loads((exp_dir / "exp1" / "trials" / "t1" / "result.json").read_text())


def test_a_resumed_trial_reports_each_step_and_the_final_once(tmp_path, write_trial):
    exp = tmp_path / "exp"
    log: list = []
    write_trial(_trial_text(_train("--steps 5 --fail-at 4")))  # fails after writing 3 steps
    first = _run(tmp_path / "trial.ini", log, exp)
    assert first.status == "failed"
    assert _steps(log) == [1, 2, 3]

    # The job resumes from its checkpoint: it writes steps 4 and 5 only; the follower reads
    # the first run's event file again from its start.
    trial = write_trial(_trial_text(_train("--steps 5 --first-step 4")))
    second = _run(trial, log, exp)
    assert second.status == "succeeded", second.message
    # Each step reached NNI exactly once across both runs, in order.
    assert _steps(log) == [1, 2, 3, 4, 5]
    # The final result went out once, with the last step's score.
    assert _steps(log, "final") == [5]
    # result.json still holds every step, those read again included.
    assert [e["step"] for e in _result(exp)["intermediate"]] == [100, 200, 300, 400, 500]

    # A third run of the finished trial trains nothing and sends nothing, yet succeeds.
    third = _run(trial, log, exp)
    assert third.status == "succeeded" and third.exit_code == 0, third.message
    assert _steps(log) == [1, 2, 3, 4, 5] and _steps(log, "final") == [5]
    result = _result(exp)
    assert [e["step"] for e in result["intermediate"]] == [100, 200, 300, 400, 500]
    assert result["final"]["step"] == 500 and result["status"] == "succeeded"


def test_a_report_that_did_not_go_out_is_sent_again(tmp_path, write_trial):
    exp = tmp_path / "exp"
    log: list = []
    trial = write_trial(_trial_text(_train("--steps 3")))
    # NNI's channel is lost at the second report: step 2 never went out; the trial ends.
    first = _run(trial, log, exp, lose_channel_at=2)
    assert first.status == "cancelled" and first.exit_code != 0
    assert _steps(log) == [1]
    recorded = json.loads((exp / "exp1" / "trials" / "t1" / REPORTED_FILE).read_text())
    # Only what went out is recorded as sent.
    assert recorded["steps"] == [[0, 100]]

    second = _run(trial, log, exp)
    assert second.status == "succeeded", second.message
    # Step 2 is sent by the resumed run; step 1 is not sent twice.
    assert _steps(log) == [1, 2, 3] and _steps(log, "final") == [3]


def test_without_resume_everything_is_reported_again(tmp_path, write_trial):
    exp = tmp_path / "exp"
    log: list = []
    trial = write_trial(_trial_text(_train("--steps 2"), resume=False))
    assert _run(trial, log, exp).status == "succeeded"
    assert _run(trial, log, exp).status == "succeeded"
    # A run without resume=1 trains and reports the trial afresh: every report twice.
    assert _steps(log) == [1, 2, 1, 2] and _steps(log, "final") == [2, 2]


def test_a_corrupt_record_is_a_warning_and_reports_again(tmp_path, write_trial):
    exp = tmp_path / "exp"
    log: list = []
    trial = write_trial(_trial_text(_train("--steps 2")))
    assert _run(trial, log, exp).status == "succeeded"
    trial_dir = exp / "exp1" / "trials" / "t1"
    (trial_dir / REPORTED_FILE).write_bytes(b'{"steps": [[0, 10')  # cut short
    outcome = _run(trial, log, exp)
    # Never a failed trial over it: a warning, and what it recorded is sent again.
    assert outcome.status == "succeeded" and outcome.exit_code == 0, outcome.message
    assert _steps(log) == [1, 2, 1, 2] and _steps(log, "final") == [2, 2]
    warnings = [line for line in (trial_dir / "trial.log").read_text().splitlines()
                if REPORTED_FILE in line and "treated as empty" in line]
    assert len(warnings) == 1
    # The record is whole again.
    assert json.loads((trial_dir / REPORTED_FILE).read_text())["final"] == [""]


def test_with_a_budget_each_unit_is_reported_once(tmp_path, write_trial, pipeline):
    exp = tmp_path / "exp"
    log: list = []
    budget = (f"[params_config]\nparams_src_dst_filepath1={pipeline},"
              "${NNI_OUTPUT_DIR}/pipeline.config\n"
              "budget_path=train_config.num_steps\nbudget_unit_steps=200\n")
    params = {"TRIAL_BUDGET": 5, LR_PATH: 0.001}
    write_trial(_trial_text(_train("--steps 5 --fail-at 4"), extra=budget))
    assert _run(tmp_path / "trial.ini", log, exp, params).status == "failed"
    # Steps 1..3 (global steps 100..300) complete one unit of 200 steps: step 2's.
    assert _steps(log) == [2]

    trial = write_trial(_trial_text(_train("--steps 5 --first-step 4"), extra=budget))
    outcome = _run(trial, log, exp, params)
    assert outcome.status == "succeeded", outcome.message
    # Unit 1 is not sent again; unit 2 is step 4, and step 5 stands for unit 3, which it
    # falls short of (the job trained its whole budget): three units, each once.
    assert _steps(log) == [2, 4, 5] and _steps(log, "final") == [5]
    assert [e["step"] for e in _result(exp)["intermediate"]] == [100, 200, 300, 400, 500]
    recorded = json.loads((exp / "exp1" / "trials" / "t1" / REPORTED_FILE).read_text())
    assert recorded["units"] == 3


FINETUNE = """\
[finetune_config]
start_time=20220601
end_time=20220603
model_dir=${{NNI_OUTPUT_DIR}}/model/{{bizdate}}
fine_tune_checkpoint={root}/begin

[platform_config]
name=Local
resume=1
cmd1=test ! -e {root}/fail-{{bizdate}} && echo from {{fine_tune_checkpoint}}
cmd2={train} --lr 0.0{{bizdate}} --model_dir {{model_dir}} --steps 2 --sleep 0.01

[metric_config]
metric_type=summary
metric_source={{model_dir}}/eval_val
metric_dict={{"auc": 1}}
"""


def test_a_resumed_finetune_trial_reports_each_day_and_the_final_once(tmp_path, write_trial):
    exp = tmp_path / "exp"
    log: list = []
    trial = write_trial(FINETUNE.format(root=tmp_path, train=TRAIN))
    (tmp_path / "fail-20220602").touch()
    first = _run(trial, log, exp)
    assert first.status == "failed" and "day 20220602" in first.message
    day_scores = {day: auc_for(float(f"0.0{day}"), 2) for day in (20220601, 20220602, 20220603)}
    # Day 1's result went out as it ended.
    assert [m["default"] for _, m in log] == pytest.approx([day_scores[20220601]])

    (tmp_path / "fail-20220602").unlink()
    second = _run(trial, log, exp)
    assert second.status == "succeeded", second.message
    # Day 1 is read back from its result.json, not sent again: each day once, in order.
    sent = [m["default"] for what, m in log if what == "intermediate"]
    assert sent == pytest.approx(list(day_scores.values()))
    finals = [m["default"] for what, m in log if what == "final"]
    # One final, over all three days (the average, source_list_final_mode's default).
    assert finals == pytest.approx([sum(day_scores.values()) / 3])
    result = _result(exp)
    assert [e["day"] for e in result["intermediate"]] == ["20220601", "20220602", "20220603"]


# -- the record itself ------------------------------------------------------------------------


def _written(tmp_path: Path, content: bytes | None) -> Path:
    if content is not None:
        (tmp_path / REPORTED_FILE).write_bytes(content)
    return tmp_path


@pytest.mark.parametrize(
    ("content", "why"),
    [
        (b"\x00\xff garbage", "unreadable"),
        (b'{"experiment_id": "e", "trial_id": "t", "steps": [[0, 1', "malformed"),
        (b"[1, 2]", "not a JSON object"),
        (b'{"experiment_id": "e", "trial_id": "t", "steps": [[0, "100"]]}', "'steps'"),
        (b'{"experiment_id": "e", "trial_id": "t", "units": -1}', "'units'"),
        (b'{"experiment_id": "e", "trial_id": "t", "final": "yes"}', "'final'"),
        (b'{"experiment_id": "e", "trial_id": "other", "steps": [[0, 100]]}',
         "records trial 'other'"),
    ],
)
def test_a_record_that_is_not_this_trials_is_empty_with_one_warning(tmp_path, caplog, content,
                                                                     why):
    with caplog.at_level("WARNING", logger="hpo_tools.trial.report_state"):
        state = ReportState.load(_written(tmp_path, content), "e", "t")
    # Treated as empty: a resumed run reports everything rather than crash or lose a step.
    assert state.empty and not state.has_step(0, 100)
    lines = [r.getMessage() for r in caplog.records]
    assert len(lines) == 1 and why in lines[0] and "\n" not in lines[0]


def test_an_unreadable_record_is_empty_with_one_warning(tmp_path, caplog):
    (tmp_path / REPORTED_FILE).mkdir()  # not a file: reading it fails
    with caplog.at_level("WARNING", logger="hpo_tools.trial.report_state"):
        state = ReportState.load(tmp_path, "e", "t")
    assert state.empty
    assert len(caplog.records) == 1 and "unreadable" in caplog.records[0].getMessage()


def test_a_missing_record_is_empty_without_a_warning(tmp_path, caplog):
    with caplog.at_level("WARNING", logger="hpo_tools.trial.report_state"):
        state = ReportState.load(tmp_path, "e", "t")
    assert state.empty and caplog.records == []


def test_the_record_round_trips_and_forgets_stages_trained_again(tmp_path):
    state = ReportState.fresh(tmp_path, "e", "t")
    state.add_step(0, 100)
    state.add_unit()
    state.add_stage("20220601")
    state.add_stage("20220602")
    state.add_final(["20220601", "20220602"])
    again = ReportState.load(tmp_path, "e", "t")
    # Every add_* was saved: a new process sees it all.
    assert again.has_step(0, 100) and not again.has_step(1, 100) and again.units == 1
    assert again.has_stage("20220601") and again.has_final(["20220601", "20220602"])
    # The final of other stages (the daily job's next day) is another final.
    assert not again.has_final(["20220603"])
    again.forget_stages(["20220602"])
    reloaded = ReportState.load(tmp_path, "e", "t")
    # A day trained again: its result and a final combining it are new results.
    assert reloaded.has_stage("20220601") and not reloaded.has_stage("20220602")
    assert not reloaded.has_final(["20220601", "20220602"])


def test_a_record_that_cannot_be_written_is_a_warning(tmp_path, caplog):
    blocker = tmp_path / "file"
    blocker.write_text("x")  # a file where the trial directory should be
    with caplog.at_level("WARNING", logger="hpo_tools.trial.report_state"):
        state = ReportState.fresh(blocker, "e", "t")
        state.add_step(0, 100)
    # Never an error; one warning for the trial, however many writes fail.
    assert state.has_step(0, 100)
    assert len(caplog.records) == 1 and "could not record" in caplog.records[0].getMessage()
