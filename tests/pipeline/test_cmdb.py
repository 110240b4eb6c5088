"""CMDB exports of legacy hosts: CSV and JSON, errors reported with their line, nothing lost."""

from __future__ import annotations

import json

import pytest

from pipeline.enrich import Enricher
from pipeline.metadata.cmdb import CmdbError, apply_cmdb, load_cmdb
from pipeline.metadata.versions import MetadataStore
from tests.pipeline.test_planes import col, flows

T = 1_700_000_000_000

CSV = """\
Name;IP Address;Application;Tenant;Zone;Center;Owner
core-banking-01;172.30.5.9 | 172.30.6.9;core-banking;core;legacy;dc1;team-core
core-banking-02;172.30.5.10;core-banking;core;legacy;dc1;team-core
;172.30.5.11;nameless;core;legacy;dc1;team-core
swift-gw;172.30.999.1;swift;payments;dmz;dc2;team-swift
backup-vm;;backup;ops;backup;dc3;team-ops
clash;172.30.5.9;clash;core;legacy;dc1;team-x
core-banking-02;172.30.5.12;core-banking;core;legacy;dc1;team-core
core-banking-02;172.30.5.13;other-app;core;legacy;dc1;team-core
short-row;172.30.7.1
"""


def test_a_csv_export_with_errors_loads_the_good_rows_and_names_every_bad_one(tmp_path):
    path = tmp_path / "cmdb.csv"
    path.write_text(CSV)
    cmdb = load_cmdb(path)
    assert sorted(h.name for h in cmdb.hosts) == ["core-banking-01", "core-banking-02"]
    by = {h.name: h for h in cmdb.hosts}
    assert by["core-banking-01"].addresses() == ("172.30.5.9", "172.30.6.9")
    assert by["core-banking-02"].addresses() == ("172.30.5.10", "172.30.5.12")  # same host twice: merged
    problems = [str(p) for p in cmdb.problems]
    assert problems == [
        f"{path}:4: name: missing",
        f"{path}:5: addresses: '172.30.999.1' does not appear to be an IPv4 or IPv6 address",
        f"{path}:6: addresses: missing (at least one is needed)",
        f"{path}:7: addresses: 172.30.5.9 is already core-banking-01's (line 2); row refused",
        f"{path}:9: name: core-banking-02 already defined differently at line 3",
        f"{path}:10: (row): 2 fields, the header has 7",
    ]
    # nothing lost: every data row is loaded (or merged into a loaded host) or reported
    assert cmdb.rows == 9 and len(problems) + 3 == cmdb.rows


def test_json_export_and_time_versioned_reload(tmp_path):
    path = tmp_path / "cmdb.json"
    path.write_text(json.dumps({"hosts": [
        {"name": "mq-01", "addresses": ["172.30.8.1"], "application": "mq", "tenant": "payments", "zone": "legacy",
         "center": "dc1", "owner": "team-mq"},
        {"name": "vm-7", "addresses": "172.30.8.7", "application": "reports"},
        "not an object",
    ]}))  # fmt: skip
    meta = MetadataStore()
    cmdb = apply_cmdb(meta, path, at=T)
    assert [str(p) for p in cmdb.problems] == [f"{path}:3: (row): an object is expected, not 'not an object'"]
    path.write_text(json.dumps([{"name": "mq-01", "addresses": ["172.30.8.2"], "application": "mq"}]))
    apply_cmdb(meta, path, at=T + 60_000)
    e = Enricher(meta)
    before = e.enrich(flows([("172.30.8.1", "172.30.8.7", 1, 2, 6)], times=T + 1000))
    after = e.enrich(flows([("172.30.8.1", "172.30.8.2", 1, 2, 6)], times=T + 120_000))
    assert (col(before, "src_host"), col(before, "dst_host"), col(before, "src_tenant")) == (
        ["mq-01"],
        ["vm-7"],
        ["payments"],
    )
    assert (col(after, "src_host"), col(after, "dst_host")) == ([""], ["mq-01"])  # moved; vm-7 gone


@pytest.mark.parametrize(
    "text, message",
    [
        ("hostname,owner\nx,y\n", "no addresses column"),
        ("", "empty file"),
        ("[{]", "not valid JSON"),
        ('{"a": 1}', "a JSON list of hosts is expected"),
    ],
)
def test_an_unusable_export_is_refused_whole(tmp_path, text, message):
    path = tmp_path / ("cmdb.json" if text.startswith(("[", "{")) else "cmdb.csv")
    path.write_text(text)
    with pytest.raises(CmdbError, match=message):
        load_cmdb(path)
