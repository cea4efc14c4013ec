"""Bridges the stored registry and the pure policy: loads rules and active holds once, then
decides records in bulk (rules resolved once per profile, dates per record)."""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time
from functools import lru_cache
from typing import Any

import orjson
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.core.config import get_settings
from app.legal_holds.models import LegalHold, LegalHoldIdentity, LegalHoldRecord
from app.records.models import RecordIdentity
from app.retention import policy
from app.retention_rules.models import RetentionRule


@dataclass(frozen=True, slots=True)
class ProfileFacts:
    """What records of one profile share."""

    controller_id: uuid.UUID
    system: str
    region: str | None
    categories: tuple[str, ...]
    purposes: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class RecordDates:
    """What differs between records of one profile."""

    id: uuid.UUID
    collected_at: datetime
    last_activity_at: datetime | None
    events: dict[str, datetime]
    restricted: bool
    digests: frozenset[str]


def profile_facts(profile: Any) -> ProfileFacts:
    return ProfileFacts(
        controller_id=profile.controller_id,
        system=profile.system,
        region=profile.region,
        categories=tuple(sorted(profile.categories)),
        purposes=tuple(sorted(profile.purposes)),
    )


def to_policy_rule(rule: Any) -> policy.Rule:
    return policy.Rule(
        id=str(rule.id),
        kind=rule.kind,
        period=policy.parse_period(rule.period),
        anchor=rule.anchor,
        action=rule.action,
        category=rule.category,
        purpose=rule.purpose,
        controller_id=rule.controller_id,
        system=rule.system,
        region=rule.region,
        source=rule.source,
        citation=rule.citation or "",
    )


@dataclass
class RuleBook:
    """Every retention rule and every customer's contract end, with the ranking of each
    profile cached."""

    rules: list[policy.Rule]
    # Customer controller id (lower-case text) -> its agreement's end plus the grace period.
    contract_ends: dict[str, datetime] = field(default_factory=dict)
    _groups: dict[ProfileFacts, policy.GroupRules] = field(default_factory=dict)

    def ranked(self, profile: ProfileFacts) -> policy.GroupRules:
        group = self._groups.get(profile)
        if group is None:
            group = self._groups[profile] = policy.group_rules(
                self.rules,
                anchorless(profile),
                self.contract_ends.get(str(profile.controller_id).lower()),
            )
        return group


def anchorless(profile: ProfileFacts) -> policy.RecordFacts:
    # Which rules apply depends on the profile alone; the dates here are never read.
    return policy.RecordFacts(
        categories=profile.categories,
        purposes=profile.purposes,
        controller_id=profile.controller_id,
        system=profile.system,
        region=profile.region,
        collected_at=datetime.min,
    )


# A profile keeps its ranked rules as JSON text (record_profiles.ranked_rules): a check
# explains a stored decision from them and the record's own dates, in the same read. A
# customer's contract end is one more entry (role `contract_end`), so a change of it changes
# the text and the profile's records are recomputed with it. Only then does a rule's source
# matter (a `law` minimum outlives the contract end), so only then is it written: every
# other profile keeps the text it had before contract ends existed.
_ROLES = ("minimum", "maximum", "outranked")
_CONTRACT_END = "contract_end"


def encode_ranked(group: policy.GroupRules) -> str:
    entries: list[dict[str, str]] = [
        {
            "role": role,
            "id": rule.id,
            "kind": rule.kind,
            "period": str(rule.period),
            "anchor": rule.anchor,
            "action": rule.action,
        }
        for role in _ROLES
        for rule in getattr(group, role)
    ]
    if group.contract_end is not None:
        sources = (rule.source for role in _ROLES for rule in getattr(group, role))
        for entry, source in zip(entries, sources, strict=True):
            entry["source"] = source
        entries.append({"role": _CONTRACT_END, "at": group.contract_end.isoformat()})
    return orjson.dumps(entries).decode()


