"""The counting model on real exporters: one OVS node, three exporters, the same traffic.

One OVS lab is the node ``node-1`` (its exporters send from 127.0.0.1, the node's address in the
inventory). Its pods talk over the bridge while three real exporters watch the same packets:

- Open vSwitch bridge IPFIX (sampling 1): every flow at the bridge's ingress *and* at its egress;
- Open vSwitch sFlow (sampling 1, 128-byte headers): every packet once, as it enters the bridge;
- softflowd 1.1 (IPFIX) on a capture of what each pod sent (tcpdump ``-Q in`` on the pod's bridge
  port, so each packet is captured once), one flow record per direction.

Each exporter's datagrams are decoded and go through the real enrichment (inventory: the pods, their
container ports, the node) into a chdb store of their own. Summed over ``counted = 1`` records and
oriented by ``initiator``, every conversation must show the same packets each way, the same bytes
up to framing, and the same client and server in all three, those of the traffic that was sent;
the bridge's egress copies must be stored and not counted, and the bridge must be recognised as
reporting each flow twice from the conversations alone (without the ARP broadcasts).

A probe and the bridge exporting IPFIX from the same node address to one collector are two observation
points (other observation domain) of one node, which counts through one of them.
"""

from __future__ import annotations

import re
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import pytest
import yaml

from collectors.decoder import Decoder
from netobs.batch import FlowBatch
from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.store import make_store
from netobs_app.settings import Settings
from pipeline.config import EnrichConfig
from pipeline.enrich import make_enricher
from pipeline.enrich_ingest import Ingest
from tests.services._require import unavailable
from tests.services.ovs import LabError, OvsLab, lab_unavailable_reason

pytestmark = pytest.mark.integration

NODE = "node-1"
NAMESPACE = "lab"
EXPORTER = "127.0.0.1"
#: (client pod, server pod, server port, client port, bytes) of each TCP conversation.
TCP = (
    ("pod1", "pod2", 8080, 41001, 150_000),
    ("pod3", "pod1", 31000, 41002, 20_000),
    ("pod2", "pod3", 5432, 41003, 60_000),
)
#: UDP: pod1 asks pod3:53 (UDP_QUERIES datagrams), pod3 answers from 53 (UDP_ANSWERS).
UDP_CLIENT_PORT = 41004
UDP_QUERIES, UDP_QUERY_SIZE = 10, 60
UDP_ANSWERS, UDP_ANSWER_SIZE = 10, 180
#: Ports the server pods' containers listen on (inventory ``ports``).
LISTENING = {"pod1": [31000], "pod2": [8080], "pod3": [53, 5432]}
#: sFlow's frame length counts the Ethernet header (14) and the FCS (4) beyond the IP packet.
SFLOW_FRAMING = 14 + 4
ATTEMPTS = 3
SO_RCVBUFFORCE = 33  # linux/socket.h (not exported by the socket module)
EXPORTERS = ("ovs_ipfix", "ovs_sflow", "softflowd")


class Sink:
    """A UDP socket on 127.0.0.1 keeping every datagram with its receive time (ms) and source address."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        try:  # root: beyond net.core.rmem_max, so a burst of exports is not dropped by the socket
            self.sock.setsockopt(socket.SOL_SOCKET, SO_RCVBUFFORCE, 8 << 20)
        except OSError:
            self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 8 << 20)
        self.sock.bind((EXPORTER, 0))
        self.sock.settimeout(0.1)
        self.port = self.sock.getsockname()[1]
        self.datagrams: list[tuple[int, tuple[str, int], bytes]] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._drain, daemon=True)
        self._thread.start()

    def _drain(self) -> None:
        while not self._stop.is_set():
            try:
                data, addr = self.sock.recvfrom(65535)
            except TimeoutError:
                continue
            except OSError:
                return
            self.datagrams.append((int(time.time() * 1000), addr, data))

    def idle(self, quiet_s: float = 0.5, limit_s: float = 10.0) -> None:
        """Wait (bounded) until nothing arrived for quiet_s."""
        deadline = time.monotonic() + limit_s
        seen = -1
        while time.monotonic() < deadline and seen != len(self.datagrams):
            seen = len(self.datagrams)
            time.sleep(quiet_s)

    def close(self) -> list[tuple[int, tuple[str, int], bytes]]:
        self._stop.set()
        self._thread.join(2)
        self.sock.close()
        return self.datagrams


def _stop(proc: subprocess.Popen, sig: int = signal.SIGINT) -> str:
    """Stop a process we started, by its PID; its stderr."""
    if proc.poll() is None:
        proc.send_signal(sig)
    try:
        _, err = proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        _, err = proc.communicate(timeout=5)
    return err or ""


def _tcpdump(iface: str, path: Path) -> subprocess.Popen:
    """tcpdump on a pod's bridge port, packets the pod sent only (-Q in: received by the bridge side)."""
    cmd = ["tcpdump", "-i", iface, "-Q", "in", "-n", "-s", "0", "-B", "16384", "-U"]
    cmd += ["-Z", "root", "-w", str(path), "ip or ip6"]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    line = ""
    for _ in range(5):  # "listening on IFACE" once the filter is in place
        line = proc.stderr.readline()
        if not line or "listening on" in line:
            break
    if "listening on" not in line:
        err = _stop(proc)
        raise RuntimeError(f"tcpdump on {iface} did not start: {line.strip()} {err.strip()}")
    return proc


