"""Deferred hot writes (HotWrite.defer): the INSERT waits for the connection's next statement or
its commit. It must behave exactly as though it had run at once (seen by what runs after it,
rolled back with the transaction, never carried into the next one, its errors raised by the
commit), and a transaction whose only statement it is must commit in that one statement, with
no BEGIN or COMMIT sent."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest
from httpx import ASGITransport
from sqlalchemy import event, func, select, text
from sqlalchemy.exc import DBAPIError, IntegrityError, InvalidRequestError, StatementError

from app.audit.models import AuditEvent
from app.core.config import Settings
from app.core.db import Database
from app.core.hot_read import HotRead
from app.main import create_app
from app.requests.models import RequestIdentity, SubjectRequest
from app.systems.models import System
from tests.builders import TEST_AUDIT_KEY, TEST_SUBJECT_KEY, make_controller
from tests.conftest import bearer
from tests.databases import BACKENDS, fresh_database, terminate_other_connections
from tests.interop.drp.agent import BUSINESS_ID, Agent
from tests.reliability.test_hot_write import _ADD_SYSTEM, _keys, _system

_KEYS = HotRead(select(System.key).order_by(System.key))


@asynccontextmanager
async def _database(backend: str, folder: Path, **options: Any) -> AsyncIterator[Database]:
    async with fresh_database(backend, folder) as url:
        database = Database.from_url(url, **options)
        try:
            yield database
        finally:
            await database.dispose()


def _log_statements(database: Database, *, whole: bool = False) -> list[str]:
    """What the driver is asked to run on each new connection, BEGIN and COMMIT included: the
    first word of each, or (`whole`) its text."""
    sent: list[str] = []

    @event.listens_for(database.engine.sync_engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        driver = getattr(dbapi_connection, "driver_connection", None)
        if driver is not None and hasattr(driver, "add_query_logger"):
            driver.add_query_logger(lambda query: sent.append(_said(query.query, whole)))

    return sent


async def _logged(sent: list[str]) -> list[str]:
    """What was sent so far: asyncpg calls its query loggers on the event loop's next turn."""
    await asyncio.sleep(0)
    return list(sent)


async def test_a_lone_deferred_write_commits_as_one_statement(backend: str, tmp_path: Path) -> None:
    async with _database(backend, tmp_path) as database:
        sent = _log_statements(database)
        async with database.sessionmaker() as session:
            await _ADD_SYSTEM.defer(await session.connection(), _system("accounts"))
            await session.commit()
        committed = await _logged(sent)
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"accounts"}
    if backend == "postgresql":
        assert committed == ["INSERT"]  # no BEGIN, no COMMIT


@pytest.mark.parametrize("after", ["core", "hot read", "hot write"])
async def test_a_deferred_write_runs_before_the_next_statement_and_rolls_back_with_it(
    backend: str, tmp_path: Path, after: str
) -> None:
    async with _database(backend, tmp_path) as database:
        sent = _log_statements(database)
        async with database.sessionmaker() as session:
            connection = await session.connection()
            await _ADD_SYSTEM.defer(connection, _system("deferred"))
            if after == "core":
                seen = set(await session.scalars(select(System.key)))
            elif after == "hot read":
                seen = {row.key for row in await _KEYS.rows(connection, {})}
            else:
                await _ADD_SYSTEM.execute(connection, _system("next"))
                seen = await _keys(session)
            assert "deferred" in seen  # what runs next sees it
            await session.rollback()
        async with database.sessionmaker() as session:
            assert await _keys(session) == set()  # and it rolled back with the rest
    if backend == "postgresql":
        assert sent[:2] == ["BEGIN", "INSERT"]  # inside the transaction, first
        assert "ROLLBACK" in sent


