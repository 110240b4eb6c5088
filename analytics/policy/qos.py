"""QoS marking: each traffic class declared in the policy must carry its DSCP (``qos_marking``).

The DSCP is the upper six bits of the observed ``tos`` (IPv4 TOS / IPv6 traffic class). A flow row
of a class (its zones, and its ports; with ``replies`` also the answers, whose source port is a
class port) whose DSCP is not one the class allows violates the rule: payment traffic sent best
effort, or backup traffic marked EF. Exporters that do not report the TOS (0) make every class
that forbids 0 show up: declare ``DF`` in such a class, or scope the rule to exporters that do.
"""

from __future__ import annotations

from analytics.policy.model import Policy, QosMarkingRule, TrafficClass
from analytics.policy.sql import and_, or_, pair_sql, ports_sql


def dscp_sql() -> str:
    """The DSCP of a flow row."""
    return "bitShiftRight(tos, 2)"


def class_sql(p: Policy, c: TrafficClass) -> str:
    """Rows of the class, whatever their marking."""
    ahead = and_([pair_sql(p, c.from_, c.to), ports_sql(c.ports, c.protocols)])
    if not c.replies or not c.ports:
        return ahead
    back = and_([pair_sql(p, c.to, c.from_), ports_sql(c.ports, c.protocols, "src_port")])
    return or_([ahead, back])


def qos_marking_sql(p: Policy, r: QosMarkingRule) -> str:
    return or_(
        and_([class_sql(p, c), f"{dscp_sql()} NOT IN ({', '.join(str(d) for d in c.codes())})"])
        for c in r.classes
    )
