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
from analytics.scenario.generate import CONVENTIONS as TRAFFIC_CONVENTIONS
from analytics.scoring import score, table
from netobs.counting import CountingConfig
from netobs.store import make_store
from netobs_app import components
from netobs_app.capture import decoded, decoded_batches
from netobs_app.settings import Settings
from pipeline.enrich import make_enricher
from pipeline.enrich_ingest import Ingest


def add_parser(scenario_sub: argparse._SubParsersAction[argparse.ArgumentParser]) -> None:
    e = scenario_sub.add_parser(
        "evaluate",
        help="generate a labeled bank under each export convention, ingest it, analyze its last week, score "
        "the detectors per detector and convention beside the Theia-style EWMA",
    )
    e.add_argument(
        "dir",
        type=Path,
        help="scenario directory: one already generated (labels.json), or one subdirectory "
        "per convention generated there",
    )
    e.add_argument("--tenants", type=int, default=14)
    e.add_argument("--days", type=int, default=28)
    e.add_argument(
        "--analyze-days", type=int, default=7, help="the last N days are analysed, the rest is history"
    )
    e.add_argument("--output", choices=["table", "json"], default="table")
    e.add_argument(
        "--conventions",
        "--convention",
        dest="conventions",
        default="all",
        help="comma-separated export conventions to generate (analytics.scenario.generate.CONVENTIONS: probe_both_ends "
        "and the counting matrix's wire conventions; default: those already generated in DIR, else all)",
    )
    e.add_argument("--sampling", type=int, default=1000, help="sampling rate 1:N of every exporter")
    e.add_argument(
        "--volume",
        type=float,
        default=3e8,
        help="median real bytes per 5 minutes per tenant and center (anomaly sizes and link capacities "
        "scale with it); under sFlow every sampled packet is a record, so a 21-day bank at 1:1000 needs "
        "about 1e7 to stay in minutes",
    )
    e.add_argument("--seed", type=int, default=None, help="random seed (default: drawn now, and printed)")
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


def _seed(given: int | None) -> int:
    if given is not None:
        return given
    entropy = np.random.SeedSequence().entropy
    assert isinstance(entropy, int)  # drawn from the OS when none is given
    return entropy % 2**32


def draw_spec(
    seed: int, convention: str, tenants: int, days: int, sampling: int, volume: float = 3e8
) -> ScenarioSpec:
    """The scenario of one seed: noise level, export lateness and month-end batch factor drawn from it
    (the same for every convention, so conventions differ only in how the traffic is exported)."""
    rng = np.random.default_rng([seed, 12])
    return ScenarioSpec(
        tenants, days, sampling, seed, convention=convention,
        noise=float(rng.uniform(0.05, 0.2)), late_s=int(rng.choice([0, 120, 240])),
        month_end=float(rng.choice([1.0, 1.3])), volume=volume,
    )  # fmt: skip


def cmd_evaluate(args: argparse.Namespace, settings: Settings) -> int:
    root: Path = args.dir
    runs: list[tuple[str, Path, ScenarioSpec | None]]
    if (root / "labels.json").exists():
        runs = [("as generated", root, None)]
        seed = None
    else:
        wanted = TRAFFIC_CONVENTIONS if args.conventions == "all" else tuple(args.conventions.split(","))
        present = tuple(c for c in TRAFFIC_CONVENTIONS if (root / c / "labels.json").exists())
        if args.conventions == "all" and present:
            # A directory evaluated again: the conventions it holds, not every one (a 14-day sFlow capture
            # at 1e7 B/5 min passes 23 GB); others only when named.
            wanted = present
            print(f"netobs: evaluating the conventions {root} holds: {', '.join(present)} "
                  "(--conventions to generate others)", file=sys.stderr)  # fmt: skip
        seed = _seed(args.seed)
        try:
            runs = [
                (c, root / c, draw_spec(seed, c, args.tenants, args.days, args.sampling, args.volume))
                for c in wanted
            ]
        except ValueError as e:
            print(f"netobs: {e}", file=sys.stderr)
            return 2
        print(f"scenario seed {seed} (rerun with --seed {seed})", file=sys.stderr)
    results = []
    for convention, where, spec in runs:
        if spec is not None and not (where / "labels.json").exists():
            print(json.dumps(generate(spec, where)), file=sys.stderr)
        results.append(_evaluate_one(convention, where, settings, args))
    if args.output == "json":
        print(json.dumps({"seed": seed, "results": results}, indent=1, default=str))
        return 0
    spec0 = runs[0][2]
    drawn = f"noise {spec0.noise:.3f}, late {spec0.late_s} s, month end x{spec0.month_end}" if spec0 else ""
    print(
        f"scenario {root}: seed {seed}, sampling 1:{args.sampling}, {args.days} days, {args.tenants} tenants, "
        f"volume {args.volume:g} B/5 min, {drawn}"
    )
    for r in results:
        print(f"  {r['convention']}: analysed {r['window']}, {r['figures']}")
    _print("netobs detectors, per detector and convention", _by_detector(results, "netobs"))
    _print(
        "Theia-style EWMA (whole-series sigma) on the same volume series",
        _by_detector(results, "ewma_reference"),
    )
    excluded = [(r["convention"], row["detector"], why) for r in results for row in r["netobs"]
                for why in row["not_observable"]]  # fmt: skip
    if excluded:
        print("\nnot observable (left out of the scores):")
        for conv, det, why in excluded:
            print(f"  {conv:<18} {det:<16} {why}")
    return 0


