from fastapi import APIRouter, Request
from fastapi.responses import Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel
from sqlalchemy import text

from app.core.db import Database
from app.core.errors import ServiceUnavailable, error_responses

router = APIRouter(tags=["operations"])


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
async def get_metrics() -> Response:
    return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)
