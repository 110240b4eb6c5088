"""The collector end to end (socket → published batches) beside goflow2, on replayed captures.

    python bench/bench_collector.py [--rounds 3] [--seconds 2] [--loops 100] [--quick]

Two replay scenarios (``bench/_replay.py``), each exporter from its own loopback address:
``dense`` (``collector.e2e``): loaded OVS nodes, six exporting IPFIX through the scenario
exporter (24 records per datagram) and two sFlow (9 samples per datagram), ``--dense-loops``
export seconds; ``testcaptures`` (``collector.e2e_testcaptures``): the real export captures
of ``tests/testdata`` (nine of them: sFlow, IPFIX, NetFlow v9 and v5, PSAMP from OVS, pmacct
and softflowd, mostly few records per datagram), interleaved and repeated ``--loops`` times
with continuing sequence numbers; ``many`` (``collector.e2e_500_exporters``): the ``dense``
datagram mix from 500 exporters (375 IPFIX, 125 sFlow) interleaved as simultaneous exporters
arrive, as many flows as ``dense``, without the goflow2 runs;
``collector.e2e_500_exporters.vs_8_exporters`` is its figure over ``collector.e2e`` (the goal:
above 0.8). ``<name>_flows_per_datagram`` says which is which.
Another process sends them over loopback for ``--seconds``, as fast as it can or paced,
cycling the set with every pass continuing the sequence numbers of the one before (as running
exporters do: ``_replay.continuations``), and reports what it offered. ``--scenario scale``
runs ``dense`` and ``many`` only (the ``vs_8_exporters`` figures).

Figures of each scenario (medians over ``--rounds``; socket drops are the worst round),
named here for ``collector.e2e``:

- ``collector.e2e``: flows/s the real :class:`collectors.service.UdpCollector` (default
  config, one listener) publishes while offered the sender's maximum rate, timed from the
  first datagram to the last publish; the producer does the Kafka transport's work
  without a broker (the zstd Arrow IPC wire encoding of every batch).
  ``collector.e2e_offered`` is what the sender offered meanwhile (the figure cannot exceed
  it) and ``collector.e2e_drops`` the datagrams the kernel dropped for the collector.
- ``collector.e2e_per_cpu_s``: the same flows per CPU second the collector used, a figure
  that a busy machine (other processes taking the cores) distorts less.
- ``collector.e2e_half_*``: the same while offered half of ``collector.e2e``
  (``collector.e2e_half_drops``: 0 is the goal); ``collector.e2e_rss``: peak resident
  memory of this process.
- ``collector.e2e_goflow2*``: goflow2 (its ``-format=bin`` FlowMessages written to a file,
  counted; ``GOMAXPROCS=1`` as the collector's decoding is one core too) on the same
  replay at the maximum rate and at netobs's half rate, its peak RSS;
  ``collector.e2e.vs_goflow2`` = netobs / goflow2 at the maximum rate, and
  ``collector.e2e_half_per_cpu_s.vs_goflow2`` the flows per CPU second of both under the
  same, bearable, load (the steadier comparison on a shared machine).
- ``ipfix.decode.vs_goflow2`` and ``sflow.decode.vs_goflow2``: netobs's decoder fed per datagram
  and flushed as the collector service flushes it (every ``_FLUSH_DATAGRAMS`` datagrams, on the
  datagram sets ``bench/bench_decode.py`` builds) against goflow2's decoders plus its protobuf
  producer on one core (``bench/goflow2``, built here with the module cache in
  ``$NETOBS_CACHE/go/mod``), both in records per CPU second of their process;
  ``*.decode_single.vs_goflow2`` the same with a flush per datagram (``Decoder.decode``, what
  a caller decoding one datagram at a time pays); ``*.decode_goflow2`` are goflow2's rates.

Without Go or goflow2 the goflow2 figures are skipped with a ``bench: note`` line.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from _goflow2 import build_goflow2_decoder, decode_rates, note, run_goflow2  # noqa: E402
from _replay import Run, Sender, build_replay, first_contact, peak_rss_mb  # noqa: E402
from _util import report  # noqa: E402

from netobs import wire  # noqa: E402

# --- netobs -----------------------------------------------------------------------------------


class CountingProducer:
    """The Kafka producer's own work, without a broker: wire-encode each batch, count it."""

    def __init__(self) -> None:
        self.rows = self.counter_rows = self.messages = self.bytes = 0
        self.last = self.seconds = 0.0  # last send; time spent encoding

    def send(self, rb, key: bytes) -> None:
        from netobs import schema, wire

        started = time.perf_counter()
        self.bytes += len(wire.encode(rb))
        self.seconds += time.perf_counter() - started
        if schema.kind_of(rb) == schema.FLOWS:
            self.rows += rb.num_rows
        else:  # interface counters (sFlow counter samples) travel as their own kind
            self.counter_rows += rb.num_rows
        self.messages += 1
        self.last = time.perf_counter()

    def flush(self, timeout_s: float = 30.0) -> None:
        pass

    def close(self) -> None:
        pass


