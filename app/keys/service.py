"""Keys over HTTP: admins manage every key; customer staff (controller principals) manage
their own controller's keys and see no other; auditors read."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import Select, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.keys import create_api_key, revoke_api_key
from app.auth.models import ApiKey
from app.auth.service import CreatedKey, Principal
from app.core.errors import Forbidden, NotFound
from app.keys.schemas import ApiKeyCreate, ApiKeyCreated, ApiKeyOut


def out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(
        id=key.id,
        prefix=key.prefix,
        name=key.name,
        role=key.role,  # type: ignore[arg-type]
        system=key.system_key,
        controller_id=key.controller_id,
        created_at=key.created_at,
        last_used_at=key.last_used_at,
        revoked_at=key.revoked_at,
    )


def created_out(created: CreatedKey) -> ApiKeyCreated:
    return ApiKeyCreated(**out(created.api_key).model_dump(), key=created.secret)


def listed(
    principal: Principal,
    *,
    role: str | None = None,
    controller_id: uuid.UUID | None = None,
    active: bool | None = None,
) -> Select[Any]:
    statement = select(ApiKey).where(
        principal.visibility.where(controller=lambda own: ApiKey.controller_id == own)
    )
    if role is not None:
        statement = statement.where(ApiKey.role == role)
    if controller_id is not None:
        statement = statement.where(ApiKey.controller_id == controller_id)
    if active is not None:
        statement = statement.where(
            ApiKey.revoked_at.is_(None) if active else ApiKey.revoked_at.is_not(None)
        )
    return statement


async def get(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    key: ApiKey | None = await session.scalar(listed(principal).where(ApiKey.id == key_id))
    if key is None:
        raise NotFound("No API key with this id")
    return key


async def create(session: AsyncSession, principal: Principal, body: ApiKeyCreate) -> CreatedKey:
    controller_id = body.controller_id
    if principal.role == "controller":
        if body.role != "controller":
            raise Forbidden("Customer staff create controller keys only")
        if controller_id is not None and controller_id != principal.controller_id:
            raise Forbidden("Customer staff create keys for their own controller only")
        controller_id = principal.controller_id
    return await create_api_key(
        session,
        principal,
        role=body.role,
        name=body.name,
        system_key=body.system,
        controller_id=controller_id,
    )


async def revoke(session: AsyncSession, principal: Principal, key_id: uuid.UUID) -> ApiKey:
    key = await get(session, principal, key_id)  # another customer's key: 404, as unknown
    await revoke_api_key(session, principal, key_id)
    await session.refresh(key)
    return key
