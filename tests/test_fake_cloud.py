"""HPO_TOOLS_FAKE_CLOUD=DIR: offline dry runs of cloud trial files (hpo_tools.cloud and the fakes
of hpo_tools.testing it builds). The clients are fakes at the SDK boundary; everything around
them (storage, the MaxCompute platform, the runner, the CLI) is the shipped code."""

from __future__ import annotations

import io
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from hpo_tools import cloud
from hpo_tools.errors import ConfigError, StorageError
from hpo_tools.platforms.maxcompute import parse_command
from hpo_tools.storage import OssCredentials, Storage
from hpo_tools.testing.odps_dir import FakeDirectoryODPS, pai_command

ROOT = Path(__file__).resolve().parents[1]
CREDS = OssCredentials("fakeOssKeyId01", "fakeOssSecret01", "oss-cn-hangzhou.aliyuncs.com")
PIPELINE = "train_config {\n  num_steps: 100\n}\ndata_config {\n  batch_size: 256\n}\n"
SEARCH_SPACE = {"data_config.batch_size": {"_type": "choice", "_value": [128, 512]}}
TRIAL = """\
[platform_config]
name=MaxCompute
cmd1=PAI -name easy_rec_ext -project algo_public -Dcmd=train
  -Dconfig=oss://bucket/trials/${exp_id}_${trial_id}/pipeline.config
  -Dcluster='{"ps":{"count":1,"cpu":1000},"worker":{"count":2,"cpu":1000}}'
  -Dmodel_dir=oss://bucket/models/${exp_id}_${trial_id}/

[params_config]
params_src_dst_filepath1=oss://bucket/configs/pipeline.config,oss://bucket/trials/${exp_id}_${trial_id}/pipeline.config

[metric_config]
metric_type=json
metric_source=oss://bucket/models/${exp_id}_${trial_id}/metrics.json
metric_dict={"auc": 1}

[oss_config]
endpoint=http://oss-cn-hangzhou.aliyuncs.com
accessKeyID=${FAKE_OSS_ID}
accessKeySecret=${FAKE_OSS_SECRET}

[odps_config]
project_name=my_project
odps_endpoint=http://service.cn-hangzhou.maxcompute.aliyun.com/api
"""
OSS_ID, OSS_SECRET = "dryRunOssId4711", "dryRunOssSecret4711"
ODPS_ID, ODPS_KEY = "dryRunOdpsId0815", "dryRunOdpsKey0815"


