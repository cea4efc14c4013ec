"""The loader behind `spix-dsr seed`: check a taxonomy document whole, then upsert it by
natural key, so loading the same document twice changes nothing and logs nothing.

The document is read and checked in `document.py`; here are the checks that need the
database and the writes. References (a category's parent, a rule's category, purpose or
system) resolve in the document or, for a document that extends the registry, in the
database."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field, fields
from typing import Any, TypeVar

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import OPERATOR, Operator, record
from app.auth.service import Principal
from app.controllers.models import Controller
from app.core.ids import new_id
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.retention_rules.models import RetentionRule
from app.retention_rules.service import RuleScope, on_rules_changed, scope_of
from app.systems.models import System
from app.taxonomy.document import (
    CategoryEntry,
    InvalidTaxonomy,
    PlatformControllerEntry,
    PurposeEntry,
    RuleEntry,
    SystemEntry,
    Taxonomy,
    parse_taxonomy,
)

KeyedModel = TypeVar("KeyedModel", System, Purpose)


@dataclass
class KindCounts:
    created: int = 0
    updated: int = 0
    unchanged: int = 0

    @property
    def changed(self) -> int:
        return self.created + self.updated


@dataclass
class SeedReport:
    platform_controller: KindCounts = field(default_factory=KindCounts)
    systems: KindCounts = field(default_factory=KindCounts)
    categories: KindCounts = field(default_factory=KindCounts)
    purposes: KindCounts = field(default_factory=KindCounts)
    retention_rules: KindCounts = field(default_factory=KindCounts)

    def kinds(self) -> dict[str, KindCounts]:
        return {f.name: getattr(self, f.name) for f in fields(self)}

    @property
    def changed(self) -> bool:
        return any(counts.changed for counts in self.kinds().values())

    def as_dict(self) -> dict[str, dict[str, int]]:
        return {kind: asdict(counts) for kind, counts in self.kinds().items()}


async def _existing_keys(session: AsyncSession, column: Any, keys: set[str]) -> set[str]:
    if not keys:
        return set()
    return set((await session.scalars(select(column).where(column.in_(keys)))).all())


async def _reference_problems(session: AsyncSession, taxonomy: Taxonomy) -> list[str]:
    """References the document leaves to the database, and a platform ref another uses."""
    problems = []
    categories = {c.key for c in taxonomy.categories}
    purposes = {p.key for p in taxonomy.purposes}
    systems = {s.key for s in taxonomy.systems}

    outside = {c.parent_key for c in taxonomy.categories} | {
        r.category for r in taxonomy.retention_rules
    }
    categories |= await _existing_keys(
        session, DataCategory.key, {key for key in outside if key and key not in categories}
    )
    purposes |= await _existing_keys(
        session,
        Purpose.key,
        {r.purpose for r in taxonomy.retention_rules if r.purpose and r.purpose not in purposes},
    )
    systems |= await _existing_keys(
        session,
        System.key,
        {r.system for r in taxonomy.retention_rules if r.system and r.system not in systems},
    )

    for category in taxonomy.categories:
        if category.parent_key is not None and category.parent_key not in categories:
            problems.append(
                f"category {category.key!r}: its parent {category.parent_key!r} is neither in "
                "the document nor in the registry"
            )
    for rule in taxonomy.retention_rules:
        for name, value, known in (
            ("category", rule.category, categories),
            ("purpose", rule.purpose, purposes),
            ("system", rule.system, systems),
        ):
            if value is not None and value not in known:
                problems.append(f"retention rule {rule.key!r}: unknown {name} {value!r}")

    ref = taxonomy.platform_controller.external_ref
    taken = await session.scalar(
        select(Controller.id).where(Controller.external_ref == ref, Controller.kind != "platform")
    )
    if taken is not None:
        problems.append(f"platform_controller: external_ref {ref!r} belongs to a customer")
    return problems


def _apply(obj: object, values: dict[str, Any]) -> list[str]:
    changed = sorted(name for name, value in values.items() if getattr(obj, name) != value)
    for name in changed:
        setattr(obj, name, values[name])
    return changed


async def load_taxonomy(
    session: AsyncSession, data: dict[str, Any], *, actor: Principal | Operator = OPERATOR
) -> SeedReport:
    """Check `data` whole, then insert what is missing and update what differs (flush only)."""
    taxonomy = parse_taxonomy(data)
    problems = await _reference_problems(session, taxonomy)
    if problems:
        raise InvalidTaxonomy(problems)

    report = SeedReport()
    await _load_platform(session, taxonomy.platform_controller, report.platform_controller, actor)

    await _load_by_key(session, System, "system", taxonomy.systems, report.systems, actor)
    await _load_by_key(session, Purpose, "purpose", taxonomy.purposes, report.purposes, actor)
    await _load_categories(session, taxonomy.categories, report.categories, actor)
    await _load_rules(session, taxonomy.retention_rules, report.retention_rules, actor)

    if report.changed:
        record(session, actor, "taxonomy.seeded", "taxonomy", taxonomy.digest, report.as_dict())
    return report


async def _load_platform(
    session: AsyncSession,
    entry: PlatformControllerEntry,
    counts: KindCounts,
    actor: Principal | Operator,
) -> None:
    platform = await session.scalar(select(Controller).where(Controller.kind == "platform"))
    if platform is None:
        platform = Controller(
            id=new_id(),
            kind="platform",
            name=entry.name,
            external_ref=entry.external_ref,
            dsr_routing_mode="dashboard",
            auto_execute=False,
        )
        session.add(platform)
        details = {"kind": "platform", "routing": "dashboard"}
        _created(session, actor, counts, "controller", platform.id, details)
    else:
        changed = _apply(platform, entry.model_dump())
        _updated(session, actor, counts, "controller", platform.id, changed)
    await session.flush()


async def _load_by_key(
    session: AsyncSession,
    model: type[KeyedModel],
    entity: str,
    entries: Sequence[SystemEntry] | Sequence[PurposeEntry],
    counts: KindCounts,
    actor: Principal | Operator,
) -> None:
    keys = [entry.key for entry in entries]
    existing = {
        row.key: row for row in await session.scalars(select(model).where(model.key.in_(keys)))
    }
    for entry in entries:
        values = entry.model_dump(exclude={"key"})
        row = existing.get(entry.key)
        if row is None:
            session.add(model(key=entry.key, **values))
            _created(session, actor, counts, entity, entry.key)
        else:
            _updated(session, actor, counts, entity, entry.key, _apply(row, values))
    await session.flush()


async def _load_categories(
    session: AsyncSession,
    entries: list[CategoryEntry],
    counts: KindCounts,
    actor: Principal | Operator,
) -> None:
    existing = {
        c.key: c
        for c in await session.scalars(
            select(DataCategory).where(DataCategory.key.in_([c.key for c in entries]))
        )
    }
    # Parents before children, whatever the document's order: the parent key is a foreign key.
    for depth in sorted({c.key.count(".") for c in entries}):
        for entry in entries:
            if entry.key.count(".") != depth:
                continue
            values = {**entry.model_dump(exclude={"key"}), "parent_key": entry.parent_key}
            category = existing.get(entry.key)
            if category is None:
                session.add(DataCategory(key=entry.key, **values))
                _created(session, actor, counts, "data_category", entry.key)
            else:
                changed = _apply(category, values)
                _updated(session, actor, counts, "data_category", entry.key, changed)
        await session.flush()


async def _load_rules(
    session: AsyncSession,
    entries: list[RuleEntry],
    counts: KindCounts,
    actor: Principal | Operator,
) -> None:
    existing = {
        r.key: r
        for r in await session.scalars(
            select(RetentionRule).where(RetentionRule.key.in_([r.key for r in entries]))
        )
    }
    # Stored retention decisions follow the rules: both the old and the new reach of a rule.
    touched: list[RuleScope] = []
    for entry in entries:
        # A rule from a document is the platform's: it names no controller.
        values = {**entry.model_dump(exclude={"key"}), "controller_id": None}
        details = {"key": entry.key}
        rule = existing.get(entry.key)
        if rule is None:
            rule = RetentionRule(id=new_id(), key=entry.key, **values)
            session.add(rule)
            _created(session, actor, counts, "retention_rule", rule.id, details)
            touched.append(scope_of(rule))
            continue
        before = scope_of(rule)
        changed = _apply(rule, values)
        if changed:
            touched += [before, scope_of(rule)]
        _updated(session, actor, counts, "retention_rule", rule.id, changed, details)
    await session.flush()
    if touched:
        await on_rules_changed(session, touched)


def _created(
    session: AsyncSession,
    actor: Principal | Operator,
    counts: KindCounts,
    entity: str,
    entity_id: uuid.UUID | str,
    details: dict[str, Any] | None = None,
) -> None:
    counts.created += 1
    record(
        session, actor, f"{entity}.created", entity, entity_id, {**(details or {}), "via": "seed"}
    )


def _updated(
    session: AsyncSession,
    actor: Principal | Operator,
    counts: KindCounts,
    entity: str,
    entity_id: uuid.UUID | str,
    changed: list[str],
    details: dict[str, Any] | None = None,
) -> None:
    if not changed:
        counts.unchanged += 1
        return
    counts.updated += 1
    record(
        session,
        actor,
        f"{entity}.updated",
        entity,
        entity_id,
        {**(details or {}), "fields": changed, "via": "seed"},
    )
