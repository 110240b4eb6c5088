"""The audit log's JSONEachRow path on chdb (what ``netobs run``/``ui`` use: a third of the CPU of an
Arrow insert per row): hostile SQL texts come back byte for byte, the hash chain verifies, and the
text never runs as SQL."""

from __future__ import annotations

import random

from netobs.audit import AUDIT, AUDIT_TABLE, AuditLog, verify

PIECES = ("'", '"', "\\", "\n", "\r", "\t", "\x00", "\u2028", "\U0001f4a3", "é", "}", "{", "\\u0000",
          "FORMAT JSONEachRow ", "'); DROP TABLE netobs.flows; --", "\\'", "SELECT 1", " ", "a")  # fmt: skip


def test_hostile_texts_round_trip_and_the_chain_verifies(store):
    seed = random.randrange(2**31)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for stmt in AUDIT_TABLE.create(store.database, retention_days=30):
        store.execute(stmt)
    store.execute(f"CREATE TABLE IF NOT EXISTS `{store.database}`.canary (a UInt8) ENGINE = Memory")
    json_log = AuditLog(
        lambda t, target: store.insert(t, target=target),
        store.query_arrow,
        store.database,
        insert_json=store.insert_json,
    )
    json_log.start()
    texts = ["".join(rng.choice(PIECES) for _ in range(rng.randrange(0, 30))) for _ in range(40)]
    for i, text in enumerate(texts):
        json_log.record(principal=f"p{i % 3}", role="viewer", route="/query", sql=text, outcome="ok", rows=i)
    # the Arrow path continues the same chain (a process without insert_json, e.g. a server store)
    arrow_log = AuditLog(lambda t, target: store.insert(t, target=target), store.query_arrow, store.database)
    arrow_log.start()
    arrow_log.record(principal="arrow", sql=texts[0], outcome="ok")
    rows = store.query_arrow(f"SELECT * FROM `{store.database}`.{AUDIT} ORDER BY seq").to_pylist()
    assert [r["sql"] for r in rows] == [*texts, texts[0]]
    assert [r["rows"] for r in rows[:-1]] == list(range(len(texts)))
    assert json_log.failures == 0 and verify(rows) == []
    assert store.query_arrow(f"EXISTS TABLE `{store.database}`.canary").column(0)[0].as_py() == 1