@lru_cache(maxsize=4096)
def decode_ranked(text: str) -> policy.GroupRules:
    found: dict[str, list[policy.Rule]] = {role: [] for role in _ROLES}
    contract_end = None
    for item in orjson.loads(text):
        if item["role"] == _CONTRACT_END:
            contract_end = datetime.fromisoformat(item["at"])
            continue
        found[item["role"]].append(
            policy.Rule(
                id=item["id"],
                kind=item["kind"],
                period=policy.parse_period(item["period"]),
                anchor=item["anchor"],
                action=item["action"],
                source=item.get("source", ""),
            )
        )
    return policy.GroupRules(
        minimum=tuple(found["minimum"]),
        maximum=tuple(found["maximum"]),
        outranked=tuple(found["outranked"]),
        contract_end=contract_end,
    )


_RULE_COLUMNS = select(
    RetentionRule.id,
    RetentionRule.kind,
    RetentionRule.period,
    RetentionRule.anchor,
    RetentionRule.action,
    RetentionRule.category,
    RetentionRule.purpose,
    RetentionRule.controller_id,
    RetentionRule.system,
    RetentionRule.region,
    RetentionRule.source,
    RetentionRule.citation,
)


def contract_end(effective_until: date, grace: policy.Period) -> datetime:
    """When a customer's data must be gone after its agreement ends (Art. 28(3)(g)): the
    start (00:00 UTC) of the agreement's `effective_until` day plus the grace period in
    which the customer may take its data back."""
    return policy.add_period(datetime.combine(effective_until, time(), UTC), grace)


async def load_rulebook(session: AsyncSession, grace: policy.Period | None = None) -> RuleBook:
    # In id order, so a profile's ranked rules encode to the same text every time.
    rows = (await session.execute(_RULE_COLUMNS.order_by(RetentionRule.id))).all()
    if grace is None:
        grace = policy.parse_period(get_settings().contract_end_grace)
    ends = {
        str(controller_id).lower(): contract_end(until, grace)
        for controller_id, until in await session.execute(
            select(Controller.id, Controller.effective_until).where(
                Controller.kind == "customer", Controller.effective_until.is_not(None)
            )
        )
        if until is not None
    }
    return RuleBook([to_policy_rule(row) for row in rows], ends)


@dataclass(frozen=True, slots=True)
class HoldScope:
    id: uuid.UUID
    controller_id: uuid.UUID | None
    system: str | None
    category: str | None
    digests: frozenset[str]
    record_ids: frozenset[uuid.UUID]

    def covers_profile(self, profile: ProfileFacts) -> bool:
        if self.controller_id is not None and self.controller_id != profile.controller_id:
            return False
        if self.system is not None and self.system != profile.system:
            return False
        return self.category is None or any(
            policy.category_covers(self.category, c) for c in profile.categories
        )

    def covers(self, profile: ProfileFacts, record_id: uuid.UUID, digests: frozenset[str]) -> bool:
        if not self.covers_profile(profile):
            return False
        if self.digests and self.digests.isdisjoint(digests):
            return False
        return not (self.record_ids and record_id not in self.record_ids)


@dataclass
class HoldBook:
    holds: list[HoldScope]

    def covering(self, profile: ProfileFacts, record: RecordDates) -> list[policy.Hold]:
        return [
            policy.Hold(str(h.id))
            for h in self.holds
            if h.covers(profile, record.id, record.digests)
        ]


