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

from analytics.policy.access import open_store
from analytics.policy.conformance import SourceError, resolve
from analytics.policy.evaluate import align, evaluate, last_window
from analytics.policy.loader import PolicyError, load_policy
from analytics.policy.model import SEVERITIES
from analytics.policy.results import computed, conversations, jsonl, stored, table
from analytics.policy.testing import run_tests
from analytics.policy.whatif import render, whatif
from netobs.timeargs import FORMS, duration_arg, time_arg

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


def _range(args) -> tuple[datetime, datetime]:
    window = args.window
    if args.from_ is None and args.to is None:
        return last_window(datetime.now(UTC), window)
    end = args.to or datetime.now(UTC)
    start = args.from_ or end - timedelta(seconds=window)
    if start >= end:
        raise PolicyError(
            [f"--from ({start:%Y-%m-%dT%H:%M:%SZ}) is not before --to ({end:%Y-%m-%dT%H:%M:%SZ})"]
        )
    return start, end


def _with_inventory(policy, args, settings, default: bool):
    """The policy with its label selectors resolved against ``--inventory FILE`` (or, when
    ``default``, the configured ``enrich.inventory``); unchanged when there is none. The file is
    read by the loader the composition root hands over (the inventory format is the pipeline's)."""
    path = getattr(args, "inventory", None)
    if path is None and default:
        path = getattr(getattr(settings, "enrich", None), "inventory", None)
    if path is None or not policy.uses_labels():
        return policy, ""
    loader = getattr(args, "inventory_labels", None)
    if loader is None:
        raise SourceError("--inventory: no inventory reader is wired into this command")
    try:
        pods, namespaces, problems = loader(Path(path))
    except (OSError, ValueError) as e:
        raise SourceError(f"inventory {path}: {e}") from None
    for problem in problems:
        print(f"netobs: warning: inventory: {problem}", file=sys.stderr)
    return policy.with_labels(pods, namespaces), f"{path}: {len(pods)} pods"


def _notes(policy) -> None:
    for note in policy._notes:
        print(f"netobs: note: {note}", file=sys.stderr)


def cmd_check(args, settings) -> int:
    """Evaluate the policy over [from, to) into the violations table and print them, one conversation a line."""
    policy = load_policy(args.policy)
    _notes(policy)
    policy, _ = _with_inventory(policy, args, settings, default=False)
    start, end = _range(args)
    window = args.window
    with open_store(settings) as store:
        policy, warnings = resolve(policy, store.query_arrow, store.database, *align(start, end, window))
        for w in warnings:
            print(f"netobs: warning: {w}", file=sys.stderr)
        if args.dry_run:
            records = computed(store.query_arrow, store.database, policy, start, end, window_s=window)
        else:
            start, end = evaluate(store, policy, start, end, window_s=window)
            records = stored(store.query_arrow, store.database, policy.name, start, end)
        records = conversations(records)
        from analytics import coverage

        counted = coverage.line(coverage.coverage(store.query_arrow, store.database, start, end))
    out = jsonl(records) if args.output == "jsonl" else table(records)
    sys.stdout.write(out)
    if args.fail_on and any(_rank(r["severity"]) >= _rank(args.fail_on) for r in records):
        code = EXIT_FAILED
    else:
        code = EXIT_OK
    print(
        f"policy {policy.name}: {len(records)} violating conversations in [{start:%Y-%m-%dT%H:%M:%SZ}, "
        f"{end:%Y-%m-%dT%H:%M:%SZ}); {counted}",
        file=sys.stderr,
    )
    return code


def _rank(severity: str) -> int:
    return SEVERITIES.index(severity)


def cmd_test(args, settings) -> int:
    """Run policy unit tests on a scratch embedded store (format: docs/policy.md, "Test files")."""
    from analytics.policy.testing import load_tests
    from netobs.config import ChdbStoreConfig, StoreConfig
    from netobs.store import make_store

    for path in args.tests:  # every file valid before a store is opened: typos are usage errors (exit 2)
        spec = load_tests(Path(path))
        load_policy(args.policy or Path(path).parent / spec.policy)
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


