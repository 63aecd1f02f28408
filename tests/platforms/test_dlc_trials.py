"""Trials on the DLC platform, what only DLC does: metrics from one command's pod logs (the
files under dlc-logs/, the trial log with every pod, a command skipped by resume read from the
earlier attempt's file). The runner's contract (follow, cancel within 3 s of SIGINT also during
a hung CreateJob, resume, kill through the registry, secrets, check) is
tests/platforms/test_dlc_contract.py.

The DLC service is FakeDlcClient (the SDK Client's methods over a directory).
"""

from __future__ import annotations

import io

import pytest

from hpo_tools.cloud import ENV_FAKE_CLOUD
from hpo_tools.platforms.dlc import DlcPlatform
from hpo_tools.testing.dlc import FakeDlcClient
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import run_plan
from hpo_tools.trial_files import prepare_trial

ACCESS_ID = "LTAI5tFakeTrialId77"
ACCESS_KEY = "fakeTrialSecret98765432"
SUBMIT = ("dlc submit tfjob --name=t_${{exp_id}}_${{trial_id}}_{n} --command='python train.py "
          "--lr ${{lr}}' --workspace_id=ws1 --workers=1 --worker_image=img --worker_spec=ecs.g6 "
          "--evaluators=1 --evaluator_image=img --evaluator_spec=ecs.g6")


def _trial_ini(commands=1, source="cmd1,worker", extra=""):
    lines = ["[platform_config]", "name=DLC"]
    lines += [f"cmd{n}=" + SUBMIT.format(n=n) for n in range(1, commands + 1)]
    lines += [extra, "[metric_config]", "metric_type=stdout",
              f"metric_source={source}" if source else "",
              'metric_dict={"auc=([0-9.]+)": 1}', "final_mode=final",
              "[dlc_config]", "region=cn-shanghai", "access_id=${DLC_TEST_ID}",
              "access_key=${DLC_TEST_KEY}", "poll_interval=0.02"]
    return "\n".join(lines) + "\n"


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    """The fake DLC service's directory, and the keys in the environment (as ${...} names)."""
    root = tmp_path / "cloud"
    root.mkdir()
    monkeypatch.setenv(ENV_FAKE_CLOUD, str(root))
    monkeypatch.setenv("DLC_TEST_ID", ACCESS_ID)
    monkeypatch.setenv("DLC_TEST_KEY", ACCESS_KEY)
    return root


@pytest.fixture
def fake(cloud):
    fake = FakeDlcClient(cloud, access_key_id=ACCESS_ID, access_key_secret=ACCESS_KEY)
    yield fake
    for event in fake._hangs.values():
        event.set()


def _prepare(tmp_path, text, params=None, trial_id="T"):
    trial = tmp_path / "trial.ini"
    trial.write_text(text)
    reporter = ConsoleReporter(params or {"${lr}": 0.1}, experiment_id="E", trial_id=trial_id,
                               stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    return plan, context, reporter


def _run(tmp_path, fake, text, **kwargs):
    plan, context, reporter = _prepare(tmp_path, text, **kwargs)
    platform = DlcPlatform(**plan.platform.options, client_factory=fake.connect)
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.02,
                       stderr=io.StringIO())
    return outcome, reporter, context


# -- follow, metrics from pod logs ----------------------------------------------------------


def test_a_trial_follows_its_job_and_scores_only_the_worker_pods_log(tmp_path, fake):
    fake.plan_next(steps=[
        {"status": "Queuing"},
        {"status": "Running", "logs": {"worker": ["step 1 auc=0.61"],
                                       "evaluator": ["eval auc=0.99"]}},
        {"status": "Running", "logs": {"worker": ["step 2 auc=0.72"]}},
        {"status": "Succeeded"},
    ])
    outcome, reporter, context = _run(tmp_path, fake, _trial_ini())
    assert outcome.status == "succeeded" and outcome.exit_code == 0
    # metric_source=cmd1,worker: the evaluator's auc=0.99 is in the trial log, not scored
    assert [r["default"] for r in reporter.intermediate] == [0.61, 0.72]
    assert reporter.final["default"] == 0.72
    assert "eval auc=0.99" in context.paths.log_path.read_text()
    worker_file = context.paths.trial_dir / "dlc-logs" / "cmd1.worker.log"
    assert worker_file.read_text() == "step 1 auc=0.61\nstep 2 auc=0.72\n"
    (request,) = [s["request"] for s in fake.submissions]
    assert request["UserCommand"] == "python train.py --lr 0.1"  # the tuner's value in place
    assert request["DisplayName"].startswith("t_E_T_1-hpo-")


def test_without_metric_source_the_trial_log_with_every_pod_is_read(tmp_path, fake):
    fake.plan_next(steps=[{"status": "Running", "logs": {"worker": ["auc=0.5"]}},
                          {"status": "Succeeded", "logs": {"evaluator": ["auc=0.8"]}}])
    outcome, reporter, _ = _run(tmp_path, fake, _trial_ini(source=""))
    assert outcome.exit_code == 0 and reporter.final["default"] == 0.8


def test_resume_skips_the_command_that_succeeded_and_still_reads_its_log(tmp_path, fake):
    text = _trial_ini(commands=2, extra="resume=1")
    fake.plan_next(steps=[{"status": "Running", "logs": {"worker": ["auc=0.7"]}},
                          {"status": "Succeeded"}])
    fake.plan_next(steps=[{"status": "Running"}, {"status": "Failed"}])  # cmd2 fails first
    first, _, _ = _run(tmp_path, fake, text)
    assert first.status == "failed" and "cmd2 failed" in first.message
    fake.plan_next(steps=[{"status": "Running"}, {"status": "Succeeded"}])
    second, reporter, _ = _run(tmp_path, fake, text)
    assert second.status == "succeeded"
    names = [s["request"]["DisplayName"].split("-hpo-")[0] for s in fake.submissions]
    assert names == ["t_E_T_1", "t_E_T_2", "t_E_T_2"]  # cmd1 ran once only
    # metric_source=cmd1,worker: the skipped command's log from the first attempt
    assert reporter.final["default"] == 0.7
