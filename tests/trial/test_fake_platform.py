"""The runner on FakePlatform (hpo_tools/testing/platform.py, in-process jobs, described there):
a platform added as one module plus one registry line, and runner behaviour that is not about
processes (stages, resume, cancellation, reports) without starting any."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import signal
import threading
from pathlib import Path

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.finetune import read_finetune_file
from hpo_tools.jobs import JobRegistry
from hpo_tools.platforms import JobState, create_platform, platform_for_description
from hpo_tools.testing.platform import FakePlatform, registered
from hpo_tools.trial.paths import resolve_paths
from hpo_tools.trial.plan import Command, TrialVariables
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import TrialContext, run_plan
from hpo_tools.trial.settings import parse_trial_text

METRIC = '[metric_config]\nmetric_type=fake\nmetric_source=eval\nmetric_dict={"auc": 1}\n'


@pytest.fixture(autouse=True)
def fake_registered():
    with registered():
        yield


def _children() -> set[str]:
    """This process's child processes (none may appear: the fake starts no process)."""
    found: set[str] = set()
    for task in Path(f"/proc/{os.getpid()}/task").iterdir():
        found.update((task / "children").read_text().split())
    return found


def _plan(text: str, params=None, trial_id: str = "t1"):
    variables = TrialVariables("e1", trial_id, f"/out/{trial_id}", params or {})
    return parse_trial_text(text, source="trial.ini", variables=variables, environ={})


def _run(plan, tmp_path: Path, platform: FakePlatform, trial_id: str = "t1", **kwargs):
    reporter = ConsoleReporter(dict(plan.params), experiment_id="e1", trial_id=trial_id,
                               stream=io.StringIO())
    paths = resolve_paths("e1", trial_id, exp_dir=tmp_path / "exp", environ={})
    context = TrialContext("e1", trial_id, plan.params, paths)
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.02,
                       stderr=io.StringIO(), **kwargs)
    return outcome, reporter, paths


def test_a_platform_is_one_module_and_one_registry_line(tmp_path: Path) -> None:
    text = ("[platform_config]\nname=Fake\n"
            "cmd1=emit eval step=1 auc=0.6; emit eval step=2 auc=0.7\n"
            "cmd2=echo done\n[fake_config]\nlabel=unit\n" + METRIC)
    plan = _plan(text)
    # The platform's own section, name and metric type reached the plan through its module.
    assert plan.platform.name == "fake" and dict(plan.platform.options) == {"label": "unit"}
    assert plan.stages[0].metric.metric_type == "fake"
    platform = plan.platform.create()
    before = _children()
    outcome, reporter, paths = _run(plan, tmp_path, platform)
    assert outcome.status == "succeeded", outcome.message
    # Each step reported as it came, the last one final; both commands ran, in order.
    assert [r["default"] for r in reporter.intermediate] == [0.6, 0.7]
    assert reporter.final["default"] == 0.7
    assert platform.submitted == ["emit eval step=1 auc=0.6; emit eval step=2 auc=0.7",
                                  "echo done"]
    assert "done" in paths.log_path.read_text()
    # No process was started, and the registry knows both jobs as succeeded.
    assert _children() - before == set()
    record = JobRegistry(tmp_path / "exp" / "e1").load("t1")
    assert [j.state for j in record.jobs] == [JobState.SUCCEEDED, JobState.SUCCEEDED]
    assert record.state is JobState.SUCCEEDED


def test_the_platforms_own_section_is_checked_by_the_platform() -> None:
    text = "[platform_config]\nname=Fake\ncmd1=echo x\n[fake_config]\nlabl=x\n" + METRIC
    with pytest.raises(ConfigError, match=r"\[fake_config\] labl: unknown key .*'label'") as info:
        _plan(text)
    # Where it is travels as data too (hpo-tools check drops the key and goes on).
    assert (info.value.section, info.value.key) == ("fake_config", "labl")


def test_a_command_the_platform_cannot_run_is_an_error_naming_its_key() -> None:
    text = "[platform_config]\nname=Fake\ncmd1=echo x\ncmd2=launch now\n" + METRIC
    with pytest.raises(ConfigError, match=r"\[platform_config\] cmd2: unknown step 'launch'"):
        _plan(text)


