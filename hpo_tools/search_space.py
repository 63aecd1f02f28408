"""NNI search-space files: load, validate, and the corner points ``hpo-tools check`` renders.

The ten NNI types are supported (``choice``, ``randint``, ``uniform``, ``quniform``,
``loguniform``, ``qloguniform``, ``normal``, ``qnormal``, ``lognormal``, ``qlognormal``) plus nested
``choice`` (options that are dicts with ``_name``). Validation follows
``nni.common.hpo_utils.validation`` but raises :class:`~hpo_tools.errors.ConfigError` naming the
file and parameter instead of NNI's ``IndexError``/logged ``False``.

Example:
    >>> space = validate_search_space({"lr": {"_type": "loguniform", "_value": [1e-4, 0.1]}})
    >>> corner_points(space)
    [{'lr': 0.0001}, {'lr': 0.1}]
"""

from __future__ import annotations

import json
import logging
import math
import os
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from hpo_tools.errors import ConfigError, did_you_mean

__all__ = ["SEARCH_SPACE_TYPES", "load_search_space", "validate_search_space", "corner_points"]

_logger = logging.getLogger(__name__)

SEARCH_SPACE_TYPES = (
    "choice",
    "randint",
    "uniform",
    "quniform",
    "loguniform",
    "qloguniform",
    "normal",
    "qnormal",
    "lognormal",
    "qlognormal",
)

# Normal distributions have no bounds; check at mean +- this many sigmas.
_NORMAL_SIGMAS = 3.0


def load_search_space(path: str | os.PathLike[str]) -> dict[str, Any]:
    """Read and validate a search-space JSON file.

    Raises:
        ConfigError: the file is unreadable, not JSON, or not a valid search space.
    """
    source = str(path)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as err:
        raise ConfigError(f"{source}: cannot read search space: {err.strerror or err}") from err
    try:
        space = json.loads(text)
    except json.JSONDecodeError as err:
        raise ConfigError(
            f"{source}:{err.lineno}:{err.colno}: search space is not valid JSON: {err.msg}"
        ) from err
    return validate_search_space(space, source=source)


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def validate_search_space(space: Any, *, source: str = "<search space>") -> dict[str, Any]:
    """Check a search space's structure and ranges.

    Args:
        space: the decoded JSON.
        source: the file name for messages.

    Returns:
        ``space`` itself, when valid.

    Raises:
        ConfigError: naming the file, the parameter (``outer/_name=x/inner`` inside nested
            choices) and what was expected.
    """
    if not isinstance(space, dict):
        raise ConfigError(f"{source}: a search space is a JSON object, got {type(space).__name__}")
    if not space:
        raise ConfigError(f"{source}: the search space is empty")
    if _batch_points(space) is not None:
        return space  # BatchTuner's: the parameter sets themselves
    _validate_dims(space, source, prefix="")
    return space


#: The one key of NNI's BatchTuner search space: a choice of whole parameter sets.
BATCH_KEY = "combine_params"


def _batch_points(space: Mapping[str, Any]) -> list[dict[str, Any]] | None:
    """BatchTuner's parameter sets (``{"combine_params": {"_type": "choice", "_value":
    [{...}, ...]}}``), or None when ``space`` is not of that form."""
    spec = space.get(BATCH_KEY) if len(space) == 1 else None
    if not isinstance(spec, dict) or spec.get("_type") != "choice":
        return None
    values = spec.get("_value")
    if not (isinstance(values, list) and values
            and all(isinstance(v, dict) and "_name" not in v for v in values)):
        return None
    return [dict(v) for v in values]


