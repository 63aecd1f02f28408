"""The PAI-Flow platform under the cloud-job contract (tests/platforms/contract.py), against
FakePaiFlowClient; metrics from the run's logs in the trial log (``metric_type=stdout``)."""

from __future__ import annotations

from hpo_tools.platforms.paiflow import PaiFlowPlatform
from hpo_tools.testing.paiflow import STATUSES, FakePaiFlowClient
from tests.platforms.contract import Case, ContractTests

COMMAND = ("paiflow run --name=t_${{exp_id}}_${{trial_id}}_{n} --pipeline-id=pipeline-easyrec "
           "--arguments='{{\"arguments\": {{\"parameters\": [{{\"name\": \"lr\", "
           "\"value\": ${{lr}}}}]}}}}'")

PAIFLOW = Case(
    name="PAIFLOW",
    platform_class=PaiFlowPlatform,
    make_fake=FakePaiFlowClient,
    command=lambda n: COMMAND.format(n=n),
    section="[paiflow_config]\nregion_id=cn-hangzhou\nworkspace_id=2332411\n"
            "access_key_id=${CONTRACT_ID}\naccess_key_secret=${CONTRACT_KEY}\n"
            "poll_interval=0.02",
    metric="metric_type=stdout\nmetric_dict={\"auc=([0-9.]+)\": 1}",
    scored=lambda auc: {"status": "Running", "logs": [f"eval auc={auc}"]},
    statuses=STATUSES,
    unique_name=lambda request: request["Name"],
    bad_command=(lambda text: text.replace("--pipeline-id", "--pipline-id"),
                 "[platform_config] cmd1: paiflow command: unknown flag --pipline_id "
                 "(did you mean 'pipeline_id'?)"),
    bad_section=("workspace=1", "[paiflow_config] workspace: unknown key"),
    log_step=lambda lines: {"status": "Running", "logs": lines},
)


class TestPaiFlowContract(ContractTests):
    case = PAIFLOW
