"""Shared pytest fixtures (real services started by the test session itself, stores) and tiers.

Every test belongs to one tier: ``integration`` (a real service), ``slow`` (seconds of work) or,
when it is marked neither, ``fast``: ``pytest -m fast`` (``make test-fast``) needs no service.
"""

import pytest

from tests.services.clickhouse_server import clickhouse_server  # noqa: F401
from tests.services.kafka import kafka_broker, topic_factory  # noqa: F401
from tests.services.ovs import ovs_lab  # noqa: F401
from tests.services.store import module_store_factory, store, store_factory  # noqa: F401

SLOW_TIERS = ("slow", "integration")
#: A test that asks for one of these is an integration test, marked or not.
SERVICE_FIXTURES = {"kafka_broker", "topic_factory", "clickhouse_server", "ovs_lab", "alertmanager"}


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if SERVICE_FIXTURES & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.integration)
        if not any(item.get_closest_marker(tier) for tier in SLOW_TIERS):
            item.add_marker(pytest.mark.fast)
