"""``netobs exporters``: switch on and inspect the node's OVS exporters (sFlow, bridge IPFIX)."""

from __future__ import annotations

import argparse
import json
import sys
import time
from typing import Any

EXIT_OK, EXIT_FAILURE = 0, 1


def add_parsers(sub: argparse._SubParsersAction) -> None:
    e = sub.add_parser("exporters", help="switch on / show sFlow and IPFIX on this node's OVS bridges")
    esub = e.add_subparsers(dest="exporters_command", required=True)
    c = esub.add_parser("configure", help="make each bridge export what `exporters` says (idempotent)")
    c.add_argument("--remove", action="store_true", help="remove the exporters netobs made")
    c.add_argument(
        "--every",
        type=float,
        default=0,
        metavar="SECONDS",
        help="keep converging every SECONDS (the DaemonSet's mode: bridges Kube-OVN recreates get "
        "their exporters back); 0: once",
    )
    c.set_defaults(func=cmd_configure)
    s = esub.add_parser("status", help="what every bridge exports")
    s.add_argument("--format", choices=["table", "json"], default="table")
    s.set_defaults(func=cmd_status)


def cmd_configure(args: argparse.Namespace, settings: Any) -> int:
    from collectors.exporters import Configurator, OvsError

    configurator = Configurator(settings.exporters)
    while True:
        try:
            changes = configurator.configure(remove=args.remove)
        except OvsError as e:
            if not args.every:
                raise
            print(f"netobs: {e}; retrying in {args.every:g}s", file=sys.stderr)
        else:
            for c in changes:
                if c.action != "unchanged" or not args.every:
                    print(f"{c.bridge}\t{c.protocol}\t{c.action}", flush=True)
        if not args.every:
            return EXIT_FAILURE if any(c.action == "foreign" for c in changes) else EXIT_OK
        time.sleep(args.every)


def cmd_status(args: argparse.Namespace, settings: Any) -> int:
    from collectors.exporters import Configurator, format_status

    exports = Configurator(settings.exporters).status()
    if args.format == "json":
        rows = [{"bridge": e.bridge, "protocol": e.protocol, "managed": e.managed, **e.row} for e in exports]
        print(json.dumps(rows, indent=1, sort_keys=True))
    else:
        sys.stdout.write(format_status(exports))
    return EXIT_OK
