"""When each API key was last used, approximately: written at most once per interval per key
and process (on a cache miss, never per request), so a busy key costs no write per call."""

from __future__ import annotations

import logging
import time
import uuid
from datetime import timedelta

from sqlalchemy import or_, update
from sqlalchemy.exc import SQLAlchemyError

from app.auth.models import ApiKey
from app.core.db import Database, utcnow

log = logging.getLogger("spix_dsr.auth")

_touched: dict[uuid.UUID, float] = {}


async def touch_key(database: Database, key_id: uuid.UUID, *, every: float) -> None:
    now = time.monotonic()
    if now - _touched.get(key_id, float("-inf")) < every:
        return
    if len(_touched) > 10_000:
        _touched.clear()
    _touched[key_id] = now
    stamp = utcnow()
    try:
        async with database.sessionmaker() as session:
            await session.execute(
                update(ApiKey)
                .where(
                    ApiKey.id == key_id,
                    or_(
                        ApiKey.last_used_at.is_(None),
                        ApiKey.last_used_at < stamp - timedelta(seconds=every),
                    ),
                )
                .values(last_used_at=stamp)
            )
            await session.commit()
    except SQLAlchemyError as exc:
        # Approximate by design: a lost stamp is written on a later use.
        log.warning("could not record a key's last use", extra={"error_type": type(exc).__name__})
