"""Naming the pod behind a NAT or EIP, and saying how sure we are.

An exporter beyond a NAT gateway sees the EIP, not the pod. Three sources name the pod behind it:

- **Rules** (Kube-OVN ``OvnFip``/``IptablesFIPRule``, ``OvnDnatRule``/``IptablesDnatRule``,
  ``OvnSnatRule``/``IptablesSnatRule`` with their ``OvnEip``/``IptablesEIP``, time-versioned like
  the rest): a FIP or an SNAT rule for one address maps the EIP to one internal address
  (confidence 95); a DNAT rule maps EIP:externalPort to the internal address (90, also its replies).
- **The join of pre- and post-NAT observations**: an SNAT rule for a whole subnet hides many pods
  behind one EIP. When an exporter on the inside saw the same conversation before translation (a
  source inside the rule's CIDR talking to the same remote address, port and protocol within
  ``window_ms``), that source is the pod: 90 when one inside source fits and used the same source
  port (port-preserving SNAT, what iptables and OVN do while the port is free), 75 when one fits on
  another port, 80 when several fit and one used the same port. Replies (remote → EIP) are named the
  same way. Observations are kept for ``window_ms`` across batches, at most ``max_entries``.
- Otherwise only the subnet behind the rule is named (``snat_subnet``, 30): tenant, subnet, VPC.

The ``src_nat``/``dst_nat`` columns say which source named each end; ``nat_confidence`` the lower
confidence of the ends named behind a NAT. IPFIX postNAT elements (IE 225-228, 281/282) would make
the join exact; the decoders do not read them yet.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.lookups import Addresses, AddressSet, PrefixIndex, addr16

#: Values of ``src_nat``/``dst_nat`` (index 0: not translated).
METHODS = ("", "fip", "snat", "dnat", "snat_join", "snat_subnet")
_FIP, _SNAT, _DNAT, _JOIN, _SUBNET = range(1, 6)
CONFIDENCE = {_FIP: 95, _SNAT: 95, _DNAT: 90, _SUBNET: 30}
_PROTO = {"tcp": 6, "udp": 17, "sctp": 132, "icmp": 1}


@dataclass(frozen=True)
class Rule:
    """One NAT rule resolved against its EIP and internal target, valid over ``[start, end)``."""

    name: str
    type: str
    eip: str
    internal: str  # an address, or a CIDR (an SNAT rule for a subnet)
    start: int
    end: int
    internal_port: int = 0
    external_port: int = 0
    proto: int = 0

    @property
    def one_address(self) -> bool:
        net = ipaddress.ip_network(self.internal, strict=False)
        return net.num_addresses == 1


class NatTable:
    """The NAT rules of a metadata history (``by_kind``: versions by kind, references qualified)."""

    def __init__(self, by_kind: dict[str, list[Any]]):
        self.rules: list[Rule] = []
        self.problems: list[str] = []
        eips = _by_key(by_kind.get("eip", []))
        ips = _by_key(by_kind.get("ip", []))
        nets = _by_key(by_kind.get("network", []))
        for v in by_kind.get("nat", []):
            a = v.attrs
            prefix = f"{a['cluster']}::" if a.get("cluster") else ""
            eip = _at(eips.get(prefix + a.get("eip", ""), []), v.valid_from)
            internal = a.get("internal") or ""
            if not internal and a.get("ip_name"):
                ip = _at(ips.get(prefix + a["ip_name"], []), v.valid_from)
                internal = (ip.attrs.get("ips") or [""])[0] if ip else ""
            if not internal and a.get("vpc_subnet"):
                net = _at(nets.get(prefix + a["vpc_subnet"], []), v.valid_from)
                internal = (net.attrs.get("cidr") or [""])[0] if net else ""
            if eip is None or not internal:
                self.problems.append(f"nat rule {v.key}: EIP or internal address not known, not used")
                continue
            for addr in eip.attrs.get("ips") or ():
                self.rules.append(
                    Rule(
                        v.key, a["type"], addr, internal, v.valid_from, v.valid_to,
                        int(a.get("internal_port") or 0), int(a.get("external_port") or 0),
                        _PROTO.get(str(a.get("protocol") or "").lower(), 0),
                    )
                )  # fmt: skip
        self.eips = AddressSet([addr16(r.eip) for r in self.rules]) if self.rules else None
        #: EIP id → its rules
        self.by_eip: dict[int, list[Rule]] = {}
        if self.eips is not None:
            for r, i in zip(self.rules, self.eips.ids_of_input.tolist(), strict=True):
                self.by_eip.setdefault(i, []).append(r)
        subnets = [r for r in self.rules if r.type == "snat" and not r.one_address]
        self.snat_rules = subnets
        self.snat_prefix = (
            PrefixIndex([r.internal for r in subnets], [r.start for r in subnets], [r.end for r in subnets])
            if subnets
            else None
        )


def _by_key(versions: list[Any]) -> dict[str, list[Any]]:
    out: dict[str, list[Any]] = {}
    for v in versions:
        out.setdefault(v.key, []).append(v)
    return out


def _at(versions: list[Any], t: int) -> Any:
    """The version valid at ``t``, else the newest one (a rule written before its EIP was allocated)."""
    for v in versions:
        if v.valid_from <= t < v.valid_to:
            return v
    return versions[-1] if versions else None


@dataclass
class Attribution:
    """What :meth:`NatAttributor.attribute` found for one batch."""

    src_method: np.ndarray
    dst_method: np.ndarray
    confidence: np.ndarray
    src_internal: tuple[np.ndarray, Addresses] = field(default_factory=lambda: _none())
    dst_internal: tuple[np.ndarray, Addresses] = field(default_factory=lambda: _none())
    methods: pa.Array = field(default_factory=lambda: pa.array(METHODS, pa.string()))


def _none() -> tuple[np.ndarray, Addresses]:
    return np.zeros(0, np.int64), Addresses.from_text([])


class NatAttributor:
    """Attributes post-NAT flows to the address behind the NAT; keeps pre-NAT observations for the join."""

    def __init__(self, window_ms: int = 120_000, max_entries: int = 200_000):
        self.window_ms, self.max_entries = window_ms, max_entries
        #: (remote address, remote port, protocol) → [(time, inside address, inside port)]
        self._seen: OrderedDict[tuple[bytes, int, int], list[tuple[int, bytes, int]]] = OrderedDict()

    def attribute(
        self,
        tab: Any,
        table: pa.Table,
        src: Addresses,
        dst: Addresses,
        times: np.ndarray,
        src_codes: dict[str, np.ndarray],
        dst_codes: dict[str, np.ndarray],
    ) -> Attribution:
        n = table.num_rows
        out = Attribution(np.zeros(n, np.int32), np.zeros(n, np.int32), np.zeros(n, np.uint8))
        nat: NatTable = tab.nat
        if nat.eips is None or not n:
            return out
        sport = _col(table, "src_port", n)
        dport = _col(table, "dst_port", n)
        proto = _col(table, "proto", n)
        raw_src, raw_dst = _raw(table, "src_addr"), _raw(table, "dst_addr")
        self._remember(nat, src, dst, raw_src, raw_dst, sport, dport, proto, times)
        found: dict[str, tuple[list[int], list[str], list[int], list[int]]] = {
            "src": ([], [], [], []),
            "dst": ([], [], [], []),
        }
        for end, addrs in (("src", src), ("dst", dst)):
            ids = nat.eips.lookup(addrs)
            rows = np.flatnonzero(ids >= 0)
            for r in rows.tolist():
                hit = self._one(nat.by_eip[int(ids[r])], end, r, times, sport, dport, proto, raw_src, raw_dst)
                if hit is not None:
                    rows_, addrs_, methods_, conf_ = found[end]
                    rows_.append(r)
                    addrs_.append(hit[0])
                    methods_.append(hit[1])
                    conf_.append(hit[2])
        for end in ("src", "dst"):
            rows_, addrs_, methods_, conf_ = found[end]
            if not rows_:
                continue
            rows = np.array(rows_, np.int64)
            getattr(out, f"{end}_method")[rows] = methods_
            current = out.confidence[rows]
            conf = np.array(conf_, np.uint8)
            out.confidence[rows] = np.where(current == 0, conf, np.minimum(current, conf))
            setattr(out, f"{end}_internal", (rows, Addresses.from_text(addrs_)))
        return out

    def _one(
        self, rules: list[Rule], end: str, r: int, times: np.ndarray, sport: np.ndarray, dport: np.ndarray,
        proto: np.ndarray, raw_src: np.ndarray, raw_dst: np.ndarray,
    ) -> tuple[str, int, int] | None:  # fmt: skip
        """(internal address, method, confidence) of row ``r``'s ``end`` (an EIP), or None."""
        t = int(times[r])
        live = [x for x in rules if x.start <= t < x.end]
        own_port = int(sport[r] if end == "src" else dport[r])
        for x in live:
            if x.type == "fip" or (x.type == "snat" and x.one_address and end == "src"):
                return _address(x.internal), _FIP if x.type == "fip" else _SNAT, CONFIDENCE[_FIP]
            if x.type == "dnat" and own_port == x.external_port and (not x.proto or x.proto == proto[r]):
                return _address(x.internal), _DNAT, CONFIDENCE[_DNAT]
        subnets = [x for x in live if x.type == "snat" and not x.one_address]
        if not subnets:
            return None
        remote = bytes(raw_dst[r] if end == "src" else raw_src[r])
        remote_port = int(dport[r] if end == "src" else sport[r])
        joined = self._join(subnets, remote, remote_port, int(proto[r]), own_port, t)
        if joined is not None:
            return joined
        return _address(subnets[0].internal), _SUBNET, CONFIDENCE[_SUBNET]

    def _join(
        self, rules: list[Rule], remote: bytes, port: int, proto: int, own_port: int, t: int
    ) -> tuple[str, int, int] | None:
        seen = self._seen.get((remote, port, proto), [])
        nets = [ipaddress.ip_network(x.internal, strict=False) for x in rules]
        inside = {
            (a, p)
            for ts, a, p in seen
            if abs(ts - t) <= self.window_ms and any(_text(a) in net for net in nets)
        }
        if not inside:
            return None
        addrs = {a for a, _ in inside}
        same_port = {a for a, p in inside if p == own_port}
        if len(addrs) == 1:
            (a,) = addrs
            return str(_text(a)), _JOIN, 90 if same_port else 75
        if len(same_port) == 1:
            (a,) = same_port
            return str(_text(a)), _JOIN, 80
        return None

    def _remember(
        self, nat: NatTable, src: Addresses, dst: Addresses, raw_src: np.ndarray, raw_dst: np.ndarray,
        sport: np.ndarray, dport: np.ndarray, proto: np.ndarray, times: np.ndarray,
    ) -> None:  # fmt: skip
        """Keep the flows seen inside an SNAT rule's subnet (either end), keyed by the other end."""
        if nat.snat_prefix is None:
            return
        for inside, ports, other, other_ports, addrs in (
            (raw_src, sport, raw_dst, dport, src),
            (raw_dst, dport, raw_src, sport, dst),
        ):
            rows = np.flatnonzero(nat.snat_prefix.lookup(addrs, times) >= 0)
            for r in rows.tolist():
                key = (bytes(other[r]), int(other_ports[r]), int(proto[r]))
                entries = self._seen.setdefault(key, [])
                entries.append((int(times[r]), bytes(inside[r]), int(ports[r])))
                if len(entries) > 64:
                    del entries[: len(entries) - 64]
                self._seen.move_to_end(key)
        while len(self._seen) > self.max_entries:
            self._seen.popitem(last=False)


def _col(table: pa.Table, name: str, n: int) -> np.ndarray:
    if name not in table.schema.names:
        return np.zeros(n, np.int64)
    return np.asarray(table.column(name).to_numpy(), dtype=np.int64)


def _raw(table: pa.Table, name: str) -> np.ndarray:
    arr = table.column(name).combine_chunks()
    buf = np.frombuffer(arr.buffers()[1], dtype=np.uint8)[arr.offset * 16 : (arr.offset + len(arr)) * 16]
    return buf.reshape(-1, 16)


def _text(a: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    ip = ipaddress.IPv6Address(a)
    return ip.ipv4_mapped or ip


def _address(internal: str) -> str:
    """The address a rule's target names: itself, or a CIDR's network address (names its subnet)."""
    return str(ipaddress.ip_network(internal, strict=False).network_address)
