"""Replaying export captures over loopback, for bench/bench_collector.py.

Two scenarios. ``dense`` (:func:`dense_set`): what loaded bank nodes export, many records
per datagram. ``testcaptures`` (:func:`replay_set`), described below: few records per datagram.

The export captures of ``tests/testdata`` (OVS sFlow and IPFIX, pmacct sFlow, IPFIX and
NetFlow v9, softflowd IPFIX, NetFlow v9, v5 and PSAMP), each sent from its own loopback
address (127.0.0.10, .11, ...) as separate exporters would, interleaved datagram by
datagram and repeated with their sequence numbers rewritten so that every repetition
continues the previous one. The set is built and sent by separate processes (this file
with ``--build`` / ``--send``) so that neither weighs on the collector being measured.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import struct
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CAPTURES = (
    "ovs-sflow",
    "ovs-ipfix",
    "pmacct-sflow",
    "pmacct-ipfix",
    "pmacct-netflow9",
    "softflowd-ipfix",
    "softflowd-netflow9",
    "softflowd-netflow5",
    "softflowd-psamp",
)
FIRST_SOURCE = 10  # capture i is sent from 127.0.0.(10 + i)
_RECORD = struct.Struct(">HHI")  # replay file: source index, flows in it, payload length
_U32 = struct.Struct(">I")


@dataclass
class Run:
    flows: int  # published
    seconds: float  # first datagram sent → last flow published
    drops: int  # datagrams dropped (socket, and for goflow2 its queue)
    offered: dict  # the sender's report
    cpu: float  # CPU seconds the collector used meanwhile (robust to a busy machine)


def peak_rss_mb(pid: int | str = "self") -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(re.search(r"VmHWM:\s+(\d+) kB", status).group(1)) / 1024


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (/proc/PID/stat)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def _streams(kind: str, buf: bytes):
    """(stream, offset of its sequence number, units it covers or None) in one datagram.

    Units are what the protocol numbers: sFlow datagrams and samples, NetFlow v9 packets,
    NetFlow v5 flows; None for IPFIX, whose records are counted by decoding (the caller).
    """
    if kind == "sflow":
        agent_len = 4 if _U32.unpack_from(buf, 4)[0] == 1 else 16
        yield ("sflow", buf[8 : 12 + agent_len]), 12 + agent_len, 1
        off = 24 + agent_len
        for _ in range(_U32.unpack_from(buf, off - 4)[0]):
            tag, length = struct.unpack_from(">II", buf, off)
            if tag in (1, 2, 3, 4):  # flow / counter samples, compact and expanded
                source = buf[off + 12 : off + (16 if tag < 3 else 20)]
                yield ("sample", tag & 1, source), off + 8, 1
            off += 8 + length
    elif kind == "ipfix":
        yield ("ipfix", buf[12:16]), 8, None
    elif kind == "netflow9":
        yield ("netflow9", buf[16:20]), 12, 1
    elif kind == "netflow5":
        yield ("netflow5", buf[20:22]), 16, struct.unpack_from(">H", buf, 2)[0]


def _decode_counts(payloads: list[bytes]) -> tuple[list[int], list[int]]:
    """Flows and data records (flows plus options records) netobs decodes in each datagram."""
    from collectors.decoder import Decoder

    decoder, flows, records, seen = Decoder(), [], [], 0
    for payload in payloads:
        flows.append(len(decoder.decode(payload, "127.0.0.1", 0).flows))
        stats = decoder.stats["127.0.0.1"]
        total = stats.flow_records + stats.options_records
        records.append(max(flows[-1], total - seen))
        seen = total
    return flows, records


def replay_set(loops: int) -> tuple[list[tuple[int, int, bytes]], int]:
    """(source index, flows, payload) of every datagram, and the flows per loop.

    The captures are interleaved datagram by datagram; loop k shifts every stream's sequence
    numbers by k times the span the capture covers, so exporters look like they keep running.
    """
    from collectors.decoder import Decoder
    from collectors.replay import load_payloads

    per_capture = []
    for name in CAPTURES:
        payloads = load_payloads(ROOT / "tests" / "testdata" / f"{name}.pcap")
        flows, records = _decode_counts(payloads)
        kind = Decoder.detect(payloads[0])
        first: dict = {}
        end: dict = {}  # stream → the number expected after the capture (reordering aside)
        for payload, n in zip(payloads, records, strict=True):
            for stream, off, units in _streams(kind, payload):
                seq = _U32.unpack_from(payload, off)[0]
                first.setdefault(stream, seq)
                end[stream] = max(end.get(stream, 0), seq + (n if units is None else units))
        span = {s: end[s] - first[s] for s in first}
        per_capture.append((kind, payloads, flows, span))
    out = []
    for k in range(loops):
        longest = max(len(p) for _, p, _, _ in per_capture)
        for i in range(longest):
            for source, (kind, payloads, flows, span) in enumerate(per_capture):
                if i < len(payloads):
                    buf = bytearray(payloads[i])
                    for stream, off, _ in _streams(kind, payloads[i]):
                        seq = _U32.unpack_from(buf, off)[0]
                        _U32.pack_into(buf, off, (seq + k * span[stream]) & 0xFFFFFFFF)
                    out.append((source, flows[i], bytes(buf)))
    return out, sum(sum(f) for _, _, f, _ in per_capture)


DENSE_IPFIX_NODES = 6  # OVS nodes exporting IPFIX (127.0.0.10 .. 15)
DENSE_SFLOW_NODES = 2  # OVS nodes exporting sFlow (127.0.0.16, 17)


def source_address(source: int) -> str:
    """The loopback address replay source ``source`` sends from: 127.0.0.10, .11, ... then 127.0.1.x."""
    n = FIRST_SOURCE + source
    return f"127.0.{n // 250}.{n % 250 + (1 if n >= 250 else 0)}"


#: The many-exporters scenario: as many flows per export second as ``dense``, from 500 nodes.
MANY_IPFIX_NODES, MANY_SFLOW_NODES = 375, 125


def many_set(loops: int) -> tuple[list[tuple[int, int, bytes]], int]:
    """``dense``'s datagram mix from 500 exporters (375 IPFIX, 125 sFlow), interleaved the way
    simultaneous exporters arrive: within an export second, the first datagram of every node,
    then the second of every node, ... (``dense_loops * 8 // 500`` loops hold as many flows as
    ``dense_loops`` of ``dense``)."""
    out, per_loop = dense_set(loops, MANY_IPFIX_NODES, MANY_SFLOW_NODES)
    nodes = MANY_IPFIX_NODES + MANY_SFLOW_NODES
    position = [0] * nodes
    keyed = []
    loop = 0
    for i, (source, _, _) in enumerate(out):
        keyed.append(((loop, position[source], source), i))
        position[source] += 1
        if source == nodes - 1:  # the last node closes an export second
            loop, position = loop + 1, [0] * nodes
    return [out[i] for _, i in sorted(keyed)], per_loop


def dense_set(
    loops: int, ipfix_nodes: int = 6, sflow_nodes: int = 2
) -> tuple[list[tuple[int, int, bytes]], int]:
    """A loaded bank node's exports: many records per datagram, like a busy OVS sends them.

    Six nodes export IPFIX through the scenario exporter (``analytics/scenario/exporter.py``:
    a data template and a sampling options message, then 24 records per datagram, the most
    that fit a 1500-byte MTU), with varied pod 5-tuples and counters; two export sFlow
    (9 flow samples of 128-byte headers per datagram: plain, VLAN, IPv6, Geneve with the
    OVN option, VXLAN, as ``bench/bench_decode.py`` builds them). Each loop is one export
    second per node; sequence numbers run on across loops. Returns what :func:`replay_set` does.
    """
    import numpy as np
    from bench_decode import sflow_datagrams

    from analytics.scenario.exporter import MAX_RECORDS, RECORD, Exporter

    rng = np.random.default_rng(7)
    # RFC 7011 §3.1 counts options data records in the sequence number too; the scenario
    # exporter leaves its sampling record out, which a collector would count as late records.
    shift = [0] * ipfix_nodes
    exporters = [Exporter(source_address(i), 512, domain=1) for i in range(ipfix_nodes)]
    per_export = 4 * MAX_RECORDS  # records of one node in one export second
    sflow, _ = sflow_datagrams(loops)  # numbered 1, 2, ... (datagrams and samples alike)
    out = []
    for k in range(loops):
        for source, exporter in enumerate(exporters):
            rec = np.zeros(per_export, dtype=RECORD)
            rec["start"] = (1_700_000_000 + k) * 1000 - rng.integers(0, 60_000, per_export)
            rec["end"] = (1_700_000_000 + k) * 1000
            rec["src"] = 0x0A100000 + rng.integers(1, 60_000, per_export)  # 10.16.0.0/16 pods
            rec["dst"] = 0x0A100000 + rng.integers(1, 60_000, per_export)
            rec["sport"] = rng.integers(32768, 61000, per_export)
            rec["dport"] = rng.choice([443, 5432, 8080, 53, 9092], per_export)
            rec["proto"] = 6
            rec["flags"] = 0x18
            rec["in_if"], rec["out_if"] = 3 + source, 4
            rec["packets"] = rng.integers(1, 2000, per_export)
            rec["bytes"] = rec["packets"] * rng.integers(60, 1500, per_export)
            for payload in exporter.datagrams(rec, 1_700_000_000 + k):
                data = _U32.unpack_from(payload, 16)[0] >> 16 == 256  # else templates and the options record
                n = (len(payload) - 20) // RECORD.itemsize if data else 0
                if shift[source]:
                    buf = bytearray(payload)
                    _U32.pack_into(buf, 8, (_U32.unpack_from(buf, 8)[0] + shift[source]) & 0xFFFFFFFF)
                    payload = bytes(buf)
                shift[source] += 0 if data else 1
                out.append((source, n, payload))
        for j in range(sflow_nodes):  # 9 samples each; the builder numbers them on
            buf = bytearray(sflow[k])
            buf[8:12] = bytes((192, 0, 2 + j // 250, 1 + j % 250))  # each node its own agent address
            out.append((ipfix_nodes + j, 9, bytes(buf)))
    return out, ipfix_nodes * per_export + 9 * sflow_nodes


SCENARIOS = {"testcaptures": replay_set, "dense": dense_set, "many": many_set}


def build_main(args: argparse.Namespace) -> None:
    """Write the replay set to --build (run apart, so that it is not in the collector's RSS)."""
    datagrams, flows_per_loop = SCENARIOS[args.scenario](args.loops)
    with open(args.build, "wb") as f:
        for source, flows, payload in datagrams:
            f.write(_RECORD.pack(source, flows, len(payload)) + payload)
    print(json.dumps({"datagrams": len(datagrams), "flows": flows_per_loop * args.loops}))


def build_replay(path: Path, loops: int, scenario: str = "testcaptures") -> dict:
    cmd = [sys.executable, __file__, "--build", str(path), "--loops", str(loops), "--scenario", scenario]
    return json.loads(subprocess.run(cmd, check=True, capture_output=True, text=True).stdout)


def continuations(datagrams: list[tuple[int, int, bytes]]) -> list[list[tuple[int, int]]]:
    """Per datagram, the (offset, span) of each sequence number in it: the sender adds ``k * span``
    on its k-th pass over the set, so that every pass continues the one before, as exporters
    that keep running do (without it, a pass would jump back: a reset of every stream, or, for
    a stream spanning fewer than 2^16 units, every datagram after the jump counted late).

    A stream is a source's (``_streams``): IPFIX records counted by decoding each source's
    datagrams in order, as :func:`replay_set` does."""
    from collectors.decoder import detect

    by_source: dict[int, list[int]] = {}
    for i, (source, _, _) in enumerate(datagrams):
        by_source.setdefault(source, []).append(i)
    first: dict = {}
    end: dict = {}
    located: list[list[tuple[tuple, int]]] = [[] for _ in datagrams]
    for source, indices in by_source.items():
        payloads = [datagrams[i][2] for i in indices]
        kind = detect(payloads[0])
        if kind not in ("sflow", "ipfix", "netflow9", "netflow5"):
            continue
        records = _decode_counts(payloads)[1] if kind == "ipfix" else [0] * len(payloads)
        for i, payload, n in zip(indices, payloads, records, strict=True):
            if detect(payload) != kind:
                continue
            for stream, off, units in _streams(kind, payload):
                key = (source, stream)
                seq = _U32.unpack_from(payload, off)[0]
                first.setdefault(key, seq)
                end[key] = max(end.get(key, 0), seq + (n if units is None else units))
                located[i].append((key, off))
    return [[(off, (end[key] - first[key]) & 0xFFFFFFFF) for key, off in spots] for spots in located]


def continued(payload: bytes, spots: list[tuple[int, int]], k: int) -> bytes | bytearray:
    """``payload`` as sent on pass ``k`` over the set: its sequence numbers ``k`` spans on."""
    buf = bytearray(payload)
    for at, span in spots:
        _U32.pack_into(buf, at, (_U32.unpack_from(buf, at)[0] + k * span) & 0xFFFFFFFF)
    return buf


def _cached_continuations(path: Path, datagrams: list[tuple[int, int, bytes]]) -> list:
    """:func:`continuations` of a replay file, kept beside it (each run's sender reads them)."""
    import pickle

    cache = path.with_name(path.name + ".continuations")
    stamp = path.stat().st_mtime_ns
    try:
        with open(cache, "rb") as f:
            made, patches = pickle.load(f)
        if made == stamp and len(patches) == len(datagrams):
            return patches
    except (OSError, EOFError, pickle.UnpicklingError, ValueError):
        pass
    patches = continuations(datagrams)
    tmp = cache.with_name(f"{cache.name}.{os.getpid()}")
    with open(tmp, "wb") as f:
        pickle.dump((stamp, patches), f)
    os.replace(tmp, cache)
    return patches


def send_main(args: argparse.Namespace) -> None:
    """Send the replay file to --port for --seconds, cycling it, at --rate datagrams/s (0: max);
    each pass continues the sequence numbers of the one before (:func:`continuations`)."""
    raw = Path(args.send).read_bytes()
    datagrams, off = [], 0
    while off < len(raw):
        source, flows, n = _RECORD.unpack_from(raw, off)
        off += _RECORD.size
        datagrams.append((source, flows, raw[off : off + n]))
        off += n
    patches = _cached_continuations(Path(args.send), datagrams)
    socks = {}
    for source in sorted({d[0] for d in datagrams}):
        s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        s.bind((source_address(source), 0))
        s.connect(("127.0.0.1", args.port))
        socks[source] = s.send
    # (send, flows, payload, sequence numbers to continue, passes already behind it)
    plan = [
        (socks[source], flows, payload, spots, 0)
        for (source, flows, payload), spots in zip(datagrams, patches, strict=True)
    ]
    if args.count:  # one pass over the first --count datagrams (a collector's first contact)
        plan = plan[: args.count]
    elif args.skip:  # go on where a priming pass (--count) stopped: no exporter starts over
        plan = plan[args.skip :] + [(*p[:4], 1) for p in plan[: args.skip]]
    print("ready", flush=True)
    sys.stdin.readline()  # "go"
    sent = offered = 0
    started = time.perf_counter()
    stop_at = started + args.seconds
    passes = 0
    while True:
        for send, flows, payload, spots, behind in plan:
            send(continued(payload, spots, k) if (k := passes + behind) and spots else payload)
            sent += 1
            offered += flows
            if sent & 31 == 0:
                now = time.perf_counter()
                if now >= stop_at:
                    break
                if args.rate and (ahead := sent / args.rate - (now - started)) > 0:
                    time.sleep(ahead)
        else:
            if args.count:
                break
            passes += 1
            continue
        break
    elapsed = time.perf_counter() - started
    print(json.dumps({"sent": sent, "flows": offered, "seconds": elapsed, "passes": passes}), flush=True)


def first_contact(path: Path, times: int = 3) -> int:
    """How many datagrams from the start of the replay file it takes until every source has
    sent ``times`` of them: a collector's first contact with all its exporters (templates,
    sequence streams, per-exporter state), what :func:`bench_collector.run_netobs` primes with."""
    raw = path.read_bytes()
    seen: dict[int, int] = {}
    sources, off, n = set(), 0, 0
    while off < len(raw):
        source, _, length = _RECORD.unpack_from(raw, off)
        sources.add(source)
        off += _RECORD.size + length
    off = 0
    while off < len(raw):
        source, _, length = _RECORD.unpack_from(raw, off)
        off += _RECORD.size + length
        n += 1
        seen[source] = seen.get(source, 0) + 1
        if len(seen) == len(sources) and min(seen.values()) >= times:
            break
    return n


class Sender:
    """The sender process, started ready; :meth:`go` starts sending, :meth:`result` waits."""

    def __init__(
        self, replay: Path, port: int, seconds: float, rate: float = 0, count: int = 0, skip: int = 0
    ):
        cmd = [sys.executable, __file__, "--send", str(replay), "--port", str(port)]
        cmd += ["--seconds", str(seconds), "--rate", str(rate), "--count", str(count), "--skip", str(skip)]
        self.proc = subprocess.Popen(cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        if self.proc.stdout.readline().strip() != "ready":
            raise SystemExit("bench: the replay sender did not start")

    def go(self) -> float:
        started = time.perf_counter()
        self.proc.stdin.write("go\n")
        self.proc.stdin.flush()
        return started

    def result(self) -> dict:
        out = json.loads(self.proc.stdout.readline())
        self.proc.wait(30)
        return out


def main() -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(ROOT / "bench"))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--build", help="write the replay set of --loops repetitions to this file")
    ap.add_argument("--loops", type=int, default=100)
    ap.add_argument("--scenario", choices=sorted(SCENARIOS), default="testcaptures")
    ap.add_argument("--send", help="send this replay file to 127.0.0.1:--port")
    ap.add_argument("--port", type=int)
    ap.add_argument("--seconds", type=float, default=2.0)
    ap.add_argument("--rate", type=float, default=0, help="datagrams/s (0: as fast as possible)")
    ap.add_argument("--count", type=int, default=0, help="send the first COUNT datagrams once, then stop")
    ap.add_argument("--skip", type=int, default=0, help="start at datagram SKIP (after a --count pass)")
    args = ap.parse_args()
    if args.build:
        build_main(args)
    elif args.send:
        send_main(args)
    else:
        ap.error("--build or --send")


if __name__ == "__main__":
    main()
