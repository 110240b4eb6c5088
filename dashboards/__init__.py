"""Grafana dashboards as code over the ClickHouse data source.

Empty until there are enriched flows and findings to show.
"""

__all__: list[str] = []
