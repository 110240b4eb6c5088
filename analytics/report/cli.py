"""``netobs report`` (write a compliance report) and ``netobs report verify`` (check the chain).

``add_parsers(subparsers)`` registers both; handlers take ``(args, settings)``.
"""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from analytics.policy.access import open_store
from analytics.policy.evaluate import align, evaluate, window_of
from analytics.policy.loader import PolicyError, load_policy
from analytics.report import ledger
from analytics.report.data import gather
from analytics.report.html import render_html
from netobs.timeargs import FORMS, duration_arg, time_arg

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build(
    query,
    database: str,
    policy_path: Path,
    start,
    end,
    fmt: str,
    *,
    csv_name: str = "",
    retention_days: int = 0,
    rollups: tuple[tuple[str, int], ...] = (),
    generated: datetime | None = None,
) -> tuple[bytes, str]:
    """The report bytes for the stored violations and flows of [start, end), and the full CSV."""
    text = policy_path.read_text()
    policy = load_policy(policy_path)
    data = gather(
        query,
        database,
        policy,
        text,
        start,
        end,
        retention_days=retention_days,
        rollups=rollups,
        generated=generated,
    )
    data["csv_name"] = csv_name or "violations.csv"
    from analytics.report.pdf import render_pdf

    content = render_pdf(data) if fmt == "pdf" else render_html(data).encode()
    return content, data["csv"]


def rollups_of(store_cfg) -> tuple[tuple[str, int], ...]:
    """The traffic rollups (finest first) with their retention days, from the store's settings."""
    return (
        ("flows_1m", store_cfg.rollup_1m_retention_days),
        ("flows_1h", store_cfg.rollup_1h_retention_days),
    )


def _recorded_elsewhere(out: Path, content: bytes) -> bool:
    """Whether ``out`` is a recorded report with other content (overwriting would break the chain)."""
    import hashlib

    path = out.parent / ledger.LEDGER
    if not path.exists():
        return False
    digest = hashlib.sha256(content).hexdigest()
    return any(
        e["file"] == out.name and e["sha256"] != digest for e in json.loads(path.read_text())["reports"]
    )


def cmd_report(args, settings) -> int:
    """Evaluate the policy over the period (unless --no-evaluate), render, write, record in the ledger."""
    if args.report_command == "verify":
        return cmd_verify(args, settings)
    if not (args.policy and args.out and args.from_):
        print("netobs report: --policy, --from and --out are required", file=sys.stderr)
        return EXIT_USAGE
    window = args.window
    # Default end: the end of the last complete window (a report covers finished windows only).
    to = args.to or window_of(datetime.now(UTC), window)
    if args.from_ >= to:
        print(
            f"netobs report: --from ({args.from_:%Y-%m-%dT%H:%M:%SZ}) is not before --to ({to:%Y-%m-%dT%H:%M:%SZ})",
            file=sys.stderr,
        )
        return EXIT_USAGE
    start, end = align(args.from_, to, window)
    policy_path, out = Path(args.policy), Path(args.out)
    try:
        policy = load_policy(policy_path)
        with open_store(settings) as store:
            if not args.no_evaluate:
                evaluate(store, policy, start, end, window_s=window)
            csv_path = out.with_name(out.name + ".violations.csv")
            content, csv_text = build(
                store.query_arrow, store.database, policy_path, start, end, args.format,
                csv_name=csv_path.name, retention_days=settings.store.retention_days,
                rollups=rollups_of(settings.store),
            )  # fmt: skip
    except PolicyError as e:
        print(f"netobs: invalid policy:\n{e}", file=sys.stderr)
        return EXIT_USAGE
    if _recorded_elsewhere(out, content):
        print(
            f"netobs report: {out} is a recorded report with other content; choose another name",
            file=sys.stderr,
        )
        return EXIT_FAILED
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_bytes(content)
    csv_path.write_text(csv_text)
    entry = ledger.record(
        out,
        {
            "format": args.format,
            "period": [start.isoformat(), end.isoformat()],
            "policy": policy.name,
            "attachments": [{"file": csv_path.name, "sha256": ledger.sha256_file(csv_path)}],
        },
    )
    print(f"{out}: sha256 {entry['sha256']} (ledger entry {entry['index']})")
    return EXIT_OK


def cmd_verify(args, settings) -> int:
    """Check every report of the ledger in a directory: content hashes and the chain."""
    directory = Path(args.dir)
    problems = ledger.verify(directory)
    for p in problems:
        print(f"TAMPERED: {p}")
    if not problems:
        n = len(json.loads((directory / ledger.LEDGER).read_text())["reports"])
        print(f"OK: {n} report(s), chain intact")
    return EXIT_FAILED if problems else EXIT_OK


def add_parsers(subparsers) -> None:
    """Register ``report`` and ``report verify`` on the top-level sub-parsers."""
    r = subparsers.add_parser("report", help="write a compliance report (HTML or PDF) and record it")
    r.add_argument("--policy", metavar="FILE", help="the policy reported on")
    r.add_argument("--from", dest="from_", metavar="T", type=time_arg, help=f"period start: {FORMS}")
    r.add_argument(
        "--to",
        metavar="T",
        type=time_arg,
        help="period end, exclusive (default: the last whole window's end)",
    )
    r.add_argument("--format", choices=["html", "pdf"], default="html")
    r.add_argument("--out", metavar="FILE", help="report file; ledger.json is kept beside it")
    r.add_argument("--window", default=3600, type=duration_arg, help="policy evaluation window (default 1h)")
    r.add_argument("--no-evaluate", action="store_true", help="report stored violations as they are")
    sub = r.add_subparsers(dest="report_command", metavar="COMMAND")
    v = sub.add_parser("verify", help="verify the reports and the hash chain in a directory")
    v.add_argument("dir", nargs="?", default=".", help="directory holding ledger.json (default: .)")
    r.set_defaults(func=cmd_report, report_command=None)
