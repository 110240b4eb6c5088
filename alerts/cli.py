"""``netobs alerts send``: one notifier pass from the command line (cron, or a manual catch-up)."""

from __future__ import annotations

import argparse
import re
import sys
from datetime import UTC, datetime, timedelta

_DURATION = re.compile(r"^(\d+)([smhd])$")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days"}


def parse_since(text: str) -> datetime:
    """ISO-8601 time (naive = UTC) or a duration back from now: 30m, 2h, 7d."""
    m = _DURATION.match(text.strip())
    if m:
        return datetime.now(UTC) - timedelta(**{_UNITS[m.group(2)]: int(m.group(1))})
    try:
        t = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"not an ISO time or a duration like 2h: {text!r}") from None
    return t if t.tzinfo else t.replace(tzinfo=UTC)


def add_parsers(sub: argparse._SubParsersAction) -> None:
    a = sub.add_parser("alerts", help="notify Alertmanager, webhooks and e-mail of findings and violations")
    asub = a.add_subparsers(dest="alerts_command", required=True)
    s = asub.add_parser("send", help="read new findings/violations, route them and deliver what is due")
    s.add_argument("--dry-run", action="store_true", help="print what would be sent; send and record nothing")
    s.add_argument(
        "--since", type=parse_since, help="re-read rows written since this time (ISO-8601) or duration (2h)"
    )
    s.set_defaults(func=cmd_send)


def cmd_send(args: argparse.Namespace, settings) -> int:
    from alerts.service import Notifier
    from netobs.query import Querier

    with Querier(settings) as query:
        notifier = Notifier(settings.alerts, query, settings.store.database, dry_run=args.dry_run)
        report = notifier.run_once(datetime.now(UTC), since=args.since)
    if args.dry_run:  # what a real run would deliver, on stdout
        for target, alerts in report.planned:
            print(f"{target}: would send {len(alerts)} alerts")
            for a in alerts:
                print(f"  [{a.severity}] {a.state} {a.source}/{a.name}: {a.annotations.get('summary', '')}")
    read = ", ".join(f"{n} {s}" for s, n in report.read.items())
    done = f"would send {sum(len(a) for _, a in report.planned)}" if args.dry_run else f"sent {report.sent}"
    unrouted = f"; {report.unrouted} matched no route" if report.unrouted else ""
    print(f"read {read}; {done} alerts; {report.failed} failed{unrouted}", file=sys.stderr)
    for error in report.errors:
        print(f"netobs: {error}", file=sys.stderr)
    return 1 if report.failed else 0
