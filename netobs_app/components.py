"""The components as the composition root sees them: sections, sub-commands and plug-ins.

Each component owns its configuration section(s) and keeps its plug-ins in one explicit dict
of its own package (``STORES``, ``SINKS``, ``DETECTORS``, ...). This table is the one place
that puts them together; the CLI registers the sub-commands from it, ``Settings`` must mount
exactly its sections (a test holds them together) and ``docs/config.md`` lists its plug-ins.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import BaseModel

from alerts.cli import add_parsers as alerts_commands
from alerts.config import AlertsConfig
from alerts.sinks import SINKS
from analytics.config import AnalyticsConfig, PolicyScheduleConfig
from analytics.detectors import DETECTORS
from analytics.policy.cli import add_parsers as policy_commands
from analytics.policy.rules import RULE_SQL
from analytics.report.cli import add_parsers as report_commands
from collectors.service import PROTOCOLS
from dashboards.catalog import BUILDERS
from dashboards.cli import add_parsers as dashboards_commands
from dashboards.config import DashboardsConfig
from netobs.store import STORES
from netobs.transport import TRANSPORTS

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


#: In the order their sub-commands appear in ``netobs --help``. The analytics' own sub-commands
#: (``analyze``, ``scenario``) come first, from the CLI, which adds ``scenario evaluate`` to them.
COMPONENTS: tuple[Component, ...] = (
    Component("netobs", plugins={"store.type": STORES, "transport.type": TRANSPORTS}),
    Component("collectors", plugins={"collector.listeners[].protocol": PROTOCOLS}),
    Component(
        "analytics",
        sections={"analytics": AnalyticsConfig, "policy": PolicyScheduleConfig},
        commands=(policy_commands, report_commands),
        plugins={"detectors": DETECTORS, "policy rule types": RULE_SQL},
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
    ),
)


def sections() -> dict[str, type[BaseModel]]:
    """Every component-owned Settings section, by key."""
    return {key: model for c in COMPONENTS for key, model in c.sections.items()}


def commands() -> list[Commands]:
    return [register for c in COMPONENTS for register in c.commands]
