"""Policy as code: zones and rules in YAML, evaluated inside ClickHouse into ``violations``.

``load_policy`` reads and validates a file (errors name file, line and key); ``evaluate``
pushes every rule down to SQL per window; ``analytics.policy.cli.add_parsers`` registers
``netobs policy check|test|whatif``.
"""

from analytics.policy.evaluate import create_violations, evaluate, violations_select
from analytics.policy.loader import PolicyError, load_policy, parse_policy
from analytics.policy.model import Policy
from analytics.policy.rules import RULE_SQL, rule_condition

__all__ = [
    "RULE_SQL",
    "Policy",
    "PolicyError",
    "create_violations",
    "evaluate",
    "load_policy",
    "parse_policy",
    "rule_condition",
    "violations_select",
]
