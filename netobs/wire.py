"""Wire encoding of a batch: a small header and an Arrow IPC stream.

Layout: ``b"NOBS"`` magic, one byte format version, two bytes (big-endian) schema, then
an Arrow IPC stream holding one record batch, its buffers compressed (``transport.wire_compression``:
lz4 by default, zstd or none; :func:`set_compression`) when it holds at least
:data:`COMPRESS_MIN_ROWS` records (below that the codec's fixed cost outweighs the bytes it saves:
the schema, never compressed, is most of a tiny message). The IPC stream says per batch whether
and how its buffers are compressed, so a consumer reads any of them, whatever its own setting.
Arrow compresses every buffer of every column on its own: zstd costs ~1.3 ms a message of ~80 flows
(a fresh context per buffer), lz4 ~0.12 ms for ~15 % more bytes (bench/bench_wire.py). Many records per message keeps Kafka's per-message cost negligible; the IPC stream
carries its own schema so a consumer can check column names and types.

The schema field names the record kind in its high byte (0: flows, 1: interface
counters, 2: packet samples, 3: L7 conversations) and that kind's schema version in its low byte. Flow messages are thus
byte for byte what they were before other kinds existed, and a consumer that predates a
kind sees a schema "newer than its own" and refuses the message (counted, dead-lettered)
instead of misreading counters as flows. A consumer refuses unknown kinds and newer
versions the same way. The kind travels in the Arrow schema metadata too
(:func:`netobs.schema.kind_of`), which is how the in-process transport carries it.

Format version 2 adds a message id after the schema field: an 8-byte stream (one per producer
incarnation and message key, :class:`MessageIds`) and an 8-byte sequence number counting that
stream's messages from 0. A message the producer had to send again (a delivery that timed out
in flight may have been stored: see :mod:`netobs.transport.spooled`) carries the id it had the
first time, so a consumer can tell the copy (:func:`message_id`; the pipeline drops it,
:mod:`pipeline.duplicates`). Messages without an id are version 1, byte for byte as before; a
consumer older than version 2 refuses the new ones (dead-lettered), so consumers are upgraded
first.
"""

from __future__ import annotations

import hashlib
import itertools
import os
import struct
import threading

import pyarrow as pa

from netobs import schema

MAGIC = b"NOBS"
FORMAT_VERSION = 1
#: The format of messages that carry a message id (:class:`MessageIds`).
ID_FORMAT_VERSION = 2
_HEADER = struct.Struct("!4sBH")
_ID = struct.Struct("!8sQ")
#: Schema metadata key under which :func:`decode` leaves a message's id (stream + sequence, hex).
ID_KEY = b"netobs.message_id"
#: The codecs a message's buffers may be compressed with (Arrow IPC's); "none" leaves them plain.
COMPRESSIONS = ("lz4", "zstd", "none")
DEFAULT_COMPRESSION = "lz4"


def _options(compression: str) -> pa.ipc.IpcWriteOptions:
    # One thread: Arrow's pool would compress each column's buffer as its own task, which for the
    # small batches of many exporters cost more in hand-offs than the compression itself.
    if compression not in COMPRESSIONS:
        raise ValueError(f"wire compression must be one of {COMPRESSIONS}, not {compression!r}")
    return pa.ipc.IpcWriteOptions(
        compression=None if compression == "none" else compression, use_threads=False
    )


_WRITE_OPTIONS = _options(DEFAULT_COMPRESSION)
_PLAIN_OPTIONS = _options("none")
#: Batches with fewer records travel with uncompressed buffers.
COMPRESS_MIN_ROWS = 32
#: Record kind → its code in the schema field's high byte.
KIND_CODES: dict[str, int] = {schema.FLOWS: 0, schema.COUNTERS: 1, schema.PACKET_SAMPLES: 2, schema.L7: 3}
_KINDS = {code: kind for kind, code in KIND_CODES.items()}


class WireError(ValueError):
    """A message that is not a batch netobs can read."""


class MessageIds:
    """Message ids of one producer incarnation: per message key (the exporter, which also picks
    the Kafka partition) a stream of its own, numbered from 0, so a consumer sees each stream's
    numbers contiguous and can keep what it has seen as a few intervals."""

    def __init__(self, seed: bytes | None = None):
        self._seed = seed if seed is not None else os.urandom(16)
        self._next: dict[bytes, tuple[bytes, itertools.count[int]]] = {}
        self._lock = threading.Lock()

    def next(self, key: bytes) -> bytes:
        with self._lock:
            entry = self._next.get(key)
            if entry is None:
                stream = hashlib.blake2b(key, key=self._seed, digest_size=8).digest()
                entry = self._next[key] = (stream, itertools.count())
            return _ID.pack(entry[0], next(entry[1]))


