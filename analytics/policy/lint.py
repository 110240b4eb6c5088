"""``netobs policy lint``: each rule in plain words, and what is suspicious about it.

Warnings, all decidable from the file alone: a rule whose condition simplifies to "never"
(a label selector no declared pod matches, ``allow`` with no ports...) or to "every
conversation"; a zone that selects every end; an exemption that covers every conversation of
its rule, that has expired, or whose review date has passed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from analytics.policy.model import Matcher, Policy
from analytics.policy.rules import RULE_SQL, exemption_match, exemption_time
from analytics.policy.sql import FALSE, TRUE, zone_sql


@dataclass
class Lint:
    explanations: list[tuple[str, str]] = field(default_factory=list)  # (rule id, words)
    warnings: list[str] = field(default_factory=list)


def _everything(m: Matcher) -> bool:
    return not any(v for k, v in m.model_dump(exclude_defaults=True).items())


def lint(policy: Policy, today: date | None = None) -> Lint:
    """Explanations and warnings for every zone, rule and exemption (pure)."""
    today = today or datetime.now(UTC).date()
    out = Lint()
    if policy.uses_labels() and policy._labels is None:
        policy = policy.with_labels([], {})  # offline: selectors judged against the declared labels only
        out.warnings.append(
            "label selectors are resolved against the pod inventory when the policy is evaluated; "
            "lint cannot see it, so rules using them are not judged here"
        )
    for name, zone in policy.zones.items():
        if any(_everything(m) for m in zone.match) and not zone.except_:
            out.warnings.append(
                f"zone {name}: a selector with no fields matches every end (use '*' if meant)"
            )
    for rule in policy.rules:
        out.explanations.append((rule.id, rule.explain(policy)))
        if rule.type == "networkpolicy_conformance":
            continue
        cond = RULE_SQL[rule.type](policy, rule)
        if cond == FALSE and not policy.uses_labels():
            out.warnings.append(
                f"rule {rule.id}: can never match (its conditions contradict or select nothing)"
            )
        elif cond == TRUE:
            out.warnings.append(
                f"rule {rule.id}: matches every conversation (every flow would be a violation)"
            )
        for end in ("src", "dst"):
            for ref in (getattr(rule, "from_", None) if end == "src" else getattr(rule, "to", None),):
                if isinstance(ref, str) and ref != "*" and zone_sql(policy, ref, end) == FALSE:
                    out.warnings.append(f"rule {rule.id}: zone {ref} selects no end")
    for e in policy.exemptions:
        rule = policy.rule(e.rule)
        if e.expires is not None and e.expires.date() < today:
            out.warnings.append(f"exemption {e.id}: expired on {e.expires:%Y-%m-%d}; remove it")
        if e.review < today:
            out.warnings.append(f"exemption {e.id}: review date {e.review} has passed")
        if exemption_match(policy, e) == TRUE and exemption_time(e) == TRUE:
            out.warnings.append(f"exemption {e.id}: covers every conversation of rule {rule.id} for ever")
        if e.expires is None:
            out.explanations.append((e.id, f"Exemption from {rule.id}: permanent, review by {e.review}."))
        else:
            out.explanations.append(
                (
                    e.id,
                    f"Exemption from {rule.id} until {e.expires:%Y-%m-%dT%H:%M:%SZ} (flow time), review by {e.review}.",
                )
            )
    return out


def render(policy: Policy, result: Lint) -> str:
    lines = [f"policy {policy.name}: {len(policy.rules)} rules, {len(policy.zones)} zones, "
             f"{len(policy.exemptions)} exemptions"]  # fmt: skip
    lines += [f"  {rid}: {words}" for rid, words in result.explanations]
    lines += [f"warning: {w}" for w in result.warnings]
    return "\n".join(lines) + "\n"
