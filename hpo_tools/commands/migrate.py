"""``hpo-tools migrate DIR``: rewrite EasyRec ``hpo_nni``-era NNI experiment configs for hpo-tools.

Only two kinds of line change, each edited in place in the YAML text (comments, key order,
quoting and line endings kept; the YAML is never dumped again):

* ``trialCommand``: ``python3 ./run_begin.py --config=X --exp_dir=D`` becomes
  ``python3 -m hpo_tools.run --config X``; ``run_finetune.py`` keeps its days
  (``--start_time S --end_time E``). The old flags are read with a copy of the old scripts'
  argparse (EasyRec ``2666c19b``: ``parse_known_args``, abbreviations, the same defaults).
* ``codeDirectory`` of an assessor/tuner/advisor whose ``className`` is
  ``pai_assessor.PAIAssessor`` and whose directory is hpo_nni's ``core`` (or gone): it becomes
  the directory of hpo-tools' shim ``core/pai_assessor.py``.

Anything else is reported as a one-line warning naming file and line, and left as it is.
docs/migrating.md has the full mapping.
"""

from __future__ import annotations

import argparse
import copy
import difflib
import json
import logging
import os
import re
import shlex
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, NoReturn

from hpo_tools.errors import ConfigError

__all__ = [
    "NAME",
    "HELP",
    "DESCRIPTION",
    "add_arguments",
    "run",
    "CommandRewrite",
    "Migration",
    "find_experiment_configs",
    "migrate_text",
    "rewrite_trial_command",
    "shim_directory",
]

_logger = logging.getLogger(__name__)

NAME = "migrate"
HELP = "rewrite EasyRec hpo_nni experiment configs (trialCommand, assessor codeDirectory)"
DESCRIPTION = """\
Find every NNI experiment config (a .yml/.yaml file with a trialCommand) under DIR and rewrite,
line by line, only what EasyRec's old hpo_nni tool needs changed:

  trialCommand: python3 ./run_begin.py --config=./config_begin.ini --exp_dir=../exp
    -> trialCommand: python3 -m hpo_tools.run --config ./config_begin.ini
  trialCommand: python3 ./run_finetune.py --config=./config_finetune.ini --exp_dir=../exp
                --start_time=2022-06-16 --end_time=2022-06-17
    -> trialCommand: python3 -m hpo_tools.run --config ./config_finetune.ini
                --start_time 2022-06-16 --end_time 2022-06-17
  codeDirectory: ../../core            (assessor with className: pai_assessor.PAIAssessor)
    -> codeDirectory: <directory of hpo-tools' core/pai_assessor.py shim>

--exp_dir is dropped (see docs/migrating.md). Every other line stays byte-identical. A unified
diff of each change is printed; each original is kept as FILE.bak (an existing FILE.bak is
never overwritten unless --force) and each file is replaced atomically. Commands of another
form are left as they are, with one `warning: FILE:LINE: ...` line each on stderr. Configs
already in hpo-tools' form (python3 -m hpo_tools.run, hpo_tools 0.1.x's
python3 -m hpo_tools.core.utils.run, our shim's directory) need nothing and are left alone,
so running migrate twice changes nothing the second time.

The shim's directory is found next to the installed package (a checkout or editable install);
when hpo-tools was installed from a wheel there is none: pass --core-dir, or run
`hpo-tools register` and write `name: PAIAssessor` instead of codeDirectory/className.

Exit codes: 0 migrated, or nothing to do (warnings do not change it); 1 with --check when a
file would change; 2 an error (unreadable DIR or file, invalid YAML, an existing .bak without
--force, no experiment config under DIR), one line naming the file; these are all found
before anything is written.

Examples:
  hpo-tools migrate --check hpo_nni/search        # show the diffs, write nothing
  hpo-tools migrate hpo_nni/search                # rewrite, keeping config.yml.bak
  hpo-tools migrate --force hpo_nni/search/begin/config.yml   # one file, over an old .bak
  hpo-tools migrate exp/ --core-dir /srv/hpo-tools/core
"""

EXIT_WOULD_CHANGE = 1
_YAML_SUFFIXES = (".yml", ".yaml")
_SKIPPED_DIRS = ("__pycache__", "node_modules")

