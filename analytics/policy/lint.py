"""``netobs policy lint``: each rule in plain words, and what is suspicious about it.

Warnings, decidable from the file (and the pod inventory, when one is given): a rule whose
condition simplifies to "never" (a label selector no pod of the inventory matches, ``allow``
with no ports...) or to "every conversation"; a zone that selects every end; a label selector
that matches no pod (or no namespace) of the inventory, naming the zone and the rules using it;
an exemption that covers every conversation of its rule, that has expired, or whose review date
has passed. Without an inventory, rules using label selectors are explained but not judged.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, date, datetime

from analytics.policy.model import Matcher, Policy
from analytics.policy.rules import RULE_SQL, exemption_match, exemption_time
from analytics.policy.sql import FALSE, TRUE, matcher_sql, zone_sql


@dataclass
class Lint:
    explanations: list[tuple[str, str]] = field(default_factory=list)  # (rule id, words)
    warnings: list[str] = field(default_factory=list)


def _everything(m: Matcher) -> bool:
    return not any(v for k, v in m.model_dump(exclude_defaults=True).items())


def _labelled(m: Matcher | None) -> bool:
    return m is not None and (
        m.pod_selector is not None or m.namespace_selector is not None or _labelled(m.not_)
    )


def _selector_words(m: Matcher) -> str:
    parts = []
    for key, sel in (("podSelector", m.pod_selector), ("namespaceSelector", m.namespace_selector)):
        if sel is not None:
            terms = [f"{k}={v}" for k, v in sel.match_labels.items()]
            terms += [f"{e.key} {e.operator} {list(e.values)}" if e.values else f"{e.key} {e.operator}"
                      for e in sel.match_expressions]  # fmt: skip
            parts.append(f"{key} {{{', '.join(terms) or 'any'}}}")
    return " and ".join(parts) or "its selector"


def _zone_users(policy: Policy, name: str) -> list[str]:
    from analytics.policy.model import _zone_refs

    return [r.id for r in policy.rules if any(ref.lstrip("!") == name for _, ref in _zone_refs(r))]


def _selectors(policy: Policy, out: Lint, source: str) -> None:
    """A label selector that matches no pod (namespace) of the inventory, with the rules it mutes."""
    for name, zone in policy.zones.items():
        for m in (*zone.match, *zone.except_):
            if not _labelled(m) or matcher_sql(m.model_copy(update={"not_": None}), "src", policy) != FALSE:
                continue
            users = _zone_users(policy, name)
            out.warnings.append(
                f"zone {name}: {_selector_words(m)} matches no pod of the inventory ({source})"
                + (f"; used by rule {', '.join(users)}" if users else "")
            )
    for e in policy.exemptions:
        for side, end in (("from", e.from_), ("to", e.to)):
            if isinstance(end, Matcher) and _labelled(end) and matcher_sql(end, "src", policy) == FALSE:
                out.warnings.append(
                    f"exemption {e.id}: its {side} end ({_selector_words(end)}) matches no pod of the inventory "
                    f"({source}): it exempts nothing"
                )


def lint(policy: Policy, today: date | None = None, inventory: str = "") -> Lint:
    """Explanations and warnings for every zone, rule and exemption (pure).

    ``policy`` with labels (:meth:`Policy.with_labels`, from an inventory named ``inventory``)
    has its label selectors judged; without, rules using them are explained only.
    """
    today = today or datetime.now(UTC).date()
    out = Lint()
    judged = not policy.uses_labels() or policy._labels is not None
    if not judged:
        policy = policy.with_labels([], {})  # offline: selectors judged against the declared labels only
        out.warnings.append(
            "label selectors are resolved against the pod inventory when the policy is evaluated; "
            "give lint the inventory (--inventory FILE, or enrich.inventory in the config) to judge "
            "the rules using them: they are not judged here"
        )
    else:
        _selectors(policy, out, inventory or "the given pods")
    for name, zone in policy.zones.items():
        if any(_everything(m) for m in zone.match) and not zone.except_:
            out.warnings.append(
                f"zone {name}: a selector with no fields matches every end (use '*' if meant)"
            )
    labelled_zones = {n for n, z in policy.zones.items() if any(map(_labelled, (*z.match, *z.except_)))}
    for rule in policy.rules:
        out.explanations.append((rule.id, rule.explain(policy)))
        if rule.type == "networkpolicy_conformance":
            continue
        cond = RULE_SQL[rule.type](policy, rule)
        if cond == FALSE and judged:
            out.warnings.append(
                f"rule {rule.id}: can never match (its conditions contradict or select nothing)"
            )
        elif cond == TRUE:
            out.warnings.append(
                f"rule {rule.id}: matches every conversation (every flow would be a violation)"
            )
        for end in ("src", "dst"):
            for ref in (getattr(rule, "from_", None) if end == "src" else getattr(rule, "to", None),):
                if (
                    not isinstance(ref, str)
                    or ref == "*"
                    or (not judged and ref.lstrip("!") in labelled_zones)
                ):
                    continue
                if zone_sql(policy, ref, end) == FALSE:
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
