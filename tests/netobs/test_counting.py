"""The counting model: which observation counts (rule by rule), who opened the conversation, event time,
and what is learned about exporters (detected from the data, kept in the store)."""

from __future__ import annotations

import numpy as np
import pyarrow as pa
import pytest

from netobs import counting
from netobs.batch import FlowBatch, ip_bytes
from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.counting import CountingConfig
from netobs.observations import (
    INITIATOR_NAMES,
    METHOD_NAMES,
    REASON_NAMES,
    Counter,
    Listening,
    Observations,
    ObservationTable,
    decide,
    event_times,
    roles,
)
from netobs.store import make_store

# ---- rule by rule ----------------------------------------------------------------------------------
N1, N2, N3 = 1, 2, 3  # node codes; 0 is '' (not a node)
C1, C2 = 1, 2  # center codes
# exporter node, exporter center, dual, direction (0 in, 1 out, 2 none), src node, dst node, src covered,
# dst covered, src center, dst center, device in src center, device in dst center, force → reason
CASES = [
    ("sender's node counts", (N1, C1, False, 2, N1, N2, True, True, C1, C1, False, False, 0), "source_node"),
    ("receiver's node does not", (N2, C1, False, 2, N1, N2, True, True, C1, C1, False, False, 0),
     "seen_at_source_node"),
    ("bridge IPFIX: ingress counts", (N1, C1, True, 0, N1, N2, True, True, C1, C1, False, False, 0), "source_node"),
    ("bridge IPFIX: egress copy", (N1, C1, True, 1, N1, N2, True, True, C1, C1, False, False, 0),
     "dual_direction_copy"),
    ("probe marked egress, single", (N1, C1, False, 1, N1, N2, True, True, C1, C1, False, False, 0), "source_node"),
    ("from the internet: receiver's node", (N2, C1, False, 2, 0, N2, False, True, 0, C1, False, False, 0),
     "destination_node"),
    ("sender's node has no exporter", (N2, C1, False, 2, N1, N2, False, True, C1, C1, False, False, 0),
     "destination_node"),
    ("a gateway node, ends covered", (N3, C1, False, 2, N1, 0, True, False, C1, 0, False, False, 0),
     "seen_at_source_node"),
    ("a gateway node between outside ends", (N3, C1, False, 2, 0, 0, False, False, 0, 0, False, False, 0),
     "transit_only"),
    ("router, a node saw it", (0, C1, False, 2, N1, N2, True, True, C1, C2, True, True, 0), "seen_by_node"),
    ("router in the source's center", (0, C1, False, 2, N1, N2, False, False, C1, C2, True, True, 0),
     "device_source_center"),
    ("router in the destination's center", (0, C2, False, 2, N1, N2, False, False, C1, C2, True, True, 0),
     "seen_by_other_device"),
    ("router of the destination, none at the source", (0, C2, False, 2, 0, N2, False, False, 0, C2, False, True, 0),
     "device_destination_center"),
    ("a device nobody placed", (0, 0, False, 2, N1, N2, False, False, C1, C2, False, False, 0), "device_only"),
    ("count: never", (N1, C1, False, 2, N1, N2, True, True, C1, C1, False, False, 2), "excluded"),
    ("count: always", (N2, C1, True, 1, N1, N2, True, True, C1, C1, False, False, 1), "forced"),
]  # fmt: skip


