"""goflow2, the peer collector, on the same replays and datagram sets (bench/bench_collector.py).

goflow2 v2.2.6 runs as a process (``-format=bin`` FlowMessages into a file that is then
counted; ``GOMAXPROCS=1``, as the collector's decoding is one core too). Its decoders alone
run in ``bench/goflow2``, a small Go program built here with the project's module cache.
"""

from __future__ import annotations

import json
import os
import shutil
import socket
import struct
import subprocess
import time
import urllib.request
from pathlib import Path

from _replay import Run, Sender, cpu_seconds, peak_rss_mb

HERE = Path(__file__).resolve().parent


def note(text: str) -> None:
    print(f"bench: note {text}", flush=True)


def _last_line(text: str) -> str:
    """The last non-empty line of a tool's error output (a note is one line)."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    return lines[-1][-300:] if lines else "(no output)"


def free_port(kind: int) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def udp_drops(port: int) -> int:
    """Kernel drops of the UDP socket bound to 127.0.0.1:port (/proc/net/udp)."""
    local = f"0100007F:{port:04X}"
    for line in Path("/proc/net/udp").read_text().splitlines()[1:]:
        fields = line.split()
        if fields[1] == local:
            return int(fields[12])
    return 0


def count_flow_messages(path: Path) -> int:
    """FlowMessages in goflow2's -format=bin output: varint length, message, newline."""
    data, off, n = path.read_bytes(), 0, 0
    while off < len(data):
        size = shift = 0
        while True:
            b = data[off]
            off += 1
            size |= (b & 0x7F) << shift
            shift += 7
            if b < 0x80:
                break
        off += size + 1
        n += 1
    return n


def run_goflow2(
    binary: str, replay: Path, seconds: float, workdir: Path, rate: float = 0
) -> tuple[Run, float]:
    """One goflow2 run (``rate`` datagrams/s, 0: the maximum); returns it and its peak RSS (MB)."""
    port, http = free_port(socket.SOCK_DGRAM), free_port(socket.SOCK_STREAM)
    out = workdir / "goflow2.bin"
    out.unlink(missing_ok=True)
    cmd = [binary, f"-listen=flow://127.0.0.1:{port}", "-format=bin", "-transport=file"]
    cmd += [f"-transport.file={out}", f"-addr=127.0.0.1:{http}", "-loglevel=error"]
    env = dict(os.environ, GOMAXPROCS="1")
    log = open(workdir / "goflow2.log", "wb")  # not a pipe: nobody reads it while it runs
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=log)
    try:
        _wait_healthy(proc, http, workdir / "goflow2.log")
        sender = Sender(replay, port, seconds, rate)
        cpu = cpu_seconds(proc.pid)
        started = sender.go()
        offered = sender.result()
        size, last, stable = -1, time.perf_counter(), time.monotonic()
        while time.monotonic() - stable < 0.5:  # until the output stops growing
            now = out.stat().st_size if out.exists() else 0
            if now != size:
                size, last, stable = now, time.perf_counter(), time.monotonic()
            time.sleep(0.01)
        queue_drops = _metric_sum(http, "goflow2_flow_dropped_packets_total")
        drops = udp_drops(port) + int(queue_drops)
        rss = peak_rss_mb(proc.pid)
        cpu = cpu_seconds(proc.pid) - cpu
    finally:
        proc.terminate()
        proc.wait(10)
        log.close()
    return Run(count_flow_messages(out), last - started, drops, offered, cpu), rss


def _wait_healthy(proc: subprocess.Popen, http: int, log: Path) -> None:
    deadline = time.monotonic() + 20
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit(f"goflow2 exited: {log.read_text(errors='replace')[-500:]}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/__health", timeout=1) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        time.sleep(0.05)
    raise SystemExit("goflow2 did not become healthy")


def _metric_sum(http: int, name: str) -> float:
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/metrics", timeout=5) as r:
        text = r.read().decode()
    return sum(float(line.rsplit(" ", 1)[1]) for line in text.splitlines() if line.startswith(name))


# --- decode only: netobs's Decoder against goflow2's decoders ---------------------------------


def build_goflow2_decoder(workdir: Path) -> str | None:
    """Build bench/goflow2 (goflow2's decoder packages) with the project's Go module cache."""
    go = shutil.which("go") or (
        "/usr/local/go/bin/go" if os.access("/usr/local/go/bin/go", os.X_OK) else None
    )
    if go is None:
        note("no Go toolchain: the *.decode.vs_goflow2 figures are skipped")
        return None
    cache = Path(os.environ.get("NETOBS_CACHE", Path.home() / ".cache" / "netobs"))
    env = dict(os.environ, GOMODCACHE=str(cache / "go" / "mod"), GOFLAGS="-mod=readonly", GOTOOLCHAIN="local")
    env["GOPROXY"] = "off"  # the module cache scripts/install-services.sh filled; no download here
    binary = workdir / "goflow2-decode"
    proc = subprocess.run(
        [go, "build", "-o", str(binary), "."], cwd=HERE / "goflow2", env=env, capture_output=True, text=True
    )
    if proc.returncode:
        note(f"building bench/goflow2 failed, *.decode.vs_goflow2 skipped: {_last_line(proc.stderr)}")
        return None
    return str(binary)


def decode_rates(binary: str, name: str, datagrams: list[bytes], rounds: int, workdir: Path) -> dict | None:
    """goflow2's decoding of ``datagrams`` on one core (see bench/goflow2/main.go); None on failure."""
    path = workdir / f"{name}.datagrams"
    path.write_bytes(b"".join(struct.pack(">I", len(d)) + d for d in datagrams))
    proc = subprocess.run(
        [binary, f"-rounds={rounds}", str(path)],
        env=dict(os.environ, GOMAXPROCS="1"),
        capture_output=True,
        text=True,
        timeout=600,
    )
    if proc.returncode:
        note(f"goflow2 decoding of {name} failed: {_last_line(proc.stderr)}")
        return None
    return json.loads(proc.stdout)
