"""How the policy and report commands reach the store.

Time arguments are parsed by :mod:`netobs.timeargs`, the same way in every command.

While ``netobs run`` owns an embedded store, other processes go through its control endpoint
(``/query``, with the token of ``$NETOBS_TOKEN`` / ``control.auth.token_file``; reads return Arrow); otherwise the store is opened directly.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

import pyarrow as pa

from netobs.config import ControlConfig
from netobs.control import remote_query
from netobs.store import make_store


class RemoteStore:
    """The store of a running netobs process, through its control endpoint."""

    def __init__(self, listen: ControlConfig | str, database: str):
        self.listen, self.database = listen, database

    def query_arrow(self, sql: str) -> pa.Table:
        return remote_query(self.listen, sql)

    def execute(self, sql: str) -> None:
        remote_query(self.listen, sql)


@contextmanager
def open_store(settings) -> Iterator:
    """The running process's store if there is one, else the configured store opened here."""
    if _running(settings.control):
        yield RemoteStore(settings.control, settings.store.database)
        return
    store = make_store(settings.store)
    store.start()
    try:
        yield store
    finally:
        store.stop()


def _running(listen: ControlConfig | str) -> bool:
    try:
        remote_query(listen, "SELECT 1", timeout_s=5)
    except OSError:  # connection refused, timeout: no running process there
        return False
    return True
