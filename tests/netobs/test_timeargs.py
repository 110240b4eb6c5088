"""One time-argument parser for every command: the forms, the errors, and the CLI's exit 2."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from netobs.timeargs import TimeArgError, glue_negative, parse_duration, parse_time
from netobs_app.cli import build_parser, main

NOW = datetime(2026, 6, 10, 15, 30, 12, tzinfo=UTC)


@pytest.mark.parametrize(
    "text,expected",
    [
        ("2026-06-01", datetime(2026, 6, 1, tzinfo=UTC)),
        ("2026-06-01T10:00", datetime(2026, 6, 1, 10, tzinfo=UTC)),
        ("2026-06-01T10:00:00Z", datetime(2026, 6, 1, 10, tzinfo=UTC)),
        ("2026-06-01T12:00:00+02:00", datetime(2026, 6, 1, 10, tzinfo=UTC)),
        ("now", NOW),
        ("today", datetime(2026, 6, 10, tzinfo=UTC)),
        ("yesterday", datetime(2026, 6, 9, tzinfo=UTC)),
        ("-2h", datetime(2026, 6, 10, 13, 30, 12, tzinfo=UTC)),
        ("now-2h", datetime(2026, 6, 10, 13, 30, 12, tzinfo=UTC)),
        ("now - 90m", datetime(2026, 6, 10, 14, 0, 12, tzinfo=UTC)),
        ("yesterday+6h", datetime(2026, 6, 9, 6, tzinfo=UTC)),
        ("-1w", datetime(2026, 6, 3, 15, 30, 12, tzinfo=UTC)),
        ("NOW-1D", datetime(2026, 6, 9, 15, 30, 12, tzinfo=UTC)),
    ],
)
def test_forms(text, expected):
    assert parse_time(text, now=NOW) == expected


@pytest.mark.parametrize("text", ["", "soon", "-2", "now-2x", "2026-13-01", "yesterday-", "1e9"])
def test_nonsense_is_refused_with_the_forms(text):
    with pytest.raises(TimeArgError, match="use ISO 8601"):
        parse_time(text, now=NOW)


def test_durations():
    assert [parse_duration(x) for x in ("300", "5m", "1h", "1d", "1w")] == [300, 300, 3600, 86400, 604800]
    for bad in ("0", "1y", "-1h", "h"):
        with pytest.raises(TimeArgError):
            parse_duration(bad)


def test_a_negative_time_may_be_a_separate_argument():
    assert glue_negative(["policy", "check", "--from", "-2h", "--to", "now"]) == [
        "policy", "check", "--from=-2h", "--to", "now",
    ]  # fmt: skip
    assert glue_negative(["--from=-2h", "-v"]) == ["--from=-2h", "-v"]


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "--from", "-2h", "--to", "now"],
        ["analyze", "--from", "yesterday", "--to", "today"],
        ["policy", "check", "--policy", "p.yaml", "--from", "-2h"],
        ["policy", "whatif", "--policy", "a", "--candidate", "b", "--from", "now-1d", "--to", "-1h"],
        ["report", "--policy", "p.yaml", "--from", "-7d", "--out", "r.pdf"],
        ["dashboards", "check", "--end", "yesterday"],
    ],
)
def test_every_command_takes_the_same_forms(argv):
    args = build_parser().parse_args(glue_negative(argv))
    times = [v for v in vars(args).values() if isinstance(v, datetime)]
    assert times and all(t.tzinfo is not None for t in times)


@pytest.mark.parametrize(
    "argv",
    [
        ["analyze", "--from", "soon", "--to", "now"],
        ["policy", "check", "--policy", "p.yaml", "--from", "yesterdayish"],
        ["report", "--policy", "p.yaml", "--from", "last tuesday", "--out", "r.pdf"],
        ["policy", "check", "--policy", "p.yaml", "--window", "1y"],
    ],
)
def test_nonsense_exits_2_with_a_clear_message(argv, capsys):
    with pytest.raises(SystemExit) as e:
        main(argv)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert "Traceback" not in err and ("not a time" in err or "not a duration" in err)
