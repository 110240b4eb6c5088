"""The compose stack: valid against the compose specification's own JSON schema (from compose-go),
health checks and restart policies everywhere, dependencies waited for until healthy, the Grafana
plugin from a local directory, a start order without cycles, and every netobs service's
configuration one netobs accepts."""

from __future__ import annotations

import copy
import json
import os
import re
from graphlib import TopologicalSorter
from pathlib import Path

import jsonschema
import pytest
import yaml

from netobs_app.cli import build_parser
from netobs_app.settings import load
from tests.deploy._tools import compose_schema

pytestmark = pytest.mark.integration
COMPOSE = Path(__file__).parents[2] / "compose"
NETOBS_SERVICES = {"collector", "pipeline", "scheduler"}


def stack() -> dict:
    return yaml.safe_load((COMPOSE / "docker-compose.yml").read_text())


def validator() -> jsonschema.Draft7Validator:
    return jsonschema.Draft7Validator(json.loads(compose_schema().read_text()))


def test_the_stack_is_valid_compose() -> None:
    errors = sorted(validator().iter_errors(stack()), key=str)
    assert not errors, [f"{list(e.path)}: {e.message}" for e in errors]


@pytest.mark.parametrize(
    ("path", "value", "where"),
    [
        (("services", "kafka", "restrat"), "always", "restrat"),  # a typo: unknown key
        (("services", "pipeline", "depends_on", "kafka", "condition"), "service_happy", "condition"),
        (("services", "clickhouse", "healthcheck", "tset"), ["CMD", "true"], "tset"),
    ],
)
def test_the_validator_rejects_broken_stacks(path, value, where) -> None:
    broken = copy.deepcopy(stack())
    node = broken
    for key in path[:-1]:
        node = node[key]
    node[path[-1]] = value
    errors = list(validator().iter_errors(broken))
    assert errors and any(where in (e.message + str(list(e.path))) for e in errors), errors


def test_health_restart_and_dependencies() -> None:
    services = stack()["services"]
    for name, svc in services.items():
        assert svc.get("restart") == "unless-stopped", name
        assert svc["healthcheck"]["test"][0] == "CMD", name
        assert "build" not in svc, f"{name}: images are built by deploy/image/build.py"
        for dep, how in svc.get("depends_on", {}).items():
            assert how == {"condition": "service_healthy"}, (name, dep)
            assert "healthcheck" in services[dep]
    order = list(
        TopologicalSorter({n: set(s.get("depends_on", {})) for n, s in services.items()}).static_order()
    )
    assert order.index("kafka") < order.index("collector") and order.index("kafka") < order.index("pipeline")
    assert order.index("clickhouse") < order.index("pipeline") < order.index("scheduler")
    assert order.index("clickhouse") < order.index("grafana")


def test_grafana_loads_its_plugin_from_a_local_directory() -> None:
    grafana = stack()["services"]["grafana"]
    env = grafana["environment"]
    assert "GF_INSTALL_PLUGINS" not in env and env["GF_PLUGINS_PREINSTALL_DISABLED"] == "true"
    mounts = {v.split(":")[1]: v.split(":")[0] for v in grafana["volumes"]}
    assert (COMPOSE / mounts["/var/lib/grafana/plugins"]).is_dir()
    ds = yaml.safe_load((COMPOSE / "grafana/provisioning/datasources/netobs.yaml").read_text())
    assert ds["datasources"][0]["type"] == "grafana-clickhouse-datasource"


def _interpolate(value: str, env: dict[str, str]) -> str:
    return re.sub(r"\$\{(\w+)(?::[-?][^}]*)?\}", lambda m: env[m.group(1)], value)


def test_every_netobs_service_runs_a_configuration_netobs_accepts(monkeypatch) -> None:
    services = stack()["services"]
    env_in = {"NETOBS_CLICKHOUSE_PASSWORD": "pw-from-env", "NETOBS_IMAGE": "netobs:0.1.0"}
    for name in NETOBS_SERVICES:
        svc = services[name]
        build_parser().parse_args(svc["command"])
        with monkeypatch.context() as m:
            for k in [k for k in os.environ if k.startswith("NETOBS")]:
                m.delenv(k)
            for k, v in svc["environment"].items():
                m.setenv(k, _interpolate(str(v), env_in))
            settings = load(COMPOSE / "netobs.compose.yaml")
        assert settings.transport.kafka.bootstrap_servers == ("kafka:9092",)
        assert settings.store.clickhouse.host == "clickhouse"
        assert settings.store.clickhouse.password.get_secret_value() == "pw-from-env"
        assert settings.control.metrics_listen.endswith(":9465")  # what the health check asks
        assert settings.control.startup_wait_s >= 60
        health = " ".join(svc["healthcheck"]["test"])
        assert "127.0.0.1:9465/health" in health
