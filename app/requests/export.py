"""The access / portability package: the systems' exported data, plus what GDPR Art. 15(1)
asks for, read from the registry: purposes with legal basis, categories, recipients,
retention periods, source, and the subject's rights."""

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
from app.records.models import Record, RecordProfile
from app.requests.models import RequestScope, ScopeRecord, SubjectRequest
from app.requests.queries import scope_rows
from app.retention.answer import stored_decision
from app.retention_rules.models import RetentionRule
from app.systems.models import System
from app.tasks.models import Task

RIGHTS = [
    {"right": "access", "basis": "GDPR Art. 15"},
    {"right": "rectification", "basis": "GDPR Art. 16"},
    {"right": "erasure", "basis": "GDPR Art. 17"},
    {"right": "restriction", "basis": "GDPR Art. 18"},
    {"right": "portability", "basis": "GDPR Art. 20"},
    {"right": "objection", "basis": "GDPR Art. 21"},
    {"right": "complaint to a supervisory authority", "basis": "GDPR Art. 77"},
]


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
    return {
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
        },
        "retention": await _retention(session, rows),
        "source": "Collected by the Spix services listed under recipients.systems, from the "
        "subject's use of Spix or from the customer (controller) that holds the data",
        "rights": RIGHTS,
    }


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
