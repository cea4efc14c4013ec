"""A small Spix: the platform, a customer, systems, categories, purposes and rules."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.suppressions.gpc import SALE_AND_SHARING
from tests.builders import (
    make_category,
    make_controller,
    make_purpose,
    make_record,
    make_rule,
    make_system,
)
from tests.conftest import bearer

ALICE = [{"type": "email", "value": "alice@example.com"}]


@pytest.fixture
async def spix(session: AsyncSession) -> dict[str, Any]:
    platform = await make_controller(session, kind="platform", name="Spix")
    acme = await make_controller(session, name="Acme")
    for key in ("accounts", "billing", "messaging", "voice"):
        await make_system(session, key)
    for key in (
        "account.profile",
        "billing.invoice",
        "communications.sms_body",
        "communications.recording",
    ):
        await make_category(session, key)
    await make_purpose(
        session, "marketing.communications", legal_basis="consent", objection_absolute=True
    )
    await make_purpose(session, "analytics.product", legal_basis="legitimate_interest")
    for key in SALE_AND_SHARING:  # what a US opt-out and a GPC signal suppress
        await make_purpose(session, key, legal_basis="consent", objection_absolute=True)
    law = await make_rule(
        session,
        kind="minimum",
        category="billing.invoice",
        period="P10Y",
        source="law",
        citation="HGB 257",
    )
    records = {
        "profile": await make_record(
            session,
            system="accounts",
            controller_id=platform.id,
            categories=["account.profile"],
            identities=ALICE,
        ),
        "invoice": await make_record(
            session,
            system="billing",
            controller_id=platform.id,
            categories=["billing.invoice"],
            identities=ALICE,
        ),
        "sms": await make_record(
            session,
            system="messaging",
            controller_id=acme.id,
            categories=["communications.sms_body"],
            identities=ALICE,
        ),
        "call": await make_record(
            session,
            system="voice",
            controller_id=acme.id,
            categories=["communications.recording"],
            identities=ALICE,
        ),
    }
    keys = {
        system: await bearer(session, "system", system_key=system)
        for system in ("accounts", "billing", "messaging", "voice")
    }
    return {
        "platform": platform,
        "acme": acme,
        "records": records,
        "keys": keys,
        "acme_key": await bearer(session, "controller", controller_id=acme.id),
        "law_rule": law,
    }


async def file(client: AsyncClient, headers: dict[str, str], **fields: Any) -> dict[str, Any]:
    body = {"type": "access", "regime": "gdpr", "identities": ALICE, **fields}
    response = await client.post("/v1/requests", json=body, headers=headers)
    assert response.status_code == 201, response.text
    return dict(response.json())


async def claim(client: AsyncClient, headers: dict[str, str], **body: Any) -> list[dict[str, Any]]:
    response = await client.post("/v1/tasks/claim", json=body or {}, headers=headers)
    assert response.status_code == 200, response.text
    return list(response.json()["tasks"])
