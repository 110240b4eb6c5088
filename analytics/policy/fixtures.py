"""Crafted enriched flows from plain dicts, for ``policy test`` files and tests.

A flow is ``{time, src: {addr, tenant, zone, ...}, dst: {...}, src_port, dst_port, proto,
bytes, packets, sampling_rate, type, direction}``; enrichment columns are set directly, as
the pipeline would have set them.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from analytics.policy.model import PROTOCOLS
from netobs.batch import FlowBatch, ip_bytes
from netobs.schema import ENDPOINT_ATTRIBUTES

ATTRS = tuple(a for a, _ in ENDPOINT_ATTRIBUTES)
_NUMERIC = {
    "src_port": "uint16",
    "dst_port": "uint16",
    "proto": "uint8",
    "bytes": "uint64",
    "packets": "uint64",
    "sampling_rate": "uint32",
}
_DEFAULTS: dict[str, Any] = {"bytes": 1000, "packets": 10, "sampling_rate": 1, "proto": "tcp"}


def _ms(t: Any) -> int:
    if isinstance(t, str):
        t = datetime.fromisoformat(t.replace("Z", "+00:00"))
    if isinstance(t, datetime):
        t = t if t.tzinfo else t.replace(tzinfo=UTC)
        return int(t.timestamp() * 1000)
    return int(t)


def _proto(p: Any) -> int:
    return PROTOCOLS[p.lower()] if isinstance(p, str) else int(p)


def flows_batch(flows: Iterable[Mapping[str, Any]]) -> FlowBatch:
    """A FlowBatch of crafted flows (unknown keys raise KeyError naming them)."""
    flows = [dict(_DEFAULTS, **f) for f in flows]
    allowed = {"time", "src", "dst", "type", "direction", "exporter", "path", *_NUMERIC}
    for f in flows:
        extra = set(f) - allowed
        if extra:
            raise KeyError(f"unknown flow keys {sorted(extra)}")
    times = np.array([_ms(f["time"]) for f in flows], dtype="int64")
    cols: dict[str, Any] = {"time_received": times, "flow_start": times, "flow_end": times}
    for name, dtype in _NUMERIC.items():
        values = [_proto(f[name]) if name == "proto" else int(f.get(name, 0)) for f in flows]
        cols[name] = np.array(values, dtype=dtype)
    cols["type"] = np.array([f.get("type", "sflow") for f in flows], dtype=object)
    cols["direction"] = np.array([f.get("direction", "unknown") for f in flows], dtype=object)
    cols["path"] = np.array([f.get("path", "") for f in flows], dtype=object)
    cols["exporter"] = np.array([ip_bytes(f.get("exporter", "192.0.2.1")) for f in flows], dtype="V16")
    for end in ("src", "dst"):
        ends = [f.get(end, {}) for f in flows]
        for e in ends:
            extra = set(e) - {"addr", *ATTRS}
            if extra:
                raise KeyError(f"unknown {end} keys {sorted(extra)}")
        cols[f"{end}_addr"] = np.array([ip_bytes(e.get("addr", "0.0.0.0")) for e in ends], dtype="V16")
        for a in ATTRS:
            cols[f"{end}_{a}"] = np.array([str(e.get(a, "")) for e in ends], dtype=object)
    return FlowBatch(cols)


def flows_table(flows: Iterable[Mapping[str, Any]]) -> pa.Table:
    """Crafted flows as the Arrow table the store inserts."""
    return pa.Table.from_batches([flows_batch(flows).to_arrow()])
