"""Rule types judged on the real protocol: conditions on a flow row through its L7 summary.

A flow row violates when the ``l7_conversations`` row of the same conversation (5-tuple, client →
server, as the policy engine orients flows) says so: clear text into a sensitive zone, TLS below a
version or with a weak cipher, DNS to an unapproved resolver, a server name outside an allowlist.
The L7 rows come from ``netobs sample``; a conversation it did not see violates nothing here.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from analytics.policy.model import DnsResolverRule, L7PlaintextRule, Policy, SniAllowlistRule, TlsMinimumRule
from analytics.policy.sql import and_, cidr_in, not_, or_, pair_sql, quote, values_in
from netobs import schema

_VERSIONS = ("SSL3.0", "TLS1.0", "TLS1.1", "TLS1.2", "TLS1.3")


def in_l7(database: str, condition: str) -> str:
    """Whether the flow's conversation has an L7 summary satisfying ``condition``."""
    tup = "src_addr, dst_addr, src_port, dst_port, proto"
    return f"({tup}) IN (SELECT {tup} FROM `{database}`.`{schema.L7}` WHERE {condition})"


def l7_plaintext_sql(p: Policy, r: L7PlaintextRule) -> str:
    return and_([pair_sql(p, r.from_, r.to), in_l7(r.database, "encryption = 'plaintext'")])


def tls_minimum_sql(p: Policy, r: TlsMinimumRule) -> str:
    old = [v for v in _VERSIONS[: _VERSIONS.index(r.min_version)]]
    weak = [quote(f"0x{c:04x}") for c in r.weak_ciphers]
    bad = or_([values_in("tls_version", old), f"tls_cipher IN ({', '.join(weak)})" if weak else "0"])
    return and_([pair_sql(p, r.from_, r.to), in_l7(r.database, f"l7_protocol = 'tls' AND {bad}")])


def dns_resolvers_sql(p: Policy, r: DnsResolverRule) -> str:
    cidrs = [a if "/" in a else f"{a}/{32 if ':' not in a else 128}" for a in r.approved]
    cond = and_(["l7_protocol = 'dns'", not_(cidr_in("dst", cidrs))])
    return and_([pair_sql(p, r.from_, r.to), in_l7(r.database, cond)])


def sni_allowlist_sql(p: Policy, r: SniAllowlistRule) -> str:
    cond = and_(["tls_sni != ''", not_(values_in("tls_sni", [a.lower() for a in r.allowed]))])
    return and_([pair_sql(p, r.from_, r.to), in_l7(r.database, cond)])


#: Rule type → condition builder, merged into :data:`analytics.policy.rules.RULE_SQL`.
L7_RULE_SQL: dict[str, Callable[[Policy, Any], str]] = {
    "l7_plaintext": l7_plaintext_sql,
    "tls_minimum": tls_minimum_sql,
    "dns_resolvers": dns_resolvers_sql,
    "sni_allowlist": sni_allowlist_sql,
}