# The old scripts (EasyRec 2666c19b hpo_nni/search/{begin/run_begin.py,finetune/run_finetune.py})
# and the modules they were run as from the repository root.
_OLD_SCRIPTS = {"run_begin.py": "begin", "run_finetune.py": "finetune"}
_OLD_MODULES = {
    "hpo_nni.search.begin.run_begin": "begin",
    "hpo_nni.search.finetune.run_finetune": "finetune",
}
# Runners that need nothing: ours, and hpo_tools 0.1.x's name for it (an alias).
_OUR_MODULES = ("hpo_tools.run", "hpo_tools.core.utils.run")
_RUNNER = "hpo_tools.run"
_OURS = re.compile(r"(^|\s)-m\s+hpo_tools\.(core\.utils\.)?run(\s|$)")
# The old scripts' argparse defaults, made explicit when the old command relied on them.
_OLD_DEFAULTS = {
    "begin": {"config": "./config_begin.ini", "exp_dir": "../exp"},
    "finetune": {
        "config": "./config_finetune.ini.ini",
        "exp_dir": "../exp",
        "start_time": "2022-05-30",
        "end_time": "2022-06-17",
    },
}
_PYTHON = re.compile(r"python(\d+(\.\d+)*)?")
# Interpreter options that take no argument (kept as they are, e.g. -u).
_PYTHON_FLAGS = re.compile(r"-[bBdEiIOqsSuv]+")
_ASSIGNMENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*=")
# Characters whose shell meaning a re-quoted token could change: left to the user.
_SHELL_SYNTAX = set("$`\\;&|<>()*?[]{}~!#\n")

_SHIM_FILE = "pai_assessor.py"
_SHIM_CLASS = "pai_assessor.PAIAssessor"
_SHIM_MARK = "hpo_tools.assessor"
_HPO_NNI_MARK = "hpo_nni"
_CODE_BLOCKS = ("assessor", "tuner", "advisor")

_TOP_KEY = re.compile(r"([A-Za-z_][\w-]*)[ \t]*:(?=[ \t]|$)")
_TRIAL_COMMAND = re.compile(r"(trialCommand[ \t]*:[ \t]*)(.*)")
_CODE_DIRECTORY = re.compile(r"([ \t]+codeDirectory[ \t]*:[ \t]*)(.*)")
_NAME_LINE = re.compile(r"[ \t]+name[ \t]*:")
_TAIL = re.compile(r"(?:[ \t]+#.*)?[ \t]*")


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``hpo-tools migrate``."""
    parser.add_argument(
        "dir",
        metavar="DIR",
        help="directory searched recursively for NNI experiment configs (or one .yml file)",
    )
    parser.add_argument(
        "--check",
        action="store_true",
        help="only show what would change; exit 1 when something would, 0 when nothing",
    )
    parser.add_argument(
        "--force", action="store_true", help="overwrite an existing FILE.bak with the original"
    )
    parser.add_argument(
        "--core-dir",
        "--core_dir",
        dest="core_dir",
        metavar="DIR",
        help="the directory holding hpo-tools' pai_assessor.py shim, written as codeDirectory "
        "(default: core/ beside the installed hpo_tools package)",
    )


# --- the trial command -------------------------------------------------------------------


@dataclass(frozen=True)
class CommandRewrite:
    """What becomes of one ``trialCommand``.

    ``command`` is the new command (None: leave it); ``problem`` says why a command that is
    not ours is left (None: it is ours or rewritten); ``notes`` are remarks on a rewrite.
    """

    command: str | None = None
    problem: str | None = None
    notes: tuple[str, ...] = ()


class _Unparsable(Exception):
    pass


class _OldArgumentParser(argparse.ArgumentParser):
    """The old scripts' parser, raising instead of printing usage and exiting."""

    def error(self, message: str) -> NoReturn:
        raise _Unparsable(message)


def _old_parser(kind: str) -> argparse.ArgumentParser:
    """The old script's options as its argparse had them, with None defaults (to tell what
    the command gave); ``-h`` is not added, so it stays an unknown option."""
    parser = _OldArgumentParser(prog=f"run_{kind}.py", add_help=False)
    for name in _OLD_DEFAULTS[kind]:
        parser.add_argument(f"--{name}", type=str, default=None)
    return parser


