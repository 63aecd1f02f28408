"""The PAI training-job platform under the cloud-job contract (tests/platforms/contract.py),
against FakeTrainingJobClient; metrics through ``metric_type=api``."""

from __future__ import annotations

from hpo_tools.platforms.pai_training import PaiTrainingPlatform
from hpo_tools.testing.pai_training import STATUSES, FakeTrainingJobClient
from tests.platforms.contract import Case, ContractTests

COMMAND = ("pai training-job create --name=t_${{exp_id}}_${{trial_id}}_{n} --algorithm=easyrec "
           "--instance-type=ecs.g6.xlarge --workspace-id=ws1 "
           "--hyper-parameters='{{\"lr\": ${{lr}}}}' "
           "--input-channels=train=oss://bucket/train/ --output-channels=model=oss://bucket/m/")

PAI = Case(
    name="PAI",
    platform_class=PaiTrainingPlatform,
    make_fake=FakeTrainingJobClient,
    command=lambda n: COMMAND.format(n=n),
    section="[ts_config]\nregion_id=cn-hangzhou\naccess_key_id=${CONTRACT_ID}\n"
            "access_key_secret=${CONTRACT_KEY}\npoll_interval=0.02",
    metric='metric_type=api\nmetric_source=cmd1\nmetric_dict={"auc": 1}',
    scored=lambda auc: {"status": "Running", "metrics": {"auc": auc, "loss": 0.3}},
    statuses=STATUSES,
    unique_name=lambda request: request["TrainingJobName"],
    bad_command=(lambda text: text.replace("--instance-type", "--instance-tipe"),
                 "[platform_config] cmd1: pai command: unknown flag --instance_tipe "
                 "(did you mean 'instance_type'?)"),
    bad_section=("regon_id=cn-shanghai", "[ts_config]"),
    log_step=lambda lines: {"status": "Running", "logs": lines},
)


class TestPaiContract(ContractTests):
    case = PAI