def _softflowd(pcap: Path, work: Path) -> list[tuple[int, tuple[str, int], bytes]]:
    """softflowd in file mode (IPFIX, no control socket) on the merged capture; its datagrams."""
    sink = Sink()
    pidfile = work / "softflowd.pid"
    cmd = ["softflowd", "-d", "-r", str(pcap), "-n", f"{EXPORTER}:{sink.port}", "-v", "10", "-A", "milli"]
    cmd += ["-c", "none", "-p", str(pidfile)]
    proc = subprocess.Popen(
        cmd, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True
    )
    try:
        try:
            _, err = proc.communicate(timeout=30)
        except subprocess.TimeoutExpired:
            err = _stop(proc, signal.SIGTERM)
            raise AssertionError(f"softflowd did not finish the capture: {err}") from None
        assert proc.returncode == 0, f"softflowd failed ({proc.returncode}): {err}"
        sink.idle(0.3, 5)
    finally:
        if proc.poll() is None:
            _stop(proc, signal.SIGTERM)
        got = sink.close()
        pidfile.unlink(missing_ok=True)
    return got


def _inventory(lab, path: Path) -> Path:
    pods = []
    for p in lab.pods:
        pod = {"name": p.name, "namespace": NAMESPACE, "ip": p.ip, "node": NODE, "workload": p.name}
        if p.ip6:
            pod["ips"] = [p.ip6]
        if p.name in LISTENING:
            pod["ports"] = LISTENING[p.name]
        pods.append(pod)
    inv = {
        "sites": [{"name": "lab", "centers": [{"name": "dc1", "nodes": [{"name": NODE, "ip": EXPORTER}]}]}],
        "networks": [{"name": "lab-pods", "cidr": "10.244.1.0/24", "vpc": "lab-vpc", "center": "dc1"}],
        "namespaces": [{"name": NAMESPACE, "tenant": "lab"}],
        "pods": pods,
    }
    path.write_text(yaml.safe_dump(inv, sort_keys=False))
    return path


ROWS = """
SELECT type, direction, observer, exporter_node, counted, count_reason, initiator, role_method,
       replaceOne(toString(src_addr), '::ffff:', '') AS src, src_port,
       replaceOne(toString(dst_addr), '::ffff:', '') AS dst, dst_port, proto,
       toUInt64(packets) AS packets, toUInt64(bytes) AS bytes, sampling_rate,
       toUnixTimestamp64Milli(event_start) AS event_start_ms, toUnixTimestamp64Milli(event_end) AS event_end_ms
FROM `{db}`.flows
WHERE proto IN (6, 17)
ORDER BY src, src_port, dst, dst_port, direction
"""


