"""Fixtures: every test runs on each backend, against a database built by the migrations;
each test's writes live in an outer transaction that is rolled back."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from fastapi import FastAPI
from httpx import ASGITransport, AsyncClient
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker

from app.audit.service import use_audit_key
from app.auth.service import create_key
from app.core.config import Settings
from app.core.db import Database, create_engine
from app.core.lean_session import LeanSession
from app.main import create_app
from tests.builders import TEST_AUDIT_KEY, TEST_SUBJECT_KEY
from tests.databases import BACKENDS, fresh_database


def pytest_ignore_collect(collection_path: Path, config: pytest.Config) -> bool | None:
    # Benchmarks print figures and take minutes: they run only when named (`make bench`).
    if collection_path.name == "benchmarks" and not any(
        "benchmarks" in str(arg) for arg in config.args
    ):
        return True
    return None


@pytest.fixture(scope="session", autouse=True)
def audit_key() -> None:
    # Events written without an app (straight through a session) chain with the test key too.
    use_audit_key(TEST_AUDIT_KEY.encode())


@pytest.fixture(scope="session", params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> str:
    return str(request.param)


@pytest.fixture(scope="session")
async def database_url(
    backend: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[str]:
    async with fresh_database(backend, tmp_path_factory.mktemp(backend)) as url:
        yield url


@pytest.fixture(scope="session")
async def engine(database_url: str) -> AsyncIterator[AsyncEngine]:
    engine = create_engine(database_url)
    yield engine
    await engine.dispose()


@pytest.fixture
async def connection(engine: AsyncEngine) -> AsyncIterator[AsyncConnection]:
    async with engine.connect() as connection:
        transaction = await connection.begin()
        yield connection
        await transaction.rollback()


@pytest.fixture
def database(engine: AsyncEngine, connection: AsyncConnection) -> Database:
    # The app's commits release savepoints inside the test's transaction; its read-only
    # sessions read in that transaction and leave it alone. The app's own session class.
    return Database(
        engine,
        async_sessionmaker(
            bind=connection,
            class_=LeanSession,
            expire_on_commit=False,
            join_transaction_mode="create_savepoint",
        ),
        async_sessionmaker(
            bind=connection,
            class_=LeanSession,
            expire_on_commit=False,
            join_transaction_mode="rollback_only",
        ),
    )


@pytest.fixture
def settings(database_url: str, tmp_path: Path) -> Settings:
    return Settings(
        database_url=database_url,
        subject_key=TEST_SUBJECT_KEY,
        audit_key=TEST_AUDIT_KEY,
        data_dir=tmp_path,
        max_body_bytes=1024 * 1024,
    )


@pytest.fixture
def app(settings: Settings, database: Database) -> FastAPI:
    return create_app(settings, database=database)


@pytest.fixture
async def client(app: FastAPI) -> AsyncIterator[AsyncClient]:
    async with AsyncClient(transport=ASGITransport(app=app), base_url="http://test") as client:
        yield client


@pytest.fixture
async def session(database: Database) -> AsyncIterator[AsyncSession]:
    async with database.sessionmaker() as session:
        yield session


async def bearer(
    session: AsyncSession,
    role: str,
    *,
    system_key: str | None = None,
    controller_id: uuid.UUID | None = None,
) -> dict[str, str]:
    """Headers carrying a new key of this role."""
    created = await create_key(
        session, role=role, system_key=system_key, controller_id=controller_id
    )
    await session.commit()
    return {"Authorization": f"Bearer {created.secret}"}


@pytest.fixture
async def admin(session: AsyncSession) -> dict[str, str]:
    return await bearer(session, "admin")


@pytest.fixture
async def auditor(session: AsyncSession) -> dict[str, str]:
    return await bearer(session, "auditor")
