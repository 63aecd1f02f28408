"""The incremental event reader: framing, CRCs, partial records, new files, value encodings."""

from __future__ import annotations

import logging
import struct
import subprocess
import sys
from pathlib import Path

import pytest
from tensorboard.compat.proto import tensor_pb2, types_pb2

from hpo_tools.metrics.events import (
    BAD_RECORD_WARNINGS,
    EventDirectoryReader,
    EventFileTail,
    decode_scalars,
    event_file_sort_key,
    masked_crc32c,
)
from tests.metrics.eventlib import (
    append_events,
    event_file,
    record,
    scalar_event,
    scalar_shape,
    tensor_event,
    version_event,
)


def _triples(events):
    return [(tag, round(value, 6), step) for tag, value, step, _ in events]


def test_reads_simple_values_written_by_tensorboards_event_file_writer(tmp_path):
    from tensorboard.summary.writer.event_file_writer import EventFileWriter

    writer = EventFileWriter(str(tmp_path))
    first = scalar_event(100, auc=0.75, loss=0.5)
    # Estimator also writes the checkpoint path as a string tensor in its eval event.
    checkpoint = tensor_pb2.TensorProto(dtype=types_pb2.DT_STRING, string_val=[b"model.ckpt-100"])
    first.summary.value.add(tag="checkpoint_path", tensor=checkpoint)
    writer.add_event(first)
    writer.add_event(scalar_event(200, auc=0.8, loss=0.25))
    writer.close()

    events = EventDirectoryReader(str(tmp_path)).poll()

    # Both steps with both tags, in file order; the file_version record and the string yield
    # nothing.
    assert _triples(events) == [
        ("auc", 0.75, 100),
        ("loss", 0.5, 100),
        ("auc", 0.8, 200),
        ("loss", 0.25, 200),
    ]


def test_reads_tf2_scalar_tensors_from_tf_summary_scalar(tmp_path):
    tf = pytest.importorskip("tensorflow")
    writer = tf.summary.create_file_writer(str(tmp_path))
    with writer.as_default():
        tf.summary.scalar("auc", 0.5, step=0)
        tf.summary.scalar("auc", 0.625, step=7)
        tf.summary.text("note", "not a scalar", step=7)
    writer.close()

    events = EventDirectoryReader(str(tmp_path)).poll()

    # TF2 stores the value in tensor_content; the string tensor is not a scalar metric.
    assert _triples(events) == [("auc", 0.5, 0), ("auc", 0.625, 7)]


@pytest.mark.parametrize(
    ("dtype", "field", "value"),
    [
        (types_pb2.DT_FLOAT, "float_val", 0.25),
        (types_pb2.DT_DOUBLE, "double_val", 0.125),
        (types_pb2.DT_INT64, "int64_val", 42),
        (types_pb2.DT_INT32, "int_val", -3),
    ],
)
def test_scalar_tensor_without_tensor_content_falls_back_to_typed_values(dtype, field, value):
    tensor = tensor_pb2.TensorProto(dtype=dtype, tensor_shape=scalar_shape())
    getattr(tensor, field).append(value)
    payload = tensor_event(5, "m", tensor).SerializeToString()

    step, _, scalars = decode_scalars(payload)

    # Writers other than TF2 put the value in the typed repeated field instead.
    assert (step, scalars) == (5, [("m", float(value))])


def test_double_tensor_content_is_decoded(tmp_path):
    tensor = tensor_pb2.TensorProto(
        dtype=types_pb2.DT_DOUBLE,
        tensor_shape=scalar_shape(),
        tensor_content=struct.pack("<d", 0.1),
    )
    _, _, scalars = decode_scalars(tensor_event(1, "m", tensor).SerializeToString())
    # Full double precision survives (no float32 round trip).
    assert scalars == [("m", 0.1)]


def test_tensor_with_several_elements_is_not_a_scalar():
    tensor = tensor_pb2.TensorProto(dtype=types_pb2.DT_FLOAT, float_val=[1.0, 2.0])
    tensor.tensor_shape.dim.add(size=2)
    _, _, scalars = decode_scalars(tensor_event(1, "hist", tensor).SerializeToString())
    # A vector is not a metric value.
    assert scalars == []


def test_poll_returns_only_records_appended_since_the_last_poll(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, version_event(), scalar_event(1, auc=0.1))
    tail = EventFileTail(str(path))
    assert _triples(tail.poll()) == [("auc", 0.1, 1)]

    append_events(path, scalar_event(2, auc=0.2))

    # Only the new record: the old one is behind the remembered offset.
    assert _triples(tail.poll()) == [("auc", 0.2, 2)]
    assert tail.offset == path.stat().st_size
    # Nothing new, nothing returned.
    assert tail.poll() == []


