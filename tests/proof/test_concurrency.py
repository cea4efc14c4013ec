"""The concurrency suite, with real committed transactions on each database: callers racing
on the same thing each get a correct answer and the database holds one consistent result.

Also in the suite, where they were written first (both databases):
- parallel claimers never share a task: tests/requests/test_concurrent_claims.py
- parallel batches over the same refs in different orders never fail a caller (no deadlock
  reaches it): tests/reliability/test_ops.py::test_concurrent_batches_over_the_same_refs_never_fail
- parallel creates of one suppression make one: tests/suppressions/test_suppressions.py::
  test_concurrent_creates_make_one_suppression
- a hold placed while records are checked: tests/reliability/test_holds.py"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import func, select

from app.audit.models import AuditEvent
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.records.models import Record
from app.systems.models import System
from tests.builders import TEST_SUBJECT_KEY, make_category, make_controller, make_system
from tests.conftest import bearer
from tests.databases import fresh_database

RACERS = 8


@dataclass
class Live:
    database: Database
    client: AsyncClient
    admin: dict[str, str]
    controller: str

    async def count(self, statement: object) -> int:
        async with self.database.sessionmaker() as session:
            return int(await session.scalar(statement) or 0)  # type: ignore[call-overload]


@pytest.fixture
async def live(backend: str, tmp_path: Path) -> AsyncIterator[Live]:
    """A committed database and the app on it: no outer transaction serialises the racers."""
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            for key in ("account.profile", "account.billing"):
                await make_category(session, key)
            admin = await bearer(session, "admin")
        async with AsyncClient(transport=ASGITransport(app=app), base_url="http://t") as client:
            yield Live(database, client, admin, str(controller.id))
        await database.dispose()


async def test_parallel_upserts_of_one_ref_make_one_record(live: Live) -> None:
    def record(n: int) -> dict[str, object]:
        return {
            "system": "accounts",
            "record_ref": "acct-1",
            "controller_id": live.controller,
            "identities": [{"type": "email", "value": f"user{n}@example.com"}],
            "categories": ["account.profile" if n % 2 else "account.billing"],
            "collected_at": "2026-01-01T00:00:00Z",
        }

    responses = await asyncio.gather(
        *(
            live.client.post("/v1/records", json=record(n), headers=live.admin)
            for n in range(RACERS)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] * (RACERS - 1) + [201], [r.text for r in responses]
    assert len({r.json()["id"] for r in responses}) == 1
    assert await live.count(select(func.count()).select_from(Record)) == 1


async def test_parallel_creates_with_one_idempotency_key_create_once(live: Live) -> None:
    headers = {**live.admin, "Idempotency-Key": "create-crm"}
    responses = await asyncio.gather(
        *(
            live.client.post("/v1/systems", json={"key": "crm", "name": "CRM"}, headers=headers)
            for _ in range(RACERS)
        )
    )
    assert [r.status_code for r in responses] == [201] * RACERS, [r.text for r in responses]
    assert len({r.text for r in responses}) == 1  # one answer, replayed to every other caller
    replayed = [r.headers.get("idempotent-replayed") for r in responses]
    assert replayed.count("true") == RACERS - 1
    assert await live.count(select(func.count()).where(System.key == "crm")) == 1
    assert (
        await live.count(select(func.count()).where(AuditEvent.event_type == "system.created")) == 1
    )


async def test_parallel_if_match_writes_let_exactly_one_through(live: Live) -> None:
    url = "/v1/systems/accounts"
    etag = (await live.client.get(url, headers=live.admin)).headers["ETag"]
    responses = await asyncio.gather(
        *(
            live.client.patch(
                url, json={"name": f"Accounts {n}"}, headers={**live.admin, "If-Match": etag}
            )
            for n in range(RACERS)
        )
    )
    statuses = sorted(r.status_code for r in responses)
    assert statuses == [200] + [412] * (RACERS - 1), [r.text for r in responses]
    (winner,) = [r for r in responses if r.status_code == 200]
    for loser in responses:
        if loser.status_code == 412:
            assert loser.headers["content-type"] == "application/problem+json"
    final = await live.client.get(url, headers=live.admin)
    assert final.json()["name"] == winner.json()["name"]
    assert final.headers["ETag"] == winner.headers["ETag"] != etag
