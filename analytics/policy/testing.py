"""``policy test``: unit tests for a policy, like promtool's rule tests.

A test file names a policy and lists cases; each case inserts crafted enriched flows into a
fresh database and expects exactly the listed violations (each expectation matches one
violation on the keys it gives: rule, severity, src/dst entities, bytes, packets, flows).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from analytics.policy.fixtures import _ms, flows_table
from analytics.policy.loader import _compose, load_policy, validate
from analytics.policy.model import Policy
from analytics.policy.results import computed, conversations
from netobs import ddl


class Expectation(BaseModel):
    """One expected violation; only the keys given are compared (ends: any of their names)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    rule: str | None = None
    severity: str | None = None
    client: dict[str, str] | None = Field(
        None, alias="src", description="Client end's names (tenant, pod, ip...)."
    )
    server: dict[str, str] | None = Field(None, alias="dst", description="Server end's names.")
    port: int | None = None
    proto: str | None = None
    bytes: int | None = None
    packets: int | None = None
    flows: int | None = None

    def wanted(self) -> dict[str, Any]:
        return {k: v for k, v in self.model_dump().items() if v is not None}


class Case(BaseModel):
    """One test: flows in, exactly the expected violations out (``expect: []``: none)."""

    model_config = ConfigDict(extra="forbid")
    name: str
    flows: list[dict[str, Any]] = Field(
        min_length=1, description="Crafted flows (see analytics.policy.fixtures)."
    )
    expect: list[Expectation] = Field(default_factory=list)


class PodLabels(BaseModel):
    """A pod of the test's inventory, for label selectors."""

    model_config = ConfigDict(extra="forbid")
    namespace: str
    name: str
    labels: dict[str, str] = Field(default_factory=dict)


class TestFile(BaseModel):
    """A ``policy test`` file: the policy (relative to this file), the window, pods, the cases."""

    model_config = ConfigDict(extra="forbid")
    policy: str
    window: int = Field(3600, ge=60, description="Evaluation window in seconds.")
    pods: list[PodLabels] = Field(default_factory=list, description="Pods with labels (label selectors).")
    namespaces: dict[str, dict[str, str]] = Field(default_factory=dict, description="Namespace → labels.")
    tests: list[Case] = Field(min_length=1)


@dataclass
class CaseResult:
    name: str
    problems: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return not self.problems


def matches(expected: dict[str, Any], actual: dict[str, Any]) -> bool:
    """Whether every key the expectation gives has the same value in the violation (pure)."""
    for key, want in expected.items():
        have = actual.get(key)
        if isinstance(want, dict):
            if not isinstance(have, dict) or any(have.get(k, "") != str(v) for k, v in want.items()):
                return False
        elif have != want:
            return False
    return True


def check_case(expect: list[Expectation] | list[dict[str, Any]], found: list[dict[str, Any]]) -> list[str]:
    """Problems of a case: expectations without a violation, violations nobody expected."""
    left = list(found)
    problems = []
    for i, want in enumerate(expect):
        wanted: dict[str, Any] = want.wanted() if isinstance(want, Expectation) else want  # type: ignore[assignment]
        hit = next((r for r in left if matches(wanted, r)), None)
        if hit is None:
            problems.append(f"expected violation #{i + 1} not found: {want}")
        else:
            left.remove(hit)
    for r in left:
        problems.append(
            f"unexpected violation: rule={r['rule']} client={r['client']} server={r['server']} "
            f"port={r['port']}/{r['proto']} (why: {r['why']})"
        )
    return problems


def _span(flows: list[dict[str, Any]]) -> tuple[datetime, datetime]:
    times = [_ms(f["time"]) for f in flows]
    start = datetime.fromtimestamp(min(times) / 1000, UTC)
    return start, datetime.fromtimestamp(max(times) / 1000, UTC) + timedelta(milliseconds=1)


def evaluate_flows(
    store,
    policy: Policy,
    flows: list[dict[str, Any]],
    *,
    window_s: int = 3600,
    table: str = "policy_test_flows",
    evidence: int = 5,
) -> list[dict[str, Any]]:
    """Violations the policy finds in crafted flows, loaded into a scratch table of the store."""
    db = store.database
    batch = flows_table(flows)
    store.execute(f"DROP TABLE IF EXISTS `{db}`.`{table}`")
    for stmt in ddl.create_flows(db, retention_days=0, table=table):
        store.execute(stmt)
    try:
        store.insert(batch, target=table)
        start, end = _span(flows)
        found = computed(
            store.query_arrow, db, policy, start, end, window_s=window_s, table=table, evidence=evidence
        )
        return conversations(found)
    finally:
        store.execute(f"DROP TABLE IF EXISTS `{db}`.`{table}`")


def run_case(store, policy: Policy, case: Case, window_s: int) -> CaseResult:
    """One test case: its flows in, the violations found compared with the expected ones."""
    try:
        found = evaluate_flows(store, policy, case.flows, window_s=window_s, evidence=1)
    except (KeyError, ValueError) as e:
        return CaseResult(case.name, [f"bad flow: {e}"])
    return CaseResult(case.name, check_case(case.expect, found))


def run_tests(store, test_path: str | Path, policy_path: str | Path | None = None) -> list[CaseResult]:
    """Run every case of a test file (policy path relative to the test file unless given)."""
    test_path = Path(test_path)
    spec = load_tests(test_path)
    policy = load_policy(policy_path or test_path.parent / spec.policy)
    if spec.pods or spec.namespaces:
        policy = policy.with_labels([(p.namespace, p.name, p.labels) for p in spec.pods], spec.namespaces)
    elif policy.uses_labels():
        policy = policy.with_labels([], {})
    return [run_case(store, policy, case, spec.window) for case in spec.tests]


def load_tests(path: Path) -> TestFile:
    """Read a test file; errors name file, line and key (:class:`PolicyError`)."""
    from analytics.policy.loader import PolicyError

    root, data = _compose(path.read_text(), str(path))
    if not isinstance(data, dict):
        raise PolicyError([f"{path}:1:1: a test file is a mapping (policy, window, pods, tests)"])
    return validate(TestFile, data, root, str(path))
