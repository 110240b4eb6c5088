"""The analysis's memory-lean paths give main's answers: rollup series built from Arrow columns and
queried a week at a time, fan-out queried a day at a time with the usual fan-out of judged sources
only, new dependencies from cross-center pairs only. Checked on a seeded store (seed drawn at test
time, printed) with spikes, drops, scans across midnight and a new cross-center pair, against
:class:`Reference`, whose methods are main's before the change (da capo, kept verbatim)."""

from __future__ import annotations

import random
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from analytics import model
from analytics.config import AnalyticsConfig
from analytics.detectors.dependency import so_far
from analytics.detectors.volume import SeriesSet
from analytics.findings import Finding
from analytics.runner import Analysis, _df, _merge_consecutive, _ns, _overlaps_any, _positions, _spans
from netobs.batch import FlowBatch
from netobs.observations import Counter

BUCKET_S = 300
START = datetime(2025, 10, 27, tzinfo=UTC)  # a Monday
EDGES = (("web", "api", 8080), ("api", "db", 5432), ("api", "cache", 6379))


class Reference(Analysis):
    """main's series, volume matrices, dependencies and fan-out (before the memory work)."""

    def series(
        self, keys: tuple[str, ...], history: bool, where: str = "", keep: bool = False
    ) -> pd.DataFrame:
        """Rollup series of the window or its history. ``keep``: a later call for the same series takes
        this result instead of querying again (the center-shift and the tenant volume views share one)."""
        key = (keys, history, where)
        if key in self._kept:
            return self._kept.pop(key)
        lo, hi = (self.h_start, self.start) if history else (self.start, self.end)
        df = _df(self.q, model.rollup_series(self.db, lo, hi, self.cfg.bucket_s, keys, where))
        if keep:
            self._kept[key] = df
        return df

    def _series_set(self, keys: tuple[str, ...], names: tuple[str, ...], where: str) -> SeriesSet | None:
        cols = [model._name(k) for k in keys]
        now, hist = self.series(keys, False, where), self.series(keys, True, where)
        if now.empty:
            return None
        frames = [now.assign(_h=False)] + ([hist.assign(_h=True)] if not hist.empty else [])
        both = pd.concat(frames, ignore_index=True)
        both["_sid"] = both.groupby(cols, sort=True).ngroup()
        ids = both.drop_duplicates("_sid").sort_values("_sid")
        entities = [
            dict(zip(names, (str(v) for v in row), strict=True)) for row in ids[cols].itertuples(index=False)
        ]
        keep = np.array([all(v not in ("", "0") for v in e.values()) for e in entities])
        h_index = pd.date_range(self.h_start, self.start, freq=self.bucket, inclusive="left", tz="UTC")

        def matrix(df: pd.DataFrame, index: pd.DatetimeIndex, col: str, before_nan: bool) -> np.ndarray:
            out = np.zeros((len(entities), len(index)))
            pos = index.get_indexer(df["t"])
            ok = pos >= 0
            np.add.at(out, (df["_sid"].to_numpy()[ok], pos[ok]), df[col].to_numpy(dtype=float)[ok])
            if before_nan:  # a series did not exist before its first record: not zero traffic
                first = np.full(len(entities), len(index))
                np.minimum.at(first, df["_sid"].to_numpy()[ok], pos[ok])
                out[np.arange(len(index))[None, :] < first[:, None]] = np.nan
            return out

        h, o = both[both["_h"]], both[~both["_h"]]
        scaled = both.groupby("_sid")[["packets", "raw_packets"]].sum()
        sampled = (scaled["packets"] > 1.5 * scaled["raw_packets"]).reindex(
            range(len(entities)), fill_value=False
        )
        sel = np.flatnonzero(keep)
        return SeriesSet(
            entities=[entities[i] for i in sel],
            hist_bytes=matrix(h, h_index, "bytes", True)[sel],
            hist_records=matrix(h, h_index, "raw_packets", True)[sel],
            hist_index=h_index,
            obs_bytes=matrix(o, self.index, "bytes", False)[sel],
            obs_records=matrix(o, self.index, "raw_packets", False)[sel],
            obs_index=self.index,
            sampled=sampled.to_numpy()[sel],
        )

    def dependencies(self) -> list[Finding]:
        cols = ["src_service", "dst_service", "src_center", "dst_center"]
        renamed = {"client_center": "src_center", "server_center": "dst_center"}
        known = _df(self.q, model.service_pairs(self.db, self.h_start, self.start)).rename(columns=renamed)
        baseline = set(map(tuple, known[cols].to_numpy())) if not known.empty else set()
        cur = _df(self.q, model.service_pairs(self.db, self.start, self.end, self.cfg.bucket_s)).rename(
            columns=renamed
        )
        history_s = (self.start - self.h_start).total_seconds()
        self.notes["new_dependency"] = {
            "known_pairs": len(baseline),
            "needs": f"{self.cfg.dependency.min_records:g} sampled packets of a pair in the window, and a rate "
            f"that history ({history_s / 86_400:g} days) could not have missed with P ≥ "
            f"{self.cfg.dependency.max_unseen_p:g}",
        }
        out: list[Finding] = []
        # Only pairs that cross centers and are not known can be new: the rest is not looked at per bucket.
        if not cur.empty:
            cross = (
                (cur["src_center"] != cur["dst_center"])
                & (cur["src_center"] != "")
                & (cur["dst_center"] != "")
            )
            cur = cur[cross]
            if baseline and not cur.empty:
                cur = cur[[k not in baseline for k in zip(*(cur[c] for c in cols), strict=True)]]
        if cur.empty:
            return out
        for t, g, elapsed in so_far(cur, self.start, self.bucket):
            found = self.detectors["new_dependency"](
                g, baseline, self.cfg.dependency, self._window(t), history_s=history_s, elapsed_s=elapsed
            )
            out += found
            baseline |= {tuple(f.entities[k] for k in cols) for f in found}  # report a new pair once
        return out

    def fanout(self) -> list[Finding]:
        """Fan-out at 5 minutes (fast scans), one hour and one day (slow ones, and what sampling leaves
        of them); a longer scale reports only sources no shorter one already did at that time."""
        cfg = self.cfg.fanout
        per_window: list[Finding] = []
        scales = (
            ("5m", self.cfg.bucket_s, cfg.min_distinct),
            ("1h", 3600, cfg.min_distinct_1h),
            ("1d", 86_400, cfg.min_distinct_1d),
        )
        cur_all = _df(
            self.q, model.fanout_scales(self.db, self.start, self.end, tuple((b, f) for _, b, f in scales))
        )
        for scale, bucket_s, floor in scales:
            cur = cur_all[cur_all["scale_s"] == bucket_s] if not cur_all.empty else cur_all
            if cur.empty:
                continue
            usual = _df(self.q, model.usual_fanout(self.db, self.h_start, self.start, bucket_s))
            usual_s = (
                pd.Series(usual["usual"].to_numpy(dtype=float), index=usual["src"])
                if not usual.empty
                else pd.Series(dtype=float)
            )
            step = timedelta(seconds=bucket_s)
            found = [
                f
                for t, g in cur.groupby("t")
                for f in self.detectors["fanout"](
                    g, usual_s, cfg, (t.to_pydatetime(), (t + step).to_pydatetime()), floor, scale
                )
            ]
            merged = _merge_consecutive(found)
            per_window += [f for f in merged if scale == "5m" or not _overlaps_any(f, per_window)]
        return per_window


