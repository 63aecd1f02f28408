"""Incremental reader for TensorBoard event files (``*.tfevents.*``), without TensorFlow.

An event file is a sequence of TFRecord-framed ``tensorboard.Event`` protos::

    uint64 LE length | uint32 LE masked_crc32c(length) | payload | uint32 LE masked_crc32c(payload)

:class:`EventFileTail` remembers a byte offset per file and on each poll decodes only the complete
records written since the last poll; a partial record at the end of a growing file stays for the
next poll. A record whose masked CRC-32C does not match is skipped and counted, with a warning
naming the file and the offset (the first :data:`BAD_RECORD_WARNINGS` of a file; later ones are
only counted); after a bad *header* the reader resynchronises on the next position
whose header CRC is valid. :class:`EventDirectoryReader` follows every event file of a directory,
picking up new files (a restarted job writes a new one) in wall-time order, which is the timestamp
in the file name (``events.out.tfevents.<seconds>.<host>...``).

Scalars come from ``simple_value`` (TF1 summaries, Estimator evaluation, EasyRec) and from scalar
``tensor`` values (TF2 ``tf.summary.scalar``: the value is in ``tensor_content``, with
``float_val``/``double_val``/... as fallback). Images, histograms and strings are ignored.
Events holding one float scalar are decoded from a per-tag template instead of protobuf, and long
runs of records (the first read of a big file) in bulk with numpy; see :class:`_Template` and
:func:`_bulk_decode`. Every path gives the same scalars.

Local paths are read with plain file I/O (seek to the offset, read what is new); remote paths
(``oss://``, ``hdfs://``) go through :mod:`hpo_tools.storage` (``list_dir`` and the ranged
``read_bytes(path, offset)``, one GET per file per poll).
"""

from __future__ import annotations

import logging
import os
import re
import struct
from typing import Callable, NamedTuple, Tuple

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
BAD_RECORD_WARNINGS = 3
"""Damaged records of one file logged as warnings; later ones are only counted."""
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


def _crc_parts() -> tuple[Callable[[bytes, int, object], int], object]:
    """``(fun, table)`` with ``fun(data, 0xFFFFFFFF, table) ^ 0xFFFFFFFF == crc32c(data)``.

    That is crcmod's C routine without its Python wrapper: one frame less per record. Falls back
    to the wrapper when crcmod's internals are not what they were when this was written.
    """
    defaults = getattr(_crc32c, "__defaults__", None) or ()
    if len(defaults) == 3 and callable(defaults[2]):
        _, table, fun = defaults
        try:
            if all(
                fun(probe, 0xFFFFFFFF, table) ^ 0xFFFFFFFF == _crc32c(probe)
                for probe in (b"123456789", b"", b"\x00" * 33)
            ):
                return fun, table
        except Exception:  # noqa: BLE001 - any surprise: use the public function
            pass
    return (lambda data, _init, _table: _crc32c(data) ^ 0xFFFFFFFF), None


_CRC_FUN, _CRC_TABLE = _crc_parts()