def rewrite_trial_command(command: str) -> CommandRewrite:
    """The hpo-tools form of an hpo_nni ``trialCommand`` (see the module docstring).

    Examples:
        ``python3 ./run_begin.py --config=./a.ini --exp_dir=../exp`` ->
        ``python3 -m hpo_tools.run --config ./a.ini`` (note: --exp_dir dropped).
    """
    if _OURS.search(command):
        return CommandRewrite()
    if _SHELL_SYNTAX & set(command):
        shown = "".join(sorted(_SHELL_SYNTAX & set(command))).replace("\n", "\\n")
        if not _mentions_old_runner(command):
            return CommandRewrite(problem=_not_ours(command))
        return CommandRewrite(problem=f"shell syntax ({shown}) in the command; edit it by hand")
    try:
        tokens = shlex.split(command)
    except ValueError as err:
        return CommandRewrite(problem=f"cannot split the command into words ({err})")
    index = 0
    while index < len(tokens) and _ASSIGNMENT.match(tokens[index]):
        index += 1
    prefix = tokens[:index]
    if index == len(tokens) or not _PYTHON.fullmatch(os.path.basename(tokens[index])):
        return CommandRewrite(problem=_not_ours(command))
    interpreter = tokens[index : index + 1]
    index += 1
    while index < len(tokens) and _PYTHON_FLAGS.fullmatch(tokens[index]):
        interpreter.append(tokens[index])
        index += 1
    if index == len(tokens):
        return CommandRewrite(problem=_not_ours(command))
    if tokens[index] == "-m" and index + 1 < len(tokens):
        module = tokens[index + 1]
        if module in _OUR_MODULES:
            return CommandRewrite()
        kind = _OLD_MODULES.get(module)
        shown_runner = f"-m {module}"
        index += 2
    else:
        kind = _OLD_SCRIPTS.get(os.path.basename(tokens[index]))
        shown_runner = os.path.basename(tokens[index])
        index += 1
    if kind is None:
        return CommandRewrite(problem=_not_ours(command))
    return _rewrite_old(kind, shown_runner, prefix + interpreter, tokens[index:])


def _mentions_old_runner(command: str) -> bool:
    return any(name in command for name in (*_OLD_SCRIPTS, *_OLD_MODULES))


def _not_ours(command: str) -> str:
    shown = command if len(command) <= 60 else command[:57] + "..."
    return (
        f"not a run_begin.py / run_finetune.py invocation nor hpo-tools' runner ({shown!r}); "
        "edit it by hand (docs/migrating.md)"
    )


def _rewrite_old(
    kind: str, runner: str, head: list[str], arguments: list[str]
) -> CommandRewrite:
    """``head`` (assignments, interpreter, its flags) + ``-m hpo_tools.run`` + mapped flags."""
    try:
        given, unknown = _old_parser(kind).parse_known_args(arguments)
    except _Unparsable as err:
        return CommandRewrite(problem=f"{runner}: {err}; edit it by hand")
    if unknown:
        return CommandRewrite(
            problem=f"{runner}: {' '.join(unknown)}: not an option of hpo_nni's {runner} "
            "(it ignored such words); remove them, or edit the command by hand"
        )
    defaults = _OLD_DEFAULTS[kind]
    notes: list[str] = []
    assignments = [t.split("=", 1)[0] for t in head if _ASSIGNMENT.match(t)]
    if assignments:
        notes.append(
            f"kept {', '.join(assignments)}=...: hpo-tools needs none (hpo_nni needed EasyRec "
            "on PYTHONPATH); remove what you no longer need"
        )
    if given.exp_dir is not None:
        notes.append(
            f"--exp_dir {given.exp_dir} dropped: hpo-tools keeps its trial files in NNI's "
            "experiment directory, where PAIAssessor, `hpo-tools kill` and `experiment best` "
            "look for them"
        )
    config = given.config
    if config is None:
        if kind == "finetune":
            return CommandRewrite(
                problem=f"{runner}: no --config, and hpo_nni's default {defaults['config']} "
                "is a typo; add --config FILE to the command and run migrate again"
            )
        config = defaults["config"]
        notes.append(f"--config {config} made explicit (hpo_nni's default)")
    new = [*head, "-m", _RUNNER, "--config", config]
    if kind == "finetune":
        days: dict[str, str] = {}
        for flag in ("start_time", "end_time"):
            value = getattr(given, flag)
            if value is None:
                value = defaults[flag]
                notes.append(f"--{flag} {value} made explicit (hpo_nni's default)")
            days[flag] = value
        problem = _check_days(days["start_time"], days["end_time"])
        if problem is not None:
            return CommandRewrite(problem=f"{runner}: {problem}")
        new += ["--start_time", days["start_time"], "--end_time", days["end_time"]]
    return CommandRewrite(command=" ".join(shlex.quote(t) for t in new), notes=tuple(notes))


