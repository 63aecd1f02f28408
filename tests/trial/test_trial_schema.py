"""Trial edits behave like EasyRec's ``edit_config`` (docs/config-editor.md, "Schema in
trials"): with a schema an absent field it knows is created, by the tuner's edits and the
file's own alike; an installed EasyRec's schema is found without importing EasyRec; without a
schema the classic file's own ``-Dedit_config_json`` edit of an absent field is left to EasyRec
on the platform with one notice, while the tuner's stays an error.

The "installed EasyRec" is a real module: ``easy_rec/python/protos/pipeline_pb2.py`` generated
by protoc (grpcio-tools) from tests/protos into a temporary directory put on ``PYTHONPATH`` of
the hpo-tools processes under test. Classic runs go to PAI through
:class:`tests.trial.test_classic_format.LocalEasyRecStandIn` (in process) or through the fake
cloud (``HPO_TOOLS_FAKE_CLOUD``: fakes of the OSS and MaxCompute SDK clients, in subprocesses).
"""

from __future__ import annotations

import io
import json
import logging
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hpo_tools import cli
from hpo_tools.check import check_trial_file
from hpo_tools.errors import ConfigError, ConfigPathError
from hpo_tools.pbtxt import Document
from hpo_tools.pbtxt.pb2_source import find_module_source, load_pb2_source
from hpo_tools.pbtxt.schema import load_schema
from hpo_tools.trial.paths import resolve_paths
from hpo_tools.trial.plan import TrialVariables
from hpo_tools.trial.reporter import ConsoleReporter
from hpo_tools.trial.runner import TrialContext, run_plan
from hpo_tools.trial.schema import ConfigSchema
from hpo_tools.trial_files import prepare_trial
from tests.metrics.eventlib import append_events, event_file, scalar_event, version_event

from .conftest import LR_PATH, PIPELINE, TRAIN
from .test_classic_format import LocalEasyRecStandIn

REPO = Path(__file__).resolve().parents[2]
PROTOS = REPO / "tests" / "protos"
NOTICE = "left to EasyRec's edit_config on the platform"
USER_KEY = "train_config.save_checkpoints_steps"  # in EasyRec's TrainConfig, not in PIPELINE
TUNER_KEY = "train_config.keep_checkpoint_max"  # the same


@pytest.fixture(scope="module")
def schema():
    return load_schema(proto_path=PROTOS, message="easyrec_like.EasyRecConfig")


def _protoc(root: Path, *files: str) -> None:
    subprocess.run(
        [sys.executable, "-m", "grpc_tools.protoc", f"-I{root}", f"--python_out={root}", *files],
        check=True, capture_output=True, text=True,
    )


@pytest.fixture(scope="module")
def easyrec_site(tmp_path_factory) -> Path:
    """A directory holding an importable ``easy_rec`` package whose
    ``easy_rec/python/protos/pipeline_pb2.py`` protoc generated from tests/protos. Its
    ``__init__`` leaves an ``IMPORTED`` file when it runs (the real one imports TensorFlow)."""
    site = tmp_path_factory.mktemp("site")
    protos = site / "easy_rec" / "python" / "protos"
    protos.mkdir(parents=True)
    shutil.copy(PROTOS / "easyrec_like.proto", protos / "pipeline.proto")
    _protoc(site, "easy_rec/python/protos/pipeline.proto")
    (site / "easy_rec" / "__init__.py").write_text(
        "from pathlib import Path\nPath(__file__).with_name('IMPORTED').touch()\n"
    )
    (site / "easy_rec" / "python" / "__init__.py").write_text("")
    (protos / "__init__.py").write_text("")
    return site


def _env(site: Path | None, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("NNI_", "HPO_TOOLS_"))}
    paths = [str(site)] if site is not None else []
    env.update(PYTHONPATH=os.pathsep.join([*paths, str(REPO)]), **extra)
    return env


def _marker(site: Path) -> Path:
    return site / "easy_rec" / "IMPORTED"


# -- an installed EasyRec's schema, read from its source --------------------------------------