def test_the_platforms_metric_type_on_another_platform_names_the_platform() -> None:
    text = "[platform_config]\nname=Local\ncmd1=true\n" + METRIC
    with pytest.raises(ConfigError, match=r"metric_type=fake runs on the Fake platform: set "
                                          r"\[platform_config\] name=Fake and \[fake_config\]"):
        _plan(text)


def test_a_failed_command_fails_the_trial_and_stops_the_rest(tmp_path: Path) -> None:
    text = ("[platform_config]\nname=Fake\ncmd1=emit eval step=1 auc=0.5; fail out of memory\n"
            "cmd2=echo never\n" + METRIC)
    platform = FakePlatform()
    outcome, reporter, paths = _run(_plan(text), tmp_path, platform)
    assert outcome.status == "failed" and outcome.exit_code == 1
    assert outcome.message == "cmd1 failed: out of memory"
    # The step before the failure still reached NNI; no final result; cmd2 never submitted.
    assert [r["default"] for r in reporter.intermediate] == [0.5] and reporter.final is None
    assert len(platform.submitted) == 1
    assert json.loads(paths.result_path.read_text())["status"] == "failed"


def test_resume_skips_the_commands_that_succeeded(tmp_path: Path) -> None:
    text = ("[platform_config]\nname=Fake\nresume=1\ncmd1=echo first\n"
            "cmd2=emit eval step=1 auc=0.9\n" + METRIC)
    plan = _plan(text)
    first = FakePlatform()
    stage = plan.stages[0]
    # The same trial whose cmd2 fails this time.
    flaky = dataclasses.replace(stage, commands=(stage.commands[0], Command("cmd2", "fail x")))
    failing = plan.replace(stages=(flaky,))
    assert _run(failing, tmp_path, first)[0].status == "failed"
    second = FakePlatform()
    outcome, reporter, _ = _run(plan, tmp_path, second)
    assert outcome.status == "succeeded"
    # cmd1 succeeded in the first run: only cmd2 runs again.
    assert second.submitted == ["emit eval step=1 auc=0.9"]


def test_sigint_cancels_the_running_job_and_the_trial_dies_by_it(tmp_path: Path) -> None:
    text = "[platform_config]\nname=Fake\ncmd1=emit eval step=1 auc=0.5; hang\n" + METRIC
    platform = FakePlatform()
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    timer.start()
    try:
        outcome, reporter, paths = _run(_plan(text), tmp_path, platform)
    finally:
        timer.cancel()
    # Cancelled, exit 128+SIGINT, the job stopped and recorded so, the result file says so.
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    assert len(platform.cancelled) >= 1
    record = JobRegistry(tmp_path / "exp" / "e1").load("t1")
    assert record.jobs[0].state is JobState.CANCELLED and record.state is JobState.CANCELLED
    assert json.loads(paths.result_path.read_text())["status"] == "cancelled"


def test_a_job_is_cancelled_from_its_description_as_in_another_process() -> None:
    platform = create_platform("Fake")
    job = platform.submit("hang", log_path=Path("/dev/null"))
    # `hpo-tools kill` and the assessor rebuild the platform from the registry record.
    rebuilt = platform_for_description(job.describe())
    assert rebuilt.cancel_described(job.describe()) is True
    assert job.wait(timeout=2) is JobState.CANCELLED


FINETUNE = """\
[finetune_config]
start_time=20220601
end_time=20220603
model_dir=/models/${trial_id}/{bizdate}
fine_tune_checkpoint=/models/begin

[platform_config]
name=Fake
cmd1=echo from {fine_tune_checkpoint} to {model_dir}; emit eval-{bizdate} step=1 auc=0.{bizdate}

[metric_config]
metric_type=fake
metric_source=eval-{bizdate}
metric_dict={"auc": 1}
"""


