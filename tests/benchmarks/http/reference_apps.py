"""The references of the HTTP suite, served by the same uvicorn as the service: a bare FastAPI
GET returning a dict (every figure is divided by it), one indexed PostgreSQL read through a
raw asyncpg pool (the stack's ceiling for a route that reads one row), the bare GET behind the
service's middleware with and without its access log, the raw read behind that middleware
(the ceiling of a check), the lookup's own statement run the same way (the ceiling of a
lookup), and the filing's own statements in one transaction (the ceiling of a filing),
without and with the audit events a filing writes."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
import orjson
from fastapi import FastAPI, HTTPException, Response

# At module level: the endpoint's annotation names it (the annotations are strings here).
from app.records.schemas import LookupIn
from app.requests.schemas import RequestCreate

bare = FastAPI()


@bare.get("/")
async def bare_get() -> dict[str, Any]:
    return {"status": "ok"}


async def _nothing_to_reset(_connection: Any) -> None:
    """The references leave nothing on a connection to reset (no LISTEN, advisory lock, open
    cursor or SET). asyncpg's default reset at each release is a round trip
    (`pg_advisory_unlock_all(); CLOSE ALL; UNLISTEN *; RESET ALL`), which the service's pool
    does not pay: a ceiling must not either."""


@asynccontextmanager
async def _pool(app: FastAPI) -> AsyncIterator[None]:
    # The bench's PostgreSQL URL in libpq form (postgresql://), without SSL on loopback.
    async with asyncpg.create_pool(
        os.environ["SPIX_DSR_BENCH_ASYNCPG_DSN"],
        min_size=16,
        max_size=16,
        ssl=False,
        reset=_nothing_to_reset,
    ) as pool:
        app.state.pool = pool
        yield


_AUDIT_COPY = "bench_audit_events"


@asynccontextmanager
async def _pool_with_audit_copy(app: FastAPI) -> AsyncIterator[None]:
    async with _pool(app):
        await app.state.pool.execute(
            f"CREATE TABLE IF NOT EXISTS {_AUDIT_COPY} (LIKE audit_events INCLUDING ALL)"
        )
        yield


raw_read = FastAPI(lifespan=_pool)


async def _read_record(app: FastAPI, record_id: uuid.UUID) -> dict[str, Any]:
    row = await app.state.pool.fetchrow(
        "SELECT id, system, record_ref, delete_by, action FROM records WHERE id = $1", record_id
    )
    if row is None:
        raise HTTPException(404)
    return dict(row)


@raw_read.get("/records/{record_id}")
async def raw_read_record(record_id: uuid.UUID) -> dict[str, Any]:
    return await _read_record(raw_read, record_id)


def middleware_only(lifespan: Any = None) -> FastAPI:
    """The bare GET behind the service's own middleware and JSON access log (request ids,
    metrics, body limit, NUL guard, Allow, database faults): what any route of the service
    pays before its handler runs, and so the ceiling of `GET /healthz`."""
    from app.core.logging import configure_logging
    from app.core.middleware import (
        BodyLimitMiddleware,
        NulGuardMiddleware,
        RequestContextMiddleware,
    )
    from app.core.preflight import AllowMiddleware
    from app.core.resilience import DatabaseFaultMiddleware

    configure_logging("INFO")
    app = FastAPI(telemetry={"tracing": False, "metrics": False, "logs": False}, lifespan=lifespan)

    @app.get("/")
    async def bare_behind_middleware() -> dict[str, Any]:
        return {"status": "ok"}

    app.add_middleware(DatabaseFaultMiddleware)
    app.add_middleware(AllowMiddleware, routes=app.router.routes)
    app.add_middleware(NulGuardMiddleware)
    app.add_middleware(BodyLimitMiddleware, max_bytes=1_000_000)
    app.add_middleware(RequestContextMiddleware)
    return app


def middleware_without_access_log() -> FastAPI:
    """The same, with the access log's level above INFO: what the JSON access line costs a
    request, beside what the rest of the middleware does."""
    app = middleware_only()
    logging.getLogger("spix_dsr.access").setLevel(logging.WARNING)
    return app


def raw_read_behind_middleware() -> FastAPI:
    """The raw asyncpg read behind the service's middleware and access log: what a check must
    at least do (the service's request ids, access log, metrics and body limit, then one
    indexed read), before authenticating its caller or explaining an answer. The ceiling of
    the retention and suppression checks on this stack."""
    app = middleware_only(lifespan=_pool)

    @app.get("/records/{record_id}")
    async def read_behind_middleware(record_id: uuid.UUID) -> dict[str, Any]:
        return await _read_record(app, record_id)

    return app


def raw_lookup_behind_middleware() -> FastAPI:
    """The subject lookup at its least, behind the service's middleware and access log: the
    body validated as the service's own model, the identity hashed under every normalisation
    version in use, then the service's own lookup statement (the identity index probed, the
    page of records read with their profiles, identities and rules) run through a raw asyncpg
    pool, and its rows answered as they come, serialised by orjson. It authenticates nobody,
    counts no rate limit, and neither summarises nor explains the records found: the ceiling
    of the lookup."""
    from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

    from app.subjects.service import _statements, subject_digests
    from tests.benchmarks import _data

    # The key and versions the bench's records were hashed under, as the service has them.
    indexer = _data.indexer()
    # The page statement of a lookup by an admin key, naming no controller, with no cursor:
    # the text the service runs on the driver, its parameters in the driver's order.
    page, _summary = _statements(("postgresql", "everything", False, False))
    compiled = page._compiled(asyncpg_dialect())
    app = middleware_only(lifespan=_pool)

    @app.post("/v1/subjects/lookup")
    async def lookup_behind_middleware(body: LookupIn) -> Response:
        params = {"digests": subject_digests(indexer, body, None), "limit": 51}
        arguments = [params.get(n, compiled.defaults.get(n)) for n in compiled.names]
        rows = await app.state.pool.fetch(compiled.sql, *arguments)
        # The cheapest answer of the rows: orjson writes datetimes itself, the driver's own
        # UUID type as its text.
        answer = orjson.dumps([dict(row) for row in rows], default=str)
        return Response(answer, media_type="application/json")

    return app


def raw_filing_behind_middleware() -> FastAPI:
    """The filing's ceiling without the audit trail (below)."""
    return _raw_filing(audited=False)


