"""The MaxCompute platform against FakeODPS: parsing, instances, cancel, SQL, table metrics."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import threading
import time

import pytest

from hpo_tools.errors import ConfigError, MetricReadError, PlatformError
from hpo_tools.jobs import JobRegistry
from hpo_tools.metrics import Follower, MetricSpec, build_source
from hpo_tools.platforms import JobState, create_platform, platform_for_description
from hpo_tools.platforms.maxcompute import MaxComputePlatform, TableSource, parse_command
from hpo_tools.testing.odps import FakeODPS

ACCESS_ID = "LTAI5tFakeAccessId42"
ACCESS_KEY = "fakeSecretKeyValue0123456789"

EASYREC_BLOCK = """PAI -name easy_rec_ext -project algo_public
    -Dcmd=train
    -Dconfig=oss://hpo-bucket/exp1/trial1/pipeline.config
    -Dcluster='{"ps":{"count":1,"cpu":1000},"worker":{"count":2}}'
    -Dtrain_tables=odps://p/tables/t/dt=20220530
    -Deval_tables="odps://p/tables/e/dt=20220530"
    -Dmodel_dir=oss://hpo-bucket/model/exp1_trial1
    -Dedit_config_json={"train_config.num_steps": 100, "model_config.embedding_dim": 16}
    -Dbuckets=oss://hpo-bucket/;
"""


@pytest.fixture
def fake():
    return FakeODPS(polls=2)


@pytest.fixture
def platform(fake):
    platform = MaxComputePlatform(
        project="p", endpoint="http://service.fake.example/api", access_id=ACCESS_ID,
        access_key=ACCESS_KEY, poll_interval=0, odps_factory=fake.connect,
    )
    yield platform
    platform.close()  # no follower thread outlives its test


@pytest.fixture
def hang(fake):
    """Make every status call of ``fake`` block until the returned Event is set (at teardown
    at the latest)."""
    release = threading.Event()
    fake.hang_status = release
    yield release
    release.set()


def _until(condition, timeout=5.0):
    """Wait for ``condition()`` (the follower thread works in the background)."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.005)


# -- parsing ----------------------------------------------------------------------------------


def test_easyrec_pai_block_is_parsed_into_name_project_and_parameters():
    parsed = parse_command(EASYREC_BLOCK)
    assert (parsed.kind, parsed.name, parsed.project) == ("xflow", "easy_rec_ext", "algo_public")
    # quotes stripped, JSON kept whole (spaces included), trailing ';' dropped
    assert parsed.parameters == {
        "cmd": "train",
        "config": "oss://hpo-bucket/exp1/trial1/pipeline.config",
        "cluster": '{"ps":{"count":1,"cpu":1000},"worker":{"count":2}}',
        "train_tables": "odps://p/tables/t/dt=20220530",
        "eval_tables": "odps://p/tables/e/dt=20220530",
        "model_dir": "oss://hpo-bucket/model/exp1_trial1",
        "edit_config_json": '{"train_config.num_steps": 100, "model_config.embedding_dim": 16}',
        "buckets": "oss://hpo-bucket/",
    }
    # PAI reads these as JSON: they must still parse
    assert json.loads(parsed.parameters["cluster"])["worker"]["count"] == 2
    assert json.loads(parsed.parameters["edit_config_json"])["train_config.num_steps"] == 100


def test_classic_name_equals_value_options_are_accepted():
    parsed = parse_command("pai -name=easy_rec_ext -project=algo_public -Dcmd=evaluate;;")
    # config_begin.ini writes `-name=easy_rec_ext`
    assert (parsed.name, parsed.project, parsed.parameters) == (
        "easy_rec_ext", "algo_public", {"cmd": "evaluate"})


def test_double_quoted_json_and_line_continuations_are_handled():
    parsed = parse_command('PAI -name x \\\n -Dcluster="{\\"a\\": 1}" \\\n -Dk=\'v w\'')
    # as in a shell: \" inside double quotes is a quote; a quoted value may hold blanks
    assert parsed.parameters == {"cluster": '{"a": 1}', "k": "v w"}


