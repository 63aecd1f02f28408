"""Trial files -> typed, frozen settings.

Two formats, told apart by their sections:

* **classic** (``config_begin.ini``): ``[easyrec_cmd_config]`` with ``-name``, ``-project`` and
  ``-Dkey=value`` lines for one ``PAI -name easy_rec_ext`` command on MaxCompute, plus
  ``[oss_config]``, ``[odps_config]`` and ``[metric_config]`` (``metric=weight`` lines).
* **platform** (``trial.ini``): ``[platform_config]`` (``name``, ``cmd1``, ``cmd2``, ...,
  ``resume``), ``[metric_config]``, ``[params_config]``, ``[oss_config]``, ``[odps_config]``.

:func:`load_trial_file` renders the file (Jinja, then ``${...}``; see
:mod:`hpo_tools.trial.templating`), parses it with :mod:`configparser` (no interpolation, keys
keep their case) and checks every section and key. Every problem is a one-line
:class:`~hpo_tools.errors.ConfigError` naming file, section and key, raised before anything runs.
"""

from __future__ import annotations

import ast
import configparser
import io
import json
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.secrets import is_credential_name
from hpo_tools.trial import templating

__all__ = [
    "Command",
    "ConfigEdit",
    "MetricSettings",
    "OssSettings",
    "OdpsSettings",
    "TrialSettings",
    "TrialVariables",
    "load_trial_file",
    "parse_trial_text",
    "rendered_without",
    "params_to_edits",
    "undefined_placeholders",
    "PLATFORM_NAMES",
]

CLASSIC = "classic"
PLATFORM = "platform"

# Platforms always known; others registered with hpo_tools.platforms.register_platform count too.
PLATFORM_NAMES = ("local", "maxcompute")
FINAL_MODES = ("final", "best", "avg")
OPTIMIZE_MODES = ("maximize", "minimize")

# Parameters NNI advisors add that are not config paths (Hyperband / BOHB).
NON_CONFIG_PARAMS = frozenset({"TRIAL_BUDGET"})


@dataclass(frozen=True)
class Command:
    """One command of a trial, run in order.

    Attributes:
        name: its key (``cmd1``); the job registry records success per name, which is what
            ``resume=1`` skips.
        text: the command (shell for Local; ``PAI ...`` or SQL for MaxCompute).
    """

    name: str
    text: str


@dataclass(frozen=True)
class ConfigEdit:
    """Apply the parameters to ``src`` and write the result to ``dst`` (local or ``oss://``)."""

    name: str
    src: str
    dst: str


@dataclass(frozen=True)
class MetricSettings:
    """Where the metrics come from and how they are scored (input to ``MetricSpec``)."""

    metric_type: str
    sources: tuple[str, ...]
    metric_dict: Mapping[str, float]
    final_mode: str = "final"
    optimize_mode: str = "maximize"
    source_list_final_mode: str | None = None


@dataclass(frozen=True)
class OssSettings:
    """``[oss_config]``; the keys are kept out of ``repr``."""

    endpoint: str | None = None
    access_key_id: str | None = field(default=None, repr=False)
    access_key_secret: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class OdpsSettings:
    """``[odps_config]``; credentials default to ``[oss_config]``'s (as in the classic files)."""

    project: str
    endpoint: str
    access_id: str | None = field(default=None, repr=False)
    access_key: str | None = field(default=None, repr=False)


@dataclass(frozen=True)
class TrialVariables:
    """The identity of one trial, for ``${...}`` and the directories."""

    exp_id: str
    trial_id: str
    output_dir: str
    params: Mapping[str, Any]

    def as_dict(self) -> dict[str, str]:
        """The ``${...}`` variables (see :func:`templating.trial_variables`)."""
        return templating.trial_variables(
            exp_id=self.exp_id,
            trial_id=self.trial_id,
            output_dir=self.output_dir,
            params=self.params,
        )