def test_partial_trailing_record_waits_for_the_next_poll(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, scalar_event(1, auc=0.1))
    last = record(scalar_event(2, auc=0.2))
    with open(path, "ab") as handle:
        handle.write(last[:-7])  # the writer is in the middle of the record
    tail = EventFileTail(str(path))

    first = tail.poll()

    # The complete record is read, the partial one is left for later without any error.
    assert _triples(first) == [("auc", 0.1, 1)]
    assert tail.bad_records == 0
    assert tail.pending_bytes == len(last) - 7
    with open(path, "ab") as handle:
        handle.write(last[-7:])
    # Once the writer finishes the record, it is read whole.
    assert _triples(tail.poll()) == [("auc", 0.2, 2)]


@pytest.mark.parametrize("cut", [1, 8, 11, 12, 20])
def test_record_cut_anywhere_in_header_or_payload_is_not_an_error(tmp_path, cut):
    path = event_file(tmp_path, 100)
    data = record(scalar_event(3, auc=0.3))
    path.write_bytes(data[:cut])
    tail = EventFileTail(str(path))
    # Nothing complete yet: no events, no bad record, offset stays at the record start.
    assert (tail.poll(), tail.bad_records, tail.offset) == ([], 0, 0)
    with open(path, "ab") as handle:
        handle.write(data[cut:])
    assert _triples(tail.poll()) == [("auc", 0.3, 3)]


def test_bad_data_crc_skips_the_record_counts_it_and_warns_with_file_and_offset(tmp_path, caplog):
    path = event_file(tmp_path, 100)
    offsets = append_events(
        path, scalar_event(1, auc=0.1), scalar_event(2, auc=0.2), scalar_event(3, auc=0.3)
    )
    data = bytearray(path.read_bytes())
    data[offsets[1] + 14] ^= 0xFF  # flip a payload byte of the second record
    path.write_bytes(bytes(data))
    tail = EventFileTail(str(path))

    with caplog.at_level(logging.WARNING, logger="hpo_tools.metrics.events"):
        events = tail.poll()

    # The damaged record is skipped; its neighbours are read.
    assert _triples(events) == [("auc", 0.1, 1), ("auc", 0.3, 3)]
    assert tail.bad_records == 1
    # The warning says which file and where, so a user can inspect it.
    assert f"{path}" in caplog.text and f"offset {offsets[1]}" in caplog.text


def test_a_badly_damaged_file_warns_a_few_times_then_only_counts(tmp_path, caplog):
    # Twenty damaged records must not put twenty warnings in the trial's log: the first
    # BAD_RECORD_WARNINGS name their offsets, one line says the rest are only counted.
    path = event_file(tmp_path, 100)
    offsets = append_events(path, *(scalar_event(step, auc=step / 100) for step in range(1, 41)))
    data = bytearray(path.read_bytes())
    for offset in offsets[1::2]:
        data[offset + 14] ^= 0xFF
    path.write_bytes(bytes(data))
    tail = EventFileTail(str(path))

    with caplog.at_level(logging.WARNING, logger="hpo_tools.metrics.events"):
        events = tail.poll()

    assert [step for _, _, step in _triples(events)] == list(range(1, 41, 2))
    assert tail.bad_records == 20
    warned = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warned) == BAD_RECORD_WARNINGS + 1, warned
    assert all(f"offset {offsets[i]}" in warned[n] for n, i in enumerate((1, 3, 5)))
    assert "no longer logged" in warned[-1] and str(path) in warned[-1]
    assert "2 corrupt records" not in tail.damage() and "20 corrupt records" in tail.damage()


def test_bad_header_crc_resynchronises_on_the_next_valid_record(tmp_path, caplog):
    path = event_file(tmp_path, 100)
    offsets = append_events(
        path, scalar_event(1, auc=0.1), scalar_event(2, auc=0.2), scalar_event(3, auc=0.3)
    )
    data = bytearray(path.read_bytes())
    data[offsets[1]] ^= 0x40  # corrupt the length: the header CRC no longer matches
    path.write_bytes(bytes(data))
    tail = EventFileTail(str(path))

    with caplog.at_level(logging.WARNING):
        events = tail.poll()

    # The length cannot be trusted, so the reader scans to the next valid header (record 3).
    assert _triples(events) == [("auc", 0.1, 1), ("auc", 0.3, 3)]
    assert tail.bad_records == 1
    assert f"offset {offsets[1]}" in caplog.text


def test_garbage_between_records_is_skipped_once_and_reading_continues(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, scalar_event(1, auc=0.1))
    with open(path, "ab") as handle:
        handle.write(b"\x07" * 37)
    tail = EventFileTail(str(path))
    assert _triples(tail.poll()) == [("auc", 0.1, 1)]

    append_events(path, scalar_event(2, auc=0.2))

    # The garbage counts once even though it spans two polls; the next record is found.
    assert _triples(tail.poll()) == [("auc", 0.2, 2)]
    assert tail.bad_records == 1


def test_payload_with_valid_crc_that_is_not_an_event_is_skipped(tmp_path):
    path = event_file(tmp_path, 100)
    junk = b"\xff\xff\xff"
    with open(path, "wb") as handle:
        handle.write(struct.pack("<Q", len(junk)))
        handle.write(struct.pack("<I", masked_crc32c(struct.pack("<Q", len(junk)))))
        handle.write(junk + struct.pack("<I", masked_crc32c(junk)))
    append_events(path, scalar_event(2, auc=0.2))
    tail = EventFileTail(str(path))
    # Undecodable payloads are corrupt data, not a crash.
    assert _triples(tail.poll()) == [("auc", 0.2, 2)]
    assert tail.bad_records == 1


