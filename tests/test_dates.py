from __future__ import annotations

import datetime as dt

import pytest

from hpo_tools.dates import Day, day_range, parse_date, substitute_dates
from hpo_tools.errors import ConfigError


def test_variables_cross_the_year_end() -> None:
    # The evaluation day of 31 Dec is 1 Jan of the next year.
    assert parse_date("20221231").variables() == {
        "bizdate": "20221231",
        "eval_ymd": "20230101",
        "predate": "20221230",
    }


def test_predate_of_new_year_is_last_year() -> None:
    # The day before 1 Jan belongs to the previous year and month.
    assert parse_date("2023-01-01").predate == "20221231"


@pytest.mark.parametrize(
    ("text", "eval_ymd", "predate"),
    [
        ("2024-02-28", "20240229", "20240227"),  # 2024 is a leap year
        ("2024-03-01", "20240302", "20240229"),
        ("2023-02-28", "20230301", "20230227"),  # 2023 is not
        ("2000-02-28", "20000229", "20000227"),  # divisible by 400: leap
        ("2100-02-28", "21000301", "21000227"),  # divisible by 100 only: not leap
    ],
)
def test_leap_days(text: str, eval_ymd: str, predate: str) -> None:
    day = parse_date(text)
    assert (day.eval_ymd, day.predate) == (eval_ymd, predate)


def test_both_spellings_parse_to_the_same_day() -> None:
    # Users write --start_time 2022-05-30 and tables say 20220530.
    assert parse_date("2022-05-30") == parse_date("20220530") == Day(dt.date(2022, 5, 30))


@pytest.mark.parametrize("bad", ["2022-02-30", "20221301", "yesterday", "2022/05/30", ""])
def test_bad_dates_are_config_errors_naming_the_option(bad: str) -> None:
    with pytest.raises(ConfigError, match=r"--start_time: .* is not a date"):
        parse_date(bad, what="--start_time")


def test_day_range_includes_both_ends_across_a_month_end() -> None:
    days = day_range(parse_date("20220530"), parse_date("20220602"))
    assert [d.bizdate for d in days] == ["20220530", "20220531", "20220601", "20220602"]


def test_day_range_of_one_day() -> None:
    assert day_range(parse_date("20220530"), parse_date("20220530")) == [parse_date("20220530")]


def test_end_before_start_is_a_config_error() -> None:
    with pytest.raises(ConfigError, match="end 20220529 is before start 20220530"):
        day_range(parse_date("20220530"), parse_date("20220529"), what="--end_time")


def test_substitution_replaces_every_known_placeholder() -> None:
    text = "odps://p/tables/t/dt={bizdate} eval dt={eval_ymd} ckpt=/m/{predate}/x {bizdate}"
    assert substitute_dates(text, parse_date("20220601")) == (
        "odps://p/tables/t/dt=20220601 eval dt=20220602 ckpt=/m/20220531/x 20220601"
    )


def test_substitution_leaves_json_alone() -> None:
    # -Dcluster values are JSON; their braces are not placeholders.
    text = '-Dcluster={"ps":{"count":1},"worker":{"count":2}} -Dx={}'
    assert substitute_dates(text, parse_date("20220601")) == text


def test_mistyped_placeholder_is_an_error_with_a_suggestion() -> None:
    expected = r"trial.ini \[s\] cmd1: .*\{bizdat\}.*did you mean 'bizdate'"
    with pytest.raises(ConfigError, match=expected):
        substitute_dates("dt={bizdat}", parse_date("20220601"), where="trial.ini [s] cmd1")


def test_mistyped_placeholder_in_a_whole_file_names_its_line() -> None:
    text = "[platform_config]\nname=Local\ncmd1=train --table t_{bizdat}\n"
    # A whole trial file is substituted at once: the message must say where in it (the key).
    with pytest.raises(ConfigError, match=r"in line 'cmd1=train --table t_\{bizdat\}'"):
        substitute_dates(text, parse_date("20220601"), where="trial.ini")
