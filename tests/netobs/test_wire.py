"""Wire encoding: compressed and plain IPC buffers, both read back by the same consumer."""

import numpy as np
import pyarrow as pa

from netobs import schema, wire
from netobs.batch import FlowBatch, arrow_array


def _batch(n: int) -> pa.RecordBatch:
    return FlowBatch(
        {
            "packets": np.arange(n, dtype=np.uint64) % 7,
            "bytes": np.arange(n, dtype=np.uint64) * 100,
            "type": np.array(["ipfix"] * n, dtype=object),
            "src_port": np.full(n, 443, dtype=np.uint16),
        }
    ).to_arrow()


def _stream(rb: pa.RecordBatch, options: pa.ipc.IpcWriteOptions) -> bytes:
    sink = pa.BufferOutputStream()
    with pa.ipc.new_stream(sink, rb.schema, options=options) as writer:
        writer.write_batch(rb)
    return sink.getvalue().to_pybytes()


def test_small_batches_travel_uncompressed_and_read_back():
    rb = _batch(wire.COMPRESS_MIN_ROWS - 1)
    data = wire.encode(rb)
    assert data[7:] == _stream(rb, pa.ipc.IpcWriteOptions())  # no zstd: the plain IPC stream
    back = wire.decode(data)
    assert back.num_rows == rb.num_rows
    assert back.column("bytes").to_pylist() == rb.column("bytes").to_pylist()
    assert back.column("type").to_pylist() == ["ipfix"] * rb.num_rows


def test_large_batches_are_compressed_and_read_back():
    rb = _batch(4096)
    data = wire.encode(rb)
    assert len(data) * 3 < len(_stream(rb, pa.ipc.IpcWriteOptions()))
    back = wire.decode(data)
    assert back.num_rows == 4096
    assert back.column("packets").to_pylist() == rb.column("packets").to_pylist()


def test_consumer_reads_small_batches_compressed_by_older_producers():
    rb = _batch(3)
    old = wire._HEADER.pack(wire.MAGIC, wire.FORMAT_VERSION, schema.KINDS[schema.FLOWS][1])
    old += _stream(rb, pa.ipc.IpcWriteOptions(compression="zstd"))
    assert wire.decode(old).column("src_port").to_pylist() == [443] * 3


def test_constant_text_columns_match_the_general_conversion():
    col = schema.BY_NAME["type"]
    for values in (["sflow"] * 5, ["sflow", "ipfix", "sflow"], ["ipfix", "sflow", "ipfix"], [""] * 2):
        arr = arrow_array(col, np.array(values, dtype=object), len(values))
        assert arr.type == col.arrow
        assert arr.to_pylist() == values
    assert arrow_array(col, np.array([], dtype=object), 0).to_pylist() == []
