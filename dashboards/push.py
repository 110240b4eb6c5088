"""``netobs dashboards push``: upload the dashboards to a Grafana through its HTTP API.

Uses ``grafana-client`` (the maintained fork of ``grafana-api``): the folder is created when
missing, then every dashboard is POSTed to ``/api/dashboards/db`` with ``overwrite: true`` so
that a push replaces what an earlier one wrote. The token is a SecretStr, sent as a Bearer
header and never printed; errors name the dashboard and Grafana's answer.
"""

from __future__ import annotations

from typing import Any

from pydantic import SecretStr

from dashboards.catalog import build_all


class PushError(RuntimeError):
    """Grafana refused or could not be reached; the message says which dashboard and why."""


def _client(url: str, token: SecretStr | None, timeout_s: float) -> Any:
    from grafana_client import GrafanaApi

    credential = token.get_secret_value() if token is not None else None
    return GrafanaApi.from_url(url, credential=credential, timeout=timeout_s)


def _ensure_folder(api: Any, uid: str, title: str) -> None:
    from grafana_client.client import GrafanaClientError

    try:
        api.folder.get_folder(uid)
    except GrafanaClientError as e:
        if getattr(e, "status_code", None) != 404:
            raise
        api.folder.create_folder(title, uid=uid)


def push(settings: Any, url: str | None = None, message: str = "netobs dashboards push") -> list[str]:
    """Push every dashboard; returns the URLs Grafana gives them."""
    from grafana_client.client import GrafanaException

    cfg = settings.dashboards
    base = (url or cfg.grafana_url).rstrip("/")
    if cfg.grafana_token is None:
        raise PushError("no Grafana token: set NETOBS__DASHBOARDS__GRAFANA_TOKEN")
    api = _client(base, cfg.grafana_token, cfg.timeout_s)
    out = []
    where = f"folder {cfg.folder_uid}"
    try:
        _ensure_folder(api, cfg.folder_uid, cfg.folder)
        for name, model in build_all(settings).items():
            where = f"dashboard {name}"
            body = {"dashboard": {**model, "id": None}, "folderUid": cfg.folder_uid,
                    "overwrite": True, "message": message}  # fmt: skip
            answer = api.dashboard.update_dashboard(body)
            out.append(str(answer.get("url", model["uid"])) if isinstance(answer, dict) else model["uid"])
    except GrafanaException as e:
        raise PushError(
            f"{base}: {where}: Grafana answered {getattr(e, 'status_code', '?')}: {e.message}"
        ) from None
    except Exception as e:  # connection refused, timeouts, TLS: the transport's own errors
        raise PushError(f"{base}: {where}: {type(e).__name__}: {e}") from None
    return out


__all__ = ["PushError", "push"]
