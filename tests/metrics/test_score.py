"""MetricSpec: parsing metric_dict, weighted scores, final / best / avg."""

from __future__ import annotations

import math

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.metrics import FinalMode, MetricSpec, OptimizeMode, Report

WEIGHTS = {"auc_is_valid_play": 0.5, "auc_is_like": 0.25, "loss_play_time": -0.25}


def test_metric_dict_from_json_text_as_written_in_an_ini_file():
    spec = MetricSpec.from_config('{"auc": 1, "loss": -0.5}')
    # JSON numbers become float weights, in the given order.
    assert spec.weights == {"auc": 1.0, "loss": -0.5}


def test_python_style_dict_literal_as_the_old_tool_wrote_it_is_accepted():
    spec = MetricSpec.from_config("{'auc_is_valid_play': 0.5, 'loss_play_time': -0.25}")
    # Users of EasyRec's hpo_nni wrote metric_dict with single quotes; it must keep working.
    assert spec.weights == {"auc_is_valid_play": 0.5, "loss_play_time": -0.25}


@pytest.mark.parametrize(
    "text", ["{'auc': __import__('os').getpid()}", "{'auc': 1 + 1}", "{'auc': x}", "{auc: 1"]
)
def test_metric_dict_text_is_never_executed(text: str):
    with pytest.raises(ConfigError) as err:
        MetricSpec.from_config(text)
    # Only literals are accepted; the message names the key and shows the expected form.
    assert "metric_dict" in str(err.value) and '{"auc": 1' in str(err.value)


@pytest.mark.parametrize(
    ("metric_dict", "needle"),
    [
        ("[1, 2]", "expected a dict"),
        (["auc"], "expected a dict"),
        ({}, "is empty"),
        ({"auc": "high"}, "metric_dict['auc']: weight must be a number"),
        ({"auc": True}, "metric_dict['auc']: weight must be a number"),
        ({"auc": float("nan")}, "must be finite"),
        ({"auc": 0, "loss": 0.0}, "every weight is zero"),
        ({"default": 1}, "'default'"),
    ],
)
def test_malformed_metric_dict_is_a_config_error_naming_the_key(metric_dict, needle):
    with pytest.raises(ConfigError) as err:
        MetricSpec.from_config(metric_dict)
    # One line that says what is wrong where.
    assert needle in str(err.value)
    assert "\n" not in str(err.value)


def test_error_names_the_key_the_caller_gives():
    with pytest.raises(ConfigError, match=r"^trial.ini \[metric\] metric_dict\['a'\]"):
        MetricSpec.from_config({"a": "x"}, key="trial.ini [metric] metric_dict")


def test_unknown_final_mode_suggests_the_close_one():
    with pytest.raises(ConfigError, match=r"final_mode.*did you mean 'best'"):
        MetricSpec.from_config({"auc": 1}, final_mode="bets")


def test_modes_are_case_insensitive_and_source_list_mode_defaults_to_final_mode():
    spec = MetricSpec.from_config({"auc": 1}, final_mode="AVG", optimize_mode="Minimize")
    assert spec.final_mode is FinalMode.AVG
    assert spec.optimize_mode is OptimizeMode.MINIMIZE
    # source_list_final_mode follows final_mode unless given.
    assert spec.source_list_final_mode is FinalMode.AVG
    other = MetricSpec.from_config({"auc": 1}, "avg", "maximize", source_list_final_mode="best")
    assert other.source_list_final_mode is FinalMode.BEST


def test_score_is_the_weighted_sum_with_negative_weights():
    spec = MetricSpec.from_config(WEIGHTS)
    values = {"auc_is_valid_play": 0.8, "auc_is_like": 0.6, "loss_play_time": 2.0, "other": 9}
    # 0.5*0.8 + 0.25*0.6 - 0.25*2.0 = 0.05; unweighted metrics do not count.
    assert spec.score(values) == pytest.approx(0.05)


