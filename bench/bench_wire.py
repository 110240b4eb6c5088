"""Wire encoding per codec (``transport.wire_compression``): CPU per message and bytes per flow.

Prints ``wire.encode_ms.<codec>.<rows>`` (CPU milliseconds of :func:`netobs.wire.encode` per
message of ``rows`` flows, median of rounds) and ``wire.bytes_per_flow.<codec>.<rows>`` for
messages of 80 flows (what a collector publishes per exporter at a few thousand flows/s) and 800.
The flows are the synthetic pod-network flows of ``bench_store.py``. A message is compressed per
buffer (one per column and kind of buffer), so the codec's fixed cost per buffer dominates small
messages.
"""

from __future__ import annotations

import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _util import report  # noqa: E402
from bench_store import synthetic  # noqa: E402

from netobs import wire  # noqa: E402


def main() -> None:
    quick = "--quick" in sys.argv
    for rows in (80, 800):
        batches = [synthetic(rows, seed=i) for i in range(20 if quick else 200)]
        for codec in wire.COMPRESSIONS:
            wire.set_compression(codec)
            times, size = [], 0
            for _ in range(3 if quick else 7):
                started = time.process_time()
                size = sum(len(wire.encode(rb)) for rb in batches)
                times.append((time.process_time() - started) / len(batches))
            report(f"wire.encode_ms.{codec}.{rows}", statistics.median(times) * 1000, "ms/message")
            report(f"wire.bytes_per_flow.{codec}.{rows}", size / (rows * len(batches)), "bytes/flow")
    wire.set_compression(wire.DEFAULT_COMPRESSION)


if __name__ == "__main__":
    main()
