"""Kubernetes API JSON schemas for kubeconform, from the API's own OpenAPI v2 document.

The document comes from a Go module (``k8s.io/cli-runtime``'s ``artifacts/openapi/swagger.json``,
fetched through the Go module proxy), so no schema site on the internet is needed. One file per
group/version/kind, named as kubeconform's ``{{ .ResourceKind }}{{ .KindSuffix }}.json`` template
expects, each self-contained (every definition it needs is carried along) and strict (an unknown
field is an error, as ``kubectl apply --validate=strict`` makes it), with ``int-or-string``
accepting both, as the API server does.

    python deploy/tools/k8s_schemas.py SWAGGER.json OUT_DIR
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _fix(node: Any) -> Any:
    if isinstance(node, dict):
        if node.get("format") == "int-or-string":
            return {"oneOf": [{"type": "string"}, {"type": "integer"}]}
        out = {k: _fix(v) for k, v in node.items()}
        if out.get("type") == "object" and "properties" in out and "additionalProperties" not in out:
            out["additionalProperties"] = False
        return out
    if isinstance(node, list):
        return [_fix(v) for v in node]
    return node


def _refs(node: Any, into: set[str]) -> None:
    if isinstance(node, dict):
        ref = node.get("$ref")
        if isinstance(ref, str) and ref.startswith("#/definitions/"):
            into.add(ref.rsplit("/", 1)[1])
        for v in node.values():
            _refs(v, into)
    elif isinstance(node, list):
        for v in node:
            _refs(v, into)


def closure(defs: dict[str, Any], name: str) -> dict[str, Any]:
    seen: set[str] = set()
    todo = [name]
    while todo:
        n = todo.pop()
        if n in seen:
            continue
        seen.add(n)
        found: set[str] = set()
        _refs(defs[n], found)
        todo += sorted(found - seen)
    return {n: defs[n] for n in sorted(seen)}


def file_name(group: str, version: str, kind: str) -> str:
    suffix = f"-{group.split('.')[0]}-{version}" if group else f"-{version}"
    return f"{kind.lower()}{suffix}.json"


def convert(swagger: dict[str, Any], out: Path) -> int:
    defs = {k: _fix(v) for k, v in swagger["definitions"].items()}
    out.mkdir(parents=True, exist_ok=True)
    written = 0
    for name, schema in sorted(defs.items()):
        for gvk in schema.get("x-kubernetes-group-version-kind", []):
            if name.endswith("List") or gvk["kind"] in ("WatchEvent", "DeleteOptions", "Status"):
                continue
            doc = {
                "$schema": "http://json-schema.org/draft-07/schema#",
                "$ref": f"#/definitions/{name}",
                "definitions": closure(defs, name),
            }
            path = out / file_name(gvk["group"], gvk["version"], gvk["kind"])
            path.write_text(json.dumps(doc, sort_keys=True))
            written += 1
    return written


def main(argv: list[str]) -> int:
    if len(argv) != 2:
        print(__doc__, file=sys.stderr)
        return 2
    n = convert(json.loads(Path(argv[0]).read_text()), Path(argv[1]))
    print(f"k8s_schemas: {n} schemas in {argv[1]}")
    return 0 if n else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