def _ingest(
    name: str, datagrams, inventory: Path, work: Path, keep=None, per_datagram: bool = False
) -> list[dict]:
    """Datagrams → decode → the real enrichment → a chdb store of their own (one chdb path per process
    at a time: each store is stopped before the next starts); its flow rows."""
    settings = Settings(
        store=StoreConfig(chdb=ChdbStoreConfig(path=work / f"chdb-{name}"), retention_days=0),
        enrich=EnrichConfig(inventory=inventory),
    )
    store = make_store(settings.store)
    store.start()
    try:
        ingest = Ingest(make_enricher(settings, store), store, progress=None)
        decoder = Decoder()
        for received_ms, (addr, port), payload in datagrams:
            out = decoder.decode(payload, addr, received_ms, session=f"{addr}:{port}")
            flows = out.flows
            if keep is not None and len(flows):  # only the records keep() selects
                mask = keep(flows.columns)
                flows = FlowBatch({k: v[mask] for k, v in flows.columns.items()})
            ingest.add(flows, sum(out.errors.values()), out.counters)
            if per_datagram:  # a batch per datagram, as a live collector under light load sends them
                ingest.flush()
        ingest.flush()
        assert ingest.rejects == 0, f"{name}: {ingest.rejects} records refused by the decoder"
        return store.query_arrow(ROWS.format(db=settings.store.database)).to_pylist()
    finally:
        store.stop()


def _run_traffic(lab, attempt: int) -> list:
    """The conversations of one attempt (client ports shifted per attempt: no TIME_WAIT reuse)."""
    shift = 100 * attempt
    sent = []
    for client, server, port, sport, nbytes in TCP:
        sent.append(lab.tcp_transfer(client, server, port=port, nbytes=nbytes, sport=sport + shift))
    uport = UDP_CLIENT_PORT + shift
    sent.append(lab.udp_send("pod1", "pod3", port=53, count=UDP_QUERIES, size=UDP_QUERY_SIZE, sport=uport))
    sent.append(lab.udp_send("pod3", "pod1", port=uport, count=UDP_ANSWERS, size=UDP_ANSWER_SIZE, sport=53))
    return sent


def _lossy(sent) -> list:
    """Exchanges where a packet was resent or lost: their sent counts are not the truth."""
    return [
        t
        for t in sent
        if (t.tcp and t.tcp["total_retrans"])
        or t.received_bytes != t.sent_bytes
        or (t.proto == "udp" and t.received_packets != t.sent_packets)
    ]


def _observe(lab, work: Path) -> tuple[list, dict, int]:
    """Run the traffic under all three exporters; (traffic, exporter → datagrams, attempts). Retries an
    attempt in which a pod resent or lost a packet (its sent counts would not be the truth) or a capture
    dropped one (a busy machine)."""
    for attempt in range(ATTEMPTS):
        d = work / f"attempt{attempt}"
        d.mkdir()
        sinks = {"ovs_ipfix": Sink(), "ovs_sflow": Sink()}
        dumps: dict[str, tuple[subprocess.Popen, Path]] = {}
        # Every attempt starts like the first: empty neighbour caches, so the pods ARP again (OVS floods the
        # broadcast: the bridge reports it at ingress and at each egress port).
        for p in lab.pods:
            subprocess.run(["ip", "-n", p.netns, "neigh", "flush", "all"], check=True, timeout=10)
        try:
            for p in lab.pods:
                path = d / f"{p.name}.pcap"
                dumps[p.name] = (_tcpdump(p.host_if, path), path)
            # Both listen before OVS is told about them: its IPFIX templates go out at the start.
            lab.enable_ipfix(sinks["ovs_ipfix"].port, sampling=1, cache_active_timeout=2)
            lab.enable_sflow(sinks["ovs_sflow"].port, sampling=1, header=128)
            time.sleep(0.5)
            sent = _run_traffic(lab, attempt)
            lab.flush_exports()
            lab.disable_exports()  # sFlow ships its buffer; removing IPFIX exports its cache
            for s in sinks.values():
                s.idle()
        finally:
            if lab.ipfix or lab.sflow:
                lab.disable_exports()
            got = {name: s.close() for name, s in sinks.items()}
            errs = {name: _stop(proc) for name, (proc, _) in dumps.items()}
        # softflowd must see every packet: a capture that dropped some is retried like lost traffic.
        dropped = {n: e for n, e in errs.items() if not re.search(r"^0 packets dropped by kernel", e, re.M)}
        problems = _lossy(sent) + [f"tcpdump on {n}: {' '.join(e.split())}" for n, e in dropped.items()]
        if problems and attempt < ATTEMPTS - 1:
            continue
        assert not problems, f"every attempt lost, resent or failed to capture packets: {problems}"
        merged = d / "pods.pcap"
        subprocess.run(
            ["mergecap", "-F", "pcap", "-w", str(merged), *(str(path) for _, path in dumps.values())],
            check=True, capture_output=True, timeout=30,
        )  # fmt: skip
        got["softflowd"] = _softflowd(merged, d)
        for name, datagrams in got.items():
            assert datagrams, f"{name} exported nothing"
            assert {addr for _, (addr, _), _ in datagrams} == {EXPORTER}
        return sent, got, attempt + 1
    raise AssertionError("unreachable")


