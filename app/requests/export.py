"""The access / portability package: the systems' exported data, plus what GDPR Art. 15(1)
asks for, read from the registry: purposes with legal basis, categories, recipients,
retention periods, source, and the subject's rights."""

from __future__ import annotations

import uuid
from collections import defaultdict
from typing import Any

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.data_categories.models import DataCategory
from app.purposes.models import Purpose
from app.records.models import Record, RecordProfile
from app.requests.models import RequestScope, ScopeRecord, SubjectRequest
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
    session: AsyncSession, request: SubjectRequest, controller_id: uuid.UUID | None
) -> dict[str, Any]:
    """`controller_id` limits the package to one controller's scope (a controller key)."""
    # Only what Spix carried out: a scope the controller declined or answered itself is its own.
    scope_query = select(RequestScope).where(
        RequestScope.request_id == request.id, RequestScope.status == "completed"
    )
    if controller_id is not None:
        scope_query = scope_query.where(RequestScope.controller_id == controller_id)
    scopes = (await session.scalars(scope_query)).all()
    scope_ids = [s.id for s in scopes]
    tasks = (
        await session.scalars(
            select(Task)
            .where(Task.scope_id.in_(scope_ids), Task.action == "export")
            .order_by(Task.system, Task.id)
        )
    ).all()
    profiles = (
        await session.execute(
            select(RecordProfile, Record.system, Record.record_ref)
            .join(Record, Record.profile_id == RecordProfile.id)
            .join(ScopeRecord, ScopeRecord.record_id == Record.id)
            .where(ScopeRecord.scope_id.in_(scope_ids))
        )
    ).all()
    categories: set[str] = set()
    purposes: set[str] = set()
    systems: set[str] = set()
    controllers: set[uuid.UUID] = set()
    for profile, system, _ref in profiles:
        categories.update(profile.categories)
        purposes.update(profile.purposes)
        systems.add(system)
        controllers.add(profile.controller_id)

    purpose_rows = (await session.scalars(select(Purpose).where(Purpose.key.in_(purposes)))).all()
    category_rows = (
        await session.scalars(select(DataCategory).where(DataCategory.key.in_(categories)))
    ).all()
    system_rows = (await session.scalars(select(System).where(System.key.in_(systems)))).all()
    controller_rows = (
        await session.scalars(select(Controller).where(Controller.id.in_(controllers)))
    ).all()
    rules = [
        rule
        for rule in (await session.scalars(select(RetentionRule))).all()
        if rule.category is None
        or any(c == rule.category or c.startswith(rule.category + ".") for c in categories)
    ]
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
        "retention": [
            {
                "category": r.category,
                "kind": r.kind,
                "period": r.period,
                "anchor": r.anchor,
                "source": r.source,
                "citation": r.citation,
            }
            for r in rules
        ],
        "source": "Collected by the Spix services listed under recipients.systems, from the "
        "subject's use of Spix or from the customer (controller) that holds the data",
        "rights": RIGHTS,
    }
