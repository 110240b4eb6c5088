"""Wire encoding of a flow batch: a small header and an Arrow IPC stream.

Layout: ``b"NOBS"`` magic, one byte format version, two bytes (big-endian) schema
version, then an Arrow IPC stream holding one record batch with zstd-compressed
buffers. Many flows per message keeps Kafka's per-message cost negligible; the IPC
stream carries its own schema so a consumer can check column names and types.
"""

from __future__ import annotations

import struct

import pyarrow as pa

from netobs import schema

MAGIC = b"NOBS"
FORMAT_VERSION = 1
_HEADER = struct.Struct("!4sBH")
_WRITE_OPTIONS = pa.ipc.IpcWriteOptions(compression="zstd")


class WireError(ValueError):
    """A message that is not a flow batch netobs can read."""


def encode(rb: pa.RecordBatch) -> bytes:
    """Serialise one record batch for the transport."""
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rb.schema, options=_WRITE_OPTIONS) as writer:
        writer.write_batch(rb)
    return _HEADER.pack(MAGIC, FORMAT_VERSION, schema.SCHEMA_VERSION) + sink.getvalue().to_pybytes()


def decode(data: bytes) -> pa.Table:
    """Parse a message produced by :func:`encode`; raises :class:`WireError`."""
    if len(data) < _HEADER.size:
        raise WireError(f"message of {len(data)} bytes is shorter than the header")
    magic, fmt, version = _HEADER.unpack_from(data)
    if magic != MAGIC:
        raise WireError(f"bad magic {magic!r}: not a netobs flow batch")
    if fmt != FORMAT_VERSION:
        raise WireError(f"unsupported wire format version {fmt}")
    if version > schema.SCHEMA_VERSION:
        raise WireError(f"schema version {version} is newer than this consumer's {schema.SCHEMA_VERSION}")
    try:
        reader = pa.ipc.open_stream(pa.py_buffer(data)[_HEADER.size :])
        return reader.read_all()
    except (pa.ArrowInvalid, pa.ArrowIOError, OSError) as e:
        raise WireError(f"corrupt Arrow payload: {e}") from None
