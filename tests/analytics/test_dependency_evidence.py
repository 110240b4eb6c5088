"""new_dependency's minimum evidence under sampling: rare known pairs that sampling left out of the
history are not called new on one sampled packet; a real new dependency still is."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta

import numpy as np
import pandas as pd

from analytics.config import DependencyConfig
from analytics.detectors import detect_new_dependencies
from analytics.detectors.dependency import PAIR, so_far

T0 = datetime(2026, 11, 2, tzinfo=UTC)
HOUR = timedelta(hours=1)
DAY_S = 86_400.0


def rows(pairs: list[tuple[str, ...]], sampled: list[float], t: datetime = T0) -> pd.DataFrame:
    return pd.DataFrame(
        [dict(zip(PAIR, p, strict=True)) | {"t": t, "bytes": 1e6 * max(k, 1), "sampled": k, "first_seen": t}
         for p, k in zip(pairs, sampled, strict=True)]
    )  # fmt: skip


def test_evidence_rule_by_hand():
    cfg, pair = DependencyConfig(), ("t1/api", "t2/db", "dc1", "dc2")
    judge = lambda k, elapsed_days, hist_days=14: detect_new_dependencies(  # noqa: E731
        rows([pair], [k]),
        set(),
        cfg,
        (T0, T0 + HOUR),
        history_s=hist_days * DAY_S,
        elapsed_s=elapsed_days * DAY_S,
    )
    assert judge(1, 1 / 24) == []  # one sampled packet: too little
    (f,) = judge(3, 1 / 24)  # three in the first hour: history could not have missed such a rate
    assert f.evidence["sampled_packets"] == 3 and f.evidence["p_unsampled_in_history"] < 1e-100
    assert judge(3, 6) != []  # exp(-3 × 14 / 6) ≈ 0.0009 < 0.001
    assert judge(3, 7, hist_days=7) == []  # exp(-3) ≈ 0.05: a rare pair history may well have missed
    # without the evidence arguments the rule is off (callers that know no sampling)
    assert detect_new_dependencies(rows([pair], [1]), set(), cfg, (T0, T0 + HOUR)) != []


def test_rare_known_pairs_under_sampling():
    """400 known pairs from a few sampled packets a month to hundreds: those sampling left out of the
    history are not reported as new (the rule without evidence reports dozens); a new pair is."""
    seed = int(os.environ.get("NETOBS_TEST_SEED", np.random.SeedSequence().entropy % 2**32))
    print(f"seed {seed}")
    rng = np.random.default_rng(seed)
    hist_days, days = 14, 7
    hist_mean = np.exp(rng.uniform(np.log(0.05), np.log(300), 400))  # sampled packets expected in history
    pairs = [(f"t{i}/api", f"t{i}/db", "dc1", "dc2") for i in range(len(hist_mean))]
    known = {p for p, m in zip(pairs, hist_mean, strict=True) if rng.poisson(m) > 0}
    new = ("t999/web", "t999/db", "dc1", "dc3")  # a real new dependency: 12 sampled packets a day
    step = 6 * HOUR  # the runner steps by 5 minutes; 6 hours keeps the test short
    per_step = step / timedelta(days=1)
    frames = []
    for h in range(int(days / per_step)):
        t = T0 + h * step
        k = rng.poisson(hist_mean / hist_days * per_step)
        frames.append(
            rows([pairs[i] for i in np.flatnonzero(k)] + [new], [*k[k > 0], rng.poisson(12 * per_step)], t)
        )
    cur = pd.concat(frames, ignore_index=True)
    cur = cur[cur["sampled"] > 0]
    cfg = DependencyConfig()
    found, naive = [], set()
    baseline = set(known)
    for t, g, elapsed in so_far(cur, T0, step):
        f = detect_new_dependencies(
            g, baseline, cfg, (t, t + step), history_s=hist_days * DAY_S, elapsed_s=elapsed
        )
        found += f
        baseline |= {tuple(x.entities[k] for k in PAIR) for x in f}
        naive |= {tuple(r) for r in g[list(PAIR)].itertuples(index=False)} - known
    names = {tuple(f.entities[k] for k in PAIR) for f in found}
    assert new in names
    false = names - {new}
    print(f"false new: {len(false)} with the evidence rule, {len(naive - {new})} without")
    # expected about one in a week here (at most ~0.01 per rare pair); without the rule ~10-30
    assert len(false) <= 8
