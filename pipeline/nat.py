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
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pyarrow as pa

from pipeline.lookups import Addresses, AddressSet, PrefixIndex, addr16

#: Values of ``src_nat``/``dst_nat`` (index 0: not translated).
METHODS = ("", "fip", "snat", "dnat", "snat_join", "snat_subnet", "postnat", "postnat_join")
_FIP, _SNAT, _DNAT, _JOIN, _SUBNET, _POSTNAT, _POSTNAT_JOIN = range(1, 8)
CONFIDENCE = {_FIP: 95, _SNAT: 95, _DNAT: 90, _SUBNET: 30, _POSTNAT: 100, _POSTNAT_JOIN: 98}
#: A pre-NAT observation's key: remote address, remote port, protocol.
_OBS = np.dtype([("r", "V16"), ("rp", ">u2"), ("proto", "u1"), ("pad", "V5")])
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
        #: EIP id → its rules; its subnet SNAT rules with their network as (high, low) words and masks
        self.by_eip: dict[int, list[Rule]] = {}
        self.subnets_by_eip: dict[int, list[tuple[Rule, tuple[np.uint64, ...]]]] = {}
        if self.eips is not None:
            for r, i in zip(self.rules, self.eips.ids_of_input.tolist(), strict=True):
                self.by_eip.setdefault(i, []).append(r)
                if r.type == "snat" and not r.one_address:
                    self.subnets_by_eip.setdefault(i, []).append((r, _net_words(r.internal)))
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
        #: pre-NAT observations inside a subnet SNAT rule: sorted keys (remote address, port,
        #: protocol as _OBS), their times, inside addresses and inside ports
        self._obs_keys = np.zeros(0, "V24")
        self._obs_ts = np.zeros(0, np.int64)
        self._obs_inside = np.zeros((0, 16), np.uint8)
        self._obs_port = np.zeros(0, np.int64)
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
                rows = np.flatnonzero((ids >= 0) & ~taken[end])
                if len(rows):
                    found[end] += self._by_rules(nat, end, rows, ids[rows], ends[end], proto, times)
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

    def _by_rules(
        self, nat: NatTable, end: str, rows: np.ndarray, eip_ids: np.ndarray, cols: tuple, proto: np.ndarray,
        times: np.ndarray,
    ) -> list[tuple[np.ndarray, np.ndarray, int | np.ndarray, int | np.ndarray]]:  # fmt: skip
        """The rules' attribution of ``rows`` (whose ``end`` is an EIP), vectorized per EIP: each row
        takes the first live rule in the EIP's order that applies (a FIP or one-address SNAT of a
        source; a DNAT on the row's own port and protocol), else the join with the pre-NAT
        observations of its EIP's live subnet SNAT rules, else that subnet alone."""
        own, own_port, other, other_port = cols
        t, port, pr = times[rows], own_port[rows], proto[rows]
        method = np.zeros(len(rows), np.int32)
        conf = np.zeros(len(rows), np.uint8)
        inside = np.zeros((len(rows), 16), np.uint8)
        subnet_rule = np.full(len(rows), -1, np.int64)  # first live subnet SNAT rule (index in snat_rules)
        index = {id(r): k for k, r in enumerate(nat.snat_rules)}
        groups, inverse = np.unique(eip_ids, return_inverse=True)
        for g, eip in enumerate(groups.tolist()):
            mine = inverse == g
            for x in nat.by_eip[eip]:
                live = mine & (t >= x.start) & (t < x.end) & (method == 0)
                if x.type == "fip" or (x.type == "snat" and x.one_address and end == "src"):
                    hit, how = live, (_FIP if x.type == "fip" else _SNAT)
                elif x.type == "dnat":
                    hit, how = live & (port == x.external_port) & ((x.proto == 0) | (pr == x.proto)), _DNAT
                else:
                    if x.type == "snat" and not x.one_address:
                        first = live & (subnet_rule < 0)
                        subnet_rule[first] = index[id(x)]
                    continue
                method[hit] = how
                conf[hit] = CONFIDENCE[how]
                inside[hit] = np.frombuffer(addr16(_address(x.internal)), np.uint8)
        pending = np.flatnonzero((method == 0) & (subnet_rule >= 0))
        if len(pending):
            at, addrs, confs = self._join(
                nat, rows[pending], eip_ids[pending], other, other_port, proto, times, own_port
            )
            method[pending[at]], conf[pending[at]], inside[pending[at]] = _JOIN, confs, addrs
            rest = pending[method[pending] == 0]
            method[rest], conf[rest] = _SUBNET, CONFIDENCE[_SUBNET]
            nets = [np.frombuffer(addr16(_address(r.internal)), np.uint8) for r in nat.snat_rules]
            inside[rest] = np.stack(nets)[subnet_rule[rest]]
        named = np.flatnonzero(method > 0)
        return [(rows[named], inside[named], method[named], conf[named])] if len(named) else []

    def _join(
        self, nat: NatTable, rows: np.ndarray, eip_ids: np.ndarray, other: np.ndarray, other_port: np.ndarray,
        proto: np.ndarray, times: np.ndarray, own_port: np.ndarray,
    ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:  # fmt: skip
        """(positions in ``rows``, inside addresses, confidences) of the rows the pre-NAT observations
        name: observations of the same remote address, port and protocol within ``window_ms``, whose
        inside address is in a live subnet SNAT rule of the row's EIP (see the module)."""
        none = (np.zeros(0, np.int64), np.zeros((0, 16), np.uint8), np.zeros(0, np.uint8))
        if not len(self._obs_keys):
            return none
        keys = _obs_keys(other[rows], other_port[rows], proto[rows])
        lo = np.searchsorted(self._obs_keys, keys, "left")
        hi = np.searchsorted(self._obs_keys, keys, "right")
        cnt = hi - lo
        pair_row = np.repeat(np.arange(len(rows)), cnt)
        pair_obs = lo[pair_row] + (np.arange(len(pair_row)) - np.repeat(np.cumsum(cnt) - cnt, cnt))
        t = times[rows][pair_row]
        ok = np.abs(self._obs_ts[pair_obs] - t) <= self.window_ms
        inside = self._obs_inside[pair_obs]
        fits = np.zeros(len(pair_row), bool)
        words = _words(inside)
        for eip, rules in nat.subnets_by_eip.items():  # inside one of the row's EIP's live subnet rules
            of_eip = eip_ids[pair_row] == eip
            if not of_eip.any():
                continue
            for x, (hi_net, lo_net, hi_mask, lo_mask) in rules:
                fits |= (
                    of_eip & (t >= x.start) & (t < x.end)
                    & ((words[:, 0] & hi_mask) == hi_net) & ((words[:, 1] & lo_mask) == lo_net)
                )  # fmt: skip
        ok &= fits
        if not ok.any():
            return none
        pr, addrs = pair_row[ok], words[ok]
        same = self._obs_port[pair_obs[ok]] == own_port[rows][pr]
        # distinct (row, inside address) pairs, and among them those seen on the row's own port
        order = np.lexsort((addrs[:, 1], addrs[:, 0], pr))
        pr, addrs, same = pr[order], addrs[order], same[order]
        new = np.ones(len(pr), bool)
        new[1:] = (pr[1:] != pr[:-1]) | (addrs[1:] != addrs[:-1]).any(axis=1)
        group = np.cumsum(new) - 1
        same_any = np.zeros(int(group[-1]) + 1, bool)
        np.logical_or.at(same_any, group, same)
        first = np.flatnonzero(new)  # one entry per distinct (row, address), sorted by row
        d_row, d_addr = pr[first], addrs[first]
        n_addr = np.bincount(d_row, minlength=len(rows))
        n_same = np.bincount(d_row[same_any], minlength=len(rows))
        one = n_addr[d_row] == 1
        only_same = (n_addr[d_row] > 1) & (n_same[d_row] == 1) & same_any
        pick = one | only_same
        conf = np.where(one, np.where(n_same[d_row] > 0, 90, 75), 80)[pick].astype(np.uint8)
        inside = np.ascontiguousarray(d_addr[pick].astype(">u8")).view(np.uint8).reshape(-1, 16)
        return d_row[pick], inside, conf

    def _remember(
        self, nat: NatTable, src: Addresses, dst: Addresses, raw_src: np.ndarray, raw_dst: np.ndarray,
        sport: np.ndarray, dport: np.ndarray, proto: np.ndarray, times: np.ndarray,
    ) -> None:  # fmt: skip
        """Keep the flows seen inside an SNAT rule's subnet (either end), keyed by the other end:
        at most 64 per key (the newest) and ``max_entries`` in all (the newest), none older than
        two windows before the newest."""
        if nat.snat_prefix is None:
            return
        parts = []
        for inside, ports, other, other_ports, addrs in (
            (raw_src, sport, raw_dst, dport, src),
            (raw_dst, dport, raw_src, sport, dst),
        ):
            rows = np.flatnonzero(nat.snat_prefix.lookup(addrs, times) >= 0)
            if len(rows):
                parts.append(
                    (
                        _obs_keys(other[rows], other_ports[rows], proto[rows]),
                        times[rows],
                        inside[rows],
                        ports[rows],
                    )
                )
        if not parts:
            return
        keys = np.concatenate([self._obs_keys] + [p[0] for p in parts])
        ts = np.concatenate([self._obs_ts] + [np.asarray(p[1], np.int64) for p in parts])
        ins = np.concatenate([self._obs_inside] + [p[2] for p in parts])
        ports = np.concatenate([self._obs_port] + [np.asarray(p[3], np.int64) for p in parts])
        order = np.lexsort((-ts, keys))
        keys, ts, ins, ports = keys[order], ts[order], ins[order], ports[order]
        start = np.ones(len(keys), bool)
        start[1:] = keys[1:] != keys[:-1]
        group_start = np.maximum.accumulate(np.where(start, np.arange(len(keys)), 0))
        keep = (np.arange(len(keys)) - group_start < 64) & (ts >= ts.max() - 2 * self.window_ms)
        if keep.sum() > self.max_entries:
            newest = np.argsort(-np.where(keep, ts, np.iinfo(np.int64).min), kind="stable")[
                : self.max_entries
            ]
            keep = np.zeros(len(keys), bool)
            keep[newest] = True
        self._obs_keys, self._obs_ts, self._obs_inside, self._obs_port = (
            keys[keep],
            ts[keep],
            ins[keep],
            ports[keep],
        )


def _obs_keys(r: np.ndarray, rp: np.ndarray, proto: np.ndarray) -> np.ndarray:
    """Pre-NAT observation keys (``_OBS`` viewed as 24 bytes)."""
    k = np.zeros(len(rp), _OBS)
    k["r"] = np.ascontiguousarray(r).view("V16").ravel()
    k["rp"], k["proto"] = rp, proto
    return k.view("V24")


def _words(raw: np.ndarray) -> np.ndarray:
    """(n, 16) address bytes as (n, 2) big-endian 64-bit words (high, low)."""
    return np.ascontiguousarray(raw).view(">u8").reshape(-1, 2).astype(np.uint64)


def _net_words(cidr: str) -> tuple[np.uint64, ...]:
    """A network as the 16-byte columns hold it (IPv4 mapped): (high, low) words and masks."""
    net = ipaddress.ip_network(cidr, strict=False)
    value, bits = int(net.network_address), net.prefixlen
    if net.version == 4:
        value, bits = (0xFFFF << 32) | value, bits + 96
    mask = ((1 << bits) - 1) << (128 - bits)
    full = (1 << 64) - 1
    return (np.uint64(value >> 64), np.uint64(value & full), np.uint64(mask >> 64), np.uint64(mask & full))


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


def _address(internal: str) -> str:
    """The address a rule's target names: itself, or a CIDR's network address (names its subnet)."""
    return str(ipaddress.ip_network(internal, strict=False).network_address)
