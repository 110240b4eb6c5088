"""How the policy and report commands reach the store, and parse their time arguments.

While ``netobs run`` owns an embedded store, other processes go through its control endpoint
(``/query``, with the token of ``$NETOBS_TOKEN`` / ``control.auth.token_file``; reads return Arrow); otherwise the store is opened directly.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta

import pyarrow as pa

from netobs.config import ControlConfig
from netobs.control import remote_query
from netobs.store import make_store

_RELATIVE = re.compile(r"^(now)?-(\d+)([smhdw])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}


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


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """ISO 8601 (UTC when no offset), 'now', or relative '-2h' / 'now-7d'."""
    now = now or datetime.now(UTC)
    if text == "now":
        return now
    m = _RELATIVE.match(text)
    if m:
        return now - timedelta(**{_UNITS[m.group(3)]: int(m.group(2))})
    t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def parse_duration(text: str) -> int:
    """'300', '5m', '1h', '1d' → seconds."""
    m = re.fullmatch(r"(\d+)([smhd]?)", text)
    if not m:
        raise ValueError(f"bad duration {text!r}")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}[m.group(2)]
