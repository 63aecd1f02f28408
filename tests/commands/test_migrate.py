"""`hpo-tools migrate`: hpo_nni-era NNI experiment configs rewritten line by line.

The fixtures are shaped like EasyRec hpo_nni's search/{begin,finetune}/config.yml (same keys,
same odd three-space assessor indentation, same flag spellings) with values of our own.
"""

from __future__ import annotations

import shlex
import sys
from pathlib import Path

import pytest
import yaml

from hpo_tools.cli import main
from hpo_tools.commands.migrate import migrate_text, rewrite_trial_command, shim_directory
from hpo_tools.run import build_parser

REPO = Path(__file__).resolve().parents[2]
SHIM = REPO / "core"

BEGIN_YML = """\
# begin search of the ranking model
experimentWorkingDirectory: ../nni-runs
searchSpaceFile: space.json
trialCommand: python3 ./run_begin.py --config=./config_begin.ini --exp_dir=../trial-metrics
trialConcurrency: 3
maxTrialNumber: 12
tuner:
  name: TPE
  classArgs:
    optimize_mode: maximize
debug: false
logLevel: info
trainingService:
  platform: local
assessor:
   codeDirectory: ../../core
   className: pai_assessor.PAIAssessor
   classArgs:
      optimize_mode: maximize
      start_step: 4
"""

OLD_FINETUNE_COMMAND = (
    "python3 ./run_finetune.py --config=./config_finetune.ini --exp_dir=../trial-metrics"
    " --start_time=2023-11-02 --end_time=2023-11-05  # four days"
)
FINETUNE_YML = """\
experimentWorkingDirectory: ../nni-runs
searchSpaceFile: space.json
trialCommand: OLD_COMMAND
trialConcurrency: 1
maxTrialNumber: 5
debug: false
logLevel: info
tuner:
  name: TPE
  classArgs:
    optimize_mode: maximize
trainingService:
  platform: local
assessor:
   codeDirectory: ../../core
   className: pai_assessor.PAIAssessor
   classArgs:
      optimize_mode: maximize
      start_step: 2
""".replace("OLD_COMMAND", OLD_FINETUNE_COMMAND)

BEGIN_COMMAND = "trialCommand: python3 -m hpo_tools.run --config ./config_begin.ini"
FINETUNE_COMMAND = (
    "trialCommand: python3 -m hpo_tools.run --config ./config_finetune.ini"
    " --start_time 2023-11-02 --end_time 2023-11-05  # four days"
)
CODE_DIRECTORY = f"   codeDirectory: {SHIM}"


def _experiment(root: Path, name: str, text: str, trial_file: str) -> Path:
    """``root/search/<name>/config.yml`` beside its (empty) trial file."""
    folder = root / "search" / name
    folder.mkdir(parents=True)
    (folder / trial_file).write_text("[metric_config]\nauc=1\n")
    path = folder / "config.yml"
    path.write_bytes(text.encode())
    return path


@pytest.fixture
def seed_dir(tmp_path: Path) -> Path:
    """An hpo_nni-style search directory: begin and finetune experiments."""
    _experiment(tmp_path, "begin", BEGIN_YML, "config_begin.ini")
    _experiment(tmp_path, "finetune", FINETUNE_YML, "config_finetune.ini")
    return tmp_path


def _changed_lines(before: bytes, after: bytes) -> dict[int, bytes]:
    """Line index -> new line, for the lines that differ (same number of lines asserted)."""
    old, new = before.splitlines(keepends=True), after.splitlines(keepends=True)
    assert len(old) == len(new)  # a line edit never adds or removes lines
    return {i: b for i, (a, b) in enumerate(zip(old, new)) if a != b}


def _migrate(*argv: str) -> int:
    return main(["migrate", "--core-dir", str(SHIM), *argv])


