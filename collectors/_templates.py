"""Template state of IPFIX and NetFlow v9 exporters, bounded and serialisable.

Keys are (session, observation domain / source id, template id); a session is the
exporter's address (or address:port). Limits stop template bombs: at most
``max_templates`` templates per session and ``max_fields`` fields per template; what
exceeds them is refused and counted. A refreshed template identical to the known one
keeps the same :class:`Template` object, so queued records stay in one batch.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass

from collectors import _ipfix_fields as F
from collectors._ipfix_fields import Field, Template
from collectors.stats import ExporterStats

MAX_RECORD = 65535 - 16 - 4  # a record has to fit in one message's one set
MAX_DOMAINS = 4096  # per decoder: (session, domain) states kept before refusing new ones
MAX_SAMPLERS = 256  # per domain: sampler / selector rates kept (options data)


@dataclass(frozen=True)
class Limits:
    """Caps on per-exporter template state (config: collector.max_templates_per_exporter...)."""

    max_templates: int = 4096
    max_fields: int = 512


class TemplateStore:
    """(session, domain, template id) → Template, with per-session counts."""

    def __init__(self, limits: Limits | None = None):
        self.limits = limits or Limits()
        self._templates: dict[tuple[str, int, int], Template] = {}
        self._per_session: Counter = Counter()
        #: (fields, scope count) → a template of that shape: hundreds of exporters send the same
        #: templates, whose layout is derived once (Template.like).
        self._shapes: dict[tuple, Template] = {}
        #: Bumped on every change (a new or different template, a withdrawal): a template set
        #: seen before with the same bytes and no change since is known to change nothing.
        self.generation = 0

    def __len__(self) -> int:
        return len(self._templates)

    @property
    def table(self) -> dict[tuple[str, int, int], Template]:
        """The (session, domain, template id) → Template dict itself (the native fast path reads it)."""
        return self._templates

    def get(self, session: str, domain: int, tid: int) -> Template | None:
        return self._templates.get((session, domain, tid))

    def add(
        self, session: str, domain: int, tid: int, fields: tuple, scope: int, stats: ExporterStats, proto: str
    ) -> bool:
        """Learn a template; False (and a counted error) when a limit refuses it."""
        key = (session, domain, tid)
        known = self._templates.get(key)
        if known is not None and known.fields == fields and known.scope_count == scope:
            stats.templates += 1
            return True
        if len(fields) > self.limits.max_fields:
            stats.error(f"{proto}:template_too_many_fields")
            return False
        if known is None:
            if self._per_session[session] >= self.limits.max_templates:
                stats.error(f"{proto}:template_limit")
                return False
            self._per_session[session] += 1
        shape = self._shapes.get((fields, scope))
        if shape is None:
            shape = Template(tid, fields, scope)
            if len(self._shapes) >= 4096:  # bounded like one exporter's templates
                self._shapes.clear()
            self._shapes[(fields, scope)] = shape
        self._templates[key] = shape.like(tid)
        self.generation += 1
        stats.templates += 1
        return True

    def withdraw(self, session: str, domain: int, tid: int) -> bool:
        """Forget one template (RFC 7011 §8.1); whether it was known."""
        if self._templates.pop((session, domain, tid), None) is None:
            return False
        self.generation += 1
        self._per_session[session] -= 1
        return True

    def withdraw_all(self, session: str, domain: int, options: bool) -> int:
        """Forget every (options) template of a domain: template id 2 / 3 with no fields."""
        gone = [
            k
            for k, t in self._templates.items()
            if k[0] == session and k[1] == domain and t.is_options == options
        ]
        for k in gone:
            del self._templates[k]
        self.generation += bool(gone)
        self._per_session[session] -= len(gone)
        return len(gone)

    def dump(self) -> list:
        """JSON-ready: [session, domain, template id, scope count, [[ie, length, pen], ...]]."""
        return [
            [s, d, tid, t.scope_count, [list(f) for f in t.fields]]
            for (s, d, tid), t in self._templates.items()
        ]

    def load(self, rows: list, stats: ExporterStats) -> int:
        """Learn dumped templates again (through the limits); how many were taken."""
        taken = 0
        for session, domain, tid, scope, fields in rows:
            spec = tuple(Field(int(ie), int(length), int(pen)) for ie, length, pen in fields)
            reason = check_template(int(tid), spec, int(scope), int(scope) > 0)
            if reason:
                stats.error(f"state:{reason}")
                continue
            taken += self.add(str(session), int(domain), int(tid), spec, int(scope), stats, "state")
        return taken


def check_template(tid: int, fields: tuple, scope: int, options: bool) -> str:
    """Why a template cannot be used ('' if it can)."""
    if tid < 256:
        return "template_id_reserved"
    if options and not 0 < scope <= len(fields):
        return "options_scope_invalid"
    fixed = sum(f.length for f in fields if f.length != F.VARIABLE)
    if fixed > MAX_RECORD:
        return "template_too_long"
    if fixed == 0 and all(f.length != F.VARIABLE for f in fields):
        return "template_zero_length"
    return ""