def _check_days(start: str, end: str) -> str | None:
    """None when our runner takes the window, else why not."""
    from hpo_tools.dates import day_range, parse_date

    try:
        day_range(
            parse_date(start, what="--start_time"),
            parse_date(end, what="--end_time"),
            what="--start_time/--end_time",
        )
    except ConfigError as err:
        return str(err)
    return None


# --- the assessor's code directory -------------------------------------------------------


def shim_directory(core_dir: str | None = None) -> Path | None:
    """The directory holding hpo-tools' ``pai_assessor.py`` shim.

    ``core_dir`` when given (made absolute); else ``core/`` beside the installed package (a
    checkout or an editable install), or None when it is not there (a wheel install).

    Raises:
        ConfigError: ``core_dir`` holds no hpo-tools shim.
    """
    if core_dir is not None:
        path = Path(core_dir).expanduser().resolve()
        if _shim_kind(path) != "ours":
            raise ConfigError(
                f"--core-dir {core_dir}: no hpo-tools {_SHIM_FILE} in it (expected the core/ "
                "directory of an hpo-tools checkout)"
            )
        return path
    import hpo_tools

    path = Path(hpo_tools.__file__).resolve().parent.parent / "core"
    return path if _shim_kind(path) == "ours" else None


def _shim_kind(directory: Path) -> str:
    """``ours``, ``hpo_nni``, ``other`` (someone's pai_assessor.py) or ``missing``."""
    try:
        text = (directory / _SHIM_FILE).read_text(encoding="utf-8", errors="replace")
    except OSError:
        return "missing"
    if _SHIM_MARK in text:
        return "ours"
    return "hpo_nni" if _HPO_NNI_MARK in text else "other"


# --- one file ----------------------------------------------------------------------------


@dataclass
class Migration:
    """One experiment config: its text before and after, and what was said about it.

    ``warnings`` and ``notes`` are complete lines (``path:line: ...``).
    """

    path: Path
    old_text: str
    new_text: str
    warnings: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def changed(self) -> bool:
        return self.new_text != self.old_text

    def diff(self) -> str:
        """A unified diff of the change (empty when nothing changed)."""
        name = str(self.path)
        lines = difflib.unified_diff(
            _lines(self.old_text), _lines(self.new_text), fromfile=name, tofile=name
        )
        return "".join(
            line if line.endswith("\n") else line + "\n\\ No newline at end of file\n"
            for line in lines
        )


def _lines(text: str) -> list[str]:
    """The lines of ``text``, each with its own ending (only ``\\n`` ends a line)."""
    return [line for line in re.split(r"(?<=\n)", text) if line]


def _split_ending(line: str) -> tuple[str, str]:
    for ending in ("\r\n", "\n"):
        if line.endswith(ending):
            return line[: -len(ending)], ending
    return line, ""


def _split_scalar(rest: str) -> tuple[str, str, str] | None:
    """``rest`` of a ``key: rest`` line as (style, value text, tail), the tail being spaces
    and a comment; None for what is not a one-line scalar (block scalars, flow collections,
    anchors, tags, an unterminated quote)."""
    if not rest or rest[0] in "|>[{&*!%@`":
        return None
    if rest[0] in "'\"":
        quote = rest[0]
        index = 1
        while index < len(rest):
            char = rest[index]
            if quote == '"' and char == "\\":
                index += 2
                continue
            if char == quote:
                if quote == "'" and rest[index + 1 : index + 2] == "'":
                    index += 2
                    continue
                break
            index += 1
        else:
            return None
        value, tail = rest[: index + 1], rest[index + 1 :]
        style = "single" if quote == "'" else "double"
    else:
        match = re.search(r"[ \t]#", rest)
        end = match.start() if match else len(rest)
        value = rest[:end].rstrip(" \t")
        tail = rest[len(value) :]
        style = "plain"
    if not _TAIL.fullmatch(tail):
        return None
    return style, value, tail


