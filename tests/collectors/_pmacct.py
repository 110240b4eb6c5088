"""pmacct as a second independent oracle: ``sfacctd`` / ``nfacctd`` read a capture of export datagrams
(``pcap_savefile``) and print per-5-tuple packet and byte sums, which the tests compare with netobs's.

pmacct 1.7.7 aggregates by ``src_host,dst_host,src_port,dst_port,proto`` into a CSV file (print plugin), written
when the plugin is stopped after the file was read. Scaling is explicit: ``renormalize=True`` sets ``sfacctd_renormalize`` /
``nfacctd_renormalize``, which multiply each sample or record by the sampling rate the export carries (sFlow:
the flow sample's rate; NetFlow / IPFIX: sampling options data); False leaves counts as exported. pmacct drops
records without IP addresses (ARP) and shows ICMP with ports 0, so keys follow :func:`key` and netobs's sums
are taken over IP records only.
"""

from __future__ import annotations

import csv
import ipaddress
import os
import shutil
import signal
import subprocess
import time
from collections.abc import Iterable, Mapping
from pathlib import Path

from collectors.jsonl import iter_records
from tests.collectors._tshark import _key as key

DAEMONS = {"sflow": "sfacctd", "nfacct": "nfacctd"}  # nfacctd: NetFlow v5/v9, IPFIX (and PSAMP)
TIMEOUT = 60.0
SETTLE = 1.5
#: The core has read the file and flushed it to the plugin; the plugin has set up its cache.
READY = ("finished reading PCAP capture file", "cache entries=")


def missing() -> str | None:
    """Why pmacct cannot run here (None when it can)."""
    absent = [d for d in DAEMONS.values() if shutil.which(d) is None]
    return f"{', '.join(absent)} not installed (apt-get install pmacct)" if absent else None


def _config(pcap: Path, daemon: str, out: Path, renormalize: bool) -> str:
    lines = [
        "daemonize: false",
        f"pcap_savefile: {pcap.resolve()}",
        # Without _wait the core exits at the end of the file, and under load its plugin is told to stop before
        # it has read the pipe (an empty result). With it, the core flushes the pipe, logs it and waits;
        # sums_many() then stops the plugin itself. (Signalling the core instead would flush its last buffer a
        # second time: those rows would be doubled.)
        "pcap_savefile_wait: true",
        "aggregate: src_host,dst_host,src_port,dst_port,proto",
        f"{daemon}_renormalize: {'true' if renormalize else 'false'}",
        "plugins: print",
        "print_output: csv",
        "print_num_protos: true",
        f"print_output_file: {out}",
        # One purge, at exit. With periodic ones the file holds only the last interval's rows.
        "print_refresh_time: 3600",
        "print_cache_entries: 4093",  # a small cache (the default takes 66 MB) starts fast
    ]
    return "\n".join(lines) + "\n"


def sums_many(jobs: Mapping[str, tuple[Path, str, bool]], work: Path) -> dict[str, dict]:
    """Run one daemon per job at once; once each has read its file, stop its plugin (which writes the CSV).

    jobs: name → (capture, "sflow" or "nfacct", renormalize). Returns name → :func:`parse` of its output.
    """
    procs: dict[str, subprocess.Popen] = {}
    logs = {name: work / f"pmacct-{name}.log" for name in jobs}
    outs = {name: work / f"pmacct-{name}.csv" for name in jobs}
    try:
        for name, (pcap, kind, renormalize) in jobs.items():
            conf = work / f"pmacct-{name}.conf"
            conf.write_text(_config(pcap, DAEMONS[kind], outs[name], renormalize))
            outs[name].unlink(missing_ok=True)
            with open(logs[name], "wb") as log:
                procs[name] = subprocess.Popen(
                    [DAEMONS[kind], "-f", str(conf)], stdin=subprocess.DEVNULL, stdout=log, stderr=log
                )
        deadline = time.monotonic() + TIMEOUT
        for name, proc in procs.items():
            while not all(line in logs[name].read_text(errors="replace") for line in READY):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"{name}: pmacct did not read the capture:\n{_tail(logs[name])}")
                time.sleep(0.1)
        time.sleep(SETTLE)  # the plugins read what the core flushed to them (a few KB through a pipe)
        for proc in procs.values():
            for child in _children(proc.pid):  # the print plugin: purges its cache to the CSV and exits
                os.kill(child, signal.SIGINT)
        for name, proc in procs.items():
            if proc.wait(TIMEOUT) != 0 or not outs[name].exists():  # the core exits after its plugin
                raise RuntimeError(f"{name}: pmacct exited {proc.returncode}:\n{_tail(logs[name])}")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    return {name: parse(out) for name, out in outs.items()}


