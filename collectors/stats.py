"""Per-exporter decoding statistics: what was decoded, and every reason something was not.

Decoders never raise on input: each malformed datagram, set or record bumps an error
counter with a short reason string (``"sflow:truncated_sample"``, ``"ipfix:bad_set_length"``)
so that a dashboard can show which exporter sends what kind of garbage.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field


@dataclass
class ExporterStats:
    """Cumulative counters for one exporter (keyed by the address the datagrams came from)."""

    datagrams: int = 0
    flow_records: int = 0
    counter_samples: int = 0
    counter_records: int = 0  # generic interface counter records emitted
    options_records: int = 0
    templates: int = 0
    unknown_templates: int = 0  # data sets whose template was not (yet) known
    sequence_gaps: int = 0  # datagrams whose sequence number was ahead of the expected one
    template_withdrawals: int = 0
    errors: Counter = field(default_factory=Counter)
    #: (protocol, unit, kind) → count; kind missing / late / reset (see collectors._sequence).
    sequences: Counter = field(default_factory=Counter)
    #: Errors since the decoder last drained them (reported per decode call).
    fresh: Counter = field(default_factory=Counter, repr=False)
    fresh_sequences: Counter = field(default_factory=Counter, repr=False)

    def error(self, reason: str, count: int = 1) -> None:
        """Count one malformed thing under ``reason``."""
        self.errors[reason] += count
        self.fresh[reason] += count

    def sequence(self, protocol: str, unit: str, kind: str, count: int) -> None:
        """Count sequence-number findings of one stream (units: datagrams, samples, records)."""
        self.sequences[(protocol, unit, kind)] += count
        self.fresh_sequences[(protocol, unit, kind)] += count

    @property
    def error_count(self) -> int:
        return sum(self.errors.values())

    def loss(self) -> dict[str, dict[str, int]]:
        """Per "protocol/unit": missing, late, reset, and the loss estimate missing - late."""
        out: dict[str, dict[str, int]] = {}
        for (protocol, unit, kind), n in sorted(self.sequences.items()):
            out.setdefault(f"{protocol}/{unit}", {"missing": 0, "late": 0, "reset": 0})[kind] = n
        for v in out.values():
            v["lost"] = max(0, v["missing"] - v["late"])
        return out

    def as_dict(self) -> dict:
        return {
            "datagrams": self.datagrams,
            "flow_records": self.flow_records,
            "counter_samples": self.counter_samples,
            "counter_records": self.counter_records,
            "options_records": self.options_records,
            "templates": self.templates,
            "unknown_templates": self.unknown_templates,
            "sequence_gaps": self.sequence_gaps,
            "template_withdrawals": self.template_withdrawals,
            "loss": self.loss(),
            "errors": dict(self.errors),
        }
