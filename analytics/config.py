"""Configuration of the analytics and of scheduled policy checks: one section per detector,
planned windows, link capacities, the schedule inside ``netobs run``.

The analytics own these sections; the composition root (``netobs_app.settings``) mounts them
in the one Settings tree as ``analytics`` and ``policy``.
"""

from __future__ import annotations

from datetime import datetime
from pathlib import Path

from pydantic import Field, field_validator

from netobs.config_base import Section

#: What a planned window expects by default: every detector but the ones that find attacks.
EXPECTED_EFFECTS: dict[str, tuple[str, ...]] = {
    "maintenance": (
        "volume", "center_shift", "collection_gap", "asymmetric_path", "new_dependency", "dr_traffic", "elephant",
    ),
    "dr_drill": ("volume", "center_shift", "dr_traffic", "new_dependency", "asymmetric_path", "elephant"),
}  # fmt: skip


class Window(Section):
    """A planned period (a DR drill, a maintenance window): what it concerns and what it is expected to do.

    A finding inside it (its window overlaps, one bucket of export lag allowed), about one of its
    centers and tenants (empty: all), from a detector in ``expect``, is reported as ``info`` with
    ``planned: true`` and the window's note. Other findings in the same hours (a port scan during a
    drill) keep their severity: they are not what was planned.
    """

    start: datetime
    end: datetime
    kind: str = Field("maintenance", pattern="^(maintenance|dr_drill)$")
    centers: tuple[str, ...] = Field((), description="Centers concerned (empty: all).")
    tenants: tuple[str, ...] = Field((), description="Tenants concerned (empty: all).")
    expect: tuple[str, ...] | None = Field(
        None,
        description="Detectors whose findings are expected effects (default: by kind, every detector but "
        "fanout; collection_gap for maintenance only).",
    )
    note: str = ""

    def covers(self, t: datetime, center: str | None = None) -> bool:
        return self.start <= t < self.end and (not self.centers or center is None or center in self.centers)

    @property
    def expected(self) -> tuple[str, ...]:
        return self.expect if self.expect is not None else EXPECTED_EFFECTS[self.kind]


class VolumeConfig(Section):
    spike_z: float = Field(
        5.0,
        gt=0,
        description="z of the log ratio to the baseline (history spread + sampling noise) for a spike.",
    )
    drop_z: float = Field(5.0, gt=0, description="z below minus this is a drop (same statistic: symmetric).")
    min_ratio: float = Field(
        1.5,
        gt=1,
        description="A spike is at least this many times the baseline, a drop at most 1/this. The baseline "
        "is a median of few history values and misses by 10-20 % at times: a drop to half measured against "
        "one that ran low still passes 1/1.5 (it read 0.59x, under the old 1/1.8, on a 14-day bank).",
    )
    run_z: float = Field(
        1.0,
        ge=0,
        description="At hourly and daily scales, 2 to 8 consecutive periods each past this z (both tests) "
        "whose combined z (their sum over the root of their number) passes spike_z/drop_z and whose mean "
        "log ratio passes min_ratio are one anomaly: a sustained halving over a few hours (0: off).",
    )
    min_records: float = Field(
        10.0, ge=0, description="Sampled packets a period must be expected to hold to be judged at its scale."
    )
    min_expected: float = Field(
        1e5,
        ge=0,
        description="Ignore periods whose baseline and observation are both below this many bytes "
        "per 5 minutes.",
    )
    min_history: int = Field(
        3, ge=1, description="History periods (days or weeks) a slot needs before it is judged."
    )
    month_end_days: int = Field(
        2, ge=0, le=7, description="The last N days of a month have a baseline of their own (0: none)."
    )
    scales: tuple[str, ...] = Field(
        ("5m", "1h", "1d"), description="Period lengths judged, shortest first (5m, 1h, 1d)."
    )
    bridge: int = Field(
        2,
        ge=0,
        description="Join flagged periods separated by at most this many quiet ones (and by at most half an "
        "hour of them at short scales: one anomaly).",
    )
    severity: str = "warning"

    @field_validator("scales")
    @classmethod
    def _scales(cls, v: tuple[str, ...]) -> tuple[str, ...]:
        order = ("5m", "1h", "1d")
        bad = [x for x in v if x not in order]
        if bad or not v:
            raise ValueError(f"scales must be among {order}, got {v}")
        return tuple(sorted(set(v), key=order.index))


class ShiftConfig(Section):
    production_centers: tuple[str, str] = Field(
        ("dc1", "dc2"), description="The two same-city production centers."
    )
    threshold: float = Field(
        0.25, gt=0, le=1, description="Change of dc1's share of the pair that is a shift."
    )
    failover_share: float = Field(
        0.9, gt=0.5, le=1, description="Share at which a shift is called a failover."
    )
    min_volume: float = Field(
        1e6, ge=0, description="Ignore buckets with less traffic than this in the pair."
    )
    min_z: float = Field(
        5.0,
        gt=0,
        description="A share must move by this many standard errors of a share of the bucket's sampled "
        "packets (sampling alone moves a thin tenant's share).",
    )
    bucket_s: int = Field(
        3600,
        ge=300,
        description="Shares are judged per period of this length: over 5 minutes, which "
        "conversations an exporter sees (a router sees none inside a node) makes a center's share swing.",
    )
    severity: str = "critical"


