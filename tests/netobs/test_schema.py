"""Schema as code: DDL variants generated from one column list, executed on real chdb."""

import numpy as np
import pyarrow as pa
import pytest

from netobs import ddl, schema, wire
from netobs.batch import FlowBatch, ip_bytes, ip_str, mac_str


def test_column_names_unique_and_ordered():
    assert len(set(schema.COLUMN_NAMES)) == len(schema.COLUMN_NAMES)
    assert schema.COLUMN_NAMES[0] == "time_received"
    assert {"src_center", "dst_tenant", "path"} <= set(schema.COLUMN_NAMES)


def test_single_node_ddl():
    (stmt,) = ddl.create_flows("netobs", retention_days=30)
    assert stmt.startswith("CREATE TABLE IF NOT EXISTS `netobs`.`flows`")
    assert "ENGINE = MergeTree" in stmt
    assert "PARTITION BY toDate(time_received)" in stmt
    assert "ORDER BY (toStartOfHour(time_received), src_center, dst_center, src_tenant, dst_tenant" in stmt
    assert "TTL toDateTime(time_received) + INTERVAL 30 DAY DELETE" in stmt
    assert "`src_addr` IPv6" in stmt and "`src_tenant` LowCardinality(String)" in stmt
    for c in schema.FLOW_COLUMNS:
        assert f"`{c.name}` " in stmt


def test_no_ttl_when_retention_zero():
    (stmt,) = ddl.create_flows("netobs", retention_days=0)
    assert "TTL" not in stmt


def test_cluster_ddl():
    local, dist = ddl.create_flows("netobs", retention_days=7, cluster="bank")
    assert "`netobs`.`flows_local` ON CLUSTER 'bank'" in local
    assert "ReplicatedMergeTree('/clickhouse/tables/{shard}/netobs/flows_local', '{replica}')" in local
    assert "TTL" in local
    assert dist.startswith(
        "CREATE TABLE IF NOT EXISTS `netobs`.`flows` ON CLUSTER 'bank' AS `netobs`.`flows_local`"
    )
    assert "ENGINE = Distributed('bank', 'netobs', 'flows_local', rand())" in dist


def test_legacy_dialect_types():
    (stmt,) = ddl.create_flows("netobs", retention_days=30, dialect="legacy")
    for modern in ("LowCardinality", "IPv6", "DateTime64", "CODEC", "TTL", "COMMENT"):
        assert modern not in stmt
    assert "`src_addr` FixedString(16)" in stmt and "`time_received` DateTime" in stmt


def test_add_missing_columns_converges():
    existing = {c.name: c.ch_type for c in schema.FLOW_COLUMNS if c.name not in ("vlan", "path")}
    alters = ddl.add_missing_columns("netobs", existing)
    assert alters == [
        "ALTER TABLE `netobs`.`flows` ADD COLUMN IF NOT EXISTS `vlan` UInt16 AFTER `dst_mac`",
        "ALTER TABLE `netobs`.`flows` ADD COLUMN IF NOT EXISTS `path` LowCardinality(String) AFTER `dst_host`",
    ]
    assert ddl.add_missing_columns("netobs", {c.name: c.ch_type for c in schema.FLOW_COLUMNS}) == []


def test_type_drift_is_refused():
    existing = {c.name: c.ch_type for c in schema.FLOW_COLUMNS}
    existing["packets"] = "UInt32"
    with pytest.raises(ddl.SchemaDrift, match="packets"):
        ddl.add_missing_columns("netobs", existing)


