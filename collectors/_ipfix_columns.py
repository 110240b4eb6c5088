"""Vectorised mapping from decoded IPFIX records to flow columns.

Every function takes a :class:`Records` (one template's records, already split into
numpy fields) plus per-record metadata arrays (export time, sampling state...) and
returns whole columns: no Python work per record. Each column is read straight into its
schema dtype (one numpy operation) where the template has it; absent ones are left to
the caller to zero-fill. The native decoder's layouts are compiled here too
(:func:`native_layout`), from the same element preferences, so both paths read the same
elements; its C code mirrors the conversions below (tests/collectors/test_native_ipfix.py).
"""

from __future__ import annotations

import numpy as np

from collectors import _ipfix_fields as F
from collectors._columns import DIRECTION_NAMES, complete, constant_text, directions, text
from collectors._ipfix_fields import Records, Template
from collectors._psamp import packet_columns

NTP_EPOCH_OFFSET = 2_208_988_800  # seconds from 1900-01-01 to 1970-01-01
#: Tunnel type codes: OVS's tunnelType (0-7), then those of an outer header (see _outer_tunnel).
_TUNNEL_NAMES = np.array(
    ["", "vxlan", "gre", "lisp", "stt", "", "", "geneve", "ipip", "udp", "ip"], dtype=object
)
_U8, _U16, _U32, _U64, _I64 = np.uint8, np.uint16, np.uint32, np.uint64, np.int64

#: column → (dtype, IEs in order of preference): plain copies of one element.
_DIRECT = {
    "packets": (_U64, (F.PACKETS, F.PACKETS_TOTAL)),
    "bytes": (_U64, (F.OCTETS, F.OCTETS_TOTAL, F.L2_OCTETS, F.L2_OCTETS_TOTAL)),
    "proto": (_U8, (F.PROTO,)),
    "src_port": (_U16, (F.SRC_PORT,)),
    "tcp_flags": (_U16, (F.TCP_FLAGS,)),
    "tos": (_U8, (F.TOS,)),
    "in_if": (_U32, (F.IN_IF,)),
    "out_if": (_U32, (F.OUT_IF,)),
    "src_mac": (_U64, (F.SRC_MAC, F.POST_SRC_MAC)),
    "dst_mac": (_U64, (F.DST_MAC, F.POST_DST_MAC)),
    "etype": (_U16, (F.ETYPE,)),
    "src_as": (_U32, (F.SRC_AS,)),
    "dst_as": (_U32, (F.DST_AS,)),
    "post_nat_src_port": (_U16, (F.POST_NAPT_SRC_PORT,)),
    "post_nat_dst_port": (_U16, (F.POST_NAPT_DST_PORT,)),
}


_TIME_MODES = {  # time element → conversion code of the native decoder (see flow_time)
    **dict.fromkeys((F.START_MS, F.END_MS, F.OBS_MS), "T_MS"),
    **dict.fromkeys((F.START_S, F.END_S, F.OBS_S), "T_S"),
    **dict.fromkeys((F.START_US, F.END_US, F.START_NS, F.END_NS, F.OBS_US, F.OBS_NS), "T_NTP"),
    **dict.fromkeys((F.START_DELTA_US, F.END_DELTA_US), "T_DELTA_US"),
    **dict.fromkeys((F.START_UPTIME, F.END_UPTIME), "T_UPTIME"),
}
_ADDRESS_ROLES = (
    ("src_v4", F.SRC_V4, 4),
    ("src_v6", F.SRC_V6, 16),
    ("dst_v4", F.DST_V4, 4),
    ("dst_v6", F.DST_V6, 16),
    ("tunnel_src", F.TUNNEL_SRC_V4, 4),
    ("tunnel_dst", F.TUNNEL_DST_V4, 4),
    ("next_hop_v4", F.NEXT_HOP_V4, 4),
    ("next_hop_v6", F.NEXT_HOP_V6, 16),
    ("bgp_next_hop_v4", F.BGP_NEXT_HOP_V4, 4),
    ("bgp_next_hop_v6", F.BGP_NEXT_HOP_V6, 16),
    ("outer_src_v4", F.OUTER_SRC_V4, 4),
    ("outer_src_v6", F.OUTER_SRC_V6, 16),
    ("outer_dst_v4", F.OUTER_DST_V4, 4),
    ("outer_dst_v6", F.OUTER_DST_V6, 16),
    ("post_nat_src_v4", F.POST_NAT_SRC_V4, 4),
    ("post_nat_src_v6", F.POST_NAT_SRC_V6, 16),
    ("post_nat_dst_v4", F.POST_NAT_DST_V4, 4),
    ("post_nat_dst_v6", F.POST_NAT_DST_V6, 16),
)
#: next_hop: (IPv4, IPv6) element pairs in order of preference, per record (see _route).
_NEXT_HOPS = ((F.NEXT_HOP_V4, F.NEXT_HOP_V6), (F.BGP_NEXT_HOP_V4, F.BGP_NEXT_HOP_V6))
#: post_nat_src_addr / post_nat_dst_addr: the (IPv4, IPv6) elements of each (see _post_nat).
_POST_NAT = (
    ("post_nat_src_addr", F.POST_NAT_SRC_V4, F.POST_NAT_SRC_V6),
    ("post_nat_dst_addr", F.POST_NAT_DST_V4, F.POST_NAT_DST_V6),
)
#: src_mask / dst_mask: (IPv4 prefix length, IPv6 prefix length) elements.
_MASKS = (("src_mask", F.SRC_MASK_V4, F.SRC_MASK_V6), ("dst_mask", F.DST_MASK_V4, F.DST_MASK_V6))


