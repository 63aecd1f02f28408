"""The bulk path of the event reader (long runs of records) agrees with the record loop."""

from __future__ import annotations

import random
import struct

import numpy as np
import pytest
from tensorboard.compat.proto import tensor_pb2, types_pb2

from hpo_tools.metrics import events as events_module
from hpo_tools.metrics.events import EventFileTail, _crc32c, _crc32c_columns
from tests.metrics.eventlib import (
    append_events,
    event_file,
    record,
    scalar_event,
    scalar_shape,
    tensor_event,
    version_event,
)

TAGS = ("auc", "loss", "a/b/c", "ünïcode", "x" * 200)


def _f32(value):
    return struct.unpack("<f", struct.pack("<f", value))[0]


def _mixed_events(count, rng):
    """Scalar events with awkward steps, plus other kinds of records here and there.

    Returns the events to write and, for each of them, the scalars it holds.
    """
    written, per_record = _mixed_records(count, rng)
    return written, [scalar for scalars in per_record for scalar in scalars]


def _mixed_records(count, rng):
    written, per_record = [version_event()], [[]]
    for i in range(count):
        step = rng.choice([0, i, i * 1000, 2**21 + i, 2**35 + i, 2**62 + i])
        tag = TAGS[i % len(TAGS)]
        value = rng.uniform(-1e3, 1e3)
        if i == count // 3:
            tensor = tensor_pb2.TensorProto(
                dtype=types_pb2.DT_FLOAT,
                tensor_shape=scalar_shape(),
                tensor_content=struct.pack("<f", value),
            )
            written.append(tensor_event(step, "tf2", tensor))
            per_record.append([("tf2", _f32(value), step)])
        elif i == count // 2:
            written.append(scalar_event(step, auc=value, loss=-value))
            per_record.append([("auc", _f32(value), step), ("loss", _f32(-value), step)])
        else:
            written.append(scalar_event(step, **{tag: value}))
            per_record.append([(tag, _f32(value), step)])
    return written, per_record


def _read(path):
    tail = EventFileTail(str(path))
    return [e[:3] for e in tail.poll()], tail


def test_large_mixed_file_reads_the_same_through_both_paths(tmp_path, monkeypatch):
    written, expected = _mixed_events(4000, random.Random(7))
    path = event_file(tmp_path, 100)
    append_events(path, *written)
    assert path.stat().st_size > events_module._BULK_MIN_BYTES  # the bulk path is used

    bulk, _ = _read(path)
    monkeypatch.setattr(events_module, "_BULK_MIN_BYTES", 1 << 62)  # record loop only
    loop, _ = _read(path)

    # Both paths give exactly the scalars that were written, in order (steps up to 2**62).
    assert bulk == expected
    assert loop == expected


def test_bulk_path_skips_a_bad_crc_in_the_middle_and_counts_it(tmp_path):
    written, per_record = _mixed_records(3000, random.Random(3))
    path = event_file(tmp_path, 100)
    offsets = append_events(path, *written)
    data = bytearray(path.read_bytes())
    victim = 2000  # deep inside a long run of plain scalar records
    data[offsets[victim] + 20] ^= 0x01
    path.write_bytes(bytes(data))
    del per_record[victim]
    expected = [scalar for scalars in per_record for scalar in scalars]

    events, tail = _read(path)

    # The damaged record alone is dropped, and counted once.
    assert events == expected
    assert tail.bad_records == 1


def test_bulk_path_leaves_a_partial_trailing_record_for_the_next_poll(tmp_path):
    rng = random.Random(5)
    written, expected = _mixed_events(3000, rng)
    path = event_file(tmp_path, 100)
    append_events(path, *written)
    last = record(scalar_event(99, auc=0.5))
    with open(path, "ab") as handle:
        handle.write(last[:10])
    tail = EventFileTail(str(path))

    first = [e[:3] for e in tail.poll()]
    with open(path, "ab") as handle:
        handle.write(last[10:])
    second = [e[:3] for e in tail.poll()]

    # Everything complete first, the last record once it is whole.
    assert first == expected
    assert second == [("auc", 0.5, 99)]


