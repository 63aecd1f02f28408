"""examples/search/dlc_easyrec/{begin,finetune}: checked as their READMEs say, and the begin
trial dry-run against the fake DLC and OSS (HPO_TOOLS_FAKE_CLOUD) with its dry_run_plan.json."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest

from hpo_tools import cli
from hpo_tools.cloud import ENV_FAKE_CLOUD

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "search" / "dlc_easyrec"
ENV = {
    "OSS_ENDPOINT": "oss-cn-beijing.aliyuncs.com",
    "OSS_ACCESS_KEY_ID": "LTAI5tExampleKeyId9",
    "OSS_ACCESS_KEY_SECRET": "exampleSecretValue987",
    "OSS_BUCKET": "hpo-bucket",
    "DLC_REGION": "cn-beijing",
    "DLC_WORKSPACE_ID": "67849",
    "DLC_DATA_SOURCE_ID": "d-5sf0ox5pw1pgi4vl7e",
    "EASYREC_IMAGE": "registry.example/easyrec:py36-tf1.15-0.7.4",
}


@pytest.fixture
def cloud(tmp_path, monkeypatch):
    root = tmp_path / "cloud"
    (root / ".dlc").mkdir(parents=True)
    (root / ENV["OSS_BUCKET"]).mkdir()
    shutil.copy(EXAMPLES / "begin" / "dry_run_plan.json", root / ".dlc" / "plan.json")
    monkeypatch.setenv(ENV_FAKE_CLOUD, str(root))
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    return root


@pytest.mark.parametrize("example", ["begin", "finetune"])
def test_example_passes_check(example, cloud, monkeypatch, capsys):
    monkeypatch.chdir(EXAMPLES / example)
    code = cli.main(["check", "--config", "trial.ini", "--search-space", "search_space.json"])
    assert code == 0, capsys.readouterr()
    assert not (cloud / ".dlc" / "submissions.jsonl").exists()  # check submits nothing


def test_begin_example_dry_run_scores_the_evaluator_and_sends_the_whole_job(
    cloud, tmp_path, monkeypatch, capsys
):
    monkeypatch.chdir(EXAMPLES / "begin")
    code = cli.main(["run", "--config", "trial.ini", "--params",
                     '{"model_config.dbmtl.l2_regularization": 1e-05}',
                     "--exp_dir", str(tmp_path / "exp")])
    out = capsys.readouterr().out
    assert code == 0, out
    assert '"default": 0.63' in out.splitlines()[-2]  # 0.5 * 0.66 + 0.5 * 0.6, last evaluation
    (submission,) = [json.loads(line) for line in
                     (cloud / ".dlc" / "submissions.jsonl").read_text().splitlines()]
    request = submission["request"]
    assert request["JobType"] == "TFJob" and request["WorkspaceId"] == "67849"
    assert [(s["Type"], s["PodCount"], s["Image"]) for s in request["JobSpecs"]] == [
        (role, 1, ENV["EASYREC_IMAGE"]) for role in ("Chief", "Worker", "PS", "Evaluator")]
    assert request["DataSources"] == [{"DataSourceId": ENV["DLC_DATA_SOURCE_ID"]}]
    assert request["UserCommand"] == (
        "python -m easy_rec.python.train_eval --pipeline_config_path "
        "/mnt/data/hpo_tools_example/dlc/standalone_standalone/pipeline.config --model_dir "
        "/mnt/data/hpo_tools_example/dlc/standalone_standalone/model --train_input_path "
        "/mnt/data/hpo_tools_example/data/train.csv --eval_input_path "
        "/mnt/data/hpo_tools_example/data/eval.csv")
    # the trial's edited config is where the pods read it (the bucket mounted at /mnt/data/)
    config = (cloud / ENV["OSS_BUCKET"] / "hpo_tools_example" / "dlc" / "standalone_standalone"
              / "pipeline.config").read_text()
    assert "l2_regularization: 1e-05" in config
