"""CFO and BlendSearch as NNI tuners, driven through NNI's tuner API (no NNI manager).

The objective is a toy function of a real pbtxt config's keys; the real FLAML searchers run
behind the tuners (extra ``flaml``). The real-NNI run is tests/e2e/test_cost_frugal_e2e.py.
"""

from __future__ import annotations

import base64
import json
import logging
import sys
from pathlib import Path

import pytest

pytest.importorskip("flaml")
pytest.importorskip("optuna")

from nni import NoMoreTrialError  # noqa: E402

from hpo_tools.cost_frugal import BlendSearchTuner, CfoTuner, base_config_point  # noqa: E402
from hpo_tools.errors import ConfigError  # noqa: E402

TUNERS = [CfoTuner, BlendSearchTuner]

LR = "train_config.learning_rate"
STEPS = "train_config.num_steps"
UNITS = "model_config.hidden_units"
REG = "model_config.l2;model_config.l3"

CONFIG = """\
train_config {
  learning_rate: 0.003
  num_steps: 40
}
model_config {
  hidden_units: [32, 16]
  l2: 1e-6
  l3: 5e-6
}
feature_configs { embedding_dim: 8 }
feature_configs { embedding_dim: 16 }
"""

SPACE = {
    LR: {"_type": "loguniform", "_value": [1e-4, 1e-1]},
    STEPS: {"_type": "randint", "_value": [10, 100]},
    UNITS: {"_type": "choice", "_value": [[8], [32, 16], [64, 32]]},
    REG: {"_type": "choice", "_value": ["1e-6;5e-6", "1e-5;1e-5"]},
}

BASE_POINT = {LR: 0.003, STEPS: 40, UNITS: [32, 16], REG: "1e-6;5e-6"}


@pytest.fixture
def base_config(tmp_path: Path) -> Path:
    path = tmp_path / "pipeline.config"
    path.write_text(CONFIG)
    return path


def _loss(params: dict) -> float:
    """Lowest (0) at learning_rate 0.03, 70 steps."""
    import math

    return (math.log10(params[LR]) - math.log10(0.03)) ** 2 + ((params[STEPS] - 70) / 30) ** 2


def _drive(tuner, trials: int, objective) -> list[tuple[dict, float]]:
    """NNI's dispatcher in miniature: one trial at a time, each final result reported."""
    history = []
    for parameter_id in range(trials):
        params = tuner.generate_parameters(parameter_id)
        value = objective(params)
        tuner.receive_trial_result(parameter_id, params, {"default": value},
                                   trial_job_id=f"t{parameter_id}")
        history.append((params, value))
    return history


@pytest.mark.parametrize("tuner_class", TUNERS)
def test_first_trial_runs_the_base_configs_own_values(tuner_class, base_config):
    tuner = tuner_class(base_config=str(base_config), seed=3)
    tuner.update_search_space(SPACE)
    first = tuner.generate_parameters(0)
    # The user's config is the known-good low-cost start, exactly (no log-scale rounding).
    assert first == BASE_POINT
    # NNI gets plain JSON types (FLAML hands out numpy scalars and tuples).
    assert json.loads(json.dumps(first)) == first
    second = tuner.generate_parameters(1)
    assert second != first  # and then it moves


