"""The FastAPI application."""

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import Response

import app.audit.service  # noqa: F401  (registers the audit chain's commit hook)
from app.audit.router import router as audit_router
from app.auth.oidc import OidcVerifier
from app.controllers.router import router as controllers_router
from app.core.config import Settings, get_settings
from app.core.crypto import SecretBox
from app.core.db import Database
from app.core.docs import install_docs
from app.core.errors import install_error_handlers
from app.core.fast_path import install_fast_paths
from app.core.idempotency import IdempotentReplay
from app.core.identity import BlindIndexer
from app.core.logging import configure_logging
from app.core.middleware import (
    BodyLimitMiddleware,
    NulGuardMiddleware,
    RequestContextMiddleware,
)
from app.core.preflight import AllowMiddleware
from app.core.ratelimit import RateLimiter
from app.core.resilience import DatabaseFaultMiddleware
from app.core.revisions import head_revisions
from app.core.runtime import tune_garbage_collector
from app.core.signing import Signer
from app.core.startup import guard_subject_key
from app.data_categories.router import router as data_categories_router
from app.health.router import router as health_router
from app.interop.drp.agents_router import router as drp_agents_router
from app.interop.drp.messages import DrpError
from app.interop.drp.router import drp_error
from app.interop.drp.router import router as drp_router
from app.interop.opendsr.router import router as opendsr_router
from app.jobs.router import router as jobs_router
from app.keys.router import router as keys_router
from app.legal_holds.router import router as legal_holds_router
from app.openapi import build_openapi
from app.outbox import service as _outbox  # noqa: F401  (registers the outbox commit hook)
from app.purposes.router import router as purposes_router
from app.recipients.router import router as recipients_router
from app.records.router import router as records_router
from app.requests.clocks import clocks_from_overrides
from app.requests.router import router as requests_router
from app.retention.router import router as retention_router
from app.retention_rules.router import router as retention_rules_router
from app.ropa.router import router as ropa_router
from app.subjects.router import router as subjects_router
from app.suppressions.router import router as suppressions_router
from app.systems.router import router as systems_router
from app.tasks.router import router as tasks_router
from app.webhooks.router import router as webhooks_router
from app.webhooks.signing import webhook_signer
from app.well_known.router import router as well_known_router

VERSION = "0.1.0"


async def _replay(_request: Request, exc: Exception) -> Response:
    assert isinstance(exc, IdempotentReplay)
    return exc.response


# The routers in the order the OpenAPI document lists them.
DOCUMENT_ORDER = (
    health_router,
    controllers_router,
    systems_router,
    data_categories_router,
    purposes_router,
    retention_rules_router,
    legal_holds_router,
    ropa_router,
    records_router,
    subjects_router,
    retention_router,
    requests_router,
    tasks_router,
    suppressions_router,
    audit_router,
    webhooks_router,
    jobs_router,
    well_known_router,
    recipients_router,
    keys_router,
    opendsr_router,
    drp_agents_router,
    drp_router,
)
# The routers whose routes requests try first: the probes and the calls systems make on
# every record, send and request.
MATCH_FIRST = (
    health_router,
    records_router,
    suppressions_router,
    subjects_router,
    tasks_router,
    requests_router,
    retention_router,
)


