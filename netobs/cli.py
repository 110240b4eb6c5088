"""The ``netobs`` command. Components are imported lazily, inside each sub-command."""

from __future__ import annotations

import argparse
import inspect
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence

from netobs import __version__
from netobs.config import ConfigError, Settings, dump, load

log = logging.getLogger("netobs")

EXIT_OK, EXIT_FAILURE, EXIT_USAGE = 0, 1, 2


def _settings(args: argparse.Namespace) -> Settings:
    return load(args.config or os.environ.get("NETOBS_CONFIG") or None)


def cmd_config(args: argparse.Namespace) -> int:
    if args.check:
        load(args.check)
        print(f"{args.check}: ok")
        return EXIT_OK
    print(dump(_settings(args)), end="")
    return EXIT_OK


def cmd_decode(args: argparse.Namespace) -> int:
    from collectors.decode import iter_records, write_jsonl

    if getattr(args, "enrich", False):
        return cmd_decode_enriched(args)
    write_jsonl(iter_records(args.capture), sys.stdout)
    return EXIT_OK


def _enrich_settings(args: argparse.Namespace) -> Settings:
    """The settings, with ``--inventory`` (if given) as the enrichment inventory."""
    from pathlib import Path

    settings = _settings(args)
    if getattr(args, "inventory", None):
        enrich = settings.enrich.model_copy(update={"inventory": Path(args.inventory)})
        settings = settings.model_copy(update={"enrich": enrich})
    return settings


def _decoded(path: str, settings: Settings | None = None):
    """(flows, counters, rejects) per datagram of a capture, template state kept across it;
    with ``settings`` the collector section's sampling rules and limits apply."""
    from collectors.decoder import Decoder
    from collectors.pcap import PcapReader

    decoder = Decoder.from_config(settings.collector) if settings is not None else Decoder()
    for d in PcapReader(path):
        out = decoder.decode(
            d.payload, d.src_ip, d.timestamp_ns // 1_000_000, session=f"{d.src_ip}:{d.src_port}"
        )
        yield out.flows, out.counters, sum(out.errors.values())


def cmd_decode_enriched(args: argparse.Namespace) -> int:
    """``decode --enrich``: the decode contract plus the enrichment fields (in-memory metadata)."""
    from collectors.decode import counter_dicts, flow_dicts, write_jsonl
    from pipeline.enrich import make_enricher
    from pipeline.enrich_ingest import enriched_fields

    settings = _enrich_settings(args)
    if settings.enrich.inventory is None:
        raise ConfigError("decode --enrich needs --inventory FILE (or enrich.inventory in the config)")
    enricher = make_enricher(settings, None)

    def records():
        for flows, counters, _ in _decoded(args.capture, settings):
            extra = enriched_fields(enricher, flows) if len(flows) else {}
            for i, row in enumerate(flow_dicts(flows)):
                yield {**row, **{k: v[i] for k, v in extra.items()}}
            yield from counter_dicts(counters)

    write_jsonl(records(), sys.stdout)
    return EXIT_OK


def cmd_ingest(args: argparse.Namespace) -> int:
    """Captures → decode → enrich → the configured store, with progress and a summary on stderr."""
    from netobs.store import make_store
    from pipeline.enrich import make_enricher
    from pipeline.enrich_ingest import Ingest

    settings = _enrich_settings(args)
    store = make_store(settings.store)
    store.start()
    try:
        enricher = make_enricher(settings, store)
        ingest = Ingest(enricher, store, progress=sys.stderr)
        for path in args.captures:
            for flows, counters, rejects in _decoded(path, settings):
                ingest.add(flows, rejects, counters)
        ingest.flush()
        print(ingest.summary(), file=sys.stderr)
    finally:
        store.stop()
    if ingest.refused_retention and not ingest.records:
        return EXIT_FAILURE  # nothing was stored: say so in the exit code too
    return EXIT_OK


def cmd_replay(args: argparse.Namespace) -> int:
    from collectors.replay import replay

    sent = replay(args.capture, args.to, rate=args.rate, loops=args.loops)
    print(f"replayed {sent} datagrams to {args.to}", file=sys.stderr)
    return EXIT_OK


def cmd_query(args: argparse.Namespace) -> int:
    from netobs.query import format_table, run_query

    table = run_query(_settings(args), args.sql)
    sys.stdout.write(format_table(table, args.format))
    return EXIT_OK


def cmd_collect(args: argparse.Namespace) -> int:
    from netobs.runtime import Runtime

    return Runtime(_settings(args), collect=True, process=False).serve(_wait_for_signal)


def cmd_pipeline(args: argparse.Namespace) -> int:
    from netobs.runtime import Runtime

    return Runtime(_settings(args), collect=False, process=True).serve(_wait_for_signal)


def cmd_run(args: argparse.Namespace) -> int:
    from netobs.runtime import Runtime

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

    q = sub.add_parser(
        "query", help="run SQL against the configured store (through a running process if any)"
    )
    q.add_argument("sql")
    q.add_argument("--format", choices=["table", "tsv", "jsonl"], default="table")
    q.set_defaults(func=cmd_query)

    for name, func, text in (
        ("collect", cmd_collect, "run collectors only (distributed mode)"),
        ("pipeline", cmd_pipeline, "run the pipeline only (distributed mode)"),
        ("run", cmd_run, "run everything in one process (embedded mode)"),
    ):
        sub.add_parser(name, help=text).set_defaults(func=func)
    for register in _component_parsers():
        register(sub)
    return p


def _component_parsers():
    """``add_parsers`` of the components that bring their own sub-commands (imported lazily).

    Their handlers take ``(args, settings)``; the kernel's own take ``(args)``.
    """
    from alerts.cli import add_parsers as alerts
    from analytics.cli import add_parsers as analytics
    from analytics.policy.cli import add_parsers as policy
    from analytics.report.cli import add_parsers as report
    from dashboards.cli import add_parsers as dashboards

    return [analytics, policy, report, dashboards, alerts]


def _environment_errors() -> tuple[type[BaseException], ...]:
    """Errors that are the environment's, not a bug: one line on stderr, exit 1."""
    from netobs.control import RemoteError
    from netobs.store import StoreError
    from netobs.transport import TransportError

    return (StoreError, TransportError, RemoteError, OSError)


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
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
    except _environment_errors() as e:
        print(f"netobs: {e}", file=sys.stderr)
        return EXIT_FAILURE


def entry() -> None:
    sys.exit(main())
