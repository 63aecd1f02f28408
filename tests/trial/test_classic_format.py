"""The classic config_begin.ini format end to end, with a local stand-in for PAI's easy_rec_ext.

The classic format always targets MaxCompute (``PAI -name easy_rec_ext ...``). Here the PAI
service is replaced at its boundary by :class:`LocalEasyRecStandIn`, a platform that parses the
PAI command the runner built and runs tests/trial/fake_train.py locally with the same
``-Dmodel_dir`` and ``-Dedit_config_json``, through the real Local platform. Everything else
(settings, templating, registry, metrics from ``<model_dir>/eval_val/``, reporting) is the
shipped path.
"""

from __future__ import annotations

import io
import json
import shlex

import pytest

from hpo_tools.platforms.local import LocalPlatform
from hpo_tools.platforms.maxcompute import MaxComputePlatform
from hpo_tools.testing.odps import FakeODPS
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import run_plan
from hpo_tools.trial.schema import ConfigSchema
from hpo_tools.trial_files import prepare_trial
from tests.metrics.eventlib import append_events, event_file, scalar_event, version_event

from .conftest import LR_PATH, TRAIN
from .fake_train import auc_for


class LocalEasyRecStandIn(LocalPlatform):
    """Runs ``PAI -name easy_rec_ext`` commands as a local fake trainer (test double for PAI)."""

    name = "local"

    def __init__(self):
        super().__init__(grace_period=0.5)
        self.pai_commands: list[str] = []

    def submit(self, command, **kwargs):
        self.pai_commands.append(command)
        params = {}
        for line in command.splitlines()[1:]:
            key, _, value = line.partition("=")
            params[key] = value.strip("'")
        local = (
            f"{TRAIN} --model_dir {shlex.quote(params['-Dmodel_dir'])} --steps 2"
            f" --edit_config_json {shlex.quote(params['-Dedit_config_json'])}"
        )
        return super().submit(local, **kwargs)


def test_classic_file_runs_with_params_merged_and_metrics_from_eval_val(tmp_path, monkeypatch):
    monkeypatch.setenv("HPO_TEST_AK_ID", "AKIDclassic0001")
    monkeypatch.setenv("HPO_TEST_AK_SECRET", "classicSecretValue01")
    model_root = tmp_path / "models"
    trial = tmp_path / "config_begin.ini"
    trial.write_text(
        "[oss_config]\nendpoint=http://oss-cn-beijing.aliyuncs.com\n"
        "accessKeyID=${HPO_TEST_AK_ID}\naccessKeySecret=${HPO_TEST_AK_SECRET}\n"
        "[odps_config]\nproject_name=pai_rec_dev\nodps_endpoint=http://service.odps.aliyun.com/api\n"
        "[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n"
        "-Dconfig=oss://bucket/pipeline.config\n-Dcmd=train\n"
        '-Dcluster={"ps":{"count":1,"cpu":1000},\n"worker":{"count":3,"cpu":1000}}\n'
        '-Dedit_config_json={"train_config.num_steps": 10}\n'
        f"-Dmodel_dir={model_root}/\n"
        "[metric_config]\nauc=1\n"
    )
    reporter = ConsoleReporter({LR_PATH: 0.03}, experiment_id="E1", trial_id="T1",
                               stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    platform = LocalEasyRecStandIn()
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.05)

    assert outcome.status == "succeeded", outcome.message
    # The model dir is per trial, and metrics were read from its eval_val/.
    assert (model_root / "E1_T1" / "eval_val").is_dir()
    # The trainer saw the tuner's lr through -Dedit_config_json (merged with the user's edits).
    assert reporter.final["default"] == pytest.approx(auc_for(0.03, 2), abs=1e-6)
    pai = platform.pai_commands[0]
    edit = json.loads(next(x for x in pai.splitlines() if x.startswith("-Dedit_config_json="))
                      .split("=", 1)[1].strip("'"))
    assert edit == {"train_config.num_steps": 10, LR_PATH: 0.03}
    assert pai.splitlines()[0] == "PAI -name easy_rec_ext -project algo_public"
    # The access keys are not part of the command sent to PAI.
    assert "classicSecretValue01" not in pai
    params = json.loads((tmp_path / "exp/E1/trials/T1/params.json").read_text())
    assert params["params"] == {LR_PATH: 0.03}