def create_app(settings: Settings | None = None, *, database: Database | None = None) -> FastAPI:
    settings = settings or get_settings()
    subject_key = settings.resolve_subject_key()  # refuses a production start without one
    audit_key = settings.resolve_audit_key()  # the same
    receipt_signer = Signer.from_material(settings.resolve_receipt_key())  # the same
    # Signs `v1a` webhook deliveries (the worker holds the same key); None: no `v1a` here.
    webhook_key = webhook_signer(settings.resolve_webhook_key())
    database = database or Database.from_url(
        settings.database_url, pool_size=settings.db_pool_size, echo=settings.db_echo
    )

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        # Refuse to serve with a subject key other than the one the database's identities use.
        await guard_subject_key(database.engine, settings, subject_key)
        yield
        await database.dispose()

    application = FastAPI(
        title="spix-dsr",
        version=VERSION,
        lifespan=lifespan,
        docs_url=None,  # served by install_docs, from installed assets
        redoc_url=None,
        # FastAPI's own OpenTelemetry hooks: the service exports Prometheus metrics and JSON
        # logs and configures no OpenTelemetry provider, yet each request paid for asking
        # whether one was configured (environment reads, provider checks).
        telemetry={"tracing": False, "metrics": False, "logs": False},
    )
    application.state.settings = settings
    application.state.db = database
    application.state.indexer = BlindIndexer(
        subject_key,
        settings.subject_key_id,
        settings.default_phone_region,
        settings.identity_legacy_versions,
    )
    application.state.secret_box = SecretBox(subject_key, settings.subject_key_id)
    application.state.audit_key = audit_key
    application.state.receipt_signer = receipt_signer
    application.state.webhook_signer = webhook_key
    # Parsed once, so a bad override stops the start instead of failing a request.
    application.state.clocks = clocks_from_overrides(settings.regime_clocks)
    # What /readyz expects in alembic_version: read from the shipped migrations once.
    application.state.schema_heads = head_revisions()
    # Sign-in with identity providers, and the per-principal rate limits.
    application.state.oidc = OidcVerifier(settings.oidc_issuers)
    application.state.rate_limiter = RateLimiter(settings.rate_limits, settings.rate_limit_storage)

    install_error_handlers(application)
    application.add_exception_handler(IdempotentReplay, _replay)
    application.add_exception_handler(DrpError, drp_error)

    # The routers' routes go onto the app itself rather than through include_router: FastAPI
    # matches an included router's routes through a wrapper per router that costs ~4 µs for
    # each route tried. One difference: app.dependency_overrides does not reach them (no test
    # here mocks a dependency; they run against real databases).
    for router in DOCUMENT_ORDER:
        application.router.routes.extend(router.routes)
    # The document lists them in this order; requests try them hottest first. Routes are tried
    # one by one (about 0.8 µs each), and no route of one router matches a path of another
    # (tests/test_architecture.py), so the routers' order changes no match.
    application.state.document_routes = list(application.router.routes)
    hot = [route for router in MATCH_FIRST for route in router.routes]
    tried_first = {id(route) for route in hot}
    application.router.routes[:] = hot + [
        route for route in application.router.routes if id(route) not in tried_first
    ]
    # The hot checks' direct way in, past FastAPI's per-request machinery (core/fast_path.py).
    install_fast_paths(application.router.routes)
    install_docs(application)

    # Innermost: it re-runs the routed request (a lost deadlock) or answers 503 (no database).
    application.add_middleware(DatabaseFaultMiddleware)
    if settings.cors_origins:
        application.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["GET", "POST", "PATCH", "DELETE"],
            allow_headers=[
                "Authorization",
                "Content-Type",
                "Idempotency-Key",
                "If-Match",
                "X-Request-ID",
            ],
            expose_headers=["ETag", "X-Request-ID", "Location", "Retry-After"],
            max_age=600,
        )
    else:
        application.add_middleware(AllowMiddleware, routes=application.router.routes)
    application.add_middleware(NulGuardMiddleware)
    application.add_middleware(BodyLimitMiddleware, max_bytes=settings.max_body_bytes)
    application.add_middleware(RequestContextMiddleware)

    def openapi() -> dict[str, Any]:
        return build_openapi(application)

    application.openapi = openapi  # type: ignore[method-assign]
    return application


def create_default_app() -> FastAPI:
    """Factory for `uvicorn --factory app.main:create_default_app`."""
    settings = get_settings()
    configure_logging(settings.log_level)
    application = create_app(settings)
    tune_garbage_collector()
    return application
