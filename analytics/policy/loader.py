"""Load a policy file: YAML → pydantic models, with errors naming file, line and key.

The YAML is composed into nodes first, so every validation error (pydantic's ``loc`` or a
broken cross-reference) is mapped back to the mark of the node it concerns.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from analytics.policy.model import Loc, Policy, references


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


def parse_policy(text: str, path: str = "<policy>") -> Policy:
    """Parse and validate policy text; raises :class:`PolicyError` with located problems."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f"{path}:{mark.line + 1}:{mark.column + 1}" if mark else path
        raise PolicyError([f"{where}: invalid YAML: {getattr(e, 'problem', e)}"]) from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise PolicyError([f"{path}:1:1: a policy is a mapping (zones, rules, exemptions)"])
    try:
        policy = Policy.model_validate(data)
    except ValidationError as e:
        problems = []
        errors = e.errors()
        for err in errors:
            loc = _clean_loc(err["loc"], data)
            if err["type"] == "too_short" and _has_deeper(errors, err["loc"]):
                continue  # a consequence of an item that failed: that item's error says it
            problems.append(f"{_where(path, root, loc)}: {_key(loc)}: {err['msg']}")
        raise PolicyError(problems) from None
    broken = references(policy)
    if broken:
        raise PolicyError([f"{_where(path, root, loc)}: {_key(loc)}: {msg}" for loc, msg in broken])
    return policy


def load_policy(path: str | Path) -> Policy:
    """Read and validate a policy file (relative NetworkPolicy paths are relative to it)."""
    return relative_to(parse_policy(Path(path).read_text(), str(path)), Path(path).parent)


def relative_to(policy: Policy, base: Path) -> Policy:
    """The policy with its rules' relative ``files`` made relative to ``base``."""
    rules = []
    for rule in policy.rules:
        files = getattr(rule, "files", ())
        if files:
            rule = rule.model_copy(update={"files": tuple(str(base / f) for f in files)})
        rules.append(rule)
    return policy.model_copy(update={"rules": tuple(rules)})
