"""Two systems' workers claiming at once never share a task (real, committed transactions)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from httpx import ASGITransport, AsyncClient

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from tests.builders import (
    TEST_SUBJECT_KEY,
    make_category,
    make_controller,
    make_record,
    make_system,
)
from tests.conftest import bearer
from tests.databases import fresh_database


async def test_parallel_claimers_never_share_a_task(backend: str, tmp_path: Path) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            platform = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
            for n in range(40):
                await make_record(
                    session,
                    system="accounts",
                    controller_id=platform.id,
                    categories=["account.profile"],
                    identities=[{"type": "email", "value": f"user{n}@example.com"}],
                )
            admin = await bearer(session, "admin")
            worker = await bearer(session, "system", system_key="accounts")
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            for n in range(40):
                response = await client.post(
                    "/v1/requests",
                    json={
                        "type": "access",
                        "regime": "gdpr",
                        "verified": True,
                        "identities": [{"type": "email", "value": f"user{n}@example.com"}],
                    },
                    headers=admin,
                )
                assert response.status_code == 201

            async def claimer() -> list[str]:
                got: list[str] = []
                while True:
                    response = await client.post(
                        "/v1/tasks/claim",
                        json={"limit": 3, "lease_seconds": 600},
                        headers=worker,
                    )
                    assert response.status_code == 200, response.text
                    tasks = response.json()["tasks"]
                    if not tasks:
                        return got
                    got.extend(t["id"] for t in tasks)

            results = await asyncio.gather(*(claimer() for _ in range(4)))
        await database.dispose()
        claimed = [task for batch in results for task in batch]
        assert len(claimed) == 40
        assert len(set(claimed)) == 40, "a task was handed to two claimers"
        assert sum(1 for batch in results if batch) >= 2  # the claimers really ran side by side
