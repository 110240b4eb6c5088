"""The explorer's views: what they accept, the SQL they render, and their answers on a fresh store."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from dashboards import explorer as ex
from dashboards import explorer_http
from dashboards.explorer_http import ExplorerApi, label, view_of
from netobs.auth import Authenticator, hash_token
from netobs.config import ControlAuthConfig, ControlConfig, PrincipalConfig
from netobs.control import ControlServer, Request
from netobs.queryservice import QueryService

TOKEN = "nbt_explorer-test-token"

T = datetime(2026, 6, 1, 12, tzinfo=UTC)


def test_rollup_columns_read_the_rollups_and_others_the_counted_raw_flows():
    v = ex.View(T - timedelta(hours=1), T, (ex.Filter("src_center", ("dc1",)),), by="src_tenant")
    sql = ex.series_sql("netobs", v, ["tenant01"])
    assert "`netobs`.`flows_1m`" in sql and "`netobs`.`flows`" not in sql and "$__" not in sql
    assert "toString(src_center) IN ('dc1')" in sql and "/ 60" in sql  # never finer than the minute rows
    raw = ex.series_sql("netobs", ex.View(T - timedelta(days=7), T, by="src_workload", metric="pps"))
    assert (
        "`netobs`.`flows`" in raw and "counted = 1" in raw and "sampling_rate" in raw and "event_end" in raw
    )
    month = ex.top_sql("netobs", ex.View(T - timedelta(days=30), T, by="dst_port"))
    assert "`netobs`.`flows_1h`" in month and "10800 >= 3600" in month  # 30 days in 300 points: 3 h


def test_filter_values_are_quoted():
    cond = ex.where([ex.Filter("src_tenant", ("a'b\\", "x"), negate=True)])
    assert cond == "toString(src_tenant) NOT IN ('a\\'b\\\\', 'x')"


@pytest.mark.parametrize(
    ("params", "message"),
    [
        ({"by": "password"}, "unknown column"),
        ({"filters": '[{"column": "src_addr; DROP", "values": ["x"]}]'}, "unknown column"),
        ({"from": "2026-06-02T00:00:00Z", "to": "2026-06-01T00:00:00Z"}, "empty"),
        ({"from": "yesterday"}, "cannot read the time"),
        ({"filters": "{not json"}, "bad parameter"),
        ({"metric": "gbps"}, "unknown metric"),
        ({"limit": "100000"}, "limit"),
        ({"from": "0", "to": "1796600000000"}, "longer than"),
    ],
)
def test_bad_views_are_refused_with_the_reason(params, message):
    with pytest.raises(ex.ViewError, match=message):
        view_of(params, now=T)


def test_names_next_to_numbers():
    assert label("proto", "6") == "tcp (6)" and label("proto", "250") == "250"
    assert label("dst_port", "5432") == "5432 postgresql" and label("src_tenant", "") == "(none)"


def _server(store, anonymous="operator"):
    auth = ControlAuthConfig(
        principals=(PrincipalConfig(name="v", role="viewer", token_sha256=hash_token(TOKEN)),),
        anonymous_role=anonymous,
    )
    service = QueryService(store, store.database, auth)
    return ControlServer(
        ControlConfig(listen="127.0.0.1:0", auth=auth),
        explorer_http.routes(service, store.database),
        authenticator=Authenticator(auth),
    )


def _get(server, path, params=None, peer="127.0.0.1", headers=None, method="GET"):
    req = Request(method, path, {k: [v] for k, v in (params or {}).items()},
                  {"host": "127.0.0.1", **(headers or {})}, b"", peer)  # fmt: skip
    return server.dispatch(req, None)


def test_a_fresh_store_answers_no_data_never_an_error(store):
    server = _server(store)
    for name, extra in (("series", {"by": "src_tenant"}), ("series", {"by": "src_pod"}), ("top", {"by": "proto"}),
                        ("sankey", {}), ("values", {"column": "dst_tenant"}), ("events", {}), ("meta", {})):  # fmt: skip
        resp = _get(server, f"/explorer/api/{name}", extra)
        assert resp.status == 200, (name, resp.body)
    body = ExplorerApi(store.query_arrow, store.database).series({"by": "src_tenant"})
    assert body["series"] == [] and body["times_ms"] == []
    assert _get(server, "/explorer/api/top", {"by": "nope"}).status == 400
    assert _get(server, "/explorer/").body.startswith(b"<!doctype html>")
    assert b"Apache" in _get(server, "/explorer/static/vendor/LICENSE-echarts.txt").body
    assert _get(server, "/explorer/static/../../netobs/config.py").status == 404
    assert _get(server, "/explorer/api/top", method="POST").status == 405


def test_remote_browsers_need_a_token_the_page_does_not(store):
    server = _server(store)
    assert _get(server, "/explorer/api/meta", peer="10.1.2.3").status == 401
    assert _get(server, "/explorer/static/app.js", peer="10.1.2.3").status == 200  # no data in it
    ok = _get(
        server,
        "/explorer/api/top",
        {"by": "proto"},
        peer="10.1.2.3",
        headers={"authorization": f"Bearer {TOKEN}"},
    )
    assert ok.status == 200, ok.body
    assert (
        _get(
            server, "/explorer/api/top", peer="10.1.2.3", headers={"authorization": "Bearer nbt_wrong"}
        ).status
        == 401
    )
    closed = _server(store, anonymous="none")
    assert _get(closed, "/explorer/api/meta").status == 401
    assert _get(server, "/explorer/api/meta", headers={"origin": "https://evil.example"}).status == 403


def test_a_violation_is_listed_and_linked_when_its_traffic_happened(store):
    """Not at its evaluation window's start: the screenshot of session 5 listed 05:00 for traffic at 05:14."""
    import random

    from analytics.policy.evaluate import create_violations

    seed = random.randrange(2**31)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for stmt in create_violations(store.database):
        store.execute(stmt)
    window = T.replace(minute=0)  # an hourly policy run
    rows = []
    for i in range(3):
        first = window + timedelta(seconds=rng.randrange(0, 3000))
        last = first + timedelta(seconds=rng.randrange(0, 600))
        rows.append((f"v{i}", first, last))
        store.execute(
            f"INSERT INTO `{store.database}`.violations (id, policy, rule, severity, window_start, window_end, "
            "first_seen, last_seen, src_tenant, dst_tenant, bytes, flows, version) VALUES "
            f"('v{i}', 'p', 'tenant-isolation', 'high', '{window:%Y-%m-%d %H:%M:%S}', "
            f"'{window + timedelta(hours=1):%Y-%m-%d %H:%M:%S}', '{first:%Y-%m-%d %H:%M:%S}', "
            f"'{last:%Y-%m-%d %H:%M:%S}', 'tenant01', 'tenant02', 100, 1, 1)"
        )
    events = ExplorerApi(store.query_arrow, store.database).events(
        {"from": (window - timedelta(hours=1)).isoformat(), "to": (window + timedelta(hours=2)).isoformat()}
    )
    got = events["violations"]
    order = sorted(rows, key=lambda r: (-r[2].timestamp(), r[0]))  # the latest traffic first
    assert [v["id"] for v in got] == [r[0] for r in order]
    by_id = {r[0]: r for r in rows}
    pad = explorer_http.EVENT_PAD
    for v in got:
        _, first, last = by_id[v["id"]]
        assert (v["first_seen"], v["last_seen"]) == (first, last)
        assert (v["from"], v["to"]) == (first - pad, last + pad)  # the link opens the traffic, not the window
        assert v["window_start"] == window
        assert {"column": "src_tenant", "values": ["tenant01"]} in v["filters"]
    assert len(got) == 3