def test_classic_file_on_the_maxcompute_platform_with_fake_odps(tmp_path, monkeypatch):
    """The shipped MaxCompute path (pyodps replaced by FakeODPS) receives the PAI parameters."""
    monkeypatch.setenv("HPO_TEST_AK_ID", "AKIDclassic0002")
    monkeypatch.setenv("HPO_TEST_AK_SECRET", "classicSecretValue02")
    trial = tmp_path / "config_begin.ini"
    trial.write_text(
        "[oss_config]\nendpoint=http://oss\n"
        "accessKeyID=${HPO_TEST_AK_ID}\naccessKeySecret=${HPO_TEST_AK_SECRET}\n"
        "[odps_config]\nproject_name=pai_rec_dev\nodps_endpoint=http://odps\n"
        "[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n-Dversion=\"0.4.2\"\n"
        "-Dconfig=oss://bucket/pipeline.config\n"
        '-Dcluster={"ps":{"count":1,"cpu":1000},\n"worker":{"count":3,"cpu":1000}}\n'
        f"-Dmodel_dir={tmp_path}/models\n"
        "[metric_config]\nauc=1\n"
    )
    # What easy_rec_ext would have written: evaluation events in the trial's model dir.
    events = event_file(tmp_path / "models" / "E2_T2" / "eval_val", 1700000000)
    append_events(events, version_event(), scalar_event(100, auc=0.61),
                  scalar_event(200, auc=0.66))

    reporter = ConsoleReporter({LR_PATH: 0.03}, experiment_id="E2", trial_id="T2",
                               stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    fake = FakeODPS(polls=3)
    platform = MaxComputePlatform(**plan.platform.options, odps_factory=fake.connect,
                                  poll_interval=0.05)
    outcome = run_plan(plan, reporter, context, platform=platform, interval=0.05)

    assert outcome.status == "succeeded", outcome.message
    submitted = fake.submitted[0]
    assert (submitted["kind"], submitted["name"], submitted["project"]) == (
        "xflow", "easy_rec_ext", "algo_public")
    parameters = submitted["parameters"]
    # JSON arrives whole and valid, quotes stripped; the tuner's lr merged into the edits.
    assert json.loads(parameters["cluster"]) == {
        "ps": {"count": 1, "cpu": 1000}, "worker": {"count": 3, "cpu": 1000}}
    assert json.loads(parameters["edit_config_json"]) == {LR_PATH: 0.03}
    assert parameters["model_dir"] == f"{tmp_path}/models/E2_T2"
    assert parameters["version"] == "0.4.2"
    assert reporter.final["default"] == pytest.approx(0.66, abs=1e-6)
    # The registry record names the MaxCompute instance, never the keys.
    record = (tmp_path / "exp/E2/hpo-tools/jobs/T2.json").read_text()
    assert submitted["instance_id"] in record
    assert "classicSecretValue02" not in record and "AKIDclassic0002" not in record


def _classic(tmp_path, config, edit='{"train_config.num_steps": 10}'):
    trial = tmp_path / "config_begin.ini"
    trial.write_text(
        "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
        "[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n"
        f"-Dconfig={config}\n-Dedit_config_json={edit}\n-Dmodel_dir={tmp_path}/models\n"
        "[metric_config]\nauc=1\n"
    )
    return trial


def test_classic_trial_keeps_the_edited_config_it_sent_to_pai(tmp_path, pipeline):
    trial = _classic(tmp_path, pipeline)
    reporter = ConsoleReporter({LR_PATH: 0.03}, experiment_id="E3", trial_id="T3",
                               stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    outcome = run_plan(plan, reporter, context, platform=LocalEasyRecStandIn(),
                        interval=0.05)
    assert outcome.status == "succeeded", outcome.message
    copy = tmp_path / "exp/E3/trials/T3/configs/pipeline.config"
    # The trial's record of the config PAI trained with: user edits and tuner parameters.
    assert "learning_rate: 0.03" in copy.read_text()
    assert "num_steps: 10" in copy.read_text()
    params = json.loads((tmp_path / "exp/E3/trials/T3/params.json").read_text())
    assert params["configs"] == [str(copy)]


@pytest.mark.parametrize(
    ("edit", "params", "typo"),
    [
        # the file's own edit, its parent misspelt: no field EasyRec's edit_config could create
        ('{"train_confg.num_steps": 10}', {}, "train_confg"),
        # the tuner's edit of an absent field: a search-space typo (tests/trial/test_trial_schema.py
        # has the file's own edit of an absent field, left to EasyRec on the platform)
        ('{"train_config.num_steps": 10}', {"train_config.num_stepz": 10}, "num_stepz"),
    ],
)
def test_classic_bad_edit_path_launches_nothing(tmp_path, pipeline, edit, params, typo):
    from hpo_tools.errors import ConfigPathError

    trial = _classic(tmp_path, pipeline, edit=edit)
    reporter = ConsoleReporter(params, experiment_id="E4", trial_id="T4", stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    platform = LocalEasyRecStandIn()
    with pytest.raises(ConfigPathError, match=typo):
        run_plan(plan, reporter, context, platform=platform, interval=0.05,
                 schema=ConfigSchema.none())
    assert platform.pai_commands == []  # caught before PAI was asked for anything


def test_classic_unreadable_config_only_costs_the_copy(tmp_path):
    trial = _classic(tmp_path, tmp_path / "missing.config")
    reporter = ConsoleReporter({LR_PATH: 0.03}, experiment_id="E5", trial_id="T5",
                               stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    outcome = run_plan(plan, reporter, context, platform=LocalEasyRecStandIn(),
                        interval=0.05)
    # PAI reads -Dconfig itself (from OSS, with its own access); the trial still runs.
    assert outcome.status == "succeeded", outcome.message
    assert outcome.configs == []