@pytest.mark.parametrize("tuner_class", TUNERS)
@pytest.mark.parametrize("mode", ["maximize", "minimize"])
def test_search_converges_in_either_direction(tuner_class, mode, base_config):
    tuner = tuner_class(optimize_mode=mode, base_config=str(base_config), seed=3)
    tuner.update_search_space(SPACE)
    sign = -1 if mode == "maximize" else 1  # the reported metric: -loss or loss
    history = _drive(tuner, 60, lambda p: sign * _loss(p))
    start = _loss(history[0][0])
    best = min(_loss(params) for params, _ in history)
    # Starting from loss ~2.1 at the base config, the search gets close to the optimum; with the
    # direction wrong it would walk away from it.
    assert start > 1.5
    assert best < 0.05, (mode, best)
    late = sorted(_loss(params) for params, _ in history[30:])
    assert late[len(late) // 2] < start  # the later half mostly beats the start


def test_explicit_low_cost_partial_config_wins_over_the_base_config(base_config):
    tuner = CfoTuner(base_config=str(base_config), low_cost_partial_config={STEPS: 12}, seed=3)
    tuner.update_search_space(SPACE)
    # The explicit value for one key, the base config's for the others.
    assert tuner.generate_parameters(0) == {**BASE_POINT, STEPS: 12}


def test_a_base_value_outside_the_space_is_left_out_with_a_warning(base_config, caplog):
    space = {**SPACE, STEPS: {"_type": "randint", "_value": [50, 100]},
             "${lr}": {"_type": "uniform", "_value": [0, 1]},
             "feature_configs[:].embedding_dim": {"_type": "choice", "_value": [8, 16]}}
    with caplog.at_level(logging.WARNING, logger="hpo_tools.cost_frugal"):
        point = base_config_point(str(base_config), space)
    # In-space keys are taken; 40 is not in [50, 100), a placeholder is not a path, and two
    # different embedding_dims are no one value: each is skipped and named in a warning.
    assert {k: point[k] for k in (LR, UNITS, REG)} == {LR: 0.003, UNITS: [32, 16],
                                                       REG: "1e-6;5e-6"}
    assert set(point) == {LR, UNITS, REG}
    for key in (STEPS, "${lr}", "feature_configs[:].embedding_dim"):
        assert any(key in r.getMessage() for r in caplog.records), key
    tuner = CfoTuner(base_config=str(base_config), seed=1)
    tuner.update_search_space(space)
    first = tuner.generate_parameters(0)
    assert 50 <= first[STEPS] < 100  # the search still starts inside the space


def test_a_missing_base_config_key_is_left_out(base_config):
    space = {**SPACE, "train_config.no_such_field": {"_type": "uniform", "_value": [0, 1]}}
    point = base_config_point(str(base_config), space)
    assert "train_config.no_such_field" not in point and LR in point


def test_relative_base_config_is_under_the_experiments_trial_code_directory(
        base_config, monkeypatch):
    # NNI starts the dispatcher as `python -m nni --exp_params <base64 config>` in E/log.
    exp_params = {"trialCodeDirectory": str(base_config.parent), "trialConcurrency": 1}
    encoded = base64.b64encode(json.dumps(exp_params).encode()).decode()
    monkeypatch.setattr(sys, "argv", ["nni", "--exp_params", encoded])
    monkeypatch.chdir(base_config.parent.parent)
    tuner = CfoTuner(base_config="pipeline.config", seed=3)
    assert tuner.base_config == str(base_config)
    tuner.update_search_space(SPACE)
    assert tuner.generate_parameters(0) == BASE_POINT


@pytest.mark.parametrize("tuner_class", TUNERS)
@pytest.mark.parametrize(("spec", "expected"), [
    ({"_type": "lognormal", "_value": [0, 1]}, "_type lognormal is not supported"),
    ({"_type": "choice", "_value": [{"_name": "a", "x": {"_type": "uniform", "_value": [0, 1]}}]},
     "nested choices"),
    ({"_type": "unifrom", "_value": [0, 1]}, "did you mean 'uniform'"),
])
def test_unsupported_search_space_is_a_one_line_error(tuner_class, spec, expected):
    tuner = tuner_class()
    with pytest.raises(ConfigError) as err:
        tuner.update_search_space({"model_config.x": spec})
    message = str(err.value)
    assert expected in message and "model_config.x" in message and "\n" not in message


@pytest.mark.parametrize(("kwargs", "expected"), [
    ({"optimize_mode": "maximise"}, "did you mean 'maximize'"),
    ({"cost": "second"}, "did you mean 'seconds'"),
    ({"low_cost_partial_config": [1]}, "must be a mapping"),
])
def test_bad_class_args_are_one_line_errors(kwargs, expected):
    with pytest.raises(ConfigError, match=expected):
        CfoTuner(**kwargs)


def test_low_cost_partial_config_key_not_in_the_space_is_an_error():
    tuner = CfoTuner(low_cost_partial_config={"train_config.learning_rat": 0.01})
    with pytest.raises(ConfigError, match=f"did you mean '{LR}'"):
        tuner.update_search_space(SPACE)
    tuner = CfoTuner(low_cost_partial_config={STEPS: 5})
    with pytest.raises(ConfigError, match=r"not an integer in \[10, 100\)"):
        tuner.update_search_space(SPACE)


@pytest.mark.parametrize("tuner_class", TUNERS)
def test_a_small_discrete_space_ends_with_no_more_trials(tuner_class):
    tuner = tuner_class(seed=1)
    tuner.update_search_space({"a": {"_type": "choice", "_value": [1, 2]},
                               "b": {"_type": "choice", "_value": ["x", "y"]}})
    seen = []
    with pytest.raises(NoMoreTrialError):
        for parameter_id in range(20):
            params = tuner.generate_parameters(parameter_id)
            seen.append((params["a"], params["b"]))
            tuner.receive_trial_result(parameter_id, params, params["a"])
    # NNI is told there is nothing left instead of getting None or a repeat.
    assert seen and len(set(seen)) == len(seen) <= 4


def _trial_record(experiment: Path, trial_id: str, parameter_id: int, *, steps=(), final=True,
                  status="succeeded") -> None:
    trial_dir = experiment / "environments" / "local-env" / "trials" / trial_id
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps(
        {"trial_id": trial_id, "parameter_id": parameter_id, "params": {}}))
    reports = [{"step": s, "score": 0.5, "values": {}, "source": 0} for s in steps]
    (trial_dir / "result.json").write_text(json.dumps(
        {"intermediate": reports, "final": reports[-1] if final and reports else None,
         "status": status}))


