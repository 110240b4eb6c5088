"""Naming the pod behind a NAT or EIP, and saying how sure we are.

An exporter beyond a NAT gateway sees the EIP, not the pod. Four sources name the pod behind it,
the first that applies wins:

- **The record's own post-NAT elements** (IPFIX / NetFlow v9 IE 225-228, 281/282, columns
  ``post_nat_*``), sent by an exporter on the NAT middlebox itself (Cisco ASA NSEL, a Linux
  ``ipt_NETFLOW`` / ``nprobe`` on the gateway). The observed addresses are the packet before
  translation, the post-NAT ones after it. On a boundary NAT the inside end is the observed source
  (outbound SNAT, DNAT replies) and the post-NAT destination (inbound DNAT, SNAT replies), so a
  destination whose post-NAT address differs is named by it (``postnat``, 100), and so is a source
  whose observed address is a known EIP and whose post-NAT address is not. Each such record also
  teaches the exact mapping (outside address, port, remote address, port, protocol) → inside
  address; any other observation of that outside 5-tuple within ``window_ms`` (an exporter beyond
  the gateway, either direction) is named by it (``postnat_join``, 98). This needs no NAT rule in
  the metadata (a physical firewall's NAT is named too).
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
confidence of the ends named behind a NAT.
"""

from __future__ import annotations

import ipaddress
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.lookups import Addresses, AddressSet, PrefixIndex, addr16, addrs16

