"""Search-space validation and corner points."""

from __future__ import annotations

import json

import pytest

from hpo_tools.errors import ConfigError
from hpo_tools.search_space import corner_points, load_search_space, validate_search_space


def test_loads_a_valid_file(tmp_path):
    path = tmp_path / "space.json"
    space = {"lr": {"_type": "loguniform", "_value": [1e-4, 0.1]}}
    path.write_text(json.dumps(space))
    assert load_search_space(path) == space


def test_invalid_json_names_file_and_line(tmp_path):
    path = tmp_path / "space.json"
    path.write_text('{\n  "lr": {"_type": "choice",}\n}')
    with pytest.raises(ConfigError, match=r"space\.json:2:.*not valid JSON"):
        load_search_space(path)


def test_missing_file_is_a_config_error(tmp_path):
    with pytest.raises(ConfigError, match="cannot read search space"):
        load_search_space(tmp_path / "nope.json")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ({"_type": "choise", "_value": [1]}, r"unknown _type 'choise' \(did you mean 'choice'\?\)"),
        ({"_type": "uniform"}, "_value is missing"),
        ({"_type": "uniform", "_value": [1, 0]}, "needs low < high"),
        ({"_type": "uniform", "_value": [0]}, "needs 2 numbers"),
        ({"_type": "quniform", "_value": [0, 1]}, "needs 3 numbers"),
        ({"_type": "quniform", "_value": [0, 1, 0]}, "needs q > 0"),
        ({"_type": "loguniform", "_value": [0, 1]}, "needs low > 0"),
        ({"_type": "randint", "_value": [0.5, 3]}, "integer bounds"),
        ({"_type": "normal", "_value": [0, -1]}, "sigma > 0"),
        ({"_type": "choice", "_value": []}, "at least one value"),
        ({"_type": "choice", "_value": [[1, [2]]]}, "numbers, strings or lists"),
        ({"_type": "choice", "_value": [None]}, "numbers, strings or lists"),
        ({"_type": "choice", "_value": 3}, "_value must be a list"),
        ({"_type": "uniform", "_value": [0, 1], "_vlaue": 1}, "unknown key '_vlaue'"),
        ("uniform", "expected"),
    ],
)
def test_invalid_dimension_is_a_one_line_config_error_naming_the_parameter(spec, message):
    with pytest.raises(ConfigError, match=message) as info:
        validate_search_space({"lr": spec}, source="ss.json")
    # One line, naming the file and parameter, instead of NNI's bare IndexError.
    assert "\n" not in str(info.value)
    assert "ss.json: parameter 'lr'" in str(info.value)


def test_nested_choice_error_names_the_inner_parameter():
    space = {
        "opt": {
            "_type": "choice",
            "_value": [{"_name": "adam", "lr": {"_type": "uniform", "_value": [1, 0]}}],
        }
    }
    with pytest.raises(ConfigError, match="parameter opt/_name=adam/'lr'"):
        validate_search_space(space)


def test_nested_choice_options_need_a_name():
    space = {"opt": {"_type": "choice", "_value": [{"lr": {"_type": "uniform", "_value": [0, 1]}}]}}
    with pytest.raises(ConfigError, match="needs a _name"):
        validate_search_space(space)


def test_not_an_object_is_rejected():
    with pytest.raises(ConfigError, match="JSON object"):
        validate_search_space([1, 2])


def test_corners_use_every_choice_value_and_range_bounds():
    space = {
        "emb": {"_type": "choice", "_value": [8, 16, 32]},
        "lr": {"_type": "uniform", "_value": [0.001, 0.1]},
    }
    points = corner_points(space)
    # Every choice value appears, and both bounds of the range.
    assert sorted(p["emb"] for p in points) == [8, 16, 32]
    assert {p["lr"] for p in points} == {0.001, 0.1}


def test_randint_upper_bound_is_exclusive():
    points = corner_points({"n": {"_type": "randint", "_value": [1, 5]}})
    # NNI never proposes 5 for randint [1, 5).
    assert [p["n"] for p in points] == [1, 4]


def test_quantized_bounds_are_rounded_and_clipped_like_nni():
    points = corner_points({"x": {"_type": "quniform", "_value": [0.5, 10, 2]}})
    # round(0.5/2)*2 = 0 is clipped to the low bound 0.5; round(10/2)*2 = 10.
    assert [p["x"] for p in points] == [0.5, 10]


def test_normal_corners_are_three_sigmas_around_the_mean():
    points = corner_points({"x": {"_type": "normal", "_value": [1.0, 0.5]}})
    assert [p["x"] for p in points] == [-0.5, 2.5]


def test_nested_choice_corners_include_each_option_with_its_sub_corners():
    space = {
        "opt": {
            "_type": "choice",
            "_value": [
                {"_name": "adam", "lr": {"_type": "loguniform", "_value": [1e-4, 0.1]}},
                {"_name": "sgd"},
            ],
        }
    }
    values = [p["opt"] for p in corner_points(space)]
    # Shaped as NNI passes nested choices: {"_name": ..., sub-params...}.
    assert values == [{"_name": "adam", "lr": 1e-4}, {"_name": "adam", "lr": 0.1}, {"_name": "sgd"}]


def test_all_ten_types_validate_and_give_corners():
    space = {
        "a": {"_type": "choice", "_value": ["x", "y"]},
        "b": {"_type": "randint", "_value": [0, 10]},
        "c": {"_type": "uniform", "_value": [0, 1]},
        "d": {"_type": "quniform", "_value": [0, 10, 2]},
        "e": {"_type": "loguniform", "_value": [0.01, 1]},
        "f": {"_type": "qloguniform", "_value": [1, 100, 1]},
        "g": {"_type": "normal", "_value": [0, 1]},
        "h": {"_type": "qnormal", "_value": [0, 1, 0.5]},
        "i": {"_type": "lognormal", "_value": [0, 1]},
        "j": {"_type": "qlognormal", "_value": [0, 1, 1]},
    }
    points = corner_points(validate_search_space(space))
    assert len(points) == 2
    assert set(points[0]) == set(space)


def test_project_sample_search_space_is_valid_and_lists_are_choice_values():
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "samples" / "hpo" / "search_space.json"
    space = load_search_space(path)
    values = [p["model_config.dbmtl.task_towers[:].relation_dnn.hidden_units"]
              for p in corner_points(space)]
    # A list is one value (a repeated field's new content), not several dimensions.
    assert [8] in values and [32, 16] in values


def test_batch_tuners_combine_params_space_is_its_parameter_sets():
    from hpo_tools.search_space import corner_points, validate_search_space

    space = {"combine_params": {"_type": "choice",
                                "_value": [{"a.lr": 0.1, "b": 2}, {"a.lr": 0.2, "b": 3}]}}
    assert validate_search_space(space) is space
    assert corner_points(space) == [{"a.lr": 0.1, "b": 2}, {"a.lr": 0.2, "b": 3}]
