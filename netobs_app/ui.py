"""``netobs ui``: the flow explorer (and, for an embedded store, the ClickHouse HTTP interface) over
an existing store, without collectors, pipeline or scheduler.

For the distributed mode (a ClickHouse server that ``netobs pipeline`` replicas fill) or to look at
an embedded store (a chdb directory) that no ``netobs run`` holds open. The control endpoint is
the one ``run`` serves, with the same authentication, SQL guard and query audit: loopback unless
``control.tls`` and principals are configured (the configuration refuses anything else).
"""

from __future__ import annotations

import argparse
import logging
import signal
import threading
from pathlib import Path
from typing import Any

from netobs.config import ChdbStoreConfig, ClickHouseStoreConfig, ControlConfig, StoreConfig
from netobs.store import StoreError
from netobs_app.runtime import Runtime
from netobs_app.settings import ConfigError, Settings

log = logging.getLogger(__name__)


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    u = sub.add_parser(
        "ui", help="serve the flow explorer over an existing store (no collectors, pipeline or scheduler)"
    )
    where = u.add_mutually_exclusive_group()
    where.add_argument(
        "--chdb", type=Path, metavar="DIR", help="an embedded store's directory (store.type chdb)"
    )
    where.add_argument(
        "--clickhouse", metavar="HOST:PORT", help="a ClickHouse server's native port (store.type clickhouse)"
    )
    u.add_argument("--database", help="the netobs database (default: store.database)")
    u.add_argument(
        "--listen",
        metavar="HOST:PORT",
        help="the control endpoint (default: control.listen; not loopback only with control.tls and principals)",
    )
    u.set_defaults(func=cmd_ui)


def _validated(model: Any, base: Any, **update: Any) -> Any:
    """``base`` with ``update``, validated again (``model_copy`` would skip the validators, e.g. the
    rule that a non-loopback listener needs TLS and principals)."""
    from pydantic import ValidationError

    try:
        return model.model_validate({**base.model_dump(), **update})
    except ValidationError as e:
        raise ConfigError("; ".join(str(x["msg"]) for x in e.errors())) from None


def ui_settings(
    settings: Settings,
    *,
    chdb: Path | None = None,
    clickhouse: str | None = None,
    database: str | None = None,
    listen: str | None = None,
) -> Settings:
    """``settings`` with the command line's store and listener. An embedded store must exist (an
    empty directory is not a store one meant to look at) and is opened at once (a directory
    never comes up later: no startup wait)."""
    store, control = settings.store, settings.control
    if chdb is not None:
        store = _validated(
            StoreConfig, store, type="chdb", chdb=_validated(ChdbStoreConfig, store.chdb, path=chdb)
        )
    if clickhouse is not None:
        host, _, port = clickhouse.rpartition(":")
        if not host or not port.isdigit():
            raise ConfigError(f"--clickhouse {clickhouse!r}: expected HOST:PORT (the native protocol port)")
        ch = _validated(ClickHouseStoreConfig, store.clickhouse, host=host.strip("[]"), port=int(port))
        store = _validated(StoreConfig, store, type="clickhouse", clickhouse=ch)
    if database is not None:
        store = _validated(StoreConfig, store, database=database)
    if listen is not None:
        control = _validated(ControlConfig, control, listen=listen)
    if store.type == "chdb":
        path = store.chdb.path
        if not path.is_dir() or not any(path.iterdir()):
            raise ConfigError(
                f"no netobs store at {path} (netobs run or netobs demo make one; --chdb DIR names another)"
            )
        control = _validated(ControlConfig, control, startup_wait_s=0)
    return settings.model_copy(update={"store": store, "control": control})


def held(path: Path) -> bool:
    """Whether another process holds the embedded store at ``path`` (the engine's exclusive
    ``flock`` on its ``status`` file; probed and released at once)."""
    import fcntl

    status = path / "status"
    if not status.is_file():
        return False
    with status.open("rb") as f:
        try:
            fcntl.flock(f.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            return True
        fcntl.flock(f.fileno(), fcntl.LOCK_UN)
    return False


def cmd_ui(args: argparse.Namespace, settings: Settings) -> int:
    settings = ui_settings(
        settings, chdb=args.chdb, clickhouse=args.clickhouse, database=args.database, listen=args.listen
    )
    if settings.store.type == "chdb" and held(settings.store.chdb.path):
        raise StoreError(
            f"another process (netobs run or netobs demo?) has the embedded store {settings.store.chdb.path} "
            "open, and only one process may: that process's control endpoint serves the explorer at /explorer/"
        )
    runtime = Runtime(settings, collect=False, process=False, schedule=False, read=True)
    try:
        runtime.start()
    except BaseException:
        runtime.stop()
        raise
    assert runtime.control is not None and runtime.store is not None
    where = f"{runtime.control.scheme}://{runtime.control.address}"
    store = (
        f"embedded store {settings.store.chdb.path}"
        if settings.store.type == "chdb"
        else f"ClickHouse {settings.store.clickhouse.host}:{settings.store.clickhouse.port} "
        f"({runtime.store.dialect} dialect)"
    )
    print(
        f"netobs ui: flow explorer at {where}/explorer/ over the {store}, database {settings.store.database}"
    )
    if settings.store.type == "chdb":
        print(
            f"  ClickHouse HTTP interface (Grafana, clickhouse clients; a viewer token): {where}/clickhouse/"
        )
    if runtime.store.dialect != "modern":
        print(
            "  this server is older than ClickHouse 19: no rollups (views read raw flows), no findings or violations"
        )
    print("  Ctrl-C stops.", flush=True)
    try:
        _wait()
    finally:
        runtime.stop()
    return 0


def _wait() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1):
        pass


__all__ = ["add_parser", "cmd_ui", "ui_settings"]