def _validate_dims(space: Mapping[str, Any], source: str, prefix: str) -> None:
    for name, spec in space.items():
        where = f"{source}: parameter {prefix}{name!r}"
        if not isinstance(spec, dict):
            raise ConfigError(
                f'{where}: expected {{"_type": ..., "_value": [...]}}, got {type(spec).__name__}'
            )
        unknown = [k for k in spec if k not in ("_type", "_value")]
        if unknown:
            hint = did_you_mean(unknown[0], ("_type", "_value"))
            raise ConfigError(f"{where}: unknown key {unknown[0]!r}{hint}")
        if "_type" not in spec or "_value" not in spec:
            missing = "_type" if "_type" not in spec else "_value"
            raise ConfigError(f"{where}: {missing} is missing")
        kind, args = spec["_type"], spec["_value"]
        if kind not in SEARCH_SPACE_TYPES:
            raise ConfigError(
                f"{where}: unknown _type {kind!r}{did_you_mean(str(kind), SEARCH_SPACE_TYPES)}; "
                f"expected one of {', '.join(SEARCH_SPACE_TYPES)}"
            )
        if not isinstance(args, list):
            raise ConfigError(f"{where}: _value must be a list, got {type(args).__name__}")
        if kind == "choice":
            _validate_choice(name, args, where, source, prefix)
            continue
        expected = 3 if kind.startswith("q") else 2
        if len(args) != expected:
            raise ConfigError(f"{where}: {kind} needs {expected} numbers in _value, got {args}")
        if kind == "randint":
            if not all(isinstance(a, int) and not isinstance(a, bool) for a in args):
                raise ConfigError(f"{where}: randint needs integer bounds [low, high), got {args}")
        elif not all(_is_number(a) for a in args):
            raise ConfigError(f"{where}: {kind} needs numbers in _value, got {args}")
        if "normal" in kind:
            if args[1] <= 0:
                raise ConfigError(f"{where}: {kind} needs sigma > 0, got {args[1]}")
        else:
            if args[0] >= args[1]:
                raise ConfigError(f"{where}: {kind} needs low < high, got {args[:2]}")
            if "log" in kind and args[0] <= 0:
                raise ConfigError(f"{where}: {kind} needs low > 0, got {args[0]}")
        if kind.startswith("q") and args[2] <= 0:
            raise ConfigError(f"{where}: {kind} needs q > 0, got {args[2]}")


def _validate_choice(name: str, args: list, where: str, source: str, prefix: str) -> None:
    if not args:
        raise ConfigError(f"{where}: choice needs at least one value")
    nested = [a for a in args if isinstance(a, dict)]
    if nested:
        if len(nested) != len(args):
            raise ConfigError(
                f"{where}: a nested choice needs every option to be an object with _name"
            )
        for option in args:
            if "_name" not in option:
                raise ConfigError(f"{where}: every nested choice option needs a _name")
            sub = {k: v for k, v in option.items() if k != "_name"}
            _validate_dims(sub, source, prefix=f"{prefix}{name}/_name={option['_name']}/")
        return
    for value in args:
        # Lists are accepted (NNI's tuners pass them through): a repeated field's new values.
        items = value if isinstance(value, list) else [value]
        if not items or not all(isinstance(v, (int, float, str)) for v in items):
            raise ConfigError(
                f"{where}: choice values must be numbers, strings or lists of them, "
                f"got {value!r}"
            )


def _dimension_corners(spec: Mapping[str, Any]) -> list[Any]:
    kind, args = spec["_type"], spec["_value"]
    if kind == "choice":
        corners: list[Any] = []
        for option in args:
            if isinstance(option, dict):
                sub = {k: v for k, v in option.items() if k != "_name"}
                for point in corner_points(sub) if sub else [{}]:
                    corners.append({"_name": option["_name"], **point})
            else:
                corners.append(option)
        return corners
    if kind == "randint":
        low, high = args
        return [low] if high - 1 == low else [low, high - 1]  # the upper bound is exclusive
    if "normal" in kind:
        mu, sigma = args[0], args[1]
        low, high = mu - _NORMAL_SIGMAS * sigma, mu + _NORMAL_SIGMAS * sigma
        if kind.endswith("lognormal"):
            low, high = math.exp(low), math.exp(high)
    else:
        low, high = args[0], args[1]
    if kind.startswith("q"):
        q = args[2]
        bounds = (low, high) if "normal" in kind else (args[0], args[1])
        # NNI: round(x / q) * q, clipped to the range.
        values = [min(max(round(v / q) * q, min(bounds)), max(bounds)) for v in (low, high)]
        return sorted(set(values))
    return [low, high]


def corner_points(space: Mapping[str, Any]) -> list[dict[str, Any]]:
    """Parameter sets that together use every corner value of every dimension.

    The corners are every ``choice`` value (each nested option with its own corners), the bounds
    of every range (``randint``'s upper bound minus one, as it is exclusive; quantized bounds
    rounded as NNI does), and mean +- 3 sigma for normal distributions. Point ``k`` takes the
    ``k``-th corner of each dimension (cycling), so there are as many points as the longest
    dimension has corners: every value is rendered at least once without a full product.

    Args:
        space: a validated search space.

    Returns:
        The parameter sets, as NNI would pass them to a trial (for BatchTuner's
        ``combine_params`` space, its parameter sets themselves).
    """
    batch = _batch_points(space)
    if batch is not None:  # BatchTuner runs exactly these
        return batch
    corners = {name: _dimension_corners(spec) for name, spec in space.items()}
    count = max((len(c) for c in corners.values()), default=0)
    return [
        {name: values[k % len(values)] for name, values in corners.items()} for k in range(count)
    ]
