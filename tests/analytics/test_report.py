"""Compliance reports on a real embedded store: content, byte-identical output, PDF pages, the chain."""

import argparse
import re
import shutil
import socket
import subprocess
from datetime import UTC, datetime

import pytest
from PIL import Image

from analytics.policy.fixtures import flows_table
from analytics.policy.model import Exemption
from analytics.report.charts import bars, ticks
from analytics.report.cli import add_parsers
from analytics.report.data import EXPORTER_HEADER, _buckets, _gaps, exporter_rows, in_force_text, review_text
from netobs.config import ChdbStoreConfig, ControlConfig, StoreConfig
from netobs.store import make_store
from netobs_app.settings import Settings
from tests.analytics.test_policy_rules import BANK_POLICY, CORP, MGMT, STAGING, WEB, flow
from tests.services._require import unavailable

RULE_IDS = ("prod-nonprod-separation", "tenant-isolation", "mgmt-from-bastion", "cross-center-services")


def _flows():
    """Six hours; exporter .1 (sFlow 1:512) every hour, exporter .2 (IPFIX 1:1) silent from 02:00 to 04:00."""
    out = []
    for h in range(6):
        t = f"2026-06-01T{h:02d}:10:00Z"
        out.append(
            flow(
                WEB,
                STAGING,
                time=t,
                sampling_rate=512,
                exporter="192.0.2.1",
                bytes=100 * (h + 1),
                path="intra_center",
            )
        )
        if h not in (2, 3):
            out.append(flow(WEB, CORP, time=t, type="ipfix", direction="ingress", exporter="192.0.2.2"))
    out.append(flow(MGMT, WEB, 22, time="2026-06-01T05:30:00Z", exporter="192.0.2.2", type="ipfix"))
    return out


@pytest.fixture
def settings(tmp_path):
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = Settings(
        store=StoreConfig(retention_days=0, chdb=ChdbStoreConfig(path=tmp_path / "chdb")),
        control=ControlConfig(listen=f"127.0.0.1:{port}"),
    )
    store = make_store(cfg.store)
    store.start()
    store.insert(flows_table(_flows()))
    store.stop()
    return cfg


@pytest.fixture
def policy(tmp_path):
    """The bank policy plus an exemption in force during the period."""
    p = tmp_path / "policy.yaml"
    p.write_text(
        BANK_POLICY.read_text()
        + "  - {id: EX-2026-077, rule: cross-center-services, from: web, to: '*', approver: cro@bank.example,"
        " reason: DR rehearsal replication, ticket: CHG-5120, expires: 2026-12-31}\n"
    )
    return p


def report(settings, capsys, *argv):
    p = argparse.ArgumentParser(prog="netobs")
    add_parsers(p.add_subparsers(dest="command", required=True))
    args = p.parse_args(["report", *argv])
    code = args.func(args, settings)
    return code, capsys.readouterr().out


def make(settings, capsys, policy, out, fmt="html"):
    code, text = report(
        settings,
        capsys,
        "--policy",
        str(policy),
        "--from",
        "2026-06-01T00:00:00Z",
        "--to",
        "2026-06-01T06:00:00Z",
        "--format",
        fmt,
        "--out",
        str(out),
    )
    assert code == 0, text
    return out


def test_html_report_content(settings, capsys, policy, tmp_path):
    markup = make(settings, capsys, policy, tmp_path / "reports" / "r1.html").read_text()
    html = re.sub(r'<span class="t">([^<]*)</span>', r"\1", markup)  # words kept whole in cells
    for rule in RULE_IDS:
        assert rule in html
    assert "192.0.2.2" in html and "66.7%" in html  # 4 of 6 hours covered
    assert "2026-06-01 02:00:00 – 2026-06-01 04:00:00" in html  # the collection gap
    assert "512" in html  # the sampling rate seen
    # Every record names a pod's namespace on an end; the ipfix pairs are counted once each.
    assert "11 flow records received in the period; 11 counted" in html
    assert "100.0% of the counted records name a pod" in html
    assert "EX-2026-077" in html and "EX-2026-014" not in html  # expired exemptions are not in force
    assert "<svg" in html and "PCI DSS 4.0 1.3.1" in html
    assert "generated 20" in html and "Every record, by category" in html
    assert "excluded: dual_direction_copy" in html or "counted, unnamed" in html
    assert (tmp_path / "reports" / "r1.html.violations.csv").read_text().startswith("rule,severity,client_ip")


