"""`hpo-tools register` / `unregister` with the real nnictl, in a throw-away NNI config dir."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import yaml

from hpo_tools.assessor import PAIAssessor
from hpo_tools.cli import main


@pytest.fixture
def nni_config_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """NNI_CONFIG_DIR in tmp_path, so the real registrations are never touched."""
    config_dir = tmp_path / "nni-config"
    monkeypatch.setenv("NNI_CONFIG_DIR", str(config_dir))
    return config_dir


@pytest.fixture(scope="module")
def registered_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """A config dir where `hpo-tools register` ran once (nnictl takes seconds per call)."""
    config_dir = tmp_path_factory.mktemp("nni-config")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("NNI_CONFIG_DIR", str(config_dir))
        assert main(["register"]) == 0
        yield config_dir


def _registered(config_dir: Path) -> list[dict]:
    path = config_dir / "registered_algorithms.yml"
    if not path.exists():
        return []
    return (yaml.safe_load(path.read_text()) or {}).get("assessors", [])


def test_register_adds_pai_assessor_to_nni_config_dir(registered_dir: Path) -> None:
    entries = _registered(registered_dir)
    # nnictl wrote the entry where NNI_CONFIG_DIR points, under the name configs use.
    assert [(e["builtinName"], e["className"]) for e in entries] == [
        ("PAIAssessor", "hpo_tools.assessor.PAIAssessor")
    ]


def test_registered_name_builds_the_assessor_the_way_the_dispatcher_does(
    registered_dir: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nni.tools.package_utils.tuner_factory import create_builtin_class_instance

    monkeypatch.setenv("NNI_CONFIG_DIR", str(registered_dir))
    # `assessor: {name: PAIAssessor, classArgs: ...}` goes through this factory in NNI.
    assessor = create_builtin_class_instance(
        "PAIAssessor", {"optimize_mode": "minimize", "experiment_dir": str(tmp_path)},
        "assessors")
    assert isinstance(assessor, PAIAssessor)
    assert assessor.direction.value == "minimize"  # classArgs reached the constructor


def test_register_again_keeps_one_entry(
    registered_dir: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("NNI_CONFIG_DIR", str(registered_dir))
    assert main(["register"]) == 0
    assert len(_registered(registered_dir)) == 1  # an update, not a duplicate
    assert "registered PAIAssessor (hpo_tools.assessor.PAIAssessor)" in capsys.readouterr().out


def test_unregister_removes_the_entry(
    nni_config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from nni.tools.package_utils import AlgoMeta, register_algo_meta

    # Set up with NNI's own API (one nnictl call fewer than `hpo-tools register`).
    register_algo_meta(AlgoMeta.load({"builtinName": "PAIAssessor", "algoType": "assessor",
                                      "className": "hpo_tools.assessor.PAIAssessor"}))
    assert len(_registered(nni_config_dir)) == 1
    assert main(["unregister"]) == 0
    assert _registered(nni_config_dir) == []  # `name: PAIAssessor` no longer resolves
    assert "unregistered PAIAssessor" in capsys.readouterr().out


def test_unregister_when_not_registered_is_a_no_op(
    nni_config_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["unregister"]) == 0
    assert "not registered" in capsys.readouterr().out


def test_register_reports_nnictl_failure_as_user_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    blocker = tmp_path / "not-a-dir"
    blocker.write_text("")
    monkeypatch.setenv("NNI_CONFIG_DIR", str(blocker))  # nnictl cannot create its config dir
    assert main(["register"]) == 2
    assert "error: nnictl algo register" in capsys.readouterr().err
