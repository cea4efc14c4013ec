"""The generic request path made cheaper keeps its behaviour: bearer parsing, the key cache and
revocation, access log lines, metrics labels, and SQLite reads without a transaction."""

from __future__ import annotations

import json
import logging
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path
from typing import Any

import pytest
from httpx import AsyncClient
from sqlalchemy import event, text
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession

from app.auth.service import _cache, create_key, revoke_key
from app.core.db import Database
from app.core.logging import (
    JsonFormatter,
    JsonLines,
    _straight_to,
    access_line,
    configure_logging,
    request_id_var,
)
from tests.databases import fresh_database


class _Lines(logging.Handler):
    """The access log as the JsonFormatter writes it, one parsed line per request."""

    def __init__(self) -> None:
        super().__init__()
        self.setFormatter(JsonFormatter())
        self.lines: list[dict[str, Any]] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.lines.append(json.loads(self.format(record)))


@pytest.fixture
def access_log() -> Iterator[list[dict[str, Any]]]:
    logger = logging.getLogger("spix_dsr.access")
    handler = _Lines()
    level = logger.level
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    yield handler.lines
    logger.removeHandler(handler)
    logger.setLevel(level)


def _key_lookups(engine: AsyncEngine) -> list[str]:
    """SELECTs against api_keys, as the database sees them."""
    seen: list[str] = []

    @event.listens_for(engine.sync_engine, "before_cursor_execute")
    def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
        if "FROM api_keys" in statement:
            seen.append(statement)

    return seen


