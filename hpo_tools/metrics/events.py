"""Incremental reader for TensorBoard event files (``*.tfevents.*``), without TensorFlow.

An event file is a sequence of TFRecord-framed ``tensorboard.Event`` protos::

    uint64 LE length | uint32 LE masked_crc32c(length) | payload | uint32 LE masked_crc32c(payload)

:class:`EventFileTail` remembers a byte offset per file and on each poll decodes only the complete
records written since the last poll; a partial record at the end of a growing file stays for the
next poll. A record whose masked CRC-32C does not match is skipped and counted, with a warning
naming the file and the offset; after a bad *header* the reader resynchronises on the next position
whose header CRC is valid. :class:`EventDirectoryReader` follows every event file of a directory,
picking up new files (a restarted job writes a new one) in wall-time order, which is the timestamp
in the file name (``events.out.tfevents.<seconds>.<host>...``).

Scalars come from ``simple_value`` (TF1 summaries, Estimator evaluation, EasyRec) and from scalar
``tensor`` values (TF2 ``tf.summary.scalar``: the value is in ``tensor_content``, with
``float_val``/``double_val``/... as fallback). Images, histograms and strings are ignored.

Local paths are read with plain file I/O (seek to the offset, read what is new); remote paths
(``oss://``, ``hdfs://``) go through :mod:`hpo_tools.storage` (``list_dir``, ``size`` and ranged
``read_bytes(path, offset)``).
"""

from __future__ import annotations

import logging
import os
import re
import struct
from dataclasses import dataclass
from typing import Callable

__all__ = [
    "ScalarEvent",
    "EventFileTail",
    "EventDirectoryReader",
    "masked_crc32c",
    "decode_scalars",
    "event_file_sort_key",
    "is_event_file",
    "is_remote",
]

_logger = logging.getLogger(__name__)

_HEADER = struct.Struct("<QI")
_FOOTER = struct.Struct("<I")
_MASK_DELTA = 0xA282EAD8
# A length whose header CRC is valid but that no real event reaches; guards resynchronisation.
_MAX_RECORD = 1 << 31
# Local files are read in chunks so that a first poll over a large file stays bounded in memory.
_CHUNK = 16 << 20
_EVENT_FILE = re.compile(r"tfevents\.(\d+)")


def _load_crc32c() -> Callable[[bytes], int]:
    try:
        import crcmod.predefined

        return crcmod.predefined.mkCrcFun("crc-32c")
    except ImportError:  # pragma: no cover - crcmod is a dependency; the stub is 40x slower
        from tensorboard.compat.tensorflow_stub.pywrap_tensorflow import crc32c

        return crc32c


_crc32c = _load_crc32c()


def masked_crc32c(data: bytes) -> int:
    """Return TFRecord's masked CRC-32C (Castagnoli) of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


@dataclass(frozen=True)
class ScalarEvent:
    """One scalar read from an event file.

    Attributes:
        tag: The summary tag, e.g. ``auc`` or ``loss/total``.
        value: The scalar as a float.
        step: The global step the event was written at.
        wall_time: Seconds since the epoch when the event was written.
    """

    tag: str
    value: float
    step: int
    wall_time: float


def is_remote(path: str) -> bool:
    """True for ``scheme://`` paths other than ``file://`` (they are read through storage)."""
    head, sep, _ = path.partition("://")
    return bool(sep) and head.lower() != "file" and "/" not in head


def _local(path: str) -> str:
    return path[len("file://") :] if path.lower().startswith("file://") else path