def cmd_lint(args, settings) -> int:
    """Explain each rule in plain words; warn about rules that never match or match everything."""
    from analytics.policy.lint import lint, render

    code = EXIT_OK
    for path in args.policies:
        policy = load_policy(path)
        _notes(policy)
        policy, source = _with_inventory(policy, args, settings, default=True)
        result = lint(policy, inventory=source)
        sys.stdout.write(render(policy, result))
        if result.warnings and args.strict:
            code = EXIT_FAILED
    return code


def cmd_migrate(args, settings) -> int:
    """Print a version 1 policy file as version 2 (comments are not kept)."""
    import yaml

    from analytics.policy.loader import migrate_v1, parse_policy

    text = Path(args.policy).read_text()
    data = yaml.safe_load(text) or {}
    if isinstance(data, dict) and data.get("version", 1) == 1:
        data, changes = migrate_v1(data)
        for c in changes:
            print(f"netobs: {c}", file=sys.stderr)
    out = yaml.safe_dump(data, sort_keys=False, allow_unicode=True)
    parse_policy(out, args.policy)  # the result must load
    if args.write:
        Path(args.policy).write_text(out)
        print(f"{args.policy}: rewritten as version 2", file=sys.stderr)
    else:
        sys.stdout.write(out)
    return EXIT_OK


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
            window_s=args.window,
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
    p.add_argument("--from", dest="from_", metavar="T", type=time_arg, help=f"start: {FORMS}")
    p.add_argument("--to", metavar="T", type=time_arg, help="end, exclusive (default: now; same forms)")
    p.add_argument(
        "--window", default=3600, type=duration_arg, help="evaluation window (default 1h; e.g. 5m, 1d)"
    )


def add_parsers(subparsers, inventory_labels=None) -> None:
    """Register ``policy check|test|whatif`` on the top-level sub-parsers.

    ``inventory_labels(path) -> (pods [(namespace, name, labels)], {namespace: labels}, problems)``
    reads an inventory file for ``--inventory`` (given by the composition root)."""
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
    c.add_argument(
        "--inventory",
        metavar="FILE",
        help="resolve label selectors against this inventory file (pods and namespaces with labels) "
        "instead of the store's metadata history",
    )
    c.set_defaults(func=_guard(cmd_check), inventory_labels=inventory_labels)

    t = sub.add_parser("test", help="run policy unit tests (fixture flows → expected violations)")
    t.add_argument("tests", nargs="+", metavar="TESTFILE")
    t.add_argument("--policy", metavar="FILE", help="policy to test (default: the test file's)")
    t.set_defaults(func=_guard(cmd_test))

    lt = sub.add_parser("lint", help="explain each rule in plain words and warn about suspicious ones")
    lt.add_argument("policies", nargs="+", metavar="FILE")
    lt.add_argument("--strict", action="store_true", help="exit 1 when there are warnings")
    lt.add_argument(
        "--inventory",
        metavar="FILE",
        help="judge label selectors against this inventory file (default: enrich.inventory, if set)",
    )
    lt.set_defaults(func=_guard(cmd_lint), inventory_labels=inventory_labels)

    mg = sub.add_parser("migrate", help="print a version 1 policy as version 2 (--write: rewrite the file)")
    mg.add_argument("policy", metavar="FILE")
    mg.add_argument("--write", action="store_true")
    mg.set_defaults(func=_guard(cmd_migrate))

    w = sub.add_parser("whatif", help="replay a candidate policy over history against the current one")
    w.add_argument("--policy", required=True, metavar="FILE", help="the current policy")
    w.add_argument("--candidate", required=True, metavar="FILE")
    _time_args(w)
    w.add_argument("--output", choices=["jsonl", "table"], default="table")
    w.set_defaults(func=_guard(cmd_whatif))