@dataclass(frozen=True)
class TrialSettings:
    """A parsed, rendered trial file.

    Attributes:
        source: the trial file's path.
        format: ``"classic"`` or ``"platform"``.
        platform: the platform registry name (``"local"``, ``"maxcompute"``).
        commands: the commands, in order.
        resume: skip commands the job registry says already succeeded for this trial.
        metric: the metric sources and scoring.
        config_edits: ``[params_config]`` SRC -> DST pairs.
        edit_config_json: classic format: the ``-Dedit_config_json`` edits, parameters merged in.
        config_path: classic format: ``-Dconfig`` (the training config the edits apply to).
        model_dir: classic format: ``-Dmodel_dir`` with ``/<exp_id>_<trial_id>`` appended.
        oss, odps: the cloud sections, when present.
        secrets: every credential value in the file (for the masker); not in ``repr``.
    """

    source: str
    format: str
    platform: str
    commands: tuple[Command, ...]
    metric: MetricSettings
    resume: bool = False
    config_edits: tuple[ConfigEdit, ...] = ()
    edit_config_json: Mapping[str, Any] | None = None
    config_path: str | None = None
    model_dir: str | None = None
    oss: OssSettings | None = None
    odps: OdpsSettings | None = None
    secrets: tuple[str, ...] = field(default=(), repr=False)

    def platform_options(self) -> dict[str, Any]:
        """Keyword arguments for ``create_platform(self.platform, ...)``."""
        if self.platform != "maxcompute" or self.odps is None:
            return {}
        oss = self.oss or OssSettings()
        return {
            "project": self.odps.project,
            "endpoint": self.odps.endpoint,
            "access_id": self.odps.access_id or oss.access_key_id,
            "secret_access_key": self.odps.access_key or oss.access_key_secret,
        }


# ---------------------------------------------------------------------------------------------
# Reading the file


def params_to_edits(params: Mapping[str, Any]) -> dict[str, Any]:
    """Turn tuner parameters into config-editor edits.

    A nested choice ``{"opt": {"_name": "adam", "a.lr": 0.1}}`` becomes ``{"opt": "adam",
    "a.lr": 0.1}``; advisor keys such as ``TRIAL_BUDGET`` are left out.
    """
    edits: dict[str, Any] = {}
    for name, value in params.items():
        if name in NON_CONFIG_PARAMS:
            continue
        if isinstance(value, dict) and "_name" in value:
            edits[name] = value["_name"]
            edits.update(params_to_edits({k: v for k, v in value.items() if k != "_name"}))
        else:
            edits[name] = value
    return edits


_KEY_LINE = {
    "easyrec_cmd_config": re.compile(r"^-[A-Za-z_][\w.\-]*\s*="),
    "platform_config": re.compile(r"^[A-Za-z_][\w]*\s*="),
}
_DEFAULT_KEY_LINE = re.compile(r"^[A-Za-z_][\w.\-]*\s*[=:]")
_SECTION_LINE = re.compile(r"^\[([^\]]+)\]\s*$")
# Sections whose values never span lines: a line there without "=" is an error, not silently
# part of the previous value (a mistyped "accessKeySecret xyz" would land in accessKeyID).
_ONE_LINE_SECTIONS = ("oss_config", "odps_config")


def _join_continuations(text: str) -> str:
    """Indent lines that continue the previous value, so configparser keeps them in it.

    Lets a value span lines without indentation: JSON (``-Dcluster={...`` then ``"worker":...}``)
    and commands (``cmd1=PAI -name x`` then ``-Dconfig=...``). A line continues the previous
    value when it is not a section header, comment, blank line or ``key=value`` line of its section.
    """
    out = []
    section = None
    in_value = False
    for line in text.splitlines():
        stripped = line.strip()
        header = _SECTION_LINE.match(stripped)
        if header:
            section, in_value = header.group(1).strip(), False
            out.append(line)
            continue
        if not stripped:
            in_value = False
            out.append(line)
            continue
        if stripped[0] in "#;":
            out.append(line)
            continue
        if line[0].isspace():
            out.append(line)
            continue
        key_line = _KEY_LINE.get(section or "", _DEFAULT_KEY_LINE)
        if key_line.match(line) or not in_value or section in _ONE_LINE_SECTIONS:
            in_value = True
            out.append(line)
        else:
            out.append(" " + line)
    return "\n".join(out) + "\n"


