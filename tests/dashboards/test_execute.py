"""Every panel's SQL, rendered as Grafana would, run on a real embedded store filled through the
pipeline's enrichment, the store's materialized views and the analytics' writers."""

from __future__ import annotations

from datetime import timedelta

import pytest

from dashboards import ALL, build_all, check
from dashboards.catalog import panel_queries
from dashboards.check import context
from dashboards.model import TIME_PANELS
from dashboards.render import Context, render
from tests.dashboards import _data
from tests.dashboards._data import END, START


@pytest.fixture(scope="module")
def cfg(tmp_path_factory):
    cfg = _data.settings(tmp_path_factory.mktemp("dash"))
    _data.fill(cfg)
    return cfg


@pytest.fixture(scope="module")
def store(cfg, module_store_factory):
    return module_store_factory(cfg.store)


@pytest.fixture(scope="module")
def models(cfg):
    return build_all(cfg)


def scalar(store, sql):
    return store.query_arrow(sql).column(0)[0].as_py()


def panel(models, dashboard, title):
    model = models[dashboard]
    return model, next(p for p in model["panels"] if p["title"] == title)


def run(store, models, dashboard, title, interval_s=0, **values):
    model, p = panel(models, dashboard, title)
    ctx = context(model, store.query_arrow, START, END, values)
    ctx = Context(ctx.start, ctx.end, interval_s, ctx.variables, ctx.options)
    return store.query_arrow(render(p["targets"][0]["rawSql"], ctx))


def test_every_panel_runs_and_returns_rows(store, models):
    report = check(models, store.query_arrow, START, END)
    assert not report.errors, "\n".join(r.line() + "\n" + r.sql for r in report.errors)
    assert len(report.results) == sum(
        len(list(panel_queries(m))) + len(m["templating"]["list"]) for m in models.values()
    )
    for r in report.results:
        assert r.rows > 0, r.line()
        if r.query.panel is not None and r.query.panel["type"] in TIME_PANELS:
            first = store.query_arrow(f"DESCRIBE ({r.sql})").to_pylist()[0]
            assert first["name"] == "time" and first["type"].startswith("DateTime"), r.line()
            assert r.table.num_columns >= 2, r.line()


def test_center_variables_come_from_the_data(store, models):
    ctx = context(models["cross-center"], store.query_arrow, START, END)
    assert ctx.options["center"] == list(_data.CENTERS) == ctx.options["dr_center"]
    assert ctx.variables["center"] == ALL and ctx.variables["dr_center"] == "dc3"  # the configured DR center


def direct_total(store, where="1"):
    return scalar(
        store,
        "SELECT sum(bytes * if(sampling_rate = 0, 1, sampling_rate)) FROM netobs.flows "
        f"WHERE counted = 1 AND {where}",
    )


@pytest.mark.parametrize("interval_s", [60, 3600], ids=["1m-rollup", "1h-rollup"])
def test_matrix_totals_equal_a_direct_sum(store, models, interval_s):
    matrix = run(store, models, "cross-center", "Center × center matrix", interval_s).to_pylist()
    assert (
        sum(r["bytes"] for r in matrix)
        == direct_total(store)
        == 140 * 10_000 + 180 * 1500 * 512 + 140 * 2000  # pod-b -> pod-a: seen by node-3, not counted
    )
    pairs = {(r["src_center"], r["dst_center"]): r["bytes"] for r in matrix}
    assert pairs[("dc1", "dc2")] == 140 * 10_000  # the IPFIX egress copy is not counted
    assert pairs[("dc2", "dc3")] == 180 * 1500 * 512
    assert {"avg_bps", "packets", "flows"} <= set(matrix[0])


def test_center_filter_narrows_the_matrix(store, models):
    rows = run(store, models, "cross-center", "Center × center matrix", center=["dc3"]).to_pylist()
    assert [(r["src_center"], r["dst_center"]) for r in rows] == [("dc2", "dc3")]


def test_rates_integrate_to_the_bytes(store, models):
    rows = run(store, models, "cross-center", "Cross-site traffic", 300).to_pylist()
    assert sum(r["bps"] * 300 / 8 for r in rows) == pytest.approx(180 * 1500 * 512)
    rows = run(store, models, "cross-center", "Rate per center pair", 600).to_pylist()
    assert {r["pair"] for r in rows} == {"dc1 → dc2", "dc2 → dc3", "dc1 → dc1"}
    assert sum(r["bps"] * 600 / 8 for r in rows) == pytest.approx(direct_total(store))


def test_dr_center_traffic(store, models):
    assert (
        run(store, models, "cross-center", "Traffic touching the DR center").column(0)[0].as_py()
        == 180 * 1500 * 512
    )
    rows = run(store, models, "cross-center", "DR center traffic by zone", 3600).to_pylist()
    assert {r["zone"] for r in rows} == {"to production"} and len(rows) == 3


def test_top_tenant_pairs_and_services(store, models):
    pairs = run(store, models, "cross-center", "Top tenant pairs").to_pylist()
    assert (pairs[0]["src_tenant"], pairs[0]["dst_tenant"]) == ("retail", "retail")
    services = run(store, models, "cross-center", "Top services").to_pylist()
    assert [(s["dst_port"], s["proto"]) for s in services][:2] == [(8443, 6), (443, 6)]


