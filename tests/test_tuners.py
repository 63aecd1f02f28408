"""SafeTpeTuner against the call sequence NNI 3.0's dispatcher produces with concurrent trials."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from hpo_tools.tuners import (
    SafeTpeTuner,
    created_in_previous_exp,
    ended_without_result,
    minimize_flat_x0,
)

SPACE = {"x": {"_type": "uniform", "_value": [0.0, 1.0]}}


def _mispaired_sequence(tuner) -> None:
    """Trials A (got parameter 0) and B (got 1) were submitted the other way round: when A
    ends, the dispatcher calls trial_end with B's id 1, then B reports its final result."""
    tuner.update_search_space(SPACE)
    tuner.generate_parameters(0)
    tuner.generate_parameters(1)
    tuner.receive_trial_result(0, None, {"default": 0.7})
    tuner.trial_end(1, True)  # A ends; NNI thinks A ran parameter 1
    tuner.receive_trial_result(1, None, {"default": 0.8})  # B's final, its real id


def test_nni_tpe_crashes_on_the_mispaired_sequence():
    from nni.algorithms.hpo.tpe_tuner import TpeTuner

    # The bug being worked around: this KeyError kills NNI's dispatcher (seen in make demo).
    with pytest.raises(KeyError):
        _mispaired_sequence(TpeTuner(optimize_mode="maximize", seed=1))


def test_safe_tpe_takes_both_results_of_the_mispaired_sequence(tmp_path):
    tuner = SafeTpeTuner(experiment_dir=tmp_path, optimize_mode="maximize", seed=1)
    _mispaired_sequence(tuner)
    assert tuner.open_ids == set()  # both results reached TPE, nothing left pending
    assert tuner.generate_parameters(2)["x"] >= 0.0  # and it goes on suggesting


def test_duplicate_final_result_is_ignored(tmp_path):
    tuner = SafeTpeTuner(experiment_dir=tmp_path, optimize_mode="maximize", seed=1)
    tuner.update_search_space(SPACE)
    tuner.generate_parameters(0)
    tuner.receive_trial_result(0, None, 0.5)
    tuner.receive_trial_result(0, None, 0.5)  # NNI's TPE would raise KeyError here
    assert tuner.open_ids == set()


def _trial(root: Path, trial_id: str, parameter_id: int, status: str, final: bool) -> None:
    trial_dir = root / "environments" / "local-env" / "trials" / trial_id
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps({"parameter_id": parameter_id}))
    (trial_dir / "result.json").write_text(json.dumps(
        {"status": status, "final": {"score": 0.5} if final else None, "intermediate": []}))


def test_trial_end_closes_the_real_id_of_a_trial_stopped_without_result(tmp_path):
    _trial(tmp_path, "AAAAA", 0, "cancelled", final=False)  # stopped by the assessor
    _trial(tmp_path, "BBBBB", 1, "succeeded", final=True)
    tuner = SafeTpeTuner(experiment_dir=tmp_path, optimize_mode="maximize", seed=1)
    tuner.update_search_space(SPACE)
    tuner.generate_parameters(0)
    tuner.generate_parameters(1)
    tuner.trial_end(1, False)  # the dispatcher's id is B's, but A is the one that ended
    # Only A's own id is closed; B's final result can still arrive.
    assert tuner.open_ids == {1}
    tuner.receive_trial_result(1, None, 0.6)
    assert tuner.open_ids == set()


def test_ended_without_result_reads_the_trials_own_records(tmp_path):
    _trial(tmp_path, "AAAAA", 3, "failed", final=False)
    _trial(tmp_path, "BBBBB", 4, "succeeded", final=True)
    assert ended_without_result(tmp_path) == {3: "AAAAA"}


@pytest.mark.parametrize("broken", ["params.json", "result.json"])
def test_ended_without_result_skips_a_record_that_is_not_a_json_object(tmp_path, broken):
    _trial(tmp_path, "AAAAA", 3, "failed", final=False)
    _trial(tmp_path, "BBBBB", 4, "failed", final=False)
    (tmp_path / "environments" / "local-env" / "trials" / "BBBBB" / broken).write_text("[]")
    # Valid JSON of the wrong shape must not raise inside NNI's dispatcher (that kills it).
    assert ended_without_result(tmp_path) == {3: "AAAAA"}


def test_importing_the_tuner_leaves_the_experiment_runner_unloaded():
    import subprocess
    import sys

    code = ("import sys, hpo_tools.tuners; "
            "print(*(m for m in sys.modules if m.startswith('hpo_tools.experiment.')))")
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True,
                         text=True).stdout
    # The tuner runs in NNI's dispatcher: only the record reader may come along, not the
    # experiment runner, the best-trial export or their dependencies.
    assert set(out.split()) <= {"hpo_tools.experiment.records"}


@pytest.fixture
def offline_dispatcher(monkeypatch):
    """NNI's advisors connect to NNI's manager when created, except for this unit-test URL."""
    from nni.runtime import msg_dispatcher_base

    monkeypatch.setattr(msg_dispatcher_base, "dispatcher_env_vars",
                        msg_dispatcher_base.dispatcher_env_vars._replace(
                            NNI_TUNER_COMMAND_CHANNEL="ws://_unittest_"))


def _final(parameter_id: str, value: float) -> dict:
    return {"parameter_id": parameter_id, "trial_job_id": "A", "type": "FINAL", "sequence": 0,
            "value": json.dumps({"default": value})}


