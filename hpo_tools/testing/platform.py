"""``FakePlatform``: an in-process platform for runner tests that are not about processes.

It is also the proof that a platform is one module behind ``hpo_tools.platforms.base.Platform``:
its own trial-file section (``[fake_config] tick, label``), its command shaping (a tiny script
language, checked when the trial file is read) and its own metric source type (``fake``) all
live here, and :func:`registered` adds it with the one registry line any platform needs
(``register_platform("fake", "hpo_tools.testing.platform:FakePlatform", "Fake")``).

A command is ``;``-separated steps, run in order by a thread of the job's own:

- ``emit LOCATION step=N KEY=VALUE ...``: a metric point, read by ``metric_type=fake`` sources
  whose ``metric_source`` is ``LOCATION``;
- ``echo TEXT``: a line in the job's log (through the runner's output filter, the masker);
- ``sleep SECONDS``;
- ``fail MESSAGE``: the job ends FAILED with that message;
- ``hang``: the job runs until it is cancelled.

Nothing is started outside this process; every job can be cancelled at once.
"""

from __future__ import annotations

import contextlib
import itertools
import shlex
import threading
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any, ClassVar, Dict, List, Optional, Tuple

from hpo_tools.errors import ConfigError
from hpo_tools.metrics.sources import MetricPoint, MetricSource
from hpo_tools.platforms import base
from hpo_tools.platforms.base import (
    Job,
    JobState,
    OutputFilter,
    Platform,
    TrialFileView,
    UpdateCallback,
)

__all__ = ["FakePlatform", "FakeJob", "FakeMetricSource", "registered", "NAME"]

NAME = "fake"
_VERBS = ("emit", "echo", "sleep", "fail", "hang")
_ids = itertools.count(1)
# Live jobs of this process by id, so that cancel_described works as for a real platform.
_JOBS: Dict[str, FakeJob] = {}
_JOBS_LOCK = threading.Lock()


def _steps(text: str) -> List[Tuple[str, List[str]]]:
    steps = []
    for part in text.split(";"):
        words = shlex.split(part)
        if not words:
            continue
        verb = words[0].lower()
        if verb not in _VERBS:
            raise ConfigError(f"unknown step {words[0]!r}; expected one of {', '.join(_VERBS)}")
        if verb == "emit" and len(words) < 3:
            raise ConfigError("emit needs a location and KEY=VALUE pairs")
        steps.append((verb, words[1:]))
    if not steps:
        raise ConfigError("empty command")
    return steps


class FakeJob(Job):
    """One fake command, run by a thread of its own."""

    def __init__(
        self,
        platform: FakePlatform,
        command: str,
        log_path: Path,
        output_filter: Optional[OutputFilter],
    ) -> None:
        super().__init__(f"fake:{next(_ids)}", log_path)
        self._platform = platform
        self._steps = _steps(command)
        self._filter = output_filter or (lambda line: line)
        self._state = JobState.RUNNING
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=self.job_id, daemon=True)
        with _JOBS_LOCK:
            _JOBS[self.job_id] = self
        self._thread.start()

    def _log(self, line: str) -> None:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "a", encoding="utf-8") as handle:
            handle.write(self._filter(line) + "\n")

    def _run(self) -> None:
        for verb, args in self._steps:
            if self._stop.wait(self._platform.tick):
                return
            if verb == "echo":
                self._log(" ".join(args))
            elif verb == "sleep":
                if self._stop.wait(float(args[0]) if args else 0.0):
                    return
            elif verb == "emit":
                values = dict(arg.split("=", 1) for arg in args[1:])
                step = int(values.pop("step", 0))
                point = MetricPoint(step, {k: float(v) for k, v in values.items()})
                self._platform.add_point(args[0], point)
            elif verb == "fail":
                self._end(JobState.FAILED, " ".join(args) or "failed")
                return
            elif verb == "hang":
                self._stop.wait()
                return
        self._end(JobState.SUCCEEDED, "")

    def _end(self, state: JobState, message: str) -> None:
        if not self._state.is_finished:
            self.message = message
            self._state = state
        with _JOBS_LOCK:
            _JOBS.pop(self.job_id, None)

    def poll(self) -> JobState:
        return self._state

    def cancel(self) -> None:
        self._stop.set()
        self._end(JobState.CANCELLED, "cancelled")
        self._platform.cancelled.append(self.job_id)

    def describe(self) -> Dict[str, Any]:
        return {"platform": NAME, "settings": self._platform.settings(), "job_id": self.job_id}