def test_the_generated_easy_rec_module_is_importable(easyrec_site):
    # The stand-in for an installed EasyRec is a real module (and its marker works).
    _marker(easyrec_site).unlink(missing_ok=True)
    done = subprocess.run(
        [sys.executable, "-c", "import easy_rec.python.protos.pipeline_pb2 as m; "
         "print(m.EasyRecConfig.DESCRIPTOR.full_name)"],
        env=_env(easyrec_site), capture_output=True, text=True, timeout=60,
    )
    assert done.stdout.strip() == "easyrec_like.EasyRecConfig", done.stderr
    assert _marker(easyrec_site).exists()
    _marker(easyrec_site).unlink()


def test_a_pb2_module_is_read_from_its_source_without_importing_it(easyrec_site, monkeypatch):
    monkeypatch.syspath_prepend(str(easyrec_site))
    path = find_module_source("easy_rec.python.protos.pipeline_pb2")
    assert path == easyrec_site / "easy_rec/python/protos/pipeline_pb2.py"
    descriptor = load_pb2_source(path, "EasyRecConfig")
    assert descriptor.full_name == "easyrec_like.EasyRecConfig"
    assert descriptor.fields_by_name["train_config"].message_type.full_name == (
        "easyrec_like.TrainConfig")
    # Nothing of easy_rec ran (its __init__ imports TensorFlow) or stays in this process.
    assert not _marker(easyrec_site).exists()
    assert not any(name == "easy_rec" or name.startswith("easy_rec.") for name in sys.modules)
    assert find_module_source("no_such_package_hpo.python.protos.pipeline_pb2") is None


def test_a_pb2_module_is_read_with_the_files_it_imports(tmp_path):
    # EasyRec's pipeline.proto imports ~40 sibling files; each is read from its own _pb2.
    pkg = tmp_path / "rec" / "protos"
    pkg.mkdir(parents=True)
    (pkg / "train.proto").write_text(
        'syntax = "proto2";\npackage rec;\nmessage TrainConfig { optional uint32 num_steps = 1; }\n'
    )
    (pkg / "pipeline.proto").write_text(
        'syntax = "proto2";\npackage rec;\nimport "rec/protos/train.proto";\n'
        'import "google/protobuf/wrappers.proto";\n'
        "message Config { optional TrainConfig train_config = 1;\n"
        "  optional google.protobuf.StringValue note = 2; }\n"
    )
    _protoc(tmp_path, "rec/protos/train.proto", "rec/protos/pipeline.proto")
    descriptor = load_pb2_source(pkg / "pipeline_pb2.py", "Config")
    train = descriptor.fields_by_name["train_config"].message_type
    assert "num_steps" in train.fields_by_name
    assert descriptor.fields_by_name["note"].message_type.full_name == (
        "google.protobuf.StringValue")
    # A sibling that is not there is named.
    (pkg / "train_pb2.py").unlink()
    with pytest.raises(ConfigError, match=r"imports rec/protos/train.proto.*train_pb2.py"):
        load_pb2_source(pkg / "pipeline_pb2.py", "Config")


def test_a_protoc_3_module_with_a_latin1_serialized_pb_is_read(tmp_path):
    # protoc 3.x (which EasyRec's own scripts use) wrote serialized_pb=_b('...'), a str
    # literal encoded as latin-1, instead of a bytes literal.
    from google.protobuf import descriptor_pb2

    out = tmp_path / "set.pb"
    subprocess.run([sys.executable, "-m", "grpc_tools.protoc", f"-I{PROTOS}",
                    f"--descriptor_set_out={out}", "easyrec_like.proto"], check=True)
    data = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file[0]
    old = tmp_path / "easyrec_like_pb2.py"
    old.write_text(
        "import sys\n_b=sys.version_info[0]<3 and (lambda x:x) or "
        "(lambda x:x.encode('latin1'))\nfrom google.protobuf import descriptor as _descriptor\n"
        "DESCRIPTOR = _descriptor.FileDescriptor(\n  name='easyrec_like.proto',\n"
        "  package='easyrec_like',\n  syntax='proto2',\n"
        f"  serialized_pb=_b({data.SerializeToString().decode('latin-1')!r})\n)\n"
    )
    descriptor = load_pb2_source(old, "EasyRecConfig")
    assert "feature_configs" in descriptor.fields_by_name
    with pytest.raises(ConfigError, match="no message 'EasyRecConfg'.*did you mean"):
        load_pb2_source(old, "EasyRecConfg")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        (b"DESCRIPTOR = None\n", "no serialized file descriptor"),
        (b"def (:\n", "not Python"),
        (b"x = 1\x00\n", "not Python"),
        (b"DESCRIPTOR = AddSerializedFile(b'\\xff\\xff')\n",
         "its serialized file descriptor does not decode"),
    ],
)
def test_a_file_that_is_no_pb2_module_is_refused_with_its_path(tmp_path, content, expected):
    plain = tmp_path / "pipeline_pb2.py"
    plain.write_bytes(content)
    with pytest.raises(ConfigError, match=f"^{plain}: {expected}"):
        load_pb2_source(plain, "EasyRecConfig")


