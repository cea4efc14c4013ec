"""Status callbacks reach the agent's `status_callback` through the outbox and the worker's
relay, on a real loopback receiver, carrying the Exercise Status object the status endpoint
answers."""

from __future__ import annotations

import uuid
from pathlib import Path

import orjson
import pytest
from httpx import AsyncClient
from sqlalchemy import select

from app.core.config import Settings
from app.core.db import Database
from app.outbox.models import OutboxEvent
from app.purposes.models import Purpose
from app.suppressions.gpc import SALE_AND_SHARING
from tests.builders import make_category, make_purpose, make_record, make_system
from tests.conftest import bearer
from tests.interop.drp.agent import BUSINESS_ID, Agent
from tests.worker.conftest import (  # noqa: F401  (fixtures)
    Receiver,
    platform_of,
    receiver,
    relay_for,
    wadmin,
    wapp,
    wclient,
    wdb,
    worker_settings,
    worker_url,
)


@pytest.fixture
def wsettings(worker_url: str, tmp_path: Path) -> Settings:  # noqa: F811
    return worker_settings(worker_url, tmp_path, drp_business_id=BUSINESS_ID)


async def _subject_with_record(database: Database) -> tuple[str, dict[str, str]]:
    platform = await platform_of(database)
    key = f"sys-{uuid.uuid4().hex[:8]}"
    email = f"{key}@example.com"
    async with database.sessionmaker() as session:
        for purpose in ("marketing.communications", *SALE_AND_SHARING):
            if await session.get(Purpose, purpose) is None:
                await make_purpose(session, purpose, legal_basis="consent")
        await make_system(session, key)
        await make_category(session, "account.profile")
        await make_record(
            session,
            system=key,
            controller_id=platform,
            categories=["account.profile"],
            identities=[{"type": "email", "value": email}],
        )
        return email, await bearer(session, "system", system_key=key)


@pytest.fixture
async def subject(
    wclient: AsyncClient,  # noqa: F811
    wadmin: dict[str, str],  # noqa: F811
    wdb: Database,  # noqa: F811
) -> tuple[Agent, str, dict[str, str]]:
    """A registered agent with its token, a subject's email, and the key of the system
    holding the subject's record."""
    email, system = await _subject_with_record(wdb)
    agent = Agent(wclient)
    await agent.register(wadmin)
    assert (await agent.set_up()).status_code == 200
    return agent, email, system


async def _relay_all(database: Database, settings: Settings) -> None:
    async with relay_for(database, settings) as relay:
        while await relay.run_once():
            pass


async def test_a_status_change_is_posted_to_the_agent(
    wclient: AsyncClient,  # noqa: F811
    wdb: Database,  # noqa: F811
    wsettings: Settings,
    receiver: Receiver,  # noqa: F811
    subject: tuple[Agent, str, dict[str, str]],
) -> None:
    agent, email, system = subject
    filed = await agent.exercise("access", email, status_callback=receiver.url)
    assert filed.status_code == 200, filed.text
    request_id = filed.json()["request_id"]
    async with relay_for(wdb, wsettings) as relay:
        assert await relay.run_once() == 1

    claimed = await wclient.post("/v1/tasks/claim", json={}, headers=system)
    for task in claimed.json()["tasks"]:
        done = await wclient.post(
            f"/v1/tasks/{task['id']}/complete",
            json={"result": {"data": {"plan": "pro"}}},
            headers=system,
        )
        assert done.status_code == 200, done.text
    final = (await agent.status(request_id)).json()
    assert final["status"] == "fulfilled"

    await _relay_all(wdb, wsettings)
    bodies = [orjson.loads(r.body) for r in receiver.received]
    assert [b["status"] for b in bodies] == ["in_progress", "fulfilled"]
    assert bodies[-1] == final
    assert all(r.headers["content-type"] == "application/json" for r in receiver.received)
    async with wdb.sessionmaker() as session:
        kinds = (
            await session.scalars(
                select(OutboxEvent.status).where(OutboxEvent.target_kind == "drp_agent")
            )
        ).all()
    assert kinds and set(kinds) == {"delivered"}


async def test_a_newer_status_supersedes_one_not_yet_sent(
    wdb: Database,  # noqa: F811
    wsettings: Settings,
    receiver: Receiver,  # noqa: F811
    subject: tuple[Agent, str, dict[str, str]],
) -> None:
    agent, email, _system = subject
    filed = await agent.exercise("deletion", email, status_callback=receiver.url)
    assert filed.json()["status"] == "in_progress"
    revoked = await agent.revoke(filed.json()["request_id"])
    assert revoked.status_code == 200, revoked.text
    await _relay_all(wdb, wsettings)
    assert [orjson.loads(r.body)["status"] for r in receiver.received] == ["revoked"]


async def test_no_callback_without_a_url_or_when_the_agent_takes_none(
    wclient: AsyncClient,  # noqa: F811
    wadmin: dict[str, str],  # noqa: F811
    wdb: Database,  # noqa: F811
    receiver: Receiver,  # noqa: F811
) -> None:
    email, _system = await _subject_with_record(wdb)
    agent = Agent(wclient)
    await agent.register(wadmin, callback_allowed=False)
    await agent.set_up()
    filed = await agent.exercise("sale:opt-out", email, status_callback=receiver.url)
    assert filed.json()["status"] == "fulfilled"
    async with wdb.sessionmaker() as session:
        count = (
            await session.scalars(
                select(OutboxEvent.id).where(OutboxEvent.target_kind == "drp_agent")
            )
        ).all()
    assert count == []
