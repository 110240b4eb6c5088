"""`netobs exporters configure/status` on a real Open vSwitch: create, re-apply (no change), change,
leave an operator's own exporter alone, really export with the configured identity, remove."""

from __future__ import annotations

import ipaddress
import random
import secrets
import socket
import time

import pytest

from collectors.config import ExportersConfig
from collectors.decoder import Decoder
from collectors.exporters import Configurator, format_status
from netobs_app.cli import main

pytestmark = pytest.mark.integration


def _cfg(lab, port_sflow: int, **over) -> ExportersConfig:
    base = {
        "ovs_db": f"unix:{lab.workdir}/db.sock",
        "bridges": (lab.bridge, "br-underlay0"),  # the second is absent on this node: skipped
        "node": "node-7",
        "center": "dc2",
        "agent": "192.0.2.7",
        "sflow": {"targets": [f"127.0.0.1:{port_sflow}"], "sampling": 1, "polling": 0},
        "ipfix": {"enabled": True, "targets": ["127.0.0.1:9"], "obs_domain_id": 4242},
    }
    base.update(over)
    return ExportersConfig.model_validate(base)


def _count(lab, table: str) -> int:
    return len([u for u in lab.vsctl("--bare", "--columns=_uuid", "list", table).split() if u])


def test_configure_reapply_change_foreign_remove(ovs_lab) -> None:
    lab = ovs_lab
    seed = secrets.randbits(32)
    print(f"seed={seed}")
    rng = random.Random(seed)
    rx = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    rx.bind(("127.0.0.1", 0))
    rx.settimeout(0.5)
    cfg = _cfg(lab, rx.getsockname()[1])

    first = Configurator(cfg).configure()
    assert {(c.bridge, c.protocol, c.action) for c in first} == {
        (lab.bridge, "sflow", "created"),
        (lab.bridge, "ipfix", "created"),
        ("br-underlay0", "sflow", "absent"),
        ("br-underlay0", "ipfix", "absent"),
    }
    again = Configurator(cfg).configure()
    assert {c.action for c in again if c.bridge == lab.bridge} == {"unchanged"}
    assert (_count(lab, "sflow"), _count(lab, "ipfix")) == (1, 1)
    assert (
        lab.vsctl("get", "IPFIX", lab.vsctl("get", "Bridge", lab.bridge, "ipfix"), "obs_domain_id") == "4242"
    )

    # The sampled packets really leave with the configured agent address and rate.
    lab.ping("pod1", "pod2", count=3, interval=0.05)
    datagrams, deadline = [], time.time() + 5
    while time.time() < deadline and not datagrams:
        try:
            datagrams.append(rx.recv(65535))
        except TimeoutError:
            pass
    decoded = Decoder().decode_many((d, "127.0.0.1", int(time.time() * 1000)) for d in datagrams)
    flows = decoded.flows.to_arrow() if hasattr(decoded.flows, "to_arrow") else decoded.flows
    assert datagrams, "OVS sent no sFlow datagram to the configured target"
    agents = {ipaddress.IPv6Address(a).ipv4_mapped for a in flows.column("exporter").to_pylist()}
    assert agents == {ipaddress.IPv4Address("192.0.2.7")}, agents
    assert set(flows.column("sampling_rate").to_pylist()) == {1}

    # A new sampling rate replaces the row (one transaction), still one row.
    rate = rng.randrange(2, 5000)
    changed = Configurator(_cfg(lab, 9, sflow={"targets": ["127.0.0.1:9"], "sampling": rate})).configure()
    assert {(c.protocol, c.action) for c in changed if c.bridge == lab.bridge} == {
        ("sflow", "updated"),
        ("ipfix", "unchanged"),
    }
    assert _count(lab, "sflow") == 1
    assert lab.vsctl("get", "sFlow", lab.vsctl("get", "Bridge", lab.bridge, "sflow"), "sampling") == str(rate)

    # Status names the identity; the CLI reads the same.
    text = format_status(Configurator(cfg).status())
    assert f"{lab.bridge}\tipfix\tnetobs\ttargets=127.0.0.1:9\tsampling=400\tobs_domain_id=4242" in text
    assert "node=node-7\tcenter=dc2" in text

    # An operator's own IPFIX is never touched: reported foreign, exit 1.
    lab.vsctl("clear", "Bridge", lab.bridge, "ipfix")
    lab.vsctl(
        "--",
        "--id=@i",
        "create",
        "IPFIX",
        'targets="127.0.0.1:7"',
        "--",
        "set",
        "Bridge",
        lab.bridge,
        "ipfix=@i",
    )
    foreign = Configurator(cfg).configure()
    assert (lab.bridge, "ipfix", "foreign") in {(c.bridge, c.protocol, c.action) for c in foreign}
    assert "127.0.0.1:7" in lab.vsctl("list", "IPFIX")

    removed = Configurator(cfg).configure(remove=True)
    assert {(c.protocol, c.action) for c in removed if c.bridge == lab.bridge} == {
        ("sflow", "removed"),
        ("ipfix", "foreign"),
    }
    assert _count(lab, "sflow") == 0 and _count(lab, "ipfix") == 1
    assert {c.action for c in Configurator(cfg).configure(remove=True) if c.protocol == "sflow"} == {
        "off",
        "absent",
    }


def test_cli_configure_and_status(ovs_lab, monkeypatch, capsys) -> None:
    lab = ovs_lab
    monkeypatch.setenv("NETOBS__EXPORTERS__OVS_DB", f"unix:{lab.workdir}/db.sock")
    monkeypatch.setenv("NETOBS__EXPORTERS__BRIDGES", f'["{lab.bridge}"]')
    monkeypatch.setenv("NETOBS__EXPORTERS__CENTER", "dc3")
    assert main(["exporters", "configure"]) == 0
    assert f"{lab.bridge}\tsflow\tcreated" in capsys.readouterr().out
    assert main(["exporters", "status"]) == 0
    out = capsys.readouterr().out
    assert (
        f"{lab.bridge}\tsflow\tnetobs" in out and "center=dc3" in out and f"{lab.bridge}\tipfix\toff" in out
    )


def test_ovsdb_away_is_a_clear_error(tmp_path, capsys) -> None:
    import os

    os.environ["NETOBS__EXPORTERS__OVS_DB"] = f"unix:{tmp_path}/missing.sock"
    os.environ["NETOBS__EXPORTERS__TIMEOUT_S"] = "1"
    try:
        assert main(["exporters", "status"]) == 1
    finally:
        del os.environ["NETOBS__EXPORTERS__OVS_DB"], os.environ["NETOBS__EXPORTERS__TIMEOUT_S"]
    assert "ovs-vsctl" in capsys.readouterr().err
