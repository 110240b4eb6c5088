"""Shared pytest fixtures: real services started by the test session itself."""

from tests.services.clickhouse_server import clickhouse_server  # noqa: F401
from tests.services.kafka import kafka_broker, topic_factory  # noqa: F401
from tests.services.ovs import ovs_lab  # noqa: F401
from tests.services.store import module_store_factory, store, store_factory  # noqa: F401
