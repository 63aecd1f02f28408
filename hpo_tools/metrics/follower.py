"""Follow metric sources while a job runs; yield each newly scored step once.

The follower polls its sources, merges the points of each ``(source, step)``, and scores a step as
soon as it holds every metric with a non-zero weight. Guarantees:

* Each scored ``(source, step)`` is yielded once. Values arriving for a step after it was scored do
  not change it.
* A follower re-created after a restart (of the runner, not the job) does not yield old steps
  again when it is given the previous follower's :meth:`Follower.state` (a small JSON-safe dict the
  runner persists). The new follower re-reads the sources from the start, so ``best``/``avg``
  still see every step, but yields only steps the old one had not.
* A location that does not exist yet is waited for; corrupt or truncated data is skipped with a
  warning (see :mod:`.events`); a read error (e.g. the network) is logged and retried next poll.
  None of these raise. Once the job is over, :meth:`Follower.drain` logs one line per damaged
  source (``path: 2 corrupt records skipped; a truncated record of 37 bytes at the end``),
  :meth:`Follower.warnings` returns those lines, and the error of a follower that never scored
  ends with them.
* :meth:`Follower.drain` reads every source a last time (yielding the last steps);
  :meth:`Follower.close` drains if that was not done, and returns the final report, or raises
  :class:`~hpo_tools.errors.MetricReadError` naming the required and the seen metrics when no step
  ever scored.

It owns no thread: :meth:`Follower.follow` polls on the caller's thread and sleeps in
``stop.wait(interval)``, so setting the event ends it at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator, Mapping, Sequence

from hpo_tools.errors import HpoError, MetricReadError
from hpo_tools.metrics.score import MetricSpec, Report
from hpo_tools.metrics.sources import MetricPoint, MetricSource

__all__ = ["Follower"]

_logger = logging.getLogger(__name__)

# Steps that hold some but not all weighted metrics, kept per source, oldest dropped beyond this.
_MAX_PENDING = 10_000
_STATE_VERSION = 1


def _quote(names: Sequence[str]) -> str:
    return ", ".join(f"`{name}`" for name in names) if names else "nothing"


class Follower:
    """Poll metric sources and turn their steps into :class:`Report` s.

    Example::

        follower = Follower([build_source("summary", "model/eval_val", spec=spec)], spec)
        for report in follower.follow(stop_event):   # until stop_event is set
            nni.report_intermediate_result(report.as_nni())
        nni.report_final_result(follower.close().as_nni())

    Args:
        sources: The sources, in the order ``source_list_final_mode`` ``final`` counts them.
        spec: Weights and modes.
        interval: Seconds between polls in :meth:`follow`.
        state: A previous follower's :meth:`state`: its steps are not yielded again.

    Raises:
        ValueError: ``sources`` is empty or ``interval`` is not positive.
    """

    def __init__(
        self,
        sources: Sequence[MetricSource],
        spec: MetricSpec,
        interval: float = 1.0,
        *,
        state: Mapping[str, object] | None = None,
    ) -> None:
        if not sources:
            raise ValueError("Follower needs at least one metric source")
        if not interval > 0:
            raise ValueError(f"Follower interval must be > 0 seconds, got {interval!r}")
        self.sources = list(sources)
        self.spec = spec
        self.interval = float(interval)
        self._pending: list[dict[int, dict[str, float]]] = [{} for _ in self.sources]
        self._scored: list[dict[int, Report]] = [{} for _ in self.sources]
        self._reported: set[tuple[int, int]] = set()
        self._seen: dict[str, None] = {}
        self._read_errors: list[str | None] = [None for _ in self.sources]
        self._final: Report | None = None
        self._closed = False
        self._drained = False
        if state:
            self._restore(state)

    # --- state -----------------------------------------------------------------------------------

    def state(self) -> dict[str, object]:
        """A JSON-safe dict to pass as ``state=`` to a re-created follower."""
        return {"version": _STATE_VERSION, "reported": sorted(map(list, self._reported))}

    def _restore(self, state: Mapping[str, object]) -> None:
        reported = state.get("reported", [])
        if not isinstance(reported, list):
            _logger.warning("ignoring a malformed follower state: %.200r", state)
            return
        for item in reported:
            if (
                isinstance(item, (list, tuple))
                and len(item) == 2
                and all(isinstance(x, int) and not isinstance(x, bool) for x in item)
            ):
                self._reported.add((item[0], item[1]))
            else:
                _logger.warning("ignoring a malformed follower state entry: %.100r", item)

    # --- reading ---------------------------------------------------------------------------------

    @property
    def seen_metrics(self) -> list[str]:
        """Every metric name any source has produced so far, in first-seen order."""
        return list(self._seen)

    def history(self) -> list[Report]:
        """Every scored step so far (also those yielded before a restore), by source and step."""
        return [
            report
            for scored in self._scored
            for _, report in sorted(scored.items(), key=lambda item: item[0])
        ]

    def poll(self) -> list[Report]:
        """Read every source once; return the steps scored for the first time, each once."""
        if self._closed:
            return []
        reports: list[Report] = []
        for index, source in enumerate(self.sources):
            reports.extend(self._absorb(index, self._read(index, source, final=False)))
        return reports

    def follow(self, stop: threading.Event) -> Iterator[Report]:
        """Poll now and then every ``interval`` seconds until ``stop`` is set; yield new steps.

        It does not drain: call :meth:`close` afterwards for what is left and the final report.
        """
        while not self._closed:
            yield from self.poll()
            if stop.wait(self.interval):
                return

    def drain(self) -> list[Report]:
        """Read every source a last time; return the steps scored for the first time.

        Unlike :meth:`poll`, it also takes what a poll keeps waiting for (a last log line without
        a newline). Call it once the job is over, before :meth:`close`, to report the last steps.
        """
        if self._closed:
            return []
        reports: list[Report] = []
        for index, source in enumerate(self.sources):
            reports.extend(self._absorb(index, self._read(index, source, final=True)))
        self._drained = True
        for line in self.warnings():
            _logger.warning("%s", line)
        return reports

    def warnings(self) -> list[str]:
        """One line per problem of the data the sources read (a corrupt or truncated event
        file), each naming where. Meant for once the job is over (after :meth:`drain`): while
        it runs, a record cut short at the end of a file is one still being written."""
        lines: list[str] = []
        for source in self.sources:
            try:
                lines.extend(source.data_warnings())
            except Exception:  # noqa: BLE001 - a note must never cost the result
                _logger.debug("%s: data_warnings failed", source.describe(), exc_info=True)
        return lines

    def close(self) -> Report:
        """Drain every source (unless :meth:`drain` was called), close it, return the final report.

        Calling it again returns the same report (or raises the same error).

        Raises:
            MetricReadError: No step of any source held every weighted metric.
        """
        if not self._closed:
            if not self._drained:
                self.drain()
            for source in self.sources:
                try:
                    source.close()
                except Exception:  # noqa: BLE001 - closing must not hide the result
                    _logger.warning("closing %s failed", source.describe(), exc_info=True)
            self._closed = True
            self._final = self._compute_final()
        if self._final is None:
            raise self._no_score_error()
        return self._final

    def __enter__(self) -> Follower:
        return self

    def __exit__(self, *exc_info: object) -> None:
        if not self._closed:
            self._closed = True
            for source in self.sources:
                try:
                    source.close()
                except Exception:  # noqa: BLE001
                    _logger.warning("closing %s failed", source.describe(), exc_info=True)

    # --- internals -------------------------------------------------------------------------------

    def _read(self, index: int, source: MetricSource, final: bool) -> list[MetricPoint]:
        try:
            points = source.drain() if final else source.poll()
        except (HpoError, OSError) as err:
            message = str(err)
            if message != self._read_errors[index]:
                _logger.warning("cannot read %s (will retry): %s", source.describe(), message)
            self._read_errors[index] = message
            return []
        self._read_errors[index] = None
        return points

    def _absorb(self, index: int, points: Sequence[MetricPoint]) -> list[Report]:
        weights = self.spec.weights
        scored = self._scored[index]
        pending = self._pending[index]
        touched: dict[int, None] = {}
        for point in points:
            for name in point.values:
                if name not in self._seen:
                    self._seen[name] = None
            if point.step in scored:
                continue
            kept = {name: value for name, value in point.values.items() if name in weights}
            if not kept:
                continue
            step_values = pending.get(point.step)
            if step_values is None:
                pending[point.step] = kept
            else:
                step_values.update(kept)
            touched[point.step] = None
        reports: list[Report] = []
        for step in touched:
            values = pending.get(step)
            if values is None or not self.spec.is_complete(values):
                continue
            del pending[step]
            report = self.spec.make_report(step, values, source=index)
            scored[step] = report
            if (index, step) not in self._reported:
                self._reported.add((index, step))
                reports.append(report)
        while len(pending) > _MAX_PENDING:
            del pending[next(iter(pending))]
        return reports

    def _compute_final(self) -> Report | None:
        finals: list[Report] = []
        for index, scored in enumerate(self._scored):
            if not scored:
                if len(self.sources) > 1:
                    _logger.warning(
                        "%s never held every weighted metric; the final score leaves it out",
                        self.sources[index].describe(),
                    )
                continue
            finals.append(self.spec.final([scored[step] for step in sorted(scored)]))
        if not finals:
            return None
        return self.spec.final_across(finals)

    def _no_score_error(self) -> MetricReadError:
        required = list(self.spec.required)
        seen = list(self._seen)
        missing = [name for name in required if name not in self._seen]
        detail = f"required {_quote(required)}, seen {_quote(seen)}"
        if missing and seen:
            detail += f" (missing {_quote(missing)})"
        elif not missing:
            detail += " (never all at the same step)"
        notes = []
        for index, source in enumerate(self.sources):
            if self._read_errors[index]:
                notes.append(f"cannot read {source.describe()}: {self._read_errors[index]}")
            elif not source.found():
                notes.append(f"{source.describe()} {source.not_found_reason()}")
        notes.extend(self.warnings())
        where = ", ".join(source.describe() for source in self.sources)
        suffix = f"; {'; '.join(notes)}" if notes else ""
        return MetricReadError(
            f"no evaluation step in {where} held every weighted metric: {detail}{suffix}"
        )
