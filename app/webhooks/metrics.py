"""Gauges of the outbox and of task leases, read from the database when /metrics is scraped
(workers are separate processes: the database is what they share)."""

from __future__ import annotations

from prometheus_client import Gauge
from sqlalchemy import func, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.core.db import utcnow
from app.outbox.models import OutboxEvent
from app.tasks.models import Task

DELIVERIES = Gauge("spix_dsr_webhook_deliveries", "Outbox events by delivery outcome", ["status"])
OLDEST_UNDELIVERED = Gauge(
    "spix_dsr_webhook_oldest_undelivered_seconds",
    "Age of the oldest event not yet delivered (0 when none waits)",
)
LEASES_LAPSED = Gauge(
    "spix_dsr_tasks_lease_lapsed", "Claimed tasks whose lease has lapsed without an outcome"
)


async def refresh(session: AsyncSession) -> None:
    now = utcnow()
    counts = dict(
        (
            await session.execute(
                select(OutboxEvent.status, func.count()).group_by(OutboxEvent.status)
            )
        ).all()
    )
    for status in ("pending", "delivered", "dead"):
        DELIVERIES.labels(status).set(counts.get(status, 0))
    oldest = await session.scalar(
        select(func.min(OutboxEvent.created_at)).where(OutboxEvent.status == "pending")
    )
    OLDEST_UNDELIVERED.set((now - oldest).total_seconds() if oldest else 0)
    LEASES_LAPSED.set(
        await session.scalar(
            select(func.count()).where(Task.status == "claimed", Task.lease_expires_at < now)
        )
        or 0
    )
