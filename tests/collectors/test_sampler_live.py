"""Pod packet samples for real: pods on an OVS bridge → ``netobs sample`` → Kafka → pipeline → chdb.

Pods are network namespaces on a real Open vSwitch bridge, their ports labelled as Kube-OVN
labels them (``external_ids:iface-id``). Real servers in pod2 (dnsmasq, ``openssl s_server``,
Python's http.server) and real clients in pod1 (dig, curl, ``openssl s_client``); the agent
captures the host ends of the pods' veths, publishes to a real Kafka broker, the pipeline
enriches and inserts into the embedded ClickHouse engine, next to sFlow flows of the same
bridge. A marker drawn at run time travels in every payload: no stored row and no Kafka
message may contain it.
"""

from __future__ import annotations

import secrets
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from collectors.config import CollectorConfig, ListenerConfig, PrivacyRule, SamplerConfig
from collectors.sampler import SampleAgent
from collectors.service import UdpCollector
from netobs import schema, wire
from netobs.config import ChdbStoreConfig, KafkaTransportConfig, StoreConfig
from netobs.store import make_store
from netobs.transport.kafka import KafkaTransport
from pipeline import Pipeline
from pipeline.config import PipelineConfig
from pipeline.enrich import Enricher
from pipeline.metadata.inventory import apply_inventory
from pipeline.metadata.versions import MetadataStore
from pipeline.samples import sample_transform
from tests.services._require import unavailable
from tests.services.ovs import in_netns

pytestmark = pytest.mark.integration
TOOLS = ("dnsmasq", "dig", "curl", "openssl", "tshark")
INVENTORY = """
sites: [{name: site-a, centers: [{name: dc1, role: production, nodes: [{name: node-1, ip: 192.0.2.11}]}]}]
networks: [{name: lab, cidr: 10.244.1.0/24, vpc: v, tenant: retail, zone: production, center: dc1}]
namespaces: [{name: shop, tenant: retail, zone: production}, {name: core, tenant: payments, zone: pci}]
pods:
  - {name: web-1, namespace: shop, ip: 10.244.1.11, node: node-1, workload: web}
  - {name: api-1, namespace: core, ip: 10.244.1.12, node: node-1, workload: api}
  - {name: dns-1, namespace: core, ip: 10.244.1.13, node: node-1, workload: dns}
"""


_KEY = (
    "agent",
    "capture_if",
    "capture_pod",
    "capture_namespace",
    "src_addr",
    "dst_addr",
    "src_port",
    "dst_port",
    "proto",
)
#: A conversation's rows of several agent flushes as one (what the README shows users).
CONVERSATIONS = (
    f"SELECT {', '.join(_KEY)}, sum(packets) AS packets, "
    + ", ".join(f"max({c.name}) AS {c.name}" for c in schema.L7_COLUMNS if c.name not in _KEY + ("packets",))
    + f" FROM netobs.l7_conversations GROUP BY {', '.join(_KEY)}"
)


def wait_until(predicate, timeout_s=40.0, every=0.5):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(every)
    return predicate()


class Servers:
    """Processes started in pods' namespaces, stopped by their PIDs."""

    def __init__(self, workdir: Path):
        self.workdir, self.procs = workdir, []

    def start(self, netns: str, *cmd: str) -> subprocess.Popen:
        log = open(self.workdir / f"{Path(cmd[0]).name}-{len(self.procs)}.log", "wb")
        p = subprocess.Popen(["ip", "netns", "exec", netns, *cmd], stdout=log, stderr=subprocess.STDOUT)
        self.procs.append(p)
        return p

    def stop(self):
        for p in self.procs:
            if p.poll() is None:
                p.terminate()
                try:
                    p.wait(5)
                except subprocess.TimeoutExpired:
                    p.kill()
                    p.wait(5)


def run_in(netns: str, *cmd: str, timeout: float = 15) -> subprocess.CompletedProcess:
    return subprocess.run(
        ["ip", "netns", "exec", netns, *cmd], capture_output=True, timeout=timeout, check=False
    )


def listening(netns, ip, port):
    def probe():
        with socket.socket() as s:
            s.settimeout(1)
            return s.connect_ex((ip, port)) == 0

    return in_netns(netns, probe)


