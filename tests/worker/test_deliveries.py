"""Outbox events reach a real receiver on loopback, signed per Standard Webhooks, with
retries, dead letters and redelivery."""

from __future__ import annotations

import pytest
from fastapi import FastAPI
from httpx import AsyncClient
from sqlalchemy import func, select, update
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from app.core.config import Settings
from app.core.db import Database
from app.outbox import service as outbox
from app.outbox.models import OutboxEvent
from app.webhooks.models import WebhookSecret
from tests.conftest import bearer
from tests.worker.conftest import Receiver, file_access, relay_for, system_with_hook


async def drain(database: Database, settings: Settings, rounds: int = 10) -> None:
    async with relay_for(database, settings) as relay:
        for _ in range(rounds):
            if not await relay.run_once():
                return


async def deliveries(client: AsyncClient, admin: dict[str, str], **query: str) -> list[dict]:
    response = await client.get("/v1/webhook-deliveries", params=query, headers=admin)
    assert response.status_code == 200, response.text
    return list(response.json()["items"])


async def test_task_created_reaches_the_system_signed(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    request = await file_access(wclient, wadmin, world)
    await drain(wdb, wsettings)

    (got,) = receiver.received
    # The receiver verifies with the standardwebhooks library and the secret it was shown.
    event = Webhook(world.secret).verify(got.body, got.headers)
    assert event["type"] == "task.created"
    assert event["data"]["request_id"] == request["id"]
    assert event["data"]["task_id"]
    assert world.identities[0]["value"] not in got.body.decode()
    with pytest.raises(WebhookVerificationError):
        Webhook("whsec_" + "A" * 43 + "=").verify(got.body, got.headers)
    (row,) = await deliveries(wclient, wadmin, endpoint=f"system:{world.system}")
    assert row["status"] == "delivered"
    assert row["attempts"] == 1
    assert got.headers["webhook-id"] == f"msg_{row['id'].replace('-', '')}"


async def test_rolled_back_change_emits_nothing(wdb: Database, receiver: Receiver) -> None:
    async with wdb.sessionmaker() as session:
        from tests.builders import make_system

        key = (await make_system(session, webhook_url=receiver.url)).key
        await session.begin()
        outbox.emit(session, "task.created", {"task_id": "rolled-back"}, system=key)
        await session.rollback()
        # The same session's next commit must not carry the rolled-back event along.
        outbox.emit(session, "task.created", {"task_id": "committed"}, system=key)
        await session.commit()
        payloads = (
            await session.scalars(select(OutboxEvent.payload).where(OutboxEvent.target_id == key))
        ).all()
    assert payloads == [{"task_id": "committed"}]


async def test_no_row_for_a_receiver_without_a_webhook(wdb: Database) -> None:
    from tests.builders import make_system

    async with wdb.sessionmaker() as session:
        system = await make_system(session)
        outbox.emit(session, "task.created", {"task_id": "x"}, system=system.key)
        await session.commit()
        count = await session.scalar(
            select(func.count()).where(OutboxEvent.target_id == system.key)
        )
    assert count == 0


async def test_receiver_down_retries_then_dead_letter_then_redeliver(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    receiver.status = 503
    await file_access(wclient, wadmin, world)
    await drain(wdb, wsettings)

    assert len(receiver.received) == wsettings.webhook_max_attempts == 3
    assert len(set(receiver.ids())) == 1  # every attempt carries the same webhook-id
    (dead,) = await deliveries(wclient, wadmin, status="dead", event="task.created")
    assert dead["attempts"] == 3
    assert dead["last_status_code"] == 503

    # Only the privacy team redelivers; a pending event is not redelivered twice.
    async with wdb.sessionmaker() as session:
        auditor = await bearer(session, "auditor")
    path = f"/v1/webhook-deliveries/{dead['id']}/redeliver"
    assert (await wclient.post(path, headers=auditor)).status_code == 403

    receiver.status = 200
    response = await wclient.post(path, headers=wadmin)
    assert response.status_code == 200, response.text
    assert response.json()["status"] == "pending"
    assert (await wclient.post(path, headers=wadmin)).status_code == 409
    await drain(wdb, wsettings)

    assert len(receiver.received) == 4
    assert len(set(receiver.ids())) == 1
    Webhook(world.secret).verify(receiver.received[-1].body, receiver.received[-1].headers)
    (row,) = await deliveries(wclient, wadmin, endpoint=f"system:{world.system}")
    assert row["status"] == "delivered"


async def test_backoff_waits_between_attempts(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    receiver.status = 500
    await file_access(wclient, wadmin, world)
    async with relay_for(wdb, wsettings, backoff_base=60.0) as relay:
        assert await relay.run_once() == 1
        assert await relay.run_once() == 0  # not due yet
    (row,) = await deliveries(wclient, wadmin, endpoint=f"system:{world.system}")
    assert row["status"] == "pending"
    assert row["attempts"] == 1
    assert row["last_error"] == "answered 500"
    assert row["next_attempt_at"] > row["last_attempt_at"]  # ISO 8601, one format


async def test_rotated_secret_signs_beside_the_old_one_until_it_retires(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    rotated = await wclient.post(f"/v1/systems/{world.system}/webhook-secret", headers=wadmin)
    assert rotated.status_code == 201
    new = rotated.json()["webhook_signing_secret"]
    assert rotated.json()["previous_retires_at"] is not None
    await file_access(wclient, wadmin, world)
    await drain(wdb, wsettings)
    got = receiver.received[-1]
    assert len(got.headers["webhook-signature"].split(" ")) == 2
    Webhook(world.secret).verify(got.body, got.headers)  # a receiver not yet updated
    Webhook(new).verify(got.body, got.headers)

    async with wdb.sessionmaker() as session, session.begin():
        await session.execute(
            update(WebhookSecret)
            .where(WebhookSecret.target_id == world.system, WebhookSecret.retires_at.is_not(None))
            .values(retires_at=WebhookSecret.created_at)  # retired: in the past
        )
    await file_access(wclient, wadmin, world)
    await drain(wdb, wsettings)
    got = receiver.received[-1]
    Webhook(new).verify(got.body, got.headers)
    with pytest.raises(WebhookVerificationError):
        Webhook(world.secret).verify(got.body, got.headers)


async def test_unknown_system_secret_is_404(wclient: AsyncClient, wadmin: dict[str, str]) -> None:
    response = await wclient.post("/v1/systems/no-such/webhook-secret", headers=wadmin)
    assert response.status_code == 404


async def test_deliveries_list_needs_a_reader(wclient: AsyncClient, wapp: FastAPI) -> None:
    assert (await wclient.get("/v1/webhook-deliveries")).status_code == 401


async def test_metrics_show_outcomes_and_the_oldest_undelivered_age(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    world = await system_with_hook(wclient, wdb, wadmin, receiver.url)
    await file_access(wclient, wadmin, world)
    text = (await wclient.get("/metrics")).text
    assert 'spix_dsr_webhook_deliveries{status="pending"} 1.0' in text
    age = float(text.split("\nspix_dsr_webhook_oldest_undelivered_seconds ")[1].split()[0])
    assert 0 < age < 60
    await drain(wdb, wsettings)
    text = (await wclient.get("/metrics")).text
    assert 'spix_dsr_webhook_deliveries{status="delivered"} 1.0' in text
    assert "spix_dsr_webhook_oldest_undelivered_seconds 0.0" in text