async def test_a_deferred_write_in_a_begun_transaction_commits_inside_it(
    backend: str, tmp_path: Path
) -> None:
    async with _database(backend, tmp_path) as database:
        sent = _log_statements(database)
        async with database.sessionmaker() as session:
            await session.execute(select(System.key))
            await _ADD_SYSTEM.defer(await session.connection(), _system("accounts"))
            await session.commit()
        committed = await _logged(sent)
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"accounts"}
    if backend == "postgresql":
        # (The driver's log leaves out Core's statements, which run prepared.)
        assert committed == ["BEGIN", "INSERT", "COMMIT"]


async def test_a_transaction_asked_to_be_serializable_keeps_its_begin(tmp_path: Path) -> None:
    if "postgresql" not in BACKENDS:
        pytest.skip("isolation levels of a server")
    async with _database("postgresql", tmp_path) as database:
        sent = _log_statements(database, whole=True)
        async with database.sessionmaker() as session:
            connection = await session.connection(
                execution_options={"isolation_level": "SERIALIZABLE"}
            )
            await _ADD_SYSTEM.defer(connection, _system("accounts"))
            await session.commit()
        committed = await _logged(sent)
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"accounts"}
    assert committed[0].startswith("BEGIN ISOLATION LEVEL SERIALIZABLE"), committed
    assert [said.split()[0] for said in committed[1:]] == ["INSERT", "COMMIT;"]


async def test_a_connection_rolled_back_goes_on_without_what_it_deferred(
    backend: str, tmp_path: Path
) -> None:
    """One Core connection through two transactions: the first one's deferred write must not
    run in the second."""
    async with _database(backend, tmp_path) as database:
        async with database.engine.connect() as connection:
            transaction = await connection.begin()
            await _ADD_SYSTEM.defer(connection, _system("dropped"))
            await transaction.rollback()
            await connection.execute(_ADD_SYSTEM.statement, _system("kept"))
            await connection.commit()
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"kept"}


async def test_a_savepoint_rolled_back_drops_only_what_was_deferred_inside_it(
    backend: str, tmp_path: Path
) -> None:
    async with _database(backend, tmp_path) as database:
        async with database.sessionmaker() as session:
            connection = await session.connection()
            await _ADD_SYSTEM.defer(connection, _system("before"))
            savepoint = await session.begin_nested()
            await _ADD_SYSTEM.defer(await session.connection(), _system("inside"))
            await savepoint.rollback()
            await session.commit()
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"before"}


@pytest.mark.parametrize("how", ["defer", "execute"])
async def test_a_hot_write_on_a_connection_with_no_transaction_begins_one_and_commits(
    backend: str, tmp_path: Path, how: str
) -> None:
    """A connection nothing has begun: the write must begin its transaction as Core's execute
    does, so that the connection's commit writes it (and its close without one does not)."""
    async with _database(backend, tmp_path) as database:
        async with database.engine.connect() as connection:
            await getattr(_ADD_SYSTEM, how)(connection, _system("committed"))
            await connection.commit()
        async with database.engine.connect() as connection:
            await getattr(_ADD_SYSTEM, how)(connection, _system("closed"))
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"committed"}


async def test_a_write_deferred_inside_a_savepoint_fails_there_and_the_transaction_goes_on(
    backend: str, tmp_path: Path
) -> None:
    """Held back to the savepoint's RELEASE, a failing write would leave the savepoint neither
    released nor rolled back, and the whole transaction lost."""
    async with _database(backend, tmp_path) as database:
        async with database.sessionmaker() as session:
            await session.execute(_ADD_SYSTEM.statement, _system("accounts"))
            await session.commit()
        async with database.sessionmaker() as session:
            await _ADD_SYSTEM.defer(await session.connection(), _system("support"))
            savepoint = await session.begin_nested()
            with pytest.raises(IntegrityError):
                await _ADD_SYSTEM.defer(await session.connection(), _system("accounts"))
                await savepoint.commit()
            await savepoint.rollback()
            await _ADD_SYSTEM.defer(await session.connection(), _system("billing"))
            await session.commit()
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"accounts", "support", "billing"}


