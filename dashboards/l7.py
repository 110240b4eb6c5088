"""Protocol context from pod packet samples (``netobs sample``): DNS names, TLS versions, clear text.

Reads ``l7_conversations``. An agent flush can cut a conversation in two rows and both pods' ports
see a pod-to-pod conversation, so counts are of distinct conversations (5-tuple), never of rows.
"""

from __future__ import annotations

from dashboards.model import Dashboard, Panel, query_variable
from dashboards.sql import any_of, table

UID = "netobs-l7"
_CONV = "uniqExact(src_addr, dst_addr, src_port, dst_port, proto)"


def build(database: str, uid: str) -> Dashboard:
    l7 = table(database, "l7_conversations")
    d = Dashboard(
        UID,
        "Protocol context",
        "What the pods' DNS queries, TLS handshakes and HTTP requests say (pod packet samples).",
        ("netobs", "l7", "dns", "tls"),
        uid,
    )
    d.variables = [
        query_variable(
            "tenant",
            "Tenant",
            f"SELECT DISTINCT src_tenant AS v FROM {l7} WHERE $__timeFilter_ms(time_received) AND v != '' "
            "ORDER BY v",
            uid,
        ),
    ]
    src = f"(SELECT * FROM {l7} WHERE $__timeFilter_ms(time_received) AND {any_of('tenant', 'src_tenant')})"
    d.panels = [
        Panel(
            "table", "Top DNS names per tenant",
            f"SELECT src_tenant AS tenant, dns_qname AS name, {_CONV} AS queries, max(dns_rcode) AS worst_rcode "
            f"FROM {src} WHERE l7_protocol = 'dns' AND dns_qname != '' GROUP BY tenant, name "
            "ORDER BY queries DESC LIMIT 50",
            width=12, height=10,
        ),
        Panel(
            "table", "TLS versions per zone",
            f"SELECT dst_zone AS zone, tls_version AS version, {_CONV} AS conversations FROM {src} "
            "WHERE l7_protocol = 'tls' AND tls_version != '' GROUP BY zone, version ORDER BY zone, version",
            width=12, height=10,
        ),
        Panel(
            "table", "Clear text into other zones",
            f"SELECT src_pod AS pod, src_namespace AS namespace, dst_zone AS zone, dst_port AS port, "
            f"any(http_host) AS http_host, {_CONV} AS conversations FROM {src} "
            "WHERE encryption = 'plaintext' AND dst_zone != src_zone GROUP BY pod, namespace, zone, port "
            "ORDER BY conversations DESC LIMIT 50",
            width=12, height=10,
        ),
        Panel(
            "table", "Server names (SNI)",
            f"SELECT tls_sni AS server_name, any(tls_version) AS version, {_CONV} AS conversations FROM {src} "
            "WHERE tls_sni != '' GROUP BY server_name ORDER BY conversations DESC LIMIT 50",
            width=12, height=10,
        ),
        Panel(
            "table", "Longest DNS names (tunnelling suspects)",
            f"SELECT src_pod AS pod, src_namespace AS namespace, max(dns_qname_length) AS longest, "
            f"avg(dns_qname_length) AS mean_length, {_CONV} AS queries FROM {src} WHERE l7_protocol = 'dns' "
            "GROUP BY pod, namespace ORDER BY longest DESC LIMIT 20",
            width=24, height=8,
        ),
    ]  # fmt: skip
    return d


__all__ = ["UID", "build"]
