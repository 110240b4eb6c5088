"""Configuration of the Grafana dashboards: the ClickHouse data source they name, where they
are pushed, and the folder they land in.

The dashboards own this section; the composition root (``netobs_app.settings``) mounts it in
the one Settings tree as ``dashboards``. The data source's host, port and database default to the store's, so that a
configuration that writes flows also describes the data source that reads them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr

from netobs.config_base import Section


class DashboardsConfig(Section):
    datasource_uid: str = Field(
        "netobs-clickhouse",
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        description="uid of the Grafana ClickHouse data source every panel queries.",
    )
    datasource_name: str = Field("netobs ClickHouse", description="Name of the provisioned data source.")
    datasource_host: str | None = Field(
        None,
        description="ClickHouse host as Grafana reaches it (default: store.clickhouse.host; in compose "
        "the service name).",
    )
    datasource_port: int | None = Field(
        None,
        ge=1,
        le=65535,
        description="ClickHouse port as Grafana reaches it (default: store.clickhouse.port).",
    )
    datasource_protocol: Literal["native", "http"] = Field(
        "native", description="Protocol of the data source (native: 9000/9440, http: 8123/8443)."
    )
    grafana_url: str = Field("http://127.0.0.1:3000", description="Grafana base URL for `dashboards push`.")
    grafana_token: SecretStr | None = Field(
        None,
        description="Grafana service account token for `dashboards push` (from env "
        "NETOBS__DASHBOARDS__GRAFANA_TOKEN; never logged).",
    )
    folder: str = Field("netobs", description="Grafana folder the dashboards are provisioned or pushed into.")
    folder_uid: str = Field(
        "netobs",
        pattern=r"^[A-Za-z0-9_-]{1,40}$",
        description="uid of that folder (created by push if missing).",
    )
    timeout_s: float = Field(10, gt=0, description="HTTP timeout of Grafana API calls.")


__all__ = ["DashboardsConfig"]