def _hyperband_round(advisor) -> tuple[str, str]:
    """Hyperband's first bracket (R=3, eta=3: 3 configs on budget 1): two configs run and end."""
    advisor.handle_update_search_space(SPACE)
    first, second = advisor._get_one_trial_job(), advisor._get_one_trial_job()
    advisor.handle_report_metric_data(_final(first["parameter_id"], 0.5))
    advisor.handle_trial_end({"trial_job_id": "A", "event": "SUCCEEDED",
                              "hyper_params": json.dumps(first)})
    return first["parameter_id"], second["parameter_id"]


def test_nni_hyperband_dies_on_its_own_string_parameter_ids(offline_dispatcher):
    from nni.algorithms.hpo.hyperband_advisor import Hyperband

    # microsoft/nni#5263: this TypeError kills NNI's dispatcher on the first metric.
    with pytest.raises(TypeError, match="'<=' not supported"):
        _hyperband_round(Hyperband(optimize_mode="maximize", R=3, eta=3))


def test_safe_hyperband_takes_metrics_and_trial_ends_of_string_ids(offline_dispatcher):
    from hpo_tools.tuners import SafeHyperband

    advisor = SafeHyperband(optimize_mode="maximize", R=3, eta=3)
    first, _ = _hyperband_round(advisor)
    assert isinstance(first, str)  # e.g. "0-1_0_0": bracket, round, number
    # The result reached the bracket: round 0 now has the first config's score.
    bracket = advisor.brackets[first.split("_")[0]]
    assert bracket.configs_perf[0][first] == [sys.maxsize, 0.5]


def test_safe_bohb_is_bohb_with_the_string_id_guard(offline_dispatcher):
    pytest.importorskip("ConfigSpace")
    from nni.algorithms.hpo.bohb_advisor import BOHB

    from hpo_tools.tuners import SafeBOHB

    assert issubclass(SafeBOHB, BOHB)
    advisor = SafeBOHB(optimize_mode="maximize", min_budget=1, max_budget=3, eta=3)
    assert advisor.is_created_in_previous_exp("0-1_0_0") is False


@pytest.mark.parametrize("param_id, expected", [
    (None, False), ("0-1_0_0", False), (True, False), (3, True), (4, False)])
def test_created_in_previous_exp_compares_only_int_ids(param_id, expected):
    class Resumed:
        recovered_max_param_id = 3

    assert created_in_previous_exp(Resumed(), param_id) is expected


def test_minimize_flat_x0_takes_a_2d_x0_and_keeps_the_objectives_shape():
    import numpy as np

    # NNI's GP tuner: a 2-D x0 and an objective returning shape (1,); it reads res.fun[0].
    result = minimize_flat_x0(lambda x: np.array([(x[0] - 0.3) ** 2]),
                              np.array([0.9]).reshape(1, -1), bounds=[[0.0, 1.0]],
                              method="L-BFGS-B")
    assert result.fun.shape == (1,)
    assert abs(result.x[0] - 0.3) < 1e-3


@pytest.mark.parametrize("name", ["SafeGP", "SafeMetis"])
def test_gp_and_metis_suggest_after_their_cold_start(name):
    import hpo_tools.tuners as tuners

    tuner = getattr(tuners, name)(optimize_mode="maximize", cold_start_num=2,
                                  **({"selection_num_starting_points": 5, "no_candidates": True}
                                     if name == "SafeMetis" else {}))
    tuner.update_search_space(SPACE)
    for parameter_id in range(3):  # the third one is past the cold start: scipy's minimize
        params = tuner.generate_parameters(parameter_id)
        tuner.receive_trial_result(parameter_id, params, params["x"])
    assert 0.0 <= params["x"] <= 1.0


def test_an_unknown_name_is_an_attribute_error():
    import hpo_tools.tuners as tuners

    with pytest.raises(AttributeError):
        tuners.SafeAnneal  # noqa: B018


def _tuner_section(**fields):
    from nni.experiment.config import AlgorithmConfig

    return AlgorithmConfig(**fields)


def test_a_known_tuner_without_its_dependency_is_refused_before_nni_starts():
    from hpo_tools.errors import ConfigError
    from hpo_tools.experiment.config import check_tuner_dependencies

    # SMAC's smac4nni does not install here (docs/experiments.md): a real missing module.
    with pytest.raises(ConfigError) as err:
        check_tuner_dependencies(_tuner_section(name="SMAC"), "exp.yml")
    assert str(err.value).startswith("exp.yml: tuner: SMAC needs smac, ConfigSpaceNNI, ")


def test_the_error_names_the_extra_that_brings_the_module(monkeypatch):
    from hpo_tools.errors import ConfigError
    from hpo_tools.experiment import config

    monkeypatch.setitem(config._TUNER_NEEDS, "anneal",
                        (("hpo_tools_no_such_module",), config._TUNERS_EXTRA))
    with pytest.raises(ConfigError, match=r"pip install 'hpo-tools\[tuners\]'$"):
        config.check_tuner_dependencies(_tuner_section(name="anneal"), "exp.yml")


@pytest.mark.parametrize("fields", [{"name": "Random"}, {"name": "TPE"}, {
    "class_name": "hpo_tools.tuners.SafeTpeTuner", "code_directory": "."}])
def test_tuners_nni_installs_with_itself_are_not_checked(fields):
    from hpo_tools.experiment.config import check_tuner_dependencies

    check_tuner_dependencies(_tuner_section(**fields))  # no error