def masked_crc32c(data: bytes) -> int:
    """Return TFRecord's masked CRC-32C (Castagnoli) of ``data``."""
    crc = _crc32c(data)
    return (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF


# One scalar read from an event file: ``(tag, value, step, wall_time)``. A plain tuple, not a
# NamedTuple: building 100,000 named tuples costs as much as the rest of a full read.
ScalarEvent = Tuple[str, float, int, float]


def _store(store: object | None) -> object:
    """The given storage object, else the :mod:`hpo_tools.storage` module (imported on use)."""
    if store is not None:
        return store
    from hpo_tools import storage

    return storage


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


# The common events, one float32 scalar each, are decoded without protobuf. Their payload is
# ``09 <wall_time f64> [10 <step varint>] <body>``, and the body (the summary) is the same bytes
# for every event of a tag except the 4 bytes of the value: at the end for ``simple_value``
# (``2a .. 0a .. 0a <tag> 15 <f32>``), in the middle for a TF2 scalar tensor (``... 22 04 <f32>``
# then the plugin metadata). Such a *template* (prefix, suffix, tag) is learned from the first
# record of a tag, decoded with protobuf, and checked by decoding the same bytes with another
# value put in the hole; later records whose body matches a template are decoded with two
# unpacks. Anything else goes through protobuf.
_F64 = struct.Struct("<d").unpack_from
_F32 = struct.Struct("<f").unpack_from
_PROBE = struct.pack("<f", -1234.5)
_MAX_TEMPLATES = 4096


class _Template(NamedTuple):
    prefix: bytes  # body bytes before the value
    suffix: bytes  # body bytes after the value
    tag: str


def _shape_start(buf: bytes, start: int, stop: int) -> tuple[int, int]:
    """``(step, index after the step field)`` of the payload ``buf[start:stop]`` in the fast layout.

    Returns ``(-1, -1)`` when the payload does not start with wall_time then an optional step.
    """
    if stop - start < 15 or buf[start] != 0x09:
        return -1, -1
    k = start + 9
    if buf[k] != 0x10:
        return 0, k  # step 0 is not written (proto3 default)
    step = 0
    shift = 0
    k += 1
    while shift < 63 and k < stop:
        byte = buf[k]
        k += 1
        step |= (byte & 0x7F) << shift
        if byte < 0x80:
            return (step, k) if step < (1 << 63) else (-1, -1)
        shift += 7
    return -1, -1


# Bulk path, for long runs of records (a first read of a big file): a light Python loop finds the
# record boundaries from the lengths, then numpy checks every header and data CRC, recognises the
# simple-value layout of a known shape, and decodes steps, values and wall times for the whole run
# at once. The run ends before the first record it cannot vouch for (a bad CRC, another kind of
# record); the record loop takes over there and reports it.
_LEARN_RECORDS = 64
_STEP_OVER_RECORDS = 8
_BULK_MIN_BYTES = 32 << 10
_BULK_WINDOW = 8 << 20
_BULK_MIN_RUN = 16
_LENGTH = struct.Struct("<Q").unpack_from


_crc_tables = None


def _crc32c_tables():  # noqa: ANN202 - a numpy array
    """The eight 256-entry tables of slicing-by-8 CRC-32C (reflected, polynomial 0x82F63B78)."""
    global _crc_tables
    if _crc_tables is None:
        import numpy as np

        first = []
        for byte in range(256):
            crc = byte
            for _ in range(8):
                crc = (crc >> 1) ^ 0x82F63B78 if crc & 1 else crc >> 1
            first.append(crc)
        tables = [first]
        for _ in range(7):
            previous = tables[-1]
            tables.append([(value >> 8) ^ first[value & 0xFF] for value in previous])
        _crc_tables = np.array(tables, np.uint32)
    return _crc_tables


def _unaligned(buf: bytes, dtype: str):  # noqa: ANN202 - a numpy array
    """A view of ``buf`` holding the ``dtype`` value that starts at every byte offset."""
    import numpy as np

    size = np.dtype(dtype).itemsize
    return np.ndarray((len(buf) - size + 1,), dtype, buffer=buf, strides=(1,))


def _crc32c_columns(buf: bytes, payload, lengths):  # noqa: ANN001, ANN202 - numpy arrays
    """CRC-32C of every ``buf[payload[i]:payload[i] + lengths[i]]``, vectorised across records.

    Records of one length are processed together, eight bytes at a time (slicing-by-8); the
    values are crcmod's (checked in the tests).
    """
    import numpy as np

    t0, t1, t2, t3, t4, t5, t6, t7 = _crc32c_tables()
    u8 = np.frombuffer(buf, np.uint8)
    words = _unaligned(buf, "<u8")
    shift = np.uint64(32)
    out = np.empty(len(payload), np.uint32)
    for length in np.unique(lengths).tolist():
        index = np.flatnonzero(lengths == length)
        start = payload[index]
        crc = np.full(len(index), 0xFFFFFFFF, np.uint32)
        whole = length - length % 8
        for offset in range(0, whole, 8):
            word = words[start + offset]
            low = word.astype(np.uint32) ^ crc
            high = (word >> shift).astype(np.uint32)
            crc = (
                t7[low & 0xFF]
                ^ t6[(low >> 8) & 0xFF]
                ^ t5[(low >> 16) & 0xFF]
                ^ t4[low >> 24]
                ^ t3[high & 0xFF]
                ^ t2[(high >> 8) & 0xFF]
                ^ t1[(high >> 16) & 0xFF]
                ^ t0[high >> 24]
            )
        for offset in range(whole, length):
            crc = t0[(crc ^ u8[start + offset]) & 0xFF] ^ (crc >> 8)
        out[index] = crc ^ np.uint32(0xFFFFFFFF)
    return out


def _words_equal(words, positions, expected: bytes, from_end: bool):  # noqa: ANN001, ANN202
    """Which ``buf[p:p + len(expected)] == expected``, 8 bytes at a time.

    ``from_end`` reads words ending at the end of ``expected`` (for bytes that may be the last of
    the buffer but have at least 8 bytes of the record before them); otherwise words starting at
    its start (for bytes followed by at least 8 more bytes of the record).
    """
    import numpy as np

    match = np.ones(len(positions), bool)
    size = len(expected)
    for offset in range(0, size, 8):
        chunk = expected[offset : offset + 8]
        if from_end:
            stop = size - offset
            chunk = expected[max(0, stop - 8) : stop]
            word = words[positions + stop - 8]
            if len(chunk) < 8:
                word = word >> np.uint64(8 * (8 - len(chunk)))
        else:
            word = words[positions + offset]
            if len(chunk) < 8:
                word = word & np.uint64((1 << (8 * len(chunk))) - 1)
        match &= word == np.uint64(int.from_bytes(chunk, "little"))
    return match


def _bulk_decode(
    buf: bytes, pos: int, end: int, templates: dict[int, list[_Template]]
) -> tuple[list[ScalarEvent], int] | None:
    """Decode the run of records matching a template from ``pos``; None when it is short."""
    import numpy as np

    starts: list[int] = []
    add = starts.append
    unpack_length = _LENGTH
    limit = end - 16
    while pos <= limit:
        length = unpack_length(buf, pos)[0]
        after = pos + 16 + length
        if after > end or length < 15:
            break
        add(pos)
        pos = after
    if len(starts) < _BULK_MIN_RUN:
        return None
    u8 = np.frombuffer(buf, np.uint8)
    u32 = _unaligned(buf, "<u4")
    words = _unaligned(buf, "<u8")
    record = np.array(starts, np.int64)
    lengths = np.diff(np.append(record, pos)) - 16
    payload = record + 12
    footer = payload + lengths

    # Header CRCs: few distinct lengths, each checked once.
    keys = (lengths.astype(np.uint64) << np.uint64(32)) | u32[record + 8].astype(np.uint64)
    bad = np.zeros(len(starts), bool)
    for key in np.unique(keys).tolist():
        if masked_crc32c(struct.pack("<Q", key >> 32)) != key & 0xFFFFFFFF:
            bad |= keys == key
    crcs = _crc32c_columns(buf, payload, lengths).astype(np.uint64)
    masked = (((crcs >> np.uint64(15)) | (crcs << np.uint64(17))) + np.uint64(_MASK_DELTA)) & (
        np.uint64(0xFFFFFFFF)
    )
    bad |= masked != u32[footer]
    # Layout: 09 <f64> [10 <varint>] <shape> <f32>.
    has_step = u8[payload + 9] == 0x10
    ok = (u8[payload] == 0x09) & (has_step | (u8[payload + 9] == 0x2A))
    steps = np.zeros(len(starts), np.uint64)
    size = np.zeros(len(starts), np.int64)
    going = has_step.copy()
    for byte_number in range(9):
        if not going.any():
            break
        byte = u8[np.minimum(payload + 10 + byte_number, footer - 1)]
        steps |= np.where(going, (byte & 0x7F).astype(np.uint64), 0) << np.uint64(7 * byte_number)
        size += going
        going &= byte >= 0x80
    ok &= ~going
    body = payload + np.where(has_step, 10 + size, 9)
    body_length = footer - body
    tag_index = np.full(len(starts), -1, np.int64)
    value_at = np.zeros(len(starts), np.int64)
    tags: list[str] = []
    for length, candidates_of_length in templates.items():
        candidates = np.flatnonzero(ok & (body_length == length))
        for template in candidates_of_length:
            if not len(candidates):
                break
            hole = len(template.prefix)
            match = _words_equal(words, body[candidates], template.prefix, from_end=False)
            if template.suffix:
                match &= _words_equal(
                    words, body[candidates] + hole + 4, template.suffix, from_end=True
                )
            tag_index[candidates[match]] = len(tags)
            value_at[candidates[match]] = body[candidates[match]] + hole
            tags.append(template.tag)
            candidates = candidates[~match]
    stop = np.flatnonzero(bad | (tag_index < 0))
    run = int(stop[0]) if len(stop) else len(starts)
    if run < _BULK_MIN_RUN:
        return None
    names = np.array(tags, dtype=object)[tag_index[:run]].tolist()
    values = _unaligned(buf, "<f4")[value_at[:run]].astype(np.float64).tolist()
    walls = _unaligned(buf, "<f8")[payload[:run] + 1].tolist()
    events = list(zip(names, values, steps[:run].astype(np.int64).tolist(), walls))
    return events, int(footer[run - 1]) + 4


# --- one file ---------------------------------------------------------------------------------


class EventFileTail:
    """Follow one event file: :meth:`poll` returns the scalars of the records new since last time.

    Args:
        path: A local path or a remote (``oss://``...) path read through :mod:`hpo_tools.storage`.
        offset: Byte offset to start at (the start of a record); 0 reads the file from the start.
        store: For remote paths, an object with ``read_bytes(path, offset)`` such as
            :class:`hpo_tools.storage.Storage`; default the :mod:`hpo_tools.storage` functions.

    Attributes:
        offset: Where the next record starts; everything before it has been read.
        bad_records: How many records were skipped for a CRC mismatch or an undecodable payload.
    """

    def __init__(self, path: str, offset: int = 0, *, store: object | None = None) -> None:
        self.path = path
        self._store = store
        self.offset = offset
        self.bad_records = 0
        self._quieted = False  # _log_bad stopped warning
        self._resyncing = False
        self._remote = is_remote(path)
        self._header_crcs: dict[int, int] = {}
        # body length -> templates of that length (see _Template); (length, tag) not learnable
        self._templates: dict[int, list[_Template]] = {}
        self._template_count = 0
        self._unlearnable: set[tuple[int, str]] = set()
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

    def damage(self) -> str | None:
        """What was wrong with the file so far, in one line naming it; None when nothing was.

        That is the records skipped (:attr:`bad_records`) and the bytes after the last
        complete record at the last poll (:attr:`pending_bytes`). While the job still writes,
        those bytes are normal (a record being written); once it is over, they are a truncated
        record: ask after a last poll, e.g. ``path: 2 corrupt records skipped; a truncated
        record of 37 bytes at the end``.
        """
        parts = []
        if self.bad_records:
            plural = "s" if self.bad_records != 1 else ""
            parts.append(f"{self.bad_records} corrupt record{plural} skipped")
        if self._pending:
            parts.append(f"a truncated record of {self._pending} bytes at the end")
        return f"{self.path}: {'; '.join(parts)}" if parts else None

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
        # One ranged GET from the offset: b"" when nothing is new. (An object that shrank, which
        # OSS writers do not do, is not detected remotely.)
        data = _store(self._store).read_bytes(self.path, self.offset)  # type: ignore[attr-defined]
        if not data:
            self._pending = 0
            return []
        events: list[ScalarEvent] = []
        consumed = self._scan(data, events)
        self._pending = len(data) - consumed
        return events

    def _learn_template(
        self, buf: bytes, start: int, k: int, stop: int, step: int, tag: str, value: float
    ) -> None:
        """Learn the template of a one-scalar record just decoded with protobuf (see _Template)."""
        body = bytes(buf[k:stop])
        key = (len(body), tag)
        if key in self._unlearnable or self._template_count >= _MAX_TEMPLATES:
            return
        packed = struct.pack("<f", value)
        hole = body.rfind(packed)
        while hole >= 0:
            probe = bytes(buf[start:k]) + body[:hole] + _PROBE + body[hole + 4 :]
            try:
                decoded = decode_scalars(probe)
            except Exception:  # noqa: BLE001 - not the hole
                decoded = None
            if decoded is not None and decoded[0] == step and decoded[2] == [(tag, -1234.5)]:
                template = _Template(body[:hole], body[hole + 4 :], tag)
                self._templates.setdefault(len(body), []).append(template)
                self._template_count += 1
                return
            hole = body.rfind(packed, 0, hole + 3)
        self._unlearnable.add(key)

    def _log_bad(self, message: str, *args: object) -> None:
        """Log a damaged record of this file: the first :data:`BAD_RECORD_WARNINGS` as warnings,
        the rest at debug level (a badly damaged file must not flood the trial's log; the count
        is in :meth:`damage` and the end-of-job summary)."""
        if self.bad_records <= BAD_RECORD_WARNINGS:
            _logger.warning(message, self.path, *args)
            return
        _logger.debug(message, self.path, *args)
        if not self._quieted:
            self._quieted = True
            _logger.warning("event file %s: more damaged records; counted, no longer logged",
                            self.path)

    def _scan(self, buf: bytes, events: list[ScalarEvent]) -> int:
        """Decode the complete records in ``buf`` (which starts at :attr:`offset`) into ``events``.

        Returns the number of bytes consumed and advances :attr:`offset` by it. Long runs of
        simple-value records go through :func:`_bulk_decode` (whole arrays at a time); the rest,
        and anything the bulk path cannot vouch for, goes through the record loop.
        """
        end = len(buf)
        pos = self._scan_records(buf, 0, events, _LEARN_RECORDS)
        misses = 0
        while (
            end - pos >= _BULK_MIN_BYTES and self._templates and not self._resyncing and misses < 3
        ):
            try:
                decoded = _bulk_decode(buf, pos, min(end, pos + _BULK_WINDOW), self._templates)
            except Exception:  # noqa: BLE001 - an optimisation must never cost a read
                _logger.debug("bulk decoding of %s failed; record loop", self.path, exc_info=True)
                break
            if decoded is None:
                misses += 1
            else:
                misses = 0
                events.extend(decoded[0])
                pos = decoded[1]
            # Step over what the bulk path stopped at (another kind of record, damage, the end).
            pos = self._scan_records(buf, pos, events, _STEP_OVER_RECORDS)
        pos = self._scan_records(buf, pos, events, None)
        # While resynchronising, `pos` stops at the first position whose 12-byte header is not
        # complete yet: the next poll examines it.
        self.offset += pos
        return pos

    def _scan_records(
        self, buf: bytes, pos: int, events: list[ScalarEvent], limit: int | None
    ) -> int:
        """Record loop: decode up to ``limit`` records from ``pos``; return the next position."""
        count = 0
        crc_fun = _CRC_FUN
        crc_table = _CRC_TABLE
        unpack_header = _HEADER.unpack_from
        unpack_footer = _FOOTER.unpack_from
        header_crcs = self._header_crcs
        view = memoryview(buf)
        end = len(buf)
        base = self.offset
        append = events.append
        templates = self._templates
        while pos + 12 <= end:
            if limit is not None:
                if count >= limit:
                    break
                count += 1
            length, header_crc = unpack_header(buf, pos)
            if header_crcs.get(length) != header_crc:
                if length < _MAX_RECORD and masked_crc32c(view[pos : pos + 8]) == header_crc:
                    header_crcs[length] = header_crc
                else:
                    if not self._resyncing:
                        self.bad_records += 1
                        self._resyncing = True
                        self._log_bad(
                            "event file %s: bad record header CRC at offset %d; "
                            "skipping to the next valid record",
                            base + pos,
                        )
                    pos += 1
                    continue
            if self._resyncing:
                self._resyncing = False
                self._log_bad("event file %s: resynchronised at offset %d", base + pos)
            stop = pos + 12 + length
            if stop + 4 > end:
                break  # partial record: wait for the writer
            crc = crc_fun(view[pos + 12 : stop], 0xFFFFFFFF, crc_table) ^ 0xFFFFFFFF
            if (((crc >> 15) | (crc << 17)) + _MASK_DELTA) & 0xFFFFFFFF != unpack_footer(buf, stop)[
                0
            ]:
                self.bad_records += 1
                self._log_bad("event file %s: record at offset %d has a bad data CRC; skipped",
                              base + pos)
                pos = stop + 4
                continue
            start = pos + 12
            # Fast path (see _Template); steps below 2**21 are unrolled.
            k = -1
            if length >= 15 and buf[start] == 0x09 and buf[start + 9] == 0x10:
                byte = buf[start + 10]
                if byte < 0x80:
                    step, k = byte, start + 11
                else:
                    second = buf[start + 11]
                    if second < 0x80:
                        step, k = (byte & 0x7F) | (second << 7), start + 12
                    elif buf[start + 12] < 0x80:
                        step = (byte & 0x7F) | ((second & 0x7F) << 7) | (buf[start + 12] << 14)
                        k = start + 13
            if k < 0 and length >= 15:
                step, k = _shape_start(buf, start, stop)
            if k > 0:
                for prefix, suffix, tag in templates.get(stop - k, ()):
                    hole = k + len(prefix)
                    if buf.startswith(prefix, k) and buf.startswith(suffix, hole + 4):
                        append((tag, _F32(buf, hole)[0], step, _F64(buf, start + 1)[0]))
                        break
                else:
                    tag = None
                if tag is not None:
                    pos = stop + 4
                    continue
            try:
                step, wall_time, scalars = decode_scalars(view[start:stop])
            except Exception as err:  # noqa: BLE001 - any decode failure is corrupt data
                self.bad_records += 1
                self._log_bad("event file %s: record at offset %d is not an Event (%s); skipped",
                              base + pos, err)
            else:
                for tag, value in scalars:
                    append((tag, value, step, wall_time))
                if len(scalars) == 1 and k > 0:
                    self._learn_template(buf, start, k, stop, step, *scalars[0])
            pos = stop + 4
        return pos


# --- a directory --------------------------------------------------------------------------------


class EventDirectoryReader:
    """Follow every event file in a directory (not recursive), oldest file first.

    A directory that does not exist (yet) reads as empty. A single event file may be given instead
    of a directory; then only that file is followed.

    Args:
        directory: A local directory, or a remote one (``oss://bucket/model_dir/eval_val/``).
        offsets: ``{file name: offset}`` to resume from, as returned by :meth:`offsets`.
        store: Storage for remote paths (see :class:`EventFileTail`).

    Attributes:
        found: True once an event file has been seen.
        directory_exists: Whether the local directory (or file) existed at the last poll;
            None for remote directories.
    """

    def __init__(
        self,
        directory: str,
        offsets: dict[str, int] | None = None,
        *,
        store: object | None = None,
    ) -> None:
        self.directory = directory
        self._store = store
        self._remote = is_remote(directory)
        self._tails: dict[str, EventFileTail] = {}
        self._start_offsets = dict(offsets or {})
        self._carried: list[ScalarEvent] = []
        self.found = False
        # Local: whether the directory (or file) was there at the last poll; remote: None
        # (a listing cannot tell an empty prefix from a missing one).
        self.directory_exists: bool | None = None if self._remote else False

    @property
    def bad_records(self) -> int:
        """Records skipped so far over all files."""
        return sum(tail.bad_records for tail in self._tails.values())

    def damage(self) -> list[str]:
        """:meth:`EventFileTail.damage` of every damaged file so far, in reading order."""
        found = (self._tails[name].damage() for name in self._ordered_names())
        return [line for line in found if line is not None]

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
            paths = _store(self._store).list_dir(self.directory)  # type: ignore[attr-defined]
            return [p for p in paths if is_event_file(p)]
        path = _local(self.directory)
        try:
            with os.scandir(path) as entries:
                self.directory_exists = True
                return [
                    os.path.join(path, entry.name)
                    for entry in entries
                    if is_event_file(entry.name) and entry.is_file()
                ]
        except NotADirectoryError:
            self.directory_exists = os.path.isfile(path)
            return [path] if self.directory_exists else []
        except FileNotFoundError:
            self.directory_exists = False
            return []

    def poll(self) -> list[ScalarEvent]:
        """Scalars of the records written since the last poll, file by file in wall-time order.

        Raises:
            StorageError: A remote directory or file could not be read. What the files before
                it gave in this poll is returned by the next poll.
        """
        paths = self._list()
        if paths:
            self.found = True
        for path in paths:
            name = path.rstrip("/").rsplit("/", 1)[-1]
            if name not in self._tails:
                offset = self._start_offsets.pop(name, 0)
                self._tails[name] = EventFileTail(path, offset, store=self._store)
                _logger.info("following event file %s", path)
        # Events read before a file fails to read (a remote error) are kept for the next poll:
        # their offsets have moved on, so dropping them with the error would lose them.
        events, self._carried = self._carried, []
        for name in self._ordered_names():
            try:
                events.extend(self._tails[name].poll())
            except Exception:
                self._carried = events
                raise
        return events
