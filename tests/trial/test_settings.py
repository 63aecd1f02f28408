"""Parsing both trial-file formats into their trial plans, and every config error."""

from __future__ import annotations

import json

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.trial.plan import TrialVariables
from hpo_tools.trial.settings import load_trial_file, parse_trial_text

VARS = TrialVariables("EXP", "TRIAL", "/out/TRIAL", {"train_config.lr": 0.01, "emb": 16})

PLATFORM_FILE = """\
[platform_config]
name=Local
cmd1=python prepare.py --out ${NNI_OUTPUT_DIR}
cmd2=python train.py
  --lr ${train_config.lr}
  --tag ${params}
resume=1

[metric_config]
metric_type=summary
metric_source=${NNI_OUTPUT_DIR}/model/eval_val
final_mode=best
metric_dict={"auc": 1, "loss": -0.5}
optimize_mode=maximize

[params_config]
params_src_dst_filepath1=samples/pipeline.config,${NNI_OUTPUT_DIR}/pipeline.config
"""

CLASSIC_FILE = """\
[oss_config]
endpoint=http://oss-cn-beijing.aliyuncs.com
accessKeyID=${TEST_OSS_ID}
accessKeySecret=${TEST_OSS_SECRET}

[odps_config]
project_name=pai_rec_dev
odps_endpoint=http://service.odps.aliyun.com/api

[easyrec_cmd_config]
-name=easy_rec_ext
-project=algo_public
-Dversion="0.4.2"
-Dconfig=oss://bucket/easyrec_model.config
-Dcmd=train
-Dcluster={"ps":{"count":1,"cpu":1000},
"worker":{"count":3,"cpu":1000,"memory":40000}}
-Dedit_config_json={"train_config.num_steps": 100, "model_config.flag": true}
-Dmodel_dir=oss://bucket/eval_dist_test/

[metric_config]
auc_is_valid_play=0.5
auc_is_like=0.5
"""

ENV = {"TEST_OSS_ID": "AKIDexample", "TEST_OSS_SECRET": "secretvalue123"}


def parse(text, variables=VARS, environ=None):
    return parse_trial_text(text, source="trial.ini", variables=variables, environ=environ or ENV)


# -- platform format -------------------------------------------------------------------------


def test_platform_format_is_parsed_into_typed_settings():
    plan = parse(PLATFORM_FILE)
    assert plan.format == "platform"
    assert plan.platform.name == "local"
    assert [c.name for c in plan.stages[0].commands] == ["cmd1", "cmd2"]
    # Continuation lines of a Local command are one shell command, not several.
    assert plan.stages[0].commands[1].text == "python train.py --lr 0.01 --tag lr_0.01_emb_16"
    assert plan.resume is True
    assert plan.stages[0].metric.sources == ("/out/TRIAL/model/eval_val",)
    assert plan.stages[0].metric.metric_dict == {"auc": 1.0, "loss": -0.5}
    assert plan.stages[0].metric.final_mode == "best"
    assert plan.stages[0].config_writes[0].src == "samples/pipeline.config"
    assert plan.stages[0].config_writes[0].dst == "/out/TRIAL/pipeline.config"


def test_commands_run_in_numeric_order_not_text_order():
    text = "[platform_config]\nname=local\ncmd10=c\ncmd2=b\ncmd1=a\n" + _metric()
    plan = parse(text)
    # cmd10 after cmd2: numeric, not lexical order.
    assert [c.text for c in plan.stages[0].commands] == ["a", "b", "c"]


def _metric(extra=""):
    return '[metric_config]\nmetric_source=/m\nmetric_dict={"auc": 1}\n' + extra


def test_several_metric_sources_are_kept_in_order():
    text = (
        "[platform_config]\nname=Local\ncmd1=x\n[metric_config]\nmetric_dict={'auc': 1}\n"
        "metric_source_2=/b\nmetric_source_1=/a\nsource_list_final_mode=avg\n"
    )
    plan = parse(text)
    assert plan.stages[0].metric.sources == ("/a", "/b")
    assert plan.stages[0].metric.source_list_final_mode == "avg"
    # Old files wrote metric_dict as a Python literal; read safely, never eval'd.
    assert plan.stages[0].metric.metric_dict == {"auc": 1.0}


