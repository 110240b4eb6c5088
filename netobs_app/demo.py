"""``netobs demo``: a live bank in the browser. Starts ``netobs run`` in this process and the live bank's
exporters (:mod:`analytics.scenario.live`) sending sFlow and IPFIX to its collectors over UDP, then
prints the flow explorer's address and what to look at.

Everything is dated now (the exporters' clocks are this machine's). The store, inventory and
policy go under ``--dir`` (default ./var/demo, emptied first). The read-only routes get a
password drawn now unless the configuration sets one.
"""

from __future__ import annotations

import argparse
import logging
import secrets
import socket
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import yaml

from analytics.scenario import live
from netobs.auth import hash_token, new_token
from netobs.config import PrincipalConfig
from netobs_app.runtime import Runtime
from netobs_app.settings import Settings

log = logging.getLogger(__name__)

#: A policy the story breaks: tenants are isolated from each other.
POLICY = {
    "name": "demo-bank",
    "description": "The live demo bank's segmentation: tenants do not talk to each other.",
    "rules": [
        {"id": "tenant-isolation", "type": "tenant_isolation", "severity": "high", "owner": "network-security",
         "regulations": ["ISO 27001 A.8.22"]},
    ],
}  # fmt: skip


def add_parser(sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    d = sub.add_parser("demo", help="run a live three-center bank into netobs and serve the flow explorer")
    d.add_argument(
        "--dir", type=Path, default=Path("var/demo"), help="where the demo keeps its store (emptied)"
    )
    d.add_argument("--seconds", type=float, default=0, help="stop after this long (0: at Ctrl-C)")
    d.add_argument("--rate", type=float, default=10.0, help="conversations started per second")
    d.add_argument("--seed", type=int, default=None, help="random seed (default: drawn now, and printed)")
    d.set_defaults(func=cmd_demo)


DEMO_VIEWER = "demo"


def demo_settings(settings: Settings, root: Path) -> tuple[Settings, Path, str]:
    """``settings`` with the demo's store, inventory, policy and a fast schedule; and the inventory path."""
    import shutil

    if root.exists():
        shutil.rmtree(root)
    root.mkdir(parents=True)
    inventory = root / "inventory.yaml"
    policy = root / "policy.yaml"
    policy.write_text(yaml.safe_dump(POLICY, sort_keys=False))
    s = settings
    # A viewer token drawn at start, for ClickHouse clients and Grafana (/clickhouse needs a token,
    # never anonymous) and for a browser on another host; only its hash is in the settings.
    token = new_token()
    viewer = PrincipalConfig(name=DEMO_VIEWER, role="viewer", token_sha256=hash_token(token))
    auth = s.control.auth
    control = s.control.model_copy(
        update={"auth": auth.model_copy(update={"principals": (*auth.principals, viewer)})}
    )
    update: dict[str, Any] = {
        "store": s.store.model_copy(update={"chdb": s.store.chdb.model_copy(update={"path": root / "chdb"})}),
        "enrich": s.enrich.model_copy(update={"inventory": inventory}),
        "policy": s.policy.model_copy(update={"file": policy, "window_s": 60, "lag_s": 30}),
        "analytics": s.analytics.model_copy(update={"schedule_interval_s": 60, "bucket_s": 60, "lag_s": 30}),
        "counting": s.counting.model_copy(update={"allowed_lateness_s": 30}),
        "control": control,
    }
    return s.model_copy(update=update), inventory, token


def _targets(settings: Settings) -> dict[str, tuple[str, int]]:
    """Where each protocol goes: the listener on a 6343-ish port for sFlow, the other for IPFIX."""
    addrs = []
    for lst in settings.collector.listeners:
        host, _, port = lst.listen.rpartition(":")
        addrs.append((host.strip("[]") or "127.0.0.1", int(port)))
    if not addrs:
        raise ValueError("the demo needs at least one collector listener")
    sflow = next((a for a in addrs if str(a[1]).endswith("6343")), addrs[0])
    ipfix = next((a for a in addrs if str(a[1]).endswith("4739")), addrs[-1])
    return {"sflow": sflow, "ipfix": ipfix}


class Sender:
    """One UDP socket per exporter address (a loopback alias), as each exporter has its own."""

    def __init__(self, targets: dict[str, tuple[str, int]]):
        self.targets = targets
        self.socks: dict[str, socket.socket] = {}

    def __call__(self, address: str, protocol: str, payload: bytes) -> None:
        sock = self.socks.get(address)
        if sock is None:
            sock = self.socks[address] = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
            sock.bind((address, 0))
        sock.sendto(payload, self.targets[protocol])

    def close(self) -> None:
        for s in self.socks.values():
            s.close()


def urls(address: str) -> dict[str, str]:
    return {"explorer": f"http://{address}/explorer/", "clickhouse": f"http://{address}/clickhouse/"}


def follow_moves(runtime: Runtime, inv_path: Path) -> Callable[[Any, int], None]:
    """The live bank's ``on_move``: a rollout moved a pod, so the inventory file is written again and
    applied to the running enricher as of the move's time (flows are named by when they started)."""
    from pipeline.metadata.inventory import apply_inventory

    def moved(bank: Any, at_ms: int) -> None:
        inv_path.write_text(yaml.safe_dump(live.inventory(bank), sort_keys=False))
        if runtime.enricher is not None:
            apply_inventory(runtime.enricher.metadata, inv_path, at=at_ms)

    return moved


def cmd_demo(args: argparse.Namespace, settings: Settings) -> int:
    seed = args.seed if args.seed is not None else secrets.randbelow(2**31)
    settings, inv_path, token = demo_settings(settings, args.dir)
    bank = live.live_bank()
    inv_path.write_text(yaml.safe_dump(live.inventory(bank), sort_keys=False))
    runtime = Runtime(settings, collect=True, process=True)
    runtime.start()
    sender = Sender(_targets(settings))

    sim = live.LiveBank(bank, sender, seed, rate=args.rate, on_move=follow_moves(runtime, inv_path))
    stop = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,), name="live-bank", daemon=True)
    thread.start()
    u = urls(runtime.control.address if runtime.control else settings.control.listen)
    print(_banner(u, settings, seed, token), flush=True)
    try:
        _wait(args.seconds, runtime)
    finally:
        stop.set()
        thread.join(5)
        sender.close()
        runtime.stop()
    print(f"demo: sent {sim.sent['datagrams']} datagrams ({sim.sent['reports']} flow reports); "
          f"events: {', '.join(sim.happened) or 'none yet'}; {len(sim.moves)} pods moved", file=sys.stderr)  # fmt: skip
    return 1 if runtime.fatal else 0


