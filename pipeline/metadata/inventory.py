"""The inventory file: sites, centers, nodes, networks, namespaces and static pods in YAML.

Everything Kubernetes does not know (legacy networks, external systems, the site and
center layout), and the whole picture in tests and the embedded mode. Errors name the
file, line and key (from the YAML node marks); a malformed object is reported and
skipped while the rest of the file still loads.

An object written twice under one key is merged when only its addresses differ (a
dual-stack pod written as one entry per address family); otherwise the second entry is
refused as a problem naming the line of the first.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from pipeline.metadata.model import Center, IPAddress, Namespace, Network, Node, Obj, Pod, Service, Site, Vpc

#: Top-level list sections and the model of their items (``sites`` is nested, see below).
_FLAT: dict[str, type[Obj]] = {
    "networks": Network,
    "namespaces": Namespace,
    "pods": Pod,
    "ips": IPAddress,
    "vpcs": Vpc,
    "services": Service,
}
_SECTIONS = ("sites", *_FLAT)


@dataclass(frozen=True)
class Problem:
    """One malformed object or key: where it is and what is wrong."""

    file: str
    line: int
    key: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.key}: {self.message}"


class InventoryError(Exception):
    """The inventory cannot be used at all (unreadable, not YAML), or strict loading found problems."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


@dataclass
class Inventory:
    """The objects of one inventory file, flattened (centers know their site, nodes their center)."""

    objects: list[Obj] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)

    def of(self, kind: type[Obj]) -> list[Obj]:
        return [o for o in self.objects if isinstance(o, kind)]


def load_inventory(path: str | Path, strict: bool = False) -> Inventory:
    """Load ``path``; bad objects land in ``problems`` (or raise when ``strict``)."""
    p = Path(path)
    try:
        root = yaml.compose(p.read_text(encoding="utf-8"))
    except OSError as e:
        raise InventoryError([Problem(str(p), 0, "(file)", f"cannot read: {e.strerror}")]) from None
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        line = mark.line + 1 if mark is not None else 0
        raise InventoryError([Problem(str(p), line, "(file)", f"not valid YAML: {e}")]) from None
    inv = Inventory()
    _Loader(str(p), inv).top(root)
    if strict and inv.problems:
        raise InventoryError(inv.problems)
    return inv


class _Loader:
    """Walks the composed YAML nodes so that every problem keeps its line."""

    def __init__(self, file: str, inv: Inventory):
        self.file, self.inv = file, inv
        #: (kind, key) → (index in inv.objects, line of its first entry)
        self.seen: dict[tuple[str, str], tuple[int, int]] = {}

    def problem(self, node: yaml.Node, key: str, message: str) -> None:
        self.inv.problems.append(Problem(self.file, node.start_mark.line + 1, key, message))

    def top(self, root: yaml.Node | None) -> None:
        if root is None:
            return
        if not isinstance(root, yaml.MappingNode):
            self.problem(root, "(top level)", "must be a mapping of sections")
            return
        for knode, vnode in root.value:
            name = knode.value
            if name not in _SECTIONS:
                self.problem(knode, name, f"unknown section (expected one of {', '.join(_SECTIONS)})")
            elif name == "sites":
                for i, item in self.items(vnode, "sites"):
                    self.site(item, f"sites[{i}]")
            else:
                for i, item in self.items(vnode, name):
                    self.build(_FLAT[name], item, f"{name}[{i}]")

    def items(self, node: yaml.Node, where: str):
        if isinstance(node, yaml.ScalarNode) and node.value in ("", "~", "null"):
            return
        if not isinstance(node, yaml.SequenceNode):
            self.problem(node, where, "must be a list")
            return
        yield from enumerate(node.value)

    def site(self, node: yaml.Node, where: str) -> None:
        centers = _pop(node, "centers")
        site = self.build(Site, node, where)
        if site is None or centers is None:
            return
        for i, cnode in self.items(centers, f"{where}.centers"):
            nodes = _pop(cnode, "nodes")
            center = self.build(Center, cnode, f"{where}.centers[{i}]", site=site.key)
            if center is None or nodes is None:
                continue
            for j, nnode in self.items(nodes, f"{where}.centers[{i}].nodes"):
                self.build(Node, nnode, f"{where}.centers[{i}].nodes[{j}]", center=center.key)

    def build(self, model: type[Obj], node: yaml.Node, where: str, **extra: str) -> Obj | None:
        if not isinstance(node, yaml.MappingNode):
            self.problem(node, where, f"a {model.kind} must be a mapping")
            return None
        try:
            data = yaml.safe_load(yaml.serialize(node))
            obj = model.model_validate({**data, **extra})
        except ValidationError as e:
            name = _name_of(node)
            for err in e.errors():
                key = ".".join(str(x) for x in err["loc"])
                at = _node_at(node, err["loc"]) or node
                what = f"{model.kind} {name!r}" if name else model.kind
                self.problem(at, f"{where}.{key}" if key else where, f"{what}: {err['msg']}")
            return None
        except yaml.YAMLError as e:
            self.problem(node, where, str(e))
            return None
        return self.add(obj, node, where)

    def add(self, obj: Obj, node: yaml.Node, where: str) -> Obj | None:
        """Keep ``obj``; a second entry of its key merges into the first or is refused."""
        line = node.start_mark.line + 1
        earlier = self.seen.get((obj.kind, obj.key))
        if earlier is None:
            self.seen[(obj.kind, obj.key)] = (len(self.inv.objects), line)
            self.inv.objects.append(obj)
            return obj
        index, first_line = earlier
        merged = _merge_addresses(self.inv.objects[index], obj)
        if merged is None:
            self.problem(
                node,
                where,
                f"{obj.kind} {obj.key!r} is already defined at {self.file}:{first_line} "
                "and differs in more than its addresses",
            )
            return None
        self.inv.objects[index] = merged
        return merged