class DrTrafficConfig(Section):
    dr_centers: tuple[str, ...] = Field(("dc3",), description="Disaster-recovery centers.")
    production_zones: tuple[str, ...] = Field(
        ("production",), description="Zones whose traffic must stay off DR."
    )
    min_bytes: float = Field(
        1e5, ge=0, description="Scaled bytes per bucket below which DR traffic is ignored."
    )
    min_days: int = Field(
        1,
        ge=1,
        description="Days of history a kind of DR traffic needs to be part of the baseline (replication).",
    )
    severity: str = "critical"


class DependencyConfig(Section):
    min_bytes: float = Field(1e4, ge=0, description="Scaled bytes below which a new pair is ignored.")
    min_records: float = Field(
        3,
        ge=0,
        description="Sampled packets a pair must show in the window before it is called new (at 1:1000 one "
        "sampled packet of a rare known pair is no evidence that it is new).",
    )
    max_unseen_p: float = Field(
        0.001,
        gt=0,
        le=1,
        description="A pair is new only if, at the rate it shows in the window so far, the chance that "
        "sampling left it out of the whole history is below this (exp(-rate × history)).",
    )
    severity: str = "warning"


class FanoutConfig(Section):
    min_distinct: int = Field(
        100, ge=1, description="Distinct destinations (or ports) in 5 minutes that is always suspicious."
    )
    min_distinct_1h: int = Field(
        150, ge=1, description="The same over one hour: slow scans (20 probes per 5 minutes) show there."
    )
    min_distinct_1d: int = Field(
        100,
        ge=1,
        description="The same over one day: what sampling leaves of a slow scan (about one probe in "
        "ten at 1:1000 for 120-byte probes) adds up there.",
    )
    ratio: float = Field(5.0, gt=1, description="Multiple of the source's usual fan-out that is suspicious.")
    severity: str = "warning"


class DnsTunnelConfig(Section):
    min_length: int = Field(
        52, ge=1, le=253, description="A DNS query name this long (as the sampler saw it) is a long name."
    )
    min_queries: int = Field(
        20, ge=1, description="Distinct long-name queries from one pod in a bucket that are suspicious."
    )
    severity: str = "warning"


class PlaintextDowngradeConfig(Section):
    min_tls_conversations: int = Field(
        3,
        ge=1,
        description="TLS conversations from a pod to a server over the history that make it a TLS pair.",
    )
    max_plaintext_before: int = Field(
        0,
        ge=0,
        description="Plaintext conversations of that pair over the history still tolerated (0: a pair that "
        "ever talked plaintext before is not a downgrade).",
    )
    severity: str = "warning"


class ElephantConfig(Section):
    link_capacity_bps: dict[str, float] = Field(
        default_factory=dict, description="Capacity per center pair 'dc1-dc2' (either order) in bits/s."
    )
    threshold: float = Field(0.7, gt=0, le=10, description="Fraction of capacity that is an elephant.")
    severity: str = "warning"


class RateLimitConfig(Section):
    """Observed pod rates against their Kube-OVN ``ingress_rate``/``egress_rate`` limits."""

    margin: float = Field(
        0.1, ge=0, le=10, description="An estimate this far above the limit (0.1: 10 %) is an exceedance."
    )
    saturation: float = Field(
        0.9, gt=0, le=1, description="A pod at this fraction of its limit or above is saturated (info)."
    )
    min_sampled_packets: int = Field(
        10, ge=1, description="Sampled packets a pod's bucket needs before its rate is judged."
    )
    z: float = Field(
        2.0,
        ge=0,
        le=10,
        description="Standard deviations below the estimate an exceedance must still hold at.",
    )
    severity: str = "warning"


class QosClassConfig(Section):
    """A traffic class by its DSCP marking (the names of the policy's ``qos_marking`` classes) and
    the share of a limited link it must keep when the link is full."""

    name: str = Field(min_length=1, description="Class name (payments, voice).")
    dscp: tuple[str | int, ...] = Field(
        min_length=1, description="DSCP names (EF, AF41, CS1) or numbers 0-63 the class is marked with."
    )
    min_share: float = Field(
        0.0, ge=0, le=1, description="Share of the link's rateMax the class is guaranteed (0.2: 20 %)."
    )
    min_mbps: float = Field(
        0.0, ge=0, description="Guaranteed Mbit/s (the larger of this and min_share counts)."
    )

    @field_validator("dscp")
    @classmethod
    def _dscp(cls, v: tuple[str | int, ...]) -> tuple[str | int, ...]:
        from analytics.policy.model import check_dscp

        return check_dscp(v)

    def codes(self) -> tuple[int, ...]:
        from analytics.policy.model import dscp_codes

        return dscp_codes(self.dscp)

    def floor_mbps(self, limit_mbps: float) -> float:
        return min(limit_mbps, max(self.min_share * limit_mbps, self.min_mbps))