def test_begin_config_gets_our_runner_and_shim_directory_and_nothing_else(
    seed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = seed_dir / "search" / "begin" / "config.yml"
    assert _migrate(str(seed_dir)) == 0
    after = path.read_bytes()
    # Exactly the trialCommand (line 4) and the assessor's codeDirectory (line 16) changed.
    assert _changed_lines(BEGIN_YML.encode(), after) == {
        3: (BEGIN_COMMAND + "\n").encode(),
        15: (CODE_DIRECTORY + "\n").encode(),
    }
    out, err = capsys.readouterr()
    # The diff shows each change; --exp_dir's removal is explained, not silent.
    assert "-trialCommand: python3 ./run_begin.py --config=./config_begin.ini" in out
    assert f"+{BEGIN_COMMAND}\n" in out
    assert "+   codeDirectory: " in out
    assert "--exp_dir ../trial-metrics dropped" in err


def test_finetune_config_keeps_its_days_and_its_comment(seed_dir: Path) -> None:
    path = seed_dir / "search" / "finetune" / "config.yml"
    assert _migrate(str(seed_dir)) == 0
    # The old --start_time/--end_time become ours; the trailing comment stays.
    assert _changed_lines(FINETUNE_YML.encode(), path.read_bytes()) == {
        2: (FINETUNE_COMMAND + "\n").encode(),
        14: (CODE_DIRECTORY + "\n").encode(),
    }


def test_original_is_kept_as_bak(seed_dir: Path) -> None:
    assert _migrate(str(seed_dir)) == 0
    for name, text in (("begin", BEGIN_YML), ("finetune", FINETUNE_YML)):
        backup = seed_dir / "search" / name / "config.yml.bak"
        # The backup is the original, byte for byte.
        assert backup.read_bytes() == text.encode()


@pytest.mark.parametrize("which", ["begin", "finetune"])
def test_rewritten_command_parses_with_our_runner(seed_dir: Path, which: str) -> None:
    assert _migrate(str(seed_dir)) == 0
    config = yaml.safe_load((seed_dir / "search" / which / "config.yml").read_text())
    words = shlex.split(config["trialCommand"])
    assert words[:3] == ["python3", "-m", "hpo_tools.run"]  # our runner, as a module
    args = build_parser().parse_args(words[3:])  # strict: a stray flag would exit
    assert args.config == f"./config_{which}.ini"
    assert args.exp_dir is None  # NNI's experiment directory, as the assessor's
    if which == "finetune":
        assert (args.start_time, args.end_time) == ("2023-11-02", "2023-11-05")
    else:
        assert args.start_time is None and args.end_time is None


def test_check_reports_and_writes_nothing(
    seed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = seed_dir / "search" / "begin" / "config.yml"
    # Something would change: exit 1, the diff shown, no file touched, no backup made.
    assert _migrate("--check", str(seed_dir)) == 1
    assert f"+{BEGIN_COMMAND}" in capsys.readouterr().out
    assert path.read_bytes() == BEGIN_YML.encode()
    assert not (path.parent / "config.yml.bak").exists()
    # After the migration there is nothing left to do: exit 0.
    assert _migrate(str(seed_dir)) == 0
    assert _migrate("--check", str(seed_dir)) == 0


def test_second_run_has_nothing_to_do(
    seed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert _migrate(str(seed_dir)) == 0
    paths = sorted(seed_dir.rglob("config.yml*"))
    before = {p: p.read_bytes() for p in paths}
    capsys.readouterr()
    # The .bak files exist now, yet a run with nothing to change does not refuse.
    assert _migrate(str(seed_dir)) == 0
    out = capsys.readouterr().out
    assert out.startswith("nothing to do: 2 experiment configs")
    assert "---" not in out  # no diff
    assert {p: p.read_bytes() for p in paths} == before  # not a byte moved, backups included


def test_unknown_trial_command_is_a_warning_naming_file_and_line(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BEGIN_YML.replace(
        "python3 ./run_begin.py --config=./config_begin.ini --exp_dir=../trial-metrics",
        "bash ./train.sh --epochs 3",
    )
    path = _experiment(tmp_path, "begin", text, "config_begin.ini")
    assert _migrate(str(tmp_path)) == 0
    err = capsys.readouterr().err
    warnings = [line for line in err.splitlines() if line.startswith("warning:")]
    # One line, naming the file and the line of trialCommand.
    assert len(warnings) == 1
    assert warnings[0].startswith(f"warning: {path}:4: trialCommand not rewritten: ")
    # The command is left alone; the assessor line is still migrated.
    assert _changed_lines(text.encode(), path.read_bytes()) == {
        15: (CODE_DIRECTORY + "\n").encode()
    }


def test_old_command_with_a_flag_the_old_script_did_not_have_is_left(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = BEGIN_YML.replace("--exp_dir=../trial-metrics", "--exp_dir=../m --workers 4")
    path = _experiment(tmp_path, "begin", text, "config_begin.ini")
    assert _migrate(str(tmp_path)) == 0
    err = capsys.readouterr().err
    # hpo_nni silently ignored unknown words; we say so instead of guessing.
    assert f"warning: {path}:4: trialCommand not rewritten: run_begin.py: --workers 4" in err
    assert path.read_bytes().splitlines()[3] == text.encode().splitlines()[3]


def test_existing_backup_is_refused_without_force(
    seed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    begin = seed_dir / "search" / "begin" / "config.yml"
    backup = begin.parent / "config.yml.bak"
    backup.write_text("an older backup\n")
    assert _migrate(str(seed_dir)) == 2
    err = capsys.readouterr().err.strip()
    # One line naming the file; nothing written anywhere (the finetune file neither).
    assert err.splitlines() == [err] and err.startswith(f"error: {begin}: ")
    assert backup.read_text() == "an older backup\n"
    assert begin.read_bytes() == BEGIN_YML.encode()
    assert not (seed_dir / "search" / "finetune" / "config.yml.bak").exists()
    # --force replaces the old backup with the current original.
    assert _migrate("--force", str(seed_dir)) == 0
    assert backup.read_bytes() == BEGIN_YML.encode()


def test_invalid_yaml_is_one_error_line_and_nothing_written(
    seed_dir: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    broken = seed_dir / "search" / "broken" / "config.yml"
    broken.parent.mkdir()
    broken.write_text("trialCommand: python3 ./run_begin.py\nassessor: [unclosed\n")
    assert _migrate(str(seed_dir)) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"error: {broken}:") and "\n" not in err
    # All or nothing: the good files are untouched.
    assert (seed_dir / "search" / "begin" / "config.yml").read_bytes() == BEGIN_YML.encode()


@pytest.mark.parametrize(
    "argv, message",
    [
        (["does-not-exist"], "does-not-exist: no such directory"),
        (["--core-dir", "/nonexistent", "."], "--core-dir /nonexistent: no hpo-tools"),
    ],
)
def test_bad_arguments_exit_2(
    argv: list[str], message: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    monkeypatch.chdir(tmp_path)
    assert main(["migrate", *argv]) == 2
    assert capsys.readouterr().err.startswith(f"error: {message}")


def test_directory_without_experiment_configs_is_an_error(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "ci.yml").write_text("jobs: {}\n")  # YAML, but no trialCommand
    assert _migrate(str(tmp_path)) == 2
    assert "no NNI experiment config found" in capsys.readouterr().err


def test_crlf_quotes_and_missing_final_newline_are_kept(tmp_path: Path) -> None:
    text = (
        "trialCommand: 'python3 ./run_begin.py --config=./config_begin.ini'   # begin\r\n"
        "assessor:\r\n"
        '  codeDirectory: "../../core"\r\n'
        "  className: pai_assessor.PAIAssessor"
    )
    migration = migrate_text(text, source=tmp_path / "config.yml", shim_dir=SHIM)
    assert migration.new_text == (
        "trialCommand: 'python3 -m hpo_tools.run --config ./config_begin.ini'   # begin\r\n"
        "assessor:\r\n"
        f'  codeDirectory: "{SHIM}"\r\n'
        "  className: pai_assessor.PAIAssessor"
    )
    # The diff marks the unterminated last line rather than gluing it to the next one.
    assert migration.diff().endswith("  className: pai_assessor.PAIAssessor\n"
                                     "\\ No newline at end of file\n")


@pytest.mark.parametrize(
    "old, new",
    [
        # hpo_nni's run_begin.py default --config, made explicit
        ("python3 ./run_begin.py", "python3 -m hpo_tools.run --config ./config_begin.ini"),
        # argparse abbreviations, as the old parse_known_args took them; any script path
        ("python ../b/run_begin.py --conf a.ini", "python -m hpo_tools.run --config a.ini"),
        # run_finetune.py's hard-coded days, made explicit
        (
            "python3 run_finetune.py --config f.ini",
            "python3 -m hpo_tools.run --config f.ini --start_time 2022-05-30 --end_time 2022-06-17",
        ),
        # run as a module from EasyRec's root; the environment and -u are kept
        (
            "PYTHONPATH=/src/EasyRec python3 -u -m hpo_nni.search.begin.run_begin --config=c.ini",
            "PYTHONPATH=/src/EasyRec python3 -u -m hpo_tools.run --config c.ini",
        ),
        ("python3 run_begin.py --config='my dir/c.ini'",
         "python3 -m hpo_tools.run --config 'my dir/c.ini'"),
    ],
)
def test_old_command_forms(old: str, new: str) -> None:
    assert rewrite_trial_command(old).command == new


@pytest.mark.parametrize(
    "command",
    [
        "python3 -m hpo_tools.run --config ./config_begin.ini",
        "python3 -m hpo_tools.core.utils.run --config=./trial.ini",  # hpo_tools 0.1.x's alias
        "python3 -m hpo_tools.run --config ${TRIAL_FILE}",
    ],
)
def test_our_own_commands_need_nothing(command: str) -> None:
    rewrite = rewrite_trial_command(command)
    assert rewrite.command is None and rewrite.problem is None  # no change, no warning


@pytest.mark.parametrize(
    "command, problem",
    [
        ("python3 run_finetune.py", "no --config"),  # the old default was a typo
        ("python3 run_finetune.py --config f --start_time 2023-01-05 --end_time 2023-01-02",
         "before start"),
        ("python3 run_finetune.py --e 2023-01-01 --config f", "ambiguous option"),
        ("cd begin && python3 run_begin.py", "shell syntax"),
    ],
)
def test_old_commands_we_do_not_guess_at(command: str, problem: str) -> None:
    rewrite = rewrite_trial_command(command)
    assert rewrite.command is None
    assert problem in (rewrite.problem or "")


def test_hpo_tools_01_config_needs_nothing_but_a_registration(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    text = (
        "trialCommand: python3 -m hpo_tools.core.utils.run --config=./trial.ini\n"
        "assessor:\n  name: PAIAssessor\n  classArgs:\n    platform: MAXCOMPUTE\n"
    )
    path = tmp_path / "exp.yml"
    path.write_text(text)
    assert _migrate(str(tmp_path)) == 0
    out, err = capsys.readouterr()
    assert out.startswith("nothing to do")
    assert f"note: {path}:3: assessor `name: PAIAssessor` needs `hpo-tools register`" in err
    assert path.read_text() == text and not (tmp_path / "exp.yml.bak").exists()


def test_without_the_shim_the_code_directory_is_left_with_a_warning(tmp_path: Path) -> None:
    migration = migrate_text(BEGIN_YML, source=tmp_path / "config.yml", shim_dir=None)
    # trialCommand is still migrated; codeDirectory is not guessed.
    assert f"\n{BEGIN_COMMAND}\n" in migration.new_text
    assert "   codeDirectory: ../../core\n" in migration.new_text
    assert len(migration.warnings) == 1 and "hpo-tools register" in migration.warnings[0]


def test_shim_is_found_beside_the_package_in_a_checkout() -> None:
    # An editable install / checkout: core/pai_assessor.py beside hpo_tools/.
    assert shim_directory() == SHIM


def test_migrated_assessor_block_loads_our_assessor_the_way_nni_does(
    seed_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    from nni.experiment.config import ExperimentConfig
    from nni.tools.package_utils.tuner_factory import create_customized_class_instance

    from hpo_tools.assessor import PAIAssessor

    assert _migrate(str(seed_dir)) == 0
    config = ExperimentConfig.load(str(seed_dir / "search" / "begin" / "config.yml"))
    assessor = config.assessor
    monkeypatch.setattr(sys, "path", list(sys.path))  # NNI appends codeDirectory
    monkeypatch.delitem(sys.modules, "pai_assessor", raising=False)
    instance = create_customized_class_instance({
        "codeDirectory": assessor.code_directory,
        "className": assessor.class_name,
        "classArgs": {**assessor.class_args, "experiment_dir": str(seed_dir / "E")},
    })
    # The dispatcher gets hpo-tools' PAIAssessor with the file's own classArgs.
    assert isinstance(instance, PAIAssessor)
    assert instance.start_step == 4