#: Datagrams/s of the priming pass (slow enough that the kernel drops none on a busy machine).
PRIME_RATE = 2000.0


def _settle(collector, sent: int, start: int = 0, drops_before: int = 0) -> int:
    """Wait until the collector decoded (or the kernel dropped) ``sent`` more datagrams than
    the ``start`` it had decoded before they were sent; returns the kernel's drops meanwhile."""
    deadline, drops, seen = time.monotonic() + 120, 0, -1
    while time.monotonic() < deadline:  # until every datagram is decoded or dropped
        time.sleep(0.02)
        if collector.datagrams == seen:  # idle: read the kernel's drops (not while busy)
            drops = sum(collector.read_socket_drops().values()) - drops_before
            if collector.datagrams - start + drops >= sent:
                break
        seen = collector.datagrams
    return drops


def run_netobs(replay: Path, seconds: float, rate: float = 0, prime: int = 0) -> Run:
    """One run of the collector on ``replay``. With ``prime``, the collector first hears the
    replay's first ``prime`` datagrams at :data:`PRIME_RATE` (its first contact with every
    exporter: templates, sequence streams, metric label sets) and publishes them; the figures
    count only the timed run after that, the steady state of a collector that has been up."""
    from collectors.config import CollectorConfig, ListenerConfig
    from collectors.service import UdpCollector

    producer = CountingProducer()
    collector = UdpCollector(CollectorConfig(listeners=(ListenerConfig(listen="127.0.0.1:0"),)), producer)
    collector.start()
    base_rows = base_drops = 0
    try:
        if prime:
            primer = Sender(replay, collector.addresses[0][1], 60.0, PRIME_RATE, count=prime)
            primer.go()
            sent = primer.result()["sent"]
            if primer_drops := _settle(collector, sent, 0):
                note(f"the priming pass lost {primer_drops} of {sent} datagrams to the kernel")
            time.sleep(collector.config.batch_max_delay_ms / 1000 * 3)  # its batches published
            base_rows = producer.rows
            base_drops = sum(collector.read_socket_drops().values())
        base_datagrams = collector.datagrams
        sender = Sender(replay, collector.addresses[0][1], seconds, rate, skip=prime)
        cpu = time.process_time()  # this process: the collector (the main thread only waits)
        started = sender.go()
        offered = sender.result()
        drops = _settle(collector, offered["sent"], base_datagrams, base_drops)
    finally:
        collector.stop()  # publishes what is pending
    print(
        f"  wire encoding: {producer.messages} messages, {producer.bytes / max(producer.rows, 1):.1f} "
        f"bytes/flow, {producer.seconds:.2f}s",
        file=sys.stderr,
    )
    if producer.rows != collector.published or collector.lost:
        raise SystemExit(
            f"bench_collector: published {collector.published}, producer got {producer.rows}, lost {collector.lost}"
        )
    return Run(producer.rows - base_rows, producer.last - started, drops, offered, time.process_time() - cpu)


def netobs_decode_rate(datagrams: list[bytes], count: int, rounds: int, flush_every: int = 1) -> float:
    """Records per CPU second of ``Decoder.feed`` per datagram with a flush every ``flush_every``
    datagrams (1: ``Decoder.decode``), a fresh decoder per round (median)."""
    from collectors.decoder import Decoder

    rates = []
    for _ in range(rounds):
        decoder, flows = Decoder(), 0
        started = time.process_time()
        for i in range(0, len(datagrams), flush_every):
            for payload in datagrams[i : i + flush_every]:
                decoder.feed(payload, "10.0.0.1", 1_700_000_000_000)
            flows += len(decoder.flush().flows)
        rates.append(flows / (time.process_time() - started))
        if flows != count:
            raise SystemExit(f"bench_collector: netobs decoded {flows} records, expected {count}")
    return statistics.median(rates)


