"""Arrow → clickhouse-driver column conversion of the ClickHouse server store, without a server.

Every column goes through clickhouse-driver's own column writer (the bytes it would send
in a native-protocol Data block) and reader. The vectorized conversion
(:func:`netobs.store.clickhouse.arrow_to_column`, written with ``use_numpy`` and
``strings_as_bytes``) must put the same bytes on the wire as the per-value conversion it
replaced (``old_column`` below, written with the driver's defaults), in both dialects:
the modern one has no server here to check it against. LowCardinality columns are compared
by value (their dictionary order differs, which ClickHouse does not care about).
"""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import pytest
from clickhouse_driver.bufferedreader import BufferedSocketReader
from clickhouse_driver.bufferedwriter import BufferedSocketWriter
from clickhouse_driver.columns.service import read_column, write_column
from clickhouse_driver.context import Context

from netobs import ddl, schema
from netobs.batch import FlowBatch, ip_bytes
from netobs.store.clickhouse import arrow_to_column
from pipeline.enrich import Enricher
from pipeline.metadata.inventory import apply_inventory
from pipeline.metadata.versions import MetadataStore

INVENTORY = Path(__file__).resolve().parent.parent / "testdata" / "inventory.yaml"
T0 = 1_700_000_000_000
TS = pa.timestamp("ms", tz="UTC")


