"""Kubernetes NetworkPolicy objects (``networking.k8s.io/v1``): parsing, selectors and sources.

A policy is parsed from its API form (camelCase, as ``kubectl get networkpolicy -A -o yaml``
prints it or the official client serializes it) into frozen dataclasses. A malformed object
is reported by name (``namespace/name``, or file and document when it has none) and skipped;
the others keep working. Sources: files (a file with one or several YAML documents, each a
NetworkPolicy or a ``List`` of them, or a directory of such files) and the Kubernetes API
(``list_network_policy_for_all_namespaces``).
"""

from __future__ import annotations

import ipaddress
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

INGRESS, EGRESS = "Ingress", "Egress"
#: Protocols a NetworkPolicy port may name (the API default is TCP).
L4 = {"TCP": 6, "UDP": 17, "SCTP": 132}
_OPS = ("In", "NotIn", "Exists", "DoesNotExist")


class NetworkPolicyError(ValueError):
    """One NetworkPolicy object cannot be understood; the message names it."""


@dataclass(frozen=True)
class Selector:
    """A label selector: ``matchLabels`` and ``matchExpressions``, all ANDed; empty selects all."""

    labels: tuple[tuple[str, str], ...] = ()
    expressions: tuple[tuple[str, str, tuple[str, ...]], ...] = ()

    def matches(self, labels: dict[str, str]) -> bool:
        if any(labels.get(k) != v for k, v in self.labels):
            return False
        for key, op, values in self.expressions:
            have = key in labels
            if op == "In" and not (have and labels[key] in values):
                return False
            if op == "NotIn" and have and labels[key] in values:
                return False
            if op == "Exists" and not have:
                return False
            if op == "DoesNotExist" and have:
                return False
        return True

    @property
    def everything(self) -> bool:
        return not self.labels and not self.expressions


@dataclass(frozen=True)
class IPBlock:
    cidr: str
    excepts: tuple[str, ...] = ()


@dataclass(frozen=True)
class Peer:
    """One ``from``/``to`` item: pods (by pod and/or namespace selector, ANDed) or an ipBlock."""

    pods: Selector | None = None
    namespaces: Selector | None = None
    ip_block: IPBlock | None = None


@dataclass(frozen=True)
class Port:
    """A port clause: protocol number, a port (number, name, or None for all) and ``endPort``."""

    protocol: int = 6
    port: int | str | None = None
    end_port: int | None = None


@dataclass(frozen=True)
class Rule:
    """An ingress or egress rule: empty ``peers`` matches all peers, empty ``ports`` all ports."""

    peers: tuple[Peer, ...] = ()
    ports: tuple[Port, ...] = ()


@dataclass(frozen=True)
class NetworkPolicy:
    namespace: str
    name: str
    pod_selector: Selector
    types: frozenset[str]
    ingress: tuple[Rule, ...] = ()
    egress: tuple[Rule, ...] = ()

    @property
    def ref(self) -> str:
        return f"{self.namespace}/{self.name}"


def _map(v: Any, what: str) -> dict:
    if v is None:
        return {}
    if not isinstance(v, dict):
        raise NetworkPolicyError(f"{what} must be a mapping")
    return v


def _list(v: Any, what: str) -> list:
    if v is None:
        return []
    if not isinstance(v, list):
        raise NetworkPolicyError(f"{what} must be a list")
    return v


def selector(v: Any, what: str) -> Selector:
    """A LabelSelector from its API form."""
    v = _map(v, what)
    labels = _map(v.get("matchLabels"), f"{what}.matchLabels")
    exprs = []
    for i, e in enumerate(_list(v.get("matchExpressions"), f"{what}.matchExpressions")):
        at = f"{what}.matchExpressions[{i}]"
        e = _map(e, at)
        op, values = e.get("operator"), tuple(str(x) for x in _list(e.get("values"), f"{at}.values"))
        if not e.get("key"):
            raise NetworkPolicyError(f"{at}: needs a key")
        if op not in _OPS:
            raise NetworkPolicyError(f"{at}: operator {op!r} is not one of {', '.join(_OPS)}")
        if (op in ("In", "NotIn")) != bool(values):
            raise NetworkPolicyError(f"{at}: {op} {'needs' if op in ('In', 'NotIn') else 'takes no'} values")
        exprs.append((str(e["key"]), op, values))
    return Selector(tuple(sorted((str(k), str(x)) for k, x in labels.items())), tuple(exprs))


