"""The ``netobs`` command: the kernel's sub-commands and those each component brings.

This is the composition root's entry point; no package imports it.
"""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from analytics.cli import add_parsers as analytics_parsers
from collectors.jsonl import counter_dicts, flow_dicts, iter_records, write_jsonl
from collectors.replay import replay
from netobs import __version__
from netobs.control import RemoteError
from netobs.query import format_table, run_query
from netobs.store import StoreError, make_store
from netobs.timeargs import glue_negative
from netobs.transport import TransportError
from netobs_app import clickhouse_cluster, components, demo, scenario, ui
from netobs_app.capture import decoded
from netobs_app.runtime import Runtime
from netobs_app.settings import ConfigError, Settings, dump, load
from pipeline.enrich import make_enricher
from pipeline.enrich_ingest import Ingest, enriched_fields

log = logging.getLogger("netobs")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Settings:
    return load(args.config or os.environ.get("NETOBS_CONFIG") or None)


def cmd_config(args: argparse.Namespace) -> int:
    if args.check:
        settings = load(args.check)
        _check_runtime(settings, args.check)
        print(f"{args.check}: ok")
        return EXIT_OK
    print(dump(_settings(args)), end="")
    return EXIT_OK


def _check_runtime(settings: Settings, where: str) -> None:
    """What ``run`` refuses beyond the models: unreadable principal files, cross-section rules."""
    from netobs.auth import Authenticator

    try:
        Authenticator(settings.control.auth)
    except ValueError as e:
        raise ConfigError(f"{where}: control.auth: {e}") from None
    if settings.pipeline.goflow2_topics and settings.transport.type != "kafka":
        raise ConfigError(f"{where}: pipeline.goflow2_topics needs transport.type: kafka")
    if settings.transport.kafka.topic in settings.pipeline.goflow2_topics:
        raise ConfigError(
            f"{where}: pipeline.goflow2_topics names transport.kafka.topic, where netobs batches travel"
        )


def cmd_token(args: argparse.Namespace) -> int:
    """A new token on stdout's first line, then the principal entry (with its hash) to add to
    control.auth.principals or the principals file."""
    import yaml

    from netobs.auth import hash_token, new_token

    token = new_token()
    entry: dict[str, object] = {"name": args.name, "role": args.role, "token_sha256": hash_token(token)}
    if args.tenant:
        if args.role != "viewer":
            raise ConfigError("--tenant binds viewers only")
        entry["tenants"] = list(args.tenant)
    if args.expires:
        entry["expires"] = args.expires
    print(token)
    print("# give the token above to the client (NETOBS_TOKEN or control.auth.token_file); add this entry:")
    print(yaml.safe_dump([entry], sort_keys=False), end="")
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    if getattr(args, "enrich", False):
        return cmd_decode_enriched(args)
    write_jsonl(iter_records(args.capture), sys.stdout)
    return EXIT_OK


def _enrich_settings(args: argparse.Namespace) -> Settings:
    """The settings, with ``--inventory`` (if given) as the enrichment inventory."""
    settings = _settings(args)
    if getattr(args, "inventory", None):
        enrich = settings.enrich.model_copy(update={"inventory": Path(args.inventory)})
        settings = settings.model_copy(update={"enrich": enrich})
    return settings


def cmd_decode_enriched(args: argparse.Namespace) -> int:
    """``decode --enrich``: the decode contract plus the enrichment fields (in-memory metadata)."""
    settings = _enrich_settings(args)
    if settings.enrich.inventory is None:
        raise ConfigError("decode --enrich needs --inventory FILE (or enrich.inventory in the config)")
    enricher = make_enricher(settings, None)

    def records() -> Iterator[dict[str, Any]]:
        for flows, counters, _ in decoded(args.capture, settings):
            extra = enriched_fields(enricher, flows) if len(flows) else {}
            for i, row in enumerate(flow_dicts(flows)):
                yield {**row, **{k: v[i] for k, v in extra.items()}}
            yield from counter_dicts(counters)

    write_jsonl(records(), sys.stdout)
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    """Captures → decode → enrich → the configured store, with progress and a summary on stderr."""
    settings = _enrich_settings(args)
    store = make_store(settings.store, components.schema(settings))
    store.start()
    try:
        enricher = make_enricher(settings, store)
        ingest = Ingest(enricher, store, progress=sys.stderr)
        for path in args.captures:
            for flows, counters, rejects in decoded(path, settings):
                ingest.add(flows, rejects, counters)
        ingest.flush()
        print(ingest.summary(), file=sys.stderr)
    finally:
        store.stop()
    if ingest.refused_retention and not ingest.records:
        return EXIT_FAILURE  # nothing was stored: say so in the exit code too
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    sent = replay(args.capture, args.to, rate=args.rate, loops=args.loops)
    print(f"replayed {sent} datagrams to {args.to}", file=sys.stderr)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    table = run_query(_settings(args), args.sql)
    sys.stdout.write(format_table(table, args.format))
    return EXIT_OK


def cmd_collect(args: argparse.Namespace) -> int:
    return Runtime(_settings(args), collect=True, process=False).serve(_wait_for_signal)


