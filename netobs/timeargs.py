"""Time arguments of every command (``analyze``, ``policy``, ``report``, ``dashboards check``), parsed one way.

Accepted, all in UTC unless an offset is given:

- ISO 8601: ``2026-06-01``, ``2026-06-01T10:00``, ``2026-06-01T10:00:00Z``, ``...+02:00``;
- ``now``, ``today`` (00:00 today), ``yesterday`` (00:00 yesterday);
- relative: ``-2h``, ``now-2h``, ``today+6h``, ``yesterday+30m`` (units s, m, h, d, w).

``-2h`` may follow its option as a separate argument (``--from -2h``): :func:`glue_negative`
rewrites such pairs before argparse sees them (argparse would take ``-2h`` for an option).
Anything else is refused with a message that lists the accepted forms (argparse exits 2).
"""

from __future__ import annotations

import argparse
import re
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta

_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
_RELATIVE = re.compile(r"^(now|today|yesterday)?\s*([+-])\s*(\d+)\s*([smhdw])$")
_NEGATIVE = re.compile(r"^-\d+[smhdw]$")
FORMS = "ISO 8601 (2026-06-01T10:00Z), now, today, yesterday, -2h, now-2h, yesterday+6h (units s m h d w)"


class TimeArgError(ValueError):
    """A time argument none of the accepted forms matches; the message lists them."""


def _anchor(name: str, now: datetime) -> datetime:
    midnight = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return {"now": now, "today": midnight, "yesterday": midnight - timedelta(days=1)}[name]


def parse_time(text: str, now: datetime | None = None) -> datetime:
    """A time argument → an aware UTC datetime (see the module docstring for the forms)."""
    now = now or datetime.now(UTC)
    s = text.strip().lower()
    if s in ("now", "today", "yesterday"):
        return _anchor(s, now)
    m = _RELATIVE.match(s)
    if m:
        delta = timedelta(**{_UNITS[m.group(4)]: int(m.group(3))})
        base = _anchor(m.group(1) or "now", now)
        return base - delta if m.group(2) == "-" else base + delta
    try:
        t = datetime.fromisoformat(text.strip().replace("Z", "+00:00").replace("z", "+00:00"))
    except ValueError:
        raise TimeArgError(f"not a time: {text!r}; use {FORMS}") from None
    return t.astimezone(UTC) if t.tzinfo else t.replace(tzinfo=UTC)


def time_arg(text: str) -> datetime:
    """argparse ``type=``: a clear usage error (exit 2) on nonsense."""
    try:
        return parse_time(text)
    except TimeArgError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def parse_duration(text: str) -> int:
    """'300', '5m', '1h', '1d', '1w' → seconds (positive)."""
    m = re.fullmatch(r"\s*(\d+)\s*([smhdw]?)\s*", text)
    if not m or int(m.group(1)) == 0:
        raise TimeArgError(f"not a duration: {text!r}; use a positive number with s, m, h, d or w (e.g. 1h)")
    return int(m.group(1)) * {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}[m.group(2)]


def duration_arg(text: str) -> int:
    """argparse ``type=`` for durations."""
    try:
        return parse_duration(text)
    except TimeArgError as e:
        raise argparse.ArgumentTypeError(str(e)) from None


def glue_negative(argv: Sequence[str]) -> list[str]:
    """``--from -2h`` → ``--from=-2h`` (a long option without a value followed by a relative time)."""
    out: list[str] = []
    for arg in argv:
        if out and _NEGATIVE.match(arg) and out[-1].startswith("--") and "=" not in out[-1]:
            out[-1] = f"{out[-1]}={arg}"
        else:
            out.append(arg)
    return out
