"""The embedded store for tests, as factories: every test or module gets stores of its own.

chdb opens one data path per process at a time, so a factory stops what it started when its
scope ends, newest first. ``store_factory(**fields)`` takes ``StoreConfig`` fields (the chdb
path defaults to a fresh temporary directory); ``store`` is the default store of one test.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from netobs.config import ChdbStoreConfig, StoreConfig
from netobs.store import Store, make_store


class StoreFactory:
    """Builds and starts embedded stores; :meth:`close` stops them."""

    def __init__(self, tmp_path_factory: pytest.TempPathFactory):
        self._tmp = tmp_path_factory
        self._started: list[Store] = []

    def __call__(self, config: StoreConfig | None = None, **fields: Any) -> Store:
        if config is None:
            fields.setdefault("chdb", ChdbStoreConfig(path=self._tmp.mktemp("store") / "chdb"))
            config = StoreConfig(**fields)
        store = make_store(config)
        store.start()
        self._started.append(store)
        return store

    def close(self) -> None:
        while self._started:
            self._started.pop().stop()


@pytest.fixture
def store_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreFactory]:
    factory = StoreFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture(scope="module")
def module_store_factory(tmp_path_factory: pytest.TempPathFactory) -> Iterator[StoreFactory]:
    """The same, for stores a whole test module shares (chdb's start-up is the slow part)."""
    factory = StoreFactory(tmp_path_factory)
    yield factory
    factory.close()


@pytest.fixture
def store(store_factory: StoreFactory) -> Store:
    """A started embedded store with the default configuration."""
    return store_factory()
