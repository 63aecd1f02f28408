"""Metric sources: where a job's evaluation results are read from, incrementally.

A source turns a location into :class:`MetricPoint` s (a step number and some metric values) each
time it is polled, returning only what is new. The follower merges points of the same step and
scores a step once it holds every weighted metric.

Built-in types (``metric_type``):

``summary``
    A TensorBoard event directory (``model_dir/eval_val``): local, ``oss://`` or ``hdfs://``. The
    step is the event's global step; every scalar tag is a metric.
``stdout``
    A job's growing log file. The keys of ``metric_dict`` are regular expressions with exactly one
    capture group, the value. Lines are read in order; when a regex matches, its value is kept for
    the current step; the step completes (and is numbered 1, 2, 3, ...) on the line where every
    regex with a non-zero weight has matched since the last step. A regex that matches twice before
    that keeps its latest value; zero-weight regexes only add their value to the step.
``json``
    A file of one JSON object per line, or a single JSON document (an object or a list of objects).
    The step is the object's ``step`` or ``global_step`` key, else its position (1, 2, 3, ...).
    Numeric values are metrics; nested objects are flattened with dots (``{"eval": {"auc": 1}}``
    gives ``eval.auc``).

Other types are registered with :func:`register_source_type`. A platform may read metrics of
its own types (``Platform.metric_source_types``, e.g. an SQL ``table`` query on MaxCompute):
:func:`build_source` asks the platform the caller passes (the trial runner passes the one running
the trial) for those; this module names no platform. A type registered with
``takes_platform=True`` gets that platform too.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Callable, NamedTuple

from hpo_tools.errors import ConfigError, did_you_mean
from hpo_tools.metrics.events import EventDirectoryReader, _store, is_remote

if TYPE_CHECKING:
    from hpo_tools.metrics.score import MetricSpec

__all__ = [
    "MetricPoint",
    "MetricSource",
    "SourceFactory",
    "SummarySource",
    "StdoutSource",
    "JsonSource",
    "build_source",
    "register_source_type",
    "source_types",
]

_logger = logging.getLogger(__name__)


@dataclass(frozen=True)
class MetricPoint:
    """Some metric values observed at one step (possibly not all metrics of the step).

    Attributes:
        step: The step number the values belong to.
        values: ``{metric: value}``.
    """

    step: int
    values: Mapping[str, float]


class MetricSource:
    """Base of every source. Subclasses implement :meth:`poll`; the rest has defaults.

    Args:
        location: What to read (a directory, a file, a query); named in messages.

    Attributes:
        location: As given.
        type_name: The ``metric_type`` that builds this source.
    """

    type_name = ""

    def __init__(self, location: str) -> None:
        self.location = location

    def poll(self) -> list[MetricPoint]:
        """Return the points observed since the last poll. Must not raise for corrupt data.

        Raises:
            HpoError: The location cannot be read right now (the follower logs it and retries).
        """
        raise NotImplementedError

    def drain(self) -> list[MetricPoint]:
        """Last read when the job is over: also what a final poll would keep waiting for."""
        return self.poll()

    def close(self) -> None:
        """Release what the source holds (files, connections)."""

    def data_warnings(self) -> list[str]:
        """One line per problem of the data read so far (a corrupt or truncated file), naming
        where; asked once the job is over, after :meth:`drain`. Default: none."""
        return []

    def found(self) -> bool:
        """False while the location does not exist (yet); used in error messages."""
        return True

    def not_found_reason(self) -> str:
        """What the error message says when :meth:`found` is False."""
        return "does not exist"

    def describe(self) -> str:
        """``type:location`` for messages."""
        return f"{self.type_name or type(self).__name__}:{self.location}"


SourceFactory = Callable[..., MetricSource]
"""``factory(location, spec)``, or ``factory(location, spec, platform)`` for a type registered
with ``takes_platform=True``."""


class _Registered(NamedTuple):
    factory: SourceFactory
    takes_platform: bool


_FACTORIES: dict[str, _Registered] = {}


def register_source_type(
    name: str, factory: SourceFactory, *, takes_platform: bool = False
) -> None:
    """Make ``metric_type = name`` build sources with ``factory(location, spec)``.

    Registering a name again replaces the factory (the last registration wins).

    Args:
        name: The type name (case-insensitive).
        factory: Builds the source.
        takes_platform: Call ``factory(location, spec, platform)`` instead, with the platform
            given to :func:`build_source` (None when the caller has none, e.g. the CLI); the
            factory raises ConfigError when that is not a platform it can work with.
    """
    key = name.strip().lower()
    if not key:
        raise ValueError("a metric source type needs a non-empty name")
    _FACTORIES[key] = _Registered(factory, bool(takes_platform))


def source_types() -> list[str]:
    """Every type name :func:`build_source` accepts, sorted."""
    return sorted(_FACTORIES)


def build_source(
    type_name: str,
    location: str,
    *,
    spec: MetricSpec,
    key: str = "metric_type",
    platform: object | None = None,
) -> MetricSource:
    """Build the source of ``type_name`` for ``location``.

    Args:
        type_name: The ``metric_type``.
        location: What the source reads (a directory, a file, an SQL query).
        spec: The metric spec.
        key: How error messages name the type setting (e.g. ``--type`` in the CLI).
        platform: The platform the job runs on, for types that need it (``table`` runs its
            query through a MaxCompute platform); ignored by the other types.

    Raises:
        ConfigError: Unknown type (with a did-you-mean), empty location, a location or
            ``metric_dict`` the type rejects (e.g. a stdout regex without a capture group), or a
            type that needs a platform ``platform`` is not.
    """
    key_name = key
    key = str(type_name).strip().lower()
    provided = getattr(platform, "metric_source_types", ())
    registered = _FACTORIES.get(key)
    if registered is None and key not in provided:
        known = sorted({*_FACTORIES, *provided})
        raise ConfigError(
            f"{key_name}: unknown source type {type_name!r}; expected one of "
            f"{', '.join(known)}" + did_you_mean(key, known)
        )
    if not str(location).strip():
        raise ConfigError(f"metric_source: empty location for metric_type {key!r}")
    if key in provided:  # read through the platform (a `table` query on MaxCompute)
        return platform.metric_source(key, str(location).strip(), spec)  # type: ignore[union-attr]
    assert registered is not None
    if registered.takes_platform:
        return registered.factory(str(location).strip(), spec, platform)
    return registered.factory(str(location).strip(), spec)


# --- growing files ---------------------------------------------------------------------------


# A local log is read at most this much at a time (a first poll over a huge log stays bounded).
_MAX_READ = 16 << 20


class _GrowingFile:
    """Bytes appended to a (local or remote) file since the last read."""

    def __init__(self, path: str, store: object | None = None) -> None:
        self.path = path
        self.offset = 0
        self.found = False
        self._remote = is_remote(path)
        self._store = store

    def read_new(self) -> tuple[bytes, bool]:
        """Return ``(new bytes, rewritten)``; ``rewritten`` when the file shrank since last time.

        Raises:
            StorageError: A remote file that existed cannot be read (the follower retries).
        """
        if self._remote:
            store = _store(self._store)
            if not self.found:
                if not store.exists(self.path):  # type: ignore[attr-defined]
                    return b"", False
                self.found = True
            # One ranged GET; a remote object that shrank is not detected.
            return store.read_bytes(self.path, self.offset), False  # type: ignore[attr-defined]
        path = self.path[len("file://") :] if self.path.startswith("file://") else self.path
        try:
            with open(path, "rb") as handle:
                self.found = True
                size = os.fstat(handle.fileno()).st_size
                rewritten = self._rewound(size)
                if size == self.offset:
                    return b"", rewritten
                handle.seek(self.offset)
                return handle.read(_MAX_READ), rewritten
        except (FileNotFoundError, IsADirectoryError, NotADirectoryError):
            return b"", False
        except OSError as err:
            _logger.warning("cannot read %s: %s; will retry", path, err)
            return b"", False

    def _rewound(self, size: int) -> bool:
        if size >= self.offset:
            return False
        _logger.warning(
            "%s shrank from %d to %d bytes (rewritten?); reading it from the start",
            self.path,
            self.offset,
            size,
        )
        self.offset = 0
        return True


class _LineSource(MetricSource):
    """A source that reads a growing text file line by line."""

    def __init__(self, location: str, store: object | None = None) -> None:
        super().__init__(location)
        self._file = _GrowingFile(location, store)
        self._partial = b""

    def found(self) -> bool:
        return self._file.found

    def _lines(self, final: bool) -> Iterator[str]:
        """Complete new lines (and, when ``final``, the unterminated last one), chunk by chunk."""
        while True:
            data, rewritten = self._file.read_new()
            full_chunk = len(data) >= _MAX_READ
            if rewritten:
                self._partial = b""
                self._restart()
            self._file.offset += len(data)
            data = self._partial + data if self._partial else data
            cut = data.rfind(b"\n") + 1
            self._partial = data[cut:]
            complete = data[:cut]
            if complete:
                for line in complete.decode("utf-8", "replace").split("\n")[:-1]:
                    yield line.rstrip("\r")
            if not full_chunk:
                break  # caught up with the writer
        if final and self._partial.strip():
            tail, self._partial = self._partial, b""
            yield tail.decode("utf-8", "replace").rstrip("\r")

    def _restart(self) -> None:
        """The file was rewritten: forget per-file state."""


class StdoutSource(_LineSource):
    """Metrics printed in a job's log, matched with one regex per metric (see the module doc).

    Args:
        location: The log file (local or remote).
        spec: Its ``weights`` keys are the regexes.

    Raises:
        ConfigError: A regex does not compile or does not have exactly one capture group.
    """

    type_name = "stdout"

    def __init__(self, location: str, spec: MetricSpec, *, store: object | None = None) -> None:
        super().__init__(location, store)
        self._patterns: list[tuple[str, re.Pattern[str]]] = []
        for key in spec.weights:
            try:
                pattern = re.compile(key)
            except re.error as err:
                raise ConfigError(f"metric_dict[{key!r}]: not a valid regex ({err})") from None
            if pattern.groups != 1:
                raise ConfigError(
                    f"metric_dict[{key!r}]: a stdout metric regex needs exactly one capture "
                    f"group (the value), found {pattern.groups}, e.g. 'accuracy=([0-9.eE+-]+)'"
                )
            self._patterns.append((key, pattern))
        self._required = spec.required
        self._current: dict[str, float] = {}
        self._steps = 0
        self._bad_values: set[str] = set()

    def poll(self) -> list[MetricPoint]:
        return self._read(final=False)

    def drain(self) -> list[MetricPoint]:
        return self._read(final=True)

    def _restart(self) -> None:
        self._current = {}

    def _read(self, final: bool) -> list[MetricPoint]:
        points: list[MetricPoint] = []
        for line in self._lines(final):
            current = self._current  # (re)bound per line: a rewritten file resets it
            matched = False
            for key, pattern in self._patterns:
                match = pattern.search(line)
                if match is None:
                    continue
                try:
                    current[key] = float(match.group(1))
                    matched = True
                except (TypeError, ValueError):
                    if key not in self._bad_values:
                        self._bad_values.add(key)
                        _logger.warning(
                            "%s: regex %r captured %r, not a number; ignored",
                            self.location,
                            key,
                            match.group(1),
                        )
            if matched and all(key in current for key in self._required):
                self._steps += 1
                points.append(MetricPoint(self._steps, current))
                self._current = {}
        return points


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    try:
        return float(value)
    except OverflowError:  # a JSON integer beyond float range is not a usable metric or step
        return None


def _loads(text: str) -> object:
    """``json.loads``; nesting too deep for the parser is a ValueError like any other bad JSON."""
    try:
        return json.loads(text)
    except RecursionError:
        raise ValueError("JSON nested too deeply") from None


def _flatten(obj: Mapping[str, object], prefix: str, out: dict[str, float]) -> None:
    # Depth first in document order, without recursion: deep nesting must not hit the limit.
    stack = [(prefix, iter(obj.items()))]
    while stack:
        head, items = stack[-1]
        for key, value in items:
            name = f"{head}{key}"
            if isinstance(value, Mapping):
                stack.append((name + ".", iter(value.items())))
                break
            number = _number(value)
            if number is not None:
                out[name] = number
        else:
            stack.pop()


_STEP_KEYS = ("step", "global_step")


class JsonSource(_LineSource):
    """Metrics in a JSON-lines file or a single JSON document (see the module doc)."""

    type_name = "json"

    def __init__(self, location: str, spec: MetricSpec, *, store: object | None = None) -> None:
        super().__init__(location, store)
        self._count = 0
        self._document = False
        self._last_document = b""
        self._bad_lines = 0

    def poll(self) -> list[MetricPoint]:
        return self._read(final=False)

    def drain(self) -> list[MetricPoint]:
        return self._read(final=True)

    def _restart(self) -> None:
        self._count = 0

    def _point(self, obj: object) -> MetricPoint | None:
        if not isinstance(obj, Mapping):
            return None
        self._count += 1
        step = self._count
        for key in _STEP_KEYS:
            number = _number(obj.get(key))
            if number is not None and number.is_integer():
                step = int(number)
                break
        values: dict[str, float] = {}
        _flatten({k: v for k, v in obj.items() if k not in _STEP_KEYS}, "", values)
        return MetricPoint(step, values)

    def _points(self, parsed: object) -> list[MetricPoint]:
        items = parsed if isinstance(parsed, list) else [parsed]
        return [point for point in map(self._point, items) if point is not None]

    def _read(self, final: bool) -> list[MetricPoint]:
        if self._document:
            return self._read_document(final)
        points: list[MetricPoint] = []
        for line in self._lines(final=False):
            text = line.strip()
            if not text:
                continue
            try:
                parsed = _loads(text)
            except ValueError:
                if (
                    self._count == 0
                    and not points
                    and self._bad_lines == 0
                    and text.startswith(("{", "["))
                ):
                    # Not JSON lines: a document spread over several lines. (A first line that
                    # cannot open a document, e.g. a log header, is a bad line like any other.)
                    self._document = True
                    self._partial = b""
                    return self._read_document(final)
                self._bad_lines += 1
                _logger.warning("%s: a line is not JSON; skipped: %.80s", self.location, text)
                continue
            points.extend(self._points(parsed))
        tail = self._partial.strip()
        if tail:
            # A last object written without a newline is complete once it parses.
            try:
                parsed = _loads(tail.decode("utf-8", "replace"))
            except ValueError:
                parsed = None
            if isinstance(parsed, (dict, list)) or (final and parsed is not None):
                self._partial = b""
                points.extend(self._points(parsed))
        return points

    def _read_document(self, final: bool) -> list[MetricPoint]:
        # A document is small and may be rewritten in place: read it whole when it changed.
        self._file.offset = 0
        chunks = []
        while True:
            chunk, _ = self._file.read_new()
            chunks.append(chunk)
            self._file.offset += len(chunk)
            if len(chunk) < _MAX_READ:
                break
        data = b"".join(chunks)
        if data == self._last_document:
            return []
        try:
            parsed = _loads(data.decode("utf-8", "replace"))
        except ValueError:
            if final and data.strip():
                _logger.warning("%s: not a JSON document; ignored", self.location)
            return []
        self._last_document = data
        self._count = 0
        return self._points(parsed)


class SummarySource(MetricSource):
    """Scalars of the TensorBoard event files in a directory (see :mod:`.events`)."""

    type_name = "summary"

    def __init__(
        self, location: str, spec: MetricSpec | None = None, *, store: object | None = None
    ) -> None:
        super().__init__(location)
        self.reader = EventDirectoryReader(location, store=store)

    def found(self) -> bool:
        return self.reader.found

    def data_warnings(self) -> list[str]:
        """Each damaged event file: corrupt records skipped, a truncated record at its end."""
        return self.reader.damage()

    def not_found_reason(self) -> str:
        if self.reader.directory_exists:
            return "has no event files (*tfevents*; the evaluation directory is e.g. eval_val)"
        if self.reader.directory_exists is None:
            return "does not exist or has no event files (*tfevents*)"
        return "does not exist"

    def poll(self) -> list[MetricPoint]:
        points: list[MetricPoint] = []
        values: dict[str, float] = {}
        step = None
        for tag, value, event_step, _ in self.reader.poll():
            if event_step != step:
                if values:
                    points.append(MetricPoint(step, values))  # type: ignore[arg-type]
                values = {}
                step = event_step
            if value != value:  # NaN
                _logger.warning("%s: %s is NaN at step %d", self.location, tag, event_step)
            values[tag] = value
        if values:
            points.append(MetricPoint(step, values))  # type: ignore[arg-type]
        return points


register_source_type("summary", SummarySource)
register_source_type("stdout", StdoutSource)
register_source_type("json", JsonSource)
