import hmac

from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from pydantic import BaseModel
from sqlalchemy import text
from sqlalchemy.exc import DBAPIError

from app.core.db import Database
from app.core.errors import ServiceUnavailable, Unauthorized, error_responses
from app.core.fast_path import fast_path
from app.core.resilience import classify
from app.requests.models import REGIMES
from app.requests.queries import acknowledgements_overdue, open_and_overdue
from app.webhooks import metrics as webhook_metrics

router = APIRouter(tags=["operations"])

REQUESTS_OPEN = Gauge("spix_dsr_requests_open", "Open subject requests", ["regime"])
REQUESTS_OVERDUE = Gauge(
    "spix_dsr_requests_overdue", "Open subject requests past their deadline", ["regime"]
)
ACKNOWLEDGEMENTS_OVERDUE = Gauge(
    "spix_dsr_requests_acknowledgement_overdue",
    "Open subject requests whose confirmation of receipt is past its deadline",
    ["regime"],
)


class Health(BaseModel):
    status: str = "ok"


_HEALTHY = Health().model_dump_json().encode()


@router.get(
    "/healthz", operation_id="get_health", summary="The process is up", response_model=Health
)
@fast_path
async def get_health() -> Response:
    # Probed every few seconds by every orchestrator: the same bytes each time.
    return Response(_HEALTHY, media_type="application/json")


_VERSIONS = text("SELECT version_num FROM alembic_version")


@router.get(
    "/readyz",
    operation_id="get_readiness",
    summary="The database answers and its schema is at the newest migration",
    responses=error_responses(503),
)
async def get_readiness(request: Request) -> Health:
    database: Database = request.app.state.db
    try:
        async with database.sessionmaker() as session:
            try:
                versions = set((await session.scalars(_VERSIONS)).all())
            except DBAPIError as exc:
                if classify(exc) is not None:
                    raise
                versions = set()  # no alembic_version table: never migrated
    except Exception as exc:
        raise ServiceUnavailable("The database does not answer") from exc
    if versions != request.app.state.schema_heads:
        # An older schema would fail the requests that need the newer one; a newer one (or a
        # revision this code does not know) is another version's to serve.
        raise ServiceUnavailable("The database schema is not at the newest migration")
    return Health()


@router.get(
    "/metrics",
    operation_id="get_metrics",
    summary="Prometheus metrics",
    response_class=Response,
    description="Open unless `SPIX_DSR_METRICS_TOKEN` is set; then it needs "
    "`Authorization: Bearer <that token>`.",
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}},
        **error_responses(401),
    },
)
async def get_metrics(request: Request) -> Response:
    token = request.app.state.settings.metrics_token
    if token is not None:
        given = request.headers.get("authorization", "")
        expected = f"Bearer {token.get_secret_value()}"
        if not hmac.compare_digest(given.encode(), expected.encode()):
            raise Unauthorized("This service's metrics need its metrics token")
    database: Database = request.app.state.db
    try:
        async with database.sessionmaker() as session:
            counts = await open_and_overdue(session)
            unacknowledged = await acknowledgements_overdue(session)
            await webhook_metrics.refresh(session)
    except Exception:
        # Metrics still answer when the database does not; /readyz reports that.
        counts = None
        unacknowledged = {}
    if counts is not None:
        for regime in REGIMES:
            total, late = counts.get(regime, (0, 0))
            REQUESTS_OPEN.labels(regime).set(total)
            REQUESTS_OVERDUE.labels(regime).set(late)
            ACKNOWLEDGEMENTS_OVERDUE.labels(regime).set(unacknowledged.get(regime, 0))
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
