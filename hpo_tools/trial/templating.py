"""Templating of trial files: Jinja2 over the whole file, then ``${name}`` in each value.

Two steps, one function each:

1. :func:`render_jinja` renders the whole file with Jinja2 (``StrictUndefined``), so loops over
   dates or folds can generate keys such as ``cmd{{ loop.index }}``.
2. :func:`substitute` replaces ``${name}`` in one parsed value. ``name`` is looked up in the trial
   variables (:func:`trial_variables`: ``exp_id``, ``trial_id``, ``NNI_OUTPUT_DIR``,
   ``tuner_params_json``, ``tuner_params_list``, ``tuner_params_dict``, ``params`` and every
   parameter name), then in the environment.
   ``$${`` writes a literal ``${``.

Anything undefined is a :class:`~hpo_tools.errors.ConfigError` naming file, section and key.
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean

__all__ = [
    "PLACEHOLDER",
    "render_jinja",
    "substitute",
    "placeholders",
    "trial_variables",
    "compact_params",
    "format_value",
    "placeholder_key",
]

# ${name}: any characters but braces and "$" (parameter names may be config paths with dots,
# brackets and "=" selectors). "$${" is an escaped literal "${".
PLACEHOLDER = re.compile(r"\$(\$?)\{([^{}$]*)\}")

_MAX_COMPACT_LENGTH = 120


def render_jinja(text: str, *, source: str, context: Mapping[str, Any] | None = None) -> str:
    """Render a whole trial file with Jinja2.

    Args:
        text: the file's text.
        source: the file name, for error messages.
        context: variables visible to Jinja (the trial variables).

    Returns:
        The rendered text (a file without Jinja syntax comes back unchanged).

    Raises:
        ConfigError: a Jinja syntax error or an undefined variable, naming file and line.
    """
    if "{{" not in text and "{%" not in text and "{#" not in text:
        return text
    import jinja2  # only files that use Jinja pay for it

    env = jinja2.Environment(
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        trim_blocks=True,
        lstrip_blocks=True,
        autoescape=False,
    )
    try:
        template = env.from_string(text)
        return template.render(dict(context or {}))
    except jinja2.TemplateSyntaxError as err:
        raise ConfigError(f"{source}:{err.lineno}: Jinja syntax error: {err.message}") from err
    except jinja2.UndefinedError as err:
        line = _jinja_error_line(err)
        where = f"{source}:{line}" if line else source
        raise ConfigError(f"{where}: Jinja: {err.message}") from err


def _jinja_error_line(err: BaseException) -> int | None:
    tb = err.__traceback__
    line = None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def placeholders(value: str) -> Iterator[str]:
    """Yield the name of every ``${name}`` in ``value`` (escaped ``$${`` excluded)."""
    for match in PLACEHOLDER.finditer(value):
        if not match.group(1):
            yield match.group(2)


def substitute(
    value: str,
    variables: Mapping[str, str],
    *,
    environ: Mapping[str, str],
    source: str,
    section: str,
    key: str,
) -> str:
    """Replace every ``${name}`` in one trial-file value.

    Args:
        value: the raw value.
        variables: trial variables (see :func:`trial_variables`); they win over the environment.
        environ: the environment for ``${ENV_VAR}``.
        source, section, key: where the value comes from, for error messages.

    Returns:
        The value with every placeholder replaced.

    Raises:
        ConfigError: ``${name}`` is neither a trial variable nor an environment variable.
    """

    def replace(match: re.Match[str]) -> str:
        if match.group(1):  # "$${x}" -> "${x}"
            return match.group(0)[1:]
        name = match.group(2).strip()
        if name in variables:
            return variables[name]
        if name in environ:
            return environ[name]
        hint = did_you_mean(name, list(variables) + list(environ))
        raise ConfigError(
            f"{source}: [{section}] {key}: ${{{name}}} is not defined: not a trial variable "
            f"and not set in the environment{hint}"
        )

    return PLACEHOLDER.sub(replace, value)


def format_value(value: object) -> str:
    """How a parameter value is written into text: strings as they are, others as JSON.

    A nested choice (a dict with ``_name``) is written as its ``_name``.
    """
    if isinstance(value, str):
        return value
    if isinstance(value, dict) and "_name" in value:
        return str(value["_name"])
    if isinstance(value, float) and value.is_integer() and abs(value) < 1e16:
        return json.dumps(value)  # keeps "2.0": a float field stays a float
    return json.dumps(value, sort_keys=True, separators=(",", ":"))


def _path_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.\-]+", "-", text).strip("-") or "x"


def _short_name(name: str) -> str:
    # "train_config.optimizer_config[0].adam_optimizer.learning_rate" -> "learning_rate"
    last = re.split(r"[.\]]", name.rstrip("]"))[-1] if name else name
    last = re.sub(r"\[.*$", "", last)
    return last or name


def compact_params(params: Mapping[str, object]) -> str:
    """A short, path-safe string for a parameter set: ``name1_value1_name2_value2``.

    Names are shortened to their last path component (``a.b.learning_rate`` -> ``learning_rate``)
    unless that makes two names equal; unsafe characters become ``-``. Very long results are cut
    and end with a hash of the whole, so different parameters give different strings.

    Example:
        >>> compact_params({"train_config.lr": 0.001, "embedding_dim": 16})
        'lr_0.001_embedding_dim_16'
    """
    if not params:
        return "noparams"
    shorts = [_short_name(name) for name in params]
    names = shorts if len(set(shorts)) == len(shorts) else list(params)
    parts = []
    for name, value in zip(names, params.values()):
        parts.append(_path_safe(name))
        parts.append(_path_safe(format_value(value)))
    text = "_".join(parts)
    if len(text) > _MAX_COMPACT_LENGTH:
        digest = hashlib.sha1(text.encode()).hexdigest()[:10]
        text = f"{text[: _MAX_COMPACT_LENGTH - 11]}-{digest}"
    return text


def placeholder_key(name: str) -> str | None:
    """``lr`` for a search-space key written as a placeholder (``${lr}``, hpo_tools 0.1.x's
    style, replaced as text in commands and params files), else None."""
    match = PLACEHOLDER.fullmatch(name)
    return match.group(2).strip() if match and not match.group(1) else None


def trial_variables(
    *,
    exp_id: str,
    trial_id: str,
    output_dir: str,
    params: Mapping[str, object],
) -> dict[str, str]:
    """The ``${...}`` variables of one trial.

    Args:
        exp_id: the experiment id.
        trial_id: the trial id.
        output_dir: the trial directory (``NNI_OUTPUT_DIR`` under NNI).
        params: the tuner's parameters.

    Returns:
        ``exp_id``, ``trial_id``, ``NNI_OUTPUT_DIR``, ``tuner_params_json``,
        ``tuner_params_list``, ``tuner_params_dict``, ``params`` and one entry per parameter
        name (a nested choice also adds ``<name>.<sub name>``).
    """
    variables: dict[str, str] = {}
    for name, value in params.items():
        variables[name] = format_value(value)
        inner = placeholder_key(name)
        if inner is not None:  # hpo_tools 0.1.x search keys: "${lr}" is ${lr} in commands
            variables[inner] = format_value(value)
        if isinstance(value, dict):
            for sub_name, sub_value in value.items():
                if sub_name != "_name":
                    variables[f"{name}.{sub_name}"] = format_value(sub_value)
    # hpo_tools 0.1.x's flat forms: "lr 0.01 batch_size 64" and "lr=0.01 batch_size=64" (its
    # own names as written, a placeholder key "${lr}" as lr).
    pairs = [(placeholder_key(name) or name, format_value(value)) for name, value in params.items()]
    variables.update(
        exp_id=exp_id,
        trial_id=trial_id,
        NNI_OUTPUT_DIR=output_dir,
        tuner_params_json=json.dumps(dict(params), sort_keys=True),
        tuner_params_list=" ".join(f"{name} {value}" for name, value in pairs),
        tuner_params_dict=" ".join(f"{name}={value}" for name, value in pairs),
        params=compact_params(params),
    )
    return variables
