"""Stores write flow batches into ClickHouse and answer queries; chosen by ``type``."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from netobs.config import StoreConfig
from netobs.store import validate
from netobs.store.base import Store, StoreError, StoreUnavailable


def _chdb(cfg: StoreConfig) -> Any:
    from netobs.store.chdb import ChdbStore

    return ChdbStore(cfg)


def _clickhouse(cfg: StoreConfig) -> Any:
    from netobs.store.clickhouse import ClickHouseStore

    return ClickHouseStore(cfg)


#: The store plug-ins, by the ``store.type`` config value.
STORES: dict[str, Callable[[StoreConfig], Store]] = {"chdb": _chdb, "clickhouse": _clickhouse}


def make_store(cfg: StoreConfig) -> Store:
    return STORES[cfg.type](cfg)


__all__ = ["STORES", "Store", "StoreError", "StoreUnavailable", "make_store", "validate"]