def _evaluate_one(
    convention: str, root: Path, settings: Settings, args: argparse.Namespace
) -> dict[str, Any]:
    settings = _scenario_settings(settings, root)
    labels = json.loads((root / "labels.json").read_text())
    store = make_store(settings.store, components.schema(settings))
    store.start()
    try:
        figures: dict[str, float] = {}
        if not (root / "chdb" / ".ingested").exists():
            started = time.perf_counter()
            ingest = Ingest(make_enricher(settings, store), store, progress=None)
            for flows, _, rejects, n in decoded_batches(str(root / "exports.pcap")):
                ingest.add(flows, rejects, datagrams=n)
            ingest.flush()
            figures["ingest_s"] = round(time.perf_counter() - started, 1)
            (root / "chdb" / ".ingested").write_text(ingest.summary())
        if (root / "span.json").exists():
            end = datetime.fromtimestamp(json.loads((root / "span.json").read_text())["end_ms"] / 1000, UTC)
        else:  # a scenario from before span.json: the day of the last record that is not a late export
            last = store.query_arrow(
                f"SELECT max(flow_start) - 3600 AS t FROM `{settings.store.database}`.flows"
            ).column("t")[0]
            end = datetime.fromtimestamp(int(last.as_py().timestamp()) // 86400 * 86400 + 86400, UTC)
        start = end - timedelta(days=args.analyze_days)
        cfg = load_analytics(root / "analytics.yaml")
        started, cpu = time.perf_counter(), time.process_time()
        analysis = Analysis(
            store.query_arrow, settings.store.database, cfg, start, end, history_days=args.days
        )
        findings = analysis.run()
        figures["analyze_s"] = round(time.perf_counter() - started, 1)
        figures["analyze_cpu_s"] = round(time.process_time() - cpu, 1)
        reference = analysis.ewma_volumes()
    finally:
        store.stop()
    bucket = timedelta(seconds=cfg.bucket_s)
    excluded = {i: lab["why"] for i, lab in enumerate(labels) if not lab.get("observable", True)}
    ours = table(score(findings, labels, bucket, excluded), args.analyze_days)
    volume = [(i, lab) for i, lab in enumerate(labels) if lab["detector"] == "volume"]
    vol_excluded = {k: excluded[i] for k, (i, _) in enumerate(volume) if i in excluded}
    theirs = table(score(reference, [lab for _, lab in volume], bucket, vol_excluded), args.analyze_days)
    return {
        "convention": convention,
        "window": f"{start:%Y-%m-%d} .. {end:%Y-%m-%d}",
        "netobs": ours,
        "ewma_reference": theirs,
        "figures": figures,
        "notes": analysis.notes,
        # Findings above info during a planned window: each must be an unexpected effect (planned.py
        # turned the expected ones into info); listed so that a person can check.
        "above_info_in_planned": [
            f.to_json()
            for f in findings
            if f.severity != "info"
            and any(f.window_start < w.end + bucket and f.window_end > w.start for w in cfg.windows)
        ],
    }


def _by_detector(results: list[dict[str, Any]], key: str) -> list[dict[str, Any]]:
    """Rows per detector and convention, each detector followed by its pooled row over the conventions."""
    out = []
    detectors = sorted({r["detector"] for res in results for r in res[key]})
    for det in detectors:
        rows = [
            dict(r, convention=res["convention"]) for res in results for r in res[key] if r["detector"] == det
        ]
        out += rows
        if len(rows) > 1:
            out.append(_pooled(det, rows))
    return out


def _pooled(det: str, rows: list[dict[str, Any]]) -> dict[str, Any]:
    labels = sum(r["labels"] for r in rows)
    detected = sum(r["detected"] for r in rows)
    findings = sum(r["findings"] for r in rows)
    true = sum(round(r["precision"] * r["findings"]) for r in rows)
    p = true / findings if findings else (1.0 if not labels else 0.0)
    rc = detected / labels if labels else 1.0
    return {
        "detector": det, "convention": "ALL", "labels": labels, "detected": detected, "findings": findings,
        "explained": sum(r["explained"] for r in rows), "precision": round(p, 3), "recall": round(rc, 3),
        "f1": round(2 * p * rc / (p + rc), 3) if p + rc else 0.0,
        "false_per_day": round(sum(r["false_per_day"] for r in rows) / len(rows), 2),
        "median_delay_min": None, "not_observable": [],
    }  # fmt: skip


def _print(title: str, rows: list[dict[str, Any]]) -> None:
    print(f"\n{title}")
    cols = [
        "detector",
        "convention",
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
    print("  ".join(f"{c:>10}" if i > 1 else f"{c:<16}" for i, c in enumerate(cols)))
    for r in rows:
        print("  ".join(f"{r.get(c)!s:>10}" if i > 1 else f"{r.get(c)!s:<16}" for i, c in enumerate(cols)))


def cmd_counting(args: argparse.Namespace, settings: Settings) -> int:
    """The same conversations exported under each convention, through decode → enrich → store."""
    wanted = CONVENTIONS if args.conventions == "all" else tuple(args.conventions.split(","))
    unknown = sorted(set(wanted) - set(CONVENTIONS))
    if unknown:
        print(f"netobs: unknown conventions {unknown}; known: {', '.join(CONVENTIONS)}", file=sys.stderr)
        return 2
    seed = _seed(args.seed)
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