def test_an_installed_schema_is_used_only_for_configs_it_describes(schema):
    installed = ConfigSchema(lambda: schema, origin="installed", implicit=True)
    easyrec = Document.parse(PIPELINE)
    other = Document.parse('model_name: "x"\ntrain_config { num_steps: 1 }\n')
    assert installed.for_document(easyrec) is schema
    # A trial.ini may edit protobuf text of another kind: a guessed schema stays out of it.
    assert installed.for_document(other) is None
    # A schema the user gave is used for every config.
    assert ConfigSchema.given(schema).for_document(other) is schema
    assert ConfigSchema.none().for_document(easyrec) is None


# -- without a schema: the classic file's own edits are left to EasyRec -----------------------


def _classic(tmp_path: Path, edits: dict, name: str = "config_begin.ini") -> Path:
    config = tmp_path / "pipeline.config"
    config.write_text(PIPELINE)
    trial = tmp_path / name
    trial.write_text(
        "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
        "[easyrec_cmd_config]\n-name=easy_rec_ext\n-project=algo_public\n"
        f"-Dconfig={config}\n-Dedit_config_json={json.dumps(edits)}\n"
        f"-Dmodel_dir={tmp_path}/models\n[metric_config]\nauc=1\n"
    )
    return trial


def _pai_edits(platform: LocalEasyRecStandIn) -> dict:
    line = next(x for x in platform.pai_commands[0].splitlines()
                if x.startswith("-Dedit_config_json="))
    return json.loads(line.partition("=")[2].strip("'"))


def _notices(caplog: pytest.LogCaptureFixture) -> list[str]:
    return [r.getMessage() for r in caplog.records if NOTICE in r.getMessage()]


