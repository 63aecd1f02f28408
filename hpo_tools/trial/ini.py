"""A trial file as sections of raw values: rendered (Jinja), read (INI), nothing interpreted yet.

:func:`read_trial_file` renders the text with Jinja, reads it with :mod:`configparser` (no
interpolation, keys keep their case, values may span unindented lines) and returns a
:class:`TrialFile`. Its :class:`Section` objects substitute ``${...}`` on access, collect the
values of credential keys (for the masker) and build errors that carry ``source``, ``section``
and ``key`` as data (:class:`~hpo_tools.errors.ConfigError`), so that ``hpo-tools check`` can drop
a bad key with :meth:`TrialFile.without` and go on, without reading the file again.

The format parsers (:mod:`hpo_tools.trial.trial_ini`, :mod:`hpo_tools.trial.classic`) and the
platforms' own sections (``Platform.options_from_trial_file``) read values through this API.
"""

from __future__ import annotations

import configparser
import re
from collections.abc import Iterable, Mapping
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.secrets import is_credential_name
from hpo_tools.trial import templating

__all__ = [
    "Section",
    "TrialFile",
    "read_trial_file",
    "natural_key",
    "TRUE_WORDS",
    "FALSE_WORDS",
]

TRUE_WORDS = ("1", "true", "yes", "on")
FALSE_WORDS = ("0", "false", "no", "off")

# What a new key looks like in the sections whose values are commands (a command's own
# continuation line such as "-Dconfig=..." is not a new key there). The classic section's keys
# are PAI's -D parameters and hpo-tools' own job_timeout.
_KEY_LINE = {
    "easyrec_cmd_config": re.compile(r"^(-[A-Za-z_][\w.\-]*|job_timeout)\s*="),
    "platform_config": re.compile(r"^[A-Za-z_][\w]*\s*="),
}
_DEFAULT_KEY_LINE = re.compile(r"^[A-Za-z_][\w.\-]*\s*[=:]")
_SECTION_LINE = re.compile(r"^\[([^\]]+)\]\s*$")


def natural_key(name: str) -> tuple[Any, ...]:
    """Sort key that puts ``cmd2`` before ``cmd10``."""
    return tuple(int(part) if part.isdigit() else part for part in re.split(r"(\d+)", name))


def _join_continuations(text: str, one_line_sections: Iterable[str]) -> str:
    """Indent lines that continue the previous value, so configparser keeps them in it.

    Lets a value span lines without indentation: JSON (``-Dcluster={...`` then ``"worker":...}``)
    and commands (``cmd1=PAI -name x`` then ``-Dconfig=...``). A line continues the previous
    value when it is not a section header, comment, blank line or ``key=value`` line of its
    section. In ``one_line_sections`` (credentials) a line never continues a value: a mistyped
    ``accessKeySecret xyz`` must be an error, not part of the key above.
    """
    one_line = set(one_line_sections)
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
        if stripped[0] in "#;" or line[0].isspace():
            out.append(line)
            continue
        key_line = _KEY_LINE.get(section or "", _DEFAULT_KEY_LINE)
        if key_line.match(line) or not in_value or section in one_line:
            in_value = True
            out.append(line)
        else:
            out.append(" " + line)
    return "\n".join(out) + "\n"


def _parse_ini(
    text: str, source: str, one_line_sections: Iterable[str]
) -> configparser.ConfigParser:
    parser = configparser.ConfigParser(
        interpolation=None, delimiters=("=",), comment_prefixes=("#", ";"), strict=True
    )
    parser.optionxform = str  # type: ignore[assignment,method-assign]  # keep key case
    try:
        parser.read_string(_join_continuations(text, one_line_sections), source=source)
    except configparser.MissingSectionHeaderError as err:
        raise ConfigError(
            f"{source}:{err.lineno}: expected a [section] header before {err.line.strip()!r}",
            source=source,
        ) from err
    except configparser.DuplicateSectionError as err:
        raise ConfigError(
            f"{source}:{err.lineno}: section [{err.section}] appears twice",
            source=source, section=err.section,
        ) from err
    except configparser.DuplicateOptionError as err:
        raise ConfigError(
            f"{source}:{err.lineno}: [{err.section}] {err.option} appears twice",
            source=source, section=err.section, key=err.option,
        ) from err
    except configparser.ParsingError as err:
        lineno, line = err.errors[0]
        shown = "(not shown: it names a credential)" if is_credential_name(line) else repr(
            line.strip())
        raise ConfigError(
            f"{source}:{lineno}: cannot parse line {shown}; expected key=value", source=source
        ) from err
    return parser