def test_metric_weight_lines_are_hpo_tools_01s_older_metric_dict():
    text = ("[platform_config]\nname=Local\ncmd1=x\n[metric_config]\nmetric_source=/m\n"
            "final_mode=final\nauc_is_like=0.25\nauc_is_valid_play=0.5\nloss_play_time=-0.25\n")
    plan = parse(text)
    assert plan.stages[0].metric.metric_dict == {
        "auc_is_like": 0.25, "auc_is_valid_play": 0.5, "loss_play_time": -0.25}


@pytest.mark.parametrize(("lines", "message"), [
    # a typo of a key is still a typo: its value is not a weight
    ("final_mod=final\nauc=1\n", r"\[metric_config\] final_mod: unknown key.*final_mode"),
    # beside metric_dict, a weight line is an unknown key
    ('metric_dict={"auc": 1}\nctr=1\n', r"\[metric_config\] ctr: unknown key"),
])
def test_metric_weight_lines_keep_typos_errors(lines, message):
    text = "[platform_config]\nname=Local\ncmd1=x\n[metric_config]\nmetric_source=/m\n" + lines
    with pytest.raises(ConfigError, match=message):
        parse(text)


def test_maxcompute_platform_keeps_command_lines_and_needs_odps():
    text = (
        "[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext\n-project=algo_public\n"
        "-Dconfig=oss://b/c.config\n" + _metric()
        + "[odps_config]\nproject_name=p\nodps_endpoint=http://e\n"
        + "[oss_config]\naccessKeyID=${TEST_OSS_ID}\naccessKeySecret=${TEST_OSS_SECRET}\n"
    )
    plan = parse(text)
    assert plan.platform.name == "maxcompute"
    # Unindented "-Dk=v" lines continue the PAI command; newlines are kept for MaxCompute.
    assert plan.stages[0].commands[0].text.splitlines() == [
        "PAI -name easy_rec_ext",
        "-project=algo_public",
        "-Dconfig=oss://b/c.config",
    ]
    options = dict(plan.platform.options)
    assert options["project"] == "p" and options["secret_access_key"] == "secretvalue123"


def test_jinja_loop_generates_commands():
    text = (
        "[platform_config]\nname=Local\n"
        "{% for fold in range(3) %}\ncmd{{ fold + 1 }}=train --fold {{ fold }}\n{% endfor %}\n"
        + _metric()
    )
    plan = parse(text)
    assert [c.text for c in plan.stages[0].commands] == [f"train --fold {i}" for i in range(3)]


def test_credentials_are_collected_for_the_masker_and_kept_out_of_repr():
    plan = parse(CLASSIC_FILE)
    assert set(plan.secrets) == {"AKIDexample", "secretvalue123"}
    # A plan object printed in a log line must not leak the keys.
    assert "secretvalue123" not in repr(plan)
    assert "AKIDexample" not in repr(plan)


# -- classic format --------------------------------------------------------------------------


def test_classic_format_builds_one_pai_command_with_params_merged():
    plan = parse(CLASSIC_FILE)
    assert plan.format == "classic" and plan.platform.name == "maxcompute"
    lines = plan.stages[0].commands[0].text.splitlines()
    assert lines[0] == "PAI -name easy_rec_ext -project algo_public"
    assert "-Dversion=0.4.2" in lines  # quotes stripped
    # Multi-line JSON cluster compacted into one value.
    assert (
        "-Dcluster='{\"ps\":{\"count\":1,\"cpu\":1000},\"worker\":{\"count\":3,\"cpu\":1000,"
        "\"memory\":40000}}'" in lines
    )
    # The tuner's parameters are merged into the user's own edits (JSON, never eval).
    assert dict(plan.stages[0].config_writes[0].edits) == {
        "train_config.num_steps": 100,
        "model_config.flag": True,
        "train_config.lr": 0.01,
        "emb": 16,
    }
    edit_line = next(x for x in lines if x.startswith("-Dedit_config_json="))
    edits = dict(plan.stages[0].config_writes[0].edits)
    assert json.loads(edit_line.split("=", 1)[1].strip("'")) == edits


