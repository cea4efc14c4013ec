"""Two systems completing the last two tasks of one request at the same moment: the request
still completes (real, committed transactions). Found by the load model
(tests/benchmarks/load_model.py): each completion counted the other's task as open, so
neither closed the scope and the request stayed in progress for ever."""

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

REQUESTS = 12


async def test_parallel_completions_of_one_request_complete_it(
    backend: str, tmp_path: Path
) -> None:
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key=TEST_SUBJECT_KEY, data_dir=tmp_path),
            database=database,
        )
        async with database.sessionmaker() as session:
            platform = await make_controller(session, kind="platform", name="Spix")
            customer = await make_controller(session, kind="customer", name="Acme")
            await make_category(session, "account.profile")
            systems = ["accounts", "billing", "contacts"]
            for system in systems:
                await make_system(session, system)
            for n in range(REQUESTS):
                identity = [{"type": "email", "value": f"user{n}@example.com"}]
                # Spix's scope has two tasks (two systems); the customer's scope one.
                for system, controller in (
                    ("accounts", platform.id),
                    ("billing", platform.id),
                    ("contacts", customer.id),
                ):
                    await make_record(
                        session,
                        system=system,
                        controller_id=controller,
                        categories=["account.profile"],
                        identities=identity,
                    )
            admin = await bearer(session, "admin")
            agents = {s: await bearer(session, "system", system_key=s) for s in systems}
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            ids = []
            for n in range(REQUESTS):
                filed = await client.post(
                    "/v1/requests",
                    json={
                        "type": "access",
                        "regime": "gdpr",
                        "verified": True,
                        "identities": [{"type": "email", "value": f"user{n}@example.com"}],
                    },
                    headers=admin,
                )
                assert filed.status_code == 201, filed.text
                ids.append(filed.json()["id"])
                approved = await client.post(
                    f"/v1/requests/{ids[-1]}/scopes/{customer.id}/decision",
                    json={"decision": "approve", "instruction_ref": "ACME-1"},
                    headers=admin,
                )
                assert approved.status_code == 200, approved.text
            claimed: dict[str, dict[str, str]] = {}
            for system, headers in agents.items():
                tasks = (
                    await client.post(
                        "/v1/tasks/claim",
                        json={"limit": 100, "lease_seconds": 600},
                        headers=headers,
                    )
                ).json()["tasks"]
                assert len(tasks) == REQUESTS
                for task in tasks:
                    claimed.setdefault(task["request_id"], {})[system] = task["id"]

            async def complete(system: str, task_id: str) -> None:
                response = await client.post(
                    f"/v1/tasks/{task_id}/complete",
                    json={"result": {"data": {}}},
                    headers=agents[system],
                )
                assert response.status_code == 200, response.text

            # Each request's three tasks (two in one scope, one in the other) at once.
            await asyncio.gather(
                *(
                    complete(system, task_id)
                    for tasks in claimed.values()
                    for system, task_id in tasks.items()
                )
            )
            statuses = [
                (await client.get(f"/v1/requests/{i}", headers=admin)).json()["status"] for i in ids
            ]
        await database.dispose()
        assert statuses == ["completed"] * REQUESTS