class Section:
    """One section's raw values; :meth:`get` substitutes ``${...}`` and notes credentials.

    Args:
        name: the section's name.
        raw: its raw values (after Jinja, before ``${...}``).
        source: the trial file, for messages.
        variables: the ``${...}`` trial variables.
        environ: the environment for ``${ENV_VAR}``.
        secrets: where the values of credential keys are appended (the masker's list).
    """

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
        self.source = source
        self._variables = variables
        self._environ = environ
        self._secrets = secrets

    def keys(self) -> list[str]:
        """The keys, in file order."""
        return list(self.raw)

    def error(self, key: str | None, message: str) -> ConfigError:
        """``file: [section] key: message``, carrying where it is."""
        where = f"[{self.name}] {key}: " if key else f"[{self.name}]: "
        return ConfigError(
            f"{self.source}: {where}{message}", source=self.source, section=self.name, key=key
        )

    def missing(self, key: str) -> ConfigError:
        """``file: [section] key is required but missing``."""
        return ConfigError(
            f"{self.source}: [{self.name}] {key} is required but missing",
            source=self.source, section=self.name, key=key,
        )

    def get(self, key: str, default: str | None = None, *, required: bool = False) -> str | None:
        """The value of ``key`` with ``${...}`` substituted and stripped; ``default`` when the key
        is absent or blank.

        Raises:
            ConfigError: ``required`` and missing, or an undefined ``${name}``.
        """
        if key not in self.raw or self.raw[key].strip() == "":
            if required:
                raise self.missing(key)
            return default
        try:
            value = templating.substitute(
                self.raw[key],
                self._variables,
                environ=self._environ,
                source=self.source,
                section=self.name,
                key=key,
            ).strip()
        except ConfigError as err:
            err.source, err.section, err.key = self.source, self.name, key
            raise
        if is_credential_name(key):
            self._secrets.append(value)
        return value

    def require(self, key: str) -> str:
        """The value of ``key``; ConfigError when it is missing."""
        return self.get(key, required=True) or ""

    def check_keys(self, allowed: Iterable[str], patterns: Iterable[str] = ()) -> None:
        """Raise for the first key that is neither in ``allowed`` nor matches a pattern."""
        allowed = tuple(allowed)
        patterns = tuple(patterns)
        for key in self.raw:
            if key in allowed or any(re.fullmatch(p, key) for p in patterns):
                continue
            raise self.error(key, "unknown key" + did_you_mean(key, allowed))

    def choice(self, key: str, default: str, choices: Iterable[str]) -> str:
        """The value of ``key`` (lower case), one of ``choices``; ``default`` when absent."""
        choices = tuple(choices)
        value = self.get(key) or default
        lowered = value.lower()
        if lowered not in choices:
            hint = did_you_mean(lowered, choices)
            raise self.error(key, f"expected one of {', '.join(choices)}, got {value!r}{hint}")
        return lowered

    def flag(self, key: str) -> bool:
        """A 0/1 (true/false, yes/no, on/off) value; False when absent."""
        value = self.get(key)
        if value is None:
            return False
        lowered = value.lower()
        if lowered in TRUE_WORDS:
            return True
        if lowered in FALSE_WORDS:
            return False
        raise self.error(key, f"expected 0 or 1, got {value!r}")


class TrialFile:
    """A rendered trial file as :class:`Section` objects.

    Attributes:
        source: the file's path, for messages.
        secrets: the values of every credential key read so far (for the masker).
    """

    def __init__(
        self,
        source: str,
        raw: Mapping[str, Mapping[str, str]],
        *,
        variables: Mapping[str, str],
        environ: Mapping[str, str],
    ) -> None:
        self.source = source
        self._raw = {name: dict(values) for name, values in raw.items()}
        self._variables = dict(variables)
        self._environ = dict(environ)
        self.secrets: list[str] = []
        self._sections = {
            name: Section(
                name,
                values,
                source=source,
                variables=self._variables,
                environ=self._environ,
                secrets=self.secrets,
            )
            for name, values in self._raw.items()
        }

    def names(self) -> list[str]:
        """The section names, in file order."""
        return list(self._sections)

    def has(self, name: str) -> bool:
        return name in self._sections

    def section(self, name: str) -> Section | None:
        """The section called ``name``, or None."""
        return self._sections.get(name)

    def require(self, name: str, why: str = "") -> Section:
        """The section called ``name``; ConfigError naming it when it is absent."""
        section = self._sections.get(name)
        if section is None:
            raise ConfigError(
                f"{self.source}: section [{name}] is required{why}",
                source=self.source, section=name,
            )
        return section

    def check_sections(self, allowed: Iterable[str]) -> None:
        """Raise for the first section not in ``allowed``."""
        allowed = tuple(allowed)
        for name in self._sections:
            if name not in allowed:
                raise ConfigError(
                    f"{self.source}: unknown section [{name}]{did_you_mean(name, allowed)}; "
                    f"expected one of {', '.join('[' + a + ']' for a in allowed)}",
                    source=self.source, section=name,
                )

    def without(self, section: str, key: str | None = None) -> TrialFile:
        """A copy without ``[section] key`` (or the whole section): ``check`` goes on past it."""
        raw = {name: dict(values) for name, values in self._raw.items()}
        if key is None:
            raw.pop(section, None)
        elif section in raw:
            raw[section].pop(key, None)
        return TrialFile(self.source, raw, variables=self._variables, environ=self._environ)

    def with_environ(self, environ: Mapping[str, str]) -> TrialFile:
        """A copy whose ``${ENV_VAR}`` come from ``environ``."""
        return TrialFile(self.source, self._raw, variables=self._variables, environ=environ)

    def placeholders(self) -> list[tuple[str, str, str]]:
        """Every ``${name}`` in a value, as ``(section, key, name)`` in file order."""
        found = []
        for section, values in self._raw.items():
            for key, value in values.items():
                for name in templating.placeholders(value):
                    found.append((section, key, name.strip()))
        return found

    @property
    def variables(self) -> Mapping[str, str]:
        return self._variables

    @property
    def environ(self) -> Mapping[str, str]:
        return self._environ


def read_trial_file(
    text: str,
    *,
    source: str,
    variables: Mapping[str, str],
    environ: Mapping[str, str],
    one_line_sections: Iterable[str] = (),
) -> TrialFile:
    """Render ``text`` with Jinja (context: the trial variables and ``env``) and read it.

    Raises:
        ConfigError: a Jinja error, or INI syntax (naming file and line).
    """
    rendered = templating.render_jinja(
        text, source=source, context={**variables, "env": dict(environ)}
    )
    parser = _parse_ini(rendered, source, one_line_sections)
    raw = {name: dict(parser[name]) for name in parser.sections()}
    return TrialFile(source, raw, variables=variables, environ=environ)