@pytest.mark.slow
def test_same_data_gives_byte_identical_reports_and_a_chain(settings, capsys, policy, tmp_path):
    d = tmp_path / "reports"
    for name, fmt in (("a.html", "html"), ("b.html", "html"), ("a.pdf", "pdf"), ("b.pdf", "pdf")):
        make(settings, capsys, policy, d / name, fmt)
    code, out = report(settings, capsys, "verify", str(d))
    assert code == 0 and "OK: 4 report(s), chain intact" in out
    # the same data rendered at the same generation time: the same bytes (the PDF's CreationDate is it)
    from analytics.policy.access import open_store
    from analytics.report.cli import build

    when = datetime(2026, 12, 1, 8, 30, tzinfo=UTC)
    period = (datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, 6, tzinfo=UTC))
    with open_store(settings) as store:
        for fmt in ("html", "pdf"):
            one = build(store.query_arrow, store.database, policy, *period, fmt, generated=when)
            two = build(store.query_arrow, store.database, policy, *period, fmt, generated=when)
            assert one == two
    assert b"/CreationDate (D:20261201083000Z" in one[0]  # the last one built: the PDF

    # an edited attachment is tampering too
    csv = d / "a.html.violations.csv"
    csv.write_text(csv.read_text() + "forged\n")
    code, out = report(settings, capsys, "verify", str(d))
    assert code == 1 and "attachment a.html.violations.csv does not match its SHA-256" in out


def _pdftools():
    if not (shutil.which("pdftoppm") and shutil.which("pdftotext")):
        unavailable("poppler-utils (pdftoppm, pdftotext) not installed")


@pytest.mark.slow
def test_pdf_renders_pages_with_content(settings, capsys, policy, tmp_path):
    _pdftools()
    pdf = make(settings, capsys, policy, tmp_path / "r.pdf", "pdf")
    text = subprocess.run(
        ["pdftotext", "-layout", str(pdf), "-"], capture_output=True, text=True, check=True
    ).stdout
    for rule in RULE_IDS:
        assert rule in text
    assert "Scope and data coverage" in text and "Exemptions in force" in text and "EX-2026-077" in text
    subprocess.run(["pdftoppm", "-png", "-r", "40", str(pdf), str(tmp_path / "page")], check=True)
    pages = sorted(tmp_path.glob("page-*.png"))
    assert len(pages) >= 2
    for page in pages:
        img = Image.open(page).convert("L")
        lo, hi = img.getextrema()
        assert hi - lo > 100, f"{page.name} is blank"
    first = Image.open(pages[0]).convert("RGB")
    colours = {c for _, c in first.getcolors(1 << 16)}
    assert any(abs(r - 0xD5) < 8 and abs(g - 0x5E) < 8 and b < 12 for r, g, b in colours)  # critical bars
    # tables: grey headings, body rows white and light grey in turn (not every cell grey)
    assert _filled_lines(first, (215, 215, 215)) > 0 and _filled_lines(first, (244, 244, 244)) > 0


def _filled_lines(img, colour) -> int:
    """Pixel rows where ``colour`` covers over 40% of the width: a fill, not anti-aliased text."""
    w, h = img.size
    px = img.load()
    return sum(1 for y in range(h) if sum(px[x, y] == colour for x in range(w)) > 0.4 * w)


