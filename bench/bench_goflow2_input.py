"""Decoding goflow2's protobuf FlowMessage records into netobs columns (a script, not a test).

    python bench/bench_goflow2_input.py [--rounds 5] [--records 100000]

Prints ``bench: <name> <value> <unit>`` lines, each the median of several rounds, on
records as goflow2 v2.2.6 writes them for IPFIX flows (length-prefixed, ~110 bytes, the
fields goflow2 fills: times, sampler, addresses, ports, counters, MACs, layer stack):
``goflow2.decode`` (``pipeline.goflow2.decode``, the columnar numpy parser: one poll's
records → one flow table), ``goflow2.decode_cpu`` (the same in process CPU time, the
single-core cost on a shared machine) and ``goflow2.decode_upb`` (the alternative it
replaces: the upb C parser of the generated module, then one attribute read per field
per flow, into the same numpy columns), for the ratio between the two.
"""

from __future__ import annotations

import argparse
import random
import statistics
import sys
import time
from operator import attrgetter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

import numpy as np  # noqa: E402
from _util import report  # noqa: E402  (bench/_util.py, beside this script)
from google.protobuf.internal.encoder import _VarintBytes  # noqa: E402

from pipeline import goflow2  # noqa: E402
from pipeline._goflow2_pb2 import FlowMessage  # noqa: E402


def records(n: int, seed: int = 1) -> list[bytes]:
    rng = random.Random(seed)
    now = time.time_ns()
    out = []
    for i in range(n):
        m = FlowMessage(
            type=FlowMessage.IPFIX,
            time_received_ns=now + i * 1000,
            sequence_num=i // 30,
            sampling_rate=1,
            sampler_address=bytes([192, 0, 2, 11]),
            time_flow_start_ns=now - rng.randrange(10**10),
            time_flow_end_ns=now,
            bytes=rng.randrange(64, 10**7),
            packets=rng.randrange(1, 10**4),
            src_addr=bytes([10, 244, rng.randrange(4), rng.randrange(256)]),
            dst_addr=bytes([10, 244, rng.randrange(4), rng.randrange(256)]),
            etype=0x800,
            proto=rng.choice([6, 17, 1]),
            src_port=rng.randrange(1024, 65536),
            dst_port=rng.choice([443, 80, 53, 5432]),
            in_if=rng.randrange(1, 64),
            out_if=rng.randrange(1, 64),
            src_mac=rng.randrange(1 << 48),
            dst_mac=rng.randrange(1 << 48),
            tcp_flags=0x1B,
            observation_domain_id=1,
        )
        m.layer_stack.extend([0, 1, 3])
        m.layer_size.extend([14, 20, 20])
        body = m.SerializeToString()
        out.append(_VarintBytes(len(body)) + body)
    return out


_UPB_FIELDS = (
    "time_received_ns",
    "time_flow_start_ns",
    "time_flow_end_ns",
    "sampling_rate",
    "bytes",
    "packets",
    "etype",
    "proto",
    "src_port",
    "dst_port",
    "in_if",
    "out_if",
    "src_mac",
    "dst_mac",
    "tcp_flags",
    "observation_domain_id",
    "type",
)
_GET = attrgetter(*_UPB_FIELDS)


def decode_upb(recs: list[bytes]) -> int:
    """The per-flow alternative: upb parse of each record, attribute reads into numpy columns."""
    msgs = []
    for r in recs:
        m = FlowMessage()
        m.ParseFromString(memoryview(r)[1 if r[0] < 0x80 else 2 :])
        msgs.append(m)
    values = list(zip(*map(_GET, msgs), strict=True))
    cols = [np.fromiter(v, dtype=np.uint64, count=len(msgs)) for v in values]
    for name in ("src_addr", "dst_addr", "sampler_address"):
        cols.append(np.frombuffer(b"".join(getattr(m, name) for m in msgs), dtype=np.uint8))
    return len(msgs)


def timed(fn, recs, rounds: int, clock=time.perf_counter) -> float:
    rates = []
    for _ in range(rounds):
        started = clock()
        n = fn(recs)
        rates.append(n / max(clock() - started, 1e-9))
    return statistics.median(rates)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--records", type=int, default=100_000)
    args = ap.parse_args()
    recs = records(args.records)
    decode = lambda r: goflow2.decode(r).table.num_rows  # noqa: E731
    assert decode(recs[:1000]) == 1000
    report("goflow2.decode", timed(decode, recs, args.rounds), "rows/s")
    report("goflow2.decode_cpu", timed(decode, recs, args.rounds, time.process_time), "rows/s")
    report("goflow2.decode_upb", timed(decode_upb, recs, args.rounds), "rows/s")


if __name__ == "__main__":
    main()
