"""Which changes emit which events, to whom, and what the events carry."""

from __future__ import annotations

import uuid
from typing import Any

from httpx import AsyncClient
from standardwebhooks.webhooks import Webhook

from app.core.config import Settings
from app.core.db import Database
from tests.builders import make_category, make_record, make_system
from tests.conftest import bearer
from tests.worker.conftest import (
    Receiver,
    file_access,
    platform_of,
    platform_system,
    relay_for,
)


async def customer_with_hook(
    client: AsyncClient, database: Database, admin: dict[str, str], url: str
) -> tuple[dict[str, Any], list[dict[str, str]]]:
    """A customer routed by webhook (not executing on its own), with one record of a subject."""
    await platform_of(database)
    response = await client.post(
        "/v1/controllers",
        json={
            "name": f"Acme {uuid.uuid4().hex[:6]}",
            "dsr_routing": {"mode": "webhook", "webhook_url": url},
        },
        headers=admin,
    )
    assert response.status_code == 201, response.text
    customer = response.json()
    identities = [{"type": "email", "value": f"{uuid.uuid4().hex[:8]}@example.com"}]
    async with database.sessionmaker() as session:
        system = await make_system(session)
        await make_category(session, "communications.sms_body")
        await make_record(
            session,
            system=system.key,
            controller_id=uuid.UUID(customer["id"]),
            categories=["communications.sms_body"],
            identities=identities,
        )
    return customer, identities


async def delivered(
    database: Database, settings: Settings, receiver: Receiver, secret: str
) -> list[dict[str, Any]]:
    async with relay_for(database, settings) as relay:
        while await relay.run_once():
            pass
    return [Webhook(secret).verify(r.body, r.headers) for r in receiver.received]


async def test_a_forwarded_scope_tells_the_customer(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    customer, identities = await customer_with_hook(wclient, wdb, wadmin, receiver.url)
    body = {"type": "erasure", "regime": "gdpr", "identities": identities, "verified": True}
    request = (await wclient.post("/v1/requests", json=body, headers=wadmin)).json()

    (event,) = await delivered(wdb, wsettings, receiver, customer["webhook_signing_secret"])
    assert event["type"] == "scope.awaiting_controller"
    assert event["data"]["request_id"] == request["id"]
    assert event["data"]["controller_id"] == customer["id"]
    assert event["data"]["scope_status"] == "awaiting_controller"
    assert identities[0]["value"] not in str(event)


async def test_a_customer_filed_request_reports_its_status_and_the_run(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    customer, identities = await customer_with_hook(wclient, wdb, wadmin, receiver.url)
    async with wdb.sessionmaker() as session:
        key = await bearer(session, "controller", controller_id=uuid.UUID(customer["id"]))
    body = {"type": "access", "regime": "gdpr", "identities": identities}
    request = (await wclient.post("/v1/requests", json=body, headers=key)).json()
    code = request["verification"]["code"]
    verified = await wclient.post(
        f"/v1/requests/{request['id']}/verify", json={"code": code}, headers=key
    )
    assert verified.status_code == 200, verified.text

    events = await delivered(wdb, wsettings, receiver, customer["webhook_signing_secret"])
    by_type = {e["type"]: e["data"] for e in events}
    assert set(by_type) == {"request.status_changed", "scope.run_on_behalf"}
    assert by_type["request.status_changed"] == {
        "event_id": by_type["request.status_changed"]["event_id"],
        "request_id": request["id"],
        "type": "access",
        "regime": "gdpr",
        "from": "pending_verification",
        "to": "in_progress",
    }
    assert code not in str(events)


async def test_the_platform_routed_by_webhook_hears_of_its_own_requests(
    wclient: AsyncClient,
    wdb: Database,
    wadmin: dict[str, str],
    wsettings: Settings,
    receiver: Receiver,
) -> None:
    """Events addressed to the platform (no controller named) reach it once it takes
    webhooks; a system without a hook and the platform before it took them get nothing."""
    world = await platform_system(wdb)  # its system takes no webhooks
    platform = world.platform
    await file_access(wclient, wadmin, world)  # before the platform takes them
    routed = await wclient.patch(
        f"/v1/controllers/{platform}",
        json={"dsr_routing": {"mode": "webhook", "webhook_url": receiver.url}},
        headers=wadmin,
    )
    assert routed.status_code == 200, routed.text
    secret = routed.json()["webhook_signing_secret"]
    request = await file_access(wclient, wadmin, world)

    events = await delivered(wdb, wsettings, receiver, secret)
    assert sorted(e["type"] for e in events) == ["request.status_changed", "scope.run_on_behalf"]
    assert {e["data"]["request_id"] for e in events} == {request["id"]}
    changed = next(e["data"] for e in events if e["type"] == "request.status_changed")
    assert (changed["from"], changed["to"]) == ("pending_verification", "in_progress")
    back = await wclient.patch(
        f"/v1/controllers/{platform}", json={"dsr_routing": {"mode": "dashboard"}}, headers=wadmin
    )
    assert back.status_code == 200, back.text  # the module's other tests share the platform
