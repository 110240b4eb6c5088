"""Template withdrawal, limits (template bombs), state that survives a restart, PSAMP."""

from __future__ import annotations

import json
import socket
import struct
import time

from collectors._templates import Limits
from collectors.config import CollectorConfig, ListenerConfig
from collectors.decoder import Decoder
from collectors.service import UdpCollector
from netobs.batch import ip_str
from netobs.config import InprocessTransportConfig
from netobs.transport.inprocess import InprocessTransport
from tests.collectors import _builders as b
from tests.collectors import _nf_builders as nf

EXP = "198.51.100.9"
T = 1_700_000_000_000
BASIC = [(8, 4), (12, 4), (2, 8), (1, 8)]
REC = b.record(BASIC, {8: "10.0.0.1", 12: "10.0.0.2", 2: 1, 1: 64})
DATA = b.ipfix_message([b.data_set(256, [REC])])


def _withdrawal(tid: int, set_id: int = 2) -> bytes:
    return b.ipfix_message([struct.pack(">HHHH", set_id, 8, tid, 0)])


def test_withdrawal_of_one_template_and_of_all():
    d = Decoder()
    d.decode(b.ipfix_message([b.template_set({256: BASIC, 257: BASIC})]), EXP, T)
    d.decode(_withdrawal(256), EXP, T)
    assert len(d.decode(DATA, EXP, T).flows) == 0
    assert len(d.decode(b.ipfix_message([b.data_set(257, [REC])]), EXP, T).flows) == 1
    d.decode(_withdrawal(2), EXP, T)  # template id 2: every template of the domain
    assert len(d.decode(b.ipfix_message([b.data_set(257, [REC])]), EXP, T).flows) == 0
    s = d.stats[EXP]
    assert (s.template_withdrawals, s.unknown_templates, s.errors) == (2, 2, {})


def test_template_limits_refuse_and_count():
    d = Decoder(limits=Limits(max_templates=3, max_fields=4))
    d.decode(b.ipfix_message([b.template_set({256 + i: BASIC for i in range(5)})]), EXP, T)
    d.decode(b.ipfix_message([b.template_set({300: BASIC + [(7, 2)]})]), EXP, T)
    d.decode(b.ipfix_message([b.template_set({256: BASIC})]), EXP, T)  # a refresh still fits
    bomb = nf.v9_packet([nf.v9_template_flowset({256 + i: [(8, 4)] for i in range(10)})])
    d.decode(bomb, EXP, T)
    assert d.stats[EXP].errors == {
        "ipfix:template_limit": 2,
        "ipfix:template_too_many_fields": 1,
        "netflow9:template_limit": 7,
    }
    assert len(d.ipfix.templates) == 3 and len(d.netflow9.templates) == 3


def test_state_survives_a_restart(tmp_path):
    d = Decoder()
    options = b.options_template_set(300, [(149, 4)], [(34, 4)])
    d.decode(b.ipfix_message([b.template_set({256: BASIC}), options]), EXP, T)
    d.decode(b.ipfix_message([b.data_set(300, [b.record([(149, 4), (34, 4)], {34: 32})])]), EXP, T)
    d.decode(nf.v9_packet([nf.v9_template_flowset({260: [(8, 4), (12, 4), (2, 4)]})], source_id=3), EXP, T)
    path = tmp_path / "state.json"
    d.save(path)
    fresh = Decoder()
    assert fresh.load(path) == 3
    out = fresh.decode(DATA, EXP, T)
    assert [ip_str(a) for a in out.flows.columns["src_addr"].tolist()] == ["10.0.0.1"]
    assert out.flows.columns["sampling_rate"].tolist() == [32]  # the options data survived too
    v9 = nf.v9_packet([nf.v9_data_flowset(260, [bytes([10, 0, 0, 1, 10, 0, 0, 2, 0, 0, 0, 5])])], source_id=3)
    assert fresh.decode(v9, EXP, T).flows.columns["packets"].tolist() == [5]
    assert Decoder().load(tmp_path / "missing.json") == 0
    path.write_text("{not json")
    assert Decoder().load(path) == 0
    path.write_text(
        json.dumps({"version": 1, "ipfix": {"templates": [["x", 1, 256, 0, [[1, 99999999, 0]]]]}})
    )
    assert Decoder().load(path) == 0  # a template _check_template-style nonsense is refused, not raised


