"""The Grafana JSON models: structure Grafana needs, the plugin's query model, no hard-coded names."""

from __future__ import annotations

import itertools
import re

import pytest
import yaml

from dashboards import build_all
from dashboards.catalog import panel_queries, variable_queries
from dashboards.model import PLUGIN, TIME_PANELS
from netobs_app.settings import ConfigError, Settings, load
from tests.dashboards._data import INVENTORY

UNITS = {"bytes", "bps", "pps", "short", "percentunit", "s", "dateTimeAsIso"}
_REF = re.compile(r"\$\{(\w+)(?::\w+)?\}|\$(?!__)(\w+)")


@pytest.fixture(scope="module")
def models():
    return build_all(Settings())


def test_dashboard_metadata(models):
    uids = [m["uid"] for m in models.values()]
    assert len(set(uids)) == len(uids) == 6
    for m in models.values():
        assert m["schemaVersion"] >= 39 and m["title"] and "netobs" in m["tags"]
        assert m["time"]["to"] == "now" and m["time"]["from"].startswith("now-") and m["refresh"]
        assert m["timezone"] == "utc"


def test_panel_ids_unique_and_grid_does_not_overlap(models):
    for m in models.values():
        ids = [p["id"] for p in m["panels"]]
        assert len(set(ids)) == len(ids)
        cells = set()
        for p in m["panels"]:
            g = p["gridPos"]
            assert 0 <= g["x"] and g["x"] + g["w"] <= 24 and g["h"] > 0, p["title"]
            mine = set(itertools.product(range(g["x"], g["x"] + g["w"]), range(g["y"], g["y"] + g["h"])))
            assert not cells & mine, f"{m['uid']}: {p['title']} overlaps"
            cells |= mine


def test_every_target_is_a_raw_sql_query_of_the_plugin(models):
    uid = Settings().dashboards.datasource_uid
    for m in models.values():
        for p in m["panels"]:
            assert p["datasource"] == {"type": PLUGIN, "uid": uid}
            assert p["fieldConfig"]["defaults"]["unit"] in UNITS
            assert p["fieldConfig"]["defaults"]["thresholds"]["steps"][0]["value"] is None
            for o in p["fieldConfig"]["overrides"]:
                assert o["properties"][0]["value"] in UNITS
            assert p["targets"], p["title"]
            for t in p["targets"]:
                assert t["datasource"] == {"type": PLUGIN, "uid": uid} and t["editorType"] == "sql"
                assert t["rawSql"].lstrip().upper().startswith("SELECT")
                series = p["type"] in TIME_PANELS
                assert (t["format"], t["queryType"]) == ((0, "timeseries") if series else (1, "table"))


def test_every_variable_referenced_exists(models):
    for m in models.values():
        names = {v["name"] for v in m["templating"]["list"]}
        for v in m["templating"]["list"]:
            assert v["datasource"]["uid"] == Settings().dashboards.datasource_uid
            assert v["includeAll"] == v["multi"]
        used = set()
        for q in itertools.chain(panel_queries(m), variable_queries(m)):
            used |= {a or b for a, b in _REF.findall(q.sql)}
        assert used <= names, f"{m['uid']}: {used - names}"
        assert names <= used, f"{m['uid']}: unused {names - used}"


def _inventory_names():
    inv = yaml.safe_load(INVENTORY.read_text())
    sites = {s["name"] for s in inv["sites"]}
    centers = {c["name"] for s in inv["sites"] for c in s["centers"]}
    return sites | centers


def test_no_center_or_site_name_is_hard_coded(models):
    names = _inventory_names()
    assert {"dc1", "dc3", "site-a"} <= names
    for m in models.values():
        for q in itertools.chain(panel_queries(m), variable_queries(m)):
            found = {n for n in names if re.search(rf"\b{re.escape(n)}\b", q.sql)}
            assert not found, f"{m['uid']} {q.where}: {found}"


def test_configuration_reaches_the_models(monkeypatch):
    monkeypatch.setenv("NETOBS__DASHBOARDS__DATASOURCE_UID", "ch-prod")
    monkeypatch.setenv("NETOBS__STORE__DATABASE", "flowsdb")
    monkeypatch.setenv("NETOBS__ANALYTICS__DR_TRAFFIC__DR_CENTERS", '["backup-center"]')
    models = build_all(load())
    sql = [q.sql for m in models.values() for q in panel_queries(m)]
    assert all("`flowsdb`." in s and "`netobs`." not in s for s in sql)
    assert {p["datasource"]["uid"] for m in models.values() for p in m["panels"]} == {"ch-prod"}
    dr = next(v for v in models["cross-center"]["templating"]["list"] if v["name"] == "dr_center")
    assert dr["current"]["value"] == "backup-center" and not dr["multi"]


@pytest.mark.parametrize(
    "text,message",
    [
        ("dashboards: {datasource_uid: 'has spaces'}", "datasource_uid"),
        ("dashboards: {folder_uid: ''}", "folder_uid"),
        ("dashboards: {colour: red}", "unknown key 'dashboards.colour'"),
        ("dashboards: {datasource_port: 70000}", "datasource_port"),
    ],
)
def test_bad_configuration_is_refused_with_its_key(tmp_path, text, message):
    p = tmp_path / "netobs.yaml"
    p.write_text(text)
    with pytest.raises(ConfigError, match=message):
        load(p)


def test_token_is_a_secret(monkeypatch):
    monkeypatch.setenv("NETOBS__DASHBOARDS__GRAFANA_TOKEN", "glsa_very_secret")
    s = load()
    assert s.dashboards.grafana_token.get_secret_value() == "glsa_very_secret"
    assert "glsa_very_secret" not in repr(s) and "glsa_very_secret" not in str(s.model_dump(mode="json"))
