"""Switch on sFlow and bridge IPFIX on a node's Open vSwitch bridges, idempotently.

``configure`` makes each configured bridge export what ``exporters`` says (targets, sampling,
observation domain) and nothing else; running it again changes nothing. Rows netobs creates carry
``external_ids:netobs-managed=true`` plus the exporter's identity (``netobs-node``,
``netobs-center``, ``netobs-agent``); a row someone else made is never overwritten or removed
(reported ``foreign``). ``status`` reads back what every bridge exports.

All changes go through ``ovs-vsctl`` in one transaction per bridge, so a bridge never exports
half a configuration.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass, field
from typing import Any

from collectors.config import ExportersConfig

MANAGED = "netobs-managed"
#: OVS table → the Bridge column that points at its row.
TABLES = {"sflow": "sFlow", "ipfix": "IPFIX"}


class OvsError(OSError):
    """ovs-vsctl failed (the OVSDB is away, a value was refused)."""


@dataclass(frozen=True)
class BridgeExport:
    """What one bridge exports with one protocol (``row`` empty: nothing)."""

    bridge: str
    protocol: str  # sflow | ipfix
    row: dict[str, Any] = field(default_factory=dict)

    @property
    def managed(self) -> bool:
        return self.row.get("external_ids", {}).get(MANAGED) == "true"


@dataclass(frozen=True)
class Change:
    bridge: str
    protocol: str
    action: str  # created | updated | unchanged | removed | absent | foreign | off


class Ovs:
    """A thin ovs-vsctl client speaking its JSON output."""

    def __init__(self, db: str, timeout_s: int = 20):
        self.db, self.timeout_s = db, timeout_s

    def vsctl(self, *args: str) -> str:
        cmd = ["ovs-vsctl", f"--db={self.db}", f"--timeout={self.timeout_s}", *args]
        try:
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=self.timeout_s + 5)
        except (OSError, subprocess.TimeoutExpired) as e:
            raise OvsError(f"ovs-vsctl: {e}") from e
        if done.returncode != 0:
            raise OvsError(f"ovs-vsctl {' '.join(args[:3])}...: {done.stderr.strip()}")
        return done.stdout

    def rows(self, table: str, columns: str | None = None) -> list[dict[str, Any]]:
        cols = [f"--columns={columns}"] if columns else []
        out = json.loads(self.vsctl("--format=json", *cols, "list", table))
        return [dict(zip(out["headings"], map(_value, r), strict=True)) for r in out["data"]]


def _value(v: Any) -> Any:
    """OVSDB JSON (``["set", [...]]``, ``["map", [[k, v]]]``, ``["uuid", u]``) → Python."""
    if isinstance(v, list) and len(v) == 2 and v[0] in ("set", "map", "uuid"):
        kind, body = v
        if kind == "uuid":
            return body
        if kind == "map":
            return {k: _value(x) for k, x in body}
        items = [_value(x) for x in body]
        return None if not items else items
    return v


def desired(cfg: ExportersConfig, protocol: str) -> dict[str, Any]:
    """The columns a netobs-managed row of ``protocol`` must have (sets as sorted lists)."""
    ids = {MANAGED: "true", "netobs-node": cfg.node, "netobs-center": cfg.center, "netobs-agent": cfg.agent}
    if protocol == "sflow":
        s = cfg.sflow
        row: dict[str, Any] = {"targets": sorted(s.targets), "sampling": s.sampling, "header": s.header}
        row["polling"] = s.polling
        row["agent"] = cfg.agent or None
    else:
        i = cfg.ipfix
        row = {"targets": sorted(i.targets), "sampling": i.sampling, "obs_domain_id": i.obs_domain_id}
        row.update(obs_point_id=i.obs_point_id, cache_active_timeout=i.cache_active_timeout)
        row["cache_max_flows"] = i.cache_max_flows
    row["external_ids"] = ids
    return row


def _normal(row: dict[str, Any], keys: dict[str, Any]) -> dict[str, Any]:
    out = {}
    for k in keys:
        v = row.get(k)
        if k == "targets":
            v = sorted(v if isinstance(v, list) else [v]) if v else []
        elif isinstance(v, list):  # an optional scalar column read as a one-element set
            v = v[0] if len(v) == 1 else None
        out[k] = v
    return out


def _quote(v: Any) -> str:
    return json.dumps(str(v))


def _assignments(row: dict[str, Any]) -> list[str]:
    out = []
    for k, v in row.items():
        if v is None:
            continue
        if k == "targets":
            out.append(f"targets=[{','.join(_quote(t) for t in v)}]")
        elif k == "external_ids":
            out += [f"external_ids:{_quote(a)}={_quote(b)}" for a, b in v.items()]
        elif isinstance(v, str):
            out.append(f"{k}={_quote(v)}")
        else:
            out.append(f"{k}={v}")
    return out


class Configurator:
    """``configure``/``remove``/``status`` over the bridges of ``cfg``."""

    def __init__(self, cfg: ExportersConfig, ovs: Ovs | None = None):
        self.cfg = cfg
        self.ovs = ovs or Ovs(cfg.ovs_db, cfg.timeout_s)

    def status(self) -> list[BridgeExport]:
        """Every bridge of the node (configured or not) and what it exports."""
        rows = {p: {r["_uuid"]: r for r in self.ovs.rows(t)} for p, t in TABLES.items()}
        out = []
        for br in sorted(self.ovs.rows("Bridge", "name,sflow,ipfix"), key=lambda r: r["name"]):
            for p in TABLES:
                ref = br.get(p)
                row = rows[p].get(ref[0] if isinstance(ref, list) else ref or "", {})
                out.append(BridgeExport(br["name"], p, {k: v for k, v in row.items() if k != "_uuid"}))
        return out

    def configure(self, remove: bool = False) -> list[Change]:
        current = {(e.bridge, e.protocol): e for e in self.status()}
        changes = []
        for bridge in self.cfg.bridges:
            for p in TABLES:
                changes.append(self._one(bridge, p, current.get((bridge, p)), remove))
        return changes

    def _one(self, bridge: str, protocol: str, now: BridgeExport | None, remove: bool) -> Change:
        if now is None:
            return Change(bridge, protocol, "absent")
        wanted = not remove and getattr(self.cfg, protocol).enabled
        if now.row and not now.managed:
            return Change(bridge, protocol, "foreign")  # an operator's own exporter: left alone
        if not wanted:
            if not now.row:
                return Change(bridge, protocol, "off")
            self.ovs.vsctl("clear", "Bridge", bridge, protocol)
            return Change(bridge, protocol, "removed")
        want = desired(self.cfg, protocol)
        if now.row and _normal(now.row, want) == _normal(want, want):
            return Change(bridge, protocol, "unchanged")
        # One transaction: the new row replaces the old (which OVSDB then garbage-collects).
        self.ovs.vsctl(
            "--", "--id=@e", "create", TABLES[protocol], *_assignments(want),
            "--", "set", "Bridge", bridge, f"{protocol}=@e",
        )  # fmt: skip
        return Change(bridge, protocol, "updated" if now.row else "created")


def format_status(exports: list[BridgeExport]) -> str:
    lines = []
    for e in exports:
        if not e.row:
            lines.append(f"{e.bridge}\t{e.protocol}\toff")
            continue
        ids = e.row.get("external_ids", {})
        owner = "netobs" if e.managed else "foreign"
        extra = f"obs_domain_id={e.row.get('obs_domain_id')}" if e.protocol == "ipfix" else ""
        extra = extra or f"agent={_normal(e.row, {'agent': 0})['agent'] or '-'}"
        lines.append(
            f"{e.bridge}\t{e.protocol}\t{owner}\ttargets={','.join(_normal(e.row, {'targets': 0})['targets'])}"
            f"\tsampling={e.row.get('sampling')}\t{extra}"
            f"\tnode={ids.get('netobs-node', '-') or '-'}\tcenter={ids.get('netobs-center', '-') or '-'}"
        )
    return "\n".join(lines) + ("\n" if lines else "")


__all__ = ["BridgeExport", "Change", "Configurator", "Ovs", "OvsError", "desired", "format_status"]
