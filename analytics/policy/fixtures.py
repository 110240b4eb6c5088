"""Crafted enriched flows from plain dicts, for ``policy test`` files and tests.

A flow is ``{time, src: {addr, tenant, zone, ...}, dst: {...}, src_port, dst_port, proto,
bytes, packets, sampling_rate, tos, type, direction, initiator, counted}``; enrichment columns are
set directly, as the pipeline would have set them. The counting model's columns are filled by
the model itself (:class:`netobs.observations.Counter`: the same exporter reporting a flow at
ingress and egress counts it once; roles from flags and ports); a flow may set ``initiator``
(``src``: a request, ``dst``: a reply) or ``counted`` (1/0) to override it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

import numpy as np
import pyarrow as pa

from analytics.policy.model import PROTOCOLS
from netobs.batch import FlowBatch, ip_bytes
from netobs.observations import Counter
from netobs.schema import ENDPOINT_ATTRIBUTES

ATTRS = tuple(a for a, _ in ENDPOINT_ATTRIBUTES)
_NUMERIC = {
    "src_port": "uint16",
    "dst_port": "uint16",
    "proto": "uint8",
    "bytes": "uint64",
    "packets": "uint64",
    "sampling_rate": "uint32",
    "tos": "uint8",
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
    allowed = {
        "time",
        "src",
        "dst",
        "type",
        "direction",
        "exporter",
        "path",
        "initiator",
        "counted",
        *_NUMERIC,
    }
    for f in flows:
        extra = set(f) - allowed
        if extra:
            raise KeyError(f"unknown flow keys {sorted(extra)}")
    times = np.array([_ms(f["time"]) for f in flows], dtype="int64")
    cols: dict[str, Any] = {"time_received": times, "flow_start": times, "flow_end": times}
    cols["event_start"], cols["event_end"] = times, times
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
    """Crafted flows as the Arrow table the store inserts, with the counting model applied."""
    flows = list(flows)
    table = Counter().apply(pa.Table.from_batches([flows_batch(flows).to_arrow()]), dictionary=False)
    initiators = [f.get("initiator") for f in flows]
    if any(i is not None for i in initiators):
        bad = sorted({str(i) for i in initiators if i not in (None, "src", "dst", "")})
        if bad:
            raise KeyError(f"initiator must be src, dst or '' (got {bad})")
        have = table.column("initiator").to_pylist()
        table = _replace(
            table,
            "initiator",
            pa.array([h if i is None else i for h, i in zip(have, initiators, strict=True)]),
        )
    counted = [f.get("counted") for f in flows]
    if any(c is not None for c in counted):
        have = table.column("counted").to_pylist()
        values = [h if c is None else int(bool(c)) for h, c in zip(have, counted, strict=True)]
        table = _replace(table, "counted", pa.array(values, pa.uint8()))
    return table


def _replace(table: pa.Table, name: str, values: pa.Array) -> pa.Table:
    i = table.schema.get_field_index(name)
    return table.set_column(i, pa.field(name, values.type, nullable=False), values)