class LinkQosConfig(Section):
    """Links limited by a Kube-OVN ``QoSPolicy`` (EIPs, NAT gateways): is a declared class starved
    while the link is full?"""

    classes: tuple[QosClassConfig, ...] = Field(
        (), description="Classes with a guaranteed share (none: the detector has nothing to judge)."
    )
    saturation: float = Field(
        0.9, gt=0, le=1, description="A link at this fraction of its rateMax or above is full."
    )
    min_sampled_packets: int = Field(
        10, ge=1, description="Sampled packets a link's bucket needs before it is judged."
    )
    z: float = Field(
        2.0, ge=0, le=10, description="Standard deviations the class's shortfall must hold at (sampling)."
    )
    severity: str = "warning"


class AsymmetryConfig(Section):
    bucket_s: int = Field(3600, ge=300, description="Conversations are judged per period of this length.")
    min_records: float = Field(
        10.0, ge=1, description="Sampled packets the missing direction must have elsewhere to be expected."
    )
    two_way_share: float = Field(
        0.5,
        gt=0,
        le=1,
        description="Share of its cross-node conversations an exporter must see both ways "
        "to be taken as seeing both directions.",
    )
    max_chance: float = Field(
        1e-5,
        gt=0,
        le=1,
        description="A point's missing direction is asymmetry only if independent sampling at the points "
        "makes it less likely than this by chance (its sampled packets of that direction against the other "
        "two-way point's, binomial at its share of the sampling rates, widened by the points' learned "
        "dispersion). An upper bound: the chance each test must beat is also held to false_per_day over the "
        "tests of a day.",
    )
    false_per_day: float = Field(
        0.02,
        gt=0,
        description="False findings a day that sampling alone may cause: the chance each test (a point's "
        "missing direction, or two points' together) must beat is this over the tests judged a day (the "
        "analysis notes say how many, and the chance used).",
    )
    severity: str = "warning"


class GapConfig(Section):
    silent_after_s: float = Field(300, gt=0, description="An exporter silent this long is a collection gap.")
    loss_ratio: float = Field(0.05, gt=0, le=1, description="Sequence loss above this ratio is a gap.")
    max_chance: float = Field(
        1e-6,
        gt=0,
        le=1,
        description="A silence is a gap only if the exporter's own datagram rate around it makes it less "
        "likely than this by chance (Poisson): thin exporters send nothing for minutes.",
    )
    rate_buckets: int = Field(
        12, ge=1, description="Buckets on each side of a silence whose mean datagram rate judges it."
    )
    severity: str = "warning"


class AnalyticsConfig(Section):
    bucket_s: int = Field(300, ge=60, description="Bucket of the traffic model in seconds.")
    schedule_interval_s: int = Field(
        300, ge=0, description="Inside `netobs run`/`pipeline`: analyse closed windows this often (0: never)."
    )
    lag_s: int = Field(120, ge=0, description="A window is closed this long after its end (late exports).")
    history_days: int = Field(28, ge=1, description="History the baselines learn from.")
    windows: tuple[Window, ...] = Field((), description="Planned DR drills and maintenance windows.")
    volume: VolumeConfig = Field(default_factory=VolumeConfig)
    shift: ShiftConfig = Field(default_factory=ShiftConfig)
    dr_traffic: DrTrafficConfig = Field(default_factory=DrTrafficConfig)
    dependency: DependencyConfig = Field(default_factory=DependencyConfig)
    fanout: FanoutConfig = Field(default_factory=FanoutConfig)
    dns_tunnel: DnsTunnelConfig = Field(default_factory=DnsTunnelConfig)
    plaintext_downgrade: PlaintextDowngradeConfig = Field(default_factory=PlaintextDowngradeConfig)
    elephant: ElephantConfig = Field(default_factory=ElephantConfig)
    gaps: GapConfig = Field(default_factory=GapConfig)
    asymmetry: AsymmetryConfig = Field(default_factory=AsymmetryConfig)
    rate_limit: RateLimitConfig = Field(default_factory=RateLimitConfig)
    link_qos: LinkQosConfig = Field(default_factory=LinkQosConfig)


class PolicyScheduleConfig(Section):
    file: Path | None = Field(
        None, description="Policy evaluated on schedule inside `netobs run`/`pipeline`."
    )
    window_s: int = Field(3600, ge=60, description="Evaluation window in seconds.")
    lag_s: int = Field(120, ge=0, description="A window is evaluated this long after its end (late exports).")