class FakeMetricSource(MetricSource):
    """``metric_type=fake``: the points the platform's jobs emitted to ``location``."""

    def __init__(self, location: str, platform: FakePlatform) -> None:
        super().__init__(location)
        self._platform = platform
        self._seen = 0

    def poll(self) -> List[MetricPoint]:
        points = self._platform.points(self.location)
        new, self._seen = points[self._seen:], len(points)
        return new


class FakePlatform(Platform):
    """In-process jobs (see the module docstring).

    Args:
        tick: seconds before each step of a job (``[fake_config] tick``).
        label: any text, kept in :meth:`settings` (``[fake_config] label``).

    Attributes:
        submitted: the command texts, in submit order.
        cancelled: the ids of the jobs cancelled.
    """

    name = NAME
    trial_file_sections: ClassVar[Tuple[str, ...]] = ("fake_config",)
    metric_source_types: ClassVar[Tuple[str, ...]] = ("fake",)
    trial_file_hint: ClassVar[str] = "[fake_config]"

    def __init__(self, *, tick: Any = 0.0, label: str = "") -> None:
        try:
            self.tick = float(tick)
        except (TypeError, ValueError):
            raise ConfigError(f"platform Fake: tick={tick!r} is not a number of seconds") from None
        self.label = str(label)
        self.submitted: List[str] = []
        self.cancelled: List[str] = []
        self._points: Dict[str, List[MetricPoint]] = {}
        self._lock = threading.Lock()

    @classmethod
    def options_from_trial_file(cls, trial_file: TrialFileView) -> Dict[str, Any]:
        section = trial_file.section("fake_config")
        if section is None:
            return {}
        section.check_keys(("tick", "label"))
        options: Dict[str, Any] = {}
        if section.get("tick") is not None:
            options["tick"] = section.require("tick")
        if section.get("label") is not None:
            options["label"] = section.require("label")
        return options

    @classmethod
    def shape_command(cls, text: str) -> str:
        _steps(text)
        return text.strip()

    def settings(self) -> Dict[str, Any]:
        return {"tick": self.tick, "label": self.label}

    def submit(
        self,
        command: str,
        *,
        log_path: Path,
        env: Optional[Mapping[str, str]] = None,
        on_update: Optional[UpdateCallback] = None,
        output_filter: Optional[OutputFilter] = None,
    ) -> Job:
        self.submitted.append(command)
        return FakeJob(self, command, Path(log_path), output_filter)

    def cancel_described(self, description: Mapping[str, Any]) -> bool:
        with _JOBS_LOCK:
            job = _JOBS.get(str(description.get("job_id")))
        if job is None:
            return False
        job.cancel()
        return True

    def metric_source(self, type_name: str, location: str, spec: Any) -> FakeMetricSource:
        if type_name != "fake":
            return super().metric_source(type_name, location, spec)
        return FakeMetricSource(location, self)

    def add_point(self, location: str, point: MetricPoint) -> None:
        with self._lock:
            self._points.setdefault(location, []).append(point)

    def points(self, location: str) -> List[MetricPoint]:
        with self._lock:
            return list(self._points.get(location, ()))


@contextlib.contextmanager
def registered() -> Iterator[None]:
    """FakePlatform registered as ``Fake`` (the one line a new platform adds), then removed."""
    saved = (dict(base._PLATFORMS), dict(base._DISPLAY_NAMES))
    base.register_platform(NAME, "hpo_tools.testing.platform:FakePlatform", "Fake")
    try:
        yield
    finally:
        with base._registry_lock:
            base._PLATFORMS.clear()
            base._PLATFORMS.update(saved[0])
            base._DISPLAY_NAMES.clear()
            base._DISPLAY_NAMES.update(saved[1])