def flow_columns(r: Records, meta: dict[str, np.ndarray], srv6: bool = False) -> dict[str, np.ndarray]:
    """The flow columns the records of one template carry (plus the metadata ones); ``srv6``:
    open SRv6 packets in PSAMP packet sections."""
    cols = {
        "time_received": meta["time_received"],
        "exporter": meta["exporter"],
        "observation_domain": meta["observation_domain"],
        "flow_start": flow_time(r, meta, start=True),
        "flow_end": flow_time(r, meta, start=False),
        "sampling_rate": sampling_rate(r, meta["sampling_rate"]),
    }
    for name, (dtype, keys) in _DIRECT.items():
        values = r.first(*keys, dtype=dtype)
        if values is not None:
            cols[name] = values
    biflow_direction = r.first(F.BIFLOW_DIRECTION, dtype=_U8)
    if biflow_direction is not None:
        cols["biflow_direction"] = biflow_direction
    if r.template.biflow:
        cols["biflow"] = np.ones(r.n, _U8)
    direction = r.first(F.DIRECTION, dtype=_U8)
    cols["direction"] = directions(direction if direction is not None else np.full(r.n, 2, _U8))
    vlan = r.first(F.VLAN, F.DOT1Q_VLAN, dtype=_U16)
    if vlan is not None:
        cols["vlan"] = vlan & _U16(0x0FFF)
    if "etype" not in cols:
        cols["etype"] = _etype(r)
    _addresses(r, cols)
    _icmp(r, cols)
    _tunnel(r, cols)
    _route(r, cols)
    _post_nat(r, cols)
    if r.template.section is not None:
        packet_columns(r, cols, srv6)
    return cols


#: Time elements in order of preference, for flow_start and flow_end.
_TIMES = tuple(
    (
        (F.START_MS, F.END_MS)[k],
        (F.START_S, F.END_S)[k],
        (F.START_US, F.END_US)[k],
        (F.START_NS, F.END_NS)[k],
        (F.START_DELTA_US, F.END_DELTA_US)[k],
        (F.START_UPTIME, F.END_UPTIME)[k],
        F.OBS_MS,  # PSAMP packet reports: the observation time is both ends
        F.OBS_US,
        F.OBS_NS,
        F.OBS_S,
    )
    for k in (0, 1)
)


def flow_time(r: Records, meta: dict[str, np.ndarray], start: bool) -> np.ndarray:
    """Flow start or end in ms since the epoch, from the most precise element present.

    Falls back to the export time when the template carries no time at all, and for
    sysUpTime-relative times (IE 21/22) when systemInitTimeMilliseconds is unknown.
    """
    key = r.template.choose(_TIMES[0 if start else 1])
    if key is None:
        return meta["export_s"] * 1000
    if key in (F.START_MS, F.END_MS, F.OBS_MS):
        return r.uint(key, _I64)
    if key in (F.START_S, F.END_S, F.OBS_S):
        return r.uint(key, _I64) * 1000
    if key in (F.START_US, F.END_US, F.START_NS, F.END_NS, F.OBS_US, F.OBS_NS):
        return ntp_to_ms(r.uint(key))
    if key in (F.START_DELTA_US, F.END_DELTA_US):
        # RFC 5102 §5.9: microseconds *before* the export time of the message.
        return (meta["export_s"] * 1_000_000 - r.uint(key, _I64)) // 1000
    init = r.uint(F.SYSTEM_INIT_MS, _I64) if r.has(F.SYSTEM_INIT_MS) else meta["system_init"]
    return np.where(init >= 0, init + r.uint(key, _I64), meta["export_s"] * 1000)


