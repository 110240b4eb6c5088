"""IPFIX templates compiled to numpy: a big-endian structured dtype per template.

A template becomes the dtype of its fixed-length part holding only the Information
Elements we map (at their byte offsets), so a run of records decodes with one
``np.frombuffer``. Variable-length fields (RFC 7011 §7) split a record into fixed runs;
the walker in :mod:`collectors.ipfix` copies those runs out, so the same dtype applies,
and keeps the values of the few variable-length fields we want (OVS's tunnelKey, an
integer: its last 8 bytes are read).
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np

VARIABLE = 0xFFFF  # field length meaning "variable" (RFC 7011 §3.2)
PEN_VMWARE = 6876  # OVS enterprise IEs (ofproto/ipfix-enterprise-entities.def)


def iana(ie: int) -> tuple[int, int]:
    return (0, ie)


# Keys are (enterprise number, element id); enterprise 0 is the IANA registry.
SRC_V4, DST_V4, SRC_V6, DST_V6 = iana(8), iana(12), iana(27), iana(28)
SRC_PORT, DST_PORT, PROTO, TCP_FLAGS, TOS = iana(7), iana(11), iana(4), iana(6), iana(5)
IN_IF, OUT_IF, DIRECTION = iana(10), iana(14), iana(61)
SRC_MAC, DST_MAC, POST_SRC_MAC, POST_DST_MAC = iana(56), iana(80), iana(81), iana(57)
VLAN, DOT1Q_VLAN, ETYPE, IP_VERSION = iana(58), iana(243), iana(256), iana(60)
OCTETS, PACKETS, OCTETS_TOTAL, PACKETS_TOTAL = iana(1), iana(2), iana(85), iana(86)
L2_OCTETS, L2_OCTETS_TOTAL = iana(352), iana(353)
ICMP_V4, ICMP_V6 = iana(32), iana(139)  # type * 256 + code
ICMP_TYPE_V4, ICMP_CODE_V4, ICMP_TYPE_V6, ICMP_CODE_V6 = iana(176), iana(177), iana(178), iana(179)
START_S, END_S, START_MS, END_MS = iana(150), iana(151), iana(152), iana(153)
START_US, END_US, START_NS, END_NS = iana(154), iana(155), iana(156), iana(157)
START_DELTA_US, END_DELTA_US = iana(158), iana(159)
START_UPTIME, END_UPTIME, SYSTEM_INIT_MS = iana(22), iana(21), iana(160)
SAMPLING_INTERVAL, SAMPLER_RANDOM_INTERVAL = iana(34), iana(50)
PACKET_INTERVAL, PACKET_SPACE = iana(305), iana(306)
SAMPLING_SIZE, SAMPLING_POPULATION = iana(309), iana(310)
TUNNEL_TYPE, TUNNEL_KEY = (PEN_VMWARE, 891), (PEN_VMWARE, 892)
TUNNEL_SRC_V4, TUNNEL_DST_V4 = (PEN_VMWARE, 893), (PEN_VMWARE, 894)
# Routing state of the exporter (router IEs; NetFlow v9 field types of the same numbers).
NEXT_HOP_V4, NEXT_HOP_V6, BGP_NEXT_HOP_V4, BGP_NEXT_HOP_V6 = iana(15), iana(62), iana(18), iana(63)
SRC_AS, DST_AS = iana(16), iana(17)  # unsigned32; 2-byte reduced size from 16-bit AS exporters
SRC_MASK_V4, DST_MASK_V4, SRC_MASK_V6, DST_MASK_V6 = iana(9), iana(13), iana(29), iana(30)
OBSERVATION_POINT = iana(138)  # observationPointId (OVS per-flow IPFIX: its obs_point_id)
# NAT middlebox (IANA IPFIX registry: postNATSourceIPv4Address 225, postNATDestinationIPv4Address 226,
# postNAPTSourceTransportPort 227, postNAPTDestinationTransportPort 228, postNATSourceIPv6Address 281,
# postNATDestinationIPv6Address 282; Cisco ASA NSEL sends 225-228/281/282 in NetFlow v9 as XLATE_*).
POST_NAT_SRC_V4, POST_NAT_DST_V4, POST_NAT_SRC_V6, POST_NAT_DST_V6 = (
    iana(225),
    iana(226),
    iana(281),
    iana(282),
)
POST_NAPT_SRC_PORT, POST_NAPT_DST_PORT = iana(227), iana(228)
# PSAMP (RFC 5477): packet sections and what describes them.
FRAME_SECTION, IP_SECTION, L2_SECTION = iana(315), iana(313), iana(104)
FRAME_SIZE, IP_TOTAL_LENGTH, SECTION_OCTETS = iana(312), iana(224), iana(410)
OBS_S, OBS_MS, OBS_US, OBS_NS = iana(322), iana(323), iana(324), iana(325)

# RFC 5103 biflows: the reverse direction's values are the forward IEs under enterprise 29305.
PEN_REVERSE = 29305
REV_OCTETS, REV_PACKETS = (PEN_REVERSE, 1), (PEN_REVERSE, 2)
REV_OCTETS_TOTAL, REV_PACKETS_TOTAL = (PEN_REVERSE, 85), (PEN_REVERSE, 86)
REV_L2_OCTETS, REV_L2_OCTETS_TOTAL = (PEN_REVERSE, 352), (PEN_REVERSE, 353)
REV_TCP_FLAGS, REV_TOS = (PEN_REVERSE, 6), (PEN_REVERSE, 5)
BIFLOW_DIRECTION = iana(239)  # 0 arbitrary, 1 initiator, 2 reverseInitiator, 3 perimeter
# Sampler / selector ids (NetFlow v9 FLOW_SAMPLER_ID 48, IPFIX samplerId 48 / selectorId 302)
# and the sampling probability of RFC 5477 selectors (float64).
SAMPLER_ID, SELECTOR_ID, SAMPLING_PROBABILITY = iana(48), iana(302), iana(311)

REV_PACKET_KEYS = (REV_PACKETS, REV_PACKETS_TOTAL)
REV_OCTET_KEYS = (REV_OCTETS, REV_OCTETS_TOTAL, REV_L2_OCTETS, REV_L2_OCTETS_TOTAL)
REV_COUNTER_KEYS = REV_PACKET_KEYS + REV_OCTET_KEYS

# The outer header of a template that repeats header fields (see _layered_keys): its fields
# under a pseudo enterprise number no real element has.
OUTER = 0xFFFF_FFFD
OUTER_SRC_V4, OUTER_DST_V4, OUTER_SRC_V6, OUTER_DST_V6 = (OUTER, 8), (OUTER, 12), (OUTER, 27), (OUTER, 28)
OUTER_PROTO, OUTER_DST_PORT = (OUTER, 4), (OUTER, 11)

ADDRESS_KEYS = frozenset(
    (SRC_V4, DST_V4, SRC_V6, DST_V6, TUNNEL_SRC_V4, TUNNEL_DST_V4)
    + (OUTER_SRC_V4, OUTER_DST_V4, OUTER_SRC_V6, OUTER_DST_V6)
    + (NEXT_HOP_V4, NEXT_HOP_V6, BGP_NEXT_HOP_V4, BGP_NEXT_HOP_V6)
    + (POST_NAT_SRC_V4, POST_NAT_DST_V4, POST_NAT_SRC_V6, POST_NAT_DST_V6)
)
WANTED = frozenset(v for k, v in dict(globals()).items() if k.isupper() and isinstance(v, tuple))
#: Packet sections, kept as their first SECTION_CAP bytes (headers; never the payload).
SECTION_KEYS = (FRAME_SECTION, L2_SECTION, IP_SECTION)
SECTION_CAP = 256


class Field(NamedTuple):
    """One field specifier of a template record (RFC 7011 §3.2)."""

    ie: int
    length: int
    pen: int = 0


_UNSET = object()


class Template:
    """A compiled (options) template: its fields, the dtype of the wanted ones, variable fields.

    Without variable-length fields the dtype describes the whole record (decoded in place
    by ``np.frombuffer``). With them, it is a compact layout of the wanted fields only,
    filled by gathering their bytes out of each record's fixed runs (Records.gathered).
    """

    __slots__ = (
        "template_id",
        "fields",
        "scope_count",
        "is_options",
        "variable",
        "dtype",
        "names",
        "masks",
        "fixed_len",
        "segments",
        "var_keys",
        "steps",
        "min_len",
        "byte_run",
        "byte_offset",
        "section",
        "places",
        "native",
        "biflow",
        "outer",
        "_choices",
    )

    def __init__(self, template_id: int, fields: tuple[Field, ...], scope_count: int = 0):
        self.template_id = template_id
        self.fields = fields
        self.scope_count = scope_count
        self.is_options = scope_count > 0  # an options template (RFC 7011 §3.4.2.2)
        self.names: dict[tuple[int, int], str] = {}  # wanted fixed field → dtype field name
        self.masks: dict[str, int] = {}  # fields read wider than they are (odd sizes)
        self._choices: dict[tuple, tuple[int, int] | None] = {}
        #: wanted field → (run, offset in the run, length); variable ones: (-1 - index, 0, -1)
        self.places: dict[tuple[int, int], tuple[int, int, int]] = {}
        self.native = None  # its native Batch once compiled (ipfix._native_set); False: Python only
        wanted: list[tuple] = []
        segments: list[int] = []
        var_keys: list[tuple[int, int] | None] = []
        pos = run = 0
        keys = _layered_keys(fields)
        #: A template repeating header fields (an encapsulation: outer header, then inner).
        self.outer = keys is not None
        for i, (ie, length, pen) in enumerate(fields):
            key = (pen, ie) if keys is None else keys[i]
            first = key is not None and key in WANTED and key not in self.names and key not in var_keys
            if length == VARIABLE:
                if first:
                    self.places[key] = (-1 - len(segments), 0, -1)
                segments.append(run)
                var_keys.append(key if first else None)
                run = 0
                continue
            if first and length:
                self.names[key] = f"e{key[0]}_{key[1]}"
                self.places[key] = (len(segments), run, length)
                wanted.append((key, length, pos, len(segments), run))
            pos += length
            run += length
        segments.append(run)
        self.fixed_len = pos
        self.segments = tuple(segments)  # fixed runs around the variable fields
        self.var_keys = tuple(var_keys)  # wanted variable field keys (None: skip)
        self.variable = bool(var_keys)
        self.steps = tuple(zip(segments, var_keys))  # noqa: B905 - (run, variable field after it)
        self.min_len = pos + len(var_keys)  # each variable field takes >= 1 length byte
        self.section = next((k for k in SECTION_KEYS if k in self.names or k in var_keys), None)
        #: An RFC 5103 biflow template: it carries a reverse counter (see _ipfix_columns.biflow_rows).
        self.biflow = any(k in self.names or k in var_keys for k in REV_COUNTER_KEYS)
        if self.variable:
            self._gather_layout(wanted)
        else:
            self._record_layout(wanted)

    def like(self, template_id: int) -> Template:
        """A template of the same fields under another id: what ``__init__`` derives from the fields
        is shared (read only after it), nothing decoded is (``native`` starts unset)."""
        twin = object.__new__(Template)
        for name in Template.__slots__:
            value = getattr(self, name, _UNSET)
            if value is not _UNSET:
                setattr(twin, name, value)
        twin.template_id = template_id
        twin.native = None
        return twin

    def _record_layout(self, wanted: list) -> None:
        names, formats, offsets = [], [], []
        for key, length, pos, _, _ in wanted:
            fmt, offset, mask = _layout(key, length, pos)
            names.append(self.names[key])
            formats.append(fmt)
            offsets.append(offset)
            if mask:
                self.masks[self.names[key]] = mask
        # A zero itemsize is not a valid dtype: an empty template gets a dummy byte.
        self.dtype = np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": self.fixed_len or 1}
        )
        self.byte_run = self.byte_offset = np.zeros(0, dtype=np.intp)

    def _gather_layout(self, wanted: list) -> None:
        """Compact layout: per wanted field, (run, offset) of each byte; run ``PAD`` is a
        zero byte, so odd-sized integers are left-padded to 8 and read exactly."""
        pad = len(self.segments)
        names: list[str] = []
        formats: list = []
        offsets: list[int] = []
        runs: list[int] = []
        offs: list[int] = []
        for key, length, _pos, run, off in wanted:
            fmt: str | tuple
            if key in SECTION_KEYS:
                fmt, take = ("u1", (min(length, SECTION_CAP),)), min(length, SECTION_CAP)
                names.append(self.names[key])
                formats.append(fmt)
                offsets.append(len(runs))
                runs += [run] * take
                offs += list(range(off, off + take))
                continue
            if key in ADDRESS_KEYS:
                fmt, take = ("u1", (length,)), length
            elif length in (1, 2, 4, 8):
                fmt, take = f">u{length}", length
            else:
                fmt, take = ">u8", min(length, 8)  # longer than 8: its low 8 bytes
            names.append(self.names[key])
            formats.append(fmt)
            offsets.append(len(runs))
            width = take if key in ADDRESS_KEYS or length in (1, 2, 4, 8) else 8
            runs += [pad] * (width - take) + [run] * take
            offs += [0] * (width - take) + list(range(off + length - take, off + length))
        self.dtype = np.dtype(
            {"names": names, "formats": formats, "offsets": offsets, "itemsize": len(runs) or 1}
        )
        self.byte_run = np.array(runs, dtype=np.intp)
        self.byte_offset = np.array(offs, dtype=np.intp)

    def has(self, key: tuple[int, int]) -> bool:
        return key in self.names or key in self.var_keys

    def choose(self, keys: tuple) -> tuple[int, int] | None:
        """The first of ``keys`` this template carries (memoised: asked once per flush)."""
        try:
            return self._choices[keys]
        except KeyError:
            found = self._choices[keys] = next((k for k in keys if self.has(k)), None)
            return found


#: Header fields by role. A template that repeats one of these elements describes two
#: headers, outer then inner (Huawei: outer IPv6 addresses and protocol 4, then the inner
#: IPv4 addresses, protocol and ports): see _layered_keys.
_HEADER_ROLES = {
    SRC_V4: "src",
    SRC_V6: "src",
    DST_V4: "dst",
    DST_V6: "dst",
    PROTO: "proto",
    SRC_PORT: "sport",
    DST_PORT: "dport",
    IP_VERSION: "version",
}


def _layered_keys(fields: tuple[Field, ...]) -> list | None:
    """Keys of a template's fields when it repeats a header element, else None.

    Then, for each header role (source address of either family, destination address,
    protocol, ports, IP version) that occurs more than once, the last occurrence is the
    inner header's (the flow's: its plain key), the first the outer header's (its key under
    the OUTER pseudo enterprise: tunnel columns), and any in between is not read. A role
    that occurs once is the inner header's. Templates that only mix IPv4 and IPv6 fields,
    without repeating an element, are not layered (exporters that fill one family per record).
    """
    plain = [(pen, ie) for ie, _, pen in fields]
    header = [k for k in plain if k in _HEADER_ROLES]
    if len(header) == len(set(header)):
        return None
    roles: dict[str, list[int]] = {}
    for i, k in enumerate(plain):
        role = _HEADER_ROLES.get(k)
        if role is not None:
            roles.setdefault(role, []).append(i)
    keys: list = list(plain)
    for at in roles.values():
        if len(at) < 2:
            continue
        keys[at[0]] = (OUTER, plain[at[0]][1])
        for i in at[1:-1]:
            keys[i] = None
    return keys


def _layout(key: tuple[int, int], length: int, pos: int) -> tuple:
    """(numpy format, offset, mask) to read one field of the record.

    Integers of odd size (MACs: 6 bytes; reduced-size encodings, RFC 7011 §6.2) are read
    as the big-endian 8 bytes *ending* at the field (numpy allows overlapping fields)
    and masked; addresses, and odd integers too close to the record start, as bytes.
    """
    if key in ADDRESS_KEYS:
        return ("u1", (length,)), pos, 0
    if key in SECTION_KEYS:
        return ("u1", (min(length, SECTION_CAP),)), pos, 0
    if length in (1, 2, 4, 8):
        return f">u{length}", pos, 0
    if pos + length >= 8:
        return ">u8", pos + length - 8, (1 << (8 * length)) - 1 if length < 8 else 0
    return ("u1", (length,)), pos, 0


class Records:
    """Decoded records of one template: typed access to the fields we map."""

    __slots__ = ("template", "recs", "var", "n")

    def __init__(self, template: Template, recs: np.ndarray, var: dict[tuple[int, int], list[bytes]]):
        self.template = template
        self.recs = recs
        self.n = len(recs)
        self.var = var

    @classmethod
    def fixed(cls, template: Template, data: bytes, n: int, var: dict) -> Records:
        """Records laid end to end (a template without variable-length fields)."""
        return cls(template, np.frombuffer(data, dtype=template.dtype, count=n), var)

    @classmethod
    def gathered(
        cls, template: Template, data: bytes | bytearray, starts: list[int], n: int, var: dict
    ) -> Records:
        """Records with variable-length fields: ``starts`` holds, per record, where each
        of its fixed runs begins in ``data``; one fancy-index gathers the wanted bytes."""
        if not len(template.byte_run):
            return cls(template, np.zeros(n, dtype=template.dtype), var)
        runs = np.empty((n, len(template.segments) + 1), dtype=np.intp)
        runs[:, :-1] = np.array(starts, dtype=np.intp).reshape(n, len(template.segments))
        runs[:, -1] = len(data)  # the zero padding appended below
        padded = np.frombuffer(bytes(data) + bytes(8), dtype=np.uint8)
        raw = padded[runs[:, template.byte_run] + template.byte_offset]
        return cls(template, np.ascontiguousarray(raw).view(template.dtype).reshape(n), var)

    def has(self, key: tuple[int, int]) -> bool:
        return self.template.has(key)

    def uint(self, key: tuple[int, int], dtype=np.uint64) -> np.ndarray:
        """Unsigned values as ``dtype`` (any size up to 8 bytes; longer: the low 8)."""
        name = self.template.names.get(key)
        if name is None:
            vals = self.var.get(key)  # variable-length integers, already read by the walker
            if vals is None:
                return np.zeros(self.n, dtype=dtype)
            return np.array(vals, dtype=np.uint64).astype(dtype, copy=False)
        col = self.recs[name]
        if col.ndim == 2:
            return _be_uint(col[:, -8:]).astype(dtype, copy=False)
        mask = self.template.masks.get(name)
        if mask:
            col = col & np.uint64(mask)
        return col.astype(dtype)

    def first(self, *keys: tuple[int, int], dtype=np.uint64) -> np.ndarray | None:
        """Values of the first of ``keys`` the template carries (None if none)."""
        key = self.template.choose(keys)
        return None if key is None else self.uint(key, dtype)

    def address(self, v4: tuple[int, int], v6: tuple[int, int]) -> np.ndarray | None:
        """16-byte addresses (IPv4 mapped) from an IPv4 and/or an IPv6 element."""
        raw = self.address_bytes(v4, v6)
        return None if raw is None else np.ascontiguousarray(raw).view("V16").reshape(self.n)

    def address_bytes(
        self, v4: tuple[int, int], v6: tuple[int, int], unset_zero: bool = False
    ) -> np.ndarray | None:
        """(n, 16) bytes of :meth:`address`: IPv6 where it is set, else the IPv4 one mapped.
        With ``unset_zero``, an IPv4 0.0.0.0 gives 16 zero bytes (``::``, "none") rather
        than ::ffff:0.0.0.0 (next hops: 0.0.0.0 means the exporter has none)."""
        a6 = self._raw(v6, 16)
        a4 = self._raw(v4, 4)
        if a4 is not None:
            mapped = np.zeros((self.n, 16), dtype=np.uint8)
            mapped[:, 10:12] = 0xFF
            mapped[:, 12:] = a4
            if unset_zero:
                mapped[~a4.any(axis=1)] = 0
            if a6 is not None:  # both in one template: IPv6 where it is set
                mapped = np.where(a6.any(axis=1, keepdims=True), a6, mapped)
            a6 = mapped
        return a6

    def sections(self, key: tuple[int, int]) -> list[bytes]:
        """The packet section of each record (PSAMP), at most SECTION_CAP bytes."""
        name = self.template.names.get(key)
        if name is None:
            return list(self.var.get(key, ()))
        col = self.recs[name]
        return [row.tobytes() for row in col]

    def _raw(self, key: tuple[int, int], width: int) -> np.ndarray | None:
        name = self.template.names.get(key)
        if name is None:
            return None
        col = self.recs[name]
        if col.ndim != 2 or col.shape[1] != width:
            return None  # an address of the wrong size: ignore rather than guess
        return col


def _be_uint(raw: np.ndarray) -> np.ndarray:
    """Big-endian unsigned integers from an (n, k <= 8) byte matrix (MACs, odd sizes)."""
    padded = np.zeros((raw.shape[0], 8), dtype=np.uint8)
    padded[:, 8 - raw.shape[1] :] = raw
    return padded.view(">u8").reshape(raw.shape[0]).astype(np.uint64)
