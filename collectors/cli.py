"""``netobs sample``: the pod packet sampling agent as a command (see :mod:`collectors.sampler`)."""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
from typing import Any


def add_parsers(sub: argparse._SubParsersAction) -> None:  # type: ignore[type-arg]
    s = sub.add_parser(
        "sample", help="node agent: sample pod packets (headers only) and their L7 context to the transport"
    )
    s.add_argument(
        "--duration", type=float, default=0.0, help="stop after this many seconds (0: on a signal)"
    )
    s.set_defaults(func=cmd_sample)


def cmd_sample(args: argparse.Namespace, settings: Any) -> int:
    from collectors.sampler import SampleAgent
    from netobs.transport import make_transport

    transport = make_transport(settings.transport)
    agent = SampleAgent(settings.sampler, transport.producer())
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    agent.start()
    try:
        done.wait(args.duration or None)
        interfaces = len(agent.interfaces)
    finally:
        agent.stop()
        transport.close()
    summary = {"interfaces": interfaces, "published": agent.published, "packets": agent.counts}
    print(json.dumps(summary | {"errors": agent.errors}), file=sys.stderr)
    return 0
