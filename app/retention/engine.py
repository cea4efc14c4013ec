"""Bridges the stored registry and the pure policy: loads rules and active holds once, then
decides records in bulk (rules resolved once per profile, dates per record)."""

from __future__ import annotations

import uuid
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.legal_holds.models import LegalHold, LegalHoldIdentity, LegalHoldRecord
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
    """Every retention rule, with the ranking of each profile cached."""

    rules: list[policy.Rule]
    _groups: dict[ProfileFacts, policy.GroupRules] = field(default_factory=dict)

    def group(self, profile: ProfileFacts, facts: policy.RecordFacts) -> policy.GroupRules:
        ranked = self._groups.get(profile)
        if ranked is None:
            ranked = self._groups[profile] = policy.group_rules(self.rules, facts)
        return ranked


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


async def load_rulebook(session: AsyncSession) -> RuleBook:
    rows = (await session.execute(_RULE_COLUMNS)).all()
    return RuleBook([to_policy_rule(row) for row in rows])


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

    def covers(self, profile: ProfileFacts, record: RecordDates) -> bool:
        if not self.covers_profile(profile):
            return False
        if self.digests and self.digests.isdisjoint(record.digests):
            return False
        return not (self.record_ids and record.id not in self.record_ids)


@dataclass
class HoldBook:
    holds: list[HoldScope]

    def covering(self, profile: ProfileFacts, record: RecordDates) -> list[policy.Hold]:
        return [policy.Hold(str(h.id)) for h in self.holds if h.covers(profile, record)]


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


def decide(
    rules: RuleBook,
    holds: HoldBook,
    profile: ProfileFacts,
    record: RecordDates,
    now: datetime,
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
    return policy.resolve(rules.group(profile, facts), facts, holds.covering(profile, record), now)


def stored_columns(decision: policy.Decision) -> dict[str, Any]:
    """The record columns that keep a decision, so a check is one read."""
    return {
        "held": decision.status == "held",
        "keep_until": decision.keep_until,
        "keep_indefinitely": decision.keep_indefinitely,
        "delete_by": decision.delete_by,
        "action": decision.action,
        "retention": {
            "holds": decision.holds,
            "rules": [
                {
                    "id": outcome.rule_id,
                    "kind": outcome.kind,
                    "ends_at": outcome.ends_at.isoformat() if outcome.ends_at else None,
                    "decisive": outcome.decisive,
                    "outranked": outcome.outranked,
                }
                for outcome in decision.rules
            ],
        },
    }