def _key(t) -> tuple:
    """(client ip, client port, server ip, server port, proto) of a conversation the test started."""
    return (t.src_ip, t.src_port, t.dst_ip, t.dst_port, 6 if t.proto == "tcp" else 17)


def _conversations(sent) -> dict[tuple, dict]:
    """Conversation key → what was sent each way (UDP: the query and the answer exchanges are one)."""
    out: dict[tuple, dict] = {}
    for t in sent:
        if t.proto == "tcp":
            out[_key(t)] = {"c2s_packets": t.tcp["segs_out"], "s2c_packets": t.tcp["segs_in"], "sent": t}
    query, answer = [t for t in sent if t.proto == "udp"]
    out[_key(query)] = {
        "c2s_packets": query.sent_packets,
        "s2c_packets": answer.sent_packets,
        "c2s_bytes": query.sent_bytes + 28 * query.sent_packets,  # IP octets: payload + UDP 8 + IPv4 20
        "s2c_bytes": answer.sent_bytes + 28 * answer.sent_packets,
        "sent": query,
    }
    return out


def _totals(rows: list[dict], keys: set[tuple]) -> dict[tuple, dict]:
    """Counted records of our conversations, oriented by the initiator: key → packets/bytes each way."""
    out: dict[tuple, dict] = defaultdict(lambda: defaultdict(int))
    for r in rows:
        if not r["counted"]:
            continue
        fwd = (r["src"], r["src_port"], r["dst"], r["dst_port"], r["proto"])
        rev = (r["dst"], r["dst_port"], r["src"], r["src_port"], r["proto"])
        if fwd not in keys and rev not in keys:
            continue
        if r["initiator"] == "src":
            key, way = fwd, "c2s"
        elif r["initiator"] == "dst":
            key, way = rev, "s2c"
        else:
            key, way = (fwd if fwd in keys else rev), "unknown"
        out[key][f"{way}_packets"] += r["packets"]
        out[key][f"{way}_bytes"] += r["bytes"]
        out[key][f"{way}_records"] += 1
    return {k: dict(v) for k, v in out.items()}


def _ours(rows: list[dict], keys: set[tuple]) -> list[dict]:
    def mine(r):
        fwd = (r["src"], r["src_port"], r["dst"], r["dst_port"], r["proto"])
        rev = (r["dst"], r["dst_port"], r["src"], r["src_port"], r["proto"])
        return fwd in keys or rev in keys

    return [r for r in rows if mine(r)]


def _summary(name: str, rows: list[dict]) -> str:
    """Per record kind: what the model made of it (for failure messages and the report)."""
    agg: dict[tuple, list[int]] = defaultdict(lambda: [0, 0, 0])
    for r in rows:
        k = (r["src"], r["src_port"], r["dst"], r["dst_port"], r["proto"], r["direction"], r["observer"],
             r["counted"], r["count_reason"], r["initiator"], r["role_method"])  # fmt: skip
        agg[k][0] += 1
        agg[k][1] += r["packets"]
        agg[k][2] += r["bytes"]
    lines = [f"{name}: src sport dst dport proto direction observer counted reason initiator method: n pk B"]
    lines += [f"  {' '.join(map(str, k))}: {' '.join(map(str, v))}" for k, v in sorted(agg.items())]
    return "\n".join(lines)


@pytest.fixture(scope="module")
def observed(tmp_path_factory: pytest.TempPathFactory) -> dict:
    """One lab, the traffic under three exporters, each exporter's records in a store of its own."""
    if reason := lab_unavailable_reason():
        unavailable(reason)
    for tool in ("tcpdump", "mergecap", "softflowd"):
        if shutil.which(tool) is None:
            unavailable(f"{tool} not installed (scripts/install-services.sh)")
    work = tmp_path_factory.mktemp("counting-live")
    lab = OvsLab(work / "ovs", pods=3)
    try:
        lab.start()
    except (LabError, OSError, subprocess.SubprocessError) as exc:
        unavailable(f"OVS lab failed to start: {exc}\n{lab.log_tail()}")
    try:
        inventory = _inventory(lab, work / "inventory.yaml")
        sent, datagrams, attempts = _observe(lab, work)
    finally:
        lab.stop()
    truth = _conversations(sent)
    keys = set(truth)
    rows = {name: _ingest(name, datagrams[name], inventory, work) for name in EXPORTERS}
    ours = {name: _ours(rows[name], keys) for name in EXPORTERS}
    report = f"traffic attempts: {attempts}\n" + "\n".join(_summary(name, ours[name]) for name in EXPORTERS)
    print(report)  # shown with -s, and in the failure of any test below
    return {
        "sent": sent, "truth": truth, "keys": keys, "datagrams": datagrams, "inventory": inventory,
        "work": work, "ours": ours, "report": report,
        "totals": {name: _totals(rows[name], keys) for name in EXPORTERS},
    }  # fmt: skip


