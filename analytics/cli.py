"""``netobs analyze`` and ``netobs scenario generate``: sub-commands the composition root registers."""

from __future__ import annotations

import argparse
import json
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path

import yaml

from netobs.timeargs import FORMS, time_arg


def add_parsers(sub: argparse._SubParsersAction) -> argparse._SubParsersAction:
    """Add ``analyze`` and ``scenario``; returns the ``scenario`` group, where the composition
    root adds the commands that join several components (``scenario evaluate``)."""
    a = sub.add_parser("analyze", help="run the anomaly detectors over a window and store the findings")
    a.add_argument("--from", dest="start", required=True, type=time_arg, help=f"window start: {FORMS}")
    a.add_argument(
        "--to", dest="end", required=True, type=time_arg, help="window end, exclusive (same forms)"
    )
    a.add_argument("--history-days", type=int, default=28, help="history the baselines learn from")
    a.add_argument(
        "--analytics",
        type=Path,
        help="YAML with an analytics section overriding the configuration's (windows, capacities, detectors)",
    )
    a.add_argument("--output", choices=["jsonl", "summary"], default="summary")
    a.add_argument("--no-save", action="store_true", help="print findings without storing them")
    a.set_defaults(func=cmd_analyze)

    s = sub.add_parser("scenario", help="labeled synthetic bank for evaluating the detectors")
    ssub = s.add_subparsers(dest="scenario_command", required=True)
    g = ssub.add_parser("generate", help="write inventory, IPFIX capture, labels and analytics config")
    g.add_argument("--out", type=Path, required=True)
    g.add_argument("--tenants", type=int, default=14)
    g.add_argument("--days", type=int, default=28)
    g.add_argument("--sampling", type=int, default=1000)
    g.add_argument("--seed", type=int, default=7)
    g.add_argument("--convention", default="probe_both_ends", help="how the exporters report the traffic")
    g.add_argument(
        "--start",
        type=time_arg,
        default=None,
        help="first day (ISO-8601, UTC; default: the Monday that leaves the whole span before today, so the "
        "data is recent and inside the store's retention)",
    )
    g.set_defaults(func=cmd_scenario_generate)
    return ssub


def load_analytics(path: Path | None, default=None):
    """The analytics section: from ``path`` (a YAML of just that section) if given, else ``default``."""
    from analytics.config import AnalyticsConfig

    if path is None:
        return default if default is not None else AnalyticsConfig()
    data = yaml.safe_load(path.read_text()) or {}
    return AnalyticsConfig(**data)


def cmd_analyze(args: argparse.Namespace, settings) -> int:
    from analytics import findings_table as fstore
    from analytics.runner import Analysis
    from netobs.query import Querier

    cfg = load_analytics(args.analytics, settings.analytics)
    with Querier(settings) as query:
        analysis = Analysis(query, settings.store.database, cfg, args.start, args.end, args.history_days)
        findings = analysis.run()
        if not args.no_save:
            fstore.save(query, settings.store.database, findings)
    if args.output == "jsonl":
        for f in sorted(findings, key=lambda f: (f.window_start, f.detector, f.id)):
            sys.stdout.write(json.dumps(f.to_json(), sort_keys=True, default=str) + "\n")
    else:
        by: dict[str, int] = {}
        for f in findings:
            by[f"{f.detector}/{f.severity}"] = by.get(f"{f.detector}/{f.severity}", 0) + 1
        print(f"{len(findings)} findings in [{args.start.isoformat()}, {args.end.isoformat()})")
        for k in sorted(by):
            print(f"  {k}: {by[k]}")
    for line in notes_lines(analysis.notes):
        print(line, file=sys.stderr)
    with Querier(settings) as query:
        from analytics import coverage

        print(
            coverage.line(coverage.coverage(query, settings.store.database, args.start, args.end)),
            file=sys.stderr,
        )
    return 0


def notes_lines(notes: dict) -> list[str]:
    """What each detector could not judge, and why: cold start (history), evidence, observability."""
    out = []
    for view, r in sorted(notes.get("volume", {}).items()):
        cold = {k: v["cold"] for k, v in r["scales"].items()}
        thin = {k: v["thin"] for k, v in r["scales"].items()}
        if any(cold.values()) or any(thin.values()):
            out.append(
                f"volume ({view}): of {r['series']} series, without enough history {cold}, too few sampled "
                f"packets {thin}; needs {r['needs']}"
            )
    shift = notes.get("center_shift", {})
    if shift.get("tenants_without_history"):
        out.append(
            f"center_shift: {len(shift['tenants_without_history'])} tenants not judged; needs {shift['needs']}"
        )
    gaps = notes.get("collection_gap", {})
    if gaps.get("without_history"):
        out.append(
            f"collection_gap: {len(gaps['without_history'])} of {gaps['exporters']} exporters have no history; "
            f"{gaps['needs']}"
        )
    dr = notes.get("dr_traffic", {})
    if dr:
        out.append(
            f"dr_traffic: {dr['known_kinds']} kinds of DR traffic known from {dr['history_days']} days"
        )
    asym = notes.get("asymmetric_path", {})
    if asym.get("not_observable"):
        out.append(
            f"asymmetric_path: {asym['not_observable']} of {asym['conversations']} conversations not observable "
            f"({asym['why']}; one-way exporters: {', '.join(asym['one_way_exporters'][:5])})"
        )
    return out


def recent_start(days: int, now: datetime | None = None) -> datetime:
    """The latest Monday 00:00 UTC from which ``days`` days end by today's midnight (weeks line up)."""
    now = now or datetime.now(UTC)
    latest = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=days)
    return latest - timedelta(days=latest.weekday())


def cmd_scenario_generate(args: argparse.Namespace, settings) -> int:
    from analytics.scenario import ScenarioSpec, generate

    try:
        start = args.start or recent_start(args.days)
        spec = ScenarioSpec(
            args.tenants, args.days, args.sampling, args.seed, int(start.timestamp() * 1000), args.convention
        )
    except ValueError as e:
        print(f"netobs: {e}", file=sys.stderr)
        return 2
    print(json.dumps(generate(spec, args.out)))
    return 0
