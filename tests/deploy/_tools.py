"""The deployment tools the deploy tests run: helm v4 and kubeconform built from the Go module proxy,
and the Kubernetes API schemas made from the API's own OpenAPI document, all installed by
scripts/install-services.sh under $NETOBS_CACHE."""

from __future__ import annotations

import os
from pathlib import Path

from tests.services import _require

CACHE = Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs"))
BIN = CACHE / "go" / "bin"
K8S_VERSION = "v1.34.2"
SCHEMAS = CACHE / "k8s-schemas" / K8S_VERSION
COMPOSE_SCHEMA = CACHE / "compose-spec" / "compose-spec.json"


def tool(name: str) -> str:
    path = BIN / name
    if not path.exists():
        _require.unavailable(f"{path} missing (run scripts/install-services.sh)")
    return str(path)


def schemas() -> Path:
    if not (SCHEMAS / "daemonset-apps-v1.json").exists():
        _require.unavailable(f"Kubernetes schemas missing in {SCHEMAS} (run scripts/install-services.sh)")
    return SCHEMAS


def compose_schema() -> Path:
    if not COMPOSE_SCHEMA.exists():
        _require.unavailable(f"{COMPOSE_SCHEMA} missing (run scripts/install-services.sh)")
    return COMPOSE_SCHEMA