def test_anything_but_pai_is_sql():
    sql = "INSERT OVERWRITE TABLE t PARTITION (dt='20220530')\nSELECT * FROM s;"
    parsed = parse_command("  " + sql + "\n")
    assert (parsed.kind, parsed.sql) == ("sql", sql)


@pytest.mark.parametrize(
    ("command", "message"),
    [
        ("PAI -project algo_public -Dcmd=train", "-name is missing"),
        ("PAI -name x -Dcluster='{\"ps\":1}", "unclosed ' quote"),
        ("PAI -name x -cost 3", "unexpected '-cost'"),
        ("PAI -name x -Dnovalue", "not -Dkey=value"),
        ("   ", "empty"),
    ],
)
def test_malformed_commands_are_config_errors_naming_the_problem(command, message):
    with pytest.raises(ConfigError, match=message):
        parse_command(command)


# -- submitting and following -----------------------------------------------------------------


def test_pai_command_goes_to_run_xflow_with_parsed_parameters(platform, fake, tmp_path):
    job = platform.submit(EASYREC_BLOCK, log_path=tmp_path / "trial.log")
    (call,) = fake.submitted
    # exactly what pyodps' run_xflow(name, project, parameters) receives
    assert (call["kind"], call["name"], call["project"]) == ("xflow", "easy_rec_ext", "algo_public")
    assert call["parameters"] == parse_command(EASYREC_BLOCK).parameters
    assert job.job_id == call["instance_id"]


def test_job_runs_until_the_instance_terminates_successfully(platform, fake, tmp_path, hang):
    job = platform.submit("PAI -name x -Dcmd=train", log_path=tmp_path / "trial.log")
    # the service has not answered yet: the job runs
    assert job.poll() is JobState.RUNNING
    hang.set()
    assert job.wait(timeout=5) is JobState.SUCCEEDED
    # our own poll loop asked the instance, never pyodps' wait_for_* (which swallow SIGINT)
    assert fake.instances[job.job_id].status_checks == 3


def test_sub_instances_are_recorded_as_they_appear(platform, fake, tmp_path):
    fake.plan_next(polls=3, sub_instances=["train", "eval"])
    updates = []
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log",
                          on_update=lambda j: updates.append(list(j.describe()["instance_ids"])))
    assert job.wait(timeout=5) is JobState.SUCCEEDED
    main = fake.instances[job.job_id]
    train, evaluate = main.sub_instances["train"], main.sub_instances["eval"]
    # the first update is the pending record, before anything was sent (no instance yet);
    # each new sub-instance is handed to the runner as it appears (one per status check), so
    # the registry can cancel it before the job ends
    seen = [ids for i, ids in enumerate(updates) if i == 0 or ids != updates[i - 1]]
    assert seen == [[], [job.job_id], [job.job_id, train.id],
                    [job.job_id, train.id, evaluate.id]]
    log = (tmp_path / "trial.log").read_text()
    # logview addresses are in the trial log for users
    assert f"instance {train.id} logview: https://logview" in log
    assert set(job.logviews) == {job.job_id, train.id, evaluate.id}


def test_failed_instance_fails_the_job_with_the_task_status(platform, fake, tmp_path):
    fake.plan_next(polls=1, fail=True)
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    assert job.wait(timeout=5) is JobState.FAILED
    # the runner prints this message
    assert job.message == f"instance {job.job_id} failed: AnonymousTask FAILED"
    assert "failed" in (tmp_path / "trial.log").read_text()


def test_sql_command_goes_to_run_sql(platform, fake, tmp_path):
    job = platform.submit("DROP TABLE IF EXISTS tmp_eval;", log_path=tmp_path / "trial.log")
    assert fake.submitted == [
        {"kind": "sql", "sql": "DROP TABLE IF EXISTS tmp_eval;", "instance_id": job.job_id}
    ]
    assert job.wait(timeout=5) is JobState.SUCCEEDED