async def load_holdbook(session: AsyncSession) -> HoldBook:
    """Active holds with their scopes: holds are few, and each names at most a few
    hundred identities or records, so they are held in memory for a request or a job."""
    holds = (
        await session.execute(
            select(
                LegalHold.id, LegalHold.controller_id, LegalHold.system, LegalHold.category
            ).where(LegalHold.released_at.is_(None))
        )
    ).all()
    if not holds:
        return HoldBook([])
    ids = [hold.id for hold in holds]
    digests: dict[uuid.UUID, set[str]] = {}
    for hold_id, digest in await session.execute(
        select(LegalHoldIdentity.hold_id, LegalHoldIdentity.digest).where(
            LegalHoldIdentity.hold_id.in_(ids)
        )
    ):
        digests.setdefault(hold_id, set()).add(digest)
    records: dict[uuid.UUID, set[uuid.UUID]] = {}
    for hold_id, record_id in await session.execute(
        select(LegalHoldRecord.hold_id, LegalHoldRecord.record_id).where(
            LegalHoldRecord.hold_id.in_(ids)
        )
    ):
        records.setdefault(hold_id, set()).add(record_id)
    return HoldBook(
        [
            HoldScope(
                id=hold.id,
                controller_id=hold.controller_id,
                system=hold.system,
                category=hold.category,
                digests=frozenset(digests.get(hold.id, ())),
                record_ids=frozenset(records.get(hold.id, ())),
            )
            for hold in holds
        ]
    )


async def holds_of(
    session: AsyncSession, held: Sequence[tuple[uuid.UUID, ProfileFacts]]
) -> dict[uuid.UUID, list[str]]:
    """The active holds on each of these held records, to explain their decisions. Records
    store only that they are held; which holds is read here, for held records alone."""
    if not held:
        return {}
    book = await load_holdbook(session)
    digests: dict[uuid.UUID, set[str]] = {}
    if any(hold.digests for hold in book.holds):
        for record_id, digest in await session.execute(
            select(RecordIdentity.record_id, RecordIdentity.digest).where(
                RecordIdentity.record_id.in_([record_id for record_id, _ in held])
            )
        ):
            digests.setdefault(record_id, set()).add(digest)
    return {
        record_id: [
            str(hold.id)
            for hold in book.holds
            if hold.covers(profile, record_id, frozenset(digests.get(record_id, ())))
        ]
        for record_id, profile in held
    }


def decide(
    rules: RuleBook,
    holds: HoldBook,
    profile: ProfileFacts,
    record: RecordDates,
    now: datetime,
    *,
    reasons: bool = True,
) -> policy.Decision:
    facts = policy.RecordFacts(
        categories=profile.categories,
        purposes=profile.purposes,
        controller_id=profile.controller_id,
        system=profile.system,
        region=profile.region,
        collected_at=record.collected_at,
        last_activity_at=record.last_activity_at,
        events=record.events,
        restricted=record.restricted,
    )
    return policy.resolve(
        rules.ranked(profile), facts, holds.covering(profile, record), now, reasons=reasons
    )


def explain(
    ranked_rules: str,
    record: Any,
    hold_ids: Sequence[str],
    now: datetime,
) -> policy.Decision:
    """A stored decision with its reasons: the profile's ranked rules applied to the record's
    own dates. `record` has collected_at, last_activity_at, events and state."""
    facts = policy.RecordFacts(
        categories=(),
        purposes=(),
        controller_id=None,
        system="",
        region=None,
        collected_at=record.collected_at,
        last_activity_at=record.last_activity_at,
        events=parse_events(record.events),
        restricted=record.state == "restricted",
    )
    return policy.resolve(
        decode_ranked(ranked_rules), facts, [policy.Hold(h) for h in hold_ids], now
    )


def parse_events(stored: Mapping[str, str] | None) -> dict[str, datetime]:
    return {name: datetime.fromisoformat(ts) for name, ts in (stored or {}).items()}


def event_text(moment: datetime) -> str:
    """How an event time is stored: UTC ISO text with microseconds, one shape for every
    value, so SQL can read it back as a timestamp (decision_sql.Dates.event)."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds")


def stored_columns(decision: policy.Decision) -> dict[str, Any]:
    """The record columns that keep a decision, so a check and the due sweep are one read."""
    return {
        "held": decision.status == "held",
        "keep_until": decision.keep_until,
        "keep_indefinitely": decision.keep_indefinitely,
        "delete_by": decision.delete_by,
        "action": decision.action,
    }