def ntp_to_ms(v: np.ndarray) -> np.ndarray:
    """dateTimeMicro/Nanoseconds (NTP 64-bit format, RFC 7011 §6.1.9) to Unix ms."""
    seconds = (v >> _U64(32)).astype(_I64) - NTP_EPOCH_OFFSET
    frac_ms = ((v & _U64(0xFFFFFFFF)) * _U64(1000)) >> _U64(32)
    return seconds * 1000 + frac_ms.astype(_I64)


def sampling_rate(r: Records, state: np.ndarray) -> np.ndarray:
    """1-in-N from sampling elements of the record itself, else from options data."""
    rate = sampling_from(r)
    if rate is None:
        return state
    return np.where((rate > 0) & (rate <= 0xFFFFFFFF), rate, state).astype(_U32)


def sampler_rates(r: Records, state: np.ndarray, tables: tuple, counts: list[int]) -> np.ndarray:
    """The rate options data gave each record's sampler (its FLOW_SAMPLER_ID / samplerId /
    selectorId), else ``state`` (the domain's last rate). ``tables`` holds, per queued data
    set, the domain's (id, rate) pairs when it came (``_Domain.sampler_table``)."""
    ids = r.first(F.SAMPLER_ID, F.SELECTOR_ID)
    if ids is None or not any(tables):
        return state
    out, start, k = state.copy(), 0, 0
    while k < len(tables):  # runs of sets that saw the same table (usually one run)
        table, end = tables[k], start + counts[k]
        k += 1
        while k < len(tables) and tables[k] is table:
            end += counts[k]
            k += 1
        if table:
            pairs = np.frombuffer(table, dtype=np.uint64).reshape(-1, 2)
            seg = ids[start:end]
            at = np.minimum(np.searchsorted(pairs[:, 0], seg), len(pairs) - 1)
            out[start:end] = np.where(pairs[at, 0] == seg, pairs[at, 1], out[start:end])
        start = end
    return out