def test_collector_saves_on_stop_and_loads_on_start(tmp_path):
    def run(datagrams):
        t = InprocessTransport(InprocessTransportConfig(max_batches=100))
        cfg = CollectorConfig(
            listeners=(ListenerConfig(listen="127.0.0.1:0"),), batch_max_delay_ms=20, state_dir=tmp_path
        )
        c = UdpCollector(cfg, t.producer())
        c.start()
        try:
            with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
                for d in datagrams:
                    s.sendto(d, c.addresses[0])
            time.sleep(0.4)
        finally:
            c.stop()
        return sum(m.table.num_rows for m in t.consumer().poll(0.1, 100))

    assert run([b.ipfix_message([b.template_set({256: BASIC})]), DATA]) == 1
    assert list(tmp_path.glob("templates-*.json"))
    assert run([DATA, DATA]) == 2  # no template in this run: it came from the saved state


def _psamp_message(frames: list[bytes], variable: bool) -> bytes:
    section = (315, b.VAR if variable else 160)
    fields = [(301, 8), (323, 8), (312, 2), section]
    recs = [b.record(fields, {301: i, 323: T + i, 312: len(f) + 4, 315: f}) for i, f in enumerate(frames)]
    return b.ipfix_message([b.template_set({400: fields}), b.data_set(400, recs)])


def test_psamp_frame_sections_are_parsed_like_sflow_headers():
    frames = [
        b.eth(b.tcp4(sport=1234, dport=80, flags="PA"), vlans=(42,)),
        b.eth(b.geneve(b.eth(b.udp4(src="10.9.0.1", dst="10.9.0.2")), vni=77)),
        b.eth(b.tcp6(hbh=True)),
    ]
    for variable in (False, True):
        out = Decoder().decode(_psamp_message(frames, variable), EXP, T)
        c = {k: v.tolist() for k, v in out.flows.columns.items()}
        assert c["type"] == ["psamp"] * 3
        assert [ip_str(a) for a in c["src_addr"]] == ["10.0.0.1", "10.9.0.1", "fd00::1"]
        assert c["vlan"][0] == 42 and c["tcp_flags"][0] == 0x18 and c["dst_port"] == [80, 53, 8080]
        assert c["tunnel_type"][1] == "geneve" and c["tunnel_id"][1] == 77
        assert c["packets"] == [1, 1, 1] and c["bytes"] == [len(f) + 4 for f in frames]
        assert c["flow_start"] == c["flow_end"] == [T, T + 1, T + 2]


def _metric(name: str, unit: str, **labels) -> float:
    """A sequence metric: one per unit (netobs_collector_sequence_<unit>_total)."""
    from collectors import metrics

    return sum(
        s.value
        for m in metrics.sequence[unit].collect()
        for s in m.samples
        if s.name.endswith("_total") and all(s.labels.get(k) == v for k, v in labels.items())
    )


def test_collector_exports_sequence_loss_metrics(tmp_path):
    before = _metric("sequence", type="netflow5", unit="records", kind="missing")
    rec = nf.v5_record("10.0.0.1", "10.0.0.2", 1, 2)
    t = InprocessTransport(InprocessTransportConfig(max_batches=100))
    c = UdpCollector(CollectorConfig(listeners=(ListenerConfig(listen="127.0.0.1:0"),)), t.producer())
    c.start()
    try:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
            for seq in (0, 2, 10):  # 2 records each: 2 -> 10 skips 6
                s.sendto(nf.v5_packet([rec, rec], seq=seq), c.addresses[0])
        time.sleep(0.4)
    finally:
        c.stop()
    assert _metric("sequence", type="netflow5", unit="records", kind="missing") - before == 6
