"""`hpo-tools check` on finetune trial files: every undefined ${...} at once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo_tools.check import check_trial_file

EXAMPLE = Path(__file__).resolve().parents[1] / "examples" / "search" / "local_easyrec" / "finetune"


def test_check_reports_every_undefined_placeholder_of_a_finetune_file_at_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(EXAMPLE)  # the pipeline.config the file edits is the example's
    text = (EXAMPLE / "trial.ini").read_text()
    text = text.replace("--model_dir {model_dir}", "--model_dir {model_dir} --tag ${FIRST_UNSET}")
    text = text.replace("optimize_mode=maximize", "optimize_mode=${SECOND_UNSET}")
    text = text.replace("pipeline.config,", "${THIRD_UNSET}/pipeline.config,")
    trial = tmp_path / "trial.ini"
    trial.write_text(text)
    space = tmp_path / "space.json"
    space.write_text(json.dumps({"train_config.num_steps": {"_type": "choice", "_value": [5]}}))
    problems = check_trial_file(trial, space, environ={})
    joined = "\n".join(problems)
    # All three, each naming its section and key, not only the first one the reader meets.
    assert "[platform_config] cmd1: ${FIRST_UNSET} is not defined" in joined
    assert "[metric_config] optimize_mode: ${SECOND_UNSET} is not defined" in joined
    assert "[params_config] params_src_dst_filepath1: ${THIRD_UNSET} is not defined" in joined
    # Each is said once, not once per corner or day.
    assert joined.count("${FIRST_UNSET} is not defined") == 1


def test_check_of_the_local_finetune_example_without_env_is_still_clean(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.chdir(EXAMPLE)
    # NNI_OUTPUT_DIR is a trial variable: no stand-in problem appears for it.
    assert check_trial_file("trial.ini", "search_space.json", environ={}) == []
