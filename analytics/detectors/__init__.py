"""The detectors: small pure functions over pandas data, one module each, looked up by name."""

from collections.abc import Callable
from typing import Any

from analytics.detectors.asymmetry import detect_asymmetric
from analytics.detectors.dependency import detect_new_dependencies
from analytics.detectors.dns_tunnel import detect_dns_tunnelling
from analytics.detectors.dr_traffic import detect_dr_traffic
from analytics.detectors.elephant import detect_elephants
from analytics.detectors.fanout import detect_fanout
from analytics.detectors.gaps import detect_gaps
from analytics.detectors.link_qos import detect_starved_classes
from analytics.detectors.plaintext import detect_plaintext_downgrade
from analytics.detectors.rate_limit import detect_rate_limits
from analytics.detectors.shift import detect_center_shift
from analytics.detectors.volume import detect_volume

#: Detector name (the ``detector`` field of its findings) → function. Their inputs differ (series,
#: conversations, exporter health): the runner feeds each what its docstring says.
DETECTORS: dict[str, Callable[..., Any]] = {
    "volume": detect_volume,
    "center_shift": detect_center_shift,
    "dr_traffic": detect_dr_traffic,
    "new_dependency": detect_new_dependencies,
    "asymmetric_path": detect_asymmetric,
    "fanout": detect_fanout,
    "elephant": detect_elephants,
    "collection_gap": detect_gaps,
    "dns_tunnelling": detect_dns_tunnelling,
    "plaintext_downgrade": detect_plaintext_downgrade,
    "rate_limit": detect_rate_limits,
    "link_qos": detect_starved_classes,
}

__all__ = [
    "DETECTORS",
    "detect_asymmetric",
    "detect_center_shift",
    "detect_dns_tunnelling",
    "detect_dr_traffic",
    "detect_elephants",
    "detect_fanout",
    "detect_gaps",
    "detect_new_dependencies",
    "detect_plaintext_downgrade",
    "detect_rate_limits",
    "detect_starved_classes",
    "detect_volume",
]