def decode_comparison(workdir: Path, n: int, rounds: int) -> None:
    """The IPFIX and sFlow sets of bench/bench_decode.py through both decoders, per CPU second:
    netobs's fed as the collector service feeds it (a flush per ``_FLUSH_DATAGRAMS`` datagrams,
    ``*.decode.vs_goflow2``) and with a flush per datagram (``*.decode_single.vs_goflow2``),
    goflow2's decoding and producing every datagram as goflow2 does."""
    from bench_decode import ipfix_datagrams, sflow_datagrams

    from collectors.service import _FLUSH_DATAGRAMS

    binary = build_goflow2_decoder(workdir)
    if binary is None:
        return
    sets = {
        "ipfix": ("records/s", *ipfix_datagrams(n, interface_names=False)),
        "sflow": ("samples/s", *sflow_datagrams(n)),
    }
    for name, (unit, datagrams, count) in sets.items():
        peer = decode_rates(binary, name, datagrams, max(rounds, 9), workdir)
        if peer is None:
            continue
        if peer["flow_messages"] != count:
            note(f"goflow2 made {peer['flow_messages']} flows of the {count} {name} records")
        theirs = peer["decode_produce_flows_per_cpu_s"]
        ours = netobs_decode_rate(datagrams, count, max(rounds, 9), _FLUSH_DATAGRAMS)
        single = netobs_decode_rate(datagrams, count, max(rounds, 9))
        print(
            f"{name} decode per CPU second: netobs {ours:.0f} {unit} (a flush per datagram: {single:.0f}), "
            f"goflow2 decoder {peer['decode_records_per_cpu_s']:.0f}, decoder+producer {theirs:.0f}",
            file=sys.stderr,
        )
        report(f"{name}.decode_goflow2", theirs, unit.replace("/s", "/cpu-s"))
        report(f"{name}.decode.vs_goflow2", ours / theirs, "ratio")
        report(f"{name}.decode_single.vs_goflow2", single / theirs, "ratio")


# --- main -------------------------------------------------------------------------------------


def e2e(
    name: str,
    replay: Path,
    flows_per_datagram: float,
    args: argparse.Namespace,
    workdir: Path,
    peer: bool = True,
) -> tuple[float, float]:
    """Rounds of: netobs at the maximum rate, netobs at half its figure (both after a priming
    pass, see :func:`run_netobs`), netobs at the maximum rate without priming (``<name>_cold``:
    the collector's first contact with every exporter is in the timed run), goflow2 at both
    rates (with ``peer``; goflow2 is not primed); figures named ``name`` (``collector.e2e`` or
    ``collector.e2e_<scenario>``). Returns netobs's flows/s, primed and cold."""
    from tests.services.goflow2 import goflow2_binary

    binary = goflow2_binary() if peer else None
    if binary is None and peer:
        note("goflow2 not found (scripts/install-services.sh builds it): collector.e2e_goflow2 skipped")
    runs: dict[str, list[Run]] = {
        "netobs": [],
        "netobs_half": [],
        "netobs_cold": [],
        "goflow2": [],
        "goflow2_half": [],
    }
    peer_rss = []
    prime = first_contact(replay)
    if not args.quick:
        run_netobs(replay, 0.3)  # warm-up: lazy imports, first Arrow/zstd encodings
    for _ in range(args.rounds):
        runs["netobs"].append(ours := run_netobs(replay, args.seconds, prime=prime))
        half_rate = ours.flows / ours.seconds / 2 / flows_per_datagram  # datagrams/s
        runs["netobs_half"].append(run_netobs(replay, args.seconds, half_rate, prime=prime))
        runs["netobs_cold"].append(run_netobs(replay, args.seconds))
        if binary is not None:
            for peer_kind, rate in (("goflow2", 0.0), ("goflow2_half", half_rate)):
                run, rss = run_goflow2(binary, replay, args.seconds, workdir, rate)
                runs[peer_kind].append(run)
                peer_rss.append(rss)
        for kind, done in runs.items():
            if done:
                r = done[-1]
                print(
                    f"{kind}: published {r.flows} flows in {r.seconds:.2f}s ({r.cpu:.2f} CPU s), drops "
                    f"{r.drops}, offered {r.offered['flows']} flows in {r.offered['seconds']:.2f}s",
                    file=sys.stderr,
                )
    ours = _summary(name, runs["netobs"])
    if min(r.drops for r in runs["netobs"]) == 0:
        note(f"the collector kept up with all the sender offered: {name} is a lower bound")
    ours_half = _summary(f"{name}_half", runs["netobs_half"])
    cold = _summary(f"{name}_cold", runs["netobs_cold"])
    report(f"{name}_flows_per_datagram", flows_per_datagram, "flows/datagram")
    report(f"{name}_rss", peak_rss_mb(), "MB")
    if binary is not None:
        peer = _summary(f"{name}_goflow2", runs["goflow2"])
        peer_half = _summary(f"{name}_goflow2_half", runs["goflow2_half"])
        report(f"{name}_goflow2_rss", max(peer_rss), "MB")
        report(f"{name}.vs_goflow2", ours[0] / peer[0], "ratio")
        report(f"{name}_half_per_cpu_s.vs_goflow2", ours_half[1] / peer_half[1], "ratio")
    return ours[0], cold[0]