def _load_value(text: str) -> Any:
    import yaml

    try:
        loaded = yaml.safe_load("k: " + text)
    except yaml.YAMLError:
        return _NOTHING
    return loaded.get("k", _NOTHING) if isinstance(loaded, dict) else _NOTHING


_NOTHING = object()


def _render(style: str, value: str) -> str:
    """``value`` as a YAML scalar in ``style`` when that reads back as ``value``, else in
    single quotes."""
    if style == "plain" and "#" not in value and _load_value(value) == value:
        return value
    if style == "double":
        rendered = json.dumps(value, ensure_ascii=False)
        if _load_value(rendered) == value:
            return rendered
    return "'" + value.replace("'", "''") + "'"


@dataclass
class _Line:
    number: int  # 1-based
    content: str
    ending: str
    top: str | None  # the top-level key the line belongs to
    indent: int
    child_indent: int | None  # the indentation of the top-level block's direct children


def _scan(text: str) -> list[_Line]:
    scanned: list[_Line] = []
    top: str | None = None
    child_indent: int | None = None
    for number, raw in enumerate(_lines(text), start=1):
        content, ending = _split_ending(raw)
        if number == 1 and content.startswith("\ufeff"):
            content = content[1:]
        stripped = content.lstrip(" \t")
        indent = len(content) - len(stripped)
        if stripped and not stripped.startswith("#"):
            if indent == 0:
                match = _TOP_KEY.match(content)
                top = match.group(1) if match else None
                child_indent = None
            elif child_indent is None:
                child_indent = indent
        scanned.append(_Line(number, content, ending, top, indent, child_indent))
    return scanned


def migrate_text(
    text: str,
    *,
    source: Path,
    shim_dir: Path | None,
    document: dict[str, Any] | None = None,
) -> Migration:
    """The migrated text of one experiment config (nothing written).

    Args:
        text: the file's text.
        source: the file (relative paths in it resolve from its directory, as NNI does).
        shim_dir: what ``codeDirectory`` becomes (None: hpo-tools' shim was not found).
        document: ``text`` already loaded as YAML (loaded here when None).

    Raises:
        ConfigError: the text is not YAML, or (a bug) the rewrite changed more than intended.
    """
    doc = _load_document(text, source) if document is None else document
    migration = Migration(source, text, text)
    lines = _scan(text)
    replaced: dict[int, str] = {}
    expected = copy.deepcopy(doc)
    where = str(source)

    command = doc.get("trialCommand")
    command_lines = [] if "trialCommand" not in doc else [
        line for line in lines if line.indent == 0 and _TRIAL_COMMAND.fullmatch(line.content)
    ]
    if "trialCommand" not in doc:
        pass
    elif len(command_lines) != 1:
        line_no = command_lines[-1].number if command_lines else 1
        migration.warnings.append(
            f"{where}:{line_no}: trialCommand not rewritten: expected one top-level "
            f"`trialCommand: ...` line, found {len(command_lines)}"
        )
    elif not isinstance(command, str):
        migration.warnings.append(
            f"{where}:{command_lines[0].number}: trialCommand not rewritten: not a string"
        )
    else:
        line = command_lines[0]
        key, rest = _TRIAL_COMMAND.fullmatch(line.content).groups()  # type: ignore[union-attr]
        split = _split_scalar(rest)
        if split is None or _load_value(split[1]) != command:
            migration.warnings.append(
                f"{where}:{line.number}: trialCommand not rewritten: its value is not on one "
                "line; edit it by hand"
            )
        else:
            style, _, tail = split
            rewrite = rewrite_trial_command(command)
            if rewrite.problem is not None:
                migration.warnings.append(
                    f"{where}:{line.number}: trialCommand not rewritten: {rewrite.problem}"
                )
            if rewrite.command is not None:
                replaced[line.number] = key + _render(style, rewrite.command) + tail
                expected["trialCommand"] = rewrite.command
                migration.notes.extend(f"{where}:{line.number}: {n}" for n in rewrite.notes)
                _note_missing_trial_file(migration, doc, rewrite.command, line.number)

    for block in _CODE_BLOCKS:
        _migrate_code_directory(migration, doc, expected, lines, replaced, block, shim_dir)

    if replaced:
        out = []
        for line, raw in zip(lines, _lines(text)):
            if line.number in replaced:
                bom = "\ufeff" if line.number == 1 and raw.startswith("\ufeff") else ""
                out.append(bom + replaced[line.number] + line.ending)
            else:
                out.append(raw)
        migration.new_text = "".join(out)
        if _load_document(migration.new_text, source) != expected:
            raise ConfigError(
                f"{where}: the rewrite would change more than trialCommand/codeDirectory; "
                "not written (please report this file)"
            )
    return migration


