"""Load a policy file: YAML → pydantic models, with errors naming file, line and key.

The YAML is composed into nodes first, so every validation error (pydantic's ``loc`` or a
broken cross-reference) is mapped back to the mark of the node it concerns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, TypeVar

import yaml
from pydantic import BaseModel, ValidationError

from analytics.policy.model import Loc, Policy, references

M = TypeVar("M", bound=BaseModel)


class PolicyError(ValueError):
    """A policy file is invalid; the message lists ``file:line:col: key: problem`` lines."""

    def __init__(self, problems: list[str]):
        super().__init__("\n".join(problems))
        self.problems = problems


def _node_at(node: yaml.Node, loc: Loc) -> tuple[yaml.Node, list[str | int]]:
    """The deepest node reached by ``loc`` and the part of the path it matched.

    Steps that are not in the YAML (pydantic's union tags such as ``deny``) are skipped.
    """
    matched: list[str | int] = []
    for step in loc:
        child = None
        if isinstance(node, yaml.MappingNode):
            child = next((v for k, v in node.value if k.value == str(step)), None)
        elif isinstance(node, yaml.SequenceNode) and isinstance(step, int) and step < len(node.value):
            child = node.value[step]
        if child is not None:
            node = child
            matched.append(step)
    return node, matched


def _key(loc: Loc) -> str:
    out = ""
    for step in loc:
        out += f"[{step}]" if isinstance(step, int) else (f".{step}" if out else str(step))
    return out or "(top level)"


def _where(path: str, root: yaml.Node | None, loc: Loc) -> str:
    if root is None:
        return f"{path}:1:1"
    node, _ = _node_at(root, loc)
    return f"{path}:{node.start_mark.line + 1}:{node.start_mark.column + 1}"


def _clean_loc(loc: Loc, data: Any) -> Loc:
    """Drop union tags from pydantic's loc by walking the data alongside it."""
    out: list[str | int] = []
    for step in loc:
        if isinstance(data, dict) and step == data.get("type") and step not in data:
            continue  # the discriminator tag pydantic inserts
        out.append(step)
        if isinstance(data, dict):
            data = data.get(step)
        elif isinstance(data, list) and isinstance(step, int) and step < len(data):
            data = data[step]
        else:
            data = None
    return tuple(out)


def _has_deeper(errors: list, loc: tuple) -> bool:
    return any(len(o["loc"]) > len(loc) and o["loc"][: len(loc)] == loc for o in errors)


def _compose(text: str, path: str) -> tuple[yaml.Node | None, Any]:
    try:
        return yaml.compose(text, Loader=yaml.SafeLoader), yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise PolicyError([f"{where}: invalid YAML: {getattr(e, 'problem', e)}"]) from None


def validate(model: type[M], data: Any, root: yaml.Node | None, path: str) -> M:
    """``model`` from data, or :class:`PolicyError` with one ``file:line:col: key: problem`` per error."""
    try:
        return model.model_validate(data)
    except ValidationError as e:
        problems = []
        errors = e.errors()
        for err in errors:
            loc = _clean_loc(err["loc"], data)
            if err["type"] == "too_short" and _has_deeper(errors, err["loc"]):
                continue  # a consequence of an item that failed: that item's error says it
            msg = err["msg"].removeprefix("Value error, ")
            if err["type"] == "extra_forbidden":
                msg = f"unknown key (allowed here: {', '.join(_allowed(model, loc))})"
            problems.append(f"{_where(path, root, loc)}: {_key(loc)}: {msg}")
        raise PolicyError(problems) from None


def _allowed(model: type[BaseModel], loc: Loc) -> list[str]:
    """Keys accepted at the parent of ``loc`` (best effort: walks the model's fields by name)."""
    from analytics.policy.model import RULE_KINDS

    current: Any = model
    for step in loc[:-1]:
        if isinstance(step, int) or current is None:
            continue
        fields = getattr(current, "model_fields", {})
        f = next((f for n, f in fields.items() if step in (n, f.alias)), None)
        if f is None:
            current = RULE_KINDS.get(str(step)) if str(step) in RULE_KINDS else None
            continue
        current = _inner_model(f.annotation)
    if current is None or not hasattr(current, "model_fields"):
        return ["see docs/policy.md"]
    return sorted(f.alias or n for n, f in current.model_fields.items())


def _inner_model(annotation: Any) -> Any:
    import typing

    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    for arg in typing.get_args(annotation):
        found = _inner_model(arg)
        if found is not None:
            return found
    return None


def migrate_v1(data: dict[str, Any]) -> tuple[dict[str, Any], list[str]]:
    """A version 1 policy (no ``version``) as version 2 data, and what changed, in words."""
    out = dict(data, version=2)
    notes: list[str] = []
    exemptions = []
    for ex in data.get("exemptions") or []:
        ex = dict(ex) if isinstance(ex, dict) else ex
        if isinstance(ex, dict) and "review" not in ex and ex.get("expires") is not None:
            ex["review"] = str(ex["expires"])[:10]
            notes.append(
                f"exemption {ex.get('id')}: review date set to its expiry {ex['review']} (now required)"
            )
        exemptions.append(ex)
    if exemptions:
        out["exemptions"] = exemptions
    rules = []
    for r in data.get("rules") or []:
        r = dict(r) if isinstance(r, dict) else r
        if isinstance(r, dict) and r.get("type") == "residency" and "unnamed_ends" not in r:
            ext = r.pop("include_external", True)
            r["unnamed_ends"] = "violation" if ext else "ignore"
            notes.append(
                f"rule {r.get('id')}: include_external: {str(bool(ext)).lower()} is now unnamed_ends: "
                f"{r['unnamed_ends']} (version 2 ignores internet/office ends by default)"
            )
        if isinstance(r, dict) and r.get("type") == "tenant_isolation" and r.get("allowed_pairs"):
            pairs = [list(x) for x in r["allowed_pairs"]]
            r["allowed_pairs"] = pairs + [[b, a] for a, b in pairs if [b, a] not in pairs]
            notes.append(
                f"rule {r.get('id')}: allowed_pairs now say client tenant → server tenant; both orders kept"
            )
        rules.append(r)
    if rules:
        out["rules"] = rules
    if "*" in yaml.safe_dump(data.get("zones") or {}):
        notes.append(
            "'*' in a zone now matches non-empty values only (version 1 also matched ends with no name)"
        )
    return out, notes


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    """Parse and validate policy text; raises :class:`PolicyError` with located problems.

    A file without ``version: 2`` is version 1: it is migrated and the policy's notes say how."""
    root, data = _compose(text, path)
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([f"{path}:1:1: a policy is a mapping (version, zones, rules, exemptions)"])
    notes: list[str] = []
    if data.get("version", 1) == 1:
        data, changes = migrate_v1(data)
        notes.append(
            f"{path} is a version 1 policy (no 'version: 2'); read as version 2"
            + (": " + "; ".join(changes) if changes else " unchanged")
            + f". Run 'netobs policy migrate {path}' to rewrite it."
        )
    policy = validate(Policy, data, root, path)
    broken = references(policy)
    if broken:
        raise PolicyError([f"{_where(path, root, loc)}: {_key(loc)}: {msg}" for loc, msg in broken])
    policy._notes = notes
    return policy


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file (relative NetworkPolicy paths are relative to it)."""
    policy = parse_policy(Path(path).read_text(), str(path))
    out = relative_to(policy, Path(path).parent)
    out._notes = policy._notes
    return out


def relative_to(policy: Policy, base: Path) -> Policy:
    """The policy with its rules' relative ``files`` made relative to ``base``."""
    rules = []
    for rule in policy.rules:
        files = getattr(rule, "files", ())
        if files:
            rule = rule.model_copy(update={"files": tuple(str(base / f) for f in files)})
        rules.append(rule)
    return policy.model_copy(update={"rules": tuple(rules)})