def test_a_classic_edit_of_an_absent_field_goes_to_easyrec_with_one_notice(tmp_path, caplog):
    trial = _classic(tmp_path, {USER_KEY: 50})
    reporter = ConsoleReporter({LR_PATH: 0.03}, experiment_id="E1", trial_id="T1",
                               stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    platform = LocalEasyRecStandIn()
    with caplog.at_level(logging.WARNING):
        outcome = run_plan(plan, reporter, context, platform=platform, interval=0.05,
                           schema=ConfigSchema.none())
    assert outcome.status == "succeeded", outcome.message
    # EasyRec on the platform gets the edit and creates the field...
    assert _pai_edits(platform)[USER_KEY] == 50
    # ...the local record copy cannot have it, and says so once, naming the key and the path.
    copy = (tmp_path / "exp/E1/trials/T1/configs/pipeline.config").read_text()
    assert "save_checkpoints_steps" not in copy and "learning_rate: 0.03" in copy
    notices = _notices(caplog)
    assert len(notices) == 1 and "\n" not in notices[0]
    assert notices[0].startswith(f"{trial}: [easyrec_cmd_config] -Dedit_config_json: {USER_KEY}")


def test_check_agrees_and_still_catches_a_search_space_typo(tmp_path, caplog):
    trial = _classic(tmp_path, {USER_KEY: 50})
    space = tmp_path / "space.json"
    space.write_text(json.dumps({
        LR_PATH: {"_type": "choice", "_value": [0.01, 0.1]},
        "train_config.num_stepz": {"_type": "choice", "_value": [10, 20]},
    }))
    with caplog.at_level(logging.WARNING):
        problems = check_trial_file(trial, space, schema=ConfigSchema.none())
    # The tuner's key naming an absent field is a typo until a schema says otherwise...
    assert len(problems) == 1, problems
    assert "num_stepz" in problems[0] and "did you mean 'num_steps'" in problems[0]
    # ...the file's own edit is not a problem: one notice, not one per corner.
    assert len(_notices(caplog)) == 1


def test_a_finetune_run_notices_the_edit_once_not_once_a_day(tmp_path, caplog):
    from hpo_tools.finetune import read_finetune_file

    trial = _classic(tmp_path, {USER_KEY: 50}, name="config_finetune.ini")
    text = trial.read_text().replace(f"-Dmodel_dir={tmp_path}/models",
                                     f"-Dmodel_dir={tmp_path}/models/{{bizdate}}")
    text = text.replace('{"train_config', f'{{"train_config.fine_tune_checkpoint": "{tmp_path}/b", '
                        '"train_config', 1)
    trial.write_text(text)
    params = {LR_PATH: 0.02}
    paths = resolve_paths("E1", "T1", exp_dir=tmp_path / "exp", environ={})
    variables = TrialVariables("E1", "T1", str(paths.trial_dir), params)
    plan = read_finetune_file(trial, variables=variables, environ={}, start_time="20220614",
                              end_time="20220615").to_plan()
    reporter = ConsoleReporter(params, experiment_id="E1", trial_id="T1", stream=io.StringIO())
    with caplog.at_level(logging.WARNING):
        outcome = run_plan(plan, reporter, TrialContext("E1", "T1", params, paths),
                           interval=0.05, platform=LocalEasyRecStandIn(),
                           schema=ConfigSchema.none())
    assert outcome.status == "succeeded", outcome.message
    notices = _notices(caplog)
    # One notice per path for the trial (the checkpoint and the user's edit), not per day.
    assert len(notices) == 2
    assert sum(f"{USER_KEY} is not in" in n for n in notices) == 1
    assert sum("train_config.fine_tune_checkpoint is not in" in n for n in notices) == 1


# -- with a schema: absent fields it knows are created ----------------------------------------


def test_with_a_schema_the_classic_edit_is_created_in_the_copy_and_a_typo_refused(
    tmp_path, schema, caplog
):
    trial = _classic(tmp_path, {USER_KEY: 50})
    reporter = ConsoleReporter({LR_PATH: 0.03}, experiment_id="E1", trial_id="T1",
                               stream=io.StringIO())
    plan, context = prepare_trial(trial, reporter, exp_dir=tmp_path / "exp")
    with caplog.at_level(logging.WARNING):
        outcome = run_plan(plan, reporter, context, platform=LocalEasyRecStandIn(),
                           interval=0.05, schema=schema)
    assert outcome.status == "succeeded", outcome.message
    # The copy is what EasyRec trains with: the field created under its parent.
    copy = (tmp_path / "exp/E1/trials/T1/configs/pipeline.config").read_text()
    assert "save_checkpoints_steps: 50" in copy and _notices(caplog) == []

    # The schema knows EasyRec has no num_stepz: refused before PAI is asked for anything.
    (tmp_path / "typo").mkdir()
    typo = _classic(tmp_path / "typo", {"train_config.num_stepz": 50})
    plan, context = prepare_trial(typo, reporter, exp_dir=tmp_path / "exp2")
    platform = LocalEasyRecStandIn()
    with pytest.raises(ConfigPathError, match="no field 'num_stepz'.*did you mean 'num_steps'"):
        run_plan(plan, reporter, context, platform=platform, interval=0.05, schema=schema)
    assert platform.pai_commands == []
    space = tmp_path / "space.json"
    space.write_text(json.dumps({LR_PATH: {"_type": "choice", "_value": [0.01]}}))
    # check agrees with run, both ways.
    assert check_trial_file(trial, space, schema=schema) == []
    problems = check_trial_file(typo, space, schema=schema)
    assert len(problems) == 1 and "num_stepz" in problems[0]


def _platform_trial(tmp_path: Path) -> Path:
    config = tmp_path / "pipeline.config"
    config.write_text(PIPELINE)
    model = tmp_path / "model"
    trial = tmp_path / "trial.ini"
    trial.write_text(
        f"[platform_config]\nname=Local\n"
        f"cmd1={TRAIN} --config {tmp_path}/edited.config --model_dir {model} --steps 1 "
        "--sleep 0\n"
        f"[metric_config]\nmetric_source={model}/eval_val/\nmetric_dict={{\"auc\": 1}}\n"
        f"[params_config]\nparams_src_dst_filepath1={config},{tmp_path}/edited.config\n"
    )
    return trial


def test_run_and_check_options_give_the_tuner_edits_a_schema(tmp_path, capsys):
    trial = _platform_trial(tmp_path)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({TUNER_KEY: {"_type": "choice", "_value": [3, 5]}}))
    options = ["--proto-path", str(PROTOS), "--message", "easyrec_like.EasyRecConfig"]
    params = json.dumps({TUNER_KEY: 3})
    # No schema: the tuner's absent field is a typo, for check and for run.
    assert cli.main(["check", "--config", str(trial), "--search-space", str(space),
                     "--no-easyrec-schema"]) == 1
    assert f"{TUNER_KEY}: no field 'keep_checkpoint_max'" in capsys.readouterr().out
    assert cli.main(["run", "--config", str(trial), "--params", params,
                     "--exp_dir", str(tmp_path / "exp"), "--no-easyrec-schema"]) == 2
    assert "no field 'keep_checkpoint_max'" in capsys.readouterr().err
    # The schema knows the field: created, and check agrees.
    assert cli.main(["check", "--config", str(trial), "--search-space", str(space),
                     *options]) == 0
    assert cli.main(["run", "--config", str(trial), "--params", params,
                     "--exp_dir", str(tmp_path / "exp"), *options]) == 0
    assert "keep_checkpoint_max: 3" in (tmp_path / "edited.config").read_text()