def test_new_files_are_read_in_wall_time_order_of_their_names(tmp_path):
    reader = EventDirectoryReader(str(tmp_path))
    append_events(event_file(tmp_path, 2000, "b"), scalar_event(20, auc=0.2))
    assert _triples(reader.poll()) == [("auc", 0.2, 20)]

    # A restarted job writes a new file; an older-named file found together sorts first.
    append_events(event_file(tmp_path, 3000, "a"), scalar_event(40, auc=0.4))
    append_events(event_file(tmp_path, 2500, "z"), scalar_event(30, auc=0.3))

    assert _triples(reader.poll()) == [("auc", 0.3, 30), ("auc", 0.4, 40)]


def test_sort_key_orders_by_timestamp_not_by_name():
    names = ["events.out.tfevents.100.z", "events.out.tfevents.99.a", "events.out.tfevents.100.a"]
    # 99 < 100 numerically even though "99" > "100" as text.
    assert sorted(names, key=event_file_sort_key) == [
        "events.out.tfevents.99.a",
        "events.out.tfevents.100.a",
        "events.out.tfevents.100.z",
    ]


def test_missing_directory_reads_as_empty_until_it_appears(tmp_path):
    directory = tmp_path / "eval_val"
    reader = EventDirectoryReader(str(directory))
    # Jobs create their eval directory late: not an error.
    assert reader.poll() == []
    assert reader.found is False
    append_events(event_file(directory, 100), scalar_event(1, auc=0.5))
    assert _triples(reader.poll()) == [("auc", 0.5, 1)]
    assert reader.found is True


def test_other_files_in_the_directory_are_ignored(tmp_path):
    (tmp_path / "checkpoint").write_text("model_checkpoint_path: x")
    (tmp_path / "graph.pbtxt").write_bytes(b"\x00" * 64)
    append_events(event_file(tmp_path, 100), scalar_event(1, auc=0.5))
    reader = EventDirectoryReader(str(tmp_path))
    # Only *tfevents* files are parsed, so no bad records from the others.
    assert _triples(reader.poll()) == [("auc", 0.5, 1)]
    assert reader.bad_records == 0


def test_a_single_event_file_can_be_followed_directly(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, scalar_event(1, auc=0.5))
    assert _triples(EventDirectoryReader(str(path)).poll()) == [("auc", 0.5, 1)]


def test_offsets_resume_a_new_reader_where_the_old_one_stopped(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, scalar_event(1, auc=0.1))
    old = EventDirectoryReader(str(tmp_path))
    old.poll()
    append_events(path, scalar_event(2, auc=0.2))

    new = EventDirectoryReader(str(tmp_path), offsets=old.offsets())

    # The resumed reader starts after what the old one read.
    assert _triples(new.poll()) == [("auc", 0.2, 2)]


def test_file_that_shrinks_is_read_again_from_the_start(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, scalar_event(1, auc=0.1), scalar_event(2, auc=0.2))
    tail = EventFileTail(str(path))
    tail.poll()
    path.write_bytes(record(scalar_event(1, auc=0.9)))
    # A rewritten (shorter) file is re-read rather than silently ignored.
    assert _triples(tail.poll()) == [("auc", 0.9, 1)]


def test_metrics_package_does_not_import_tensorflow():
    code = (
        "import sys, hpo_tools.metrics, hpo_tools.metrics.events as e\n"
        "e.decode_scalars(b'')\n"
        "print('tensorflow' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, timeout=60
    )
    # The trial runner must stay light: TensorFlow takes seconds to import.
    assert out.stdout.strip() == "False"


def test_file_path_is_reported_relative_to_directory(tmp_path):
    path = event_file(tmp_path, 100)
    append_events(path, scalar_event(1, auc=0.1))
    reader = EventDirectoryReader(str(tmp_path))
    reader.poll()
    # files() lists what is followed, for messages and state.
    assert reader.files() == [str(Path(tmp_path) / path.name)]


@pytest.mark.parametrize("payload", [b"", b"\x09", b"\x09" + b"\x00" * 8 + b"\x10\xff"])
def test_tiny_valid_record_at_the_end_of_the_file_is_not_a_crash(tmp_path, payload):
    path = event_file(tmp_path, 100)
    append_events(path, scalar_event(1, auc=0.1))
    header = struct.pack("<Q", len(payload))
    with open(path, "ab") as handle:
        handle.write(header + struct.pack("<I", masked_crc32c(header)))
        handle.write(payload + struct.pack("<I", masked_crc32c(payload)))
    tail = EventFileTail(str(path))
    # Short payloads (an empty Event is valid; a cut-off field is not) never read past the end.
    assert _triples(tail.poll()) == [("auc", 0.1, 1)]
    assert tail.offset == path.stat().st_size
