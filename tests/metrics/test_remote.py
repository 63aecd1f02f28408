"""Remote sources read through hpo_tools.storage, tested against FakeBucket (a fake OSS bucket)."""

from __future__ import annotations

import oss2
import pytest

from hpo_tools import storage
from hpo_tools.errors import MetricReadError, StorageError
from hpo_tools.metrics import Follower, MetricSpec, build_source
from hpo_tools.metrics.events import EventDirectoryReader
from hpo_tools.metrics.sources import StdoutSource
from hpo_tools.storage import Storage
from hpo_tools.testing.oss import FakeBucket
from tests.metrics.eventlib import record, scalar_event, version_event

KEY = "model/eval_val/events.out.tfevents.1700000000.host"


@pytest.fixture
def bucket():
    return FakeBucket("b")


@pytest.fixture
def store(bucket):
    return Storage(bucket_factory=lambda name: bucket)


def _triples(events):
    return [(tag, round(value, 6), step) for tag, value, step, _ in events]


def test_remote_event_directory_is_tailed_with_ranged_reads(bucket, store):
    bucket.objects[KEY] = record(version_event()) + record(scalar_event(1, auc=0.5))
    reader = EventDirectoryReader("oss://b/model/eval_val/", store=store)
    assert _triples(reader.poll()) == [("auc", 0.5, 1)]
    first_size = len(bucket.objects[KEY])
    bucket.calls.clear()

    bucket.objects[KEY] += record(scalar_event(2, auc=0.6))  # the job uploads a longer file

    # Only the new record, fetched from the old end of the object (not the whole object again).
    assert _triples(reader.poll()) == [("auc", 0.6, 2)]
    gets = [kwargs for method, _, kwargs in bucket.calls if method == "get_object"]
    assert [g["byte_range"] for g in gets] == [(first_size, None)]


def test_remote_idle_poll_reads_nothing_new(bucket, store):
    bucket.objects[KEY] = record(scalar_event(1, auc=0.5))
    reader = EventDirectoryReader("oss://b/model/eval_val", store=store)
    reader.poll()
    # Nothing appended: an empty ranged read, no events, no error.
    assert reader.poll() == []


def test_remote_directory_that_does_not_exist_yet_is_waited_for(bucket, store):
    reader = EventDirectoryReader("oss://b/model/eval_val", store=store)
    assert reader.poll() == [] and reader.found is False
    bucket.objects[KEY] = record(scalar_event(7, auc=0.25))
    assert _triples(reader.poll()) == [("auc", 0.25, 7)]


def test_remote_partial_record_waits_for_the_rest(bucket, store):
    data = record(scalar_event(1, auc=0.5))
    bucket.objects[KEY] = data[:-3]
    reader = EventDirectoryReader("oss://b/model/eval_val", store=store)
    assert reader.poll() == []
    bucket.objects[KEY] = data
    assert _triples(reader.poll()) == [("auc", 0.5, 1)]


def test_read_error_on_a_later_file_loses_no_event_of_an_earlier_one(bucket, store):
    newer = "model/eval_val/events.out.tfevents.1700000100.host"
    bucket.objects[KEY] = record(scalar_event(1, auc=0.5))
    bucket.objects[newer] = record(scalar_event(2, auc=0.6))
    reader = EventDirectoryReader("oss://b/model/eval_val", store=store)
    get_object = bucket.get_object
    failures = []

    def flaky_get_object(key, *args, **kwargs):
        if key == newer and not failures:
            failures.append(key)
            raise oss2.exceptions.ServerError(503, {}, b"", {"Code": "ServiceUnavailable"})
        return get_object(key, *args, **kwargs)

    bucket.get_object = flaky_get_object

    # The newer file cannot be read this time: the error reaches the caller (which retries)...
    with pytest.raises(StorageError):
        reader.poll()
    # ...and the next poll still yields the older file's event, read (and its offset moved on)
    # before the error, in file order before the newer file's.
    assert _triples(reader.poll()) == [("auc", 0.5, 1), ("auc", 0.6, 2)]


def test_remote_stdout_log_is_read_incrementally(bucket, store):
    spec = MetricSpec.from_config({r"acc=([0-9.]+)": 1})
    source = StdoutSource("oss://b/logs/job.log", spec, store=store)
    # Not uploaded yet: waited for.
    assert source.poll() == [] and source.found() is False
    bucket.objects["logs/job.log"] = b"acc=0.5\n"
    assert [p.values for p in source.poll()] == [{r"acc=([0-9.]+)": 0.5}]
    bucket.objects["logs/job.log"] += b"acc=0.7\n"
    assert [p.step for p in source.poll()] == [2]


def test_summary_source_type_reads_oss_through_the_default_storage(bucket, store, monkeypatch):
    # build_source's factories take (location, spec): remote reads go through the module-level
    # storage functions, here pointed at the fake bucket.
    monkeypatch.setattr(storage, "_default", lambda: store)
    bucket.objects[KEY] = record(scalar_event(3, auc=0.9))
    spec = MetricSpec.from_config({"auc": 1})
    follower = Follower([build_source("summary", "oss://b/model/eval_val", spec=spec)], spec)
    assert [r.step for r in follower.poll()] == [3]
    assert follower.close().score == pytest.approx(0.9)


def test_unreadable_remote_source_is_reported_at_close(monkeypatch):
    monkeypatch.delenv("HPO_TOOLS_WEBHDFS", raising=False)
    spec = MetricSpec.from_config({"auc": 1})
    follower = Follower([build_source("summary", "hdfs://nn/model/eval_val", spec=spec)], spec)
    # No WebHDFS address for this path: polls warn and retry; close names the reason.
    assert follower.poll() == []
    with pytest.raises(MetricReadError,
                       match="cannot read summary:hdfs://nn/.*set HPO_TOOLS_WEBHDFS"):
        follower.close()
