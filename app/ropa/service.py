"""The record of processing activities (GDPR Art. 30), built from the registry.

A purpose processes what the retention rules that name it name, and what records registered
for it actually hold (`registered_processing`); a rule that names no purpose belongs to a
purpose only where it applies to what that purpose's records hold. Contacts, data subject
categories, recipients, transfers and security measures come from the registry."""

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
from app.recipients.models import Recipient
from app.records.models import Record, RecordProfile, RecordProfilePurpose
from app.retention.policy import category_covers
from app.retention_rules.models import RetentionRule
from app.ropa.schemas import (
    CSV_COLUMNS,
    Ropa,
    RopaCategory,
    RopaController,
    RopaPurpose,
    RopaRecipient,
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
    # The categories known to sit in one system (a record's profile, a rule naming both).
    by_system: dict[str, set[str]] = field(default_factory=dict)

    @classmethod
    def of_rules(cls, rules: Iterable[RetentionRule]) -> Processing:
        processing = cls()
        for rule in rules:
            processing.categories.update(filter(None, [rule.category]))
            processing.systems.update(filter(None, [rule.system]))
            processing.controller_ids.update(filter(None, [rule.controller_id]))
            processing.regions.update(filter(None, [rule.region]))
            if rule.system is not None:
                processing.by_system.setdefault(rule.system, set()).update(
                    filter(None, [rule.category])
                )
        return processing

    def merge(self, other: Processing) -> None:
        self.categories |= other.categories
        self.systems |= other.systems
        self.controller_ids |= other.controller_ids
        self.regions |= other.regions
        for system, categories in other.by_system.items():
            self.by_system.setdefault(system, set()).update(categories)


def rules_for_purpose(
    rules: Iterable[RetentionRule], purpose_key: str, registered: Processing
) -> list[RetentionRule]:
    """The rules that name this purpose, and the rules naming no purpose that apply to what
    records registered for it hold (their category, system and controller, where set)."""

    def applies(rule: RetentionRule) -> bool:
        return (
            bool(registered.categories)
            and (
                rule.category is None
                or any(category_covers(rule.category, c) for c in registered.categories)
            )
            and (rule.system is None or rule.system in registered.systems)
            and (rule.controller_id is None or rule.controller_id in registered.controller_ids)
        )

    return [
        rule
        for rule in rules
        if rule.purpose == purpose_key or (rule.purpose is None and applies(rule))
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
        processing.by_system.setdefault(profile.system, set()).update(profile.categories)
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


def transfers_of(recipients: Iterable[Recipient]) -> list[Recipient]:
    """Recipients that take data to another country under a Chapter V safeguard (or none)."""
    return [r for r in recipients if r.transfer_safeguard != "not_applicable"]


def _rule_order(rule: RetentionRule) -> tuple[str, str, str, str]:
    # In Python, not SQL: the two databases sort NULL categories differently.
    return (rule.category or "", rule.kind, rule.name, str(rule.id))


@dataclass
class Inventory:
    """What the record is built from: the registry, and what is processed per purpose."""

    platform: Controller | None
    purposes: Sequence[Purpose]
    rules: list[RetentionRule]
    categories: Sequence[DataCategory]
    recipients: Sequence[Recipient]
    controllers: dict[uuid.UUID, Controller]
    # Per purpose key: the rules that apply, and what is processed.
    applicable: dict[str, list[RetentionRule]]
    processing: dict[str, Processing]


async def gather_inventory(session: AsyncSession) -> Inventory:
    platform = await session.scalar(select(Controller).where(Controller.kind == "platform"))
    purposes = (await session.scalars(select(Purpose).order_by(Purpose.key))).all()
    rules = sorted(await session.scalars(select(RetentionRule)), key=_rule_order)
    categories = (await session.scalars(select(DataCategory).order_by(DataCategory.key))).all()

    registered = await registered_processing(session, [p.key for p in purposes])
    applicable: dict[str, list[RetentionRule]] = {}
    processing: dict[str, Processing] = {}
    for purpose in purposes:
        held = registered.get(purpose.key, Processing())
        applicable[purpose.key] = rules_for_purpose(rules, purpose.key, held)
        processing[purpose.key] = Processing.of_rules(
            r for r in applicable[purpose.key] if r.purpose == purpose.key
        )
        processing[purpose.key].merge(held)
    recipients = (await session.scalars(select(Recipient).order_by(Recipient.key))).all()

    controller_ids = set().union(*(p.controller_ids for p in processing.values()))
    controllers = {}
    if controller_ids:
        rows = await session.scalars(select(Controller).where(Controller.id.in_(controller_ids)))
        controllers = {c.id: c for c in rows}
    return Inventory(
        platform, purposes, rules, categories, recipients, controllers, applicable, processing
    )


async def build_ropa(session: AsyncSession) -> Ropa:
    inventory = await gather_inventory(session)
    platform, processing, recipients = (
        inventory.platform,
        inventory.processing,
        inventory.recipients,
    )
    controllers = {i: RopaController.model_validate(c) for i, c in inventory.controllers.items()}

    return Ropa(
        generated_at=utcnow(),
        controller=RopaController.model_validate(platform) if platform else None,
        security_measures=platform.security_measures if platform else None,
        recipients=[RopaRecipient.model_validate(r) for r in recipients],
        transfers=[RopaRecipient.model_validate(r) for r in transfers_of(recipients)],
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
                retention_rules=[
                    RopaRule.model_validate(r) for r in inventory.applicable[purpose.key]
                ],
                data_subject_categories=purpose.data_subject_categories,
                recipients=[
                    r.key for r in recipients if set(r.systems) & processing[purpose.key].systems
                ],
            )
            for purpose in inventory.purposes
        ],
        retained_without_rule=[
            RopaCategory.model_validate(c)
            for c in categories_without_rule(inventory.categories, inventory.rules)
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
            ";".join(purpose.data_subject_categories),
            ";".join(purpose.recipients),
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
