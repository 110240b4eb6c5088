"""Stores write flow batches into ClickHouse and answer queries; chosen by ``type``."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

from netobs.config import StoreConfig
from netobs.store import validate
from netobs.store.base import Store, StoreError, StoreUnavailable
from netobs.tables import Declared


def _chdb(cfg: StoreConfig, schema: Sequence[Declared] = ()) -> Any:
    from netobs.store.chdb import ChdbStore

    return ChdbStore(cfg, schema)


def _clickhouse(cfg: StoreConfig, schema: Sequence[Declared] = ()) -> Any:
    from netobs.store.clickhouse import ClickHouseStore

    return ClickHouseStore(cfg, schema)


#: The store plug-ins, by the ``store.type`` config value.
STORES: dict[str, Callable[[StoreConfig, Sequence[Declared]], Store]] = {
    "chdb": _chdb,
    "clickhouse": _clickhouse,
}


def make_store(cfg: StoreConfig, schema: Sequence[Declared] = ()) -> Store:
    """The configured store; ``schema`` (the components' tables, from the composition root) is
    created with the kernel's tables when it starts, so every table exists from the first start."""
    return STORES[cfg.type](cfg, schema)


__all__ = ["STORES", "Store", "StoreError", "StoreUnavailable", "make_store", "validate"]