def old_column(typ: pa.DataType, col: pa.ChunkedArray, dialect: str) -> list:
    """The conversion before vectorization (ClickHouseStore._column), verbatim: the reference."""
    if pa.types.is_timestamp(typ):
        ms = col.cast(pa.int64()).to_numpy()
        if dialect == "legacy":
            return [datetime.fromtimestamp(v // 1000, UTC).replace(tzinfo=None) for v in ms.tolist()]
        return [datetime.fromtimestamp(v / 1000, UTC) for v in ms.tolist()]
    if pa.types.is_fixed_size_binary(typ):
        raw = col.to_pylist()
        if dialect == "legacy":
            return raw
        import ipaddress

        return [ipaddress.IPv6Address(b) for b in raw]
    if pa.types.is_string(typ):
        return col.to_pylist()
    return np.asarray(col.to_numpy()).tolist()


# ---- clickhouse-driver's column writer and reader, on an in-memory "socket" -------------------
class _Sink:
    def __init__(self) -> None:
        self.data = bytearray()

    def sendall(self, b: bytes) -> None:
        self.data += b


class _Source:
    def __init__(self, data: bytes) -> None:
        self.f = io.BytesIO(data)

    def recv_into(self, buf, n: int = 0) -> int:
        chunk = self.f.read(n or len(buf))
        buf[: len(chunk)] = chunk
        return len(chunk)


class _ServerInfo:
    def get_timezone(self) -> str:
        return "UTC"  # what the test server (and the store's servers) run in


def _context(numpy: bool) -> Context:
    ctx = Context()
    ctx.client_settings = {
        "use_numpy": numpy,
        "strings_as_bytes": numpy,  # the store sets both for its inserts
        "strings_encoding": "utf-8",
        "input_format_null_as_default": False,
    }
    ctx.settings = {}
    ctx.server_info = _ServerInfo()
    return ctx


def wire(spec: str, items, numpy: bool) -> bytes:
    sink = _Sink()
    writer = BufferedSocketWriter(sink, 1 << 16)
    write_column(_context(numpy), "c", spec, items, writer)
    writer.flush()
    return bytes(sink.data)


def read_back(spec: str, data: bytes, n: int) -> tuple:
    return tuple(read_column(_context(False), spec, n, BufferedSocketReader(_Source(data), 1 << 16)))


# ---- inputs -------------------------------------------------------------------------------------
def flows(n: int, seed: int, enricher: Enricher) -> pa.Table:
    rng = np.random.default_rng(seed)
    pods = ["10.244.1.10", "10.244.1.12", "fd00:245:1::10", "172.30.5.9", "203.0.113.5", "8.8.8.8"]
    received = T0 + rng.integers(0, 10**12, n)  # 2023 .. 2055, any millisecond
    received[:4] = [0, 999, 1000, T0 + 1][:n]  # the epoch, and a second's edges
    cols = {
        "time_received": received,
        "flow_start": np.maximum(received - rng.integers(0, 60_000, n), 0),
        "flow_end": received,
        "type": rng.choice(np.array(["ipfix", "sflow", "netflow9"], dtype=object), n),
        "exporter": np.array([ip_bytes("192.0.2.11")] * n, dtype="V16"),
        "src_addr": np.array([ip_bytes(pods[i]) for i in rng.integers(0, len(pods), n)], dtype="V16"),
        "dst_addr": np.array([ip_bytes(pods[i]) for i in rng.integers(0, len(pods), n)], dtype="V16"),
        "src_port": rng.integers(0, 65536, n).astype("uint16"),
        "proto": rng.integers(0, 256, n).astype("uint8"),
        "src_mac": rng.integers(0, 2**48, n).astype("uint64"),
        "packets": rng.integers(0, 2**63, n).astype("uint64") * 2 + 1,  # beyond int64 and float64
        "sampling_rate": rng.integers(0, 2**32, n).astype("uint32"),
    }
    return enricher.enrich(pa.Table.from_batches([FlowBatch(cols).to_arrow()]))


@pytest.fixture(scope="module")
def enricher() -> Enricher:
    meta = MetadataStore()
    apply_inventory(meta, INVENTORY, at=T0)
    return Enricher(meta, dictionary=True)


@pytest.fixture(scope="module")
def tables(enricher) -> dict[str, pa.Table]:
    one = flows(300, 1, enricher)
    two = pa.concat_tables([one, flows(200, 2, enricher), flows(1, 3, enricher)])
    return {"one_chunk": one, "three_chunks": two, "sliced": two.slice(123, 250)}


# ---- new == old, byte for byte ------------------------------------------------------------------
@pytest.mark.parametrize("dialect", ["modern", "legacy"])
@pytest.mark.parametrize("shape", ["one_chunk", "three_chunks", "sliced"])
def test_same_wire_bytes_as_the_per_value_conversion(tables, dialect, shape):
    table = tables[shape]
    assert pa.types.is_dictionary(table.schema.field("src_center").type)
    for col in schema.FLOW_COLUMNS:
        spec = ddl.column_type(col, dialect)
        arrow = table.column(col.name)
        old = wire(spec, old_column(arrow.type, arrow, dialect), numpy=False)
        new = wire(spec, arrow_to_column(arrow, dialect == "legacy"), numpy=True)
        if spec.startswith("LowCardinality"):
            assert read_back(spec, new, len(arrow)) == read_back(spec, old, len(arrow)), col.name
        else:
            assert new == old, f"{col.name} ({spec})"


# ---- what the per-value conversion got wrong or could not do --------------------------------------
def test_nulls_become_the_type_default():
    two_dicts = pa.chunked_array(
        [
            pa.DictionaryArray.from_arrays(pa.array([0, None, 1], pa.int32()), pa.array(["dc1", "dc2"])),
            pa.DictionaryArray.from_arrays(pa.array([None, 1, 0], pa.int32()), pa.array(["dc3", None])),
        ]
    )
    cases = [
        ("LowCardinality(String)", two_dicts, ("dc1", "", "dc2", "", "", "dc3")),
        ("String", two_dicts, ("dc1", "", "dc2", "", "", "dc3")),
        ("String", pa.chunked_array([["a", None], [None, "b"]]), ("a", "", "", "b")),
        ("UInt64", pa.chunked_array([pa.array([2**64 - 1, None], pa.uint64())]), (2**64 - 1, 0)),
        ("UInt16", pa.chunked_array([pa.array([None, 7], pa.uint16())]), (0, 7)),
    ]
    for spec, arrow, want in cases:
        assert read_back(spec, wire(spec, arrow_to_column(arrow), True), len(want)) == want
    addrs = pa.array([ip_bytes("10.0.0.1"), None], pa.binary(16))
    got = read_back("IPv6", wire("IPv6", arrow_to_column(addrs), True), 2)
    assert [str(a) for a in got] == ["::ffff:a00:1", "::"]
    times = pa.array([T0 + 1, None], pa.int64()).cast(TS)
    got = read_back("DateTime('UTC')", wire("DateTime('UTC')", arrow_to_column(times, True), True), 2)
    assert [t.timestamp() for t in got] == [T0 // 1000, 0]


def test_modern_times_are_exact_milliseconds_before_the_epoch_too():
    ms = [-1, -1001, 0, T0 + 999, 4_102_444_800_123]  # 1969, 1970, 2023, 2100
    got = arrow_to_column(pa.array(ms, pa.int64()).cast(TS))
    assert got.dtype == np.int64 and got.tolist() == ms
    spec = "DateTime64(3, 'UTC')"
    back = read_back(spec, wire(spec, got, True), len(ms))
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    assert [(t - epoch) // timedelta(milliseconds=1) for t in back] == ms
    # The per-value conversion wrote -1 ms as +999 ms (float seconds, then int() towards zero).
    assert read_back(
        spec, wire(spec, old_column(TS, pa.chunked_array([pa.array(ms[:1])]).cast(TS), "modern"), False), 1
    )[0] == epoch + timedelta(milliseconds=999)


def test_other_timestamp_units_are_milliseconds():
    us = pa.array([1_700_000_000_123_456, None], pa.timestamp("us", tz="UTC"))
    assert arrow_to_column(us).tolist() == [1_700_000_000_123, 0]
    assert arrow_to_column(us, legacy=True).tolist() == [1_700_000_000, 0]


@pytest.mark.parametrize("ms", [-1, 2**32 * 1000, 7_500_000_000_000])
def test_legacy_datetime_out_of_range_is_an_error(ms):
    with pytest.raises(ValueError, match="1 times outside DateTime's range"):
        arrow_to_column(pa.array([T0, ms], pa.int64()).cast(TS), legacy=True)


def test_legacy_datetime_edges():
    ms = [0, 999, (2**32 - 1) * 1000 + 999]
    assert arrow_to_column(pa.array(ms, pa.int64()).cast(TS), legacy=True).tolist() == [0, 0, 2**32 - 1]


def test_empty_columns(tables):
    empty = tables["one_chunk"].slice(0, 0)
    for name in empty.schema.names:
        assert len(arrow_to_column(empty.column(name))) == 0
    assert len(arrow_to_column(pa.chunked_array([], pa.binary(16)))) == 0


def test_non_string_dictionary_is_decoded():
    col = pa.chunked_array(
        [pa.DictionaryArray.from_arrays(pa.array([1, 0, 1], pa.int8()), pa.array([7, 9], pa.uint32()))]
    )
    assert arrow_to_column(col).tolist() == [9, 7, 9]


def test_dictionary_nulls_in_one_chunk():
    """``ChunkedArray.to_numpy`` (what the per-value conversion used) gives "b" for the NULL."""
    col = pa.chunked_array(
        [pa.DictionaryArray.from_arrays(pa.array([0, None, 1], pa.int32()), pa.array(["a", "b"]))]
    )
    assert arrow_to_column(col).tolist() == [b"a", b"", b"b"]
    assert pc.fill_null(col.cast(pa.string()), "").to_pylist() == ["a", "", "b"]