def test_submit_refused_by_the_service_is_a_platform_error(platform, fake, tmp_path):
    fake.submit_error = RuntimeError("ODPS-0130013: Authorization exception\nmore detail")
    with pytest.raises(PlatformError, match="submitting PAI -name x to project 'p' failed: "
                                            "ODPS-0130013: Authorization exception$"):
        platform.submit("PAI -name x", log_path=tmp_path / "trial.log")


def test_status_errors_are_retried_not_fatal(platform, fake, tmp_path):
    fake.status_error = ConnectionError("network down")
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    instance = fake.instances[job.job_id]
    _until(lambda: instance.status_checks >= 3)
    # a network blip must not fail a day-long training job
    assert job.poll() is JobState.RUNNING
    fake.status_error = None
    assert job.wait(timeout=5) is JobState.SUCCEEDED


def test_a_keyboard_interrupt_during_a_table_query_propagates_and_stops_it(platform, fake,
                                                                          hang):
    import _thread

    source = build_source("table", "SELECT * FROM eval_result", spec=SPEC, platform=platform)
    # SIGINT without the runner's handler (Python's default) raises KeyboardInterrupt in the
    # main thread, here while it waits for a query whose status call hangs
    threading.Timer(0.2, _thread.interrupt_main).start()
    with pytest.raises(KeyboardInterrupt):
        source.poll()
    # not turned into a MetricReadError the follower would log and retry, and the query
    # instance is not left running
    assert fake.instances[fake.submitted[-1]["instance_id"]].stopped


def test_poll_interval_limits_status_checks(fake, tmp_path):
    platform = MaxComputePlatform(project="p", endpoint="e", access_id="a", access_key="b",
                                  poll_interval=60, odps_factory=fake.connect)
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    instance = fake.instances[job.job_id]
    _until(lambda: instance.status_checks == 1)  # the first check comes at once
    for _ in range(5):
        assert job.wait(timeout=0.02) is JobState.RUNNING
        job.poll()
    # the runner calls wait(timeout=0.1) in a loop: that never asks the service, the
    # job's thread does, once per interval
    assert instance.status_checks == 1
    platform.close()


# -- a service that stops answering -----------------------------------------------------------


def test_poll_and_wait_return_while_every_status_call_hangs(platform, fake, tmp_path, hang):
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    _until(lambda: fake.hung_calls == 1)  # the job's thread is stuck in is_terminated()
    started = time.monotonic()
    assert job.poll() is JobState.RUNNING
    assert job.wait(timeout=0.2) is JobState.RUNNING
    # the runner's main thread calls these between looks at its cancel flag: a hung
    # connection must not stop it from seeing NNI's SIGINT
    assert time.monotonic() - started < 1.0


def test_cancel_is_bounded_and_stops_the_instance_while_status_calls_hang(
    platform, fake, tmp_path, hang
):
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    _until(lambda: fake.hung_calls == 1)
    started = time.monotonic()
    job.cancel()
    # NNI SIGKILLs the runner 5 s after SIGINT; the PAI job must be stopped before that
    assert time.monotonic() - started < 3.0
    assert fake.instances[job.job_id].stop_calls == 1
    assert job.poll() is JobState.CANCELLED


def test_a_sub_instance_found_after_cancel_is_stopped_too(platform, fake, tmp_path, hang):
    fake.plan_next(polls=100, sub_instances=["train"])
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    _until(lambda: fake.hung_calls == 1)  # mid-check: the sub-instance starts meanwhile
    job.cancel()  # knows only the main instance
    hang.set()
    main = fake.instances[job.job_id]
    _until(lambda: "train" in main.sub_instances and main.sub_instances["train"].stopped)
    # it would otherwise train on, paid, with nothing left to stop it
    assert main.sub_instances["train"].id in job.instance_ids
    assert job.poll() is JobState.CANCELLED


