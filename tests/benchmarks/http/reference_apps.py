"""The references of the HTTP suite, served by the same uvicorn as the service: a bare FastAPI
GET returning a dict (every figure is divided by it), one indexed PostgreSQL read through a
raw asyncpg pool (the stack's ceiling for a route that reads one row), the bare GET behind the
service's middleware with and without its access log, and the raw read behind that middleware
(the ceiling of a check)."""

from __future__ import annotations

import logging
import os
import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

import asyncpg  # type: ignore[import-untyped]
from fastapi import FastAPI, HTTPException

bare = FastAPI()


@bare.get("/")
async def bare_get() -> dict[str, Any]:
    return {"status": "ok"}


@asynccontextmanager
async def _pool(app: FastAPI) -> AsyncIterator[None]:
    # The bench's PostgreSQL URL in libpq form (postgresql://), without SSL on loopback.
    async with asyncpg.create_pool(
        os.environ["SPIX_DSR_BENCH_ASYNCPG_DSN"], min_size=16, max_size=16, ssl=False
    ) as pool:
        app.state.pool = pool
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