def _migrate_code_directory(
    migration: Migration,
    doc: dict[str, Any],
    expected: dict[str, Any],
    lines: list[_Line],
    replaced: dict[int, str],
    block: str,
    shim_dir: Path | None,
) -> None:
    settings = doc.get(block)
    if not isinstance(settings, dict):
        return
    where = str(migration.path)
    header = next((ln.number for ln in lines if ln.indent == 0 and ln.top == block), 1)
    if "codeDirectory" not in settings:
        name_line = next(
            (ln.number for ln in lines
             if ln.top == block and ln.indent == ln.child_indent and _NAME_LINE.match(ln.content)),
            header,
        )
        if block == "assessor" and str(settings.get("name", "")).lower() == "paiassessor":
            migration.notes.append(
                f"{where}:{name_line}: assessor `name: PAIAssessor` needs `hpo-tools register` "
                "once (per NNI config directory); nothing to rewrite"
            )
        return
    value = settings["codeDirectory"]
    class_name = str(settings.get("className", ""))
    directory = Path(os.path.expanduser(str(value)))
    if not directory.is_absolute():
        directory = migration.path.parent / directory
    kind = _shim_kind(directory)
    hpo_nni_dir = kind == "hpo_nni" or (
        directory.name == "core" and directory.parent.name == "hpo_nni"
    )
    if kind == "ours" or (not class_name.startswith("pai_assessor.") and not hpo_nni_dir):
        return
    candidates = [
        ln for ln in lines
        if ln.top == block and ln.indent == ln.child_indent
        and _CODE_DIRECTORY.fullmatch(ln.content)
    ]
    line_no = candidates[0].number if len(candidates) == 1 else header
    prefix = f"{where}:{line_no}: {block} codeDirectory not rewritten: "
    if class_name != _SHIM_CLASS:
        migration.warnings.append(
            prefix + f"className {class_name or '(none)'} is not {_SHIM_CLASS}, the one class "
            "hpo-tools' shim provides; edit it by hand"
        )
        return
    if kind == "other":
        migration.warnings.append(
            prefix + f"{directory / _SHIM_FILE} is neither hpo_nni's nor hpo-tools'; left as it is"
        )
        return
    if shim_dir is None:
        migration.warnings.append(
            prefix + "hpo-tools' core/pai_assessor.py was not found beside the installed "
            "package (a wheel install?): pass --core-dir DIR, or run `hpo-tools register` and "
            "replace codeDirectory/className with `name: PAIAssessor`"
        )
        return
    if len(candidates) != 1 or not isinstance(value, str):
        migration.warnings.append(
            prefix + "expected one `codeDirectory: ...` line in the block; edit it by hand"
        )
        return
    line = candidates[0]
    key, rest = _CODE_DIRECTORY.fullmatch(line.content).groups()  # type: ignore[union-attr]
    split = _split_scalar(rest)
    if split is None or _load_value(split[1]) != value:
        migration.warnings.append(prefix + "its value is not on one line; edit it by hand")
        return
    style, _, tail = split
    replaced[line.number] = key + _render(style, str(shim_dir)) + tail
    expected[block]["codeDirectory"] = str(shim_dir)


def _note_missing_trial_file(
    migration: Migration, doc: dict[str, Any], command: str, line_no: int
) -> None:
    """A note when ``--config`` names no file under NNI's trialCodeDirectory."""
    tokens = shlex.split(command)
    config = tokens[tokens.index("--config") + 1]
    code_dir = migration.path.parent / str(doc.get("trialCodeDirectory") or ".")
    if not (code_dir / os.path.expanduser(config)).is_file():
        migration.notes.append(
            f"{migration.path}:{line_no}: {config} is not in trialCodeDirectory "
            f"{code_dir}; the trial will fail until it is"
        )


def _load_document(text: str, source: Path) -> dict[str, Any]:
    import yaml

    try:
        doc = yaml.safe_load(text)
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark is not None else str(source)
        problem = getattr(err, "problem", None) or str(err).splitlines()[0]
        raise ConfigError(f"{where}: not valid YAML: {problem}", source=str(source)) from None
    return doc if isinstance(doc, dict) else {}


