"""The access / portability package: the systems' exported data, plus what GDPR Art. 15(1)-(2)
asks for, read from the registry: per record its purposes with legal basis, categories,
retention, source and recipients; the recipients registry's entries with their transfer
safeguards; each controller's statement on automated decision-making; and the rights and
complaint authority of the request's regime. A portability package adds `provided_data`: what
the subject gave, apart from the Art. 15 facts (Art. 20(1))."""

from __future__ import annotations

import uuid
from collections import defaultdict
from collections.abc import Sequence
from datetime import datetime
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import Principal
from app.controllers.models import Controller
from app.core.db import utcnow
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.recipients.models import Recipient
from app.recipients.service import recipients_of_systems
from app.records.models import Record, RecordProfile
from app.requests.models import RequestScope, ScopeRecord, SubjectRequest
from app.requests.queries import scope_rows
from app.requests.rights import rights_of
from app.retention.answer import stored_decision
from app.retention.policy import category_covers
from app.retention_rules.models import RetentionRule
from app.systems.models import System
from app.tasks.models import Task


async def build_package(
    session: AsyncSession, principal: Principal, request: SubjectRequest
) -> dict[str, Any]:
    """The package as this key may read it: a controller key gets its own scope's part."""
    # Only what Spix carried out: a scope the controller declined or answered itself is its own.
    scope_query = select(RequestScope).where(
        RequestScope.request_id == request.id,
        RequestScope.status == "completed",
        scope_rows(principal),
    )
    scopes = (await session.scalars(scope_query)).all()
    scope_ids = [s.id for s in scopes]
    tasks = (
        await session.scalars(
            select(Task)
            .where(Task.scope_id.in_(scope_ids), Task.action == "export")
            .order_by(Task.system, Task.id)
        )
    ).all()
    rows = (
        await session.execute(
            select(Record, RecordProfile)
            .join(RecordProfile, RecordProfile.id == Record.profile_id)
            .join(ScopeRecord, ScopeRecord.record_id == Record.id)
            .where(ScopeRecord.scope_id.in_(scope_ids))
            .order_by(Record.system, Record.record_ref)
        )
    ).all()
    categories: set[str] = set()
    purposes: set[str] = set()
    systems: set[str] = set()
    controllers: set[uuid.UUID] = set()
    for record, profile in rows:
        categories.update(profile.categories)
        purposes.update(profile.purposes)
        systems.add(record.system)
        controllers.add(record.controller_id)

    purpose_rows = (await session.scalars(select(Purpose).where(Purpose.key.in_(purposes)))).all()
    category_rows = (
        await session.scalars(select(DataCategory).where(DataCategory.key.in_(categories)))
    ).all()
    system_rows = (await session.scalars(select(System).where(System.key.in_(systems)))).all()
    controller_rows = (
        await session.scalars(select(Controller).where(Controller.id.in_(controllers)))
    ).all()
    data: dict[str, list[Any]] = defaultdict(list)
    for task in tasks:
        data[task.system].append(
            {"record_refs": task.record_refs, "data": (task.result or {}).get("data")}
        )
    retention = await _retention(session, rows)
    recipients = await recipients_of_systems(session, systems)
    registered = {r.key: r for found in recipients.values() for r in found}
    regime = rights_of(request.regime)
    package: dict[str, Any] = {
        "request": {
            "id": str(request.id),
            "type": request.type,
            "regime": request.regime,
            "received_at": request.received_at.isoformat(),
            "completed_at": request.closed_at.isoformat() if request.closed_at else None,
        },
        "data": [{"system": system, "exports": exports} for system, exports in data.items()],
        "purposes": [
            {"key": p.key, "name": p.name, "legal_basis": p.legal_basis} for p in purpose_rows
        ],
        "categories": [
            {"key": c.key, "name": c.name, "description": c.description} for c in category_rows
        ],
        "recipients": {
            "systems": [{"key": s.key, "name": s.name, "owner": s.owner} for s in system_rows],
            "controllers": [
                {"id": str(c.id), "name": c.name, "kind": c.kind} for c in controller_rows
            ],
            # Processors, sub-processors and third parties that receive these records' data.
            "registered": [_recipient(registered[key]) for key in sorted(registered)],
        },
        "records": _records(
            rows,
            retention,
            {p.key: p for p in purpose_rows},
            {s.key: s for s in system_rows},
            {c.id: c for c in controller_rows},
            recipients,
        ),
        "retention": retention,
        "source": "Collected by the Spix services listed under recipients.systems, from the "
        "subject's use of Spix or from the customer (controller) that holds the data; each "
        "entry of `records` names its own source",
        "automated_decision_making": [
            {
                "controller_id": str(c.id),
                "controller": c.name,
                # None: the controller has stated nothing in the registry, so nothing is claimed.
                "statement": c.automated_decision_making,
            }
            for c in sorted(controller_rows, key=lambda c: (c.name, str(c.id)))
        ],
        "law": regime["law"],
        "rights": regime["rights"],
        "complaint_authority": regime["complaint_authority"],
    }
    if request.type == "portability":
        package["provided_data"] = _provided_data(rows, tasks, category_rows)
    return package


