"""The schedule's retention work: `retention.records_due` pushed to systems that ask for it
(once per deadline, ids only, in batches), expired erasure memory deleted, and reappeared
records announced to their controller."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from httpx import AsyncClient
from sqlalchemy import insert, select, update
from standardwebhooks.webhooks import Webhook

from app.audit.service import OPERATOR
from app.core.config import Settings
from app.core.db import Database, utcnow
from app.records.models import ErasureMemory, Record
from app.records.reappearance import Candidate, flag_reappeared
from app.worker.records_due import push_records_due
from app.worker.schedule import run_schedule
from tests.builders import make_category, make_record, make_system
from tests.worker.conftest import Receiver, file_access, platform_of, system_with_hook
from tests.worker.test_deliveries import drain
from tests.worker.test_events import customer_with_hook
from tests.worker.test_schedule import CONFIG, events


async def due_system(
    client: AsyncClient, database: Database, admin: dict[str, str], url: str, records: int
) -> tuple[str, str, list[uuid.UUID]]:
    """A system asking for pushed deadlines, with its secret and `records` records of its own
    (no deadline yet): (key, secret, record ids in id order)."""
    platform = await platform_of(database)
    key = f"sys-{uuid.uuid4().hex[:8]}"
    async with database.sessionmaker() as session:
        await make_system(session, key, webhook_url=url, push_records_due=True)
        await make_category(session, "account.profile")
        ids = [
            await make_record(
                session, system=key, controller_id=platform, categories=["account.profile"]
            )
            for _ in range(records)
        ]
    secret = await client.post(f"/v1/systems/{key}/webhook-secret", headers=admin)
    assert secret.status_code == 201, secret.text
    return key, secret.json()["webhook_signing_secret"], sorted(ids)


async def set_deadline(database: Database, record_id: uuid.UUID, **values: Any) -> None:
    async with database.sessionmaker() as session, session.begin():
        await session.execute(
            update(Record).where(Record.id == record_id).values(held=False, **values)
        )


async def announced(database: Database, system: str) -> list[list[str]]:
    return [p["record_ids"] for t, p in await events(database, system) if "record_ids" in p]


async def test_records_due_are_pushed_once_per_deadline(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    key, secret, (a, b, c) = await due_system(wclient, wdb, wadmin, receiver.url, 3)
    now = utcnow()
    await set_deadline(wdb, a, delete_by=now - timedelta(days=2))
    await set_deadline(wdb, b, delete_by=now - timedelta(days=1))
    await set_deadline(wdb, c, delete_by=now + timedelta(days=3))
    first = await run_schedule(wdb, CONFIG)
    second = await run_schedule(wdb, CONFIG)
    assert first.records_due >= 2
    assert await announced(wdb, key) == [[str(a), str(b)]]  # oldest deadline first
    assert second.records_due == 0

    # The third comes due; the first gets a new deadline (announced again), the second is
    # erased and the system has it no more.
    await set_deadline(wdb, c, delete_by=now - timedelta(hours=1))
    await set_deadline(wdb, a, delete_by=now - timedelta(hours=2))
    await set_deadline(wdb, b, state="erased")
    await run_schedule(wdb, CONFIG)
    await run_schedule(wdb, CONFIG)
    assert await announced(wdb, key) == [[str(a), str(b)], [str(a), str(c)]]

    # The system verifies the events; they carry ids only.
    await drain(wdb, wsettings)
    payloads = [Webhook(secret).verify(r.body, r.headers) for r in receiver.received]
    due = [p for p in payloads if p["type"] == "retention.records_due"]
    # Delivered concurrently: in either order.
    assert sorted(p["data"]["record_ids"] for p in due) == [[str(a), str(b)], [str(a), str(c)]]
    assert set(due[0]["data"]) == {"event_id", "system", "record_ids", "count", "due_through"}


async def test_records_due_go_out_in_batches_and_only_to_systems_that_asked(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    key, _secret, ids = await due_system(wclient, wdb, wadmin, receiver.url, 5)
    for record_id in ids:
        await set_deadline(wdb, record_id, delete_by=utcnow() - timedelta(days=1))
    # Another system with a webhook, due records, and no wish for pushes.
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    async with wdb.sessionmaker() as session, session.begin():
        await session.execute(
            update(Record)
            .where(Record.system == world.system)
            .values(held=False, delete_by=utcnow() - timedelta(days=1))
        )

    assert await push_records_due(wdb, size=2) == 5
    assert await push_records_due(wdb, size=2) == 0
    batches = await announced(wdb, key)
    assert [len(batch) for batch in batches] == [2, 2, 1]
    assert sorted(i for batch in batches for i in batch) == sorted(str(i) for i in ids)
    assert await announced(wdb, world.system) == []


async def test_expired_erasure_memory_is_deleted_in_batches(
    wclient: AsyncClient, wdb: Database, wadmin: dict[str, str], receiver: Receiver
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    request = uuid.UUID((await file_access(wclient, wadmin, world))["id"])
    now = utcnow()
    expired = [f"{n:064x}" for n in range(501)]  # more than one batch
    async with wdb.sessionmaker() as session, session.begin():
        await session.execute(
            insert(ErasureMemory),
            [
                {
                    "request_id": request,
                    "controller_id": world.platform,
                    "digest": digest,
                    "erased_at": now - timedelta(days=400),
                    "expires_at": now - timedelta(days=35),
                }
                for digest in expired
            ]
            + [
                {
                    "request_id": request,
                    "controller_id": world.platform,
                    "digest": "f" * 64,
                    "erased_at": now,
                    "expires_at": now + timedelta(days=365),
                }
            ],
        )
    first = await run_schedule(wdb, CONFIG)
    second = await run_schedule(wdb, CONFIG)
    assert first.erasure_memory_deleted >= 501
    assert second.erasure_memory_deleted == 0
    async with wdb.sessionmaker() as session:
        left = (
            await session.scalars(
                select(ErasureMemory.digest).where(ErasureMemory.request_id == request)
            )
        ).all()
    assert left == ["f" * 64]


async def test_a_reappeared_record_is_announced_to_its_controller(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    customer, identities = await customer_with_hook(wclient, wdb, wadmin, receiver.url)
    body = {"type": "erasure", "regime": "gdpr", "identities": identities, "verified": True}
    request = (await wclient.post("/v1/requests", json=body, headers=wadmin)).json()
    customer_id = uuid.UUID(customer["id"])
    digest = "ab" * 32
    async with wdb.sessionmaker() as session, session.begin():
        record_id, system = (
            await session.execute(
                select(Record.id, Record.system).where(Record.controller_id == customer_id)
            )
        ).one()
        session.add(
            ErasureMemory(
                request_id=uuid.UUID(request["id"]),
                controller_id=customer_id,
                digest=digest,
                erased_at=utcnow(),
                expires_at=utcnow() + timedelta(days=30),
            )
        )
    async with wdb.sessionmaker() as session, session.begin():
        flagged = await flag_reappeared(
            session, OPERATOR, [Candidate(record_id, customer_id, system, [digest])], utcnow()
        )
    assert flagged == [record_id]
    async with wdb.sessionmaker() as session, session.begin():  # flagged once only
        again = [Candidate(record_id, customer_id, system, [digest])]
        assert await flag_reappeared(session, OPERATOR, again, utcnow()) == []

    await drain(wdb, wsettings)
    secret = customer["webhook_signing_secret"]
    payloads = [Webhook(secret).verify(r.body, r.headers) for r in receiver.received]
    (event,) = [p for p in payloads if p["type"] == "records.reappeared"]
    (flag,) = event["data"]["flags"]
    assert flag["record_id"] == str(record_id)
    assert flag["request_id"] == request["id"]
    assert flag["system"] == system
    assert identities[0]["value"] not in str(payloads)
