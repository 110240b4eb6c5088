"""The composition root's table of components agrees with the Settings tree and the config."""

from __future__ import annotations

from typing import get_args

from alerts import state as alert_state
from alerts.config import AlertsConfig
from alerts.state import CURSORS_TABLE, NOTIFICATIONS_TABLE
from analytics.findings_table import FINDINGS_TABLE, create_findings
from analytics.policy.evaluate import VIOLATIONS_TABLE, ensure_violations
from collectors.config import ListenerConfig
from netobs import config as kernel
from netobs import observations
from netobs.config import ChdbStoreConfig, StoreConfig, TransportConfig
from netobs.store import make_store
from netobs.tables import converge
from netobs_app import components
from netobs_app.cli import build_parser
from netobs_app.settings import Settings
from pipeline.metadata.versions import VERSIONS_TABLE, MetadataStore


def test_settings_mount_exactly_the_component_sections():
    own = {k: v.annotation for k, v in Settings.model_fields.items() if k not in kernel.Settings.model_fields}
    assert own == components.sections()


def literal_values(annotation) -> set[str]:
    return {a for a in get_args(annotation) if isinstance(a, str)}


def test_every_type_field_names_exactly_the_registered_plug_ins():
    plugins = {kind: set(p) for c in components.COMPONENTS for kind, p in c.plugins.items()}
    assert literal_values(StoreConfig.model_fields["type"].annotation) == plugins["store.type"]
    assert literal_values(TransportConfig.model_fields["type"].annotation) == plugins["transport.type"]
    protocols = literal_values(ListenerConfig.model_fields["protocol"].annotation)
    assert protocols == plugins["collector.listeners[].protocol"]
    sink_models = get_args(get_args(AlertsConfig.model_fields["sinks"].annotation)[1])
    sink_types = {
        t for m in get_args(sink_models[0]) for t in literal_values(m.model_fields["type"].annotation)
    }
    assert sink_types == plugins["alerts.sinks.<name>.type"]


def test_every_component_command_is_on_the_cli():
    sub = next(a for a in build_parser()._actions if a.dest == "command")
    assert {"policy", "report", "dashboards", "alerts", "analyze", "scenario"} <= set(sub.choices)
    scenario = next(a for a in sub.choices["scenario"]._actions if a.dest == "scenario_command")
    assert set(scenario.choices) == {"generate", "evaluate", "counting"}


def test_the_store_holds_exactly_the_declared_tables(tmp_path):
    """A store the root opens holds every table and view from its first start: the catalogue,
    nothing else (a dashboard or an alert never reads a table that does not exist yet)."""
    settings = Settings(store=StoreConfig(chdb=ChdbStoreConfig(path=tmp_path / "chdb")))
    store = make_store(settings.store, components.schema(settings))
    store.start()
    try:
        db = store.database
        live = store.query_arrow(f"SELECT name FROM system.tables WHERE database = '{db}'").column("name")
        assert sorted(live.to_pylist()) == sorted(components.tables())
        for name in ("findings", "violations", "alert_notifications", "observation_points"):
            assert store.query_arrow(f"SELECT count() AS n FROM `{db}`.`{name}`").column("n")[0].as_py() == 0
        # each component's own (lazy) create is then a no-op, and the catalogue is unchanged
        MetadataStore(store, db).ensure()
        store.execute(create_findings(db))
        ensure_violations(store)
        for stmt in alert_state.create_tables(db, 30):
            store.execute(stmt)
        store.execute(observations.create_observation_table(db))
        again = store.query_arrow(f"SELECT name FROM system.tables WHERE database = '{db}'").column("name")
        assert sorted(again.to_pylist()) == sorted(components.tables())
    finally:
        store.stop()


def test_each_declared_table_has_a_cluster_layout():
    for table in (FINDINGS_TABLE, VIOLATIONS_TABLE, NOTIFICATIONS_TABLE, CURSORS_TABLE, VERSIONS_TABLE):
        local, dist = table.create("netobs", cluster="bank", retention_days=30)
        assert f"`netobs`.`{table.name}_local` ON CLUSTER 'bank'" in local and "Replicated" in local
        assert f"Distributed('bank', 'netobs', '{table.name}_local'" in dist


def test_the_cluster_layout_of_every_declared_table_and_view():
    """On a cluster, every component table is Replicated ``_local`` + Distributed (findings,
    alert state and metadata history are not left on one node) and the views are ON CLUSTER."""
    ran: list[str] = []
    declared = components.schema(Settings())
    converge(ran.append, "netobs", declared, dialect="modern", cluster="bank")
    for d in declared:
        mine = [s for s in ran if f"`netobs`.`{d.name}`" in s or f"`netobs`.`{d.name}_local`" in s]
        assert all("ON CLUSTER 'bank'" in s for s in mine), d.name
        if d.item.__class__.__name__ == "Table":
            assert any(f"`{d.name}_local`" in s and "Replicated" in s for s in mine), d.name
            assert any(f"Distributed('bank', 'netobs', '{d.name}_local'" in s for s in mine), d.name
    assert converge(ran.append, "netobs", declared, dialect="legacy") == []
