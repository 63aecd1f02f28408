"""PAI training jobs and PAI-Flow runs beyond the shared contract: command parsing, the api
metric source, cancel from a registry record, settings without secrets, no SDK import until
used. The services are FakeTrainingJobClient / FakePaiFlowClient."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.metrics.score import MetricSpec
from hpo_tools.platforms import JobState, platform_for_description
from hpo_tools.platforms.pai_command import REQUEST_FIELDS, parse_training_job_command
from hpo_tools.platforms.pai_metrics import TrainingMetricSource
from hpo_tools.platforms.pai_training import PaiTrainingPlatform
from hpo_tools.platforms.paiflow_command import parse_paiflow_command
from hpo_tools.testing.pai_training import FakeTrainingJobClient

ACCESS_ID = "LTAI5tFakePaiUnit01"
ACCESS_KEY = "fakePaiUnitSecret2718"
BASE = "pai training-job create --name=job1 --algorithm=easyrec --instance-type=ecs.g6.xlarge"


def test_flags_become_the_requests_own_fields():
    parsed = parse_training_job_command(
        BASE + " --instance-count 2 --hyper-parameters=lr=0.1,epochs=3"
        " --input-channels=train=oss://b/t/,eval=oss://b/e/ --output-channels=model=oss://b/m/"
        " --max-running-minutes=30 --workspace_id=ws9")
    assert parsed.workspace_id == "ws9"
    assert parsed.fields["ComputeResource"] == {"EcsSpec": "ecs.g6.xlarge", "EcsCount": 2}
    assert parsed.fields["HyperParameters"] == [{"Name": "lr", "Value": "0.1"},
                                                {"Name": "epochs", "Value": "3"}]
    assert parsed.fields["InputChannels"][1] == {"Name": "eval", "InputUri": "oss://b/e/"}
    assert parsed.fields["Scheduler"] == {"MaxRunningTimeInMinutes": 30}
    from alibabacloud_paistudio20220112 import models  # every field is the SDK's

    request = models.CreateTrainingJobRequest().from_map(parsed.fields).to_map()
    assert request["ComputeResource"]["EcsCount"] == 2 and request["AlgorithmName"] == "easyrec"


def test_request_fields_are_those_the_sdk_reads():
    import inspect

    from alibabacloud_paistudio20220112 import models

    source = inspect.getsource(models.CreateTrainingJobRequest.from_map)
    assert all(f"'{name}'" in source for name in REQUEST_FIELDS)


def test_a_spec_file_fills_what_no_flag_names_and_flags_win(tmp_path):
    spec = tmp_path / "job.yaml"
    spec.write_text("AlgorithmSpec: {Image: img}\nUserVpc: {VpcId: vpc-1}\n"
                    "ComputeResource: {EcsSpec: ecs.small}\n")
    parsed = parse_training_job_command(
        f"pai training-job create --name=j --spec={spec} --instance-type=ecs.big")
    assert parsed.fields["UserVpc"] == {"VpcId": "vpc-1"}
    assert parsed.fields["ComputeResource"] == {"EcsSpec": "ecs.big", "EcsCount": 1}


@pytest.mark.parametrize("text, message", [
    ("pai training-job list", "expected 'pai training-job create"),
    (BASE + " --instance-tipe=x", "unknown flag --instance_tipe (did you mean 'instance_type'?)"),
    ("pai training-job create --algorithm=a --instance-type=x", "--name is required"),
    ("pai training-job create --name=j --instance-type=x", "--algorithm is required"),
    ("pai training-job create --name=j --algorithm=a", "--instance-type is required"),
    (BASE + " --hyper-parameters=lr", "expected a JSON object or name=value"),
    (BASE + " --instance-count=0", "--instance_count: expected a whole number >= 1"),
    (BASE + " --spec='{\"Algoritm\": 1}'", "unknown field 'Algoritm'"),
    (BASE + " --spec=/no/such/file.json", "cannot read the file"),
    (BASE + " --name=x", "--name given twice"),
])
def test_a_malformed_training_job_command_is_one_line(text, message):
    with pytest.raises(ConfigError) as caught:
        parse_training_job_command(text)
    assert message in str(caught.value) and "\n" not in str(caught.value)


@pytest.mark.parametrize("text, message", [
    ("paiflow run --name=r", "give one of --pipeline-id"),
    ("paiflow run --name=r --pipeline-id=p --manifest=m.yaml", "give one of --pipeline-id"),
    ("paiflow run --name=r --pipeline-id=p --arguments=[1]", "expected a JSON object"),
    ("paiflow run --name=r --pipeline-id=p --argument={}", "did you mean 'arguments'?"),
])
def test_a_malformed_paiflow_command_is_one_line(text, message):
    with pytest.raises(ConfigError, match=message.replace("[", r"\[").replace("?", r"\?")):
        parse_paiflow_command(text)


def test_a_paiflow_manifest_and_arguments_file_are_read(tmp_path):
    (tmp_path / "m.yaml").write_text("apiVersion: core/v1\n")
    (tmp_path / "args.yaml").write_text("arguments: {parameters: [{name: lr, value: 0.1}]}\n")
    parsed = parse_paiflow_command(f"paiflow run --name=r --manifest={tmp_path / 'm.yaml'} "
                                   f"--arguments=@{tmp_path / 'args.yaml'}")
    assert parsed.manifest == "apiVersion: core/v1\n"
    assert json.loads(parsed.arguments) == {"arguments": {"parameters": [
        {"name": "lr", "value": 0.1}]}}


def test_the_api_source_makes_one_step_per_timestamp_and_matches_names_any_case(tmp_path):
    source = TrainingMetricSource("cmd1", MetricSpec.from_config({"AUC": 1}), 1)
    assert source.poll() == [] and not source.found()
    path = tmp_path / "cmd1.jsonl"
    source.bind(path)
    path.write_text('{"name": "auc", "value": 0.6, "timestamp": "t1"}\n'
                    '{"name": "loss", "value": 2, "timestamp": "t1"}\n'
                    '{"name": "auc", "value": 0.7, "timestamp": "t2"}\n{"name": "auc", "va')
    points = source.poll()
    assert [(p.step, dict(p.values)) for p in points] == [(1, {"AUC": 0.6}), (2, {"AUC": 0.7})]
    with open(path, "a") as handle:
        handle.write('lue": 0.8, "timestamp": "t3"}\n')
    assert [(p.step, dict(p.values)) for p in source.poll()] == [(3, {"AUC": 0.8})]


def test_cancel_from_a_registry_record_in_a_rebuilt_platform(tmp_path, monkeypatch):
    fake = FakeTrainingJobClient(tmp_path / "cloud", access_key_id=ACCESS_ID,
                                 access_key_secret=ACCESS_KEY)
    fake.plan_next(steps=[{"status": "Running"}])
    platform = PaiTrainingPlatform(region="cn-hangzhou", access_id=ACCESS_ID,
                                   access_key=ACCESS_KEY, poll_interval=0,
                                   client_factory=fake.connect)
    try:
        job = platform.submit(BASE, log_path=tmp_path / "trial.log")
        deadline = time.monotonic() + 10
        while job.poll() is not JobState.RUNNING:
            assert time.monotonic() < deadline
            time.sleep(0.01)
        description = job.describe()
    finally:
        platform.close()
    text = json.dumps(description)
    assert ACCESS_ID not in text and ACCESS_KEY not in text  # names of env vars only
    assert description["settings"]["credential_env"] == ["ALIBABA_CLOUD_ACCESS_KEY_ID",
                                                         "ALIBABA_CLOUD_ACCESS_KEY_SECRET"]
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_ID", ACCESS_ID)
    monkeypatch.setenv("ALIBABA_CLOUD_ACCESS_KEY_SECRET", ACCESS_KEY)
    rebuilt = platform_for_description(description, client_factory=fake.connect)
    assert rebuilt.cancel_described(description) is True
    assert fake.stop_calls(description["cloud_id"]) == 1
    assert rebuilt.cancel_described(description) is False  # stopped already


def test_importing_the_platforms_imports_no_sdk():
    code = ("import sys, hpo_tools.platforms.pai_training, hpo_tools.platforms.paiflow; "
            "print([m for m in sys.modules if m.startswith('alibabacloud')])")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_env_names_prefer_the_users_own_over_those_hpo_tools_exported(monkeypatch):
    """[oss_config] accessKeyID=${AK}: the runner exports the keys as OSS_ACCESS_KEY_*; the
    names stored for other processes (assessor, kill, experiment run) must be AK/SK, which
    those processes have, not a mix with the runner's own exports."""
    from hpo_tools.platforms.credentials import EXPORTED_ENV, env_names_holding, mark_exported

    for name in ("OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "AK", "SK", EXPORTED_ENV):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("AK", "kid-1")
    monkeypatch.setenv("SK", "secret-1")
    monkeypatch.setenv("OSS_ACCESS_KEY_ID", "kid-1")
    monkeypatch.setenv("OSS_ACCESS_KEY_SECRET", "secret-1")
    assert env_names_holding("kid-1", "secret-1", ()) == ("AK", "OSS_ACCESS_KEY_SECRET")
    mark_exported(["OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET"])
    assert env_names_holding("kid-1", "secret-1", ()) == ("AK", "SK")
    # With only hpo-tools' names holding them, those are still found.
    monkeypatch.delenv("SK")
    assert env_names_holding("kid-1", "secret-1", ()) == ("AK", "OSS_ACCESS_KEY_SECRET")
