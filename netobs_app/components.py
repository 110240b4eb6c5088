"""The components as the composition root sees them: sections, sub-commands and plug-ins.

Each component owns its configuration section(s) and keeps its plug-ins in one explicit dict
of its own package (``STORES``, ``SINKS``, ``DETECTORS``, ...). This table is the one place
that puts them together; the CLI registers the sub-commands from it, ``Settings`` must mount
exactly its sections (a test holds them together), ``docs/config.md`` lists its plug-ins, and
its tables are every table and view a store holds (a test creates them all and compares).
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import TYPE_CHECKING, Any

from pydantic import BaseModel

from alerts.cli import add_parsers as alerts_commands
from alerts.config import AlertsConfig
from alerts.sinks import SINKS
from alerts.state import CURSORS_TABLE, NOTIFICATIONS_TABLE
from analytics.config import AnalyticsConfig, PolicyScheduleConfig
from analytics.detectors import DETECTORS
from analytics.findings_table import FINDINGS_TABLE
from analytics.policy.cli import add_parsers as policy_commands
from analytics.policy.evaluate import EVIDENCE_VIEW, VIOLATIONS_TABLE
from analytics.policy.rules import RULE_SQL
from analytics.report.cli import add_parsers as report_commands
from collectors.cli import add_parsers as collectors_commands
from collectors.config import CollectorConfig, ExportersConfig, SamplerConfig
from collectors.exporters_cli import add_parsers as exporters_commands
from collectors.service import PROTOCOLS
from dashboards.catalog import BUILDERS
from dashboards.cli import add_parsers as dashboards_commands
from dashboards.config import DashboardsConfig
from netobs import counter_rates, ddl, observations
from netobs.audit import AUDIT, AUDIT_TABLE
from netobs.store import STORES
from netobs.tables import Declared, Table, View
from netobs.transport import TRANSPORTS
from pipeline.config import EnrichConfig, PipelineConfig
from pipeline.metadata.inventory import InventoryError, load_inventory
from pipeline.metadata.model import Namespace, Pod
from pipeline.metadata.versions import VERSIONS_TABLE

if TYPE_CHECKING:
    from netobs_app.settings import Settings

Commands = Callable[["argparse._SubParsersAction[argparse.ArgumentParser]"], None]


@dataclass(frozen=True)
class Component:
    name: str
    #: Settings key → the section's model, owned by the component.
    sections: Mapping[str, type[BaseModel]] = field(default_factory=dict)
    #: What the component adds to the ``netobs`` command (handlers take ``(args, settings)``).
    commands: tuple[Commands, ...] = ()
    #: Plug-in kind → its dict (name → factory), as the component keeps it.
    plugins: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)
    #: The kernel's own tables and views (single-node names), created by the store's converge.
    tables: tuple[str, ...] = ()
    #: The tables and views a component declares in its package (:mod:`netobs.tables`); every
    #: store the root opens creates them at start (:func:`schema`), in the store's layout.
    declares: tuple[Table | View, ...] = ()
    #: Retention in days of its tables with a TTL, from the settings.
    retention: Callable[[Settings], Mapping[str, int]] = field(default=lambda settings: {})


def inventory_labels(
    path: Path,
) -> tuple[list[tuple[str, str, dict[str, str]]], dict[str, dict[str, str]], list[str]]:
    """The pods and namespaces (with their labels) of an inventory file, for the policy's label
    selectors (``policy lint|check --inventory``): the kinds the metadata watcher gives, read by the
    pipeline's own loader; malformed objects are skipped and returned as problems."""
    try:
        inv = load_inventory(path)
    except InventoryError as e:
        raise ValueError(str(e)) from None
    pods = [(p.namespace, p.name, dict(p.labels)) for p in inv.of(Pod) if isinstance(p, Pod)]
    namespaces = {n.name: dict(n.labels) for n in inv.of(Namespace) if isinstance(n, Namespace)}
    return pods, namespaces, [str(p) for p in inv.problems]


#: In the order their sub-commands appear in ``netobs --help``. The analytics' own sub-commands
#: (``analyze``, ``scenario``) come first, from the CLI, which adds ``scenario evaluate`` to them.
COMPONENTS: tuple[Component, ...] = (
    Component(
        "netobs",
        plugins={"store.type": STORES, "transport.type": TRANSPORTS},
        tables=(
            *(spec.name for spec in ddl.TABLES.values()),
            *(name for r in ddl.ROLLUPS for name in (r.table, f"{r.table}_mv")),
            counter_rates.VIEW,
        ),
        # the audit table: also created by the runtime on legacy servers (without TTL)
        declares=(observations.OBSERVATION_POINTS_TABLE, AUDIT_TABLE),
        retention=lambda settings: {AUDIT: settings.control.auth.audit_retention_days},
    ),
    Component(
        "collectors",
        sections={"collector": CollectorConfig, "sampler": SamplerConfig, "exporters": ExportersConfig},
        commands=(collectors_commands, exporters_commands),
        plugins={"collector.listeners[].protocol": PROTOCOLS},
    ),
    Component(
        "pipeline",
        sections={"pipeline": PipelineConfig, "enrich": EnrichConfig},
        declares=(VERSIONS_TABLE,),
    ),
    Component(
        "analytics",
        sections={"analytics": AnalyticsConfig, "policy": PolicyScheduleConfig},
        commands=(partial(policy_commands, inventory_labels=inventory_labels), report_commands),
        plugins={"detectors": DETECTORS, "policy rule types": RULE_SQL},
        declares=(FINDINGS_TABLE, VIOLATIONS_TABLE, EVIDENCE_VIEW),
    ),
    Component(
        "dashboards",
        sections={"dashboards": DashboardsConfig},
        commands=(dashboards_commands,),
        plugins={"dashboards": BUILDERS},
    ),
    Component(
        "alerts",
        sections={"alerts": AlertsConfig},
        commands=(alerts_commands,),
        plugins={"alerts.sinks.<name>.type": SINKS},
        declares=(NOTIFICATIONS_TABLE, CURSORS_TABLE),
        retention=lambda settings: {NOTIFICATIONS_TABLE.name: settings.alerts.state_retention_days},
    ),
)


def sections() -> dict[str, type[BaseModel]]:
    """Every component-owned Settings section, by key."""
    return {key: model for c in COMPONENTS for key, model in c.sections.items()}


def tables() -> dict[str, str]:
    """Every table and view of the store → the component that writes it."""
    return {name: c.name for c in COMPONENTS for name in (*c.tables, *(d.name for d in c.declares))}


def schema(settings: Settings) -> list[Declared]:
    """Every component's tables and views with their retention: what a store the root opens
    creates at start (``make_store(settings.store, schema(settings))``)."""
    out = []
    for c in COMPONENTS:
        days = c.retention(settings)
        out += [Declared(item, days.get(item.name)) for item in c.declares]
    return out


def commands() -> list[Commands]:
    return [register for c in COMPONENTS for register in c.commands]
