"""After registering, looking up and holding, no raw identity value is anywhere: not in the
database's bytes, not in responses, not in the logs."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
from httpx import ASGITransport, AsyncClient
from sqlalchemy import text

from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.models import metadata
from tests.builders import make_category, make_controller, make_system
from tests.conftest import bearer
from tests.databases import fresh_database

SECRETS = [
    "alice.secret@example.com",
    "ALICE.SECRET@EXAMPLE.COM",
    "+14155550123",
    "4155550123",
    "203.0.113.77",
    "device-7f3a9c",
]


async def test_no_identity_value_is_stored_or_logged(
    backend: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    async with fresh_database(backend, tmp_path) as url:
        database = Database.from_url(url)
        app = create_app(
            Settings(database_url=url, subject_key="k" * 40, data_dir=tmp_path), database=database
        )
        async with database.sessionmaker() as session:
            controller = await make_controller(session, kind="platform", name="Spix")
            await make_system(session, "accounts")
            await make_category(session, "account.profile")
            admin = await bearer(session, "admin")
        identities = [
            {"type": "email", "value": " Alice.Secret@Example.com "},
            {"type": "phone", "value": "(415) 555-0123"},
            {"type": "ip_address", "value": "203.0.113.77"},
            {"type": "device_id", "value": "device-7f3a9c"},
        ]
        transport = ASGITransport(app=app)
        async with AsyncClient(transport=transport, base_url="http://t") as client:
            registered = await client.post(
                "/v1/records",
                json={
                    "system": "accounts",
                    "record_ref": "acct-1",
                    "controller_id": str(controller.id),
                    "identities": identities,
                    "categories": ["account.profile"],
                    "collected_at": "2026-01-01T00:00:00Z",
                },
                headers=admin,
            )
            assert registered.status_code == 201
            bad = await client.post(
                "/v1/records/batch",
                json={
                    "records": [
                        {
                            "system": "accounts",
                            "record_ref": "x",
                            "controller_id": str(controller.id),
                            "identities": [{"type": "phone", "value": "alice.secret@example.com"}],
                            "categories": ["account.profile"],
                            "collected_at": "2026-01-01T00:00:00Z",
                        }
                    ]
                },
                headers=admin,
            )
            looked_up = await client.post(
                "/v1/subjects/lookup", json={"identities": identities[:1]}, headers=admin
            )
            assert len(looked_up.json()["items"]) == 1
            bodies = registered.text + bad.text + looked_up.text
        await database.dispose()

        if backend == "sqlite":
            files = [Path(url.split("///", 1)[1] + suffix) for suffix in ("", "-wal", "-shm")]
            raw = b"".join(f.read_bytes() for f in files if f.exists())
        else:
            check = Database.from_url(url)
            async with check.engine.connect() as connection:
                dumps = [
                    (
                        await connection.execute(
                            text(f"SELECT coalesce(string_agg(t::text, '|'), '') FROM {name} t")
                        )
                    ).scalar_one()
                    for name in metadata.tables
                ]
            await check.dispose()
            raw = "".join(dumps).encode()
        assert b"acct-1" in raw  # the search does see what was stored
        logged = "\n".join(record.getMessage() + str(record.__dict__) for record in caplog.records)
        for secret in SECRETS:
            assert secret.encode() not in raw, f"{secret} found in the database"
            assert secret.lower().encode() not in raw.lower()
            assert secret not in bodies
            assert secret not in logged
