import uuid
from datetime import timedelta
from typing import Annotated

from fastapi import APIRouter, Depends, Query, Request
from sqlalchemy import select

from app.auth.dependencies import AdminKey, ReaderKey
from app.core.crypto import SecretBoxDep
from app.core.errors import NotFound, Unprocessable, error_responses
from app.core.pagination import Page, PageParams, page_params, paginate
from app.core.session import SessionDep
from app.outbox.models import OutboxEvent
from app.webhooks import service
from app.webhooks.schemas import DeliveryOut, DeliveryStatus, SigningSecretOut

router = APIRouter(tags=["webhooks"])


@router.get(
    "/v1/webhook-deliveries",
    operation_id="list_webhook_deliveries",
    summary="List webhook deliveries, oldest first",
    responses=error_responses(400, 401, 403, 422),
)
async def list_deliveries(
    session: SessionDep,
    _principal: ReaderKey,
    page: Annotated[PageParams, Depends(page_params)],
    status: DeliveryStatus | None = None,
    endpoint: Annotated[
        str | None,
        Query(
            max_length=120,
            description="The receiver: `system:<key>` or `controller:<id>`",
            examples=["system:voice-recordings"],
        ),
    ] = None,
    event: Annotated[str | None, Query(max_length=60, examples=["task.created"])] = None,
) -> Page[DeliveryOut]:
    statement = select(OutboxEvent)
    if status is not None:
        statement = statement.where(OutboxEvent.status == status)
    if endpoint is not None:
        kind, _, target = endpoint.partition(":")
        if kind not in ("system", "controller") or not target:
            raise Unprocessable(
                "endpoint is `system:<key>` or `controller:<id>`", loc=["query", "endpoint"]
            )
        statement = statement.where(
            OutboxEvent.target_kind == kind, OutboxEvent.target_id == target
        )
    if event is not None:
        statement = statement.where(OutboxEvent.event_type == event)
    rows, next_cursor = await paginate(session, statement, OutboxEvent.id, page)
    return Page[DeliveryOut](
        items=[DeliveryOut.model_validate(row) for row in rows], next_cursor=next_cursor
    )


@router.get(
    "/v1/webhook-deliveries/{delivery_id}",
    operation_id="get_webhook_delivery",
    summary="A webhook delivery",
    responses=error_responses(401, 403, 404, 422),
)
async def get_delivery(
    delivery_id: uuid.UUID, session: SessionDep, _principal: ReaderKey
) -> DeliveryOut:
    event = await session.get(OutboxEvent, delivery_id)
    if event is None:
        raise NotFound("No such delivery")
    return DeliveryOut.model_validate(event)


@router.post(
    "/v1/webhook-deliveries/{delivery_id}/redeliver",
    operation_id="redeliver_webhook",
    summary="Send a delivered or dead-lettered event again (same webhook-id)",
    responses=error_responses(401, 403, 404, 409, 422),
)
async def redeliver(
    delivery_id: uuid.UUID, session: SessionDep, principal: AdminKey
) -> DeliveryOut:
    event = await service.redeliver(session, principal, delivery_id)
    return DeliveryOut.model_validate(event)


@router.post(
    "/v1/systems/{key}/webhook-secret",
    status_code=201,
    operation_id="rotate_system_webhook_secret",
    summary="Issue a system's webhook signing secret (the previous one overlaps for a while)",
    responses=error_responses(401, 403, 404, 422),
)
async def rotate_secret(
    key: str, request: Request, session: SessionDep, principal: AdminKey, box: SecretBoxDep
) -> SigningSecretOut:
    overlap = timedelta(hours=request.app.state.settings.webhook_secret_overlap_hours)
    secret, retires_at = await service.rotate_system_secret(session, principal, box, key, overlap)
    return SigningSecretOut(webhook_signing_secret=secret, previous_retires_at=retires_at)
