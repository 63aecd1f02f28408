"""``dlc submit ...`` lines (the DLC command-line tool's form) -> checked commands -> CreateJob."""

from __future__ import annotations

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.platforms.dlc_command import create_job_request, join_lines, parse_dlc_command

# EasyRec's DLC tutorial writes its job this way (shell line continuations, '\'' in a quote).
EASYREC_TFJOB = r"""dlc submit tfjob \
    --name=easy_rec_test \
    --command='python -m easy_rec.python.train_eval --edit_config_json='\''{"a.b":1, "c":2}'\''' \
    --data_sources=d-5sf0ox5pw1pgi4vl7e,d-second \
    --workspace_id=67849 \
    --priority=1 \
    --workers=2 \
    --worker_image=registry.example/easyrec:py36-tf1.15 \
    --worker_spec=ecs.g6.2xlarge \
    --ps=1 \
    --ps_image=registry.example/easyrec:py36-tf1.15 \
    --ps_spec=ecs.g6.2xlarge \
    --chief=true \
    --chief_image=registry.example/easyrec:py36-tf1.15 \
    --chief_spec=ecs.g6.2xlarge \
    --evaluators=1 \
    --evaluator_image=registry.example/easyrec:py36-tf1.15 \
    --evaluator_spec=ecs.g6.2xlarge
"""

# A trial.ini value spans lines without backslashes (configparser joins them with newlines).
INI_PYTORCH = """dlc submit pytorchjob --name=mnist_exp1_trial1
--command="python train.py --lr 0.01 --epochs 3"
--workspace_id 1234
--workers 1 --worker_image=pytorch:2.1 --worker_spec=ecs.gn6i-c4g1.xlarge
--envs=A=1,B=two"""


def _given(fields):
    """A model's ``to_map()`` without the empty lists the SDK adds for fields not set."""
    return {k: v for k, v in fields.items() if v != []}


def test_easyrec_tutorial_tfjob_keeps_its_command_whole_and_every_role():
    command = parse_dlc_command(EASYREC_TFJOB)
    assert (command.kind, command.job_type, command.name) == ("tfjob", "TFJob", "easy_rec_test")
    # The shell's '\'' idiom leaves the JSON single-quoted inside the pod command.
    assert command.user_command == (
        "python -m easy_rec.python.train_eval --edit_config_json='{\"a.b\":1, \"c\":2}'"
    )
    assert [(r.type, r.count, r.ecs_spec) for r in command.roles] == [
        ("Worker", 2, "ecs.g6.2xlarge"), ("PS", 1, "ecs.g6.2xlarge"),
        ("Chief", 1, "ecs.g6.2xlarge"), ("Evaluator", 1, "ecs.g6.2xlarge"),
    ]
    assert command.workspace_id == "67849"
    assert command.pods == 5


def test_create_job_request_is_the_sdks_model_with_every_field_mapped():
    from alibabacloud_pai_dlc20201203 import models

    request = create_job_request(parse_dlc_command(EASYREC_TFJOB), display_name="easy-hpo-1",
                                 envs={"HPO_TOOLS_COMMAND": "cmd1"})
    assert isinstance(request, models.CreateJobRequest)
    body = request.to_map()
    assert body["DisplayName"] == "easy-hpo-1" and body["JobType"] == "TFJob"
    assert body["WorkspaceId"] == "67849" and body["Priority"] == 1
    assert [d["DataSourceId"] for d in body["DataSources"]] == ["d-5sf0ox5pw1pgi4vl7e", "d-second"]
    assert _given(body["JobSpecs"][0]) == {
        "Type": "Worker", "PodCount": 2, "EcsSpec": "ecs.g6.2xlarge",
        "Image": "registry.example/easyrec:py36-tf1.15",
    }
    assert body["Envs"] == {"HPO_TOOLS_COMMAND": "cmd1"}
    assert body["UserCommand"].startswith("python -m easy_rec.python.train_eval")


def test_multi_line_ini_value_with_space_separated_flags_and_envs():
    command = parse_dlc_command(INI_PYTORCH)
    assert command.job_type == "PyTorchJob"
    assert command.user_command == "python train.py --lr 0.01 --epochs 3"
    assert command.workspace_id == "1234"
    body = create_job_request(command, display_name="n", envs={"HPO_TOOLS_COMMAND": "cmd2",
                                                              "A": "runner"}).to_map()
    # --envs of the command wins over the runner's variable of the same name
    assert body["Envs"] == {"HPO_TOOLS_COMMAND": "cmd2", "A": "1", "B": "two"}


def test_resource_quota_roles_take_cpu_memory_instead_of_an_ecs_type():
    command = parse_dlc_command(
        "dlc submit pytorch --name=q --command=run --workspace_id=1 --resource_id=quota1 "
        "--workers=1 --worker_image=img --worker_cpu=8 --worker_memory=32Gi --worker_gpu=1 "
        "--worker_gpu_type=A10 --code_source=code-1 --code_branch=main "
        "--job_max_running_time_minutes=30 --vpc_id=vpc-1 --switch_id=vsw-1 "
        "--security_group_id=sg-1 --thirdparty_libs=a==1,b"
    )
    body = create_job_request(command, display_name="q").to_map()
    assert body["ResourceId"] == "quota1"
    assert _given(body["JobSpecs"][0]["ResourceConfig"]) == {
        "CPU": "8", "Memory": "32Gi", "GPU": "1", "GPUType": "A10"}
    assert "EcsSpec" not in body["JobSpecs"][0]
    assert body["CodeSource"] == {"CodeSourceId": "code-1", "Branch": "main"}
    assert body["JobMaxRunningTimeMinutes"] == 30
    assert body["UserVpc"] == {"VpcId": "vpc-1", "SwitchId": "vsw-1", "SecurityGroupId": "sg-1"}
    assert body["ThirdpartyLibs"] == ["a==1", "b"]


