"""The worker's scheduled work, each job run twice: it announces or deletes each thing once."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import func, select, update

from app.audit.models import AuditEvent
from app.core.db import Database, utcnow
from app.core.idempotency import IdempotencyRecord
from app.outbox.models import OutboxEvent
from app.requests.models import SubjectRequest
from app.tasks.models import Task
from app.worker.schedule import ScheduleConfig, run_schedule
from tests.conftest import bearer
from tests.worker.conftest import Receiver, file_access, system_with_hook
from tests.worker.test_events import customer_with_hook

CONFIG = ScheduleConfig(notice_days=7, lapses_before_event=3)


async def events(database: Database, target: str) -> list[tuple[str, dict[str, Any]]]:
    async with database.sessionmaker() as session:
        rows = await session.execute(
            select(OutboxEvent.event_type, OutboxEvent.payload)
            .where(OutboxEvent.target_id == target)
            .order_by(OutboxEvent.id)
        )
        return [(t, p) for t, p in rows]


async def set_request(database: Database, request_id: str, **values: Any) -> None:
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            update(SubjectRequest)
            .where(SubjectRequest.id == uuid.UUID(request_id))
            .values(**values)
        )


async def customer_request(
    client: AsyncClient, database: Database, admin: dict[str, str], url: str, regime: str = "gdpr"
) -> tuple[str, str]:
    """An open request filed by a customer that takes webhooks: (customer id, request id)."""
    customer, identities = await customer_with_hook(client, database, admin, url)
    async with database.sessionmaker() as session:
        key = await bearer(session, "controller", controller_id=uuid.UUID(customer["id"]))
    body = {"type": "access", "regime": regime, "identities": identities}
    response = await client.post("/v1/requests", json=body, headers=key)
    assert response.status_code == 201, response.text
    return customer["id"], response.json()["id"]


async def test_deadline_watch_announces_each_deadline_once(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    customer, request = await customer_request(wclient, wdb, wadmin, receiver.url)
    now = utcnow()
    await set_request(wdb, request, due_at=now + timedelta(days=30))
    await run_schedule(wdb, CONFIG)
    assert await events(wdb, customer) == []

    await set_request(wdb, request, due_at=now + timedelta(days=2))
    await run_schedule(wdb, CONFIG)
    await run_schedule(wdb, CONFIG)
    ((kind, payload),) = await events(wdb, customer)
    assert kind == "request.due_soon"
    assert payload["request_id"] == request

    await set_request(wdb, request, due_at=now - timedelta(hours=1))
    await run_schedule(wdb, CONFIG)
    await run_schedule(wdb, CONFIG)
    assert [k for k, _ in await events(wdb, customer)] == ["request.due_soon", "request.overdue"]

    # An extension is a new deadline: announced when it comes near, and once.
    await set_request(wdb, request, extended_due_at=now + timedelta(days=1))
    await run_schedule(wdb, CONFIG)
    await run_schedule(wdb, CONFIG)
    assert [k for k, _ in await events(wdb, customer)].count("request.due_soon") == 2

    # A closed request is no longer watched.
    await set_request(wdb, request, status="completed", extended_due_at=now - timedelta(days=1))
    await run_schedule(wdb, CONFIG)
    assert [k for k, _ in await events(wdb, customer)].count("request.overdue") == 1


async def test_acknowledgement_due_before_acknowledge_by(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    customer, request = await customer_request(wclient, wdb, wadmin, receiver.url, "ccpa")
    await set_request(
        wdb,
        request,
        acknowledge_by=utcnow() + timedelta(days=1),
        due_at=utcnow() + timedelta(days=40),
    )
    await run_schedule(wdb, CONFIG)
    await run_schedule(wdb, CONFIG)
    ((kind, payload),) = await events(wdb, customer)
    assert kind == "request.acknowledgement_due"
    assert payload["acknowledge_by"].endswith("Z")


async def test_sealed_contact_details_are_purged_after_the_proof_period(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    _customer, request = await customer_request(wclient, wdb, wadmin, receiver.url)
    _other, kept = await customer_request(wclient, wdb, wadmin, receiver.url)
    await set_request(wdb, request, purge_contact_after=utcnow() - timedelta(minutes=1))
    await set_request(wdb, kept, purge_contact_after=utcnow() + timedelta(days=1))
    first = await run_schedule(wdb, CONFIG)
    second = await run_schedule(wdb, CONFIG)
    assert first.contacts_purged >= 1
    assert second.contacts_purged == 0
    async with wdb.sessionmaker() as session:
        sealed = dict(
            (
                await session.execute(
                    select(SubjectRequest.id, SubjectRequest.contact_sealed).where(
                        SubjectRequest.id.in_([uuid.UUID(request), uuid.UUID(kept)])
                    )
                )
            ).all()
        )
        purged_events = await session.scalar(
            select(func.count()).where(
                AuditEvent.event_type == "request.contact_purged",
                AuditEvent.entity_id == request,
            )
        )
    assert sealed[uuid.UUID(request)] is None
    assert sealed[uuid.UUID(kept)] is not None
    assert purged_events == 1


async def test_expired_idempotency_keys_are_deleted(wdb: Database) -> None:
    old, fresh = uuid.uuid4(), uuid.uuid4()
    async with wdb.sessionmaker() as session, session.begin():
        for row_id, age in ((old, timedelta(hours=25)), (fresh, timedelta(hours=1))):
            session.add(
                IdempotencyRecord(
                    id=row_id,
                    key_id=uuid.uuid4(),
                    key="k",
                    request_hash="0" * 64,
                    created_at=utcnow() - age,
                )
            )
    await run_schedule(wdb, CONFIG)
    async with wdb.sessionmaker() as session:
        left = set(
            (
                await session.scalars(
                    select(IdempotencyRecord.id).where(IdempotencyRecord.id.in_([old, fresh]))
                )
            ).all()
        )
    assert left == {fresh}


async def test_a_task_whose_lease_keeps_lapsing_is_reported_to_its_system(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    await file_access(wclient, wadmin, world)
    for lapse in range(1, 4):
        async with wdb.sessionmaker() as session, session.begin():
            await session.execute(
                update(Task)
                .where(Task.system == world.system)
                .values(status="claimed", lease_expires_at=utcnow() - timedelta(minutes=lapse))
            )
        report = await run_schedule(wdb, CONFIG)
        assert report.leases_lapsed >= 1
        await run_schedule(wdb, CONFIG)  # the same lapse seen again counts once
    kinds = [k for k, _ in await events(wdb, world.system)]
    assert kinds == ["task.created", "task.lease_lapsed"]
    assert (await events(wdb, world.system))[-1][1]["lapses"] == 3