def test_each_exporter_is_one_observation_point_on_the_node(observed):
    """All pods live on node-1, the exporters' node: every exporter counts what it saw leave a pod
    (``source_node``), and every record of the conversations is oriented (SYN / SYN-ACK, the container
    ports in the inventory, port 53)."""
    ours, report = observed["ours"], observed["report"]
    kinds = {"ovs_ipfix": "ovs_bridge_ipfix", "ovs_sflow": "ovs_sflow", "softflowd": "node_ipfix"}
    for name in EXPORTERS:
        assert ours[name], f"{name}: none of our conversations stored\n{report}"
        assert {r["observer"] for r in ours[name]} == {kinds[name]}, f"{name}\n{report}"
        assert {r["exporter_node"] for r in ours[name]} == {NODE}, f"{name}\n{report}"
        assert all(r["initiator"] in ("src", "dst") for r in ours[name]), (
            f"{name}: unknown initiator\n{report}"
        )
        counted = {r["count_reason"] for r in ours[name] if r["counted"]}
        assert counted == {"source_node"}, f"{name}\n{report}"
        assert set(observed["totals"][name]) == observed["keys"], f"{name}\n{report}"
    # sFlow and softflowd report each packet once: they count every record they send.
    for name in ("ovs_sflow", "softflowd"):
        assert all(r["counted"] for r in ours[name]), f"{name}\n{report}"


def test_bridge_ipfix_egress_copies_are_stored_not_counted(observed):
    """OVS bridge IPFIX reports each flow at the bridge's ingress and again at its egress: both are in the
    raw table, the egress copy is ``dual_direction_copy`` and carries the same packets and bytes."""
    ipfix, report = observed["ours"]["ovs_ipfix"], observed["report"]
    for direction, flag, reason in (("ingress", 1, "source_node"), ("egress", 0, "dual_direction_copy")):
        got = [r for r in ipfix if r["direction"] == direction]
        assert got, f"no {direction} records from the bridge\n{report}"
        assert {(r["counted"], r["count_reason"]) for r in got} == {(flag, reason)}, report
    per_flow: dict[tuple, dict[str, list[int]]] = defaultdict(lambda: defaultdict(lambda: [0, 0]))
    for r in ipfix:
        s = per_flow[(r["src"], r["src_port"], r["dst"], r["dst_port"], r["proto"])][r["direction"]]
        s[0] += r["packets"]
        s[1] += r["bytes"]
    assert len(per_flow) == 2 * len(observed["keys"]), report  # every conversation, both ways
    for flow, dirs in per_flow.items():
        assert set(dirs) == {"ingress", "egress"} and dirs["ingress"] == dirs["egress"], (
            f"{flow}: {dict(dirs)}"
        )


def test_same_totals_and_roles_from_every_exporter(observed):
    """Per conversation, counted records oriented by the initiator: the client is the end that opened it
    and the packets each way are what the pods sent, in all three exporters (sampling 1: exact)."""
    totals, report = observed["totals"], observed["report"]
    for key, want in observed["truth"].items():
        got = {name: totals[name][key] for name in EXPORTERS}
        where = f"{key}: {got}\n{report}"
        for name, g in got.items():
            assert "unknown_packets" not in g, where
            assert g.get("c2s_packets") == want["c2s_packets"], f"{name} client->server packets {where}"
            assert g.get("s2c_packets") == want["s2c_packets"], f"{name} server->client packets {where}"
        # Bytes. OVS bridge IPFIX (octetDeltaCount) and softflowd count IP octets (IP header onwards);
        # sFlow's frame length adds the Ethernet header and the FCS to every packet.
        for way in ("c2s", "s2c"):
            ip_bytes = got["ovs_ipfix"][f"{way}_bytes"]
            assert got["softflowd"][f"{way}_bytes"] == ip_bytes, f"softflowd {way} bytes {where}"
            framing = SFLOW_FRAMING * got["ovs_sflow"][f"{way}_packets"]
            assert got["ovs_sflow"][f"{way}_bytes"] == ip_bytes + framing, f"sFlow {way} bytes {where}"
            if f"{way}_bytes" in want:  # UDP: payload + headers is known exactly
                assert ip_bytes == want[f"{way}_bytes"], f"{way} bytes {where}"
        if want["sent"].proto == "tcp":
            assert got["ovs_ipfix"]["c2s_bytes"] > want["sent"].sent_bytes  # payload + IP/TCP headers