def _ip_block(v: Any, what: str) -> IPBlock:
    v = _map(v, what)
    try:
        net = ipaddress.ip_network(str(v.get("cidr")), strict=False)
        excepts = [
            ipaddress.ip_network(str(x), strict=False) for x in _list(v.get("except"), f"{what}.except")
        ]
    except ValueError as e:
        raise NetworkPolicyError(f"{what}: {e}") from None
    for x in excepts:
        if x.version != net.version or not x.subnet_of(net):  # type: ignore[arg-type]
            raise NetworkPolicyError(f"{what}: except {x} is not inside {net}")
    return IPBlock(str(net), tuple(str(x) for x in excepts))


def _peer(v: Any, what: str) -> Peer:
    v = _map(v, what)
    if "ipBlock" in v:
        if "podSelector" in v or "namespaceSelector" in v:
            raise NetworkPolicyError(f"{what}: ipBlock cannot be combined with a selector")
        return Peer(ip_block=_ip_block(v["ipBlock"], f"{what}.ipBlock"))
    if "podSelector" not in v and "namespaceSelector" not in v:
        raise NetworkPolicyError(f"{what}: a peer needs podSelector, namespaceSelector or ipBlock")
    pods = selector(v["podSelector"], f"{what}.podSelector") if "podSelector" in v else None
    nss = selector(v["namespaceSelector"], f"{what}.namespaceSelector") if "namespaceSelector" in v else None
    return Peer(pods, nss)


def _port(v: Any, what: str) -> Port:
    v = _map(v, what)
    proto = str(v.get("protocol") or "TCP")
    if proto not in L4:
        raise NetworkPolicyError(f"{what}.protocol: {proto!r} is not TCP, UDP or SCTP")
    port, end = v.get("port"), v.get("endPort")
    if isinstance(port, str) and port.isdigit():
        port = int(port)
    if isinstance(port, int) and not 1 <= port <= 65535:
        raise NetworkPolicyError(f"{what}.port: {port} is out of range")
    if port is not None and not isinstance(port, int | str):
        raise NetworkPolicyError(f"{what}.port: {port!r} is neither a number nor a name")
    if end is not None:
        if not isinstance(port, int) or not isinstance(end, int) or not port <= end <= 65535:
            raise NetworkPolicyError(f"{what}.endPort: needs a numeric port and port <= endPort <= 65535")
    return Port(L4[proto], port, end)


def _rules(spec: dict, key: str, peers_key: str) -> tuple[Rule, ...]:
    out = []
    for i, r in enumerate(_list(spec.get(key), f"spec.{key}")):
        at = f"spec.{key}[{i}]"
        r = _map(r, at)
        peers = tuple(_peer(p, f"{at}.{peers_key}[{j}]") for j, p in enumerate(_list(r.get(peers_key), at)))
        ports = tuple(_port(p, f"{at}.ports[{j}]") for j, p in enumerate(_list(r.get("ports"), at)))
        out.append(Rule(peers, ports))
    return tuple(out)