def _addr(tenant: np.ndarray, center: np.ndarray, host: np.ndarray) -> np.ndarray:
    a = np.zeros((len(tenant), 16), dtype=np.uint8)
    a[:, 10:12] = 0xFF
    a[:, 12], a[:, 13], a[:, 14], a[:, 15] = 10, tenant + 1, center + 1, host
    return a


def flows(rng: np.random.Generator, days: int, tenants: int, anomalies: list[dict]) -> pa.Table:
    """One row per 5 minutes × tenant × center × edge × direction (a day/night cycle, log-normal
    noise), times the anomalies' factors, plus scan and new-pair rows."""
    b, t, c, e, d = (x.ravel() for x in np.meshgrid(
        np.arange(days * 86_400 // BUCKET_S), np.arange(tenants), np.arange(2), np.arange(len(EDGES)),
        np.arange(2), indexing="ij"))  # fmt: skip
    hour = (b * BUCKET_S / 3600.0) % 24
    level = (1 + 0.8 * np.sin((hour - 6) / 24 * 2 * np.pi)) * rng.lognormal(0, 0.08, len(b))
    for a in anomalies:
        hit = (t == a["tenant"]) & (c == a["center"]) & (b >= a["from"]) & (b < a["to"])
        level[hit] *= a["factor"]
    src = _addr(t, c, 10 + e * 16)
    dst = _addr(t, c, 26 + e * 16)
    rows = {
        "b": b, "src": np.where(d[:, None] == 0, src, dst), "dst": np.where(d[:, None] == 0, dst, src),
        "sport": np.where(d == 0, 40000 + e, np.array([x[2] for x in EDGES])[e]),
        "dport": np.where(d == 0, np.array([x[2] for x in EDGES])[e], 40000 + e),
        "bytes": (3e5 * level * np.where(d == 1, 8, 1)).astype("uint64") + 1,
        "tenant": t, "scenter": c, "dcenter": c,
        "swl": np.array([x[0] for x in EDGES], dtype=object)[e],
        "dwl": np.array([x[1] for x in EDGES], dtype=object)[e],
    }  # fmt: skip
    rows["swl"], rows["dwl"] = (
        np.where(d == 0, rows["swl"], rows["dwl"]),
        np.where(d == 0, rows["dwl"], rows["swl"]),
    )
    return _table(rows)


def _table(r: dict) -> pa.Table:
    n = len(r["b"])
    t_ms = int(START.timestamp() * 1000) + r["b"].astype("int64") * BUCKET_S * 1000
    tenants = np.array([f"tenant{i + 1:02d}" for i in range(int(r["tenant"].max()) + 1)], dtype=object)
    centers = np.array(["dc1", "dc2"], dtype=object)
    cols = {
        "time_received": t_ms + BUCKET_S * 1000, "flow_start": t_ms + 1000, "flow_end": t_ms + 270_000,
        "type": np.full(n, "ipfix", dtype=object), "direction": np.full(n, "ingress", dtype=object),
        "exporter": r["src"].view("V16").ravel(), "sampling_rate": np.full(n, 1000, dtype="uint32"),
        "src_addr": r["src"].view("V16").ravel(), "dst_addr": r["dst"].view("V16").ravel(),
        "src_port": r["sport"].astype("uint16"), "dst_port": r["dport"].astype("uint16"),
        "proto": np.full(n, 6, dtype="uint8"), "packets": r["bytes"] // 900 + 1, "bytes": r["bytes"],
        "src_tenant": tenants[r["tenant"]], "dst_tenant": tenants[r["tenant"]],
        "src_namespace": tenants[r["tenant"]], "dst_namespace": tenants[r["tenant"]],
        "src_workload": r["swl"], "dst_workload": r["dwl"],
        "src_zone": np.full(n, "production", dtype=object), "dst_zone": np.full(n, "production", dtype=object),
        "src_center": centers[r["scenter"]], "dst_center": centers[r["dcenter"]],
        "exporter_center": centers[r["scenter"]], "path": np.full(n, "intra_center", dtype=object),
    }  # fmt: skip
    return Counter().apply(pa.Table.from_batches([FlowBatch(cols).to_arrow()]), dictionary=False)


def scan(rng: np.random.Generator, tenant: int, first: int, buckets: int, per_bucket: int) -> pa.Table:
    """A source probing ``per_bucket`` new ports per 5 minutes from bucket ``first`` on."""
    b = np.repeat(np.arange(first, first + buckets), per_bucket)
    n = len(b)
    z = np.zeros(n, dtype=np.int64)
    return _table({
        "b": b, "src": _addr(z + tenant, z, z + 200), "dst": _addr(z + tenant, z, z + 201),
        "sport": z + 50000, "dport": rng.permutation(np.arange(1, 60000))[:n] % 60000 + 1,
        "bytes": np.full(n, 120, dtype="uint64"), "tenant": z + tenant, "scenter": z, "dcenter": z,
        "swl": np.full(n, "scanner", dtype=object), "dwl": np.full(n, "", dtype=object),
    })  # fmt: skip


def new_pair(tenant: int, first: int, buckets: int) -> pa.Table:
    """api in dc1 calling db in dc2, never seen before."""
    b = np.arange(first, first + buckets)
    n = len(b)
    z = np.zeros(n, dtype=np.int64)
    return _table({
        "b": b, "src": _addr(z + tenant, z, z + 26), "dst": _addr(z + tenant, z + 1, z + 42),
        "sport": z + 41000, "dport": z + 5432, "bytes": np.full(n, 5_000_000, dtype="uint64"),
        "tenant": z + tenant, "scenter": z, "dcenter": z + 1,
        "swl": np.full(n, "api", dtype=object), "dwl": np.full(n, "db", dtype=object),
    })  # fmt: skip


DAYS, TENANTS, HISTORY_DAYS = 9, 3, 6
PER_DAY = 86_400 // BUCKET_S


@pytest.fixture(scope="module")
def bank(module_store_factory):
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    # no retention: the bank's days are in the past
    store = module_store_factory(
        retention_days=0,
        rollup_1m_retention_days=0,
        rollup_1h_retention_days=0,
        exporter_health_retention_days=0,
    )
    last = (DAYS - 2) * PER_DAY  # the window: the last two days (a Monday and a Tuesday)
    anomalies = [
        {"tenant": int(rng.integers(TENANTS)), "center": int(rng.integers(2)), "factor": f,
         "from": last + int(rng.integers(0, 2 * PER_DAY - 48)), "to": 0}
        for f in (float(rng.uniform(4, 10)), float(rng.uniform(0.05, 0.3)))
    ]  # fmt: skip
    for a in anomalies:
        a["to"] = a["from"] + int(rng.integers(6, 48))
    store.insert(flows(rng, DAYS, TENANTS, anomalies))
    midnight = last + PER_DAY
    store.insert(scan(rng, 0, midnight - int(rng.integers(1, 12)), int(rng.integers(12, 30)), 30))
    store.insert(scan(rng, 1, last + int(rng.integers(0, PER_DAY)), 1, int(rng.integers(100, 200))))
    store.insert(new_pair(2, last + int(rng.integers(0, PER_DAY)), int(rng.integers(3, 40))))
    # the window starts at midnight or at a random 5-minute bucket of the day before it
    offset = timedelta(seconds=BUCKET_S * int(rng.integers(0, PER_DAY)) * int(rng.integers(0, 2)))
    return store, START + timedelta(days=DAYS - 2) - offset, START + timedelta(days=DAYS)


def _cfg() -> AnalyticsConfig:
    return AnalyticsConfig.model_validate({"volume": {"min_history": 1}})


def _run(cls: type[Analysis], store, start: datetime, end: datetime) -> tuple[list[Finding], dict]:
    a = cls(store.query_arrow, store.database, _cfg(), start, end, history_days=HISTORY_DAYS)
    return a.run(), a.notes


@pytest.mark.slow
def test_findings_and_notes_are_mains(bank):
    store, start, end = bank
    (found, notes), (ref_found, ref_notes) = (_run(cls, store, start, end) for cls in (Analysis, Reference))
    print(sorted(f.detector for f in ref_found))
    assert {"volume", "fanout", "new_dependency"} <= {f.detector for f in ref_found}
    _same([f.to_json() for f in found], [f.to_json() for f in ref_found])
    _same(notes, ref_notes)


def _same(a, b, where: str = "") -> None:
    """Equal, floats to 1e-9: the engine's float sums depend on the order it reads parts in (the
    same query twice may differ in the last bits while parts merge)."""
    if isinstance(a, dict) and isinstance(b, dict):
        assert a.keys() == b.keys(), where
        for k in a:
            _same(a[k], b[k], f"{where}.{k}")
    elif isinstance(a, list | tuple) and isinstance(b, list | tuple):
        assert len(a) == len(b), where
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            _same(x, y, f"{where}[{i}]")
    elif isinstance(a, float) or isinstance(b, float):
        assert a == pytest.approx(b, rel=1e-9, nan_ok=True), where
    else:
        assert a == b, where


@pytest.mark.slow
def test_volume_matrices_are_mains(bank):
    store, start, end = bank
    for keys, names, where in Analysis.VOLUME_VIEWS:
        new, ref = (
            cls(store.query_arrow, store.database, _cfg(), start, end, history_days=HISTORY_DAYS)._series_set(keys, names, where)
            for cls in (Analysis, Reference)
        )  # fmt: skip
        assert new is not None and ref is not None
        assert new.entities == ref.entities and len(new.entities) >= 2
        np.testing.assert_array_equal(new.sampled, ref.sampled)
        for field in ("hist_bytes", "hist_records", "obs_bytes", "obs_records"):
            # the engine's float sums may differ in the last bits between two reads (see _same)
            np.testing.assert_allclose(getattr(new, field), getattr(ref, field), rtol=1e-12, err_msg=field)
        assert new.hist_index.equals(ref.hist_index) and new.obs_index.equals(ref.obs_index)


def test_spans_cover_the_range_and_never_cut_a_period():
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = random.Random(seed)
    for _ in range(200):
        start = START + timedelta(seconds=rng.randrange(0, 40 * 86_400))
        end = start + timedelta(seconds=rng.choice([0, 1, rng.randrange(1, 20 * 86_400)]))
        periods = rng.sample([60, 300, 3600, 86_400, 420, 7 * 86_400], rng.randint(1, 3))
        step = rng.choice([86_400, 7 * 86_400])
        spans = _spans(start, end, step, periods)
        assert spans[0][0] == start and spans[-1][1] == end
        assert all(a[1] == b[0] for a, b in zip(spans, spans[1:], strict=False))
        if any(step % p for p in periods):
            assert spans == [(start, end)]
        for lo, _ in spans[1:]:  # every cut is on a period boundary of every scale
            assert all(int(lo.timestamp()) % p == 0 for p in periods)


def test_bucket_times_from_either_engine_are_the_same_instants():
    """chdb hands DateTime columns over as uint32 seconds, a server store as timestamps (any unit,
    with or without a zone): the matrices' columns come from the same instants either way."""
    seed = random.randrange(2**32)
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    secs = rng.integers(0, 2**32 - 1, 50).astype("uint32")
    expected = secs.astype("int64") * 1_000_000_000
    got = [_ns(pa.chunked_array([secs]))]
    for unit, per_s in (("s", 1), ("ms", 1_000), ("us", 1_000_000), ("ns", 1_000_000_000)):
        for tz in (None, "UTC"):
            got.append(
                _ns(pa.chunked_array([pa.array(secs.astype("int64") * per_s, pa.timestamp(unit, tz))]))
            )
    for g in got:
        np.testing.assert_array_equal(g, expected)
    index = pd.date_range(START, START + timedelta(days=1), freq="300s", inclusive="left", tz="UTC")
    ns = index.as_unit("ns").asi8  # pandas 3 keeps the index at the start's resolution (us)
    t = np.r_[ns[[0, 5, -1]], ns[0] - 300 * 10**9, ns[-1] + 300 * 10**9, ns[3] + 1]
    np.testing.assert_array_equal(
        _positions(t, index, timedelta(seconds=300)), [0, 5, len(index) - 1, -1, -1, -1]
    )