async def test_a_deferred_write_failing_as_a_savepoint_begins_raises_there(
    backend: str, tmp_path: Path
) -> None:
    async with _database(backend, tmp_path, pool_size=1) as database:
        async with database.sessionmaker() as session:
            await session.execute(_ADD_SYSTEM.statement, _system("accounts"))
            await session.commit()
        async with database.sessionmaker() as session:
            with pytest.raises(IntegrityError):  # by the SAVEPOINT (SQLite writes at once)
                await _ADD_SYSTEM.defer(await session.connection(), _system("accounts"))
                await session.begin_nested()
                await session.connection()  # where the session sends its SAVEPOINT
            await session.rollback()
        async with database.sessionmaker() as session:  # the pooled connection still commits
            await _ADD_SYSTEM.defer(await session.connection(), _system("billing"))
            await session.commit()
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"accounts", "billing"}


async def test_a_write_deferred_on_a_connection_in_autocommit_is_written_at_once(
    backend: str, tmp_path: Path
) -> None:
    """Nothing commits on such a connection (a read session's): held back, the write would be
    dropped when the session closes."""
    async with _database(backend, tmp_path) as database:
        async with database.read_sessionmaker() as session:
            await _ADD_SYSTEM.defer(await session.connection(), _system("accounts"))
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"accounts"}


async def test_a_deferred_write_writes_its_values_as_they_were_when_deferred(
    backend: str, tmp_path: Path
) -> None:
    async with _database(backend, tmp_path) as database:
        async with database.sessionmaker() as session:
            row = _system("accounts")
            await _ADD_SYSTEM.defer(await session.connection(), row)
            row["name"] = "Changed afterwards"
            await session.commit()
        async with database.sessionmaker() as session:
            names = set(await session.scalars(select(System.name)))
        assert names == {"Accounts"}


@pytest.mark.parametrize("begun", [False, True], ids=["alone", "after-a-statement"])
async def test_a_deferred_write_failing_at_commit_raises_there_and_writes_nothing(
    backend: str, tmp_path: Path, begun: bool
) -> None:
    async with _database(backend, tmp_path, pool_size=1) as database:
        async with database.sessionmaker() as session:
            await session.execute(_ADD_SYSTEM.statement, _system("accounts"))
            await session.commit()
        async with database.sessionmaker() as session:
            if begun:
                await session.execute(_ADD_SYSTEM.statement, _system("support"))
            with pytest.raises(IntegrityError):  # by the commit (SQLite writes at once)
                await _ADD_SYSTEM.defer(await session.connection(), _system("accounts"))
                await session.commit()
        async with database.sessionmaker() as session:  # the pooled connection still commits
            await session.execute(_ADD_SYSTEM.statement, _system("billing"))
            await session.commit()
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"accounts", "billing"}


async def test_a_deferred_write_missing_a_value_is_refused_at_once(
    backend: str, tmp_path: Path
) -> None:
    async with _database(backend, tmp_path) as database:
        async with database.sessionmaker() as session:
            row = _system("accounts")
            del row["owner"]
            with pytest.raises(StatementError) as refused:
                await _ADD_SYSTEM.defer(await session.connection(), row)
            assert isinstance(refused.value.orig, InvalidRequestError)
            await session.commit()  # nothing was held back
        async with database.sessionmaker() as session:
            assert await _keys(session) == set()


async def test_a_connection_broken_before_a_deferred_write_commits_leaves_the_pool(
    tmp_path: Path,
) -> None:
    if "postgresql" not in BACKENDS:
        pytest.skip("an embedded SQLite database has no server connection to terminate")
    async with fresh_database("postgresql", tmp_path) as url:
        database = Database.from_url(url, pool_size=1)
        async with database.sessionmaker() as session:
            await session.execute(text("SELECT 1"))  # the pool now holds one connection
        async with database.sessionmaker() as session:
            await _ADD_SYSTEM.defer(await session.connection(), _system("lost"))
            assert await terminate_other_connections(url)
            with pytest.raises(DBAPIError) as caught:
                await session.commit()
        assert caught.value.connection_invalidated
        async with database.sessionmaker() as session:  # a new connection, and it writes
            await _ADD_SYSTEM.defer(await session.connection(), _system("written"))
            await session.commit()
        async with database.sessionmaker() as session:
            assert await _keys(session) == {"written"}
        await database.dispose()