def set_compression(compression: str) -> None:
    """The codec of the messages this process encodes from now on (``transport.wire_compression``,
    applied by :func:`netobs.transport.make_transport`); readers need no setting."""
    global _WRITE_OPTIONS
    _WRITE_OPTIONS = _options(compression)


def compression() -> str:
    """The codec :func:`encode` uses for batches of :data:`COMPRESS_MIN_ROWS` records or more."""
    return _WRITE_OPTIONS.compression or "none"


def encode(rb: pa.RecordBatch, message_id: bytes | None = None) -> bytes:
    """Serialise one record batch for the transport; its kind comes from its schema metadata.
    With ``message_id`` (16 bytes from :meth:`MessageIds.next`) the message is format version 2."""
    kind = schema.kind_of(rb)
    code = KIND_CODES.get(kind)
    if code is None:
        raise WireError(f"cannot encode records of unknown kind {kind!r}")
    field = code << 8 | schema.KINDS[kind][1]
    data = _HEADER.pack(MAGIC, FORMAT_VERSION, field) + arrow_stream(rb)
    return data if message_id is None else with_id(data, message_id)


def with_id(data: bytes, message_id: bytes) -> bytes:
    """A version 1 message of :func:`encode` as version 2 with ``message_id`` (no re-encoding)."""
    magic, fmt, field = _HEADER.unpack_from(data)
    if magic != MAGIC or fmt != FORMAT_VERSION or len(message_id) != _ID.size:
        raise ValueError("with_id takes a format version 1 message and a 16-byte id")
    return _HEADER.pack(MAGIC, ID_FORMAT_VERSION, field) + message_id + data[_HEADER.size :]


def message_id(table: pa.Table | pa.RecordBatch) -> tuple[bytes, int] | None:
    """(stream, sequence number) of the message ``table`` came in, when it had an id."""
    raw = (table.schema.metadata or {}).get(ID_KEY)
    if raw is None:
        return None
    stream, seq = _ID.unpack(bytes.fromhex(raw.decode()))
    return stream, seq


def arrow_stream(rb: pa.RecordBatch) -> bytes:
    """The Arrow IPC stream of ``rb`` alone (no header): for bytes kept aside, e.g. dead letters
    of a kind :func:`encode` refuses."""
    sink = pa.BufferOutputStream()
    options = _WRITE_OPTIONS if rb.num_rows >= COMPRESS_MIN_ROWS else _PLAIN_OPTIONS
    with pa.ipc.new_stream(sink, rb.schema, options=options) as writer:
        writer.write_batch(rb)
    stream: bytes = sink.getvalue().to_pybytes()
    return stream


def decode(data: bytes) -> pa.Table:
    """Parse a message produced by :func:`encode`; raises :class:`WireError`.

    The table's schema metadata names its kind (as the header says), see
    :func:`netobs.schema.kind_of`.
    """
    if len(data) < _HEADER.size:
        raise WireError(f"message of {len(data)} bytes is shorter than the header")
    magic, fmt, field = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}: not a netobs batch")
    if fmt not in (FORMAT_VERSION, ID_FORMAT_VERSION):
        raise WireError(f"unsupported wire format version {fmt}")
    start, mid = _HEADER.size, None
    if fmt == ID_FORMAT_VERSION:
        if len(data) < _HEADER.size + _ID.size:
            raise WireError(f"message of {len(data)} bytes is shorter than a format version 2 header")
        mid = data[start : start + _ID.size]
        start += _ID.size
    kind = _KINDS.get(field >> 8)
    if kind is None:
        raise WireError(f"unknown record kind {field >> 8} (schema {field}): newer than this consumer")
    version, known = field & 0xFF, schema.KINDS[kind][1]
    if version > known:
        raise WireError(f"{kind} schema version {version} is newer than this consumer's {known}")
    try:
        table = pa.ipc.open_stream(pa.py_buffer(data)[start:]).read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        raise WireError(f"corrupt Arrow payload: {e}") from None
    claimed = ID_KEY in (table.schema.metadata or {})  # an id in the payload is no id: the header's is
    if schema.kind_of(table) != kind or mid is not None or claimed:  # the header is authoritative
        meta = dict(table.schema.metadata or {})
        meta.pop(schema.KIND_KEY, None)
        meta.pop(ID_KEY, None)
        if kind != schema.FLOWS:
            meta[schema.KIND_KEY] = kind.encode()
        if mid is not None:
            meta[ID_KEY] = mid.hex().encode()
        table = table.replace_schema_metadata(meta)
    return table