@pytest.mark.parametrize(("args", "reason"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_rule(args, reason):
    arrays = [np.array([a]) for a in args]
    got = REASON_NAMES[int(decide(*arrays)[0])]
    assert got == reason
    assert (got in counting.COUNTING_REASONS) == counting.REASONS[got].startswith("counted")


# ---- roles -------------------------------------------------------------------------------------------
def flows(rows: list[dict]) -> pa.Table:
    n = len(rows)
    get = lambda k, d=0: [r.get(k, d) for r in rows]  # noqa: E731
    batch = FlowBatch(
        {
            "time_received": np.array(get("recv", 1_000_000), dtype="int64"),
            "flow_start": np.array(get("start", 1_000_000), dtype="int64"),
            "flow_end": np.array(get("end", 1_000_000), dtype="int64"),
            "src_addr": np.array([ip_bytes(a) for a in get("src", "10.0.0.1")], dtype="V16"),
            "dst_addr": np.array([ip_bytes(a) for a in get("dst", "10.0.0.2")], dtype="V16"),
            "src_port": np.array(get("sport"), dtype="uint16"),
            "dst_port": np.array(get("dport"), dtype="uint16"),
            "proto": np.array(get("proto", 6), dtype="uint8"),
            "tcp_flags": np.array(get("flags"), dtype="uint16"),
            "packets": np.array(get("packets", 10), dtype="uint64"),
            "bytes": np.array(get("bytes", 1000), dtype="uint64"),
            "biflow": np.array(get("biflow"), dtype="uint8"),
            "biflow_direction": np.array(get("bdir"), dtype="uint8"),
            "exporter": np.array([ip_bytes(a) for a in get("exporter", "192.0.2.1")], dtype="V16"),
            "type": np.array(get("type", "ipfix"), dtype=object),
            "direction": np.array(get("direction", "unknown"), dtype=object),
            "src_node": np.array(get("src_node", ""), dtype=object),
            "dst_node": np.array(get("dst_node", ""), dtype=object),
            "exporter_node": np.array(get("exporter_node", ""), dtype=object),
        }
    )
    assert len(batch) == n
    return pa.Table.from_batches([batch.to_arrow()])


ROLES = [
    ("biflow forward, initiator", {"biflow": 1, "bdir": 1, "sport": 443, "dport": 50000}, "src", "biflow"),
    ("biflow reverse half, initiator", {"biflow": 2, "bdir": 1, "sport": 50000, "dport": 443}, "dst", "biflow"),
    ("biflow, reverse initiator", {"biflow": 1, "bdir": 2}, "dst", "biflow"),
    ("ICMP echo request", {"proto": 1, "dport": 8 * 256}, "src", "icmp"),
    ("ICMP echo reply", {"proto": 1, "dport": 0}, "dst", "icmp"),
    ("a SYN alone", {"flags": 0x02, "sport": 80, "dport": 50000}, "src", "tcp_syn"),
    ("a SYN-ACK packet", {"flags": 0x12, "packets": 1, "sport": 40000, "dport": 50000}, "dst", "tcp_synack"),
    ("listening port from metadata", {"dst": "10.0.0.2", "dport": 31000, "sport": 40000}, "src", "service_port"),
    ("reply from a listening port", {"src": "10.0.0.2", "dst": "10.0.0.1", "sport": 31000, "dport": 40000}, "dst",
     "service_port"),
    ("well-known port", {"sport": 51000, "dport": 443}, "src", "well_known"),
    ("reply from a well-known port", {"sport": 22, "dport": 51000}, "dst", "well_known"),
    ("registered service port", {"sport": 5432, "dport": 20000}, "dst", "registered_port"),
    ("ephemeral client", {"sport": 45000, "dport": 20000}, "src", "ephemeral"),
    ("lower port as a last resort", {"sport": 20000, "dport": 21000}, "dst", "lower_port"),
    ("nothing to go by", {"sport": 0, "dport": 0}, "", ""),
]  # fmt: skip


class _V:
    def __init__(self, kind, key, attrs):
        self.kind, self.key, self.attrs, self.valid_to = kind, key, attrs, 2**62


LISTENING = Listening([_V("pod", "ns/cache-0", {"ip": "10.0.0.2", "ports": [31000], "namespace": "ns"})])


@pytest.mark.parametrize(("row", "initiator", "method"), [c[1:] for c in ROLES], ids=[c[0] for c in ROLES])
def test_roles(row, initiator, method):
    init, meth = roles(flows([row]), LISTENING)
    assert (INITIATOR_NAMES[int(init[0])], METHOD_NAMES[int(meth[0])]) == (initiator, method)


def test_service_selectors_name_the_listening_pods():
    versions = [
        _V("pod", "ns/a", {"ip": "10.0.0.5", "namespace": "ns", "labels": {"app": "x"}}),
        _V("pod", "other/b", {"ip": "10.0.0.6", "namespace": "other", "labels": {"app": "x"}}),
        _V("service", "ns/x", {"namespace": "ns", "cluster_ips": ["10.96.0.10"], "ports": [80],
                               "target_ports": [8080], "selector": {"app": "x"}}),
    ]  # fmt: skip
    lst = Listening(versions)
    table = flows(
        [{"dst": d, "dport": p} for d, p in (("10.0.0.5", 8080), ("10.0.0.6", 8080), ("10.96.0.10", 80))]
    )
    from netobs.observations import addr_words

    hi, lo = addr_words(table.column("dst_addr"))
    assert lst.contains(hi, lo, np.array([8080, 8080, 80], dtype=np.uint64)).tolist() == [True, False, True]


# ---- event time --------------------------------------------------------------------------------------
def test_event_time_falls_back_to_the_receive_time_on_a_broken_clock():
    day = 86_400_000
    t = 1_800_000_000_000
    table = flows(
        [
            {"recv": t, "start": t - 90_000, "end": t - 30_000},  # a sane record
            {"recv": t, "start": 0, "end": 0},  # no times at all
            {"recv": t, "start": t - 60_000, "end": t + 3_600_000},  # ends an hour in the future
            {"recv": t, "start": t - 3 * day, "end": t - 2 * day},  # older than the export lag allows
            {"recv": t, "start": t - 10 * day, "end": t - 1000},  # a long flow: at most a day before its end
        ]
    )
    start, end = event_times(table)
    assert end.tolist() == [t - 30_000, t, t, t, t - 1000]
    assert start.tolist() == [t - 90_000, t, t, t, t - 1000 - day]  # a broken end: all at the receive time


# ---- learning exporters --------------------------------------------------------------------------------
def _same_flows_both_ways(exporter: str, node: str) -> pa.Table:
    rows = []
    for i in range(20):
        for d in ("ingress", "egress"):
            rows.append({"exporter": exporter, "exporter_node": node, "src_node": node, "direction": d,
                         "sport": 40000 + i, "dport": 443})  # fmt: skip
    return flows(rows)


def test_an_exporter_reporting_the_same_flows_at_ingress_and_egress_is_dual_and_counts_once():
    counter = Counter(Observations())
    out = counter.apply(_same_flows_both_ways("192.0.2.11", "n1"))
    assert out.column("counted").to_pylist() == [1, 0] * 20
    assert set(out.column("count_reason").to_pylist()) == {"source_node", "dual_direction_copy"}
    assert set(out.column("observer").to_pylist()) == {"ovs_bridge_ipfix"}


def test_a_probe_marking_egress_only_is_single_and_counts_everything():
    counter = Counter(Observations(CountingConfig(dual_detect_rows=30)))
    rows = [{"exporter": "192.0.2.12", "exporter_node": "n2", "src_node": "n2", "direction": "egress",
             "sport": 40000 + i, "dport": 443} for i in range(40)]  # fmt: skip
    out = counter.apply(flows(rows))
    assert out.column("counted").to_pylist() == [1] * 40
    assert counter.observations.exporters[("192.0.2.12", "ipfix", 0)].directions == "single"
    assert set(out.column("observer").to_pylist()) == {"node_ipfix"}


def test_config_declares_a_router_with_its_center():
    cfg = CountingConfig.model_validate(
        {"exporters": [{"match": "198.18.0.0/16", "center": "dc1", "count": "auto"}]}
    )
    counter = Counter(Observations(cfg))
    table = flows([{"exporter": "198.18.1.1", "src": "203.0.113.1", "dport": 443, "sport": 50000}])
    table = table.set_column(table.schema.get_field_index("dst_node"), "dst_node", pa.array([""]))
    table = table.set_column(table.schema.get_field_index("dst_center"), "dst_center", pa.array(["dc1"]))
    out = counter.apply(table)
    assert out.column("count_reason").to_pylist() == ["device_destination_center"]
    assert out.column("observer").to_pylist() == ["device_flow"]


def test_learned_exporters_survive_a_restart_in_the_store(tmp_path):
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    try:
        obs = Observations()
        ObservationTable(store, "netobs").attach(obs)
        Counter(obs).apply(_same_flows_both_ways("192.0.2.11", "n1"))
        again = Observations()
        ObservationTable(store, "netobs").attach(again)
        e = again.exporters[("192.0.2.11", "ipfix", 0)]
        assert (e.directions, e.node) == ("dual", "n1")
        assert again.covered_nodes == {"n1"}
    finally:
        store.stop()


def test_pairs_are_matched_per_exporter_across_batches():
    """A flow seen at ingress by its sender's node in one batch and at egress by the receiver's node in
    the next is not one exporter reporting both directions (batch-local exporter codes once said so)."""
    counter = Counter(Observations())
    first = [{"exporter": "192.0.2.11", "exporter_node": "n1", "direction": "ingress", "sport": 40000 + i,
              "dport": 443} for i in range(10)]  # fmt: skip
    second = [{"exporter": "192.0.2.12", "exporter_node": "n2", "direction": "egress", "sport": 40000 + i,
               "dport": 443} for i in range(10)]  # fmt: skip
    counter.apply(flows(first))
    counter.apply(flows(second))
    assert {e.directions for e in counter.observations.exporters.values()} == {""}  # neither is dual


def test_no_exporter_is_taken_for_dual_by_a_hash_collision():
    """Many flows, each sent by one node (ingress) and received by another (egress): no exporter reports
    a flow both ways, and none may be classified so (a linear hash once paired unrelated flows)."""
    rng = np.random.default_rng()
    n = 40_000
    nodes = rng.integers(1, 40, (n, 2))
    rows = []
    for i in range(n):
        a, b = (int(x) for x in nodes[i])
        src, dst = f"10.{a}.{i % 250}.{i // 250 % 250}", f"10.{b}.{i % 7}.{i // 7 % 250}"
        common = {"src": src, "dst": dst, "sport": int(rng.integers(1024, 65535)), "dport": 443}
        rows.append({**common, "exporter": f"192.0.2.{a}", "exporter_node": f"n{a}", "direction": "ingress"})
        rows.append(
            {**common, "exporter": f"192.0.2.{b + 100}", "exporter_node": f"m{b}", "direction": "egress"}
        )
    counter = Counter(Observations(CountingConfig(dual_detect_rows=10**9)))
    counter.apply(flows(rows))
    assert not [e for e in counter.observations.exporters.values() if e.directions == "dual"]


def test_a_node_exporting_twice_counts_once_through_its_preferred_exporter():
    """One node sends sFlow and bridge IPFIX, and a probe in another observation domain: one counts."""
    rows = []
    for i in range(10):
        common = {"exporter": "192.0.2.11", "exporter_node": "n1", "src_node": "n1", "sport": 40000 + i,
                  "dport": 443}  # fmt: skip
        rows += [{**common, "type": "ipfix", "direction": d} for d in ("ingress", "egress")]
        rows += [{**common, "type": "sflow"}, {**common, "type": "ipfix", "domain": 7}]
    table = flows(rows)
    table = table.set_column(
        table.schema.get_field_index("observation_domain"), "observation_domain",
        pa.array([r.get("domain", 1) for r in rows], pa.uint32()),
    )  # fmt: skip
    out = Counter(Observations()).apply(table).to_pylist()
    got = {(r["type"], r["direction"], r["count_reason"]) for r in out}
    assert got == {
        ("ipfix", "ingress", "source_node"),
        ("ipfix", "egress", "dual_direction_copy"),
        ("sflow", "unknown", "other_exporter_of_node"),
        ("ipfix", "unknown", "other_exporter_of_node"),  # the probe, in its own domain
    }
    assert sum(r["counted"] for r in out) == 10


def test_a_replica_learns_what_another_one_learned_from_the_store(tmp_path):
    """Two pipeline replicas share the store: the second knows the first's dual exporter after a reload."""
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    try:
        first, second = Observations(), Observations()
        ObservationTable(store, "netobs").attach(first)
        table = ObservationTable(store, "netobs")
        table.attach(second)
        Counter(first).apply(_same_flows_both_ways("192.0.2.11", "n1"))
        table.reload_interval_s = 0
        out = Counter(second).apply(flows([{"exporter": "192.0.2.11", "exporter_node": "n1", "src_node": "n1",
                                            "direction": "egress", "sport": 1, "dport": 443}]))  # fmt: skip
        assert out.column("count_reason").to_pylist() == ["dual_direction_copy"]
    finally:
        store.stop()


@pytest.mark.parametrize(
    "section",
    [
        {"exporters": [{"match": ["not-an-address"]}]},
        {"exporters": [{"match": []}]},
        {"exporters": [{"match": ["10.0.0.0/8"], "observer": "teleporter"}]},
        {"exporters": [{"match": ["10.0.0.0/8"], "count": "sometimes"}]},
        {"covered_nodes": "some"},
        {"allowed_lateness_s": -1},
        {"unknown_key": 1},
    ],
)
def test_a_garbage_counting_section_is_refused_with_its_key(tmp_path, section):
    import yaml

    from netobs.config import ConfigError, load

    path = tmp_path / "netobs.yaml"
    path.write_text(yaml.safe_dump({"counting": section}))
    with pytest.raises(ConfigError, match="counting"):
        load(path)
