"""The composition root's table of components agrees with the Settings tree and the config."""

from __future__ import annotations

from typing import get_args

from alerts.config import AlertsConfig
from netobs import config as kernel
from netobs.config import ListenerConfig, StoreConfig, TransportConfig
from netobs_app import components
from netobs_app.cli import build_parser
from netobs_app.settings import Settings


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
