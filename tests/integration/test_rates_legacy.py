"""The rate queries of the ``rate_limit`` and ``link_qos`` detectors on Debian's ClickHouse 18.16.

18.16 stores times as DateTime (whole seconds) and addresses as FixedString(16); the queries
convert times with ``toFloat64`` and compare addresses with ``IPv6StringToNum`` so that the same SQL
runs there and on chdb. The same capture (conversations of pods and of an EIP, a convention and
sampling drawn at test time, times on whole seconds as 18.16 keeps them) is decoded, enriched and
stored in both, and the rows of both engines must agree. What 18.16 cannot do is keep the metadata
history (no DateTime64): there the detectors say so (a ``cold`` note) instead of judging.
"""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pytest
import yaml

from analytics import model
from analytics.config import AnalyticsConfig
from analytics.runner import Analysis
from analytics.scenario.bank import Bank
from analytics.scenario.conventions import Conversation, End, counting_config, export, inventory, write
from netobs.config import ClickHouseStoreConfig
from netobs.counting import CountingConfig
from netobs.store import make_store
from netobs_app import components
from netobs_app.capture import decoded
from netobs_app.scenario import _scenario_settings
from netobs_app.settings import Settings
from pipeline.enrich import make_enricher
from pipeline.enrich_ingest import Ingest

pytestmark = pytest.mark.integration
T0 = datetime(2026, 12, 1, 10, 0, tzinfo=UTC)
WINDOW = (T0, T0 + timedelta(minutes=20))


def _ingest(cfg, pcap) -> object:
    store = make_store(cfg.store, components.schema(cfg))
    store.start()
    ingest = Ingest(make_enricher(cfg, store), store, progress=None)
    for flows, _, rejects in decoded(str(pcap), cfg):
        ingest.add(flows, rejects)
    ingest.flush()
    assert ingest.rejects == 0
    return store


def _rows(store, sql: str, keys: tuple[str, ...]) -> pd.DataFrame:
    df = store.query_arrow(sql).to_pandas()
    df = df.sort_values([*keys, "b0", "b1"]).reset_index(drop=True)
    return df


def test_rate_queries_agree_on_18_16_and_chdb(tmp_path, clickhouse_server):
    seed = random.SystemRandom().randrange(1 << 30)
    print("seed", seed)
    rnd = random.Random(seed)
    convention = rnd.choice(("ovs_bridge_ipfix", "ovs_sflow", "probe_egress", "biflow", "netflow5"))
    bank = Bank(tenants=2)
    pods = [p for p in bank.pods if p.center == 1]
    rnd.shuffle(pods)
    ms0 = int(T0.timestamp() * 1000)
    convs = []
    for i, (a, b) in enumerate(zip(pods[:4], pods[4:8], strict=True)):
        start = ms0 + rnd.randrange(0, 300) * 1000  # whole seconds: what 18.16 keeps
        convs.append(Conversation(i, End(a.ip, a.node, a.node_ip, 1), End(b.ip, b.node, b.node_ip, 1),
                                  40000 + i, 443, 6, start, rnd.randrange(300, 900) * 1000,
                                  fwd_packets=rnd.randrange(2000, 20000), rev_packets=500, fwd_size=1000,
                                  rev_size=80, tos=rnd.choice((0, 46 << 2, 8 << 2))))  # fmt: skip
    eip = End("192.0.2.10", pods[0].node, pods[0].node_ip, 1)
    convs.append(Conversation(9, eip, End("198.51.100.9"), 40100, 443, 6, ms0 + 60_000, 600_000,
                              fwd_packets=30000, rev_packets=900, fwd_size=1200, rev_size=80, tos=46 << 2))  # fmt: skip
    exp = export(convs, convention, np.random.default_rng(rnd.randrange(1 << 30)))
    print("convention", convention, "sampling", exp.sampling)
    (tmp_path / "inventory.yaml").write_text(yaml.safe_dump(inventory(bank), sort_keys=False))
    pcap = write(exp, tmp_path / convention)
    base = _scenario_settings(Settings(), tmp_path)
    base = base.model_copy(update={"counting": CountingConfig.model_validate(counting_config())})
    legacy_cfg = base.model_copy(update={"store": base.store.model_copy(update={
        "type": "clickhouse", "database": "netobs_rates",
        "clickhouse": ClickHouseStoreConfig(host=clickhouse_server.host, port=clickhouse_server.port,
                                            connect_timeout_s=5)})})  # fmt: skip
    modern, legacy = _ingest(base, pcap), _ingest(legacy_cfg, pcap)
    try:
        assert legacy.dialect == "legacy"
        for store, cfg in ((modern, base), (legacy, legacy_cfg)):
            n = store.query_arrow(f"SELECT count() AS n FROM `{cfg.store.database}`.flows").to_pylist()[0][
                "n"
            ]
            assert n > 0
        got = {}
        for name, store, db in (("chdb", modern, base.store.database), ("18.16", legacy, "netobs_rates")):
            pods_sql = model.pod_rates(db, *WINDOW, 300)
            links_sql = model.link_rates(db, *WINDOW, 300, ["192.0.2.10"], [(46,), (8,)], remotes=True)
            got[name] = (_rows(store, pods_sql, model.POD_KEYS), _rows(store, links_sql, model.LINK_KEYS))
        for a, b in zip(got["chdb"], got["18.16"], strict=True):
            assert len(a) > 0
            pd.testing.assert_frame_equal(a, b, check_dtype=False, rtol=1e-9)
        # the gap detector's records per conversation: the same on both engines
        per = [
            store.query_arrow(model.exporter_records_per_conversation(db, *WINDOW, 300)).to_pylist()
            for store, db in ((modern, base.store.database), (legacy, "netobs_rates"))
        ]
        assert per[0] and sorted(per[0], key=str) == sorted(per[1], key=str), per
        assert all(r["records"] >= r["conversations"] > 0 for r in per[0]), per[0]
        # The detectors' limits need the metadata history, which 18.16 cannot keep: said, not guessed.
        cfg = AnalyticsConfig.model_validate(
            {"link_qos": {"classes": [{"name": "p", "dscp": ["EF"], "min_share": 0.2}]}}
        )
        analysis = Analysis(legacy.query_arrow, "netobs_rates", cfg, *WINDOW)
        assert analysis.rate_limits() == [] and "cold" in analysis.notes["rate_limit"]
        assert analysis.link_qos() == [] and "cold" in analysis.notes["link_qos"]
    finally:
        modern.stop()
        legacy.stop()