def test_classic_model_dir_gets_experiment_and_trial_appended():
    plan = parse(CLASSIC_FILE)
    # Concurrent trials must not write into one model directory.
    assert plan.model_dir == "oss://bucket/eval_dist_test/EXP_TRIAL"
    assert "-Dmodel_dir=oss://bucket/eval_dist_test/EXP_TRIAL" in plan.stages[0].commands[0].text
    assert plan.stages[0].metric.sources == ("oss://bucket/eval_dist_test/EXP_TRIAL/eval_val/",)
    assert plan.stages[0].metric.metric_dict == {"auc_is_valid_play": 0.5, "auc_is_like": 0.5}


def test_classic_nested_choice_parameter_becomes_edits():
    variables = TrialVariables("E", "T", "/o", {"opt": {"_name": "adam", "a.lr": 0.1}})
    plan = parse(CLASSIC_FILE, variables=variables)
    assert dict(plan.stages[0].config_writes[0].edits)["opt"] == "adam"
    assert dict(plan.stages[0].config_writes[0].edits)["a.lr"] == 0.1


# -- errors ----------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("[platform_config]\nname=Local\ncmd1=x\n[metric_cofig]\n",
         r"trial\.ini: unknown section \[metric_cofig\] \(did you mean 'metric_config'\?\)"),
        ("[platform_config]\nname=Local\ncmd1=x\nreusme=1\n" + _metric(),
         r"\[platform_config\] reusme: unknown key \(did you mean 'resume'\?\)"),
        ("[platform_config]\nname=Local\ncmd1=x\n" + _metric("final_mod=best\n"),
         r"\[metric_config\] final_mod: unknown key \(did you mean 'final_mode'\?\)"),
        ("[platform_config]\ncmd1=x\n" + _metric(),
         r"\[platform_config\] name is required but missing"),
        ("[platform_config]\nname=Local\n" + _metric(),
         r"\[platform_config\] cmd1 is required but missing"),
        ("[platform_config]\nname=Locl\ncmd1=x\n" + _metric(),
         r"\[platform_config\] name: expected one of [a-z, ]*local, maxcompute[a-z, ]*, "
         r"got 'Locl'"),
        ("[platform_config]\nname=Local\ncmd1=x\nresume=maybe\n" + _metric(),
         r"\[platform_config\] resume: expected 0 or 1"),
        ("[platform_config]\nname=Local\ncmd1=x\n[metric_config]\nmetric_source=/m\n",
         r"\[metric_config\] metric_dict is required but missing"),
        ("[platform_config]\nname=Local\ncmd1=x\n[metric_config]\nmetric_dict={\"auc\": 1}\n",
         r"\[metric_config\] metric_source is required but missing"),
        ("[platform_config]\nname=Local\ncmd1=x\n[metric_config]\nmetric_source=/m\n"
         "metric_dict={auc: 1\n",
         r"\[metric_config\] metric_dict: expected a JSON object"),
        ("[platform_config]\nname=Local\ncmd1=x\n" + _metric("optimize_mode=max\n"),
         r"\[metric_config\] optimize_mode: expected one of maximize, minimize"),
        ("[platform_config]\nname=Local\ncmd1=x\n" + _metric() + "[params_config]\n"
         "params_src_dst_filepath1=only_one\n",
         r"\[params_config\] params_src_dst_filepath1: expected SRC,DST"),
        ("[platform_config]\nname=Local\ncmd1=x ${undefined_thing}\n" + _metric(),
         r"\[platform_config\] cmd1: \$\{undefined_thing\} is not defined"),
        ("[platform_config]\nname=MaxCompute\ncmd1=x\n" + _metric(),
         r"\[odps_config\] is required for the MaxCompute platform"),
        ("[platform_config]\nname=Local\ncmd1=x\n[metric_config]\n"
         "metric_source=hdfs://nn:9000/m/../eval_val\nmetric_dict={\"auc\": 1}\n",
         r"\[metric_config\] metric_source: hdfs://nn:9000/m/\.\./eval_val: '\.\.' is not "
         r"allowed in an HDFS path"),
        ("[platform_config]\nname=Local\ncmd1=x\n[metric_config]\nmetric_type=stdout\n"
         "metric_source=cmd3\nmetric_dict={\"auc=(.*)\": 1}\n",
         r"\[metric_config\] metric_source: 'cmd3': reading one job's own log .* needs a "
         r"platform that reads its jobs' logs \(DLC\); here leave metric_source out"),
        ("[platform_config]\nname=Local\ncmd1=x\n" + _metric() + "[params_config]\n"
         "params_src_dst_filepath1=a.config,hdfs://nn:80x/b.config\n",
         r"\[params_config\] params_src_dst_filepath1: hdfs://nn:80x/b.config: the port is not "
         r"a number"),
        ("[other]\nx=1\n", r"not a trial file"),
        ("[platform_confg]\nname=Local\ncmd1=x\n" + _metric(),
         r"not a trial file: .* \(did you mean 'platform_config'\?\)"),
        ("name=Local\n", r"trial\.ini:1: expected a \[section\] header"),
        ("[platform_config]\nname=Local\nname=Other\n", r"trial\.ini:3: \[platform_config\] name "
         r"appears twice"),
        ("[platform_config]\nname=Local\ncmd1={{ nope }}\n", r"trial\.ini:3: Jinja: 'nope' is"),
    ],
)
def test_config_error_is_one_line_naming_file_section_and_key(text, message):
    with pytest.raises(ConfigError, match=message) as info:
        parse(text)
    # One line, so the CLI prints one "error: ..." line.
    assert "\n" not in str(info.value)