async def test_a_filing_that_waits_for_its_code_is_one_statement(tmp_path: Path) -> None:
    """The request, its identities and its audit event, in the one INSERT of its transaction."""
    if "postgresql" not in BACKENDS:
        pytest.skip("one statement on PostgreSQL; SQLite writes a table a statement")
    async with _database("postgresql", tmp_path, pool_size=1) as database:
        async with database.sessionmaker() as session:
            admin = await bearer(session, "admin")
        settings = Settings(
            database_url=database.engine.url.render_as_string(hide_password=False),
            subject_key=TEST_SUBJECT_KEY,
            data_dir=tmp_path,
        )
        app = create_app(settings, database=database)
        sent = _log_statements(database, whole=True)
        body = {
            "type": "access",
            "regime": "gdpr",
            "identities": [{"type": "email", "value": "alice@example.com"}],
        }
        async with httpx.AsyncClient(
            transport=ASGITransport(app=app), base_url="http://t", headers=admin
        ) as client:
            await database.engine.dispose()  # connections from here on are logged
            assert (await client.post("/v1/requests", json=body)).status_code == 201
            sent.clear()  # the driver has learnt the types by now
            filed = await client.post("/v1/requests", json=body)
            assert filed.status_code == 201, filed.text
            assert filed.json()["verification"]["code"]
        # The filing's own transaction: its one INSERT. What follows its answer links its
        # audit event into the chain, in a transaction of its own.
        assert sent[0].startswith("WITH REQUEST_WRITTEN"), sent
        assert len(sent) == 1 or sent[1].startswith("BEGIN"), sent
        async with database.sessionmaker() as session:
            request = await session.get(SubjectRequest, filed.json()["id"])
            assert request is not None and request.verification_code_hash is not None
            identities = await session.scalar(
                select(func.count()).where(RequestIdentity.request_id == request.id)
            )
            received = await session.scalar(
                select(func.count()).where(
                    AuditEvent.subject_request_id == request.id,
                    AuditEvent.event_type == "request.received",
                )
            )
        assert identities and received == 1


def _said(query: str, whole: bool) -> str:
    said = " ".join(query.split()).upper()
    return said if whole else said.split()[0].rstrip(";")


async def test_a_drp_exercise_whose_request_cannot_be_written_is_not_taken_for_a_duplicate(
    tmp_path: Path,
) -> None:
    """The exercise files its request and then adds its own row in a savepoint, a unique
    violation there meaning "filed already": the request's write must not wait for that
    savepoint, or its failure would be answered as a duplicate."""
    if "postgresql" not in BACKENDS:
        pytest.skip("the request's write waits only on PostgreSQL")
    async with _database("postgresql", tmp_path) as database:
        async with database.sessionmaker() as session:
            await make_controller(session, kind="platform", name="Spix")
            await session.commit()
            admin = await bearer(session, "admin")
        settings = Settings(
            database_url=database.engine.url.render_as_string(hide_password=False),
            subject_key=TEST_SUBJECT_KEY,
            audit_key=TEST_AUDIT_KEY,
            data_dir=tmp_path,
            drp_business_id=BUSINESS_ID,
        )
        app = create_app(settings, database=database)
        async with httpx.AsyncClient(
            transport=ASGITransport(app=app), base_url="http://t"
        ) as client:
            agent = Agent(client)
            await agent.register(admin)
            assert (await agent.set_up()).status_code == 200
            async with database.engine.begin() as connection:  # no request row can be written
                refuse_all = "ADD CONSTRAINT refuse_all CHECK (false) NOT VALID"
                await connection.execute(text(f"ALTER TABLE subject_requests {refuse_all}"))
            exercised = await agent.exercise("access", "someone@example.com", email_verified=False)
        assert exercised.status_code == 500, exercised.text