def _children(pid: int) -> list[int]:
    text = Path(f"/proc/{pid}/task/{pid}/children").read_text()
    return [int(c) for c in text.split()]


def _tail(log: Path) -> str:
    return "\n".join(log.read_text(errors="replace").splitlines()[-15:])


def sums(pcap: Path, kind: str, work: Path, renormalize: bool = False) -> dict:
    """5-tuple → [packets, bytes] as pmacct decodes ``pcap``."""
    return sums_many({"one": (pcap, kind, renormalize)}, work)["one"]


def parse(path: Path) -> dict:
    """pmacct's print CSV → 5-tuple → [packets, bytes] (a key printed twice is summed)."""
    out: dict = {}
    with open(path, newline="") as f:
        for row in csv.DictReader(f):
            k = key(
                ipaddress.ip_address(row["SRC_IP"]).compressed,
                ipaddress.ip_address(row["DST_IP"]).compressed,
                int(row["PROTOCOL"]),
                int(row["SRC_PORT"]),
                int(row["DST_PORT"]),
            )
            s = out.setdefault(k, [0, 0])
            s[0] += int(row["PACKETS"])
            s[1] += int(row["BYTES"])
    return out


def netobs_sums(records: Iterable[dict], scale: bool = False) -> dict:
    """netobs's flow records → 5-tuple → [packets, bytes], like pmacct's: IP records only; with ``scale``,
    counts times the decoded sampling rate (as queries do: an unknown rate, 0, counts as 1)."""
    out: dict = {}
    for r in records:
        if r["kind"] != "flow" or r["src_addr"] == r["dst_addr"] == "::":
            continue
        k = key(r["src_addr"], r["dst_addr"], r["proto"], r["src_port"], r["dst_port"])
        rate = max(r["sampling_rate"], 1) if scale else 1
        s = out.setdefault(k, [0, 0])
        s[0] += r["packets"] * rate
        s[1] += r["bytes"] * rate
    return out


def netobs_capture_sums(pcap: Path, scale: bool = False, decoder=None) -> dict:
    """:func:`netobs_sums` of a capture decoded by netobs."""
    return netobs_sums(iter_records(pcap, decoder), scale)


def compare(ours: Mapping, theirs: Mapping, bytes_offset=None) -> list[str]:
    """Every difference between two 5-tuple → [packets, bytes] maps, one line each (empty: identical).

    bytes_offset(key, packets) → expected ours-minus-theirs bytes (PSAMP: netobs counts frame bytes, pmacct IP
    bytes); None: bytes must be equal.
    """
    diffs = []
    for k in sorted(set(ours) | set(theirs), key=str):
        o, t = ours.get(k), theirs.get(k)
        if o is None or t is None:
            diffs.append(f"{k}: netobs {o}, oracle {t}")
            continue
        extra = 0 if bytes_offset is None else bytes_offset(k, t[0])
        if o[0] != t[0] or o[1] - t[1] != extra:
            diffs.append(f"{k}: netobs {o}, oracle {t}" + (f" (+{extra} bytes expected)" if extra else ""))
    return diffs
