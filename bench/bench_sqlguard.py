"""The SQL guard's cost per /query statement (a sqlglot parse, the allowlist walk, the tenant rewrite).

Prints ``bench: <name> <value> <unit>`` in CPU microseconds per statement (process time, so the
figure does not depend on the machine's load).
"""

from __future__ import annotations

import time

from netobs.auth import Principal
from netobs.sqlguard import guard_sql

TABLES = {"flows", "flows_1m", "flows_1h", "exporter_health_1m", "findings", "violations"}
DASHBOARD = (
    "SELECT toStartOfMinute(time) AS t, src_tenant, dst_tenant, sum(bytes * sampling_rate) AS bytes "
    "FROM netobs.flows_1m WHERE time >= now() - INTERVAL 6 HOUR AND src_center != dst_center "
    "GROUP BY t, src_tenant, dst_tenant ORDER BY t, bytes DESC LIMIT 1000"
)
NESTED = (
    "WITH top AS (SELECT src_pod, sum(bytes) AS b FROM netobs.flows WHERE time_received > now() - 3600 "
    "GROUP BY src_pod ORDER BY b DESC LIMIT 10) SELECT f.src_pod, count() FROM netobs.flows AS f "
    "JOIN top ON f.src_pod = top.src_pod WHERE f.dst_port IN (SELECT dst_port FROM netobs.flows LIMIT 5) "
    "GROUP BY f.src_pod"
)


def per_statement_us(principal: Principal, sql: str, n: int = 300) -> float:
    start = time.process_time()
    for _ in range(n):
        guard_sql(principal, sql, database="netobs", tables=TABLES, tenant_tables={"flows", "flows_1m"})
    return (time.process_time() - start) / n * 1e6


def main() -> None:
    viewer, tenant = Principal("v", "viewer"), Principal("t", "viewer", ("retail", "cards"))
    print(f"bench: sqlguard_viewer_dashboard {per_statement_us(viewer, DASHBOARD):.0f} us/statement")
    print(f"bench: sqlguard_viewer_nested {per_statement_us(viewer, NESTED):.0f} us/statement")
    print(f"bench: sqlguard_tenant_nested {per_statement_us(tenant, NESTED):.0f} us/statement")


if __name__ == "__main__":
    main()
