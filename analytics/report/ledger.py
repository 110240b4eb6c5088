"""Report integrity: a SHA-256 manifest per report and a hash chain over all reports.

``ledger.json`` beside the reports lists one entry per report written: file name, its
SHA-256 and size, the period and policy hash, the previous entry's hash and this entry's
hash (SHA-256 of the canonical JSON of the other fields), and the SHA-256 of each attachment
(the full list of violating conversations as CSV). Each report also gets
``<file>.manifest.json`` holding its entry. ``verify`` recomputes everything: an edited
report, an edited or removed entry, or a broken link is reported.
"""

from __future__ import annotations

import hashlib
import json
from pathlib import Path
from typing import Any

LEDGER = "ledger.json"
GENESIS = "0" * 64


def sha256_file(path: Path) -> str:
    h = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


def entry_hash(entry: dict[str, Any]) -> str:
    body = {k: v for k, v in entry.items() if k != "entry_sha256"}
    return hashlib.sha256(json.dumps(body, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def _load(ledger: Path) -> list[dict[str, Any]]:
    return json.loads(ledger.read_text())["reports"] if ledger.exists() else []


def _write_json(path: Path, data: Any) -> None:
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(data, sort_keys=True, indent=2) + "\n")
    tmp.replace(path)


def record(report: Path, meta: dict[str, Any]) -> dict[str, Any]:
    """Append the report to the ledger beside it and write its manifest; returns the entry."""
    ledger = report.parent / LEDGER
    entries = _load(ledger)
    entry = {
        "index": len(entries),
        "file": report.name,
        "sha256": sha256_file(report),
        "size": report.stat().st_size,
        **meta,
        "previous_sha256": entries[-1]["entry_sha256"] if entries else GENESIS,
    }
    entry["entry_sha256"] = entry_hash(entry)
    _write_json(ledger, {"version": 1, "reports": [*entries, entry]})
    _write_json(report.with_name(report.name + ".manifest.json"), entry)
    return entry


def verify(directory: Path) -> list[str]:
    """Problems found in the chain of the reports in ``directory`` (empty: intact)."""
    ledger = directory / LEDGER
    if not ledger.exists():
        return [f"{ledger}: no ledger"]
    problems = []
    previous = GENESIS
    for i, e in enumerate(_load(ledger)):
        name = e.get("file", f"entry {i}")
        if e.get("index") != i:
            problems.append(f"{name}: entry {i} has index {e.get('index')} (entries removed or reordered)")
        if e.get("previous_sha256") != previous:
            problems.append(f"{name}: chain broken (previous hash does not match entry {i - 1})")
        if entry_hash(e) != e.get("entry_sha256"):
            problems.append(f"{name}: ledger entry was modified")
        previous = entry_hash(e)  # recomputed: an edited entry breaks the next link too
        path = directory / name
        if not path.exists():
            problems.append(f"{name}: report missing")
        elif sha256_file(path) != e.get("sha256"):
            problems.append(f"{name}: report content does not match its SHA-256 (tampered)")
        for a in e.get("attachments", []):
            attached = directory / a["file"]
            if not attached.exists():
                problems.append(f"{name}: attachment {a['file']} missing")
            elif sha256_file(attached) != a["sha256"]:
                problems.append(f"{name}: attachment {a['file']} does not match its SHA-256 (tampered)")
        manifest = directory / (name + ".manifest.json")
        if manifest.exists() and json.loads(manifest.read_text()).get("entry_sha256") != e.get(
            "entry_sha256"
        ):
            problems.append(f"{name}: manifest does not match the ledger")
    return problems
