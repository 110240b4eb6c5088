"""Grafana dashboards as code over the ClickHouse data source plugin.

Four dashboards (cross-center operations, tenant drill-down, collection health,
compliance) built in Python as Grafana JSON models; :mod:`dashboards.render` expands the
plugin's macros and template variables into plain ClickHouse SQL, which ``netobs dashboards
check`` and the tests run against the real engine. ``export`` writes the JSON files and
Grafana provisioning; ``push`` uploads them through the Grafana HTTP API.
"""

from dashboards.catalog import BUILDERS, build_all
from dashboards.check import Report, check
from dashboards.export import export
from dashboards.push import PushError, push
from dashboards.render import ALL, Context, RenderError, render

__all__ = [
    "ALL",
    "BUILDERS",
    "Context",
    "PushError",
    "RenderError",
    "Report",
    "build_all",
    "check",
    "export",
    "push",
    "render",
]
