"""Wire encoding: compressed and plain IPC buffers, both read back by the same consumer."""

import numpy as np
import pyarrow as pa
import pytest
from pydantic import ValidationError

from netobs import schema, wire
from netobs.batch import FlowBatch, arrow_array
from netobs.config import TransportConfig
from netobs.transport import make_transport
from netobs.transport.spooled import encode_parts


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
    assert data[7:] == _stream(rb, pa.ipc.IpcWriteOptions())  # not compressed: the plain IPC stream
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


# ---- the codec of the buffers (transport.wire_compression) -------------------------------------------------


@pytest.fixture
def restore_codec():
    yield
    wire.set_compression(wire.DEFAULT_COMPRESSION)


@pytest.mark.parametrize("codec", wire.COMPRESSIONS)
def test_each_codec_is_arrow_ipc_and_any_consumer_reads_it(codec, restore_codec):
    rb = _batch(4096)
    wire.set_compression(codec)
    data = wire.encode(rb)
    opts = pa.ipc.IpcWriteOptions(compression=None if codec == "none" else codec, use_threads=False)
    assert data[7:] == _stream(rb, opts)  # Arrow's own IPC with that codec: any Arrow reader knows it
    for reader in wire.COMPRESSIONS:  # the consumer's own setting does not matter
        wire.set_compression(reader)
        back = wire.decode(data)
        assert back.column("bytes").to_pylist() == rb.column("bytes").to_pylist()
        assert back.column("type").to_pylist() == ["ipfix"] * 4096


def test_the_transport_setting_chooses_the_codec_and_refuses_others(restore_codec):
    assert TransportConfig().wire_compression == wire.DEFAULT_COMPRESSION == "lz4"
    make_transport(TransportConfig(wire_compression="zstd")).close()
    assert wire.compression() == "zstd"
    make_transport(TransportConfig()).close()
    assert wire.compression() == "lz4"
    with pytest.raises(ValidationError):
        TransportConfig(wire_compression="brotli")
    with pytest.raises(ValueError, match="wire compression"):
        wire.set_compression("gzip")


@pytest.mark.parametrize("codec", wire.COMPRESSIONS)
def test_split_messages_stay_under_the_size_limit_with_every_codec(codec, restore_codec):
    wire.set_compression(codec)
    rng = np.random.default_rng(7)
    n = 20_000
    rb = FlowBatch(
        {
            "packets": rng.integers(0, 2**40, n, dtype=np.uint64),
            "bytes": rng.integers(0, 2**60, n, dtype=np.uint64),
            "src_port": rng.integers(0, 2**16, n, dtype=np.uint16),
        }
    ).to_arrow()
    parts = encode_parts(rb, 200_000)
    assert len(parts) > 1 and all(len(data) <= 200_000 for data, _ in parts)
    assert sum(rows for _, rows in parts) == n
    back = pa.concat_tables([wire.decode(data) for data, _ in parts])
    assert back.column("bytes").to_pylist() == rb.column("bytes").to_pylist()


def test_message_ids_travel_in_format_2_and_format_1_stays_as_it_was():
    rb = _batch(50)
    plain = wire.encode(rb)
    assert plain[4] == wire.FORMAT_VERSION and wire.message_id(wire.decode(plain)) is None
    ids = wire.MessageIds()
    a, b, c = ids.next(b"10.0.0.1"), ids.next(b"10.0.0.1"), ids.next(b"10.0.0.2")
    assert a[:8] == b[:8] != c[:8]  # a stream per key
    with_id = wire.encode(rb, a)
    assert with_id[4] == wire.ID_FORMAT_VERSION and wire.with_id(plain, a) == with_id
    back = wire.decode(with_id)
    assert wire.message_id(back) == (a[:8], 0) and wire.message_id(wire.decode(wire.encode(rb, b)))[1] == 1
    assert back.to_batches()[0].equals(wire.decode(plain).to_batches()[0])
    counters = wire.decode(wire.encode(_counters(), c))  # other kinds keep their kind with an id
    assert schema.kind_of(counters) == schema.COUNTERS and wire.message_id(counters)[1] == 0
    with pytest.raises(wire.WireError, match="format version 2"):
        wire.decode(with_id[:20])
    parts = encode_parts(rb, 1 << 20, lambda: ids.next(b"k"))
    assert [wire.message_id(wire.decode(p))[1] for p, _ in parts] == [0]


def _counters() -> pa.RecordBatch:
    rb = pa.RecordBatch.from_pydict({"exporter": ["10.0.0.1"]})
    return rb.replace_schema_metadata({schema.KIND_KEY: schema.COUNTERS.encode()})


def test_an_id_claimed_inside_the_payload_is_not_taken():
    """Only the header says a message's id: a format 1 message whose Arrow metadata carries one
    (garbage, or another message's id: a copy that would hide a real batch) decodes without one."""
    ids = wire.MessageIds()
    real = wire.message_id(wire.decode(wire.encode(_batch(5), ids.next(b"k"))))
    for claim in (b"zz-not-hex", b"00" * 3, real[0].hex().encode() + b"0" * 16):
        rb = _batch(5)
        rb = rb.replace_schema_metadata({**(rb.schema.metadata or {}), wire.ID_KEY: claim})
        table = wire.decode(wire.encode(rb))
        assert wire.message_id(table) is None and table.num_rows == 5
    # with a header id too, the header's stands
    rb = _batch(5).replace_schema_metadata({**(_batch(5).schema.metadata or {}), wire.ID_KEY: b"zz"})
    assert wire.message_id(wire.decode(wire.encode(rb, ids.next(b"k")))) == (real[0], 1)