def _merge_addresses(first: Obj, second: Obj) -> Obj | None:
    """One pod with the addresses of both entries, if nothing but their addresses differ."""
    if not isinstance(first, Pod) or not isinstance(second, Pod):
        return None
    rest = {"ip", "ips"}
    if first.model_dump(exclude=rest) != second.model_dump(exclude=rest):
        return None
    addresses = list(dict.fromkeys((*first.addresses(), *second.addresses())))
    ip = first.ip or second.ip
    return first.model_copy(update={"ip": ip, "ips": tuple(a for a in addresses if a != ip)})


def _pop(node: yaml.Node, key: str) -> yaml.Node | None:
    """Take ``key`` out of a mapping node (nested lists are walked separately)."""
    if not isinstance(node, yaml.MappingNode):
        return None
    for i, (k, v) in enumerate(node.value):
        if k.value == key:
            del node.value[i]
            return v
    return None


def _node_at(root: yaml.Node, loc: tuple[Any, ...]) -> yaml.Node | None:
    """The YAML node at a pydantic error location, for its line number."""
    node: yaml.Node | None = root
    for part in loc:
        if isinstance(node, yaml.MappingNode):
            node = next((v for k, v in node.value if k.value == part), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(part, int) and part < len(node.value):
            node = node.value[part]
        else:
            return node
        if node is None:
            return None
    return node


def _name_of(node: yaml.MappingNode) -> str:
    return next((v.value for k, v in node.value if k.value == "name" and isinstance(v, yaml.ScalarNode)), "")


def apply_inventory(meta, path: str | Path, strict: bool = False, at: Any = None) -> Inventory:
    """Load ``path`` into a :class:`~pipeline.metadata.versions.MetadataStore`.

    The file is the whole truth of its source: objects removed from it are closed at
    ``at`` (default now); objects seen for the first time are valid since ever, so old
    captures are named too. Problems are logged, and the good objects still applied.
    """
    import logging
    import time

    inv = load_inventory(path, strict=strict)
    for problem in inv.problems:
        logging.getLogger(__name__).error("inventory: %s", problem)
    kinds = ("site", "center", "node", "network", "namespace", "pod", "ip", "vpc", "service")
    now = at if at is not None else int(time.time() * 1000)
    meta.replace_all(kinds, inv.objects, now, source=f"inventory:{Path(path).name}", new_from=0)
    return inv