def is_event_file(name: str) -> bool:
    """True when a file name looks like a TensorBoard event file (``*tfevents*``)."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    return "tfevents" in base and not base.endswith((".tmp", ".swp"))


def event_file_sort_key(name: str) -> tuple[int, str]:
    """Order event files by the creation timestamp in their name, then by name."""
    base = name.rstrip("/").rsplit("/", 1)[-1]
    match = _EVENT_FILE.search(base)
    return (int(match.group(1)) if match else 0, base)


# --- payload decoding -----------------------------------------------------------------------

# TensorFlow DataType enum value -> (struct format of one element, TensorProto repeated field).
_DTYPES: dict[int, tuple[str, str]] = {
    1: ("<f", "float_val"),  # DT_FLOAT
    2: ("<d", "double_val"),  # DT_DOUBLE
    3: ("<i", "int_val"),  # DT_INT32
    4: ("<B", "int_val"),  # DT_UINT8
    5: ("<h", "int_val"),  # DT_INT16
    6: ("<b", "int_val"),  # DT_INT8
    9: ("<q", "int64_val"),  # DT_INT64
    10: ("<?", "bool_val"),  # DT_BOOL
    17: ("<H", "int_val"),  # DT_UINT16
    19: ("<e", "half_val"),  # DT_HALF (half_val holds the bits as int)
    22: ("<I", "uint32_val"),  # DT_UINT32
    23: ("<Q", "uint64_val"),  # DT_UINT64
}
_DT_BFLOAT16 = 14


def _tensor_scalar(tensor) -> float | None:  # noqa: ANN001 - a tensorboard TensorProto
    """Return the value of a one-element numeric tensor, else None."""
    count = 1
    for dim in tensor.tensor_shape.dim:
        count *= dim.size
    if count != 1:
        return None
    dtype = tensor.dtype
    content = tensor.tensor_content
    if dtype == _DT_BFLOAT16:
        bits = (
            struct.unpack_from("<H", content)[0]
            if len(content) >= 2
            else (tensor.half_val[0] if tensor.half_val else None)
        )
        return None if bits is None else struct.unpack("<f", struct.pack("<I", bits << 16))[0]
    spec = _DTYPES.get(dtype)
    if spec is None:
        return None
    fmt, field = spec
    if content:
        if len(content) < struct.calcsize(fmt):
            return None
        return float(struct.unpack_from(fmt, content)[0])
    values = getattr(tensor, field)
    if not values:
        # Writers that mislabel the repeated field: take any numeric one that is set.
        for other in ("float_val", "double_val", "int_val", "int64_val"):
            values = getattr(tensor, other)
            if values:
                return float(values[0])
        return None
    if dtype == 19:
        return float(struct.unpack("<e", struct.pack("<H", values[0] & 0xFFFF))[0])
    return float(values[0])


_event_class = None


def _event_type():  # noqa: ANN202 - the generated Event class
    global _event_class
    if _event_class is None:
        from tensorboard.compat.proto import event_pb2

        _event_class = event_pb2.Event
    return _event_class


def decode_scalars(payload: bytes) -> tuple[int, float, list[tuple[str, float]]]:
    """Decode one serialized ``Event``; return ``(step, wall_time, [(tag, value), ...])``.

    Raises:
        google.protobuf.message.DecodeError: The payload is not an Event.
    """
    event = _event_type().FromString(payload)
    if not event.HasField("summary"):
        return event.step, event.wall_time, []
    scalars: list[tuple[str, float]] = []
    for value in event.summary.value:
        kind = value.WhichOneof("value")
        if kind == "simple_value":
            scalars.append((value.tag, value.simple_value))
        elif kind == "tensor":
            number = _tensor_scalar(value.tensor)
            if number is not None:
                scalars.append((value.tag, number))
    return event.step, event.wall_time, scalars


# --- one file ---------------------------------------------------------------------------------


class EventFileTail:
    """Follow one event file: :meth:`poll` returns the scalars of the records new since last time.

    Args:
        path: A local path or a remote (``oss://``...) path read through :mod:`hpo_tools.storage`.
        offset: Byte offset to start at (the start of a record); 0 reads the file from the start.

    Attributes:
        offset: Where the next record starts; everything before it has been read.
        bad_records: How many records were skipped for a CRC mismatch or an undecodable payload.
    """

    def __init__(self, path: str, offset: int = 0) -> None:
        self.path = path
        self.offset = offset
        self.bad_records = 0
        self._resyncing = False
        self._remote = is_remote(path)
        self._header_crcs: dict[int, int] = {}
        self._pending = 0

    def poll(self) -> list[ScalarEvent]:
        """Read the complete records written since the last poll; never raises for bad data.

        Raises:
            StorageError: A remote file could not be listed or read.
        """
        if self._remote:
            return self._poll_remote()
        return self._poll_local()

    @property
    def pending_bytes(self) -> int:
        """Bytes after :attr:`offset` that did not form a complete record at the last poll."""
        return self._pending

    def _check_size(self, size: int) -> None:
        if size < self.offset:
            _logger.warning(
                "event file %s shrank from %d to %d bytes (rewritten?); reading it from the start",
                self.path,
                self.offset,
                size,
            )
            self.offset = 0
            self._resyncing = False

    def _poll_local(self) -> list[ScalarEvent]:
        path = _local(self.path)
        try:
            with open(path, "rb") as handle:
                size = os.fstat(handle.fileno()).st_size
                self._check_size(size)
                if size == self.offset:
                    self._pending = 0
                    return []
                handle.seek(self.offset)
                events: list[ScalarEvent] = []
                buffer = b""
                while True:
                    chunk = handle.read(_CHUNK)
                    if not chunk:
                        break
                    buffer = buffer + chunk if buffer else chunk
                    consumed = self._scan(buffer, events)
                    buffer = buffer[consumed:]
                self._pending = len(buffer)
                return events
        except FileNotFoundError:
            return []
        except OSError as err:
            _logger.warning("cannot read event file %s: %s; will retry", path, err)
            return []

    def _poll_remote(self) -> list[ScalarEvent]:
        from hpo_tools import storage

        size = storage.size(self.path)
        self._check_size(size)
        if size == self.offset:
            self._pending = 0
            return []
        data = storage.read_bytes(self.path, self.offset)
        events: list[ScalarEvent] = []
        consumed = self._scan(data, events)
        self._pending = len(data) - consumed
        return events

    def _scan(self, buf: bytes, events: list[ScalarEvent]) -> int:
        """Decode the complete records in ``buf`` (which starts at :attr:`offset`) into ``events``.

        Returns the number of bytes consumed and advances :attr:`offset` by it.
        """
        unpack_header = _HEADER.unpack_from
        unpack_footer = _FOOTER.unpack_from
        header_crcs = self._header_crcs
        view = memoryview(buf)
        end = len(buf)
        pos = 0
        base = self.offset
        append = events.append
        while pos + 12 <= end:
            length, header_crc = unpack_header(buf, pos)
            if header_crcs.get(length) != header_crc:
                if length < _MAX_RECORD and masked_crc32c(view[pos : pos + 8]) == header_crc:
                    header_crcs[length] = header_crc
                else:
                    if not self._resyncing:
                        self.bad_records += 1
                        self._resyncing = True
                        _logger.warning(
                            "event file %s: bad record header CRC at offset %d; "
                            "skipping to the next valid record",
                            self.path,
                            base + pos,
                        )
                    pos += 1
                    continue
            if self._resyncing:
                self._resyncing = False
                _logger.warning("event file %s: resynchronised at offset %d", self.path, base + pos)
            stop = pos + 12 + length
            if stop + 4 > end:
                break  # partial record: wait for the writer
            crc = _crc32c(view[pos + 12 : stop])
            if (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF != unpack_footer(buf, stop)[
                0
            ]:
                self.bad_records += 1
                _logger.warning(
                    "event file %s: record at offset %d has a bad data CRC; skipped",
                    self.path,
                    base + pos,
                )
                pos = stop + 4
                continue
            try:
                step, wall_time, scalars = decode_scalars(view[pos + 12 : stop])
            except Exception as err:  # noqa: BLE001 - any decode failure is corrupt data
                self.bad_records += 1
                _logger.warning(
                    "event file %s: record at offset %d is not an Event (%s); skipped",
                    self.path,
                    base + pos,
                    err,
                )
            else:
                for tag, value in scalars:
                    append(ScalarEvent(tag, value, step, wall_time))
            pos = stop + 4
        # While resynchronising, `pos` stops at the first position whose 12-byte header is not
        # complete yet: the next poll examines it.
        self.offset = base + pos
        return pos


# --- a directory --------------------------------------------------------------------------------


class EventDirectoryReader:
    """Follow every event file in a directory (not recursive), oldest file first.

    A directory that does not exist (yet) reads as empty. A single event file may be given instead
    of a directory; then only that file is followed.

    Args:
        directory: A local directory, or a remote one (``oss://bucket/model_dir/eval_val/``).
        offsets: ``{file name: offset}`` to resume from, as returned by :meth:`offsets`.
    """

    def __init__(self, directory: str, offsets: dict[str, int] | None = None) -> None:
        self.directory = directory
        self._remote = is_remote(directory)
        self._tails: dict[str, EventFileTail] = {}
        self._start_offsets = dict(offsets or {})
        self.found = False

    @property
    def bad_records(self) -> int:
        """Records skipped so far over all files."""
        return sum(tail.bad_records for tail in self._tails.values())

    def offsets(self) -> dict[str, int]:
        """``{file name: byte offset}`` of every file followed so far."""
        return {name: tail.offset for name, tail in self._tails.items()}

    def files(self) -> list[str]:
        """Paths of the event files followed so far, in reading order."""
        return [self._tails[name].path for name in self._ordered_names()]

    def _ordered_names(self) -> list[str]:
        return sorted(self._tails, key=event_file_sort_key)

    def _list(self) -> list[str]:
        if self._remote:
            from hpo_tools import storage

            return [p for p in storage.list_dir(self.directory) if is_event_file(p)]
        path = _local(self.directory)
        try:
            with os.scandir(path) as entries:
                return [
                    os.path.join(path, entry.name)
                    for entry in entries
                    if is_event_file(entry.name) and entry.is_file()
                ]
        except NotADirectoryError:
            return [path] if os.path.isfile(path) else []
        except FileNotFoundError:
            return []

    def poll(self) -> list[ScalarEvent]:
        """Scalars of the records written since the last poll, file by file in wall-time order.

        Raises:
            StorageError: A remote directory or file could not be read.
        """
        paths = self._list()
        if paths:
            self.found = True
        for path in paths:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name not in self._tails:
                offset = self._start_offsets.pop(name, 0)
                self._tails[name] = EventFileTail(path, offset)
                _logger.info("following event file %s", path)
        events: list[ScalarEvent] = []
        for name in self._ordered_names():
            events.extend(self._tails[name].poll())
        return events