def test_only_non_zero_weights_are_required():
    spec = MetricSpec.from_config({"auc": 1, "shown_only": 0})
    assert spec.required == ("auc",)
    # A step without the zero-weight metric still counts.
    assert spec.is_complete({"auc": 0.5})
    assert not spec.is_complete({"shown_only": 0.5})


def test_report_keeps_zero_weight_metrics_for_display():
    spec = MetricSpec.from_config({"auc": 1, "shown_only": 0})
    report = spec.make_report(3, {"auc": 0.5, "shown_only": 7, "noise": 1}, source=1)
    # metric_dict keys only: NNI's web UI shows them beside the score.
    assert report == Report(step=3, score=0.5, values={"auc": 0.5, "shown_only": 7.0}, source=1)


def test_as_nni_puts_the_score_under_default_and_each_metric_beside_it():
    report = Report(step=1, score=0.7, values={"auc": 0.8, "loss": 0.2})
    assert report.as_nni() == {"default": 0.7, "auc": 0.8, "loss": 0.2}


def _reports(*scores):
    return [Report(step=10 * (i + 1), score=s, values={"m": s}) for i, s in enumerate(scores)]


@pytest.mark.parametrize(
    ("mode", "optimize", "expected_step", "expected_score"),
    [
        ("final", "maximize", 30, -0.5),
        ("final", "minimize", 30, -0.5),
        ("best", "maximize", 20, 0.25),
        ("best", "minimize", 10, -1.0),
        ("avg", "maximize", 30, (-1.0 + 0.25 - 0.5) / 3),
        ("avg", "minimize", 30, (-1.0 + 0.25 - 0.5) / 3),
    ],
)
def test_final_modes_under_both_directions(mode, optimize, expected_step, expected_score):
    spec = MetricSpec.from_config({"m": 1}, final_mode=mode, optimize_mode=optimize)
    final = spec.final(_reports(-1.0, 0.25, -0.5))
    # final = last, best = highest or lowest by direction, avg = mean (step of the last).
    assert final.step == expected_step
    assert final.score == pytest.approx(expected_score)


def test_best_with_negative_weight_picks_lowest_loss_when_maximizing():
    spec = MetricSpec.from_config({"loss": -1}, final_mode="best", optimize_mode="maximize")
    reports = [spec.make_report(s, {"loss": loss}) for s, loss in [(1, 0.9), (2, 0.3), (3, 0.6)]]
    # A negative weight turns "maximize the score" into "minimize the loss".
    assert spec.final(reports).step == 2


def test_avg_averages_each_metric_too():
    spec = MetricSpec.from_config({"a": 1, "b": -1}, final_mode="avg")
    reports = [spec.make_report(1, {"a": 1.0, "b": 0.5}), spec.make_report(2, {"a": 3.0, "b": 1.5})]
    final = spec.final(reports)
    # Score and every metric are means over the steps.
    assert final.values == {"a": 2.0, "b": 1.0}
    assert final.score == pytest.approx(1.0)


def test_best_keeps_the_earliest_of_equal_scores():
    spec = MetricSpec.from_config({"m": 1}, final_mode="best")
    # Ties do not move the best step to a later one.
    assert spec.final(_reports(0.5, 0.5)).step == 10


@pytest.mark.parametrize(("optimize", "expected_step"), [("maximize", 30), ("minimize", 20)])
def test_best_never_picks_a_nan_step_even_when_it_comes_first(optimize, expected_step):
    spec = MetricSpec.from_config({"m": 1}, final_mode="best", optimize_mode=optimize)
    # An evaluation that diverged (NaN loss) must not become the trial's best result just
    # because every comparison with NaN is false.
    assert spec.final(_reports(float("nan"), 0.25, 0.5)).step == expected_step


def test_best_of_only_nan_steps_is_nan():
    spec = MetricSpec.from_config({"m": 1}, final_mode="best")
    # Nothing better to pick: the result says so rather than inventing a number.
    assert math.isnan(spec.final(_reports(float("nan"), float("nan"))).score)
