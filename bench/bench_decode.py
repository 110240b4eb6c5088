"""Decoder throughput on synthetic but realistic datagrams (a script, not a test).

    python bench/bench_decode.py [--rounds 5] [--datagrams 1000]

Prints ``bench: <name> <value> <unit>`` lines, each the median of several rounds:
``ipfix.decode`` (30 records of an OVS-like all-fixed template per datagram, fed with
``Decoder.feed`` and flushed once per 64 datagrams as the collector service does; the
native decoder of collectors/_native/ipfix.c), ``ipfix.decode_cpu`` (the same, in the
process's CPU time rather than wall time: single-core cost on a shared machine),
``ipfix.decode_python`` (the same through the pure-Python reference, ``NETOBS_NATIVE=0``),
``ipfix.decode_single`` (one ``Decoder.decode``, feed and flush, per datagram),
``ipfix.decode_varlen`` (like ``ipfix.decode`` with OVS 3.x's variable-length interface
names), ``ipfix.decode_many`` (OVS's real pattern of one record per data set, flushed
per 64 datagrams), and ``sflow.decode`` (9 flow samples of 128-byte headers per
datagram, a mix of plain, VLAN, Geneve and VXLAN traffic, fed per datagram and flushed
once per 64 as the collector service drains its socket; ``sflow.decode_cpu`` the same in
CPU time; ``sflow.decode_single`` is one
``Decoder.decode`` per datagram, ``sflow.decode_python`` the pure-Python decoder that
``NETOBS_NATIVE=0`` forces, flushed like ``sflow.decode``), ``netflow9.decode`` (30 records
of a softflowd-like template per packet, flushed per 64 packets; ``netflow9.decode_python``
the same in pure Python) and ``netflow5.decode`` (30 records per datagram,
the v5 maximum). Each datagram goes through
``Decoder.decode`` as the collector service does, unless the name says ``_many``.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from _util import report  # noqa: E402  (bench/_util.py, beside this script)

from collectors.decoder import Decoder  # noqa: E402
from tests.collectors import _builders as b  # noqa: E402
from tests.collectors import _nf_builders as nf  # noqa: E402

EXPORTER = "10.0.0.1"


def ipfix_datagrams(n: int, interface_names: bool, per_set: int = 30) -> tuple[list[bytes], int]:
    """n messages of 30 records; returns (messages incl. the template one, records).

    With ``interface_names`` it is OVS 3.x's tunnel template (names and tunnelKey are
    variable-length); without, the all-fixed non-tunnel template of older OVS.
    """
    fields = b.ovs_fields(egress=True, tunnel=interface_names, interface_names=interface_names)
    records = [b.record(fields, b.ovs_values(i, egress=True)) for i in range(30)]
    template = b.ipfix_message([b.template_set({300: fields})])
    sets = [b.data_set(300, records[i : i + per_set]) for i in range(0, 30, per_set)]
    data = [b.ipfix_message(sets, seq=30 * i) for i in range(n)]
    return [template] + data, 30 * n


V9_FIELDS = [
    (8, 4),
    (12, 4),
    (152, 8),
    (153, 8),
    (1, 4),
    (2, 4),
    (10, 4),
    (14, 4),
    (61, 1),
    (7, 2),
    (11, 2),
    (4, 1),
    (6, 1),
    (60, 1),
    (5, 1),
]


def netflow9_datagrams(n: int) -> tuple[list[bytes], int]:
    records = [
        b.record(V9_FIELDS, {8: "10.0.0.1", 12: "10.0.0.2", 7: 40000 + i, 11: 443, 2: 3}) for i in range(30)
    ]
    template = nf.v9_packet([nf.v9_template_flowset({1024: V9_FIELDS})])
    return [template] + [
        nf.v9_packet([nf.v9_data_flowset(1024, records)], seq=i + 1) for i in range(n)
    ], 30 * n


def netflow5_datagrams(n: int) -> tuple[list[bytes], int]:
    records = [nf.v5_record("10.0.0.1", "10.0.0.2", 40000 + i, 443, packets=3, octets=300) for i in range(30)]
    return [nf.v5_packet(records, seq=30 * i) for i in range(n)], 30 * n


def sflow_datagrams(n: int) -> tuple[list[bytes], int]:
    frames = [b.eth(b.tcp4(sport=40000 + i)) for i in range(3)] + [
        b.eth(b.udp4(), vlans=(100,)),
        b.eth(b.tcp6()),
        b.eth(b.geneve(b.eth(b.tcp4(flags="A")), options=b.ovn_geneve_option())),
        b.eth(b.geneve(b.eth(b.udp4()), options=b.ovn_geneve_option())),
        b.eth(b.vxlan(b.eth(b.tcp4()))),
        b.eth(b.icmp4()),
    ]
    frames = [f + b"\x00" * 1400 for f in frames]  # full-size frames, header cut at 128
    records = [[b.switch_record(), b.raw_header_record(f)] for f in frames]

    def samples(d: int) -> list[bytes]:  # sample numbers run on per data source, as agents send them
        return [b.flow_sample(r, rate=1024, seq=9 * d + i + 1) for i, r in enumerate(records)]

    return [b.sflow_datagram(samples(d), seq=d + 1) for d in range(n)], 9 * n


def python_sflow(run):
    """``run`` with the decoders built as ``NETOBS_NATIVE=0`` builds them (the pure-Python sFlow)."""

    def forced(datagrams: list[bytes]) -> tuple[float, int]:
        saved = os.environ.get("NETOBS_NATIVE")
        os.environ["NETOBS_NATIVE"] = "0"
        try:
            return run(datagrams)
        finally:
            if saved is None:
                del os.environ["NETOBS_NATIVE"]
            else:
                os.environ["NETOBS_NATIVE"] = saved

    return forced


def ipfix_python(run):
    """``run`` with IPFIX and NetFlow v9 decoded by the pure-Python reference (``NETOBS_NATIVE=0``)."""

    def forced(datagrams: list[bytes]) -> tuple[float, int]:
        saved = os.environ.get("NETOBS_NATIVE")
        os.environ["NETOBS_NATIVE"] = "0"
        try:
            return run(datagrams)
        finally:
            os.environ.pop("NETOBS_NATIVE")
            if saved is not None:
                os.environ["NETOBS_NATIVE"] = saved

    return forced


def batched_cpu(datagrams: list[bytes], batch: int = 64) -> tuple[float, int]:
    """:func:`batched` timed in the process's CPU time (other load on the machine excluded)."""
    decoder = Decoder()
    flows = 0
    start = time.process_time()
    for i in range(0, len(datagrams), batch):
        out = decoder.decode_many((p, EXPORTER, 1_700_000_000_000) for p in datagrams[i : i + batch])
        flows += len(out.flows)
    return time.process_time() - start, flows


