"""Systems' signing secrets, and redelivery of an event by hand."""

from __future__ import annotations

import uuid
from datetime import datetime, timedelta

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Operator
from app.audit.service import record as audit
from app.auth.service import Principal
from app.core.crypto import SecretBox
from app.core.db import utcnow
from app.core.errors import Conflict, NotFound
from app.outbox.models import OutboxEvent
from app.systems.models import System
from app.webhooks.models import WebhookSecret
from app.webhooks.signing import new_secret


async def rotate_system_secret(
    session: AsyncSession,
    principal: Principal | Operator,
    box: SecretBox,
    system_key: str,
    overlap: timedelta,
) -> tuple[str, datetime | None]:
    """Issue a new secret; the current ones keep signing until `overlap` has passed."""
    if await session.get(System, system_key) is None:
        raise NotFound("No such system")
    now = utcnow()
    retires_at = now + overlap
    retired = (
        await session.execute(
            update(WebhookSecret)
            .where(
                WebhookSecret.target_kind == "system",
                WebhookSecret.target_id == system_key,
                (WebhookSecret.retires_at.is_(None)) | (WebhookSecret.retires_at > retires_at),
            )
            .values(retires_at=retires_at)
            .returning(WebhookSecret.id)
        )
    ).all()
    secret = new_secret()
    session.add(
        WebhookSecret(
            target_kind="system",
            target_id=system_key,
            secret_sealed=box.seal(secret, context=f"webhook-secret:system:{system_key}"),
            created_at=now,
        )
    )
    await session.flush()
    previous_retires_at = retires_at if retired else None
    audit(
        session,
        principal,
        "system.webhook_secret_issued",
        "system",
        system_key,
        {"previous_retires_at": previous_retires_at.isoformat() if previous_retires_at else None},
    )
    return secret, previous_retires_at


async def redeliver(
    session: AsyncSession, principal: Principal, event_id: uuid.UUID
) -> OutboxEvent:
    """Send a delivered or dead-lettered event again, with a fresh round of attempts."""
    event = await session.scalar(
        select(OutboxEvent).where(OutboxEvent.id == event_id).with_for_update()
    )
    if event is None:
        raise NotFound("No such delivery")
    if event.status == "pending":
        raise Conflict("The event is still being delivered")
    event.status = "pending"
    event.attempts = 0
    event.next_attempt_at = utcnow()
    event.claimed_by = None
    event.claimed_until = None
    await session.flush()
    audit(
        session,
        principal,
        "webhook_delivery.redelivered",
        "webhook_delivery",
        event.id,
        {"event_type": event.event_type, "target_kind": event.target_kind},
    )
    return event