# --- the directory -----------------------------------------------------------------------


def find_experiment_configs(root: Path) -> list[tuple[Path, str, dict[str, Any]]]:
    """Every ``.yml``/``.yaml`` file under ``root`` (or ``root`` itself) holding a top-level
    ``trialCommand``, as (path, text, document), in path order. Hidden directories are skipped.

    Raises:
        ConfigError: ``root`` does not exist, or a file that mentions ``trialCommand`` cannot be
            read, is not UTF-8 or is not valid YAML.
    """
    if root.is_file():
        paths = [root]
    elif root.is_dir():
        paths = []
        for folder, dirs, files in os.walk(root):
            dirs[:] = sorted(d for d in dirs if not d.startswith(".") and d not in _SKIPPED_DIRS)
            paths.extend(Path(folder) / f for f in sorted(files) if f.endswith(_YAML_SUFFIXES))
    else:
        raise ConfigError(f"{root}: no such directory")
    found = []
    for path in paths:
        try:
            data = path.read_bytes()
        except OSError as err:
            raise ConfigError(f"{path}: cannot read ({err.strerror or err})") from err
        if b"trialCommand" not in data:
            continue
        try:
            text = data.decode("utf-8")
        except UnicodeDecodeError as err:
            raise ConfigError(f"{path}: not UTF-8 text (byte {err.start})") from None
        doc = _load_document(text, path)
        if "trialCommand" in doc:
            found.append((path, text, doc))
    return found


def _backup_path(path: Path) -> Path:
    return path.with_name(path.name + ".bak")


def _write(migration: Migration) -> Path:
    """Keep the original as ``FILE.bak`` (its mode too), then replace the file; both atomic."""
    from hpo_tools.storage import write_bytes_atomic

    backup = _backup_path(migration.path)
    write_bytes_atomic(backup, migration.old_text.encode("utf-8"))
    try:
        os.chmod(backup, migration.path.stat().st_mode & 0o7777)
    except OSError as err:
        _logger.debug("%s: mode not copied: %s", backup, err)
    write_bytes_atomic(migration.path, migration.new_text.encode("utf-8"))
    return backup


def _plural(count: int, word: str) -> str:
    return f"{count} {word}" + ("" if count == 1 else "s")


def run(args: argparse.Namespace) -> int:
    """Find, rewrite in memory, print the diffs, then write (unless ``--check``)."""
    root = Path(args.dir)
    shim_dir = shim_directory(args.core_dir)
    configs = find_experiment_configs(root)
    if not configs:
        raise ConfigError(
            f"{root}: no NNI experiment config found (a .yml/.yaml file with a trialCommand)"
        )
    migrations = [
        migrate_text(text, source=path, shim_dir=shim_dir, document=doc)
        for path, text, doc in configs
    ]
    changed = [m for m in migrations if m.changed]
    if not args.check and not args.force:
        for migration in changed:
            backup = _backup_path(migration.path)
            if backup.exists():
                raise ConfigError(
                    f"{migration.path}: {backup} exists; pass --force to overwrite it with the "
                    "current file (nothing was written)"
                )
    warnings = 0
    for migration in migrations:
        for line in migration.warnings:
            print(f"warning: {line}", file=sys.stderr)
        for line in migration.notes:
            print(f"note: {line}", file=sys.stderr)
        warnings += len(migration.warnings)
        if args.check and migration.changed and _backup_path(migration.path).exists():
            print(f"note: {_backup_path(migration.path)} exists: migrate will need --force",
                  file=sys.stderr)
        sys.stdout.write(migration.diff())
        sys.stdout.flush()  # each file's diff right after its own warnings and notes
    said = f" ({_plural(warnings, 'warning')} above)" if warnings else ""
    if not changed:
        print(f"nothing to do: {_plural(len(migrations), 'experiment config')} under {root} "
              f"need no change{said}")
        return 0
    if args.check:
        print(f"{_plural(len(changed), 'file')} would change{said}; run without --check to "
              "write them")
        return EXIT_WOULD_CHANGE
    for migration in changed:
        backup = _write(migration)
        print(f"migrated {migration.path} (original kept as {backup})")
    print(f"{_plural(len(changed), 'file')} migrated, "
          f"{len(migrations) - len(changed)} unchanged{said}")
    return 0