@pytest.mark.parametrize("entry", ["python -m hpo_tools.run", "run", "check", "finetune-daily"])
def test_every_trial_entry_point_refuses_an_unusable_schema_option(tmp_path, capsys, entry):
    from hpo_tools.run import main

    trial = str(_platform_trial(tmp_path))
    space = tmp_path / "space.json"
    space.write_text(json.dumps({TUNER_KEY: {"_type": "choice", "_value": [3]}}))
    bad = ["--proto-module", "no_such_module_pb2:Config"]
    args = {
        "python -m hpo_tools.run": ["--config", trial, "--exp_dir", str(tmp_path / "e")],
        "run": ["run", "--config", trial, "--params", "{}", "--exp_dir", str(tmp_path / "e")],
        "check": ["check", "--config", trial, "--search-space", str(space)],
        "finetune-daily": ["finetune-daily", "--config", trial, "--exp_dir", str(tmp_path / "e"),
                           "--bizdate", "20220616"],
    }[entry]
    code = main([*args, *bad]) if entry.startswith("python") else cli.main([*args, *bad])
    err = capsys.readouterr().err
    assert code == 2 and err.count("\n") == 1, err
    assert "--proto-module 'no_such_module_pb2:Config': cannot import" in err
    assert not (tmp_path / "edited.config").exists()  # nothing written, nothing launched


# -- an installed EasyRec, found by the entry points (subprocesses) ---------------------------


def _hpo_tools(module: str, *args: str, cwd: Path, env: dict) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", module, *args], cwd=cwd, env=env,
                          capture_output=True, text=True, timeout=120)


