"""``netobs report`` (write a compliance report) and ``netobs report verify`` (check the chain).

``add_parsers(subparsers)`` registers both; handlers take ``(args, settings)``.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

from analytics.policy.access import open_store, parse_duration, parse_time
from analytics.policy.evaluate import align, evaluate
from analytics.policy.loader import PolicyError, load_policy
from analytics.report import ledger
from analytics.report.data import gather
from analytics.report.html import render_html

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def build(query, database: str, policy_path: Path, start, end, fmt: str) -> bytes:
    """The report bytes for the stored violations and flows of [start, end)."""
    text = policy_path.read_text()
    policy = load_policy(policy_path)
    data = gather(query, database, policy, text, start, end)
    from analytics.report.pdf import render_pdf

    return render_pdf(data) if fmt == "pdf" else render_html(data).encode()


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
    if not (args.policy and args.out and args.from_ and args.to):
        print("netobs report: --policy, --from, --to and --out are required", file=sys.stderr)
        return EXIT_USAGE
    window = parse_duration(args.window)
    start, end = align(parse_time(args.from_), parse_time(args.to), window)
    policy_path, out = Path(args.policy), Path(args.out)
    try:
        policy = load_policy(policy_path)
        with open_store(settings) as store:
            if not args.no_evaluate:
                evaluate(store, policy, start, end, window_s=window)
            content = build(store.query_arrow, store.database, policy_path, start, end, args.format)
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
    entry = ledger.record(
        out,
        {
            "format": args.format,
            "period": [start.isoformat(), end.isoformat()],
            "policy": policy.name,
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
    r.add_argument("--from", dest="from_", metavar="T", help="period start (ISO 8601 or 'now-30d')")
    r.add_argument("--to", metavar="T", help="period end, exclusive")
    r.add_argument("--format", choices=["html", "pdf"], default="html")
    r.add_argument("--out", metavar="FILE", help="report file; ledger.json is kept beside it")
    r.add_argument("--window", default="1h", help="policy evaluation window (default 1h)")
    r.add_argument("--no-evaluate", action="store_true", help="report stored violations as they are")
    sub = r.add_subparsers(dest="report_command", metavar="COMMAND")
    v = sub.add_parser("verify", help="verify the reports and the hash chain in a directory")
    v.add_argument("dir", nargs="?", default=".", help="directory holding ledger.json (default: .)")
    r.set_defaults(func=cmd_report, report_command=None)