def test_vectorised_crc_matches_crcmod():
    rng = random.Random(11)
    payloads = [
        bytes(rng.getrandbits(8) for _ in range(rng.choice([1, 7, 8, 9, 15, 16, 40, 41])))
        for _ in range(200)
    ]
    buf = b"".join(payloads)
    starts = np.cumsum([0] + [len(p) for p in payloads[:-1]])
    lengths = np.array([len(p) for p in payloads])
    got = _crc32c_columns(buf, starts, lengths).tolist()
    # Same values as the C implementation, record by record.
    assert got == [_crc32c(p) for p in payloads]


def test_a_failure_inside_the_bulk_path_falls_back_to_the_record_loop(tmp_path, monkeypatch):
    written, expected = _mixed_events(2000, random.Random(1))
    path = event_file(tmp_path, 100)
    append_events(path, *written)

    def broken(*args):
        raise MemoryError("numpy could not allocate")

    monkeypatch.setattr(events_module, "_bulk_decode", broken)
    # The bulk path is an optimisation: the record loop still reads everything.
    assert _read(path)[0] == expected


def test_tf2_scalars_written_by_tensorflow_read_the_same_through_both_paths(tmp_path, monkeypatch):
    tf = pytest.importorskip("tensorflow")
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        for step in range(1500):
            tf.summary.scalar("auc", step / 1500, step=step)
            tf.summary.scalar("loss/total", 1 - step / 1500, step=step)
    writer.close()
    (path,) = tmp_path.iterdir()
    assert path.stat().st_size > events_module._BULK_MIN_BYTES  # the bulk path is used
    expected = [
        (tag, _f32(value), step)
        for step in range(1500)
        for tag, value in (("auc", step / 1500), ("loss/total", 1 - step / 1500))
    ]

    bulk, tail = _read(path)
    monkeypatch.setattr(events_module, "_BULK_MIN_BYTES", 1 << 62)  # record loop only
    loop, _ = _read(path)

    # The value sits in the middle of a TF2 event (plugin metadata follows it); both paths agree
    # with what TensorFlow wrote.
    assert bulk == expected
    assert loop == expected
    assert tail.bad_records == 0


def test_tf1_file_writer_simple_values_read_like_tensorflows_own_iterator(tmp_path, monkeypatch):
    tf = pytest.importorskip("tensorflow")
    # What Estimator (and so EasyRec) writes: tf.compat.v1.summary.FileWriter, simple_value,
    # one event per evaluation; here one tag per event so the template and bulk paths apply.
    with tf.Graph().as_default():
        writer = tf.compat.v1.summary.FileWriter(str(tmp_path))
        for step in range(2500):
            tag = ("auc", "loss_play_time")[step % 2]
            value = tf.compat.v1.Summary.Value(tag=tag, simple_value=(step * 7919 % 1000) / 999)
            writer.add_summary(tf.compat.v1.Summary(value=[value]), global_step=step * 1000)
        writer.close()
    (path,) = tmp_path.iterdir()
    expected = [
        (value.tag, value.simple_value, event.step, event.wall_time)
        for event in tf.compat.v1.train.summary_iterator(str(path))
        for value in event.summary.value
    ]
    runs = []
    bulk_decode = events_module._bulk_decode

    def counting(*args):
        result = bulk_decode(*args)
        runs.append(result is not None)
        return result

    monkeypatch.setattr(events_module, "_bulk_decode", counting)

    events = EventFileTail(str(path)).poll()

    # The bulk path really decoded part of the file, and the result (tag, value, step, wall
    # time) is exactly TensorFlow's reading of the same file.
    assert any(runs)
    assert events == expected
