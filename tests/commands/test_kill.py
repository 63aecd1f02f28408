"""`hpo-tools kill` / `retry` input errors, and the NNI manifest lookup behind them."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from hpo_tools.cli import main
from hpo_tools.commands.retry import trial_params
from hpo_tools.errors import ConfigError
from hpo_tools.nni_rest import NniRest, NniRestError, find_experiment

MANIFEST = {
    "abc12345": {"id": "abc12345", "port": 18555, "logDir": "/work/exps", "prefixUrl": None,
                 "status": "RUNNING"},
}


def _manifest(tmp_path: Path) -> Path:
    path = tmp_path / ".experiment"
    path.write_text(json.dumps(MANIFEST))
    return path


def test_find_experiment_reads_port_and_directory_from_the_manifest(tmp_path: Path) -> None:
    entry = find_experiment("abc12345", _manifest(tmp_path))
    assert entry.port == 18555
    # E = experimentWorkingDirectory / id, where the job registry lives.
    assert entry.experiment_dir == Path("/work/exps/abc12345")


def test_unknown_experiment_names_the_manifest_and_the_close_id(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        find_experiment("abc12346", _manifest(tmp_path))
    assert ".experiment: no experiment 'abc12346'" in str(info.value)
    assert "did you mean 'abc12345'" in str(info.value)


def test_missing_manifest_asks_for_the_port(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="give the experiment's --port"):
        find_experiment("abc12345", tmp_path / "nothing-here")


def test_rest_call_to_a_dead_port_is_an_error_with_the_url(free_port: int) -> None:
    with pytest.raises(NniRestError) as info:
        NniRest(free_port, timeout=2).list_trial_jobs()
    # The message names the request and suggests what to check.
    assert f"GET http://localhost:{free_port}/api/v1/nni/trial-jobs: no answer" in str(info.value)


def test_kill_with_nothing_listening_and_no_directory_exits_2(
    free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main(["kill", "--experiment", "not-in-any-manifest", "--port", str(free_port)])
    assert code == 2  # a user-facing error, not a traceback
    assert "no answer" in capsys.readouterr().err


def test_kill_without_nni_still_cancels_live_jobs_of_the_registry(
    tmp_path: Path, free_port: int, capsys: pytest.CaptureFixture[str]
) -> None:
    from hpo_tools.jobs import JobRegistry
    from hpo_tools.platforms import JobState, create_platform

    platform = create_platform("local", grace_period=0.5)
    registry = JobRegistry(tmp_path)
    record = registry.new("T1", platform=platform)
    job = platform.submit("sleep 60", log_path=tmp_path / "job.log")
    try:
        registry.mark_job(record, 1, job, JobState.RUNNING)
        code = main(["kill", "--experiment", "abc12345", "--port", str(free_port),
                     "--experiment-dir", str(tmp_path)])
        out = capsys.readouterr().out
        # NNI is gone (crashed or stopped) but the job it started must not keep running.
        assert job.wait(timeout=5) is not JobState.RUNNING
        assert f"cancelled job {job.job_id} of trial T1" in out
        assert code == 1  # trials could not be checked without NNI
    finally:
        job.cancel()


def test_retry_reads_params_the_trial_recorded(tmp_path: Path) -> None:
    trial_dir = tmp_path / "environments" / "local-env" / "trials" / "T1"
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text(json.dumps(
        {"trial_id": "T1", "params": {"lr": 0.01}, "configs": []}))
    assert trial_params(tmp_path, "T1") == {"lr": 0.01}
    assert trial_params(tmp_path, "T2") is None  # no record: the trial is skipped


def test_retry_rejects_a_params_file_without_params(tmp_path: Path) -> None:
    trial_dir = tmp_path / "environments" / "local-env" / "trials" / "T1"
    trial_dir.mkdir(parents=True)
    (trial_dir / "params.json").write_text("[1, 2]")
    with pytest.raises(ConfigError, match="params.json: expected a JSON object"):
        trial_params(tmp_path, "T1")
