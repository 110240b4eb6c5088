"""Waiting until an in-process netobs has stored everything it published."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any


def settle(health: Callable[[], dict[str, Any]], timeout_s: float = 120) -> None:
    """Until ``published_flows == rows_inserted`` (non-zero) twice in a row, one second apart."""
    deadline, previous = time.monotonic() + timeout_s, None
    while time.monotonic() < deadline:
        h = health()
        counts = (h.get("published_flows"), h.get("rows_inserted"))
        if counts[0] and counts[0] == counts[1] and counts == previous:
            return
        previous = counts
        time.sleep(1.0)
    raise AssertionError(f"the pipeline did not catch up: {health()}")
