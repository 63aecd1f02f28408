"""Property: however a file is cut into appends, incremental polls read exactly what was written."""

from __future__ import annotations

import struct
import tempfile
from contextlib import contextmanager
from pathlib import Path

from hypothesis import given, settings
from hypothesis import strategies as st
from tensorboard.compat.proto import tensor_pb2, types_pb2

from hpo_tools.metrics import events as events_module
from hpo_tools.metrics.events import EventFileTail
from tests.metrics.eventlib import (
    record,
    scalar_event,
    scalar_shape,
    tensor_event,
    version_event,
)


def _event(tag, value, step, tf2):
    if not tf2:
        return scalar_event(step, **{tag: value})
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_FLOAT,
        tensor_shape=scalar_shape(),
        tensor_content=struct.pack("<f", value),
    )
    event = tensor_event(step, tag, tensor)
    event.summary.value[0].metadata.plugin_data.plugin_name = "scalars"
    return event


_events = st.lists(
    st.tuples(
        st.sampled_from(["auc", "loss", "a/b"]),
        st.floats(-1e6, 1e6, width=32),
        st.one_of(st.integers(0, 300), st.integers(0, 2**62)),
        st.booleans(),  # TF2 tensor encoding instead of simple_value
    ),
    min_size=10,
    max_size=150,
)


@contextmanager
def _small_bulk_thresholds():
    """Let the bulk path run on small test files too."""
    saved = (
        events_module._BULK_MIN_BYTES,
        events_module._BULK_MIN_RUN,
        events_module._LEARN_RECORDS,
    )
    events_module._BULK_MIN_BYTES, events_module._BULK_MIN_RUN = 64, 2
    events_module._LEARN_RECORDS = 4
    try:
        yield
    finally:
        (
            events_module._BULK_MIN_BYTES,
            events_module._BULK_MIN_RUN,
            events_module._LEARN_RECORDS,
        ) = saved


@settings(max_examples=60, deadline=None)
@given(scalars=_events, cuts=st.lists(st.integers(0, 10_000), max_size=8), bulk=st.booleans())
def test_incremental_polls_over_any_cut_points_read_every_scalar_once(scalars, cuts, bulk):
    data = record(version_event()) + b"".join(record(_event(*scalar)) for scalar in scalars)
    points = sorted({min(c, len(data)) for c in cuts}) + [len(data)]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.out.tfevents.1.h"
        path.write_bytes(b"")
        tail = EventFileTail(str(path))
        read = []
        context = _small_bulk_thresholds() if bulk else _noop()
        with context:
            written = 0
            for point in points:
                with open(path, "ab") as handle:
                    handle.write(data[written:point])
                written = point
                read.extend(tail.poll())
    expected = [(tag, struct.unpack("<f", struct.pack("<f", v))[0], s) for tag, v, s, _ in scalars]
    # Every scalar exactly once, in order, whatever the chunking; nothing counted as bad.
    assert [event[:3] for event in read] == expected
    assert tail.bad_records == 0
    assert tail.offset == len(data)


@contextmanager
def _noop():
    yield


@settings(max_examples=60, deadline=None)
@given(
    scalars=_events,
    damage=st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete"]), st.integers(0, 10_000)),
        min_size=1,
        max_size=5,
    ),
    bulk=st.booleans(),
)
def test_damaged_files_never_crash_and_never_invent_scalars(scalars, damage, bulk):
    data = bytearray(
        record(version_event()) + b"".join(record(_event(*scalar)) for scalar in scalars)
    )
    for kind, where in damage:
        where %= len(data)
        if kind == "flip":
            data[where] ^= 0x5A
        elif kind == "insert":
            data[where:where] = b"\x00\xff" * 3
        else:
            del data[where : where + 3]
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "events.out.tfevents.1.h"
        path.write_bytes(bytes(data))
        tail = EventFileTail(str(path))
        with _small_bulk_thresholds() if bulk else _noop():
            read = [event[:3] for event in tail.poll()]
    written = [(tag, struct.unpack("<f", struct.pack("<f", v))[0], s) for tag, v, s, _ in scalars]
    # CRCs guard every record: what is read is a subsequence of what was written.
    remaining = iter(written)
    assert all(any(event == candidate for candidate in remaining) for event in read)


@settings(max_examples=60, deadline=None)
@given(
    scalars=_events,
    damage=st.lists(
        st.tuples(st.sampled_from(["flip", "insert", "delete", "cut"]), st.integers(0, 10_000)),
        min_size=1,
        max_size=4,
    ),
    cuts=st.lists(st.integers(0, 10_000), max_size=6),
)
def test_bulk_path_and_record_loop_agree_on_damaged_files_read_in_pieces(scalars, damage, cuts):
    data = bytearray(
        record(version_event()) + b"".join(record(_event(*scalar)) for scalar in scalars)
    )
    for kind, where in damage:
        if not data:
            break  # cut to nothing
        where %= len(data)
        if kind == "flip":
            data[where] ^= 0x5A
        elif kind == "insert":
            data[where:where] = b"\x00\xff" * 3
        elif kind == "delete":
            del data[where : where + 3]
        else:
            del data[where:]  # the writer died mid-record
    points = sorted({min(c, len(data)) for c in cuts}) + [len(data)]

    def read(bulk):
        with tempfile.TemporaryDirectory() as tmp:
            path = Path(tmp) / "events.out.tfevents.1.h"
            path.write_bytes(b"")
            tail = EventFileTail(str(path))
            events, written = [], 0
            with _small_bulk_thresholds() if bulk else _noop():
                for point in points:
                    with open(path, "ab") as handle:
                        handle.write(bytes(data[written:point]))
                    written = point
                    events.extend(tail.poll())
            return events, tail.bad_records, tail.offset, tail.pending_bytes

    # The bulk path is only an optimisation: same scalars (with wall times), same count of
    # skipped records and same resume offset as the record loop, however the file arrives.
    assert read(bulk=True) == read(bulk=False)