@pytest.fixture
def fake_cloud(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A fake cloud directory with one bucket, set in this process's environment."""
    root = tmp_path / "cloud"
    (root / "bucket").mkdir(parents=True)
    monkeypatch.setenv(cloud.ENV_FAKE_CLOUD, str(root))
    monkeypatch.delenv("HPO_TOOLS_FAKE_CLOUD_JOBS", raising=False)
    return root


def _plan(root: Path, **plan: object) -> None:
    (root / ".maxcompute").mkdir(parents=True, exist_ok=True)
    (root / ".maxcompute" / "plan.json").write_text(json.dumps(plan))


def _client(root: Path, **kwargs: object) -> FakeDirectoryODPS:
    return FakeDirectoryODPS(root, access_id=ODPS_ID, secret_access_key=ODPS_KEY,
                             project="p", endpoint="http://odps", **kwargs)


def _state(instance) -> dict:
    return json.loads(Path(instance.path).read_text())


# -- the decision: real unless HPO_TOOLS_FAKE_CLOUD is set ------------------------------------


def test_real_clients_are_built_when_the_variable_is_unset(monkeypatch):
    import oss2
    from odps import ODPS

    from hpo_tools.platforms.maxcompute import _default_odps_factory

    monkeypatch.delenv(cloud.ENV_FAKE_CLOUD, raising=False)
    assert cloud.notice() is None
    # A local logview host and an endpoint on a closed local port: nothing is contacted.
    client = _default_odps_factory(access_id="someId", secret_access_key="someKey",
                                   project="p", endpoint="http://127.0.0.1:9/api",
                                   logview_host="http://127.0.0.1:9")
    # The shipped path builds pyodps' own client, not a fake.
    assert type(client) is ODPS
    assert type(Storage(oss=CREDS)._bucket("my-bucket")) is oss2.Bucket


def test_an_empty_variable_means_the_real_cloud(monkeypatch):
    monkeypatch.setenv(cloud.ENV_FAKE_CLOUD, "")
    assert cloud.fake_root() is None
    assert cloud.build("oss", lambda *args: ("real", args), 1) == ("real", (1,))


def test_fake_clients_are_built_from_the_real_factorys_arguments(fake_cloud):
    from hpo_tools.platforms.maxcompute import _default_odps_factory
    from hpo_tools.testing.oss import FakeDirectoryBucket

    def real(*args, **kwargs):
        raise AssertionError("the real SDK client was built under the fake cloud")

    bucket = cloud.build("oss", real, CREDS, "bucket")
    assert isinstance(bucket, FakeDirectoryBucket) and bucket.directory == fake_cloud / "bucket"
    client = _default_odps_factory(access_id="i", secret_access_key="k", project="p",
                                   endpoint="http://e")
    assert isinstance(client, FakeDirectoryODPS) and client.project == "p"


def test_a_service_without_a_fake_is_an_error_not_a_real_call(fake_cloud):
    called = []
    with pytest.raises(ConfigError,
                       match="HPO_TOOLS_FAKE_CLOUD is set but no-such-service has no fake"):
        cloud.build("no-such-service", lambda: called.append(1))
    assert called == []


def test_a_variable_naming_no_directory_is_a_config_error(tmp_path, monkeypatch):
    monkeypatch.setenv(cloud.ENV_FAKE_CLOUD, str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match=r"HPO_TOOLS_FAKE_CLOUD=.*missing: no such directory"):
        cloud.notice()


def _fake_dlc(root, *args, **kwargs):
    return ("fake dlc", root, args, kwargs)


def test_a_new_service_registers_with_one_line(fake_cloud, monkeypatch):
    monkeypatch.setitem(cloud.FAKES, "dlc", cloud.FakeService(
        "tests.test_fake_cloud:_fake_dlc", "DLC jobs recorded in {root}/.dlc/"))
    built = cloud.build("dlc", lambda *a, **k: "real", "cfg", region="cn")
    assert built == ("fake dlc", fake_cloud, ("cfg",), {"region": "cn"})
    assert f"DLC jobs recorded in {fake_cloud}/.dlc/" in cloud.notice()


def test_every_registered_fake_factory_exists():
    # The registry names factories as strings (the shipped path never imports them): a typo
    # would only show under the fake cloud.
    import importlib

    for service, fake in cloud.FAKES.items():
        module, _, function = fake.factory.partition(":")
        assert callable(getattr(importlib.import_module(module), function)), service


def test_the_notice_names_the_directory_and_where_jobs_are_recorded(fake_cloud):
    line = cloud.notice()
    assert "\n" not in line and line.startswith("fake cloud (HPO_TOOLS_FAKE_CLOUD)")
    assert f"OSS at {fake_cloud}/<bucket>/<key>" in line
    assert f"{fake_cloud}/.maxcompute/submissions.jsonl" in line


# -- OSS: oss://bucket/key is DIR/bucket/key -------------------------------------------------


def test_storage_reads_and_writes_files_of_the_fake_cloud(fake_cloud):
    store = Storage(oss=CREDS)
    store.write_text("oss://bucket/a/b/x.config", "a: 1\n")
    # Another process (a job, the user) sees the object as a plain file.
    assert (fake_cloud / "bucket/a/b/x.config").read_text() == "a: 1\n"
    (fake_cloud / "bucket/a/y.json").write_text('{"auc": 0.5}\n')
    assert store.read_text("oss://bucket/a/y.json") == '{"auc": 0.5}\n'
    assert store.exists("oss://bucket/a/b/x.config") and not store.exists("oss://bucket/a/b")
    assert store.size("oss://bucket/a/y.json") == 13
    # Files directly in the "directory" only, as on OSS with a delimiter.
    assert store.list_dir("oss://bucket/a") == ["oss://bucket/a/y.json"]
    assert store.list_dir("oss://bucket/a/b/") == ["oss://bucket/a/b/x.config"]
    assert store.list_dir("oss://bucket/nothing") == []


def test_offset_reads_tail_a_growing_object(fake_cloud):
    store = Storage(oss=CREDS)
    path = fake_cloud / "bucket/events"
    path.write_bytes(b"0123456789")
    assert store.read_bytes("oss://bucket/events", offset=4) == b"456789"
    # At the end: nothing new yet (OSS's 416 with the standard range behaviour).
    assert store.read_bytes("oss://bucket/events", offset=10) == b""
    with open(path, "ab") as handle:
        handle.write(b"ab")
    assert store.read_bytes("oss://bucket/events", offset=10) == b"ab"


def test_missing_bucket_object_and_bad_keys_are_storage_errors(fake_cloud, tmp_path):
    store = Storage(oss=CREDS)
    with pytest.raises(StorageError, match="no such object"):
        store.read_text("oss://bucket/none.config")
    with pytest.raises(StorageError, match="no such object \\(or bucket\\)"):
        store.read_text("oss://other-bucket/x.config")
    with pytest.raises(StorageError, match="InvalidObjectName"):
        store.write_text("oss://bucket/../escaped.config", "x")
    # Nothing was written outside the bucket's directory.
    assert not (fake_cloud / "escaped.config").exists()
    assert store.list_dir("oss://bucket/../") == []
    with pytest.raises(StorageError, match="bucket_name is invalid"):
        store.read_text("oss://Bad_Bucket/x")


def test_oss_credentials_are_still_required_under_the_fake_cloud(fake_cloud, monkeypatch,
                                                                  tmp_path):
    # The dry run finds keys exactly as the real run does, so check and run agree.
    for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_ENDPOINT"):
        monkeypatch.delenv(name, raising=False)
    store = Storage(oss_config=tmp_path / "no-ossutilconfig")
    with pytest.raises(StorageError, match="no-ossutilconfig: no such file"):
        store.read_text("oss://bucket/x")


# -- MaxCompute: submissions recorded, RUNNING until told otherwise --------------------------


@pytest.mark.parametrize("parameters", [
    {"cmd": "train", "config": "oss://b/p.config"},
    {"cluster": '{"ps": {"count": 1}, "worker": {"count": 2}}', "name": "two words"},
    {"sql": "it's \"quoted\" \\ here", "empty": ""},
])
def test_the_recorded_pai_command_parses_back_to_the_same_call(parameters):
    command = pai_command("easy_rec_ext", "algo_public", parameters)
    parsed = parse_command(command)
    assert (parsed.name, parsed.project, parsed.parameters) == (
        "easy_rec_ext", "algo_public", parameters)


def test_a_submission_stays_running_until_stopped_and_the_stop_is_recorded(fake_cloud):
    client = _client(fake_cloud)
    instance = client.run_xflow("easy_rec_ext", "algo_public", {"cmd": "train"})
    for _ in range(5):
        assert not instance.is_terminated()
    record = json.loads((fake_cloud / ".maxcompute/submissions.jsonl").read_text())
    assert record["command"] == "PAI -name easy_rec_ext -project algo_public -Dcmd=train"
    assert record["instance_id"] == instance.id and record["outcome"] == "run"
    # Another process (hpo-tools kill, the assessor) stops it through its own client.
    other = _client(fake_cloud)
    assert not other.get_instance(instance.id).is_terminated()
    other.stop_instance(instance.id)
    assert instance.is_terminated() and not instance.is_successful()
    assert instance.get_task_statuses()["AnonymousTask"].status.value == "CANCELLED"
    state = _state(instance)
    assert state["state"] == "cancelled" and "stopped_at" in state


@pytest.mark.parametrize("how", ["plan", "env"])
@pytest.mark.parametrize("jobs, successful", [("succeed", True), ("fail", False)])
def test_plan_or_env_makes_jobs_end(fake_cloud, monkeypatch, how, jobs, successful):
    if how == "plan":
        _plan(fake_cloud, jobs=jobs, polls=2)
    else:
        _plan(fake_cloud, jobs="run", polls=2)
        monkeypatch.setenv("HPO_TOOLS_FAKE_CLOUD_JOBS", jobs)
    instance = _client(fake_cloud).run_sql("INSERT OVERWRITE TABLE t SELECT 1")
    # RUNNING for `polls` checks, then ended as planned.
    assert [instance.is_terminated() for _ in range(3)] == [False, False, True]
    assert instance.is_successful() is successful
    assert _state(instance)["state"] == ("succeeded" if successful else "failed")
    instance.stop()  # an ended instance stays as it ended
    assert _state(instance)["state"] == ("succeeded" if successful else "failed")


def test_editing_the_state_file_ends_a_running_instance(fake_cloud):
    instance = _client(fake_cloud).run_xflow("easy_rec_ext", None, {"cmd": "train"})
    assert not instance.is_terminated()
    state = _state(instance)
    state["state"] = "succeeded"
    Path(instance.path).write_text(json.dumps(state))
    assert instance.is_terminated() and instance.is_successful()
    # Its "logview" is that file.
    assert instance.get_logview_address() == Path(instance.path).as_uri()


def test_sql_results_answer_a_matching_query(fake_cloud):
    rows = [{"step": 100, "auc": 0.7}, {"step": 200, "auc": 0.8}]
    _plan(fake_cloud, polls=0, sql_results=[{"match": "FROM eval_result", "rows": rows}])
    client = _client(fake_cloud)
    query = client.run_sql("SELECT step, auc FROM eval_result WHERE t = 1")
    # A query with an answer succeeds even though jobs default to RUNNING.
    assert query.is_terminated() and query.is_successful()
    with query.open_reader() as reader:
        assert [dict(r) for r in reader] == rows
    other = client.run_sql("SELECT * FROM elsewhere")
    assert not other.is_terminated()


@pytest.mark.parametrize("plan, message", [
    ({"job": "succeed"}, "unknown key 'job' \\(did you mean 'jobs'\\?\\)"),
    ({"jobs": "done"}, "key 'jobs': expected run, succeed or fail, got 'done'"),
    ({"polls": -1}, "key 'polls': expected a whole number >= 0"),
    ({"sql_results": [{"match": "x"}]}, "sql_results\\[0\\]: expected"),
])
def test_a_bad_plan_file_is_a_config_error_naming_it(fake_cloud, plan, message):
    _plan(fake_cloud, **plan)
    with pytest.raises(ConfigError, match="plan.json: " + message):
        _client(fake_cloud).run_xflow("easy_rec_ext", None, {})


def test_submissions_hold_no_credentials(fake_cloud, monkeypatch):
    monkeypatch.setenv("SOME_API_TOKEN", "tokenValue123456")
    client = _client(fake_cloud)
    client.run_xflow("easy_rec_ext", "algo_public", {
        "cmd": "train", "access_key_secret": "paramSecret999",
        "buckets": f"oss://b/?id={ODPS_ID}&key={ODPS_KEY}&t=tokenValue123456",
    })
    client.run_sql(f"SELECT '{ODPS_KEY}' FROM t")
    written = "".join(p.read_text() for p in fake_cloud.rglob("*") if p.is_file())
    for secret in (ODPS_ID, ODPS_KEY, "paramSecret999", "tokenValue123456"):
        assert secret not in written
    records = [json.loads(line) for line in
               (fake_cloud / ".maxcompute/submissions.jsonl").read_text().splitlines()]
    assert records[0]["parameters"]["access_key_secret"] == "***"
    assert records[0]["parameters"]["buckets"] == "oss://b/?id=***&key=***&t=***"
    assert records[1]["command"] == "SELECT '***' FROM t"


def test_credentials_are_still_required_by_the_fake_client(fake_cloud):
    with pytest.raises(ValueError, match="credentials missing"):
        FakeDirectoryODPS(fake_cloud, access_id="", secret_access_key="k")


def test_table_metric_trial_reads_the_planned_rows(fake_cloud, tmp_path, monkeypatch):
    """A whole MaxCompute trial in this process: PAI job, then `table` metrics."""
    from hpo_tools.trial.reporter import ConsoleReporter
    from hpo_tools.trial_files import run_trial_file

    monkeypatch.setenv("ODPS_ACCESS_ID", ODPS_ID)
    monkeypatch.setenv("ODPS_ACCESS_KEY", ODPS_KEY)
    rows = [{"step": 100, "auc": 0.61}, {"step": 200, "auc": 0.66}]
    _plan(fake_cloud, jobs="succeed", polls=0,
          sql_results=[{"match": "FROM eval_result", "rows": rows}])
    trial = tmp_path / "trial.ini"
    trial.write_text(
        "[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext -Dcmd=train\n"
        "[metric_config]\nmetric_type=table\n"
        "metric_source=SELECT step, auc FROM eval_result\nmetric_dict={\"auc\": 1}\n"
        "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
    )
    out = io.StringIO()
    reporter = ConsoleReporter({}, experiment_id="E", trial_id="T", stream=out)
    outcome = run_trial_file(trial, reporter, exp_dir=tmp_path / "exp", interval=0.05)
    assert outcome.status == "succeeded", outcome.message
    assert 'final result: {"default": 0.66, "auc": 0.66}' in out.getvalue()
    kinds = [json.loads(line)["kind"] for line in
             (fake_cloud / ".maxcompute/submissions.jsonl").read_text().splitlines()]
    assert kinds[0] == "xflow" and set(kinds[1:]) == {"sql"}


# -- the entry points, in real processes -----------------------------------------------------


def _cli_env(root: Path, **extra: str) -> dict:
    env = {k: v for k, v in os.environ.items()
           if not k.startswith(("NNI_", "OSS_", "ODPS_", "HPO_TOOLS_"))}
    env.update(PYTHONPATH=str(ROOT), HPO_TOOLS_FAKE_CLOUD=str(root), FAKE_OSS_ID=OSS_ID,
               FAKE_OSS_SECRET=OSS_SECRET, ODPS_ACCESS_ID=ODPS_ID, ODPS_ACCESS_KEY=ODPS_KEY,
               **extra)
    return env


@pytest.fixture
def dry_run(tmp_path: Path):
    """A MaxCompute trial file whose configs and metrics are in a fake cloud directory."""
    root = tmp_path / "cloud"
    (root / "bucket/configs").mkdir(parents=True)
    (root / "bucket/configs/pipeline.config").write_text(PIPELINE)
    model = root / "bucket/models/standalone_standalone"
    model.mkdir(parents=True)
    (model / "metrics.json").write_text('{"step": 1, "auc": 0.7}\n{"step": 2, "auc": 0.75}\n')
    (tmp_path / "trial.ini").write_text(TRIAL)
    (tmp_path / "space.json").write_text(json.dumps(SEARCH_SPACE))
    return root


def _hpo_tools(*args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "hpo_tools", *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_check_reads_the_fake_clouds_configs_and_says_it_is_a_dry_run(tmp_path, dry_run):
    done = _hpo_tools("check", "--config", "trial.ini", "--search-space", "space.json",
                      cwd=tmp_path, env=_cli_env(dry_run))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stderr.splitlines()[0].startswith("fake cloud (HPO_TOOLS_FAKE_CLOUD)")
    assert "ok: trial.ini renders" in done.stdout
    # check launches nothing.
    assert not (dry_run / ".maxcompute/submissions.jsonl").exists()


def test_check_and_run_agree_that_keys_must_be_configured(tmp_path, dry_run):
    # No [oss_config], no OSS_* variables, no ~/.ossutilconfig: the real run would have no
    # keys, and neither has the dry run (any non-empty values would do).
    trial = TRIAL.split("[oss_config]")[0] + "[odps_config]" + TRIAL.split("[odps_config]")[1]
    (tmp_path / "trial.ini").write_text(trial)
    env = _cli_env(dry_run, HOME=str(tmp_path))
    checked = _hpo_tools("check", "--config", "trial.ini", "--search-space", "space.json",
                         cwd=tmp_path, env=env)
    ran = _hpo_tools("run", "--config", "trial.ini", "--params", "{}", cwd=tmp_path, env=env)
    assert checked.returncode == 1 and "no OSS credentials" in checked.stdout, checked.stdout
    assert ran.returncode == 2 and "no OSS credentials" in ran.stderr, ran.stderr
    assert not (dry_run / ".maxcompute/submissions.jsonl").exists()


def test_run_shows_the_pai_command_and_succeeds_when_told_to(tmp_path, dry_run):
    done = _hpo_tools("run", "--config", "trial.ini", "--params",
                      '{"data_config.batch_size": 512}', cwd=tmp_path,
                      env=_cli_env(dry_run, HPO_TOOLS_FAKE_CLOUD_JOBS="succeed"))
    out = done.stdout + done.stderr
    assert done.returncode == 0, out
    assert done.stderr.splitlines()[0].startswith("fake cloud (HPO_TOOLS_FAKE_CLOUD)")
    assert 'final result: {"default": 0.75, "auc": 0.75}' in done.stdout
    config = "oss://bucket/trials/standalone_standalone/pipeline.config"
    command = (
        f"PAI -name easy_rec_ext -project algo_public -Dcmd=train -Dconfig={config} "
        """-Dcluster='{"ps":{"count":1,"cpu":1000},"worker":{"count":2,"cpu":1000}}' """
        "-Dmodel_dir=oss://bucket/models/standalone_standalone/"
    )
    # The exact command, on the console, in the trial log and in the record.
    assert command in done.stderr
    trial_log = (tmp_path / "exp/standalone/trials/standalone/trial.log").read_text()
    assert command in trial_log
    record = json.loads((dry_run / ".maxcompute/submissions.jsonl").read_text())
    assert record["command"] == command and record["project"] == "my_project"
    # The edited config went to the fake bucket, the parameter applied.
    edited = (dry_run / "bucket/trials/standalone_standalone/pipeline.config").read_text()
    assert "batch_size: 512" in edited
    for secret in (OSS_ID, OSS_SECRET, ODPS_ID, ODPS_KEY):
        assert secret not in out + trial_log
        assert not any(secret in p.read_text(errors="replace")
                       for p in tmp_path.rglob("*") if p.is_file())


def test_a_running_job_is_cancelled_by_sigint_and_the_fake_records_the_stop(tmp_path, dry_run):
    runner = subprocess.Popen(
        [sys.executable, "-m", "hpo_tools.run", "--config", "trial.ini", "--interval", "0.1"],
        cwd=tmp_path, env=_cli_env(dry_run), stdout=subprocess.PIPE, stderr=subprocess.PIPE,
        text=True,
    )
    submissions = dry_run / ".maxcompute/submissions.jsonl"
    try:
        deadline = time.monotonic() + 60
        while not (submissions.exists() and submissions.read_text().endswith("\n")):
            if runner.poll() is not None or time.monotonic() > deadline:
                runner.kill()
                pytest.fail(f"nothing submitted: {runner.communicate()}")
            time.sleep(0.05)
        instance_id = json.loads(submissions.read_text())["instance_id"]
        state_file = dry_run / f".maxcompute/instances/{instance_id}.json"
        # RUNNING, as no plan says otherwise.
        assert json.loads(state_file.read_text())["state"] == "running"
        runner.send_signal(signal.SIGINT)
        code = runner.wait(timeout=30)
        err = runner.communicate(timeout=5)[1]
    finally:
        if runner.poll() is None:
            runner.kill()
    assert err.splitlines()[0].startswith("fake cloud (HPO_TOOLS_FAKE_CLOUD)"), err
    assert code == -signal.SIGINT, err
    state = json.loads(state_file.read_text())
    assert state["state"] == "cancelled" and "stopped_at" in state, err
    result = json.loads((tmp_path / "exp/standalone/trials/standalone/result.json").read_text())
    assert result["status"] == "cancelled"
