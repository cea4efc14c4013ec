"""Where the relay sends a DRP status callback (outbox events of kind `drp_agent`, written by
app/interop/drp/callbacks.py): the `status_callback` URL the agent gave with the request.

DRP 1.0 defines no signature for callbacks (section 2.03: the body is the Exercise Status
object, nothing else), and an agent holds no secret of ours to check one with: callbacks go
unsigned, as plain JSON, with `webhook-id` so a receiver can drop a repeated delivery."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import select

from app.interop.drp.models import DrpRequest

KIND = "drp_agent"


async def callback_urls(session: Any, target_ids: set[str]) -> dict[tuple[str, str], str | None]:
    if not target_ids:
        return {}
    rows = await session.execute(
        select(DrpRequest.id, DrpRequest.status_callback).where(
            DrpRequest.id.in_([uuid.UUID(t) for t in target_ids])
        )
    )
    return {(KIND, str(drp_id)): url for drp_id, url in rows}