def test_platform_close_stops_following_but_not_the_job(platform, fake, tmp_path):
    fake.plan_next(polls=10**6)
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    instance = fake.instances[job.job_id]
    _until(lambda: instance.status_checks >= 2)
    platform.close()
    job._follower.join(timeout=5)  # a check in flight when close() came may still end
    # no thread left asking the service after the trial is over (poll_interval 0: 10 ms)
    assert not job._follower.is_alive()
    checks = instance.status_checks
    time.sleep(0.05)
    assert instance.status_checks == checks
    # jobs keep running when the platform closes (the runner cancels what it must)
    assert not instance.stopped and job.poll() is JobState.RUNNING


# -- cancelling -------------------------------------------------------------------------------


def test_cancel_stops_every_recorded_instance(platform, fake, tmp_path):
    fake.plan_next(polls=100, sub_instances=["train", "eval"])
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    _until(lambda: len(job.instance_ids) == 3)
    job.cancel()
    assert job.poll() is JobState.CANCELLED
    # the main instance and each sub-instance are stopped once
    assert {i: inst.stop_calls for i, inst in fake.instances.items()} == {
        i: 1 for i in job.instance_ids
    }
    assert len(job.instance_ids) == 3
    job.cancel()
    # idempotent: no second round of stop calls
    assert all(inst.stop_calls == 1 for inst in fake.instances.values())


def test_cancel_is_bounded_when_stop_hangs(platform, fake, tmp_path):
    fake.plan_next(polls=100, stop_delay=10)
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    started = time.monotonic()
    job.cancel()
    # NNI SIGKILLs the runner 5 s after SIGINT
    assert time.monotonic() - started < 3.0
    assert job.poll() is JobState.CANCELLED


def test_cancel_wakes_a_thread_blocked_in_wait(fake, tmp_path):
    platform = MaxComputePlatform(project="p", endpoint="e", access_id="a", access_key="b",
                                  poll_interval=30, odps_factory=fake.connect)
    fake.plan_next(polls=100)
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    result = {}
    waiter = threading.Thread(target=lambda: result.setdefault("state", job.wait()))
    waiter.start()
    time.sleep(0.1)
    started = time.monotonic()
    job.cancel()
    waiter.join(timeout=2)
    # a 30 s poll interval must not delay the runner's exit after SIGINT
    assert result.get("state") is JobState.CANCELLED
    assert time.monotonic() - started < 1.0


def test_cancel_described_rebuilds_the_client_from_env_and_stops_live_instances(
    platform, fake, tmp_path, monkeypatch
):
    fake.plan_next(polls=100, sub_instances=["train"])
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    _until(lambda: len(job.instance_ids) == 2)
    description = json.loads(json.dumps(job.describe()))
    monkeypatch.setenv("ODPS_ACCESS_ID", ACCESS_ID)
    monkeypatch.setenv("ODPS_ACCESS_KEY", ACCESS_KEY)
    other = platform_for_description(description, odps_factory=fake.connect)
    # the assessor's process: credentials from its environment, ids from the record
    assert other.cancel_described(description) is True
    assert all(fake.instances[i].stopped for i in description["instance_ids"])
    # nothing left running: a second call has nothing to stop
    assert other.cancel_described(description) is False


def test_cancel_described_without_credentials_names_the_env_vars(platform, tmp_path,
                                                                 monkeypatch, fake):
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log")
    for name in ("ODPS_ACCESS_ID", "ODPS_ACCESS_KEY", "ALIBABA_CLOUD_ACCESS_KEY_ID",
                 "ALIBABA_CLOUD_ACCESS_KEY_SECRET"):
        monkeypatch.delenv(name, raising=False)
    other = platform_for_description(job.describe(), odps_factory=fake.connect)
    with pytest.raises(PlatformError, match="set ODPS_ACCESS_ID and ODPS_ACCESS_KEY"):
        other.cancel_described(job.describe())