def test_steps_cost_is_the_trials_last_recorded_step(tmp_path):
    _trial_record(tmp_path, "AbCdE", 0, steps=[40, 120, 80])
    tuner = CfoTuner(cost="steps", experiment_dir=tmp_path)
    # The highest step in the trial's own result.json (found by NNI's trial_job_id).
    assert tuner.trial_cost({"default": 0.5}, "AbCdE", None) == 120.0
    # A `steps` key in the final result wins; nothing readable costs 1.0.
    assert tuner.trial_cost({"default": 0.5, "steps": 7}, "AbCdE", None) == 7.0
    assert tuner.trial_cost({"default": 0.5}, "NoSuch", None) == 1.0


def test_seconds_cost_is_reported_or_measured_by_the_tuner():
    import time

    tuner = CfoTuner()
    assert tuner.trial_cost({"default": 1.0, "cost_seconds": 42.5}, "t", None) == 42.5
    started = time.monotonic() - 30.0  # generated 30 s ago
    assert tuner.trial_cost({"default": 1.0}, "t", started) >= 30.0
    assert tuner.trial_cost(1.0, "t", None) == 1.0


def test_receive_passes_the_measured_cost_to_the_search(tmp_path, caplog):
    _trial_record(tmp_path, "AbCdE", 0, steps=[300])
    tuner = CfoTuner(cost="steps", experiment_dir=tmp_path, low_cost_partial_config={STEPS: 10})
    tuner.update_search_space(SPACE)
    params = tuner.generate_parameters(0)
    with caplog.at_level(logging.INFO, logger="hpo_tools.cost_frugal"):
        tuner.receive_trial_result(0, params, {"default": 0.1}, trial_job_id="AbCdE")
    assert any("cost 300 steps" in r.getMessage() for r in caplog.records)


@pytest.mark.parametrize("tuner_class", TUNERS)
def test_a_failed_trial_is_found_from_the_records_not_from_nnis_id(tuner_class, tmp_path):
    tuner = tuner_class(experiment_dir=tmp_path, seed=2)
    tuner.update_search_space(SPACE)
    first = tuner.generate_parameters(0)
    tuner.generate_parameters(1)
    _trial_record(tmp_path, "Fail0", 1, status="failed", final=False)
    # NNI names parameter id 0 (another trial's, nni#5726): only id 1's record says it failed.
    tuner.trial_end(0, False)
    assert set(tuner._configs) == {0}
    tuner.receive_trial_result(0, first, {"default": 0.3}, trial_job_id="Ok000")
    # A result for the failed id later is ignored; the search goes on.
    tuner.receive_trial_result(1, first, {"default": 0.9}, trial_job_id="Fail0")
    assert tuner.generate_parameters(2)


def test_flaml_missing_is_a_config_error_naming_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "flaml", None)
    with pytest.raises(ConfigError, match=r"hpo-tools\[flaml\]"):
        CfoTuner()


def test_optuna_missing_stops_only_blendsearch(monkeypatch):
    monkeypatch.setitem(sys.modules, "optuna", None)
    with pytest.raises(ConfigError, match=r"BlendSearch tuner needs optuna"):
        BlendSearchTuner()
    CfoTuner()  # CFO has no global search: no optuna needed


@pytest.mark.parametrize("tuner_class", TUNERS)
def test_config_paths_with_selectors_are_searched_under_their_own_names(tuner_class):
    """FLAML reads ':' and brackets of config paths as its own markers (BlendSearch crashed on
    `feature_configs[:].embedding_dim`): keys reach FLAML as aliases, NNI gets its own back."""
    dim = "feature_configs[:].embedding_dim"
    lr = "train_config.optimizer_config[0].adam_optimizer.learning_rate"
    space = {dim: {"_type": "choice", "_value": [4, 8, 16]},
             lr: {"_type": "loguniform", "_value": [1e-4, 1e-1]}}
    tuner = tuner_class(seed=1, low_cost_partial_config={dim: 4})
    tuner.update_search_space(space)
    history = _drive(tuner, 6, lambda p: -abs(p[dim] - 8) - abs(p[lr] - 0.01))
    assert all(set(params) == {dim, lr} for params, _ in history)
    assert history[0][0][dim] == 4
