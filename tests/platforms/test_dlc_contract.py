"""The DLC platform under the cloud-job contract (tests/platforms/contract.py), against
FakeDlcClient; metrics from the worker pods' logs (``metric_source=cmd1,worker``)."""

from __future__ import annotations

from hpo_tools.platforms.dlc import DlcPlatform
from hpo_tools.testing.dlc import STATUSES, FakeDlcClient
from tests.platforms.contract import Case, ContractTests

COMMAND = ("dlc submit tfjob --name=t_${{exp_id}}_${{trial_id}}_{n} --command='python train.py "
           "--lr ${{lr}}' --workspace_id=ws1 --workers=1 --worker_image=img "
           "--worker_spec=ecs.g6 --evaluators=1 --evaluator_image=img --evaluator_spec=ecs.g6")

DLC = Case(
    name="DLC",
    platform_class=DlcPlatform,
    make_fake=FakeDlcClient,
    command=lambda n: COMMAND.format(n=n),
    section="[dlc_config]\nregion=cn-shanghai\naccess_id=${CONTRACT_ID}\n"
            "access_key=${CONTRACT_KEY}\npoll_interval=0.02",
    metric='metric_type=stdout\nmetric_source=cmd1,worker\nmetric_dict={"auc=([0-9.]+)": 1}',
    # the evaluator's line is in the trial log but not scored: only the worker pods are read
    scored=lambda auc: {"status": "Running", "logs": {"worker": [f"step auc={auc}"],
                                                      "evaluator": ["eval auc=0.99"]}},
    statuses=STATUSES,
    unique_name=lambda request: request["DisplayName"],
    bad_command=(lambda text: text.replace("--worker_spec", "--worker_spce"),
                 "[platform_config] cmd1: dlc command: unknown flag --worker_spce "
                 "(did you mean 'worker_spec'?)"),
    bad_section=("protocol=ftp", "[dlc_config] protocol: expected http or https, got 'ftp'"),
    log_step=lambda lines: {"status": "Running", "logs": {"worker": lines}},
)


class TestDlcContract(ContractTests):
    case = DLC