def cmd_pipeline(args: argparse.Namespace) -> int:
    runtime = Runtime(_settings(args), collect=False, process=True, schedule=not args.no_schedule)
    return runtime.serve(_wait_for_signal)


def cmd_schedule(args: argparse.Namespace) -> int:
    return Runtime(_settings(args), collect=False, process=False, schedule=True).serve(_wait_for_signal)


def cmd_run(args: argparse.Namespace) -> int:
    return Runtime(_settings(args), collect=True, process=True).serve(_wait_for_signal)


def _wait_for_signal() -> None:
    done = threading.Event()
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, lambda *_: done.set())
    while not done.wait(1):
        pass


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="netobs", description="Kube-OVN network observability for banks.")
    p.add_argument("--version", action="version", version=f"netobs {__version__}")
    p.add_argument(
        "-c", "--config", help="YAML configuration file (default: $NETOBS_CONFIG, else built-in defaults)"
    )
    p.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    c = sub.add_parser("config", help="validate or print the configuration")
    g = c.add_mutually_exclusive_group(required=True)
    g.add_argument("--check", metavar="FILE", help="validate FILE; exit 2 with the reason if it is wrong")
    g.add_argument("--dump", action="store_true", help="print the effective configuration (secrets masked)")
    c.set_defaults(func=cmd_config)

    d = sub.add_parser("decode", help="decode a capture of export datagrams to JSON lines")
    d.add_argument("--output", choices=["jsonl"], default="jsonl")
    d.add_argument("capture", help="pcap/pcapng file")
    d.add_argument("--enrich", action="store_true", help="add the enrichment fields (pod, tenant, ..., path)")
    d.add_argument(
        "--inventory", metavar="FILE", help="inventory YAML for --enrich (default: enrich.inventory)"
    )
    d.set_defaults(func=cmd_decode)

    i = sub.add_parser("ingest", help="decode → enrich → store export captures (backfills, imports)")
    i.add_argument("--inventory", metavar="FILE", help="inventory YAML (default: enrich.inventory)")
    i.add_argument("captures", nargs="+", metavar="CAPTURE", help="pcap/pcapng files")
    i.set_defaults(func=cmd_ingest)

    r = sub.add_parser("replay", help="send the export datagrams of a capture to a collector over UDP")
    r.add_argument("capture")
    r.add_argument("--to", required=True, help="host:port of the collector")
    r.add_argument("--rate", type=float, default=0, help="datagrams per second (0: as fast as possible)")
    r.add_argument("--loops", type=int, default=1, help="how many times to send the capture")
    r.set_defaults(func=cmd_replay)

    t = sub.add_parser("token", help="make a control endpoint token (printed once; only its hash is stored)")
    t.add_argument("--name", required=True, help="principal name (shown in the query audit log)")
    t.add_argument("--role", choices=["viewer", "operator", "admin"], default="viewer")
    t.add_argument("--tenant", action="append", default=[], help="viewer: a tenant it may see (repeatable)")
    t.add_argument("--expires", help="ISO 8601 time after which the token is refused")
    t.set_defaults(func=cmd_token)

    q = sub.add_parser(
        "query", help="run SQL against the configured store (through a running process if any)"
    )
    q.add_argument("sql")
    q.add_argument("--format", choices=["table", "tsv", "jsonl"], default="table")
    q.set_defaults(func=cmd_query)

    for name, func, text in (
        ("collect", cmd_collect, "run collectors only (distributed mode)"),
        ("pipeline", cmd_pipeline, "run the pipeline only (distributed mode)"),
        ("schedule", cmd_schedule, "run the analytics and alerts scheduler only (the singleton)"),
        ("run", cmd_run, "run everything in one process (embedded mode)"),
    ):
        sp = sub.add_parser(name, help=text)
        sp.set_defaults(func=func)
        if name == "pipeline":
            sp.add_argument(
                "--no-schedule",
                action="store_true",
                help="leave the analytics and alerts to `netobs schedule` (pipeline replicas)",
            )
    scenario.add_parser(analytics_parsers(sub))
    clickhouse_cluster.add_parsers(sub)
    demo.add_parser(sub)
    ui.add_parser(sub)
    for register in components.commands():
        register(sub)
    return p


#: Error types that are the environment's, not a bug: one line on stderr, exit 1.
ENVIRONMENT_ERRORS: tuple[type[BaseException], ...] = (StoreError, TransportError, RemoteError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(glue_negative(sys.argv[1:] if argv is None else argv))
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        stream=sys.stderr,
    )
    logging.getLogger("kafka").setLevel(logging.WARNING)
    try:
        if len(inspect.signature(args.func).parameters) == 2:
            return int(args.func(args, _settings(args)))
        return int(args.func(args))
    except ConfigError as e:
        print(f"netobs: configuration error: {e}", file=sys.stderr)
        return EXIT_USAGE
    except BrokenPipeError:
        return EXIT_OK
    except ENVIRONMENT_ERRORS as e:
        print(f"netobs: {e}", file=sys.stderr)
        return EXIT_FAILURE


def entry() -> None:
    sys.exit(main())
