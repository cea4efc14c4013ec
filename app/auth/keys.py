"""Key administration: creating and revoking API keys as an actor, each change in the audit log.

`app.auth.service` holds the key mechanics (hashing, storing, verifying); it cannot record
audit events itself, since the audit log names its actors by `Principal` from there."""

from __future__ import annotations

import uuid

from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import Operator, record
from app.auth.service import CreatedKey, Principal, create_key, revoke_key


async def create_api_key(
    session: AsyncSession,
    actor: Principal | Operator,
    *,
    role: str,
    name: str | None = None,
    system_key: str | None = None,
    controller_id: uuid.UUID | None = None,
) -> CreatedKey:
    created = await create_key(
        session, role=role, name=name, system_key=system_key, controller_id=controller_id
    )
    record(
        session,
        actor,
        "api_key.created",
        "api_key",
        created.api_key.id,
        {
            "role": role,
            "system": system_key,
            "controller_id": str(controller_id) if controller_id else None,
        },
    )
    return created


async def revoke_api_key(
    session: AsyncSession, actor: Principal | Operator, key_id: uuid.UUID
) -> None:
    await revoke_key(session, key_id)
    record(session, actor, "api_key.revoked", "api_key", key_id)
