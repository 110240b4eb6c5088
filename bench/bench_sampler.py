"""The pod sampling agent: packets captured and summarised per CPU-second, CPU at a node's rate, the drop point.

Traffic: a separate process (its CPU is not counted) sends UDP on loopback, one DNS query in every
``DNS_EVERY`` datagrams (an L7 candidate, dissected by tshark) and the rest bulk datagrams of 200
bytes; loopback shows each datagram twice (out and in), so every figure counts frames. The agent
runs in this process with one static interface (``lo``); CPU is this process's user + system time
(getrusage), i.e. the capture thread, the flush thread and the tshark runs it waits on (children).

Figures:
- ``sampler.frames_per_cpu_s.1in1`` / ``.1in100``: frames captured (walked, sampled, candidates
  dissected, rows published) per CPU-second, generator unpaced;
- ``sampler.cpu_percent_at_20kpps``: agent CPU (% of one core) at 20k frames/s (a busy node's pods);
- ``sampler.drop_point_fps``: the highest offered frame rate with no kernel drop and no shed row,
  stepping the generator up (``frames_offered``/``kernel_drops`` printed per step).
Run as root (AF_PACKET). ``nice`` it on a shared machine.
"""

from __future__ import annotations

import argparse
import os
import resource
import subprocess
import sys
import time

from _util import report

from collectors.config import PodInterfaceConfig, SamplerConfig
from collectors.sampler import SampleAgent

DNS_EVERY = 50
GEN = r"""
import socket, sys, time
port, rate, seconds, every = (int(float(x)) for x in sys.argv[1:5])
q = bytes.fromhex("abcd01000001000000000000") + b"\x03api\x04bank\x07example\x00\x00\x01\x00\x01"
bulk = b"x" * 200
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_SNDBUF, 1 << 22)
end = time.perf_counter() + seconds
sent, start = 0, time.perf_counter()
while True:
    now = time.perf_counter()
    if now >= end:
        break
    if rate and sent > (now - start) * rate:
        time.sleep(0.001)
        continue
    for _ in range(64):
        if sent % every == 0:
            s.sendto(q, ("127.0.0.1", 53))
        else:
            s.sendto(bulk, ("127.0.0.1", port))
        sent += 1
print(sent)
"""


class _Producer:
    def __init__(self) -> None:
        self.rows = 0

    def send(self, rb, key) -> None:  # type: ignore[no-untyped-def]
        self.rows += rb.num_rows

    def flush(self, timeout_s: float = 30.0) -> None:
        pass


def _cpu() -> float:
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


def run(rate_1_in: int, offered_pps: int, seconds: float) -> dict[str, float]:
    port = 40000 + os.getpid() % 20000
    cfg = SamplerConfig(
        follow_ovs=False,
        interfaces=(PodInterfaceConfig(ifname="lo", pod="bench"),),
        filter=f"udp and (port 53 or port {port})",
        sampling_rate=rate_1_in,
        max_samples_per_s=0,
        max_l7_per_s=0,
        flush_interval_s=1.0,
        ring_blocks=64,
    )
    agent = SampleAgent(cfg, _Producer())
    agent.start()
    time.sleep(0.3)
    cpu0, t0 = _cpu(), time.perf_counter()
    gen = subprocess.run(
        [sys.executable, "-c", GEN, str(port), str(offered_pps), str(seconds), str(DNS_EVERY)],
        capture_output=True, text=True, check=True,
    )  # fmt: skip
    agent.stop()
    cpu, wall = _cpu() - cpu0, time.perf_counter() - t0
    c = agent.counts
    return {
        "frames": c["seen"],
        "offered_fps": 2 * int(gen.stdout) / seconds,
        "cpu_s": cpu,
        "wall_s": wall,
        "drops": c["kernel_drops"] + c["shed"],
        "l7": c["l7"],
        "rows": sum(agent.published.values()),
    }


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--seconds", type=float, default=5.0)
    args = p.parse_args()
    for n in (1, 100):
        r = run(n, 0, args.seconds)
        print(f"# 1:{n}: {r}", file=sys.stderr)
        report(f"sampler.frames_per_cpu_s.1in{n}", r["frames"] / r["cpu_s"], "frames/cpu-s")
    r = run(100, 10_000, args.seconds)  # 10k datagrams/s = 20k frames/s on loopback
    print(f"# paced: {r}", file=sys.stderr)
    report("sampler.cpu_percent_at_20kfps", 100 * r["cpu_s"] / r["wall_s"], "%")
    best = 0.0
    for pps in (25_000, 50_000, 100_000, 0):
        r = run(100, pps, args.seconds)
        print(
            f"# step {pps or 'unpaced'}: offered {r['offered_fps']:.0f} fps, drops {r['drops']}",
            file=sys.stderr,
        )
        if r["drops"]:
            break
        best = r["offered_fps"]
    report("sampler.drop_point_fps", best, "frames/s (offered, no drop)")


if __name__ == "__main__":
    main()
