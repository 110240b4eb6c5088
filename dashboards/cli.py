"""``netobs dashboards export|check|push``: sub-commands the CLI registers lazily."""

from __future__ import annotations

import argparse
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from dashboards.export import DASHBOARDS_PATH, PASSWORD_ENV
from netobs.timeargs import FORMS, time_arg

EXIT_OK, EXIT_FAILURE = 0, 1


def _var(text: str) -> tuple[str, list[str]]:
    name, sep, value = text.partition("=")
    if not sep or not name:
        raise argparse.ArgumentTypeError(f"expected NAME=VALUE[,VALUE...], got {text!r}")
    return name, value.split(",")


def add_parsers(sub: argparse._SubParsersAction) -> None:
    d = sub.add_parser("dashboards", help="Grafana dashboards: export, check against the store, push")
    dsub = d.add_subparsers(dest="dashboards_command", required=True)
    e = dsub.add_parser("export", help="write dashboard JSON and Grafana provisioning YAML into DIR")
    e.add_argument("dir", type=Path)
    e.add_argument("--dashboards-path", default=DASHBOARDS_PATH, help="where Grafana reads the JSON files")
    e.add_argument(
        "--password-env",
        default=None,
        help=f"env variable holding the data source password (default: {PASSWORD_ENV}, or for the embedded "
        "store NETOBS__CONTROL__READ_PASSWORD)",
    )
    e.set_defaults(func=cmd_export)
    c = dsub.add_parser("check", help="run every panel's SQL for the last N hours; exit 1 on any error")
    c.add_argument("--hours", type=float, default=6, help="time range ending now")
    c.add_argument("--end", type=time_arg, help=f"end of the range (default now): {FORMS}")
    c.add_argument("--var", type=_var, action="append", default=[], help="NAME=VALUE[,VALUE] (default All)")
    c.set_defaults(func=cmd_check)
    p = dsub.add_parser(
        "push", help="upload the dashboards to Grafana (token: NETOBS__DASHBOARDS__GRAFANA_TOKEN)"
    )
    p.add_argument("--url", help="Grafana base URL (default: dashboards.grafana_url)")
    p.set_defaults(func=cmd_push)


def cmd_export(args: argparse.Namespace, settings: Any) -> int:
    from dashboards.export import export

    for path in export(
        settings, args.dir, dashboards_path=args.dashboards_path, password_env=args.password_env
    ):
        print(path)
    return EXIT_OK


def cmd_check(args: argparse.Namespace, settings: Any) -> int:
    from dashboards.catalog import build_all
    from dashboards.check import check
    from netobs.query import Querier

    end = args.end or datetime.now(UTC)
    start = end - timedelta(hours=args.hours)
    with Querier(settings) as query:
        report = check(build_all(settings), query, start, end, dict(args.var))
    for r in report.results:
        print(r.line())
    print(f"{len(report.results)} queries, {len(report.errors)} errors", file=sys.stderr)
    return EXIT_FAILURE if report.errors else EXIT_OK


def cmd_push(args: argparse.Namespace, settings: Any) -> int:
    from dashboards.push import PushError, push

    try:
        for url in push(settings, args.url):
            print(url)
    except PushError as e:
        print(f"netobs: {e}", file=sys.stderr)
        return EXIT_FAILURE
    return EXIT_OK


__all__ = ["add_parsers", "cmd_check", "cmd_export", "cmd_push"]