def raw_filing_with_audit_behind_middleware() -> FastAPI:
    """The same with the audit events the service's filing writes, built, sealed and written
    as it writes them in the same statements: a filing that waits for its code has one
    (`request.received`), a verified filing three (`request.verified` with it, and a scope's
    `request_scope.started` with the scope). It does not link them into the chain, which the
    service does after the answer, in a transaction shared by the filings committed meanwhile:
    the ceiling of a filing that keeps the audit trail, linking left out."""
    return _raw_filing(audited=True)


def _raw_filing(*, audited: bool) -> FastAPI:
    """Filing at its least, behind the service's middleware and access log: the body validated
    as the service's own model and its identities hashed as the service hashes them, then the
    service's own statements, as their PostgreSQL text, on a raw asyncpg pool. With a code:
    the request with its identities, one statement on its own (no BEGIN and COMMIT, as the
    service runs it). Verified, in one transaction: that, the subject's
    records with their controllers, one in-progress scope a controller with its records and an
    export task a system, and the outbox's question about webhook receivers. It writes no audit
    event (so none to link after the answer), authenticates nobody, computes no deadline,
    seals nothing and answers only the ids: the ceiling of a filing on this stack. Every scope
    runs at once with an export task, as the service runs the bench's, whose records all
    belong to the platform."""
    from datetime import timedelta

    from sqlalchemy.dialects.postgresql.asyncpg import dialect as asyncpg_dialect

    from app.audit.hashing import event_seal
    from app.audit.service import WRITTEN_COLUMNS
    from app.core.db import row_of, utcnow
    from app.core.hot_read import _Compiled
    from app.core.ids import new_id
    from app.outbox.service import _RECEIVERS
    from app.requests.intake import _digests
    from app.requests.models import RequestScope, SubjectRequest
    from app.requests.scopes import _RECORDS
    from app.requests.writes import (
        _EVENTS,
        _REQUEST_AND_IDENTITIES,
        _WORK,
        NewWork,
        request_params,
    )
    from app.requests.writes import _arrays as arrays_of
    from tests.benchmarks import _data

    dialect = asyncpg_dialect()
    request_sql, records_sql, work_sql, receivers_sql = (
        _Compiled(statement, dialect)
        for statement in (
            _REQUEST_AND_IDENTITIES.statement,
            _RECORDS[False].statement,
            _WORK.statement,
            _RECEIVERS[(False, True, False)].statement,
        )
    )
    lifespan: Any = _pool
    if audited:
        # The events go to a copy of the audit table (its columns, indexes and the same entry
        # sequence): in the service's own table, the service would link them after its next
        # commit, on its own time and under its own key.
        for compiled in (request_sql, work_sql):
            text = compiled.sql.replace("INSERT INTO audit_events ", f"INSERT INTO {_AUDIT_COPY} ")
            assert text != compiled.sql
            compiled.sql = text
        lifespan = _pool_with_audit_copy
    no_events = arrays_of(_EVENTS, "ae", [], WRITTEN_COLUMNS)
    indexer = _data.indexer()
    audit_key = b"bench-audit-key-" * 2
    actor_key_id = uuid.uuid4()

    def events(*queued: tuple[str, str, Any, Any, dict[str, Any]]) -> dict[str, list[Any]]:
        """The events' arrays, each event as `audit.record` queues it and sealed as the
        commit seals it; none without the audit trail."""
        if not audited:
            return no_events
        rows = [
            {
                "id": new_id(),
                "occurred_at": utcnow(),
                "event_type": event_type,
                "actor_key_id": actor_key_id,
                "actor_role": "admin",
                "entity_type": entity_type,
                "entity_id": str(entity_id),
                "subject_request_id": request_id,
                "details": details,
            }
            for event_type, entity_type, entity_id, request_id, details in queued
        ]
        for row in rows:
            row["seal"] = event_seal(audit_key, row)
        return arrays_of(_EVENTS, "ae", rows, WRITTEN_COLUMNS)

    def request_events(body: RequestCreate, request_id: Any, verified: bool) -> dict[str, Any]:
        """The events written with the request: received, and verified when it is."""
        if not audited:
            return no_events
        details = {
            "type": body.type,
            "regime": body.regime,
            "channel": body.channel,
            "requester": body.requester.kind,
            "filed_by_controller_id": None,
        }
        queued = [("request.received", "request", request_id, request_id, details)]
        if verified:
            method = {"method": "trusted_session"}
            queued.append(("request.verified", "request", request_id, request_id, method))
        return events(*queued)

    app = middleware_only(lifespan=lifespan)

    @app.post("/v1/requests", status_code=201)
    async def file_behind_middleware(body: RequestCreate) -> Response:
        now = utcnow()
        digests = _digests(body, indexer, None)
        verified = body.verified
        # From its row, without the ORM object, as the service writes a request that waits
        # for its code.
        row = row_of(
            SubjectRequest,
            {
                "id": new_id(),
                "type": body.type,
                "regime": body.regime,
                "status": "in_progress" if verified else "pending_verification",
                "channel": body.channel,
                "requester_kind": body.requester.kind,
                "received_at": now,
                "acknowledge_by": now + timedelta(days=10),
                "due_at": now + timedelta(days=30),
                "details": {},
                "contact_sealed": "",
            },
        )
        params = request_params(row, digests) | request_events(body, row["id"], verified)
        answer: dict[str, Any] = {"id": str(row["id"]), "scopes": []}
        async with app.state.pool.acquire() as connection:
            if not verified:  # one statement, atomic by itself: no BEGIN and COMMIT
                await connection.execute(request_sql.sql, *request_sql.arguments(params))
            else:
                await verified_filing(connection, row, digests, params, answer)
        return Response(orjson.dumps(answer), status_code=201, media_type="application/json")

    async def verified_filing(
        connection: Any, row: dict[str, Any], digests: Any, params: Any, answer: Any
    ) -> None:
        now = row["received_at"]
        async with connection.transaction():
            await connection.execute(request_sql.sql, *request_sql.arguments(params))
            found = await connection.fetch(
                records_sql.sql,
                *records_sql.arguments({"digests": [d.digest for d in digests]}),
            )
            # The rows as the service reads them; scopes and tasks as it builds them.
            by_controller: dict[Any, list[Any]] = {}
            for record in found:
                by_controller.setdefault(record["controller_id"], []).append(
                    records_sql.row(record)
                )
            work = NewWork(row["id"])
            started: list[tuple[str, str, Any, Any, dict[str, Any]]] = []
            for controller_id, records in by_controller.items():
                scope = RequestScope(
                    id=new_id(),
                    request_id=row["id"],
                    controller_id=controller_id,
                    status="in_progress",
                )
                work.add_scope(scope, [r.id for r in records])
                by_system: dict[str, list[Any]] = {}
                for r in records:
                    by_system.setdefault(r.system, []).append(r)
                for system, rows in sorted(by_system.items()):
                    work.add_task(new_id(), scope.id, system, "export", rows, {}, now)
                if audited:
                    details = {"controller_id": str(controller_id), "tasks": len(by_system)}
                    started.append(
                        ("request_scope.started", "request_scope", scope.id, row["id"], details)
                    )
            params = work.params() | events(*started)
            await connection.execute(work_sql.sql, *work_sql.arguments(params))
            await connection.fetch(receivers_sql.sql, *receivers_sql.arguments({}))
            answer["scopes"] = [str(scope.id) for scope in work.scopes]

    return app
