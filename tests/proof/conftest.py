"""Two customers with one of everything: what the proof suite probes.

Tenant A (Acme) owns a record, a retention setting, a legal hold, a suppression, a subject
request with its scope and a claimed task; tenant B (Globex) owns the same kinds of things for
another subject. Keys: admin, auditor, a system key of the system A's record lives in, one of
another system, a controller key of each customer, a key of a role this code does not know,
a revoked key and a key that never existed.
Built inside the test's rolled-back transaction."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.service import create_key, revoke_key
from tests.builders import (
    make_category,
    make_controller,
    make_purpose,
    make_record,
    make_rule,
    make_system,
)
from tests.conftest import bearer
from tests.reliability.test_tenancy import unknown_role_key

ALICE = [{"type": "email", "value": "alice@example.com"}]  # a subject of A only
BOB = [{"type": "email", "value": "bob@example.com"}]  # a subject of B only


@dataclass
class World:
    ids: dict[str, str]  # A's objects, by the path parameter that names them
    keys: dict[str, dict[str, str]]  # principal name -> headers
    a_secrets: set[str] = field(default_factory=set)  # strings only A's insiders may read
    extra: dict[str, Any] = field(default_factory=dict)


def _ok(response: Any, status: int = 200) -> dict[str, Any]:
    assert response.status_code == status, response.text
    return dict(response.json())


async def _tenant(
    client: AsyncClient,
    session: AsyncSession,
    admin: dict[str, str],
    *,
    name: str,
    subject: list[dict[str, str]],
) -> dict[str, Any]:
    controller = await make_controller(session, name=name)
    controller_key = await bearer(session, "controller", controller_id=controller.id)
    ref = f"{name.lower()}-sms-1"
    record = await make_record(
        session,
        system="messaging",
        controller_id=controller.id,
        categories=["communications.sms_body"],
        identities=subject,
        record_ref=ref,
    )
    rule = await make_rule(
        session,
        category="communications",
        period="P30D",
        source="customer_setting",
        controller_id=controller.id,
        citation=f"{name} messaging terms",
    )
    hold = _ok(
        await client.post(
            "/v1/legal-holds",
            json={"reason": f"{name} matter", "controller_id": str(controller.id)},
            headers=admin,
        ),
        201,
    )
    suppression = _ok(
        await client.post(
            "/v1/suppressions",
            json={
                "identity": subject[0],
                "channel": "sms",
                "controller_id": str(controller.id),
                "source": "sms_stop",
            },
            headers=admin,
        ),
        201,
    )
    # Filed by the customer itself (its scope is approved at once): every lifecycle call on it
    # is then the customer's to make.
    request = _ok(
        await client.post(
            "/v1/requests",
            json={"type": "access", "regime": "gdpr", "identities": subject, "verified": True},
            headers=controller_key,
        ),
        201,
    )
    return {
        "controller": controller,
        "controller_key": controller_key,
        "record_id": str(record),
        "record_ref": ref,
        "rule_id": str(rule.id),
        "hold_id": hold["id"],
        "suppression_id": suppression["id"],
        "request_id": request["id"],
    }


@pytest.fixture
async def world(client: AsyncClient, session: AsyncSession, admin: dict[str, str]) -> World:
    await make_controller(session, kind="platform", name="Spix")
    for key in ("messaging", "voice"):
        await make_system(session, key)
    await make_category(session, "communications.sms_body")
    await make_purpose(session, "marketing.communications", legal_basis="consent")
    await make_rule(session, category="communications.sms_body", citation="Spix policy 4.2")
    a = await _tenant(client, session, admin, name="Acme", subject=ALICE)
    b = await _tenant(client, session, admin, name="Globex", subject=BOB)
    messaging = await bearer(session, "system", system_key="messaging")
    # The messaging system claims both customers' tasks: each is leased, as in production.
    tasks = _ok(await client.post("/v1/tasks/claim", json={"limit": 10}, headers=messaging))
    by_request = {task["request_id"]: task["id"] for task in tasks["tasks"]}
    assert set(by_request) == {a["request_id"], b["request_id"]}, tasks
    revoked = await create_key(session, role="admin")
    await session.commit()
    await revoke_key(session, revoked.api_key.id)
    await session.commit()
    keys = {
        "admin": admin,
        "auditor": await bearer(session, "auditor"),
        "system A": messaging,
        "system B": await bearer(session, "system", system_key="voice"),
        "controller A": a["controller_key"],
        "controller B": b["controller_key"],
        "unknown role": await unknown_role_key(session),
        "no key": {},
        "bad key": {"Authorization": "Bearer sdsr_0123456789ab_" + "x" * 43},
        "revoked key": {"Authorization": f"Bearer {revoked.secret}"},
    }
    ids = {
        "controller_id": str(a["controller"].id),
        "record_id": a["record_id"],
        "rule_id": a["rule_id"],
        "hold_id": a["hold_id"],
        "request_id": a["request_id"],
        "task_id": by_request[a["request_id"]],
    }
    secrets = {*ids.values(), a["record_ref"], a["suppression_id"], "Acme"}
    return World(ids=ids, keys=keys, a_secrets=secrets, extra={"a": a, "b": b})