class TestBearer:
    @pytest.mark.parametrize(
        "authorization",
        ["bearer {key}", "BEARER {key}", "Bearer   {key}  "],
    )
    async def test_scheme_is_case_insensitive_and_key_trimmed(
        self, client: AsyncClient, session: AsyncSession, authorization: str
    ) -> None:
        created = await create_key(session, role="auditor")
        await session.commit()
        headers = {"Authorization": authorization.format(key=created.secret)}
        assert (await client.get("/v1/audit-events", headers=headers)).status_code == 200

    @pytest.mark.parametrize(
        "authorization", ["", "Bearer", "Bearer ", "Basic abc", "sdsr_a_b", "Token sdsr_a_b"]
    )
    async def test_malformed_header_is_401_asking_for_a_bearer_key(
        self, client: AsyncClient, authorization: str
    ) -> None:
        response = await client.get("/v1/audit-events", headers={"Authorization": authorization})
        assert response.status_code == 401
        assert response.headers["www-authenticate"] == "Bearer"
        assert "Authorization: Bearer" in response.json()["detail"]

    async def test_unknown_key_is_401_unknown(self, client: AsyncClient) -> None:
        headers = {"Authorization": "Bearer sdsr_000000000000_nope"}
        response = await client.get("/v1/audit-events", headers=headers)
        assert response.status_code == 401
        assert response.json()["detail"] == "Unknown or revoked API key"

    async def test_wrong_role_is_403_even_when_cached(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        created = await create_key(session, role="auditor")
        await session.commit()
        headers = {"Authorization": f"Bearer {created.secret}"}
        assert (await client.get("/v1/audit-events", headers=headers)).status_code == 200
        # Now cached: the role is still checked per operation.
        response = await client.post("/v1/systems", headers=headers, json={"key": "x"})
        assert response.status_code == 403


class TestKeyCache:
    async def test_a_verified_key_is_not_looked_up_again(
        self, client: AsyncClient, session: AsyncSession, engine: AsyncEngine
    ) -> None:
        created = await create_key(session, role="admin")
        await session.commit()
        headers = {"Authorization": f"Bearer {created.secret}"}
        _cache.clear()
        lookups = _key_lookups(engine)
        for _ in range(3):
            assert (await client.get("/v1/audit-events", headers=headers)).status_code == 200
        assert len(lookups) == 1

    async def test_revocation_through_this_process_is_immediate(
        self, client: AsyncClient, session: AsyncSession
    ) -> None:
        created = await create_key(session, role="admin")
        await session.commit()
        headers = {"Authorization": f"Bearer {created.secret}"}
        assert (await client.get("/v1/audit-events", headers=headers)).status_code == 200
        await revoke_key(session, created.api_key.id)
        await session.commit()
        assert (await client.get("/v1/audit-events", headers=headers)).status_code == 401


class TestAccessLog:
    async def test_one_line_per_request_with_template_and_key(
        self,
        client: AsyncClient,
        session: AsyncSession,
        access_log: list[dict[str, Any]],
    ) -> None:
        created = await create_key(session, role="admin")
        await session.commit()
        headers = {"Authorization": f"Bearer {created.secret}", "X-Request-ID": "req-7"}
        await client.get("/v1/audit-events/secret-looking-path", headers=headers)
        await client.get("/v1/audit-events", headers={"X-Request-ID": "req-8"})
        ok, unauthorised = access_log
        assert ok["msg"] == "request"
        assert ok["request_id"] == "req-7"
        assert (ok["method"], ok["status"]) == ("GET", 404)
        assert ok["route"] == "unmatched"
        assert ok["key_id"] is None  # 404 before any route ran: no principal
        assert isinstance(ok["duration_ms"], float)
        assert "secret-looking-path" not in json.dumps(access_log)
        assert unauthorised["request_id"] == "req-8"
        assert (unauthorised["route"], unauthorised["status"]) == ("/v1/audit-events", 401)
        assert unauthorised["key_id"] is None

    async def test_an_authenticated_request_logs_its_key_id(
        self,
        client: AsyncClient,
        session: AsyncSession,
        access_log: list[dict[str, Any]],
    ) -> None:
        created = await create_key(session, role="admin")
        await session.commit()
        headers = {"Authorization": f"Bearer {created.secret}"}
        assert (await client.get("/v1/audit-events", headers=headers)).status_code == 200
        (line,) = access_log
        assert line["key_id"] == str(created.api_key.id)
        assert created.secret not in json.dumps(line)


async def test_metrics_label_every_status_of_a_route(
    client: AsyncClient, session: AsyncSession
) -> None:
    created = await create_key(session, role="admin")
    await session.commit()
    headers = {"Authorization": f"Bearer {created.secret}"}
    await client.get("/v1/audit-events", headers=headers)
    await client.get("/v1/audit-events")
    await client.get("/v1/audit-events")
    metrics = (await client.get("/metrics")).text
    for status in ("200", "401"):
        assert (
            f'spix_dsr_http_requests_total{{method="GET",route="/v1/audit-events",'
            f'status="{status}"}}' in metrics
        )
    count = 'spix_dsr_http_request_duration_seconds_count{method="GET",route="/v1/audit-events"}'
    assert count in metrics


async def test_sqlite_reads_take_no_write_lock(tmp_path: Path) -> None:
    async with fresh_database("sqlite", tmp_path) as url:
        database = Database.from_url(url)
        statements: list[str] = []
        for engine in (database.engine, database.read_engine):
            assert engine is not None

            @event.listens_for(engine.sync_engine, "before_cursor_execute")
            def _seen(_conn: Any, _cursor: Any, statement: str, *_args: Any) -> None:
                statements.append(statement)

        try:
            async with database.sessionmaker() as session:
                await session.execute(text("CREATE TABLE t (v INTEGER)"))
                await session.execute(text("INSERT INTO t VALUES (1)"))
                await session.commit()
            assert statements[0] == "BEGIN IMMEDIATE"  # writes still lock up front
            statements.clear()
            for _ in range(2):  # the second read runs on a connection the first gave back
                async with database.read_sessionmaker() as session:
                    assert (await session.execute(text("SELECT v FROM t"))).scalar_one() == 1
            assert statements == ["SELECT v FROM t"] * 2
        finally:
            await database.dispose()


async def test_the_access_line_written_straight_reads_as_the_logged_one(
    capfd: pytest.CaptureFixture[str],
) -> None:
    """As the service configures logging, the access line skips the LogRecord and the
    formatter; with any other handler on the way it is logged. Both lines are the same JSON."""
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    token = request_id_var.set("req-straight")
    try:
        configure_logging("INFO")
        assert isinstance(_straight_to(), JsonLines)
        capfd.readouterr()
        access_line("GET", "/v1/records/{record_id}", 200, 1.25, "key-1")
        straight = [json.loads(line) for line in capfd.readouterr().err.splitlines()]

        logged = _Lines()
        logging.getLogger("spix_dsr.access").addHandler(logged)
        try:
            assert _straight_to() is None
            access_line("GET", "/v1/records/{record_id}", 200, 1.25, "key-1")
        finally:
            logging.getLogger("spix_dsr.access").removeHandler(logged)
        root.handlers[0].flush()
        capfd.readouterr()
    finally:
        request_id_var.reset(token)
        root.handlers[:], _ = saved
        root.setLevel(saved[1])
    (line,) = straight
    (through_logging,) = logged.lines
    assert datetime.fromisoformat(line.pop("ts")).tzinfo is not None
    through_logging.pop("ts")
    assert line == through_logging
    assert list(line) == list(through_logging)  # the same keys, in the same order
    assert line == {
        "level": "info",
        "logger": "spix_dsr.access",
        "msg": "request",
        "request_id": "req-straight",
        "method": "GET",
        "route": "/v1/records/{record_id}",
        "status": 200,
        "duration_ms": 1.25,
        "key_id": "key-1",
    }
