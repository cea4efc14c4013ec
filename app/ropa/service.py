"""The record of processing activities (GDPR Art. 30), built from the registry.

A purpose processes what the retention rules for it name, and what records registered for it
actually hold (`registered_processing`)."""

from __future__ import annotations

import csv
import io
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.core.db import utcnow
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.records.models import Record, RecordProfile, RecordProfilePurpose
from app.retention.policy import category_covers
from app.retention_rules.models import RetentionRule
from app.ropa.schemas import (
    CSV_COLUMNS,
    Ropa,
    RopaCategory,
    RopaController,
    RopaPurpose,
    RopaRule,
)

# A spreadsheet runs a cell that starts with one of these as a formula; registry text can
# come from a customer's key (its retention settings), so it is never handed over as one.
_FORMULA_STARTS = ("=", "+", "-", "@", "\t", "\r")


@dataclass
class Processing:
    """What is processed for one purpose."""

    categories: set[str] = field(default_factory=set)
    systems: set[str] = field(default_factory=set)
    controller_ids: set[uuid.UUID] = field(default_factory=set)
    regions: set[str] = field(default_factory=set)

    @classmethod
    def of_rules(cls, rules: Iterable[RetentionRule]) -> Processing:
        processing = cls()
        for rule in rules:
            processing.categories.update(filter(None, [rule.category]))
            processing.systems.update(filter(None, [rule.system]))
            processing.controller_ids.update(filter(None, [rule.controller_id]))
            processing.regions.update(filter(None, [rule.region]))
        return processing

    def merge(self, other: Processing) -> None:
        self.categories |= other.categories
        self.systems |= other.systems
        self.controller_ids |= other.controller_ids
        self.regions |= other.regions


def rules_for_purpose(rules: Iterable[RetentionRule], purpose_key: str) -> list[RetentionRule]:
    # A rule naming no purpose applies whatever the purpose; of those, only a rule naming a
    # category says what is processed.
    return [
        rule
        for rule in rules
        if rule.purpose == purpose_key or (rule.purpose is None and rule.category is not None)
    ]


async def registered_processing(
    session: AsyncSession, purpose_keys: Sequence[str]
) -> dict[str, Processing]:
    """The categories (with systems, controllers, regions) of records registered per purpose:
    read from record profiles (one row per distinct combination), never from records."""
    found: dict[str, Processing] = {}
    rows = await session.execute(
        select(RecordProfilePurpose.purpose, RecordProfile)
        .join(RecordProfile, RecordProfile.id == RecordProfilePurpose.profile_id)
        .where(
            RecordProfilePurpose.purpose.in_(purpose_keys),
            select(Record.id)
            .where(Record.profile_id == RecordProfile.id, Record.state != "erased")
            .exists(),
        )
    )
    for purpose, profile in rows:
        processing = found.setdefault(purpose, Processing())
        processing.categories.update(profile.categories)
        processing.systems.add(profile.system)
        processing.controller_ids.add(profile.controller_id)
        if profile.region:
            processing.regions.add(profile.region)
    return found


def categories_without_rule(
    categories: Iterable[DataCategory], rules: Iterable[RetentionRule]
) -> list[DataCategory]:
    """Categories no rule names, directly or through a parent: retained with no written rule."""
    prefixes = {rule.category for rule in rules if rule.category is not None}
    return [
        category
        for category in categories
        if not any(category_covers(prefix, category.key) for prefix in prefixes)
    ]


def _rule_order(rule: RetentionRule) -> tuple[str, str, str, str]:
    # In Python, not SQL: the two databases sort NULL categories differently.
    return (rule.category or "", rule.kind, rule.name, str(rule.id))


async def build_ropa(session: AsyncSession) -> Ropa:
    platform = await session.scalar(select(Controller).where(Controller.kind == "platform"))
    purposes = (await session.scalars(select(Purpose).order_by(Purpose.key))).all()
    rules = sorted(await session.scalars(select(RetentionRule)), key=_rule_order)
    categories = (await session.scalars(select(DataCategory).order_by(DataCategory.key))).all()

    registered = await registered_processing(session, [p.key for p in purposes])
    applicable: dict[str, list[RetentionRule]] = {}
    processing: dict[str, Processing] = {}
    for purpose in purposes:
        applicable[purpose.key] = rules_for_purpose(rules, purpose.key)
        processing[purpose.key] = Processing.of_rules(applicable[purpose.key])
        processing[purpose.key].merge(registered.get(purpose.key, Processing()))

    controller_ids = set().union(*(p.controller_ids for p in processing.values()))
    controllers = {}
    if controller_ids:
        rows = await session.scalars(select(Controller).where(Controller.id.in_(controller_ids)))
        controllers = {c.id: RopaController.model_validate(c) for c in rows}

    return Ropa(
        generated_at=utcnow(),
        controller=RopaController.model_validate(platform) if platform else None,
        purposes=[
            RopaPurpose(
                key=purpose.key,
                name=purpose.name,
                description=purpose.description,
                legal_basis=purpose.legal_basis,  # type: ignore[arg-type]
                objection_absolute=purpose.objection_absolute,
                categories=sorted(processing[purpose.key].categories),
                systems=sorted(processing[purpose.key].systems),
                controllers=sorted(
                    (controllers[i] for i in processing[purpose.key].controller_ids),
                    key=lambda c: (c.name, str(c.id)),
                ),
                regions=sorted(processing[purpose.key].regions),
                retention_rules=[RopaRule.model_validate(r) for r in applicable[purpose.key]],
            )
            for purpose in purposes
        ],
        retained_without_rule=[
            RopaCategory.model_validate(c) for c in categories_without_rule(categories, rules)
        ],
    )


def _cell(value: object) -> str:
    text = "" if value is None else str(value)
    return "'" + text if text.startswith(_FORMULA_STARTS) else text


def ropa_csv(ropa: Ropa) -> str:
    """One row per purpose and applicable rule; a purpose with no rule still gets its row."""
    buffer = io.StringIO()
    writer = csv.writer(buffer)
    writer.writerow(CSV_COLUMNS)
    for purpose in ropa.purposes:
        shared = [
            purpose.key,
            purpose.name,
            purpose.legal_basis,
            ";".join(purpose.categories),
            ";".join(purpose.systems),
            ";".join(c.name for c in purpose.controllers),
            ";".join(purpose.regions),
        ]
        rules: list[RopaRule | None] = [*purpose.retention_rules] or [None]
        for rule in rules:
            rule_cells = (
                [rule.id, rule.kind, rule.period, rule.anchor, rule.source, rule.citation]
                if rule is not None
                else [None] * 6
            )
            writer.writerow([_cell(value) for value in [*shared, *rule_cells]])
    return buffer.getvalue()