def test_event_time_of_every_record_is_in_the_run(observed):
    """Event time of every record: IPFIX, the flow's start and end; sFlow has no timestamps (the export's
    receipt); softflowd, the capture's packet times. All within the run (plus the IPFIX active timeout
    and the sFlow tick)."""
    first = min(t.started for t in observed["sent"]) * 1000 - 1000
    last = max(t.ended for t in observed["sent"]) * 1000 + 6000
    for name in EXPORTERS:
        for r in observed["ours"][name]:
            span = (r["event_start_ms"], r["event_end_ms"])
            assert first <= span[0] <= span[1] <= last, f"{name}: {span} outside {(first, last)}: {r}"


def test_a_probe_and_bridge_ipfix_from_one_node_address_are_two_observation_points(observed):
    """softflowd and OVS bridge IPFIX exporting from the same node address to one collector (two IPFIX
    exporting processes: other source port, other observation domain) are two observation points."""
    merged = observed["datagrams"]["ovs_ipfix"] + observed["datagrams"]["softflowd"]
    rows = _ours(
        _ingest("ipfix+softflowd", merged, observed["inventory"], observed["work"]), observed["keys"]
    )
    summary = _summary("ovs_ipfix+softflowd, one store", rows)
    assert {r["observer"] for r in rows} == {"ovs_bridge_ipfix", "node_ipfix"}, summary
    # The only copies not counted are the bridge's egress records.
    copies = [r for r in rows if r["count_reason"] == "dual_direction_copy"]
    bridge_egress = [r for r in observed["ours"]["ovs_ipfix"] if r["direction"] == "egress"]
    assert len(copies) == len(bridge_egress), summary
    # One node, two exporting processes: the bridge counts, the probe's records are the same packets.
    counted = [r for r in rows if r["counted"]]
    assert {(r["observer"], r["count_reason"]) for r in counted} == {("ovs_bridge_ipfix", "source_node")}, (
        summary
    )
    probe = [r for r in rows if r["observer"] == "node_ipfix"]
    assert probe and {r["count_reason"] for r in probe} == {"other_exporter_of_node"}, summary


@pytest.mark.parametrize("per_datagram", [False, True], ids=["one-batch", "batch-per-datagram"])
def test_bridge_ipfix_is_dual_from_the_conversations_alone(observed, per_datagram):
    """The bridge's records of the conversations only, at ingress and at egress (left out: the ARP
    broadcasts, which also show that the bridge reports each flow twice): an exporter with a few flows,
    whatever their ports, is recognised as dual from them and counts each packet once; also when the
    ingress and the egress record of a flow arrive in different batches (OVS sends one record per
    datagram here)."""
    rows = _ingest(
        f"ipfix-conversations-{per_datagram}",
        observed["datagrams"]["ovs_ipfix"],
        observed["inventory"],
        observed["work"],
        keep=lambda c: np.isin(c["proto"], (6, 17)),
        per_datagram=per_datagram,
    )
    ours = _ours(rows, observed["keys"])
    summary = _summary(f"ovs_ipfix, TCP and UDP records only, per datagram: {per_datagram}", ours)
    for r in ours:
        assert r["counted"] == (r["direction"] == "ingress"), summary
    # Records stored before the first ingress/egress pair was seen are labelled with what was known then
    # (node_ipfix: a probe reporting once); OVS sends a flow's ingress record before its egress record,
    # so those are ingress records, which count either way.
    late = [r for r in ours if r["observer"] != "ovs_bridge_ipfix"]
    assert all(r["direction"] == "ingress" for r in late), summary