def sample_batch(n=4):
    return FlowBatch(
        {
            "time_received": np.full(n, 1_700_000_000_123, dtype="int64"),
            "src_addr": np.array([ip_bytes("10.244.1.11"), ip_bytes("fd00::1")] * (n // 2), dtype="V16"),
            "packets": np.arange(n, dtype="uint64"),
            "type": np.array(["ipfix"] * n, dtype=object),
        }
    )


def test_batch_arrow_roundtrip_and_wire():
    b = sample_batch()
    rb = b.to_arrow()
    assert rb.schema.equals(schema.arrow_schema())
    assert rb.column("bytes").to_pylist() == [0, 0, 0, 0]  # absent columns are zero-filled
    back = FlowBatch.from_arrow(wire.decode(wire.encode(rb)))
    assert [ip_str(bytes(x)) for x in back.columns["src_addr"]] == ["10.244.1.11", "fd00::1"] * 2
    assert back.columns["time_received"][0] == 1_700_000_000_123
    assert list(back.columns["type"]) == ["ipfix"] * 4


@pytest.mark.parametrize(
    "data, reason",
    [
        (b"", "shorter"),
        (b"XXXX\x01\x00\x01garbage", "bad magic"),
        (b"NOBS\x02\x00\x01", "format version"),
        (b"NOBS\x01\xff\xff", "newer"),
        (b"NOBS\x01\x00\x01not arrow", "corrupt"),
    ],
)
def test_wire_rejects_garbage(data, reason):
    with pytest.raises(wire.WireError, match=reason):
        wire.decode(data)


def test_batch_concat_fills_missing_columns():
    a = FlowBatch({"packets": np.array([1], dtype="uint64")})
    b = FlowBatch({"bytes": np.array([7, 8], dtype="uint64")})
    c = FlowBatch.concat([a, b])
    assert len(c) == 3 and list(c.columns["packets"]) == [1, 0, 0] and list(c.columns["bytes"]) == [0, 7, 8]


def test_batch_rejects_unknown_and_unequal():
    with pytest.raises(KeyError):
        FlowBatch({"nope": [1]})
    with pytest.raises(ValueError):
        FlowBatch({"packets": np.zeros(2, "uint64"), "bytes": np.zeros(3, "uint64")})


def test_text_helpers():
    assert mac_str(0x0242AC110002) == "02:42:ac:11:00:02"
    assert ip_str(ip_bytes("192.0.2.1")) == "192.0.2.1"
    assert pa.types.is_fixed_size_binary(schema.BY_NAME["exporter"].arrow)


def test_pod_columns_are_plain_strings_the_rest_low_cardinality():
    assert schema.BY_NAME["src_pod"].ch_type == schema.BY_NAME["dst_pod"].ch_type == "String"
    assert schema.BY_NAME["src_workload"].ch_type == "LowCardinality(String)"


def test_flows_parts_are_compact_up_to_a_batch_in_every_modern_layout():
    setting = f"min_bytes_for_wide_part = {ddl.FLOWS_COMPACT_BELOW_BYTES}"
    assert setting in ddl.create_flows("netobs")[0]
    assert setting in ddl.create_flows("netobs", replicated=True)[0]
    assert setting in ddl.create_flows("netobs", cluster="bank")[0]
    assert "min_bytes_for_wide_part" not in ddl.create_flows("netobs", dialect="legacy")[0]
    (counters,) = ddl.create_table("netobs", ddl.COUNTERS_TABLE)
    assert "min_bytes_for_wide_part" not in counters


def test_low_cardinality_to_string_is_changed_in_place_elsewhere_refused():
    existing = {c.name: c.ch_type for c in schema.FLOW_COLUMNS}
    existing["src_pod"] = existing["dst_pod"] = "LowCardinality(String)"  # before pods became String
    existing["src_zone"] = "String"
    assert ddl.add_missing_columns("netobs", existing) == [
        "ALTER TABLE `netobs`.`flows` MODIFY COLUMN `src_pod` String",
        "ALTER TABLE `netobs`.`flows` MODIFY COLUMN `src_zone` LowCardinality(String)",
        "ALTER TABLE `netobs`.`flows` MODIFY COLUMN `dst_pod` String",
    ]
    assert ddl.add_missing_columns("netobs", existing, cluster="bank")[:2] == [
        "ALTER TABLE `netobs`.`flows_local` ON CLUSTER 'bank' MODIFY COLUMN `src_pod` String",
        "ALTER TABLE `netobs`.`flows` ON CLUSTER 'bank' MODIFY COLUMN `src_pod` String",
    ]
    existing["src_pod"] = "Nullable(String)"
    with pytest.raises(ddl.SchemaDrift, match="src_pod"):
        ddl.add_missing_columns("netobs", existing)