def test_registry_cancel_live_stops_a_maxcompute_job(platform, fake, tmp_path, monkeypatch):
    monkeypatch.setenv("ODPS_ACCESS_ID", ACCESS_ID)
    monkeypatch.setenv("ODPS_ACCESS_KEY", ACCESS_KEY)
    fake.plan_next(polls=100)
    registry = JobRegistry(tmp_path / "exp",
                           platform_overrides={"maxcompute": {"odps_factory": fake.connect}})
    record = registry.new("t1", platform=platform)
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log",
                          on_update=lambda j: registry.mark_job(record, 1, j, JobState.RUNNING))
    platform.close()  # NNI killed the runner: nobody follows the job any more
    # what trial_end does after NNI killed the runner
    assert registry.cancel_live("t1") == [job.job_id]
    assert fake.instances[job.job_id].stopped
    assert registry.load("t1").jobs[0].state is JobState.CANCELLED


# -- secrets ----------------------------------------------------------------------------------


def test_credentials_never_appear_in_describe_repr_log_or_registry(
    platform, fake, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    fake.plan_next(polls=2, sub_instances=["train"])
    registry = JobRegistry(tmp_path / "exp")
    record = registry.new("t1", platform=platform)
    job = platform.submit(EASYREC_BLOCK, log_path=tmp_path / "trial.log",
                          on_update=lambda j: registry.mark_job(record, 1, j))
    job.wait(timeout=5)
    texts = {
        "describe": json.dumps(job.describe()),
        "settings": json.dumps(platform.settings()),
        "repr": repr(platform) + repr(platform._settings),
        "trial log": (tmp_path / "trial.log").read_text(),
        "registry": registry.path("t1").read_text(),
        "log records": caplog.text,
    }
    for where, text in texts.items():
        # credentials live only in memory (and in the env of whoever started us)
        assert ACCESS_ID not in text, where
        assert ACCESS_KEY not in text, where
    assert "access_key=***" in texts["repr"]


def test_credential_env_names_are_found_from_the_values(fake, monkeypatch):
    monkeypatch.setenv("MY_ODPS_ID", ACCESS_ID)
    monkeypatch.setenv("MY_ODPS_SECRET", ACCESS_KEY)
    platform = create_platform("MaxCompute", project="p", endpoint="e", access_id=ACCESS_ID,
                               secret_access_key=ACCESS_KEY, odps_factory=fake.connect)
    # the trial file said ${MY_ODPS_ID}: another process must look there, not at the defaults
    assert platform.settings()["credential_env"] == ["MY_ODPS_ID", "MY_ODPS_SECRET"]


def test_missing_project_is_a_config_error():
    with pytest.raises(ConfigError, match="project is missing"):
        create_platform("maxcompute", endpoint="http://e")


def test_the_platform_path_never_imports_pyodps_with_an_injected_client(tmp_path):
    code = (
        "import sys\n"
        "from pathlib import Path\n"
        "from hpo_tools.platforms import create_platform\n"
        "from hpo_tools.testing.odps import FakeODPS\n"
        "p = create_platform('MaxCompute', project='p', endpoint='e', access_id='a',\n"
        "                    access_key='b', poll_interval=0, odps_factory=FakeODPS().connect)\n"
        f"p.submit('PAI -name x', log_path=Path({str(tmp_path / 't.log')!r})).wait(5)\n"
        "print('odps' in sys.modules)\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    # `import odps` costs 0.5 s: the runner's path must not pay it unless it talks to MaxCompute
    assert result.stdout.strip() == "False"


# -- the table metric source ------------------------------------------------------------------


SPEC = MetricSpec.from_config({"auc": 1.0, "Loss": -0.5})


def test_table_source_turns_rows_into_steps(platform, fake):
    fake.set_sql_result("eval_result", [
        {"global_step": 100, "auc": 0.7, "loss": 0.5, "note": "x"},
        {"global_step": 200, "auc": 0.8, "loss": 0.4, "note": "y"},
    ])
    source = build_source("table", "SELECT * FROM eval_result", spec=SPEC, platform=platform)
    points = source.poll()
    # step column + metric columns; MaxCompute lower-cases column names, keys keep theirs
    assert [(p.step, dict(p.values)) for p in points] == [
        (100, {"auc": 0.7, "Loss": 0.5}), (200, {"auc": 0.8, "Loss": 0.4}),
    ]
    assert fake.submitted[-1]["sql"] == "SELECT * FROM eval_result"


def test_table_source_queries_at_most_once_per_interval_and_drains_new_rows(platform, fake):
    fake.set_sql_result("eval_result", [{"auc": 0.7, "loss": 0.5}])
    source = TableSource("SELECT * FROM eval_result", SPEC, run_query=platform.run_query,
                         min_interval=60)
    assert len(source.poll()) == 1
    assert source.poll() == []  # within the interval: no second query
    assert len(fake.submitted) == 1
    fake.set_sql_result("eval_result", [{"auc": 0.7, "loss": 0.5}, {"auc": 0.9, "loss": 0.3}])
    # the drain at the end queries again and yields only the new step (position 2)
    assert [(p.step, p.values["auc"]) for p in source.drain()] == [(2, 0.9)]


def test_table_source_feeds_the_follower_to_a_final_report(platform, fake):
    fake.set_sql_result("eval_result", [
        {"step": 1, "auc": 0.7, "loss": 0.5}, {"step": 2, "auc": 0.8, "loss": 0.2},
    ])
    source = build_source("table", "SELECT * FROM eval_result", spec=SPEC, platform=platform)
    follower = Follower([source], SPEC)
    final = follower.close()
    # final mode "final": the last step's weighted score
    assert final.step == 2
    assert final.score == pytest.approx(0.8 - 0.5 * 0.2)


def test_failed_table_query_is_a_metric_read_error(platform, fake):
    fake.plan_next(polls=0, fail=True)
    source = build_source("table", "SELECT * FROM eval_result", spec=SPEC, platform=platform)
    # the follower logs it and retries on the next poll
    with pytest.raises(MetricReadError, match="failed"):
        source.poll()


def test_interrupt_stops_a_running_table_query_at_once(fake):
    platform = MaxComputePlatform(project="p", endpoint="e", access_id="a", access_key="b",
                                  poll_interval=1.0, query_timeout=5, odps_factory=fake.connect)
    fake.plan_next(polls=10**6)  # a query that would run for ever
    threading.Timer(0.3, platform.interrupt).start()
    started = time.monotonic()
    with pytest.raises(MetricReadError, match="interrupted"):
        platform.run_query("SELECT * FROM eval_result")
    # The runner's signal handler calls interrupt(): the query must not hold up the
    # cancellation (NNI SIGKILLs the runner 5 s after its SIGINT).
    assert time.monotonic() - started < 1.0
    # ...and the query instance is not left running.
    assert fake.instances[fake.submitted[-1]["instance_id"]].stopped


def test_interrupt_stops_a_table_query_whose_status_call_hangs(fake, hang):
    platform = MaxComputePlatform(project="p", endpoint="e", access_id="a", access_key="b",
                                  poll_interval=1.0, query_timeout=600, odps_factory=fake.connect)
    threading.Timer(0.3, platform.interrupt).start()
    started = time.monotonic()
    with pytest.raises(MetricReadError, match="interrupted"):
        platform.run_query("SELECT * FROM eval_result")
    # the query's is_terminated() never answers; the runner's main thread must still get to
    # cancel the trial's jobs within NNI's 5 s (it waited for ever before)
    assert fake.hung_calls == 1
    assert time.monotonic() - started < 1.0
    # ...and the query instance is stopped all the same
    assert fake.instances[fake.submitted[-1]["instance_id"]].stopped


def test_table_source_without_a_maxcompute_platform_is_a_config_error(platform):
    from hpo_tools.trial.plan import TrialVariables
    from hpo_tools.trial.settings import parse_trial_text

    # A MaxCompute platform exists in this process, but none is passed (as in the
    # `hpo-tools metrics` CLI): creating a platform must not make `table` use it.
    with pytest.raises(ConfigError, match="unknown source type 'table'"):
        build_source("table", "SELECT 1", spec=SPEC)
    # A trial file asking for `table` on another platform is told which platform reads it.
    text = ("[platform_config]\nname=Local\ncmd1=true\n[metric_config]\nmetric_type=table\n"
            "metric_source=SELECT 1\nmetric_dict={\"auc\": 1}\n")
    with pytest.raises(ConfigError, match=r"name=MaxCompute and \[odps_config\] project_name"):
        parse_trial_text(text, source="trial.ini", variables=TrialVariables("e", "t", "/o", {}))


def test_table_source_on_another_platform_is_a_config_error(platform):
    local = create_platform("Local")
    # a Local trial has no MaxCompute client to run the query with
    with pytest.raises(ConfigError, match="unknown source type 'table'"):
        build_source("table", "SELECT 1", spec=SPEC, platform=local)


def test_table_query_runs_on_the_platform_passed_whatever_was_created_last():
    fake_a, fake_b = FakeODPS(), FakeODPS()
    fake_a.set_sql_result("eval_result", [{"step": 1, "auc": 0.1, "loss": 0.0}])
    fake_b.set_sql_result("eval_result", [{"step": 1, "auc": 0.2, "loss": 0.0}])
    platform_a = MaxComputePlatform(project="a", endpoint="e", access_id="i", access_key="k",
                                    poll_interval=0.01, odps_factory=fake_a.connect)
    platform_b = MaxComputePlatform(project="b", endpoint="e", access_id="i", access_key="k",
                                    poll_interval=0.01, odps_factory=fake_b.connect)
    # B was created last, and a description rebuilt after it; A's source still queries A.
    rebuilt = platform_for_description(
        {"platform": "MaxCompute", "settings": platform_a.settings()},
        odps_factory=FakeODPS().connect,
    )
    try:
        query = "SELECT * FROM eval_result"
        source_a = build_source("table", query, spec=SPEC, platform=platform_a)
        assert [p.values["auc"] for p in source_a.poll()] == [0.1]
        assert len(fake_a.submitted) == 1 and fake_b.submitted == []
        source_b = build_source("table", query, spec=SPEC, platform=platform_b)
        assert [p.values["auc"] for p in source_b.poll()] == [0.2]
        assert len(fake_b.submitted) == 1 and len(fake_a.submitted) == 1
    finally:
        for each in (platform_a, platform_b, rebuilt):
            each.close()


# -- the fake stays true to pyodps ------------------------------------------------------------


@pytest.mark.parametrize(
    ("fake_class", "real_path", "methods"),
    [
        ("FakeODPS", "odps.ODPS",
         ["run_xflow", "run_sql", "get_xflow_sub_instances", "get_instance", "stop_instance",
          "list_instances", "get_project"]),
        ("FakeInstance", "odps.models.Instance",
         ["is_terminated", "is_successful", "get_task_statuses", "get_logview_address", "stop",
          "open_reader", "get_unique_identifier_id"]),
        ("FakeXFlows", "odps.models.XFlows", ["get_xflow_instance"]),
    ],
)
def test_fake_methods_have_the_sdk_names_and_parameters(fake_class, real_path, methods):
    import importlib
    import inspect

    from hpo_tools.testing import odps as fakes

    module_name, _, class_name = real_path.rpartition(".")
    real = getattr(importlib.import_module(module_name), class_name)
    fake_cls = getattr(fakes, fake_class)
    for method in methods:
        real_params = [p for p in inspect.signature(getattr(real, method)).parameters
                       if p not in ("self", "args", "kwargs")]
        fake_params = [p for p in inspect.signature(getattr(fake_cls, method)).parameters
                       if p not in ("self", "args", "kwargs")]
        # the fake takes the SDK's leading parameters, in order, so calls that work on the
        # fake work on pyodps
        assert fake_params == real_params[: len(fake_params)], method


def test_default_factory_builds_a_real_pyodps_client_offline(monkeypatch):
    import odps

    # ODPS() asks the endpoint for its logview and job-insight hosts unless told (6 s offline)
    monkeypatch.setenv("ODPS_LOGVIEW_HOST", "http://logview.example.com")
    legacy = odps.options.use_legacy_logview
    odps.options.use_legacy_logview = True
    try:
        platform = MaxComputePlatform(project="p", endpoint="http://service.example.com/api",
                                      access_id=ACCESS_ID, access_key=ACCESS_KEY)
        client = platform.client()
    finally:
        odps.options.use_legacy_logview = legacy
    # the shipped path constructs odps.ODPS with our keywords (no network until a call)
    assert type(client).__module__ == "odps.core" and type(client).__name__ == "ODPS"
    assert client.project == "p"


def test_a_failure_message_quoting_a_key_is_masked_by_the_output_filter(fake, tmp_path):
    from hpo_tools.secrets import SecretMasker

    platform = MaxComputePlatform(project="p", endpoint="e", access_id=ACCESS_ID,
                                  access_key=ACCESS_KEY, poll_interval=0,
                                  odps_factory=fake.connect)
    job = platform.submit("PAI -name x", log_path=tmp_path / "trial.log",
                          output_filter=SecretMasker([ACCESS_ID]).mask)
    # The service echoes the key id it refused; after 20 failed checks the job fails with it.
    fake.status_error = RuntimeError(f"InvalidAccessKeyId: {ACCESS_ID} not found")
    assert job.wait(timeout=5) is JobState.FAILED
    # job.message goes to the registry and result.json: it passes the filter like the log does.
    assert "InvalidAccessKeyId: *** not found" in job.message
    assert ACCESS_ID not in job.message
    assert ACCESS_ID not in (tmp_path / "trial.log").read_text()


def test_hpo_tools_0_1_odps_keys_are_read_and_used(fake, tmp_path):
    from hpo_tools.trial.plan import TrialVariables
    from hpo_tools.trial.settings import parse_trial_text

    # hpo_tools 0.1.x's [odps_config]: end_point for odps_endpoint, log_view_host, role_arn
    # (here from [oss_config], its other place).
    text = (
        "[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext -Dcmd=train\n"
        "cmd2=PAI -name easy_rec_ext -Dcmd=evaluate -Darn=acs:ram::1:role/own\n"
        "[metric_config]\nmetric_type=table\nmetric_source=SELECT 1\nmetric_dict={\"auc\": 1}\n"
        "[oss_config]\nrole_arn=acs:ram::1:role/automl\n"
        "[odps_config]\nproject_name=p\nend_point=http://service.fake.example/api\n"
        "log_view_host=http://logview.fake.example\naccess_id=AKIDodps01\naccess_key=odpsSecret01\n"
    )
    plan = parse_trial_text(text, source="trial.ini",
                            variables=TrialVariables("e", "t", "/o", {}), environ={})
    options = dict(plan.platform.options)
    assert options["endpoint"] == "http://service.fake.example/api"
    assert (options["logview_host"], options["role_arn"]) == (
        "http://logview.fake.example", "acs:ram::1:role/automl")
    platform = MaxComputePlatform(**options, poll_interval=0, odps_factory=fake.connect)
    try:
        platform.submit("PAI -name easy_rec_ext -Dcmd=train", log_path=tmp_path / "t.log")
        platform.submit("PAI -name easy_rec_ext -Darn=acs:ram::1:role/own",
                        log_path=tmp_path / "t.log")
    finally:
        platform.close()
    # pyodps is told the logview host; PAI gets the role unless the command names its own.
    assert fake.connect_kwargs == {"logview_host": "http://logview.fake.example"}
    assert fake.submitted[0]["parameters"]["arn"] == "acs:ram::1:role/automl"
    assert fake.submitted[1]["parameters"]["arn"] == "acs:ram::1:role/own"
    # Both are settings another process rebuilds the platform with (not secrets).
    assert platform.settings()["role_arn"] == "acs:ram::1:role/automl"
