"""Helpers that write event files for the metrics tests, with tensorboard's own framing writer."""

from __future__ import annotations

import io
import time
from pathlib import Path

from tensorboard.compat.proto import event_pb2, summary_pb2, tensor_pb2, tensor_shape_pb2
from tensorboard.summary.writer.record_writer import RecordWriter


def scalar_event(step: int, wall_time: float | None = None, **values: float) -> event_pb2.Event:
    """A TF1-style event: one ``simple_value`` per tag (what Estimator/EasyRec write)."""
    summary = summary_pb2.Summary(
        value=[summary_pb2.Summary.Value(tag=tag, simple_value=v) for tag, v in values.items()]
    )
    return event_pb2.Event(
        wall_time=time.time() if wall_time is None else wall_time, step=step, summary=summary
    )


def tensor_event(step: int, tag: str, tensor: tensor_pb2.TensorProto) -> event_pb2.Event:
    """An event holding one ``tensor`` value (the TF2 encoding)."""
    value = summary_pb2.Summary.Value(tag=tag, tensor=tensor)
    return event_pb2.Event(
        wall_time=time.time(), step=step, summary=summary_pb2.Summary(value=[value])
    )


def scalar_shape() -> tensor_shape_pb2.TensorShapeProto:
    return tensor_shape_pb2.TensorShapeProto()


def version_event() -> event_pb2.Event:
    return event_pb2.Event(wall_time=time.time(), file_version="brain.Event:2")


def record(event: event_pb2.Event) -> bytes:
    """The TFRecord framing of one event, as tensorboard's RecordWriter writes it."""
    buffer = io.BytesIO()
    RecordWriter(buffer).write(event.SerializeToString())
    return buffer.getvalue()


def append_events(path: Path, *events: event_pb2.Event) -> list[int]:
    """Append events to ``path``; return the byte offset where each record starts."""
    offsets = []
    with open(path, "ab") as handle:
        for event in events:
            offsets.append(handle.tell())
            handle.write(record(event))
    return offsets


def event_file(directory: Path, timestamp: int, host: str = "host") -> Path:
    """A path named like TensorFlow names event files, with the creation time in the name."""
    directory.mkdir(parents=True, exist_ok=True)
    return directory / f"events.out.tfevents.{timestamp}.{host}"
