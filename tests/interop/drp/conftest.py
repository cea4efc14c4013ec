"""A covered business for DRP agents: Spix as platform controller, one system holding one
record of the subject, the purposes an opt-out of sale suppresses, and `business-id` set."""

from __future__ import annotations

from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.config import Settings
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
from tests.interop.drp.agent import BUSINESS_ID, Agent

SUBJECT = "drp.subject@example.com"


@pytest.fixture
def settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"drp_business_id": BUSINESS_ID, "webhook_allow_private_targets": True}
    )


@pytest.fixture
async def business(session: AsyncSession) -> dict[str, Any]:
    platform = await make_controller(session, kind="platform", name="Spix")
    await make_system(session, "accounts")
    await make_category(session, "account.profile")
    await make_rule(session, category="account.profile", period="P2Y")
    await make_purpose(
        session, "marketing.communications", legal_basis="consent", objection_absolute=True
    )
    for key in SALE_AND_SHARING:
        await make_purpose(session, key, legal_basis="consent", objection_absolute=True)
    await make_record(
        session,
        system="accounts",
        controller_id=platform.id,
        categories=["account.profile"],
        identities=[{"type": "email", "value": SUBJECT}],
    )
    return {
        "platform": platform.id,
        "system": await bearer(session, "system", system_key="accounts"),
    }


@pytest.fixture
async def agent(client: AsyncClient, admin: dict[str, str]) -> Agent:
    agent = Agent(client)
    await agent.register(admin)
    response = await agent.set_up()
    assert response.status_code == 200, response.text
    return agent
