"""Resolve outside data per evaluation: pod/namespace labels for label selectors, and
``networkpolicy_conformance`` rules (NetworkPolicies + pod inventory → SQL).

The NetworkPolicies are read (files and/or the Kubernetes API) and the pod inventory of the
evaluated range is read from the metadata store each time a policy is evaluated, so the
condition follows the cluster. The larger lookup maps of the condition are written to a lookup
table of the store through ``query`` before the condition is returned (see
:mod:`analytics.policy.netpol_sql`), so the SQL stays small at bank scale. Malformed
NetworkPolicy objects and unresolvable named ports come back as warnings naming the object;
an unreachable source is an error.
"""

from __future__ import annotations

import hashlib
import logging
from datetime import datetime
from pathlib import Path
from typing import Any

from analytics.policy import netpol
from analytics.policy.model import KubernetesApi, NetworkPolicyRule, Policy
from analytics.policy.netpol_sql import Compiler, load_inventory

log = logging.getLogger(__name__)
#: Above this, one scan's SQL may exceed the server's default max_query_size (256 KiB).
LARGE_SQL = 200_000


class SourceError(RuntimeError):
    """The NetworkPolicies of a rule could not be read (file missing, API unreachable)."""


def api_client(k: KubernetesApi) -> Any:
    """An ApiClient of the official ``kubernetes`` client for the rule's source."""
    from kubernetes import client, config

    if k.in_cluster:
        config.load_incluster_config()
        return client.ApiClient()
    return config.new_client_from_config(config_file=k.kubeconfig, context=k.context)


def network_policies(rule: NetworkPolicyRule) -> tuple[list[netpol.NetworkPolicy], list[str]]:
    """The rule's NetworkPolicies from all its sources (an object in several: the API's wins)."""
    found: dict[str, netpol.NetworkPolicy] = {}
    problems: list[str] = []
    if rule.files:
        missing = [f for f in rule.files if not Path(f).exists()]
        if missing:
            raise SourceError(f"rule {rule.id}: NetworkPolicy files not found: {', '.join(missing)}")
        policies, bad = netpol.from_files(list(rule.files))
        found.update((p.ref, p) for p in policies)
        problems += bad
    if rule.kubernetes is not None:
        try:
            policies, bad = netpol.from_api(api_client(rule.kubernetes))
        except Exception as e:  # urllib3/ApiException/config errors: all mean "cannot read the API"
            raise SourceError(f"rule {rule.id}: cannot list NetworkPolicies from Kubernetes: {e}") from None
        found.update((p.ref, p) for p in policies)
        problems += bad
    return [found[k] for k in sorted(found)], [f"rule {rule.id}: {p}" for p in problems]


def resolve(policy: Policy, query, database: str, start: datetime, end: datetime) -> tuple[Policy, list[str]]:
    """The policy with its NetworkPolicy rules compiled for [start, end), and the warnings."""
    warnings: list[str] = []
    if policy.uses_labels() and policy._labels is None:
        inventory, warnings = load_inventory(query, database, start, end)
        pods = [(v.namespace, v.name, dict(v.labels)) for v in inventory.pods]
        policy = policy.with_labels(pods, inventory.namespaces)
    rules = [r for r in policy.rules if isinstance(r, NetworkPolicyRule)]
    if not rules or all(r.id in policy._resolved for r in rules):
        return policy, warnings
    inventory, more = load_inventory(query, database, start, end)
    warnings += more
    resolved = dict(policy._resolved)
    for rule in rules:
        policies, problems = network_policies(rule)
        alias = "np_" + hashlib.sha1(rule.id.encode()).hexdigest()[:8]  # unique per rule in one query
        compiler = Compiler(policies, inventory, start, end, alias)
        condition, detail = compiler.condition(rule.replies), compiler.detail()
        table = compiler.store_lookups(query, database)
        resolved[rule.id] = (compiler.bind(condition, table), compiler.bind(detail, table))
        warnings += problems + [f"rule {rule.id}: {w}" for w in compiler.warnings]
        size = len(resolved[rule.id][0]) + len(resolved[rule.id][1])
        if size > LARGE_SQL:
            warnings.append(
                f"rule {rule.id}: {len(policies)} NetworkPolicies over {len(inventory.pods)} pod versions compile to "
                f"{size // 1024} KiB of SQL, beyond ClickHouse's default max_query_size (256 KiB): raise "
                "max_query_size (and max_ast_elements) in the netobs user's profile"
            )
    for w in warnings:
        log.warning("%s", w)
    return policy.resolved_with(resolved), warnings
