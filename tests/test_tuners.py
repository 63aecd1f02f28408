"""SafeTpeTuner against the call sequence NNI 3.0's dispatcher produces with concurrent trials."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo_tools.tuners import SafeTpeTuner, ended_without_result

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