def test_tenant_drill_down(store, models):
    pods = run(store, models, "tenant", "Top pods", tenant=["payments"]).to_pylist()
    assert [(p["pod"], p["center"], p["bytes"], p["flows"]) for p in pods] == [
        ("pod-c", "dc1", 140 * 2000, 140)
    ]
    mix = run(store, models, "tenant", "Path mix", tenant=["payments"]).to_pylist()
    assert mix == [{"path": "intra_center", "bytes": 140 * 2000}]
    peers = run(store, models, "tenant", "Peers", tenant=["payments"]).to_pylist()
    assert [(p["peer"], p["direction"], p["bytes"]) for p in peers] == [("core-banking", "out", 140 * 2000)]
    out = run(
        store, models, "tenant", "Traffic out (sent by the tenant)", 60, tenant=["retail"], zone=["pci"]
    )
    assert out.num_rows == 0  # no retail traffic touches the pci zone


def test_collection_health(store, models):
    rows = {r["exporter_ip"]: r for r in run(store, models, "collection-health", "Exporters").to_pylist()}
    assert rows[_data.NODE1]["sampling_rates"] == [1] and rows[_data.NODE3]["sampling_rates"] == [0, 512]
    assert rows[_data.NODE1]["records"] == 140 * 3
    gaps = run(store, models, "collection-health", "Gaps").to_pylist()
    assert [(g["exporter_ip"], g["gaps"], g["longest_gap_s"]) for g in gaps] == [(_data.NODE1, 1, 41 * 60)]
    unknown = run(store, models, "collection-health", "Exporters with unknown sampling")
    assert unknown.column(0)[0].as_py() == 1
    util = run(store, models, "collection-health", "Interface utilisation (max of in/out)", 300).to_pylist()
    assert {r["interface"] for r in util} == {"node-9 eth0"}
    assert all(r["util"] == pytest.approx(0.1, rel=0.01) for r in util)
    busiest = run(store, models, "collection-health", "Busiest interfaces", center=["dc3"]).to_pylist()
    assert busiest[0]["exporter_center"] == "dc3" and busiest[0]["resets"] == 0


def test_compliance(store, models):
    open_ = run(store, models, "compliance", "Open violations").to_pylist()
    by_rule = {(r["rule"], r["src_tenant"], r["dst_tenant"]): r for r in open_}
    iso = by_rule[("tenant-isolation", "payments", "core-banking")]
    assert iso["bytes"] == 140 * 2000 and iso["src_zone"] == "pci" and iso["first_seen"] < iso["last_seen"]
    live = scalar(store, "SELECT uniqExact(id) FROM netobs.violations FINAL WHERE deleted = 0")
    assert live == sum(r["windows"] for r in open_) > 0
    assert run(store, models, "compliance", "Violations (live)").column(0)[0].as_py() == live
    total = run(store, models, "compliance", "Open violations", severity=["high"]).to_pylist()
    assert {r["severity"] for r in total} == {"high"}
    by = run(store, models, "compliance", "Findings by type and severity").to_pylist()
    assert {r["type_severity"]: r["findings"] for r in by} == {
        "dr_traffic / critical": 2,  # a finding without a type of its own is typed by its detector
        "collection_gap / warning": 1,
    }
    latest = run(store, models, "compliance", "Latest findings").to_pylist()
    assert {(r["type"], r["planned"]) for r in latest} == {("dr_traffic", 0), ("collection_gap", 0)}


def test_a_range_without_data_gives_empty_panels_not_errors(store, models):
    later = END + timedelta(days=30)
    report = check(models, store.query_arrow, later, later + timedelta(hours=1))
    assert not report.errors, [r.line() for r in report.errors]


def test_planes_and_qos_panels_read_their_rollup_and_add_up_to_the_raw_flows(store, models):
    """The planes_qos_1m rollup (counted once, scaled, spread by event time) gives the raw flows'
    totals per plane pair and per DSCP class."""
    pairs = run(store, models, "planes-qos", "Traffic by plane pair").to_pylist()
    assert sum(r["bytes"] for r in pairs) == pytest.approx(direct_total(store))
    dscp = run(store, models, "planes-qos", "DSCP per traffic (QoS)").to_pylist()
    raw = store.query_arrow(
        "SELECT bitShiftRight(tos, 2) AS d, sum(bytes * if(sampling_rate = 0, 1, sampling_rate)) AS b "
        "FROM netobs.flows WHERE counted = 1 GROUP BY d"
    ).to_pylist()
    names = {0: "DF", 46: "EF", 34: "AF41", 8: "CS1", 10: "AF11"}
    want: dict[str, float] = {}
    for r in raw:
        want[names.get(r["d"], str(r["d"]))] = want.get(names.get(r["d"], str(r["d"])), 0) + r["b"]
    got: dict[str, float] = {}
    for r in dscp:
        got[r["class"]] = got.get(r["class"], 0) + r["bytes"]
    assert got == pytest.approx(want)
    series = run(store, models, "planes-qos", "Traffic per source plane", 300).to_pylist()
    assert sum(r["bps"] * 300 / 8 for r in series) == pytest.approx(direct_total(store))


def test_dscp_names_are_the_standard_ones_and_nothing_else(store):
    """Every code point 0-63 named as the policy's DSCP table names it (DF for 0), and a value no
    standard names shown as its number: 35 (one bit off AF41) must not pass for AF41."""
    from analytics.policy.model import DSCP
    from dashboards.planes import DSCP_NAME

    got = {r["dscp"]: r["name"] for r in store.query_arrow(
        f"SELECT dscp, {DSCP_NAME} AS name FROM (SELECT toUInt8(number) AS dscp FROM numbers(64))"
    ).to_pylist()}  # fmt: skip
    names = {code: name for name, code in DSCP.items() if name not in ("BE", "CS0")}
    assert got == {d: names.get(d, f"DSCP {d}") for d in range(64)}
