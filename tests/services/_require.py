"""Skip or fail when a real service cannot be had.

On a laptop an integration test skips with the reason; with ``NETOBS_REQUIRE_SERVICES=1``
(CI sets it) the same situation is a failure, so CI can never go green by skipping.
"""

from __future__ import annotations

import os

import pytest


def required() -> bool:
    return os.environ.get("NETOBS_REQUIRE_SERVICES", "") not in ("", "0", "false", "no")


def unavailable(reason: str) -> None:
    """Skip (laptop) or fail (CI) because a service is not available."""
    if required():
        pytest.fail(f"required service unavailable: {reason}", pytrace=False)
    pytest.skip(reason)