def per_datagram(datagrams: list[bytes]) -> tuple[float, int]:
    decoder = Decoder()
    flows = 0
    start = time.perf_counter()
    for payload in datagrams:
        flows += len(decoder.decode(payload, EXPORTER, 1_700_000_000_000).flows)
    return time.perf_counter() - start, flows


def batched(datagrams: list[bytes], batch: int = 64) -> tuple[float, int]:
    decoder = Decoder()
    flows = 0
    start = time.perf_counter()
    for i in range(0, len(datagrams), batch):
        out = decoder.decode_many((p, EXPORTER, 1_700_000_000_000) for p in datagrams[i : i + batch])
        flows += len(out.flows)
    return time.perf_counter() - start, flows


def bench(name: str, unit: str, run, datagrams: list[bytes], count: int, rounds: int) -> None:
    rates = []
    for _ in range(rounds):
        seconds, flows = run(datagrams)
        if flows != count:  # a decoder that fails fast must not look fast
            raise SystemExit(f"{name}: decoded {flows} records, expected {count}")
        rates.append(count / seconds)
    report(name, statistics.median(rates), unit)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--datagrams", type=int, default=1000)
    args = ap.parse_args()
    n, rounds = args.datagrams, args.rounds
    ovs = ipfix_datagrams(n, interface_names=False)
    bench("ipfix.decode", "records/s", batched, *ovs, rounds)
    bench("ipfix.decode_cpu", "records/s", batched_cpu, *ovs, rounds)
    bench("ipfix.decode_python", "records/s", ipfix_python(batched), *ovs, rounds)
    bench("ipfix.decode_single", "records/s", per_datagram, *ovs, rounds)
    bench("ipfix.decode_varlen", "records/s", batched, *ipfix_datagrams(n, interface_names=True), rounds)
    bench(
        "ipfix.decode_many",
        "records/s",
        batched,
        *ipfix_datagrams(n, interface_names=True, per_set=1),
        rounds,
    )
    sflow = sflow_datagrams(n)
    bench("sflow.decode", "samples/s", batched, *sflow, rounds)
    bench("sflow.decode_cpu", "samples/s", batched_cpu, *sflow, rounds)
    bench("sflow.decode_single", "samples/s", per_datagram, *sflow, rounds)
    bench("sflow.decode_python", "samples/s", python_sflow(batched), *sflow, rounds)
    v9 = netflow9_datagrams(n)
    bench("netflow9.decode", "records/s", batched, *v9, rounds)
    bench("netflow9.decode_python", "records/s", ipfix_python(batched), *v9, rounds)
    bench("netflow5.decode", "records/s", per_datagram, *netflow5_datagrams(n), rounds)


if __name__ == "__main__":
    main()
