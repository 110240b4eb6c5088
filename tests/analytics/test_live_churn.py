"""The live bank's rollouts: pods keep moving between nodes, and every flow names the node its pod ran
on when the flow started, before and after each move.

The bank is sent through the real path (its exporters' sFlow and IPFIX over UDP → collectors →
pipeline → enrichment → chdb, in one ``Runtime``) with the demo's ``on_move`` (the inventory
written and applied again as of each move). The oracle is the simulator's own move history
(:meth:`LiveBank.node_at`), not the enricher's. The minutes are sent faster than real time (dated
in the past), so only records that carry their flow's times are checked: IPFIX (dc1's OVS, dc3's
probe). sFlow samples (dc2) carry none; the collector dates them at receipt, which in real time
(the demo) is within seconds of the packets but here is the replay's wall clock.
"""

from __future__ import annotations

import secrets
import time
from collections import Counter

import pytest
import yaml

from analytics.scenario import live
from netobs_app import demo
from netobs_app.runtime import Runtime
from netobs_app.settings import Settings
from tests.services._proc import free_port
from tests.services.settle import settle

pytestmark = pytest.mark.slow
#: Minutes of the bank (and 25 s): rollouts start at 0:30, one move every 20 s (6 moves).
MINUTES = 2


def test_rollouts_keep_moving_pods_and_flows_name_the_node_of_their_time(tmp_path):
    seed = secrets.randbelow(2**31)
    print(f"live bank seed {seed}")
    base = Settings.model_validate({
        "collector": {"listeners": [{"listen": f"127.0.0.1:{free_port()}", "protocol": "auto"},
                                    {"listen": f"127.0.0.1:{free_port()}", "protocol": "auto"}],
                      "batch_max_delay_ms": 100},
        "pipeline": {"max_batch_delay_ms": 200},
        "control": {"listen": f"127.0.0.1:{free_port()}"},
        "analytics": {"schedule_interval_s": 0},
    })  # fmt: skip
    settings, inv_path, _ = demo.demo_settings(base, tmp_path / "demo")
    bank = live.live_bank()
    inv_path.write_text(yaml.safe_dump(live.inventory(bank), sort_keys=False))
    runtime = Runtime(settings, collect=True, process=True, schedule=False)
    runtime.start()
    sender = demo.Sender(demo._targets(settings))
    try:
        sim = live.LiveBank(bank, sender, seed, rate=3.0, on_move=demo.follow_moves(runtime, inv_path))
        now = int(time.time() * 1000)
        first = now - MINUTES * 60_000
        for t in range(first, now + 25_000, 1000):
            sim.step(t)
        sender.close()
        _settle(runtime)
        db = settings.store.database
        rows = runtime.store.query_arrow(
            "SELECT replaceRegexpOne(toString(src_addr), '^::ffff:', '') AS src, "
            "replaceRegexpOne(toString(dst_addr), '^::ffff:', '') AS dst, "
            "toUnixTimestamp64Milli(flow_start) AS start, toUnixTimestamp64Milli(time_received) AS received, "
            "toString(type) AS type, src_node, dst_node, src_pod, dst_pod "
            f"FROM `{db}`.flows"
        ).to_pylist()
    finally:
        runtime.stop()
    # continuous: a move every CHURN_EVERY_S from CHURN_FROM_S on, each to another node of its center
    span_s = (now + 25_000 - first) / 1000
    assert len(sim.moves) == int((span_s - live.CHURN_FROM_S) // live.CHURN_EVERY_S) + 1
    assert all(m.old_node != m.new_node and m.old_node[:3] == m.new_node[:3] for m in sim.moves)
    assert [m.at_ms for m in sim.moves] == [
        first + (live.CHURN_FROM_S + k * live.CHURN_EVERY_S) * 1000 for k in range(len(sim.moves))
    ]
    moved = {m.ip: m for m in reversed(sim.moves)}  # each moved pod's first move
    sides: Counter[tuple[str, str]] = Counter()
    wrong = []
    names: dict[str, set[str]] = {ip: set() for ip in moved}
    for r in rows:
        if r["type"] == "sflow":  # no flow times: named at receipt, which a replay of the past cannot match
            continue
        for end in ("src", "dst"):
            ip = r[end]
            if ip not in moved:
                continue
            expected, _ = sim.node_at(ip, r["start"])
            names[ip].add(r[f"{end}_pod"])
            if r[f"{end}_node"] != expected:
                wrong.append((ip, r["type"], r["start"], r["received"], r[f"{end}_node"], expected))
            sides[(ip, "before" if r["start"] < moved[ip].at_ms else "after")] += 1
    assert wrong == [], f"{len(wrong)} flows name the wrong node, e.g. {wrong[:5]}"
    assert all(len(n) <= 1 and "" not in n for n in names.values()), names  # same pod across its moves
    both = [ip for ip in moved if sides[(ip, "before")] and sides[(ip, "after")]]
    print(f"{len(sim.moves)} moves; flows of moved pods before/after: {dict(sides)}")
    assert both, f"no moved pod has flows on both sides of its move: {dict(sides)}"
    assert len({m.ip for m in sim.moves}) == len(sim.moves)  # a rollout moves each pod once a round


def _settle(runtime: Runtime, timeout_s: float = 120) -> None:
    settle(runtime.health, timeout_s)
