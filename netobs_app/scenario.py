"""``netobs scenario evaluate`` and ``scenario counting``: synthetic banks through the real path, scored.

Part of the composition root: it joins the collectors' decoder, the pipeline's enrichment
and the analytics. Steps: generate the scenario unless it exists, ingest its
IPFIX capture with its inventory into a store of its own (no TTL: the scenario's dates are
fixed), analyze its last week against the weeks before, and print precision, recall, F1
and detection delay per detector, beside the Theia-style EWMA reference on the volume
series.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from analytics.cli import load_analytics
from analytics.policy.evaluate import evaluate
from analytics.policy.model import Policy
from analytics.runner import Analysis
from analytics.scenario import ScenarioSpec, counting_eval, generate
from analytics.scenario.bank import Bank
from analytics.scenario.conventions import (
    CONVENTIONS,
    conversations,
    counting_config,
    exemption_expiry,
    export,
    write,
    write_bank,
)
from analytics.scoring import score, table
from netobs.counting import CountingConfig
from netobs.store import make_store
from netobs_app import components
from netobs_app.capture import decoded
from netobs_app.settings import Settings
from pipeline.enrich import make_enricher
from pipeline.enrich_ingest import Ingest


def add_parser(scenario_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = scenario_sub.add_parser(
        "evaluate", help="ingest a scenario, analyze its last week, score the detectors"
    )
    e.add_argument("dir", type=Path, help="scenario directory (generated there if missing)")
    e.add_argument("--tenants", type=int, default=10)
    e.add_argument("--days", type=int, default=28)
    e.add_argument(
        "--analyze-days", type=int, default=7, help="the last N days are analysed, the rest is history"
    )
    e.add_argument("--output", choices=["table", "json"], default="table")
    e.add_argument(
        "--convention",
        default="probe_both_ends",
        help="how the exporters report the traffic, when generating (analytics.scenario.traffic.CONVENTIONS)",
    )
    e.add_argument("--seed", type=int, default=7, help="random seed, when generating")
    e.set_defaults(func=cmd_evaluate)
    c = scenario_sub.add_parser(
        "counting",
        help="export one bank's traffic under every exporter convention, ingest each, score the counting model",
    )
    c.add_argument("dir", type=Path, help="working directory (captures, inventory, one store per convention)")
    c.add_argument("--conventions", default="all", help="comma-separated conventions (default: all)")
    c.add_argument("--seed", type=int, default=None, help="random seed (default: drawn now, and printed)")
    c.add_argument("--conversations", type=int, default=180)
    c.add_argument("--output", choices=["table", "json"], default="table")
    c.set_defaults(func=cmd_counting)


def _scenario_settings(settings: Settings, root: Path) -> Settings:
    store = settings.store.model_copy(
        update={
            "type": "chdb",
            "retention_days": 0,
            "rollup_1m_retention_days": 0,
            "rollup_1h_retention_days": 0,
            "exporter_health_retention_days": 0,
            "chdb": settings.store.chdb.model_copy(update={"path": root / "chdb"}),
        }
    )
    enrich = settings.enrich.model_copy(update={"inventory": root / "inventory.yaml"})
    update: dict[str, Any] = {"store": store, "enrich": enrich}
    if (root / "counting.yaml").exists():  # the scenario's routers and their centers
        import yaml

        from netobs.counting import CountingConfig

        update["counting"] = CountingConfig.model_validate(
            yaml.safe_load((root / "counting.yaml").read_text())
        )
    return settings.model_copy(update=update)


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    root: Path = args.dir
    if not (root / "labels.json").exists():
        try:
            spec = ScenarioSpec(args.tenants, args.days, seed=args.seed, convention=args.convention)
        except ValueError as e:
            print(f"netobs: {e}", file=sys.stderr)
            return 2
        print(json.dumps(generate(spec, root)), file=sys.stderr)
    settings = _scenario_settings(settings, root)
    labels = json.loads((root / "labels.json").read_text())
    store = make_store(settings.store, components.schema(settings))
    store.start()
    try:
        figures: dict[str, float] = {}
        if not (root / "chdb" / ".ingested").exists():
            started = time.perf_counter()
            ingest = Ingest(make_enricher(settings, store), store, progress=None)
            for flows, _, rejects in decoded(str(root / "exports.pcap")):
                ingest.add(flows, rejects)
            ingest.flush()
            figures["ingest_s"] = round(time.perf_counter() - started, 1)
            (root / "chdb" / ".ingested").write_text(ingest.summary())
        last = store.query_arrow(
            f"SELECT max(flow_start) AS t FROM `{settings.store.database}`.flows"
        ).column("t")[0]
        end = datetime.fromtimestamp(int(last.as_py().timestamp()) // 86400 * 86400 + 86400, UTC)
        start = end - timedelta(days=args.analyze_days)
        cfg = load_analytics(root / "analytics.yaml")
        started = time.perf_counter()
        analysis = Analysis(
            store.query_arrow, settings.store.database, cfg, start, end, history_days=args.days
        )
        findings = analysis.run()
        figures["analyze_s"] = round(time.perf_counter() - started, 1)
        reference = analysis.ewma_volumes()
    finally:
        store.stop()
    bucket = timedelta(seconds=cfg.bucket_s)
    ours = table(score(findings, labels, bucket), args.analyze_days)
    volume_labels = [lab for lab in labels if lab["detector"] == "volume"]
    theirs = table(score(reference, volume_labels, bucket), args.analyze_days)
    if args.output == "json":
        print(json.dumps({"netobs": ours, "ewma_reference": theirs, "figures": figures}, indent=1))
        return 0
    print(
        f"scenario {root}: analysed {start:%Y-%m-%d} .. {end:%Y-%m-%d} ({args.analyze_days} days), {figures}"
    )
    _print("netobs detectors", ours)
    _print("Theia-style EWMA (whole-series sigma) on the same volume series", theirs)
    return 0


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    cols = [
        "detector",
        "labels",
        "detected",
        "findings",
        "explained",
        "precision",
        "recall",
        "f1",
        "false_per_day",
        "median_delay_min",
    ]
    print("  ".join(f"{c:>16}" if i else f"{c:<16}" for i, c in enumerate(cols)))
    for r in rows:
        print("  ".join(f"{r.get(c)!s:>16}" if i else f"{r.get(c)!s:<16}" for i, c in enumerate(cols)))


def cmd_counting(args: argparse.Namespace, settings: Settings) -> int:
    """The same conversations exported under each convention, through decode → enrich → store."""
    wanted = CONVENTIONS if args.conventions == "all" else tuple(args.conventions.split(","))
    unknown = sorted(set(wanted) - set(CONVENTIONS))
    if unknown:
        print(f"netobs: unknown conventions {unknown}; known: {', '.join(CONVENTIONS)}", file=sys.stderr)
        return 2
    entropy = np.random.SeedSequence().entropy
    assert isinstance(entropy, int)  # drawn from the OS when none is given
    seed = args.seed if args.seed is not None else entropy % 2**32
    root: Path = args.dir
    bank = Bank(tenants=3)
    now_ms = int(time.time() // 60 * 60_000)
    rng = np.random.default_rng(seed)
    span = (now_ms - 45 * 60_000, 30 * 60_000)
    convs = conversations(bank, rng, *span, args.conversations)
    write_bank(bank, root)
    pods = {p.ip: p for p in bank.pods}
    expiry_ms = exemption_expiry(*span)
    results = []
    for name in wanted:
        exp = export(convs, name, np.random.default_rng([seed, CONVENTIONS.index(name)]))
        pcap = write(exp, root / name)
        cfg = _scenario_settings(settings, root).model_copy(
            update={"counting": CountingConfig.model_validate(counting_config())}
        )
        store_cfg = cfg.store.model_copy(
            update={"chdb": cfg.store.chdb.model_copy(update={"path": root / name / "chdb"})}
        )
        cfg = cfg.model_copy(update={"store": store_cfg})
        store = make_store(cfg.store, components.schema(cfg))
        store.start()
        try:
            store.execute(f"TRUNCATE TABLE IF EXISTS `{cfg.store.database}`.flows")
            ingest = Ingest(make_enricher(cfg, store), store, progress=None)
            for flows, _, rejects in decoded(str(pcap), cfg):
                ingest.add(flows, rejects)
            ingest.flush()
            result = counting_eval.score(store.query_arrow, cfg.store.database, convs, exp)
            policy = Policy.model_validate(counting_eval.policy(*span))
            evaluate(store, policy, datetime.fromtimestamp(now_ms / 1000 - 7200, UTC),
                     datetime.fromtimestamp(now_ms / 1000 + 3600, UTC), evidence=10_000)  # fmt: skip
            result["policy"] = counting_eval.policy_score(
                store.query_arrow, cfg.store.database, convs, exp, pods, expiry_ms
            )
        finally:
            store.stop()
        result["datagrams"] = len(exp.datagrams)
        result["decode_rejects"] = ingest.rejects
        rules = {k: v for k, v in result["policy"].items() if k != "near_misses"}
        near = result["policy"]["near_misses"]
        result["passed"] = (
            counting_eval.passed(result)
            and all(
                v["precision"] == 1.0 and v["recall"] == 1.0 and not v["replies_flagged"]
                for v in rules.values()
            )
            and all(v["flagged"] == 0 for k, v in near.items() if k != "flagged_after_expiry")
            and near["flagged_after_expiry"]["flagged"] == near["flagged_after_expiry"]["seen"]
        )
        results.append(result)
    if args.output == "json":
        print(json.dumps({"seed": seed, "results": results}, indent=1, default=str))
    else:
        print(f"counting model, seed {seed}, {len(convs)} conversations")
        print(f"{'convention':<18} {'sampling':<44} {'scored':>6} {'unobs':>5} {'outside':>7} "
              f"{'roles ok':>8} {'passed':>6}  totals (estimate/truth)")  # fmt: skip
        for r in results:
            totals = ", ".join(f"{k} {v['ratio']}" for k, v in r["totals"].items())
            totals += "; policy " + ", ".join(
                f"{k} P={v['precision']} R={v['recall']}"
                for k, v in r["policy"].items()
                if k != "near_misses"
            )
            totals += "; near-misses " + ", ".join(
                f"{k} {v['flagged']}/{v['seen']} flagged" for k, v in r["policy"]["near_misses"].items()
            )
            print(f"{r['convention']:<18} {json.dumps(r['sampling']):<44} {r['scored']:>6} {r['unobservable']:>5} "
                  f"{len(r['outside_bound']):>7} {r['roles_right']!s:>8} {r['passed']!s:>6}  {totals}")  # fmt: skip
    return 0 if all(r["passed"] for r in results) else 1