def _recipient(recipient: Recipient) -> dict[str, Any]:
    return {
        "key": recipient.key,
        "name": recipient.name,
        "role": recipient.role,
        "country": recipient.country,
        "transfer_safeguard": recipient.transfer_safeguard,
    }


def _records(
    rows: Sequence[Any],
    retention: list[dict[str, Any]],
    purposes: dict[str, Purpose],
    systems: dict[str, System],
    controllers: dict[uuid.UUID, Controller],
    recipients: dict[str, list[Recipient]],
) -> list[dict[str, Any]]:
    """Art. 15(1) per record: what, why and on which basis, for how long, from where, to whom."""
    entries = []
    for (record, profile), kept in zip(rows, retention, strict=True):
        system = systems.get(record.system)
        controller = controllers.get(record.controller_id)
        entries.append(
            {
                "system": record.system,
                "record_ref": record.record_ref,
                "controller_id": str(record.controller_id),
                "categories": sorted(profile.categories),
                "purposes": [
                    {
                        "key": key,
                        "name": purposes[key].name if key in purposes else None,
                        "legal_basis": purposes[key].legal_basis if key in purposes else None,
                    }
                    for key in sorted(profile.purposes)
                ],
                "retention": {k: v for k, v in kept.items() if k not in _RECORD_KEYS},
                "source": {
                    "system": record.system,
                    "system_name": system.name if system else None,
                    "controller_id": str(record.controller_id),
                    "controller": controller.name if controller else None,
                    "collected_at": record.collected_at.isoformat(),
                },
                "recipients": [r.key for r in recipients.get(record.system, [])],
            }
        )
    return entries


_RECORD_KEYS = ("system", "record_ref", "categories")


def _provided_data(
    rows: Sequence[Any], tasks: Sequence[Task], categories: Sequence[DataCategory]
) -> list[dict[str, Any]]:
    """What the subject gave (categories flagged `subject_provided`), with what the systems
    exported for those records: structured JSON, kept apart from the Art. 15 facts."""
    flagged = [c.key for c in categories if c.subject_provided]
    provided = []
    for record, profile in rows:
        given = sorted(
            key for key in profile.categories if any(category_covers(f, key) for f in flagged)
        )
        if not given:
            continue
        provided.append(
            {
                "system": record.system,
                "record_ref": record.record_ref,
                "categories": given,
                "data": [
                    (task.result or {}).get("data")
                    for task in tasks
                    if task.system == record.system and record.record_ref in task.record_refs
                ],
            }
        )
    return provided


async def _retention(session: AsyncSession, rows: Sequence[Any]) -> list[dict[str, Any]]:
    """How long each exported record is kept and why (Art. 15(1)(d)): its stored decision,
    explained by its profile's ranked rules, naming only rules of the record's own controller
    or of none. Rules that a more specific rule outranks do not decide, so they are left out."""
    now = utcnow()
    decisions = [
        (record, profile, stored_decision(record, profile.ranked_rules, [], now))
        for record, profile in rows
    ]
    rule_ids = {rule.id for _, _, decision in decisions for rule in decision.rules}
    rules = {
        rule.id: rule
        for rule in (
            await session.scalars(select(RetentionRule).where(RetentionRule.id.in_(rule_ids)))
        ).all()
    }
    package = []
    for record, profile, decision in decisions:
        explained = []
        for outcome in decision.rules:
            rule = rules.get(outcome.id)
            if outcome.outranked or rule is None:
                continue
            if rule.controller_id is not None and rule.controller_id != record.controller_id:
                continue  # never another controller's setting, even from a stale profile
            explained.append(
                {
                    "category": rule.category,
                    "kind": rule.kind,
                    "period": rule.period,
                    "anchor": rule.anchor,
                    "action": rule.action,
                    "source": rule.source,
                    "citation": rule.citation,
                    "ends_at": _iso(outcome.ends_at),
                    "decisive": outcome.decisive,
                }
            )
        package.append(
            {
                "system": record.system,
                "record_ref": record.record_ref,
                "categories": sorted(profile.categories),
                "keep_until": _iso(decision.keep_until),
                "keep_indefinitely": decision.keep_indefinitely,
                "delete_by": _iso(decision.delete_by),
                "action": decision.action,
                "rules": explained,
            }
        )
    return package


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment is not None else None