def parse(obj: Any) -> NetworkPolicy:
    """One NetworkPolicy from its API form; :class:`NetworkPolicyError` names it when malformed."""
    meta = obj.get("metadata") if isinstance(obj, dict) else None
    name, ns = (meta or {}).get("name"), (meta or {}).get("namespace")
    ref = f"NetworkPolicy {ns}/{name}" if name and ns else "NetworkPolicy without metadata.name/namespace"
    try:
        if not name or not ns:
            raise NetworkPolicyError("metadata.name and metadata.namespace are required")
        if obj.get("kind", "NetworkPolicy") != "NetworkPolicy":
            raise NetworkPolicyError(f"kind {obj.get('kind')!r} is not NetworkPolicy")
        spec = _map(obj.get("spec"), "spec")
        if "podSelector" not in spec:
            raise NetworkPolicyError("spec.podSelector is required ({} selects every pod)")
        pods = selector(spec["podSelector"], "spec.podSelector")
        ingress = _rules(spec, "ingress", "from")
        egress = _rules(spec, "egress", "to")
        types = _list(spec.get("policyTypes"), "spec.policyTypes")
        if any(t not in (INGRESS, EGRESS) for t in types):
            raise NetworkPolicyError(f"spec.policyTypes: {types} (only Ingress and Egress)")
        if not types:  # the API's defaulting: Ingress always, Egress when egress rules are present
            types = [INGRESS] + ([EGRESS] if "egress" in spec and spec["egress"] else [])
    except NetworkPolicyError as e:
        raise NetworkPolicyError(f"{ref}: {e}") from None
    return NetworkPolicy(str(ns), str(name), pods, frozenset(types), ingress, egress)


def parse_all(objs: list[tuple[str, Any]]) -> tuple[list[NetworkPolicy], list[str]]:
    """(where, object) pairs → the valid policies (sorted by namespace/name) and the problems."""
    out: dict[str, NetworkPolicy] = {}
    problems = []
    for where, obj in objs:
        try:
            np = parse(obj)
        except NetworkPolicyError as e:
            problems.append(f"{where}: {e}")
            continue
        if np.ref in out:
            problems.append(f"{where}: NetworkPolicy {np.ref} given twice; the later one is kept")
        out[np.ref] = np
    return [out[k] for k in sorted(out)], problems


#: libyaml's safe loader when PyYAML has it (~20x faster: a bank's ~1,000 policies in a second).
_LOADER = getattr(yaml, "CSafeLoader", yaml.SafeLoader)


def _documents(path: Path) -> list[tuple[str, Any]]:
    """(where, object) of every NetworkPolicy document or List item in one file."""
    try:
        docs = list(yaml.load_all(path.read_text(), Loader=_LOADER))
    except (OSError, yaml.YAMLError) as e:
        raise NetworkPolicyError(f"{path}: cannot read NetworkPolicies: {e}") from None
    out = []
    for i, doc in enumerate(docs):
        if doc is None:
            continue
        if isinstance(doc, dict) and str(doc.get("kind", "")).endswith("List"):
            items = doc.get("items") or []
            out += [(f"{path} document {i + 1} item {j + 1}", item) for j, item in enumerate(items)]
        else:
            out.append((f"{path} document {i + 1}", doc))
    return out


def from_files(paths: list[str | Path]) -> tuple[list[NetworkPolicy], list[str]]:
    """NetworkPolicies from files and directories (``*.yaml``, ``*.yml``, ``*.json``, sorted)."""
    objs: list[tuple[str, Any]] = []
    problems = []
    for p in map(Path, paths):
        files = sorted(f for ext in ("*.yaml", "*.yml", "*.json") for f in p.glob(ext)) if p.is_dir() else [p]
        for f in files:
            try:
                objs += _documents(f)
            except NetworkPolicyError as e:
                problems.append(str(e))
    policies, bad = parse_all(objs)
    return policies, problems + bad


def from_api(api_client: Any) -> tuple[list[NetworkPolicy], list[str]]:
    """NetworkPolicies of every namespace from the Kubernetes API (the official client)."""
    from kubernetes import client

    # The raw JSON, not the client's models: one malformed item must not fail the whole list.
    api = client.NetworkingV1Api(api_client)
    resp: Any = api.list_network_policy_for_all_namespaces(_preload_content=False)  # a urllib3 response
    listed = json.loads(resp.data)
    objs = []
    for item in listed.get("items") or []:
        meta = (item.get("metadata") if isinstance(item, dict) else None) or {}
        objs.append((f"kubernetes {meta.get('namespace')}/{meta.get('name')}", item))
    return parse_all(objs)
