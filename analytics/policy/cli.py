"""``netobs policy check | test | whatif``: the policy commands as functions.

``add_parsers(subparsers)`` registers them; each handler takes ``(args, settings)`` and
returns an exit code (0 ok, 1 failed tests, 2 invalid policy).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
from datetime import UTC, datetime, timedelta
from pathlib import Path

from analytics.policy.access import open_store, parse_duration, parse_time
from analytics.policy.conformance import SourceError, resolve
from analytics.policy.evaluate import align, evaluate, last_window
from analytics.policy.loader import PolicyError, load_policy
from analytics.policy.model import SEVERITIES
from analytics.policy.results import computed, jsonl, stored, table
from analytics.policy.testing import run_tests
from analytics.policy.whatif import render, whatif

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _range(args) -> tuple[datetime, datetime]:
    window = parse_duration(args.window)
    if args.from_ is None and args.to is None:
        return last_window(datetime.now(UTC), window)
    end = parse_time(args.to) if args.to else datetime.now(UTC)
    start = parse_time(args.from_, now=end) if args.from_ else end - timedelta(seconds=window)
    return start, end


def cmd_check(args, settings) -> int:
    """Evaluate the policy over [from, to) into the violations table and print them."""
    policy = load_policy(args.policy)
    start, end = _range(args)
    window = parse_duration(args.window)
    with open_store(settings) as store:
        policy, warnings = resolve(policy, store.query_arrow, store.database, *align(start, end, window))
        for w in warnings:
            print(f"netobs: warning: {w}", file=sys.stderr)
        if args.dry_run:
            records = computed(store.query_arrow, store.database, policy, start, end, window_s=window)
        else:
            start, end = evaluate(store, policy, start, end, window_s=window)
            records = stored(store.query_arrow, store.database, policy.name, start, end)
        from analytics import coverage

        counted = coverage.line(coverage.coverage(store.query_arrow, store.database, start, end))
    out = jsonl(records) if args.output == "jsonl" else table(records)
    sys.stdout.write(out)
    if args.fail_on and any(_rank(r["severity"]) >= _rank(args.fail_on) for r in records):
        code = EXIT_FAILED
    else:
        code = EXIT_OK
    print(
        f"policy {policy.name}: {len(records)} violations in [{start:%Y-%m-%dT%H:%M:%SZ}, "
        f"{end:%Y-%m-%dT%H:%M:%SZ}); {counted}",
        file=sys.stderr,
    )
    return code


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def cmd_test(args, settings) -> int:
    """Run policy unit tests on a scratch embedded store."""
    from netobs.config import ChdbStoreConfig, StoreConfig
    from netobs.store import make_store

    failed = 0
    with tempfile.TemporaryDirectory(prefix="netobs-policy-test-") as tmp:
        store = make_store(StoreConfig(retention_days=0, chdb=ChdbStoreConfig(path=Path(tmp))))
        store.start()
        try:
            for path in args.tests:
                for result in run_tests(store, path, args.policy):
                    status = "PASS" if result.ok else "FAIL"
                    print(f"{status}: {path}: {result.name}")
                    for problem in result.problems:
                        print(f"    {problem}")
                    failed += not result.ok
        finally:
            store.stop()
    print("SUCCESS" if not failed else f"FAILED: {failed} case(s)")
    return EXIT_FAILED if failed else EXIT_OK


def cmd_whatif(args, settings) -> int:
    """What the candidate policy would have flagged over history, compared with the current one."""
    current, candidate = load_policy(args.policy), load_policy(args.candidate)
    start, end = _range(args)
    with open_store(settings) as store:
        diff = whatif(
            store.query_arrow,
            store.database,
            current,
            candidate,
            start,
            end,
            window_s=parse_duration(args.window),
        )
    if args.output == "jsonl":
        sys.stdout.write(json.dumps(diff, sort_keys=True) + "\n")
    else:
        sys.stdout.write(render(diff))
    return EXIT_OK


def _guard(handler):
    """Turn an invalid policy (or an unreadable NetworkPolicy source) into exit 2 with its problems."""

    def run(args, settings) -> int:
        try:
            return handler(args, settings)
        except PolicyError as e:
            print(f"netobs: invalid policy:\n{e}", file=sys.stderr)
            return EXIT_USAGE
        except SourceError as e:
            print(f"netobs: {e}", file=sys.stderr)
            return EXIT_USAGE

    run.__doc__ = handler.__doc__
    return run


def _time_args(p: argparse.ArgumentParser) -> None:
    p.add_argument("--from", dest="from_", metavar="T", help="start (ISO 8601, 'now-1d', '-2h')")
    p.add_argument("--to", metavar="T", help="end, exclusive (default: now)")
    p.add_argument("--window", default="1h", help="evaluation window (default 1h; e.g. 5m, 1d)")


def add_parsers(subparsers) -> None:
    """Register ``policy check|test|whatif`` on the top-level sub-parsers."""
    policy = subparsers.add_parser("policy", help="check observed traffic against a policy as code")
    sub = policy.add_subparsers(dest="policy_command", required=True, metavar="COMMAND")

    c = sub.add_parser("check", help="evaluate a policy over windows into the violations table")
    c.add_argument("--policy", required=True, metavar="FILE")
    _time_args(c)
    c.add_argument("--output", choices=["jsonl", "table"], default="table")
    c.add_argument("--dry-run", action="store_true", help="compute without storing violations")
    c.add_argument(
        "--fail-on", choices=SEVERITIES, help="exit 1 when a violation of this severity or higher is found"
    )
    c.set_defaults(func=_guard(cmd_check))

    t = sub.add_parser("test", help="run policy unit tests (fixture flows → expected violations)")
    t.add_argument("tests", nargs="+", metavar="TESTFILE")
    t.add_argument("--policy", metavar="FILE", help="policy to test (default: the test file's)")
    t.set_defaults(func=_guard(cmd_test))

    w = sub.add_parser("whatif", help="replay a candidate policy over history against the current one")
    w.add_argument("--policy", required=True, metavar="FILE", help="the current policy")
    w.add_argument("--candidate", required=True, metavar="FILE")
    _time_args(w)
    w.add_argument("--output", choices=["jsonl", "table"], default="table")
    w.set_defaults(func=_guard(cmd_whatif))