def test_hpo_tools_run_and_check_use_an_installed_easyrecs_schema(tmp_path, easyrec_site):
    trial = _platform_trial(tmp_path)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({TUNER_KEY: {"_type": "choice", "_value": [3, 5]}}))
    params = json.dumps({TUNER_KEY: 5})
    _marker(easyrec_site).unlink(missing_ok=True)
    env = _env(easyrec_site)

    checked = _hpo_tools("hpo_tools", "check", "--config", str(trial), "--search-space",
                         str(space), cwd=tmp_path, env=env)
    ran = _hpo_tools("hpo_tools", "run", "--config", str(trial), "--params", params,
                     cwd=tmp_path, env=env)
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert ran.returncode == 0, ran.stdout + ran.stderr
    assert "keep_checkpoint_max: 5" in (tmp_path / "edited.config").read_text()
    # EasyRec was found, not imported: its package __init__ (TensorFlow, for real) never ran.
    assert not _marker(easyrec_site).exists()

    refused = _hpo_tools("hpo_tools", "run", "--config", str(trial), "--params", params,
                         "--no-easyrec-schema", cwd=tmp_path, env=env)
    assert refused.returncode == 2 and "no field 'keep_checkpoint_max'" in refused.stderr


CLASSIC_FAKE_CLOUD = f"""\
[oss_config]
endpoint=http://oss-cn-hangzhou.aliyuncs.com
accessKeyID=${{FAKE_OSS_ID}}
accessKeySecret=${{FAKE_OSS_SECRET}}
[odps_config]
project_name=my_project
odps_endpoint=http://service.cn-hangzhou.maxcompute.aliyun.com/api
[easyrec_cmd_config]
-name=easy_rec_ext
-project=algo_public
-Dconfig=oss://bucket/configs/pipeline.config
-Dcmd=train
-Dedit_config_json={{"{USER_KEY}": 50}}
-Dmodel_dir=oss://bucket/models/
[metric_config]
auc=1
"""


@pytest.mark.parametrize(
    ("module", "options", "created"),
    [
        ("hpo_tools.run", [], True),
        # hpo_tools 0.1.x's trialCommand takes the same options
        ("hpo_tools.core.utils.run", ["--no-easyrec-schema"], False),
    ],
)
def test_the_trial_entry_points_apply_classic_edits_like_easyrec(
    tmp_path, easyrec_site, module, options, created
):
    cloud = tmp_path / "cloud"
    (cloud / "bucket/configs").mkdir(parents=True)
    (cloud / "bucket/configs/pipeline.config").write_text(PIPELINE)
    eval_dir = cloud / "bucket/models/standalone_standalone/eval_val"
    append_events(event_file(eval_dir, 1), version_event(), scalar_event(1, auc=0.75))
    (tmp_path / "config_begin.ini").write_text(CLASSIC_FAKE_CLOUD)
    _marker(easyrec_site).unlink(missing_ok=True)
    env = _env(easyrec_site, HPO_TOOLS_FAKE_CLOUD=str(cloud), HPO_TOOLS_FAKE_CLOUD_JOBS="succeed",
               FAKE_OSS_ID="dryRunOssId", FAKE_OSS_SECRET="dryRunOssSecret",
               ODPS_ACCESS_ID="dryRunOdpsId", ODPS_ACCESS_KEY="dryRunOdpsKey")

    done = _hpo_tools(module, "--config", "config_begin.ini", "--interval", "0.1", *options,
                      cwd=tmp_path, env=env)
    assert done.returncode == 0, done.stdout + done.stderr
    # PAI's EasyRec gets the user's edit either way.
    submitted = json.loads((cloud / ".maxcompute/submissions.jsonl").read_text())
    assert f'"{USER_KEY}":50' in submitted["command"]
    trial_dir = tmp_path / "exp/standalone/trials/standalone"
    copy = (trial_dir / "configs/pipeline.config").read_text()
    trial_log = (trial_dir / "trial.log").read_text()
    notices = [line for line in trial_log.splitlines() if NOTICE in line]
    if created:  # the installed EasyRec's schema: the record copy has the field, no notice
        assert "save_checkpoints_steps: 50" in copy and notices == []
    else:  # no schema: one notice, naming the file, the key and the path
        assert "save_checkpoints_steps" not in copy
        assert len(notices) == 1
        assert f"config_begin.ini: [easyrec_cmd_config] -Dedit_config_json: {USER_KEY}" in (
            notices[0])
    assert not _marker(easyrec_site).exists()