def test_finetune_days_are_stages_of_one_loop_chained_and_combined(tmp_path: Path) -> None:
    trial = tmp_path / "trial.ini"
    trial.write_text(FINETUNE)
    variables = TrialVariables("e1", "t1", "/out/t1", {})
    plan = read_finetune_file(trial, variables=variables, environ={}).to_plan()
    platform = FakePlatform()
    outcome, reporter, paths = _run(plan, tmp_path, platform)
    assert outcome.status == "succeeded", outcome.message
    # Day 1 from the begin model, each later day from this trial's model of the day before.
    assert [c.split(";")[0] for c in platform.submitted] == [
        "echo from /models/begin to /models/t1/20220601",
        "echo from /models/t1/20220601 to /models/t1/20220602",
        "echo from /models/t1/20220602 to /models/t1/20220603",
    ]
    # One intermediate result per day, the final their average (source_list_final_mode avg).
    days = [r["default"] for r in reporter.intermediate]
    assert days == pytest.approx([0.20220601, 0.20220602, 0.20220603])
    assert reporter.final["default"] == pytest.approx(sum(days) / 3)
    result = json.loads(paths.result_path.read_text())
    assert [e["day"] for e in result["intermediate"]] == ["20220601", "20220602", "20220603"]
    # Each day kept its own files; the registry has every day finished.
    assert (paths.trial_dir / "days" / "20220602" / "result.json").is_file()
    record = JobRegistry(tmp_path / "exp" / "e1").load("t1")
    assert record.finished_stages == ["20220601", "20220602", "20220603"]


def test_search_keys_written_as_placeholders_are_replaced_in_commands_and_any_params_file(
    tmp_path: Path,
) -> None:
    from hpo_tools.check import check_trial_file

    # hpo_tools 0.1.x's style: the search space names "${lr}", the trial file and a params
    # file (here JSON, not protobuf text) hold ${lr}.
    (tmp_path / "params.json").write_text('{"lr": ${lr}, "batch_size": ${batch_size}}\n')
    text = (
        "[platform_config]\nname=Fake\ncmd1=echo lr ${lr} bs ${batch_size}; "
        "emit eval step=1 auc=0.5\n" + METRIC + "[params_config]\n"
        f"params_src_dst_filepath1={tmp_path}/params.json,{tmp_path}/out/params.json\n"
    )
    params = {"${lr}": 0.01, "${batch_size}": 64}
    plan = _plan(text, params)
    assert plan.stages[0].commands[0].text.startswith("echo lr 0.01 bs 64;")
    platform = FakePlatform()
    outcome, _, _ = _run(plan, tmp_path, platform)
    assert outcome.status == "succeeded", outcome.message
    assert json.loads((tmp_path / "out" / "params.json").read_text()) == {
        "lr": 0.01, "batch_size": 64}
    # `check` agrees: nothing to refuse at any corner.
    trial = tmp_path / "trial.ini"
    trial.write_text(text)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"${lr}": {"_type": "choice", "_value": [0.01, 0.1]},
                                 "${batch_size}": {"_type": "choice", "_value": [64]}}))
    assert check_trial_file(trial, space, environ={}) == []


def test_sigint_while_a_report_hangs_on_nni_cancels_at_once_and_dies_by_the_signal(
    tmp_path: Path, monkeypatch
) -> None:
    """NNI's report call has no timeout; the runner bounds it at 2 s. A SIGINT meanwhile must
    not wait those 2 s, nor end as a lost channel (exit 1, NNI: FAILED)."""
    import time

    import nni

    from hpo_tools.trial.reporter import NniReporter

    release, hung = threading.Event(), threading.Event()

    def hang(metric):  # a manager that never answers
        hung.set()
        release.wait(30)

    monkeypatch.setattr(nni, "get_next_parameter", lambda: {})
    monkeypatch.setattr(nni, "report_intermediate_result", hang)
    text = "[platform_config]\nname=Fake\ncmd1=emit eval step=1 auc=0.5; hang\n" + METRIC
    platform = FakePlatform()
    reporter = NniReporter(report_timeout=2.0)
    paths = resolve_paths("e1", "t1", exp_dir=tmp_path / "exp", environ={})
    sent = {}

    def send_when_hung() -> None:
        if hung.wait(10):
            sent["at"] = time.monotonic()
            os.kill(os.getpid(), signal.SIGINT)

    threading.Thread(target=send_when_hung, daemon=True).start()
    try:
        outcome = run_plan(_plan(text), reporter, TrialContext("e1", "t1", {}, paths),
                           platform=platform, interval=0.02, stderr=io.StringIO())
        ended = time.monotonic()
    finally:
        release.set()
    assert "at" in sent, "the report never hung: the test proved nothing"
    assert ended - sent["at"] < 1.0  # not after the 2 s report timeout
    assert outcome.status == "cancelled" and outcome.exit_code == 128 + signal.SIGINT
    assert len(platform.cancelled) >= 1