def test_dashes_and_a_path_to_the_tool_are_accepted():
    command = parse_dlc_command("./bin/dlc submit xgboostjob --name n --command 'x' "
                                "--workspace-id 9 --workers 3 --worker-image i --worker-spec s")
    assert (command.job_type, command.roles[0].count, command.workspace_id) == (
        "XGBoostJob", 3, "9")


@pytest.mark.parametrize("text, fragment", [
    ("python train.py", "expected 'dlc submit <kind>"),
    ("dlc submit --name=x", "the job kind is missing"),
    ("dlc submit tfjb --name=x", "did you mean 'tfjob'?"),
    ("dlc submit tfjob --name=x --comand=y", "unknown flag --comand (did you mean 'command'?)"),
    ("dlc submit tfjob --command=y --workspace_id=1 --workers=1", "--name is missing"),
    ("dlc submit tfjob --name=x --workspace_id=1 --workers=1", "--command is missing"),
    ("dlc submit tfjob --name=x --command=y --workers=1 --worker_image=i --worker_spec=s",
     "--workspace_id is missing"),
    ("dlc submit tfjob --name=x --command=y --workspace_id=1", "the job has no pods"),
    ("dlc submit tfjob --name=x --command=y --workspace_id=1 --workers=1 --worker_spec=s",
     "--worker_image is missing"),
    ("dlc submit tfjob --name=x --command=y --workspace_id=1 --workers=1 --worker_image=i",
     "--worker_spec is missing"),
    ("dlc submit tfjob --name=x --command=y --workspace_id=1 --workers=1 --worker_image=i "
     "--worker_spec=s --ps_image=i", "--ps_image is given but the job has no ps pod (--ps=N)"),
    ("dlc submit pytorchjob --name=x --command=y --workspace_id=1 --ps=1 --ps_image=i "
     "--ps_spec=s", "a pytorchjob has no ps pods"),
    ("dlc submit tfjob --name='bad name' --command=y --workspace_id=1", "--name='bad name'"),
    ("dlc submit tfjob --name=x --command='y --workspace_id=1", "No closing quotation"),
    ("dlc submit tfjob --name=x --command=y --workspace_id=1 --workers=two", "not a number"),
    ("dlc submit tfjob --name=x --command=y --workspace_id=1 --priority=0 --workers=1 "
     "--worker_image=i --worker_spec=s", "--priority='0' is not a positive whole number"),
    ("dlc submit tfjob --name=x --name=y", "--name is given twice"),
    ("dlc submit tfjob --name=x --job_file=f", "--job_file is not supported"),
    ("dlc submit tfjob --name=x --command=y && echo done", "unexpected '&&'"),
    ("dlc submit tfjob --name=x --command=y --workspace_id=1 --workers=1 --worker_image=i "
     "--worker_spec=s --envs=novalue", "is not KEY=VALUE"),
    ("dlc submit tfjob --name=x --command", "--command needs a value"),
])
def test_malformed_lines_are_one_line_config_errors_naming_the_flag(text, fragment):
    with pytest.raises(ConfigError) as caught:
        parse_dlc_command(text)
    assert fragment in str(caught.value)
    assert "\n" not in str(caught.value)


def test_a_quoted_command_over_several_ini_lines_is_one_shell_line_in_the_pods():
    # configparser hands continuation lines over joined by newlines, indentation stripped
    text = ("dlc submit tfjob --name=x --workspace_id=1 --workers=1 --worker_image=i "
            "--worker_spec=s\n--command='python -m easy_rec.python.train_eval\n"
            "--pipeline_config_path /mnt/data/p.config \\\n--model_dir /mnt/data/m'")
    command = parse_dlc_command(text)
    assert command.user_command == ("python -m easy_rec.python.train_eval "
                                    "--pipeline_config_path /mnt/data/p.config "
                                    "--model_dir /mnt/data/m")
    assert join_lines(text).count("\n") == 0


def test_chief_alone_means_one_chief_pod():
    command = parse_dlc_command("dlc submit tfjob --name=x --command=y --workspace_id=1 --chief "
                                "--chief_image=i --chief_spec=s")
    assert [(r.role, r.count) for r in command.roles] == [("chief", 1)]


def test_parsing_imports_no_sdk():
    import subprocess
    import sys

    code = ("import sys; from hpo_tools.platforms.dlc_command import parse_dlc_command; "
            "parse_dlc_command('dlc submit tfjob --name=x --command=y --workspace_id=1 "
            "--workers=1 --worker_image=i --worker_spec=s'); "
            "print(any(m.startswith('alibabacloud') for m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"  # checking a trial file costs no SDK import