def _banner(u: dict[str, str], settings: Settings, seed: int, token: str) -> str:
    lines = [
        "",
        "netobs demo: a two-site, three-center bank is sending sFlow (dc2) and IPFIX (dc1, dc3) to netobs now.",
        f"  Flow explorer:  {u['explorer']}",
        "  (on this host no login; from another browser, the viewer token below)",
        f"  Grafana / ClickHouse clients (HTTP, path /clickhouse): {u['clickhouse']}  user {DEMO_VIEWER},",
        f"  password (a viewer token, also as 'Authorization: Bearer'): {token}",
        f"  seed {seed}; data in {settings.store.chdb.path}",
        "What happens (minutes after the start):",
    ]
    for e in sorted(live.TIMELINE, key=lambda e: e.start_s):
        lines.append(f"  {e.start_s / 60:4.1f}  {e.name}: {e.what}")
    lines += [
        "Look at: the center → center Sankey (dc1 empties during the failover, dc3 receives replication),",
        "  the tenant → tenant Sankey (tenant01 → tenant02), traffic split by source tenant (tenant03's burst),",
        "  and the violations list (its 'traffic' link opens the flows behind it). Ctrl-C stops.",
        "",
    ]
    return "\n".join(lines)


def _wait(seconds: float, runtime: Runtime) -> None:
    import signal

    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    end = time.monotonic() + seconds if seconds > 0 else None
    while not done.wait(0.5):
        if end is not None and time.monotonic() >= end:
            return
        if runtime.fatal:
            return


__all__ = ["POLICY", "add_parser", "cmd_demo", "demo_settings", "follow_moves", "urls"]