#: Values of ``src_nat``/``dst_nat`` (index 0: not translated).
METHODS = ("", "fip", "snat", "dnat", "snat_join", "snat_subnet", "postnat", "postnat_join")
_FIP, _SNAT, _DNAT, _JOIN, _SUBNET, _POSTNAT, _POSTNAT_JOIN = range(1, 8)
CONFIDENCE = {_FIP: 95, _SNAT: 95, _DNAT: 90, _SUBNET: 30, _POSTNAT: 100, _POSTNAT_JOIN: 98}
#: A post-NAT mapping's key: outside address, remote address, outside port, remote port, protocol.
_KEY = np.dtype([("a", "V16"), ("r", "V16"), ("ap", ">u2"), ("rp", ">u2"), ("proto", "u1"), ("pad", "V3")])
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
        #: post-NAT mappings learnt from records with post-NAT elements: sorted keys (_KEY as
        #: V40), their times and inside addresses (V16).
        self._keys = np.zeros(0, "V40")
        self._key_times = np.zeros(0, np.int64)
        self._inside = np.zeros(0, "V16")

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
        post = _post_nat(table, n)
        if not n or (nat.eips is None and post is None and not len(self._keys)):
            return out
        sport = _col(table, "src_port", n)
        dport = _col(table, "dst_port", n)
        proto = _col(table, "proto", n)
        raw_src, raw_dst = _raw(table, "src_addr"), _raw(table, "dst_addr")
        eip = {
            "src": _is_eip(nat, src),
            "dst": _is_eip(nat, dst),
        }
        found: dict[str, list[tuple[np.ndarray, np.ndarray, int | np.ndarray, int | np.ndarray]]] = {
            "src": [],
            "dst": [],
        }
        taken = {"src": np.zeros(n, bool), "dst": np.zeros(n, bool)}
        ends = {"src": (raw_src, sport, raw_dst, dport), "dst": (raw_dst, dport, raw_src, sport)}
        if post is not None:
            for end in ("src", "dst"):
                post[f"{end}_eip"] = _is_eip(nat, Addresses(post[f"{end}_addr"].view("V16").ravel()))
            named = self._own(post, raw_src, raw_dst, eip)
            for end, rows in named.items():
                if len(rows):
                    found[end].append((rows, post[f"{end}_addr"][rows], _POSTNAT, CONFIDENCE[_POSTNAT]))
                    taken[end][rows] = True
            self._learn(post, named, raw_src, raw_dst, sport, dport, proto, times)
        if len(self._keys):
            for end, (own, own_port, other, other_port) in ends.items():
                rows, inside = self._lookup(~taken[end], own, own_port, other, other_port, proto, times)
                if len(rows):
                    found[end].append((rows, inside, _POSTNAT_JOIN, CONFIDENCE[_POSTNAT_JOIN]))
                    taken[end][rows] = True
        if nat.eips is not None:
            self._remember(nat, src, dst, raw_src, raw_dst, sport, dport, proto, times)
            for end, addrs in (("src", src), ("dst", dst)):
                ids = nat.eips.lookup(addrs)
                rows_, addrs_, methods_, conf_ = [], [], [], []
                for r in np.flatnonzero((ids >= 0) & ~taken[end]).tolist():
                    hit = self._one(
                        nat.by_eip[int(ids[r])], end, r, times, sport, dport, proto, raw_src, raw_dst
                    )
                    if hit is not None:
                        rows_.append(r)
                        addrs_.append(hit[0])
                        methods_.append(hit[1])
                        conf_.append(hit[2])
                if rows_:
                    raw = np.frombuffer(b"".join(addrs16(addrs_)), np.uint8).reshape(-1, 16)
                    found[end].append(
                        (np.array(rows_, np.int64), raw, np.array(methods_), np.array(conf_, np.uint8))
                    )
        for end in ("src", "dst"):
            if not found[end]:
                continue
            rows = np.concatenate([f[0] for f in found[end]])
            inside = np.concatenate([np.asarray(f[1]).reshape(-1, 16) for f in found[end]])
            method = np.concatenate([np.broadcast_to(f[2], len(f[0])) for f in found[end]])
            conf = np.concatenate([np.broadcast_to(np.uint8(f[3]), len(f[0])) for f in found[end]])
            getattr(out, f"{end}_method")[rows] = method
            current = out.confidence[rows]
            out.confidence[rows] = np.where(current == 0, conf, np.minimum(current, conf))
            setattr(
                out, f"{end}_internal", (rows, Addresses(np.ascontiguousarray(inside).view("V16").ravel()))
            )
        return out

    @staticmethod
    def _own(post: dict[str, np.ndarray], raw_src: np.ndarray, raw_dst: np.ndarray, eip: dict) -> dict:
        """Rows whose end is named by the record's own post-NAT address, per end (see the module)."""
        out = {}
        for end, raw in (("src", raw_src), ("dst", raw_dst)):
            after = post[f"{end}_addr"]
            differs = after.any(axis=1) & (after != raw).any(axis=1)
            if end == "dst":  # inbound DNAT / SNAT replies: unless the post-NAT address is the EIP
                keep = differs & ~(post[f"{end}_eip"] & ~eip[end])
            else:  # the observed source is inside, unless it is a known EIP and its post-NAT is not
                keep = differs & eip[end] & ~post[f"{end}_eip"]
            out[end] = np.flatnonzero(keep)
        return out

    def _learn(
        self, post: dict[str, np.ndarray], named: dict[str, np.ndarray], raw_src: np.ndarray,
        raw_dst: np.ndarray, sport: np.ndarray, dport: np.ndarray, proto: np.ndarray, times: np.ndarray,
    ) -> None:  # fmt: skip
        """Keep (outside address, port, remote address, port, protocol) → inside address of each
        translated end: the outside address is the observed one where the post-NAT one named the
        end (the record was made outside), else the post-NAT one (made inside: the remote end is
        then where the packet went after translation)."""
        final_dst = np.where(post["dst_addr"].any(axis=1, keepdims=True), post["dst_addr"], raw_dst)
        final_dport = np.where(post["dst_port"] > 0, post["dst_port"], dport)
        parts = []
        for end in ("src", "dst"):
            rows = named[end]
            if len(rows):  # observed outside: outside = observed end, remote = the other observed end
                own, own_port, other, other_port = (
                    (raw_src, sport, raw_dst, dport) if end == "src" else (raw_dst, dport, raw_src, sport)
                )
                parts.append(
                    (own[rows], own_port[rows], other[rows], other_port[rows], proto[rows], times[rows],
                     post[f"{end}_addr"][rows])
                )  # fmt: skip
        after = post["src_addr"]
        inside = np.flatnonzero(
            after.any(axis=1)
            & (after != raw_src).any(axis=1)
            & ~np.isin(np.arange(len(raw_src)), named["src"])
        )
        if len(inside):  # observed inside (outbound SNAT): outside = post-NAT source
            port = np.where(post["src_port"][inside] > 0, post["src_port"][inside], sport[inside])
            parts.append(
                (after[inside], port, final_dst[inside], final_dport[inside], proto[inside], times[inside],
                 raw_src[inside])
            )  # fmt: skip
        if not parts:
            return
        keys = np.concatenate([_keys(*p[:5]) for p in parts])
        ts = np.concatenate([p[5] for p in parts]).astype(np.int64)
        ins = np.concatenate([np.ascontiguousarray(p[6]).view("V16").ravel() for p in parts])
        keys = np.concatenate([self._keys, keys])
        ts = np.concatenate([self._key_times, ts])
        ins = np.concatenate([self._inside, ins])
        # newest per key first, then drop the expired and keep the newest max_entries
        order = np.lexsort((-ts, keys))
        keys, ts, ins = keys[order], ts[order], ins[order]
        first = np.ones(len(keys), bool)
        first[1:] = keys[1:] != keys[:-1]
        live = first & (ts >= ts.max() - self.window_ms)
        keys, ts, ins = keys[live], ts[live], ins[live]
        if len(keys) > self.max_entries:
            keep = np.sort(np.argsort(-ts, kind="stable")[: self.max_entries])
            keys, ts, ins = keys[keep], ts[keep], ins[keep]
        self._keys, self._key_times, self._inside = keys, ts, ins

    def _lookup(
        self, rows: np.ndarray, own: np.ndarray, own_port: np.ndarray, other: np.ndarray,
        other_port: np.ndarray, proto: np.ndarray, times: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """Rows (of the mask ``rows``) whose end is a learnt outside address: (rows, inside addresses)."""
        idx = np.flatnonzero(rows)
        if not len(idx):
            return idx, np.zeros((0, 16), np.uint8)
        keys = _keys(own[idx], own_port[idx], other[idx], other_port[idx], proto[idx])
        pos = np.minimum(np.searchsorted(self._keys, keys), len(self._keys) - 1)
        hit = (self._keys[pos] == keys) & (np.abs(self._key_times[pos] - times[idx]) <= self.window_ms)
        inside = self._inside[pos[hit]]
        return idx[hit], np.frombuffer(inside.tobytes(), np.uint8).reshape(-1, 16)

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


def _keys(a: np.ndarray, ap: np.ndarray, r: np.ndarray, rp: np.ndarray, proto: np.ndarray) -> np.ndarray:
    """Mapping keys (``_KEY`` viewed as 40 bytes, so they sort and compare as bytes)."""
    k = np.zeros(len(ap), _KEY)
    k["a"] = np.ascontiguousarray(a).view("V16").ravel()
    k["r"] = np.ascontiguousarray(r).view("V16").ravel()
    k["ap"], k["rp"], k["proto"] = ap, rp, proto
    return k.view("V40")


def _post_nat(table: pa.Table, n: int) -> dict[str, np.ndarray] | None:
    """The post-NAT columns of a batch as (n, 16) bytes and ports; None when no row has one."""
    names = table.schema.names
    if "post_nat_src_addr" not in names or "post_nat_dst_addr" not in names:
        return None
    out = {"src_addr": _raw(table, "post_nat_src_addr"), "dst_addr": _raw(table, "post_nat_dst_addr")}
    if not (out["src_addr"].any() or out["dst_addr"].any()):
        return None
    out["src_port"], out["dst_port"] = (
        _col(table, "post_nat_src_port", n),
        _col(table, "post_nat_dst_port", n),
    )
    return out


def _is_eip(nat: NatTable, addrs: Addresses) -> np.ndarray:
    if nat.eips is None:
        return np.zeros(addrs.n, bool)
    return nat.eips.lookup(addrs) >= 0


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