@pytest.mark.parametrize(
    ("replace", "by", "message"),
    [
        ("-Dmodel_dir=oss://bucket/eval_dist_test/\n", "",
         r"\[easyrec_cmd_config\] -Dmodel_dir is required"),
        ("-Dcmd=train", "-cmd=train", r"\[easyrec_cmd_config\] -cmd: unknown key"),
        ('-Dedit_config_json={"train_config.num_steps": 100, "model_config.flag": true}',
         "-Dedit_config_json={'a': eval('1')}",
         r"\[easyrec_cmd_config\] -Dedit_config_json: is not valid JSON"),
        ("auc_is_like=0.5", "auc_is_like=high",
         r"\[metric_config\] auc_is_like: expected a metric weight"),
        ("accessKeyID=${TEST_OSS_ID}", "accessKeyId=x",
         r"\[oss_config\] accessKeyId: unknown key \(did you mean 'accessKeyID'\?\)"),
        ("project_name=pai_rec_dev\n", "", r"\[odps_config\] project_name is required"),
    ],
)
def test_classic_config_errors(replace, by, message):
    assert replace in CLASSIC_FILE
    with pytest.raises(ConfigError, match=message):
        parse(CLASSIC_FILE.replace(replace, by))


def test_classic_edit_config_json_may_be_a_python_dict_as_the_old_tool_took_it():
    text = CLASSIC_FILE.replace(
        '-Dedit_config_json={"train_config.num_steps": 100, "model_config.flag": true}',
        "-Dedit_config_json={'train_config.num_steps': 100, 'model_config.flag': True}",
    )
    plan = parse(text)
    # Read as literals (never evaluated), merged with the parameters as JSON would be...
    assert dict(plan.stages[0].config_writes[0].edits) == {
        "train_config.num_steps": 100, "model_config.flag": True,
        "train_config.lr": 0.01, "emb": 16}
    # ...and PAI receives JSON, whatever the file held.
    line = next(x for x in plan.stages[0].commands[0].text.splitlines()
                if x.startswith("-Dedit_config_json="))
    assert json.loads(line.split("=", 1)[1].strip("'"))["model_config.flag"] is True


def test_missing_environment_variable_for_a_credential_is_an_error():
    with pytest.raises(ConfigError, match=r"\[oss_config\] accessKeySecret: \$\{TEST_OSS_SECRET\}"):
        parse(CLASSIC_FILE, environ={"TEST_OSS_ID": "x"})


