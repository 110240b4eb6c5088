"""Detector 5: asymmetric paths, judged per conversation from its observation points.

A conversation (client, server, service port, proto, by the counting model's initiator) is
asymmetric when its two directions take different paths. What shows it: an observation point
that normally sees both directions of the conversations crossing it (an OVS bridge, a probe that
reports what its node receives too, a router) saw one direction of this conversation and not
the other, while the other direction was seen elsewhere, with enough sampled packets that the
point would have seen it too (P(no sample | n expected) ≈ e⁻ⁿ). Which points are two-way is
learned from the data: the share of the cross-node conversations they saw in both directions.
Inside one center and across centers alike.

Where every point that saw a conversation is one-way (a probe exporting only what its node
sends, marked egress), both directions look the same whichever path they took: the
conversation is **not observable**, and is reported as such (never as a finding, never silently).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

import pandas as pd

from analytics.detectors._common import runs
from analytics.findings import Finding

CONV = ["client", "server", "port", "proto"]


@dataclass
class AsymmetryReport:
    """What could not be judged, and why."""

    conversations: int = 0
    judged: int = 0
    not_observable: list[dict] = field(default_factory=list)  # only one-way observation points
    one_way_only: int = 0  # one direction seen anywhere (a one-way flow, or sampling)
    thin: int = 0  # too few sampled packets to tell
    one_way_exporters: list[str] = field(default_factory=list)

    def to_json(self, limit: int = 20) -> dict:
        return {
            "conversations": self.conversations,
            "judged": self.judged,
            "not_observable": len(self.not_observable),
            "not_observable_examples": self.not_observable[:limit],
            "one_direction_only": self.one_way_only,
            "thin": self.thin,
            "one_way_exporters": self.one_way_exporters[:limit],
            "why": "a conversation seen only by exporters that report one direction (what their node sends) "
            "looks the same whichever path its directions took",
        }


def two_way_exporters(obs: pd.DataFrame, share: float = 0.5) -> set[str]:
    """Exporters that saw both directions of at least ``share`` of the cross-node conversations they saw."""
    cross = obs[(obs["client_node"] != obs["server_node"]) | (obs["client_node"] == "")]
    per = cross.groupby(["exporter", *CONV])["reply"].agg(["min", "max"])
    both = (per["min"] != per["max"]).groupby(level="exporter").mean()
    return set(both[both >= share].index)


def detect_asymmetric(
    obs: pd.DataFrame,
    bucket: timedelta,
    *,
    min_records: float = 10.0,
    two_way_share: float = 0.5,
    severity: str = "warning",
) -> tuple[list[Finding], AsymmetryReport]:
    """``obs`` rows (:func:`analytics.model.conversation_observations`): t, client, server, port, proto,
    client_center, server_center, client_node, server_node, tenant, workload, reply, exporter,
    exporter_center, sampled."""
    report = AsymmetryReport()
    if obs.empty:
        return [], report
    obs = obs.assign(reply=obs["reply"].astype(bool))
    two_way = two_way_exporters(obs, two_way_share)
    report.one_way_exporters = sorted(set(obs["exporter"]) - two_way)
    report.conversations = int(obs.groupby(CONV).ngroups)
    # Per bucket, conversation and direction: the most sampled packets any point saw.
    most = obs.groupby(["t", *CONV, "reply"])["sampled"].max().unstack("reply", fill_value=0)
    most = most.reindex(columns=[False, True], fill_value=0)
    seen = obs.groupby(["t", *CONV, "exporter"])["reply"].agg(["min", "max"]).reset_index()
    seen = seen[seen["exporter"].isin(two_way)]
    flagged: dict[tuple, list] = {}
    observable: set[tuple] = set()
    for row in seen.itertuples(index=False):
        key = (row.t, row.client, row.server, row.port, row.proto)
        observable.add(key[1:])
        if row.min != row.max:
            continue  # this point saw both directions
        missing = not bool(row.min)  # it saw only requests: the replies are missing (and vice versa)
        n_missing = float(most.loc[key, missing]) if key in most.index else 0.0
        if n_missing >= min_records:
            flagged.setdefault(key[1:], []).append((row.t, row.exporter, "reply" if missing else "request"))
    _account(obs, most, observable, two_way, min_records, report)
    first = obs.drop_duplicates(CONV).set_index(CONV)
    out = []
    for conv, hits in sorted(flagged.items(), key=lambda kv: str(kv[0])):
        info = first.loc[conv]
        times = pd.Series(True, index=pd.DatetimeIndex(sorted({h[0] for h in hits})))
        full = times.reindex(pd.date_range(times.index[0], times.index[-1], freq=bucket), fill_value=False)
        for start, end, _sel in runs(full, bucket):
            mine = [h for h in hits if start <= h[0].to_pydatetime() < end]
            where = obs[(obs[CONV] == pd.Series(dict(zip(CONV, conv, strict=True)))).all(axis=1)]
            where = where[(where["t"] >= pd.Timestamp(start)) & (where["t"] < pd.Timestamp(end))]
            fwd = sorted(set(where.loc[~where["reply"], "exporter"]))
            rev = sorted(set(where.loc[where["reply"], "exporter"]))
            client, server, port, proto = conv
            out.append(
                Finding(
                    detector="asymmetric_path",
                    type="asymmetric_path",
                    severity=severity,
                    score=float(len(mine)),
                    window_start=start,
                    window_end=end,
                    entities={
                        "tenant": str(info["tenant"]),
                        "workload": str(info["workload"]),
                        "src_center": str(info["client_center"]),
                        "dst_center": str(info["server_center"]),
                        "port": str(port),
                        "proto": str(proto),
                        "client": str(client),
                        "server": str(server),
                    },  # fmt: skip
                    summary=f"{client} → {server}:{port} takes different paths: requests seen at {fwd}, "
                    f"replies at {rev}",
                    evidence={
                        "requests_seen_at": fwd,
                        "replies_seen_at": rev,
                        "missing": sorted({f"{h[2]} at {h[1]}" for h in mine}),
                        "min_records": min_records,
                    },
                )
            )
    return out, report


def _account(obs, most, observable, two_way, min_records, report: AsymmetryReport) -> None:
    """Count what was judged and what could not be, and why."""
    per = most.groupby(level=CONV).max()
    for conv, row in per.iterrows():
        lo = min(float(row[False]), float(row[True]))
        if lo == 0:
            report.one_way_only += 1
        elif conv not in observable:
            info = obs[(obs["client"] == conv[0]) & (obs["server"] == conv[1])].iloc[0]
            report.not_observable.append(
                {
                    "client": conv[0],
                    "server": conv[1],
                    "port": str(conv[2]),
                    "tenant": str(info["tenant"]),
                    "workload": str(info["workload"]),
                    "exporters": sorted(
                        set(obs.loc[(obs["client"] == conv[0]) & (obs["server"] == conv[1]), "exporter"])
                    ),
                }  # fmt: skip
            )
        elif lo < min_records:
            report.thin += 1
        else:
            report.judged += 1
