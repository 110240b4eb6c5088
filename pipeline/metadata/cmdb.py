"""Legacy hosts and VMs from a CMDB export (CSV or JSON), named beside the pods.

Columns (CSV header, or JSON object keys; case and ``-``/space are ignored): ``name``,
``addresses`` (one or more, separated by ``;``, ``,``, ``|`` or spaces in CSV; a list or a string
in JSON), ``application``, ``tenant``, ``zone``, ``center``, ``owner``, and optionally ``plane``
and ``cluster``. Each row becomes a :class:`~pipeline.metadata.model.Host`, time-versioned: a
reloaded export closes the versions of hosts it no longer lists, or that changed, at the reload.

Nothing is lost silently: every row is either loaded or reported as a :class:`Problem` with its
line (CSV) or index (JSON), the column and the reason. A row naming an address another host
already holds is refused, naming that host; a name given twice merges the addresses when
nothing else differs, otherwise the second row is refused.
"""

from __future__ import annotations

import csv
import io
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from pipeline.metadata.model import Host
from pipeline.metadata.versions import MetadataStore

FIELDS = ("name", "addresses", "application", "tenant", "zone", "center", "owner", "plane", "cluster")
_ALIASES = {
    "address": "addresses",
    "ip": "addresses",
    "ips": "addresses",
    "ip_address": "addresses",
    "ip_addresses": "addresses",
    "hostname": "name",
    "app": "application",
}
_SPLIT = re.compile(r"[;,|\s]+")


@dataclass(frozen=True)
class Problem:
    """One row (or the file) that could not be used, and why."""

    file: str
    line: int  # CSV: the line number; JSON: the index in the list (0: the whole file)
    column: str
    message: str

    def __str__(self) -> str:
        return f"{self.file}:{self.line}: {self.column}: {self.message}"


@dataclass
class Cmdb:
    """The hosts of one export and the rows that were refused."""

    hosts: list[Host] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)
    rows: int = 0


class CmdbError(Exception):
    """The export cannot be read at all (missing, not CSV/JSON, no name/addresses columns)."""

    def __init__(self, problems: list[Problem]):
        self.problems = problems
        super().__init__("\n".join(str(p) for p in problems))


def load_cmdb(path: str | Path) -> Cmdb:
    """Read an export; refused rows land in ``problems`` (``len(hosts) + refused == rows``)."""
    p = Path(path)
    try:
        text = p.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as e:
        raise CmdbError([Problem(str(p), 0, "(file)", f"cannot read: {e}")]) from None
    rows = _json_rows(str(p), text) if _is_json(p, text) else _csv_rows(str(p), text)
    out = Cmdb(rows=len(rows))
    by_name: dict[str, tuple[int, Host]] = {}
    owner_of: dict[str, tuple[str, int]] = {}
    for line, raw in rows:
        host = _host(str(p), line, raw, out.problems)
        if host is None:
            continue
        taken = [(a, owner_of[a]) for a in host.addresses() if a in owner_of and owner_of[a][0] != host.name]
        if taken:
            a, (other, at) = taken[0]
            out.problems.append(
                Problem(str(p), line, "addresses", f"{a} is already {other}'s (line {at}); row refused")
            )
            continue
        if host.name in by_name:
            first_line, first = by_name[host.name]
            if first.model_dump(exclude={"addresses_"}) != host.model_dump(exclude={"addresses_"}):
                out.problems.append(
                    Problem(
                        str(p), line, "name", f"{host.name} already defined differently at line {first_line}"
                    )
                )
                continue
            merged = tuple(dict.fromkeys(first.addresses() + host.addresses()))
            host = first.model_copy(update={"addresses_": merged})
        by_name[host.name] = (by_name.get(host.name, (line, host))[0], host)
        for a in host.addresses():
            owner_of.setdefault(a, (host.name, line))
    out.hosts = [h for _, h in by_name.values()]
    return out


def apply_cmdb(meta: MetadataStore, path: str | Path, at: Any = None) -> Cmdb:
    """Load the export and make its hosts the whole truth of this file (time-versioned)."""
    import time

    cmdb = load_cmdb(path)
    now = at if at is not None else int(time.time() * 1000)
    meta.replace_all(["host"], cmdb.hosts, now, source=f"cmdb:{Path(path).name}", new_from=0)
    return cmdb


def _is_json(p: Path, text: str) -> bool:
    return p.suffix.lower() == ".json" or text.lstrip()[:1] in ("[", "{")


def _key(name: str) -> str:
    k = re.sub(r"[\s\-]+", "_", str(name).strip().lower())
    return _ALIASES.get(k, k)


def _csv_rows(file: str, text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        dialect = csv.Sniffer().sniff(text.split("\n", 1)[0], delimiters=",;\t")
    except csv.Error:
        dialect = csv.excel  # type: ignore[assignment]
    reader = csv.reader(io.StringIO(text), dialect)
    try:
        header = [_key(h) for h in next(reader)]
    except StopIteration:
        raise CmdbError([Problem(file, 1, "(header)", "empty file")]) from None
    missing = [f for f in ("name", "addresses") if f not in header]
    if missing:
        raise CmdbError([Problem(file, 1, "(header)", f"no {' and no '.join(missing)} column")])
    rows = []
    for values in reader:
        if not any(v.strip() for v in values):
            continue
        row: dict[str, Any] = dict(zip(header, values, strict=False))
        if len(values) != len(header):
            row["__width__"] = f"{len(values)} fields, the header has {len(header)}"
        rows.append((reader.line_num, row))
    return rows


def _json_rows(file: str, text: str) -> list[tuple[int, dict[str, Any]]]:
    try:
        data = json.loads(text)
    except json.JSONDecodeError as e:
        raise CmdbError([Problem(file, e.lineno, "(file)", f"not valid JSON: {e.msg}")]) from None
    if isinstance(data, dict):  # {"hosts": [...]} or {"data": [...]}
        data = next((v for v in data.values() if isinstance(v, list)), None)
    if not isinstance(data, list):
        raise CmdbError([Problem(file, 0, "(file)", "a JSON list of hosts is expected")])
    return [(i + 1, {_key(k): v for k, v in item.items()} if isinstance(item, dict) else {"__bad__": item})
            for i, item in enumerate(data)]  # fmt: skip


def _host(file: str, line: int, raw: dict[str, Any], problems: list[Problem]) -> Host | None:
    if "__bad__" in raw:
        problems.append(Problem(file, line, "(row)", f"an object is expected, not {raw['__bad__']!r}"))
        return None
    if "__width__" in raw:
        problems.append(Problem(file, line, "(row)", raw["__width__"]))
        return None
    addrs = raw.get("addresses")
    if isinstance(addrs, str):
        addrs = [a for a in _SPLIT.split(addrs) if a]
    values = {f: str(raw.get(f) or "").strip() for f in FIELDS if f != "addresses"}
    try:
        return Host.model_validate({"addresses": addrs or [], **values})
    except ValidationError as e:
        err = e.errors()[0]
        column = (
            "addresses"
            if err["loc"] and err["loc"][0] in ("addresses", "addresses_")
            else str(err["loc"][0] if err["loc"] else "(row)")
        )
        problems.append(Problem(file, line, column, _message(err)))
        return None


def _message(err: Any) -> str:
    msg = str(err.get("msg", ""))
    if err.get("type") == "too_short":
        return "missing (at least one is needed)"
    if err.get("type") == "string_too_short":
        return "missing"
    return msg.removeprefix("Value error, ")