def test_unreadable_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read trial file"):
        load_trial_file(tmp_path / "missing.ini", variables=VARS)


def test_load_trial_file_names_the_path_in_errors(tmp_path):
    path = tmp_path / "trial.ini"
    path.write_text("[platform_config]\nname=Local\n")
    with pytest.raises(ConfigError, match=str(path)):
        load_trial_file(path, variables=VARS)


def test_oss_config_is_exported_when_the_environment_has_no_oss_credentials():
    from hpo_tools.trial_files import export_oss_credentials

    plan = parse(CLASSIC_FILE)
    environ = {}
    names = export_oss_credentials(plan, environ)
    # storage and Local jobs read these names; the trial file's keys now reach them.
    assert names == ["OSS_ACCESS_KEY_ID", "OSS_ACCESS_KEY_SECRET", "OSS_ENDPOINT"]
    assert environ == {"OSS_ACCESS_KEY_ID": "AKIDexample",
                       "OSS_ACCESS_KEY_SECRET": "secretvalue123",
                       "OSS_ENDPOINT": "http://oss-cn-beijing.aliyuncs.com"}


def test_oss_credentials_already_in_the_environment_are_kept():
    from hpo_tools.trial_files import export_oss_credentials

    environ = {"OSS_ENDPOINT": "http://mine"}
    # A partial override would mix two accounts' keys.
    assert export_oss_credentials(parse(CLASSIC_FILE), environ) == []
    assert environ == {"OSS_ENDPOINT": "http://mine"}


def test_a_malformed_pai_command_is_an_error_before_any_command_runs():
    text = (
        "[platform_config]\nname=MaxCompute\ncmd1=PAI -name easy_rec_ext -Dcmd=train\n"
        "cmd2=PAI -name easy_rec_ext -Dcmd=evaluate\n-Dbroken\n"
        '[metric_config]\nmetric_source=/m\nmetric_dict={"auc": 1}\n'
        "[odps_config]\nproject_name=p\nodps_endpoint=http://odps\n"
    )
    # Found when the file is read, not hours later when cmd1 has finished and cmd2's turn comes.
    with pytest.raises(ConfigError, match=r"\[platform_config\] cmd2: PAI command: '-Dbroken'"):
        parse(text)


def test_classic_string_parameter_with_a_quote_reaches_pai_intact():
    from hpo_tools.platforms.maxcompute import parse_command

    variables = TrialVariables("EXP", "TRIAL", "/out", {"model_config.name": "it's \"x\" \\y"})
    plan = parse(CLASSIC_FILE, variables=variables)
    parameters = parse_command(plan.stages[0].commands[0].text).parameters
    # The single-quoted form would end at the apostrophe; PAI must get the JSON as it was.
    assert json.loads(parameters["edit_config_json"])["model_config.name"] == "it's \"x\" \\y"
    assert json.loads(parameters["cluster"])["ps"] == {"count": 1, "cpu": 1000}


def test_classic_value_split_over_lines_names_its_key():
    text = CLASSIC_FILE.replace("-Dcmd=train", "-Dselected_cols=label,\nc1,c2")
    assert "-Dselected_cols=label," in text
    with pytest.raises(ConfigError, match=r"\[easyrec_cmd_config\] -Dselected_cols: PAI command"):
        parse(text)


@pytest.mark.parametrize(
    "line", ["accessKeySecret LiteralSecret99", "accessKeySecret: LiteralSecret99"]
)
def test_a_credential_line_without_equals_is_an_error_that_does_not_show_it(line):
    text = PLATFORM_FILE + f"[oss_config]\nendpoint=http://oss\naccessKeyID=AKIDlit\n{line}\n"
    # Not glued to accessKeyID's value (wrong keys, found only when a job is refused)...
    with pytest.raises(ConfigError, match=r"trial\.ini:\d+: cannot parse line") as info:
        parse(text)
    # ...and the one-line error, which goes to stderr, does not quote the key.
    assert "LiteralSecret99" not in str(info.value)