def sampling_from(r: Records) -> np.ndarray | None:
    """Sampling rate the record's own elements describe (0 where they say nothing)."""
    direct = r.first(F.SAMPLING_INTERVAL, F.SAMPLER_RANDOM_INTERVAL)
    if direct is not None:
        return direct
    for taken, skipped_or_total, total in (
        (F.PACKET_INTERVAL, F.PACKET_SPACE, False),
        (F.SAMPLING_SIZE, F.SAMPLING_POPULATION, True),
    ):
        if r.has(taken) and r.has(skipped_or_total):
            a, b = r.uint(taken), r.uint(skipped_or_total)
            # PSAMP (RFC 5477 §8.2): N taken, then M skipped -> 1 in (N+M)/N.
            whole = b if total else a + b
            return np.where(a > 0, whole // np.maximum(a, _U64(1)), _U64(0))
    return None


def _etype(r: Records) -> np.ndarray:
    version = r.first(F.IP_VERSION, dtype=_U8)
    if version is None:
        guess = 0x86DD if r.has(F.SRC_V6) else 0x0800 if r.has(F.SRC_V4) else 0
        return np.full(r.n, guess, _U16)
    return np.select([version == 4, version == 6], [0x0800, 0x86DD], 0).astype(_U16)


def _addresses(r: Records, cols: dict) -> None:
    for name, v4, v6 in (("src_addr", F.SRC_V4, F.SRC_V6), ("dst_addr", F.DST_V4, F.DST_V6)):
        addr = r.address(v4, v6)
        if addr is not None:
            cols[name] = addr


def _icmp(r: Records, cols: dict) -> None:
    """dst_port: the ICMP type * 256 + code where the record is ICMP (schema convention)."""
    dport = r.first(F.DST_PORT, dtype=_U16)
    icmp = r.first(F.ICMP_V4, F.ICMP_V6, dtype=_U16)
    if icmp is None:
        kind = r.template.choose((F.ICMP_TYPE_V4, F.ICMP_TYPE_V6))
        if kind is not None:
            code = F.ICMP_CODE_V4 if kind == F.ICMP_TYPE_V4 else F.ICMP_CODE_V6
            icmp = (r.uint(kind, _U16) << _U16(8)) | r.uint(code, _U16)
    if icmp is not None:
        if dport is None:
            dport = icmp
        else:
            proto = cols.get("proto", np.zeros(r.n, _U8))
            is_icmp = (proto == 1) | (proto == 58) | ((proto == 0) & (dport == 0))
            dport = np.where(is_icmp, icmp, dport)
    if dport is not None:
        cols["dst_port"] = dport


def _tunnel(r: Records, cols: dict) -> None:
    """OVS tunnel elements (enterprise 6876): type, key (VNI), outer IPv4 addresses; else the
    outer header of a template that repeats header fields (_ipfix_fields._layered_keys)."""
    kind = r.first(F.TUNNEL_TYPE, dtype=_U8)
    if kind is not None:
        cols["tunnel_type"] = text(_TUNNEL_NAMES, np.where(kind < 8, kind, 0))
    elif r.template.outer:
        cols["tunnel_type"] = text(_TUNNEL_NAMES, _outer_tunnel(r))
    key = r.first(F.TUNNEL_KEY)
    if key is not None:
        cols["tunnel_id"] = (key & _U64(0xFFFFFFFF)).astype(_U32)
    for name, field, outer4, outer6 in (
        ("tunnel_src", F.TUNNEL_SRC_V4, F.OUTER_SRC_V4, F.OUTER_SRC_V6),
        ("tunnel_dst", F.TUNNEL_DST_V4, F.OUTER_DST_V4, F.OUTER_DST_V6),
    ):
        addr = r.address(field, (-1, -1))
        if addr is None and r.template.outer:
            addr = r.address(outer4, outer6)
        if addr is not None:
            cols[name] = addr


def _outer_tunnel(r: Records) -> np.ndarray:
    """Tunnel type codes from the outer header's protocol (and destination port): IP in IP
    (4, 41) ipip, GRE (47) gre, UDP to 4789 vxlan, to 6081 geneve, other UDP udp, else ip."""
    proto = r.first(F.OUTER_PROTO, dtype=_U8)
    if proto is None:
        return np.full(r.n, 10, _U8)
    dport = r.first(F.OUTER_DST_PORT, dtype=_U16)
    dport = np.zeros(r.n, _U16) if dport is None else dport
    udp = proto == 17
    return np.select(
        [(proto == 4) | (proto == 41), proto == 47, udp & (dport == 4789), udp & (dport == 6081), udp],
        [8, 2, 1, 7, 9],
        10,
    ).astype(_U8)


def _route(r: Records, cols: dict) -> None:
    """Next hop, prefix lengths and observation point (AS numbers are plain copies).

    next_hop: the IP next hop (IE 15 / 62: where the exporter forwarded the packet), else
    the BGP next hop (IE 18 / 63), per record: the first that is set (not 0.0.0.0 or ::;
    IPv6 before IPv4 within a pair, as for addresses); none set: ``::``. The same choice
    as sFlow's, where the extended router record's next hop wins over the gateway's.
    Masks: the IPv6 prefix length where it is set, else the IPv4 one; lengths out of
    their family's range (> 32, > 128) are unknown (0). observation_point: 0 when the
    exporter's value (unsigned64 in the IANA registry) does not fit the 32-bit column.
    """
    hop = None
    for v4, v6 in _NEXT_HOPS:
        raw = r.address_bytes(v4, v6, unset_zero=True)
        if raw is not None:
            hop = raw if hop is None else np.where(hop.any(axis=1, keepdims=True), hop, raw)
    if hop is not None:
        cols["next_hop"] = np.ascontiguousarray(hop).view("V16").reshape(r.n)
    for name, v4, v6 in _MASKS:
        m4, m6 = r.first(v4), r.first(v6)
        if m4 is None and m6 is None:
            continue
        m4 = np.zeros(r.n, _U64) if m4 is None else np.where(m4 <= 32, m4, _U64(0))
        m6 = np.zeros(r.n, _U64) if m6 is None else np.where(m6 <= 128, m6, _U64(0))
        cols[name] = np.where(m6 != 0, m6, m4).astype(_U8)
    point = r.first(F.OBSERVATION_POINT)
    if point is not None:
        cols["observation_point"] = np.where(point <= 0xFFFFFFFF, point, _U64(0)).astype(_U32)


def _post_nat(r: Records, cols: dict) -> None:
    """The addresses a NAT middlebox gave the packet after the observation point (IE 225/281,
    226/282): IPv6 where set, else IPv4 mapped; 0.0.0.0 or absent: ``::`` (not translated, or not
    said). The ports (IE 227/228) are plain copies (_DIRECT)."""
    for name, v4, v6 in _POST_NAT:
        raw = r.address_bytes(v4, v6, unset_zero=True)
        if raw is not None:
            cols[name] = np.ascontiguousarray(raw).view("V16").reshape(r.n)


#: Columns of the two ends of a flow: exchanged in the reverse half of a biflow record.
_ENDS = (
    ("src_addr", "dst_addr"),
    ("src_port", "dst_port"),
    ("src_mac", "dst_mac"),
    ("in_if", "out_if"),
    ("src_as", "dst_as"),
    ("src_mask", "dst_mask"),
    ("tunnel_src", "tunnel_dst"),
    ("post_nat_src_addr", "post_nat_dst_addr"),
    ("post_nat_src_port", "post_nat_dst_port"),
)


def biflow_rows(r: Records, cols: dict[str, np.ndarray]) -> tuple[dict[str, np.ndarray], int]:
    """The two halves of RFC 5103 biflow records, as rows: each record's forward half
    (``biflow`` 1, its columns as decoded) then its reverse half (``biflow`` 2), unless the
    reverse direction saw no packet and no byte.

    The reverse half has the ends exchanged (addresses, ports, MACs, interfaces, AS numbers,
    prefix lengths, tunnel ends), the reverse counters (enterprise 29305: packets, bytes),
    the reverse TCP flags (0 when the record has none: the forward ones are not the reverse
    direction's) and TOS (the forward one when absent). ICMP has no ports: the reverse half
    of an ICMP record has 0 (its replies' type and code are not exported). Times, sampling
    and everything else are the record's. ``cols`` must be complete (every column).
    """
    n = r.n
    packets = r.first(*F.REV_PACKET_KEYS)
    octets = r.first(*F.REV_OCTET_KEYS)
    packets = np.zeros(n, _U64) if packets is None else packets
    octets = np.zeros(n, _U64) if octets is None else octets
    rev = dict(cols)
    for a, b in _ENDS:
        rev[a], rev[b] = cols[b], cols[a]
    icmp = (cols["proto"] == 1) | (cols["proto"] == 58)
    if icmp.any():
        for name in ("src_port", "dst_port"):
            rev[name] = np.where(icmp, _U16(0), rev[name])
    rev["packets"], rev["bytes"] = packets, octets
    flags = r.first(F.REV_TCP_FLAGS, dtype=_U16)
    rev["tcp_flags"] = np.zeros(n, _U16) if flags is None else flags
    tos = r.first(F.REV_TOS, dtype=_U8)
    if tos is not None:
        rev["tos"] = tos
    rev["biflow"] = np.full(n, 2, _U8)
    pairs = np.ones((n, 2), dtype=bool)
    pairs[:, 1] = (packets != 0) | (octets != 0)
    keep = pairs.reshape(2 * n)
    out = {}
    for name, forward in cols.items():
        both = np.empty(2 * n, dtype=forward.dtype)
        both[0::2] = forward
        both[1::2] = rev[name]
        out[name] = both[keep]
    return out, int(keep.sum())


# --- the native decoder (collectors/_native/ipfix.c) ----------------------------------------


def native_layout(t: Template, native):
    """``t`` compiled for the native decoder: for each role (the source of a column) where
    its element sits, chosen by the same preferences as :func:`flow_columns`; False when
    the records need the Python path (options data, PSAMP packet sections)."""
    if t.is_options or t.section is not None:
        return False
    roles: dict[str, tuple[int, int, int]] = {}

    def source(role: str, *keys: tuple[int, int]) -> tuple[int, int] | None:
        key = t.choose(keys)
        if key is not None:
            roles[role] = t.places[key]
        return key

    for name, (_, keys) in _DIRECT.items():
        source(name, *keys)
    for role, keys in (
        ("ip_version", (F.IP_VERSION,)),
        ("direction", (F.DIRECTION,)),
        ("vlan", (F.VLAN, F.DOT1Q_VLAN)),
        ("dst_port", (F.DST_PORT,)),
        ("tunnel_type", (F.TUNNEL_TYPE,)),
        ("tunnel_key", (F.TUNNEL_KEY,)),
        ("system_init", (F.SYSTEM_INIT_MS,)),
        ("src_mask_v4", (F.SRC_MASK_V4,)),
        ("src_mask_v6", (F.SRC_MASK_V6,)),
        ("dst_mask_v4", (F.DST_MASK_V4,)),
        ("dst_mask_v6", (F.DST_MASK_V6,)),
        ("observation_point", (F.OBSERVATION_POINT,)),
        ("rev_packets", F.REV_PACKET_KEYS),
        ("rev_bytes", F.REV_OCTET_KEYS),
        ("rev_tcp_flags", (F.REV_TCP_FLAGS,)),
        ("rev_tos", (F.REV_TOS,)),
        ("biflow_direction", (F.BIFLOW_DIRECTION,)),
        ("outer_proto", (F.OUTER_PROTO,)),
        ("outer_dst_port", (F.OUTER_DST_PORT,)),
    ):
        source(role, *keys)
    if source("icmp", F.ICMP_V4, F.ICMP_V6) is None:
        kind = source("icmp_type", F.ICMP_TYPE_V4, F.ICMP_TYPE_V6)
        if kind is not None:
            source("icmp_code", F.ICMP_CODE_V4 if kind == F.ICMP_TYPE_V4 else F.ICMP_CODE_V6)
    for role, key, width in _ADDRESS_ROLES:  # Records.address: fixed fields of the exact size only
        place = t.places.get(key)
        if key in t.names and place is not None and place[2] == width:
            roles[role] = place
    source("sampler_id", F.SAMPLER_ID, F.SELECTOR_ID)
    sampling = native.S_NONE
    if source("sampling", F.SAMPLING_INTERVAL, F.SAMPLER_RANDOM_INTERVAL) is not None:
        sampling = native.S_DIRECT
    elif t.has(F.PACKET_INTERVAL) and t.has(F.PACKET_SPACE):
        sampling = native.S_INTERVAL
        roles["sampling_a"], roles["sampling_b"] = t.places[F.PACKET_INTERVAL], t.places[F.PACKET_SPACE]
    elif t.has(F.SAMPLING_SIZE) and t.has(F.SAMPLING_POPULATION):
        sampling = native.S_SIZE
        roles["sampling_a"], roles["sampling_b"] = t.places[F.SAMPLING_SIZE], t.places[F.SAMPLING_POPULATION]
    start, end = (_time_mode(native, source(role, *_TIMES[k])) for k, role in enumerate(("start", "end")))
    guess = 0x86DD if t.has(F.SRC_V6) else 0x0800 if t.has(F.SRC_V4) else 0
    unknown = roles.keys() - set(native.ROLES)
    if unknown:  # a role the C side does not know would be silently dropped
        raise ValueError(f"roles unknown to the native decoder: {sorted(unknown)}")
    return native.Layout(
        t.segments, tuple(roles.get(r) for r in native.ROLES), start, end, sampling, guess, outer=t.outer
    )


def _time_mode(native, key: tuple[int, int] | None) -> int:
    return getattr(native, _TIME_MODES[key]) if key is not None else native.T_EXPORT


_GROUPS: dict[tuple, tuple[tuple, tuple]] = {}


def native_groups(columns: tuple) -> tuple[tuple, tuple]:
    """The native columns ((name, dtype) each) grouped by dtype: (column indexes) per group for
    ``Batch.take_groups``, and (dtype, names) per group for :func:`native_columns`."""
    known = _GROUPS.get(columns)
    if known is None:
        by_dtype: dict[np.dtype, list[int]] = {}
        for i, (_, dtype) in enumerate(columns):
            by_dtype.setdefault(np.dtype(dtype), []).append(i)
        known = _GROUPS[columns] = (
            tuple(tuple(v) for v in by_dtype.values()),
            tuple((dt, tuple(columns[i][0] for i in v)) for dt, v in by_dtype.items()),
        )
    return known


def native_columns(groups: tuple, n: int, buffers: tuple, kind: str) -> dict[str, np.ndarray]:
    """Flow columns from the native decoder's buffers, one per dtype group ((dtype, names) each,
    see :func:`native_groups`): one array per group, whose rows are the columns."""
    cols: dict[str, np.ndarray] = {}
    for (dtype, names), buf in zip(groups, buffers, strict=True):
        cols.update(zip(names, np.frombuffer(buf, dtype=dtype).reshape(len(names), n)))  # noqa: B905
    cols["direction"] = text(DIRECTION_NAMES, cols["direction"])
    cols["tunnel_type"] = text(_TUNNEL_NAMES, cols["tunnel_type"])
    cols["type"] = constant_text(kind, n)
    return complete(cols, n)  # schema columns the native decoder does not fill: zeros, as in Python
