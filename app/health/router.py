from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, Gauge, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from app.core.db import Database
from app.core.errors import ServiceUnavailable, error_responses
from app.requests.models import REGIMES
from app.requests.service import open_and_overdue

router = APIRouter(tags=["operations"])

REQUESTS_OPEN = Gauge("spix_dsr_requests_open", "Open subject requests", ["regime"])
REQUESTS_OVERDUE = Gauge(
    "spix_dsr_requests_overdue", "Open subject requests past their deadline", ["regime"]
)


class Health(BaseModel):
    status: str = "ok"


@router.get("/healthz", operation_id="get_health", summary="The process is up")
async def get_health() -> Health:
    return Health()


@router.get(
    "/readyz",
    operation_id="get_readiness",
    summary="The database answers",
    responses=error_responses(503),
)
async def get_readiness(request: Request) -> Health:
    database: Database = request.app.state.db
    try:
        async with database.sessionmaker() as session:
            await session.execute(text("SELECT 1"))
    except Exception as exc:
        raise ServiceUnavailable("The database does not answer") from exc
    return Health()


@router.get(
    "/metrics",
    operation_id="get_metrics",
    summary="Prometheus metrics",
    response_class=Response,
    responses={
        200: {"content": {CONTENT_TYPE_LATEST.split(";")[0]: {"schema": {"type": "string"}}}}
    },
)
async def get_metrics(request: Request) -> Response:
    database: Database = request.app.state.db
    try:
        async with database.sessionmaker() as session:
            counts = await open_and_overdue(session)
    except Exception:
        # Metrics still answer when the database does not; /readyz reports that.
        counts = None
    if counts is not None:
        for regime in REGIMES:
            total, late = counts.get(regime, (0, 0))
            REQUESTS_OPEN.labels(regime).set(total)
            REQUESTS_OVERDUE.labels(regime).set(late)
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
