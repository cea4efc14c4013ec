"""The platform controller's one cached lookup (requests and suppressions share it): never
stale across databases or across test transactions on one engine, and its absence is asked
about again."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker

from app.controllers.models import Controller
from app.controllers.service import platform_controller_id
from app.core.config import Settings
from app.core.db import Database
from app.main import create_app
from app.suppressions.gpc import SALE_AND_SHARING
from tests.builders import make_controller, make_purpose
from tests.conftest import bearer

CHECK = {"identities": [{"type": "email", "value": "alice@example.com"}], "channel": "email"}


@asynccontextmanager
async def rolled_back(engine: AsyncEngine) -> AsyncIterator[Database]:
    """A database on its own connection whose writes are all rolled back, as a test's are."""
    async with engine.connect() as connection:
        transaction = await connection.begin()
        try:
            yield Database(
                engine,
                async_sessionmaker(
                    bind=connection,
                    expire_on_commit=False,
                    join_transaction_mode="create_savepoint",
                ),
                async_sessionmaker(
                    bind=connection, expire_on_commit=False, join_transaction_mode="rollback_only"
                ),
            )
        finally:
            await transaction.rollback()


class TestPlatformControllerLookup:
    async def test_absence_is_asked_about_again(self, session: AsyncSession) -> None:
        assert await platform_controller_id(session) is None
        platform = await make_controller(session, kind="platform", name="Spix")
        assert await platform_controller_id(session) == platform.id

    async def test_a_rolled_back_platform_is_not_remembered_on_the_same_engine(
        self, engine: AsyncEngine
    ) -> None:
        # Each test seeds its own platform on the one engine and rolls it back: a cache keyed
        # by the engine or the database URL would answer the second with the first's id.
        found = []
        for name in ("First", "Second"):
            async with rolled_back(engine) as database, database.sessionmaker() as session:
                platform = await make_controller(session, kind="platform", name=name)
                assert await platform_controller_id(session) == platform.id
                async with database.read_sessionmaker() as reader:
                    assert await platform_controller_id(reader) == platform.id
                found.append(platform.id)
        assert found[0] != found[1]

    async def test_opt_outs_land_on_each_databases_own_platform(
        self, engine: AsyncEngine, settings: Settings
    ) -> None:
        # Through the API, as two test runs on the same engine would: the opt-out's scope and
        # the check without a controller both use this run's platform, never an earlier one's.
        for name in ("First", "Second"):
            async with rolled_back(engine) as database:
                async with database.sessionmaker() as session:
                    platform: Controller = await make_controller(
                        session, kind="platform", name=name
                    )
                    await make_purpose(session, "marketing.communications")
                    for key in SALE_AND_SHARING:  # a CCPA opt-out suppresses these too
                        await make_purpose(session, key)
                    admin = await bearer(session, "admin")
                app = create_app(settings, database=database)
                transport = ASGITransport(app=app)
                async with AsyncClient(transport=transport, base_url="http://test") as client:
                    before = await client.post("/v1/suppressions/check", json=CHECK, headers=admin)
                    assert before.status_code == 200, before.text
                    assert before.json()["suppressed"] is False
                    filed = await client.post(
                        "/v1/requests",
                        json={
                            "type": "opt_out",
                            "regime": "ccpa",
                            "identities": CHECK["identities"],
                            "details": {"channel": "email"},
                        },
                        headers=admin,
                    )
                    assert filed.status_code == 201, filed.text
                    assert [s["controller_id"] for s in filed.json()["scopes"]] == [
                        str(platform.id)
                    ]
                    after = await client.post("/v1/suppressions/check", json=CHECK, headers=admin)
                    assert after.status_code == 200, after.text
                    assert [m["controller_id"] for m in after.json()["matches"]] == [
                        str(platform.id)
                    ]