def _parse_ini(text: str, source: str) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"), strict=True
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    try:
        parser.read_string(_join_continuations(text), source=source)
    except configparser.MissingSectionHeaderError as err:
        raise ConfigError(
            f"{source}:{err.lineno}: expected a [section] header before {err.line.strip()!r}"
        ) from err
    except configparser.DuplicateSectionError as err:
        raise ConfigError(f"{source}:{err.lineno}: section [{err.section}] appears twice") from err
    except configparser.DuplicateOptionError as err:
        raise ConfigError(
            f"{source}:{err.lineno}: [{err.section}] {err.option} appears twice"
        ) from err
    except configparser.ParsingError as err:
        lineno, line = err.errors[0]
        shown = "(not shown: it names a credential)" if is_credential_name(line) else repr(
            line.strip())
        raise ConfigError(
            f"{source}:{lineno}: cannot parse line {shown}; expected key=value"
        ) from err
    return parser


class _Section:
    """One section's values, substituted on access, with the keys read tracked."""

    def __init__(
        self,
        name: str,
        raw: Mapping[str, str],
        *,
        source: str,
        variables: Mapping[str, str],
        environ: Mapping[str, str],
        secrets: list[str],
    ) -> None:
        self.name = name
        self.raw = dict(raw)
        self._source = source
        self._variables = variables
        self._environ = environ
        self._secrets = secrets

    def error(self, key: str, message: str) -> ConfigError:
        return ConfigError(f"{self._source}: [{self.name}] {key}: {message}")

    def get(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        if key not in self.raw or self.raw[key].strip() == "":
            if required:
                raise ConfigError(f"{self._source}: [{self.name}] {key} is required but missing")
            return default
        raw = self.raw[key]
        value = templating.substitute(
            raw,
            self._variables,
            environ=self._environ,
            source=self._source,
            section=self.name,
            key=key,
        ).strip()
        if is_credential_name(key):
            self._secrets.append(value)
        return value

    def require(self, key: str) -> str:
        return self.get(key, required=True) or ""  # get() raised when it is missing


def _check_keys(
    section: _Section, allowed: tuple[str, ...], patterns: tuple[str, ...] = ()
) -> None:
    for key in section.raw:
        if key in allowed or any(re.fullmatch(p, key) for p in patterns):
            continue
        raise section.error(key, "unknown key" + did_you_mean(key, allowed))


def _check_sections(parser: configparser.ConfigParser, source: str, allowed: tuple[str, ...]):
    for name in parser.sections():
        if name not in allowed:
            raise ConfigError(
                f"{source}: unknown section [{name}]{did_you_mean(name, allowed)}; "
                f"expected one of {', '.join('[' + a + ']' for a in allowed)}"
            )


def _natural_key(name: str) -> tuple[Any, ...]:
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _parse_mapping(section: _Section, key: str, text: str) -> dict[str, Any]:
    """A dict from JSON, or from a Python literal (``{'auc': 1}`` as in old files; never eval)."""
    try:
        value = json.loads(text)
    except json.JSONDecodeError as json_err:
        try:
            value = ast.literal_eval(text)
        except (ValueError, SyntaxError):
            raise section.error(
                key, f"expected a JSON object, got {text!r} ({json_err.msg})"
            ) from json_err
    if not isinstance(value, dict):
        raise section.error(key, f"expected a JSON object, got {type(value).__name__}")
    return value


def _weights(section: _Section, key: str, mapping: Mapping[str, Any]) -> dict[str, float]:
    weights: dict[str, float] = {}
    for name, weight in mapping.items():
        if isinstance(weight, bool) or not isinstance(weight, (int, float)):
            raise section.error(key, f"weight of {name!r} must be a number, got {weight!r}")
        weights[str(name)] = float(weight)
    if not weights:
        raise section.error(key, "needs at least one metric with a weight")
    return weights


def _choice(section: _Section, key: str, value: str, choices: tuple[str, ...]) -> str:
    lowered = value.lower()
    if lowered not in choices:
        hint = did_you_mean(lowered, choices)
        raise section.error(key, f"expected one of {', '.join(choices)}, got {value!r}{hint}")
    return lowered


def _platform_names() -> tuple[str, ...]:
    from hpo_tools.platforms.base import platform_names  # light: no platform module imported

    return tuple(sorted({*PLATFORM_NAMES, *(name.lower() for name in platform_names())}))


def _bool(section: _Section, key: str, value: str | None) -> bool:
    if value is None:
        return False
    lowered = value.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise section.error(key, f"expected 0 or 1, got {value!r}")


def _oss(section: _Section | None) -> OssSettings | None:
    if section is None:
        return None
    _check_keys(section, ("endpoint", "accessKeyID", "accessKeySecret"))
    return OssSettings(
        endpoint=section.get("endpoint"),
        access_key_id=section.get("accessKeyID"),
        access_key_secret=section.get("accessKeySecret"),
    )


def _odps(section: _Section | None, required: bool, source: str) -> OdpsSettings | None:
    if section is None:
        if required:
            raise ConfigError(f"{source}: [odps_config] is required for the MaxCompute platform")
        return None
    _check_keys(section, ("project_name", "odps_endpoint", "access_id", "access_key"))
    return OdpsSettings(
        project=section.require("project_name"),
        endpoint=section.require("odps_endpoint"),
        access_id=section.get("access_id"),
        access_key=section.get("access_key"),
    )


# ---------------------------------------------------------------------------------------------
# The two formats

_CLASSIC_SECTIONS = ("oss_config", "odps_config", "easyrec_cmd_config", "metric_config")
_PLATFORM_SECTIONS = (
    "platform_config",
    "metric_config",
    "params_config",
    "oss_config",
    "odps_config",
)
_CLASSIC_REQUIRED_CMD = ("-name", "-project", "-Dconfig", "-Dmodel_dir")
_METRIC_KEYS = (
    "metric_type",
    "metric_source",
    "final_mode",
    "source_list_final_mode",
    "metric_dict",
    "optimize_mode",
)


def _unquote(value: str) -> str:
    if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
        return value[1:-1]
    return value


def _pai_value(value: str) -> str:
    """A ``-D`` value as written into the PAI command: JSON compacted and single-quoted.

    JSON holding a ``'`` (a string parameter such as ``it's``) is double-quoted instead, with
    ``\\`` and ``"`` escaped, which the MaxCompute command parser undoes.
    """
    stripped = value.strip()
    if stripped[:1] in "{[":
        try:
            parsed = json.loads(stripped)
        except json.JSONDecodeError:
            return stripped
        compact = json.dumps(parsed, separators=(",", ":"), ensure_ascii=False)
        if "'" not in compact:
            return "'" + compact + "'"
        return '"' + compact.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return stripped


def _classic(
    sections: dict[str, _Section], source: str, variables: TrialVariables, secrets: list[str]
) -> TrialSettings:
    if "metric_config" not in sections:
        raise ConfigError(f"{source}: [metric_config] is required (metric=weight lines)")
    cmd = sections["easyrec_cmd_config"]
    for key in cmd.raw:
        if key in ("-name", "-project") or key.startswith("-D"):
            continue
        raise cmd.error(key, "unknown key; expected -name, -project or -D<parameter>"
                        + did_you_mean(key, ("-name", "-project")))
    values: dict[str, str] = {}
    for key in cmd.raw:
        value = cmd.get(key)
        values[key] = _unquote(value) if value is not None else ""
    for key in _CLASSIC_REQUIRED_CMD:
        if not values.get(key):
            raise ConfigError(f"{source}: [easyrec_cmd_config] {key} is required but missing")

    edits: dict[str, Any] = {}
    if values.get("-Dedit_config_json"):
        edits = _parse_json_object(cmd, "-Dedit_config_json", values["-Dedit_config_json"])
    edits.update(params_to_edits(variables.params))
    if "-Dcluster" in values:
        _parse_json_object(cmd, "-Dcluster", values["-Dcluster"])
    model_dir = values["-Dmodel_dir"].rstrip("/") + f"/{variables.exp_id}_{variables.trial_id}"
    values["-Dmodel_dir"] = model_dir
    if edits:
        values["-Dedit_config_json"] = json.dumps(edits, separators=(",", ":"))

    lines = [f"PAI -name {values['-name']} -project {values['-project']}"]
    lines += [f"{key}={_pai_value(value)}" for key, value in values.items() if key.startswith("-D")]

    for key, value in values.items():  # each -D line must reach PAI as one parameter
        if key.startswith("-D"):
            _check_maxcompute_command(cmd, key, f"PAI -name x {key}={_pai_value(value)}")

    metric_section = sections["metric_config"]
    weights = {}
    for key in metric_section.raw:
        text = metric_section.get(key)
        try:
            weights[key] = float(text or "")
        except ValueError:
            raise metric_section.error(
                key, f"expected a metric weight (a number), got {text!r}"
            ) from None
    if not weights:
        raise ConfigError(f"{source}: [metric_config] needs at least one metric=weight line")
    oss = _oss(sections.get("oss_config"))
    odps = _odps(sections.get("odps_config"), True, source)
    return TrialSettings(
        source=source,
        format=CLASSIC,
        platform="maxcompute",
        commands=(Command("cmd1", "\n".join(lines)),),
        metric=MetricSettings(
            metric_type="summary",
            sources=(model_dir + "/eval_val/",),
            metric_dict=weights,
        ),
        edit_config_json=edits,
        config_path=values["-Dconfig"],
        model_dir=model_dir,
        oss=oss,
        odps=odps,
        secrets=tuple(secrets),
    )


def _check_maxcompute_command(section: _Section, key: str, text: str) -> None:
    """A malformed ``PAI ...`` command is a config error now, not when its turn comes."""
    from hpo_tools.platforms.maxcompute import parse_command  # no SDK import

    try:
        parse_command(text)
    except ConfigError as err:
        raise section.error(key, str(err)) from err


def _parse_json_object(section: _Section, key: str, text: str) -> dict[str, Any]:
    try:
        value = json.loads(text)
    except json.JSONDecodeError as err:
        raise section.error(key, f"is not valid JSON: {err.msg} at column {err.colno}") from err
    if not isinstance(value, dict):
        raise section.error(key, f"expected a JSON object, got {type(value).__name__}")
    return value


def _platform(
    sections: dict[str, _Section], source: str, secrets: list[str]
) -> TrialSettings:
    for required in ("platform_config", "metric_config"):
        if required not in sections:
            raise ConfigError(f"{source}: section [{required}] is required")
    plat = sections["platform_config"]
    _check_keys(plat, ("name", "resume"), (r"cmd\d+",))
    platform = _choice(plat, "name", plat.require("name"), _platform_names())
    names = sorted((k for k in plat.raw if re.fullmatch(r"cmd\d+", k)), key=_natural_key)
    if not names:
        raise ConfigError(f"{source}: [platform_config] cmd1 is required but missing")
    commands = []
    for name in names:
        text = plat.require(name)
        if platform == "local":
            # Continuation lines belong to one shell command, not several.
            text = " ".join(line.strip() for line in text.splitlines() if line.strip())
        elif platform == "maxcompute":
            _check_maxcompute_command(plat, name, text)
        commands.append(Command(name, text))
    resume = _bool(plat, "resume", plat.get("resume"))

    metric = sections["metric_config"]
    _check_keys(metric, _METRIC_KEYS, (r"metric_source_.+",))
    metric_dict = _weights(
        metric, "metric_dict", _parse_mapping(metric, "metric_dict", metric.require("metric_dict"))
    )
    source_keys = sorted(
        (k for k in metric.raw if k == "metric_source" or k.startswith("metric_source_")),
        key=_natural_key,
    )
    metric_type = (metric.get("metric_type") or "summary").lower()
    sources = tuple(metric.get(k) or "" for k in source_keys)
    if not sources and metric_type != "stdout":
        raise ConfigError(f"{source}: [metric_config] metric_source is required but missing")
    final_mode = _choice(metric, "final_mode", metric.get("final_mode") or "final", FINAL_MODES)
    list_mode = metric.get("source_list_final_mode")
    if list_mode is not None:
        list_mode = _choice(metric, "source_list_final_mode", list_mode, FINAL_MODES)
    optimize_mode = _choice(
        metric, "optimize_mode", metric.get("optimize_mode") or "maximize", OPTIMIZE_MODES
    )

    edits: list[ConfigEdit] = []
    if "params_config" in sections:
        params = sections["params_config"]
        _check_keys(params, (), (r"params_src_dst_filepath.*",))
        for key in sorted(params.raw, key=_natural_key):
            pair = params.require(key)
            parts = [p.strip() for p in pair.split(",")]
            if len(parts) != 2 or not all(parts):
                raise params.error(key, f"expected SRC,DST (two paths), got {pair!r}")
            edits.append(ConfigEdit(key, parts[0], parts[1]))

    oss = _oss(sections.get("oss_config"))
    odps = _odps(sections.get("odps_config"), platform == "maxcompute", source)
    return TrialSettings(
        source=source,
        format=PLATFORM,
        platform=platform,
        commands=tuple(commands),
        resume=resume,
        metric=MetricSettings(
            metric_type=metric_type,
            sources=sources,
            metric_dict=metric_dict,
            final_mode=final_mode,
            optimize_mode=optimize_mode,
            source_list_final_mode=list_mode,
        ),
        config_edits=tuple(edits),
        oss=oss,
        odps=odps,
        secrets=tuple(secrets),
    )


def parse_trial_text(
    text: str,
    *,
    source: str,
    variables: TrialVariables,
    environ: Mapping[str, str] | None = None,
) -> TrialSettings:
    """Render and parse a trial file's text.

    Args:
        text: the file's content.
        source: its name, for messages.
        variables: the trial's identity and parameters.
        environ: the environment for ``${ENV_VAR}`` (default ``os.environ``).

    Returns:
        The typed settings.

    Raises:
        ConfigError: on any problem, naming file, section and key.
    """
    env = dict(os.environ if environ is None else environ)
    names = variables.as_dict()
    rendered = templating.render_jinja(text, source=source, context={**names, "env": env})
    parser = _parse_ini(rendered, source)
    is_classic = parser.has_section("easyrec_cmd_config")
    if not is_classic and not parser.has_section("platform_config"):
        formats = ("platform_config", "easyrec_cmd_config")
        hint = next((did_you_mean(n, formats) for n in parser.sections()
                     if did_you_mean(n, formats)), "")
        raise ConfigError(
            f"{source}: not a trial file: expected a [platform_config] section (platform format) "
            f"or an [easyrec_cmd_config] section (classic format){hint}"
        )
    _check_sections(parser, source, _CLASSIC_SECTIONS if is_classic else _PLATFORM_SECTIONS)
    secrets: list[str] = []
    sections = {
        name: _Section(
            name,
            parser[name],
            source=source,
            variables=names,
            environ=env,
            secrets=secrets,
        )
        for name in parser.sections()
    }
    if is_classic:
        return _classic(sections, source, variables, secrets)
    return _platform(sections, source, secrets)


def undefined_placeholders(
    text: str,
    *,
    source: str,
    variables: TrialVariables,
    environ: Mapping[str, str] | None = None,
) -> list[tuple[str, str]]:
    """Every ``${name}`` of a trial file that is neither a trial variable nor in the environment.

    Used by ``hpo-tools check`` to report them all at once (parsing stops at the first).

    Returns:
        ``(name, "file: [section] key: ${name} is not defined ...")`` in file order; empty when
        all resolve.

    Raises:
        ConfigError: the file does not render (Jinja) or parse (INI).
    """
    env = dict(os.environ if environ is None else environ)
    names = variables.as_dict()
    rendered = templating.render_jinja(text, source=source, context={**names, "env": env})
    parser = _parse_ini(rendered, source)
    found: list[tuple[str, str]] = []
    for section in parser.sections():
        for key, value in parser[section].items():
            for name in templating.placeholders(value):
                name = name.strip()
                if name in names or name in env:
                    continue
                hint = did_you_mean(name, list(names) + list(env))
                found.append((
                    name,
                    f"{source}: [{section}] {key}: ${{{name}}} is not defined: not a trial "
                    f"variable and not set in the environment{hint}",
                ))
    return found


def rendered_without(
    text: str,
    *,
    source: str,
    variables: TrialVariables,
    section: str,
    key: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> str:
    """The trial file rendered (Jinja) and without ``[section] key`` (or the whole section).

    ``hpo-tools check`` uses it to go on parsing past a bad key, so that it reports every
    problem at once. Comments are not kept; ``${...}`` are left for :func:`parse_trial_text`.

    Raises:
        ConfigError: the file does not render (Jinja) or parse (INI).
    """
    env = dict(os.environ if environ is None else environ)
    rendered = templating.render_jinja(
        text, source=source, context={**variables.as_dict(), "env": env}
    )
    parser = _parse_ini(rendered, source)
    if key is None:
        parser.remove_section(section)
    elif parser.has_section(section):
        parser.remove_option(section, key)
    out = io.StringIO()
    parser.write(out, space_around_delimiters=False)
    return out.getvalue()


def load_trial_file(
    path: str | os.PathLike[str],
    *,
    variables: TrialVariables,
    environ: Mapping[str, str] | None = None,
) -> TrialSettings:
    """Read, render and parse a trial file (see :func:`parse_trial_text`).

    Raises:
        ConfigError: the file cannot be read, or any problem in it.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{source}: cannot read trial file: {err.strerror or err}") from err
    return parse_trial_text(text, source=source, variables=variables, environ=environ)