def _summary(name: str, runs: list[Run]) -> tuple[float, float]:
    """Print the figures of a kind of run; returns (flows/s, flows per CPU second), medians."""
    rate = statistics.median(r.flows / r.seconds for r in runs)
    per_cpu = statistics.median(r.flows / max(r.cpu, 0.01) for r in runs)
    offered = statistics.median(r.offered["flows"] / r.offered["seconds"] for r in runs)
    report(name, rate, "flows/s")
    report(f"{name}_per_cpu_s", per_cpu, "flows/cpu-s")
    report(f"{name}_offered", offered, "flows/s")
    report(f"{name}_drops", max(r.drops for r in runs), "datagrams")
    return rate, per_cpu


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=2.0, help="sending time of each run")
    ap.add_argument("--loops", type=int, default=100, help="repetitions of the captures in the replay set")
    ap.add_argument("--dense-loops", type=int, default=1000, help="export seconds of the dense replay set")
    ap.add_argument(
        "--scenario",
        choices=("all", "dense", "many", "scale", "testcaptures", "decode"),
        default="all",
        help="decode: only the decode comparison (*.decode.vs_goflow2); scale: dense and many "
        "(collector.e2e_500_exporters.vs_8_exporters)",
    )
    ap.add_argument("--datagrams", type=int, default=1000, help="datagrams of each decode comparison set")
    ap.add_argument("--quick", action="store_true", help="tiny sizes: checks that everything runs")
    ap.add_argument(
        "--wire-compression",
        choices=wire.COMPRESSIONS,
        default=wire.DEFAULT_COMPRESSION,
        help="codec of the published messages (transport.wire_compression)",
    )
    args = ap.parse_args()
    wire.set_compression(args.wire_compression)
    note(f"wire compression: {args.wire_compression}")
    if args.quick:
        args.rounds, args.seconds, args.loops, args.dense_loops, args.datagrams = 1, 0.2, 2, 20, 50
    with tempfile.TemporaryDirectory(prefix="netobs-bench-") as tmp:
        workdir = Path(tmp)
        figures = {}
        for scenario, name, loops in (
            ("dense", "collector.e2e", args.dense_loops),
            ("many", "collector.e2e_500_exporters", max(2, args.dense_loops * 8 // 500)),
            ("testcaptures", "collector.e2e_testcaptures", args.loops),
        ):
            if args.scenario not in ("all", scenario) and not (
                args.scenario == "scale" and scenario in ("dense", "many")
            ):
                continue
            replay = workdir / f"replay-{scenario}.bin"
            built = build_replay(replay, loops, scenario)
            per = built["flows"] / built["datagrams"]
            print(
                f"{scenario} replay set: {built['datagrams']} datagrams, {built['flows']} flows, "
                f"{per:.2f} flows/datagram",
                file=sys.stderr,
            )
            figures[scenario] = e2e(name, replay, per, args, workdir, peer=scenario != "many")
        if "dense" in figures and "many" in figures:  # the goal: within 20% of 8 exporters
            report(
                "collector.e2e_500_exporters.vs_8_exporters",
                figures["many"][0] / figures["dense"][0],
                "ratio",
            )
            report(
                "collector.e2e_500_exporters_cold.vs_8_exporters",
                figures["many"][1] / figures["dense"][1],
                "ratio",
            )
        if args.scenario in ("all", "decode"):
            decode_comparison(workdir, args.datagrams, args.rounds)


if __name__ == "__main__":
    main()