def label_pods(lab, namespaces):
    """What Kube-OVN's CNI writes on each pod port."""
    for pod, (name, ns) in zip(lab.pods, namespaces, strict=True):
        lab.vsctl(
            "set", "Interface", pod.host_if, f"external_ids:iface-id={name}.{ns}", f"external_ids:pod_name={name}",
            f"external_ids:pod_namespace={ns}", f'external_ids:attached-mac="{pod.mac}"',
        )  # fmt: skip


@pytest.fixture
def tools():
    missing = [t for t in TOOLS if not shutil.which(t)]
    if missing:
        unavailable(f"missing {', '.join(missing)} (scripts/install-services.sh installs them)")


@pytest.fixture
def cert(tmp_path):
    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", key, "-out", crt, "-days", "1",
         "-subj", "/CN=secure.bank.example"], check=True, capture_output=True,
    )  # fmt: skip
    return key, crt


def test_pod_samples_with_l7_context_reach_the_store(
    tools, cert, ovs_lab, kafka_broker, topic_factory, tmp_path
):
    marker = "PAYLOADMARK" + secrets.token_hex(6).upper()
    print(f"payload marker: {marker}")
    lab = ovs_lab
    label_pods(lab, [("web-1", "shop"), ("api-1", "core"), ("dns-1", "core")])
    client, server, resolver = lab.pod("pod1"), lab.pod("pod2"), lab.pod("pod3")
    servers = Servers(tmp_path)
    topic = topic_factory(partitions=2)
    kcfg = KafkaTransportConfig(
        bootstrap_servers=(kafka_broker.bootstrap,), topic=topic, group_id=f"g-{topic}"
    )
    transport = KafkaTransport(kcfg)
    store = make_store(StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store.start()
    inv = tmp_path / "inventory.yaml"
    inv.write_text(INVENTORY)
    meta = MetadataStore()
    apply_inventory(meta, inv, strict=True)
    enricher = Enricher(meta)
    pipeline = Pipeline(
        PipelineConfig(max_batch_delay_ms=200),
        transport.consumer(),
        store,
        transform=enricher.enrich,
        sample_transform=sample_transform(enricher),
    )
    pipeline.start()
    collector = UdpCollector(
        CollectorConfig(listeners=(ListenerConfig(listen="127.0.0.1:0"),), batch_max_delay_ms=100),
        transport.producer(),
    )
    collector.start()
    cfg = SamplerConfig(
        node="node-1",
        bridge=lab.bridge,
        vsctl=("ovs-vsctl", f"--db=unix:{lab.workdir}/db.sock"),
        poll_s=0.5,
        sampling_rate=1,
        flush_interval_s=0.5,
        privacy_rules=(PrivacyRule(namespaces=("nobody",), mode="truncate"),),
    )
    agent = SampleAgent(cfg, transport.producer())
    try:
        key, crt = cert
        servers.start(
            resolver.netns, "dnsmasq", "--no-daemon", "--conf-file=/dev/null", "--pid-file", "--port=53", f"--listen-address={resolver.ip}",
            "--bind-interfaces", "--no-resolv", "--no-hosts", "--local=/bank.example/", "--address=/api.bank.example/10.244.1.12",
            f"--txt-record=t.bank.example,{'x' * 40}",
        )  # fmt: skip
        servers.start(server.netns, "openssl", "s_server", "-accept", "8443", "-key", key, "-cert", crt, "-www",
                      "-cipher", "AES128-SHA:@SECLEVEL=0", "-quiet")  # fmt: skip
        servers.start(
            server.netns, "python3", "-m", "http.server", "8080", "--bind", server.ip, "-d", str(tmp_path)
        )
        ovs_lab.enable_sflow(collector.addresses[0][1], sampling=1, header=128)
        agent.start()
        assert wait_until(lambda: len(agent.interfaces) == 3, 10), agent.errors
        for port in (8443, 8080):
            assert wait_until(lambda port=port: listening(server.netns, server.ip, port), 20), port

        dig = run_in(client.netns, "dig", f"@{resolver.ip}", "api.bank.example", "A", "+tries=3", "+time=2")
        assert b"10.244.1.12" in dig.stdout, dig.stdout + dig.stderr
        run_in(client.netns, "dig", f"@{resolver.ip}", "nope.bank.example", "A", "+tries=3", "+time=2")
        tls13 = run_in(
            client.netns, "curl", "-sk", "--max-time", "10", "--resolve", f"secure.bank.example:8443:{server.ip}",
            f"https://secure.bank.example:8443/?q={marker}",
        )  # fmt: skip
        assert tls13.returncode == 0, tls13.stderr
        legacy = subprocess.run(
            ["ip", "netns", "exec", client.netns, "openssl", "s_client", "-connect", f"{server.ip}:8443",
             "-servername", "legacy.bank.example", "-tls1_2", "-cipher", "AES128-SHA:@SECLEVEL=0"],
            input=f"GET /{marker} HTTP/1.0\r\n\r\n".encode(), capture_output=True, timeout=15, check=False,
        )  # fmt: skip
        assert b"AES128-SHA" in legacy.stdout, legacy.stdout[-500:] + legacy.stderr[-500:]
        http = run_in(
            client.netns, "curl", "-s", "--max-time", "10", "-o", "/dev/null", "-w", "%{http_code}", "-H", "Host: shop.bank.example",
            f"http://{server.ip}:8080/orders/12345?card={marker}",
        )  # fmt: skip
        assert http.stdout == b"404", http
        udp = lab.udp_send("pod1", "pod2", port=9999, count=5, size=100)
        assert udp.sent_packets == 5

        def l7(sql):
            return store.query_arrow(f"SELECT * FROM ({CONVERSATIONS}) WHERE {sql}").to_pylist()

        if not wait_until(
            lambda: l7("http_status = 404 AND capture_pod = 'web-1'") and l7("tls_cipher != ''")
        ):
            pytest.fail(
                f"{agent.counts} {agent.errors} {pipeline.samples_inserted} {pipeline.bad_messages}\n{dump(store)}"
            )
        ovs_lab.flush_exports()
        ovs_lab.disable_exports()
        # Pods come and go: a port leaving the bridge is dropped, one joining is captured, no restart.
        lab.vsctl("del-port", lab.bridge, resolver.host_if)
        assert wait_until(lambda: sorted(p.pod for p in agent.interfaces.values()) == ["api-1", "web-1"], 10)
        lab.vsctl("add-port", lab.bridge, resolver.host_if, "--", "set", "Interface", resolver.host_if,
                  "external_ids:iface-id=dns-2.core")  # fmt: skip
        assert wait_until(lambda: "dns-2" in {p.pod for p in agent.interfaces.values()}, 10), agent.interfaces
        agent.stop()
        assert wait_until(
            lambda: sum(pipeline.samples_inserted.values()) == sum(agent.published.values()), 20
        )
        assert pipeline.bad_messages == 0 and not agent.errors, (pipeline.bad_messages, agent.errors)
        assert agent.counts["shed"] == 0 and agent.counts["kernel_drops"] == 0

        # DNS, seen from the client's port: the pod is named from OVS and from the metadata store.
        dns = l7("l7_protocol = 'dns' AND capture_pod = 'web-1' AND dns_qname = 'api.bank.example'")
        assert dns, l7("l7_protocol = 'dns'")
        d = dns[0]
        assert (d["capture_namespace"], d["src_pod"], d["dst_pod"], d["dst_namespace"]) == (
            "shop",
            "web-1",
            "dns-1",
            "core",
        )
        assert d["dns_qtype"] == 1 and d["dns_rcode"] == 0 and "10.244.1.12" in d["dns_answers"]
        assert d["src_tenant"] == "retail" and d["dst_zone"] == "pci" and d["encryption"] == ""
        nx = l7("dns_qname = 'nope.bank.example' AND capture_pod = 'web-1'")
        assert nx and nx[0]["dns_rcode"] == 3
        # The same conversation is seen again on the resolver's port.
        assert l7("dns_qname = 'api.bank.example' AND capture_pod = 'dns-1'")

        tls = l7("tls_sni = 'secure.bank.example' AND capture_pod = 'web-1'")
        assert tls and tls[0]["tls_version"] == "TLS1.3" and tls[0]["encryption"] == "tls"
        assert tls[0]["dst_port"] == 8443 and tls[0]["src_pod"] == "web-1" and tls[0]["dst_pod"] == "api-1"
        assert tls[0]["tls_ja3"] and tls[0]["tls_ja4"].startswith("t13d")
        old = l7("tls_sni = 'legacy.bank.example' AND capture_pod = 'api-1'")
        assert old and old[0]["tls_version"] == "TLS1.2" and old[0]["tls_cipher"] == "0x002f"

        h = l7("l7_protocol = 'http' AND capture_pod = 'web-1'")
        assert h and h[0]["http_host"] == "shop.bank.example" and h[0]["http_method"] == "GET"
        assert (
            h[0]["http_path"] == "/orders/{}"
            and h[0]["http_status"] == 404
            and h[0]["encryption"] == "plaintext"
        )

        samples = store.query_arrow(
            "SELECT capture_pod, direction, src_pod, dst_pod, count() AS n, sum(payload_len) AS payload "
            "FROM netobs.packet_samples WHERE proto = 17 AND dst_port = 9999 GROUP BY 1, 2, 3, 4 ORDER BY 1"
        ).to_pylist()
        assert [(s["capture_pod"], s["direction"], s["src_pod"], s["dst_pod"], s["n"]) for s in samples] == [
            ("api-1", "to_pod", "web-1", "api-1", 5),
            ("web-1", "from_pod", "web-1", "api-1", 5),
        ]
        assert all(s["payload"] == 5 * 100 for s in samples)

        # Joinable with the flows of the same conversation (sFlow of the same bridge).
        joined = store.query_arrow(
            "SELECT l.tls_sni AS sni, sum(f.packets) AS packets FROM netobs.l7_conversations AS l "
            "INNER JOIN netobs.flows AS f ON f.src_addr = l.src_addr AND f.dst_addr = l.dst_addr "
            "AND f.src_port = l.src_port AND f.dst_port = l.dst_port AND f.proto = l.proto "
            "WHERE l.tls_sni = 'secure.bank.example' AND l.capture_pod = 'web-1' GROUP BY sni"
        ).to_pylist()
        assert joined and joined[0]["packets"] > 3

        # No payload byte: not in any stored string, not in any message on the topic.
        for kind in (schema.PACKET_SAMPLES, schema.L7):
            text_cols = [c.name for c in schema.KINDS[kind][0] if c.arrow == "string"]
            hits = store.query_arrow(
                f"SELECT count() AS n FROM netobs.{kind} WHERE "
                + " OR ".join(f"position({c}, '{marker}') > 0" for c in text_cols)
            ).to_pylist()[0]["n"]
            assert hits == 0, kind
        assert_marker_not_on_topic(kafka_broker.bootstrap, topic, marker)
    finally:
        agent.stop() if agent._threads and not agent._stop.is_set() else None
        servers.stop()
        collector.stop()
        pipeline.stop()
        store.stop()


def dump(store):
    cols = "capture_pod, IPv6NumToString(src_addr), dst_port, l7_protocol, encryption, packets, dns_qname, "
    cols += "tls_version, tls_sni, tls_cipher, http_host, http_status"
    out = store.query_arrow(f"SELECT {cols} FROM netobs.l7_conversations").to_pylist()
    out += store.query_arrow(
        "SELECT capture_pod, direction, src_port, dst_port, payload_class, count() AS n, max(wire_len) AS len "
        "FROM netobs.packet_samples WHERE proto = 6 GROUP BY ALL ORDER BY ALL"
    ).to_pylist()
    return "\n".join(map(str, out))


def assert_marker_not_on_topic(bootstrap, topic, marker):
    from kafka import KafkaConsumer

    consumer = KafkaConsumer(topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest",
                             consumer_timeout_ms=3000, enable_auto_commit=False)  # fmt: skip
    kinds, seen = set(), 0
    try:
        for msg in consumer:
            table = wire.decode(msg.value)
            kinds.add(schema.kind_of(table))
            seen += 1
            assert marker.encode() not in msg.value
            assert marker not in str(table.to_pylist())
    finally:
        consumer.close()
    assert {schema.PACKET_SAMPLES, schema.L7} <= kinds and seen