@pytest.mark.slow
def test_tampering_is_detected(settings, capsys, policy, tmp_path):
    d = tmp_path / "reports"
    for name in ("r1.html", "r2.html", "r3.html"):
        make(settings, capsys, policy, d / name)
    assert report(settings, capsys, "verify", str(d))[0] == 0

    original = (d / "r2.html").read_bytes()
    (d / "r2.html").write_bytes(original.replace(b"critical", b"low", 1))
    code, out = report(settings, capsys, "verify", str(d))
    assert code == 1 and "TAMPERED: r2.html: report content does not match its SHA-256" in out
    (d / "r2.html").write_bytes(original)

    ledger = (d / "ledger.json").read_text()
    (d / "ledger.json").write_text(ledger.replace('"policy": "bank-baseline"', '"policy": "other"', 1))
    code, out = report(settings, capsys, "verify", str(d))
    assert code == 1 and "r1.html: ledger entry was modified" in out and "r2.html: chain broken" in out


@pytest.mark.slow
def test_overwriting_a_recorded_report_is_refused(settings, capsys, policy, tmp_path):
    out = make(settings, capsys, policy, tmp_path / "r.html")
    out.write_text("edited")
    # same name, other content than recorded: refused (the ledger must keep matching)
    code, _ = report(
        settings,
        capsys,
        "--policy",
        str(BANK_POLICY),
        "--from",
        "2026-06-01T00:00:00Z",
        "--to",
        "2026-06-01T03:00:00Z",
        "--out",
        str(out),
    )
    assert code == 1


def test_gaps_and_bars_are_pure():
    from datetime import UTC, datetime

    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 1, 5, tzinfo=UTC)
    buckets = _buckets(start, end, 3600)
    assert _gaps({buckets[0], buckets[3]}, buckets, 3600) == [
        ["2026-06-01T01:00:00.000Z", "2026-06-01T03:00:00.000Z"],
        ["2026-06-01T04:00:00.000Z", "2026-06-01T05:00:00.000Z"],
    ]
    assert bars({"a": [1, 2], "b": [1, 0]}, 100, 10) == [
        (5.0, 5.0, 40.0, 5.0, "#0072B2"),
        (5.0, 0.0, 40.0, 5.0, "#E69F00"),
        (55.0, 0.0, 40.0, 10.0, "#0072B2"),
    ]
    assert ticks(7) == [0, 2, 4, 6, 8] and ticks(0) == [0, 1] and ticks(140) == [0, 50, 100, 150]


def test_the_exporter_table_has_one_source_for_both_formats():
    scope = {
        "exporters": [
            {
                "exporter": "192.0.2.2",
                "type": "ipfix",
                "flows": 12,
                "sampling_rates": [],
                "coverage": 0.6667,
                "gaps": [("02:00", "04:00"), ("05:00", "06:00")],
            }
        ]
    }
    assert EXPORTER_HEADER[-1] == "collection gaps"
    assert exporter_rows(scope) == [
        ["192.0.2.2", "ipfix", 12, ["none"], "66.7%", "02:00 – 04:00; 05:00 – 06:00"]
    ]


@pytest.mark.parametrize(
    ("starts", "expires", "text"),
    [
        (None, None, "whole period"),
        (None, "2026-06-09T00:00:00Z", "whole period"),  # expires after the period
        (None, "2026-06-03T00:00:00Z", "until 2026-06-03 00:00 (expired in the period)"),
        ("2026-06-02T12:00:00Z", None, "from 2026-06-02 12:00"),
        ("2026-06-02T12:00:00Z", "2026-06-04T00:00:00Z", "from 2026-06-02 12:00 until 2026-06-04 00:00 (expired in the period)"),
    ],
)  # fmt: skip
def test_exemptions_say_when_they_were_in_force_and_whether_review_is_overdue(starts, expires, text):
    """An exemption that expired part way through the period is not "in force" for all of it."""
    e = Exemption.model_validate(
        {"id": "CHG-1", "rule": "r", "approver": "CISO", "reason": "cutover", "review": "2026-06-05",
         "starts": starts, "expires": expires}
    )  # fmt: skip
    start, end = datetime(2026, 6, 1, tzinfo=UTC), datetime(2026, 6, 8, tzinfo=UTC)
    assert in_force_text(e, start, end) == text
    assert review_text(e, datetime(2026, 6, 5, 23, tzinfo=UTC)) == "2026-06-05"
    assert review_text(e, datetime(2026, 6, 6, tzinfo=UTC)) == "2026-06-05 (overdue)"
    assert review_text(e, None) == "2026-06-05"
