"""Purposes: why personal data is processed, and on which legal basis."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.auth.service import Principal
from app.core.errors import Conflict, NotFound
from app.core.schemas import DottedKey
from app.purposes.models import Purpose
from app.purposes.schemas import PurposeCreate, PurposeUpdate

_KEY: TypeAdapter[str] = TypeAdapter(DottedKey)


async def get_purpose(session: AsyncSession, key: str) -> Purpose:
    # A malformed key names nothing; refusing it before the query also keeps bytes that
    # PostgreSQL rejects in text (NUL) from turning a 404 into a 500.
    try:
        _KEY.validate_python(key)
    except ValidationError:
        raise NotFound("No purpose with this key") from None
    purpose = await session.get(Purpose, key)
    if purpose is None:
        raise NotFound("No purpose with this key")
    return purpose


def select_purposes(*, legal_basis: str | None = None) -> Select[Purpose]:
    statement = select(Purpose)
    if legal_basis is not None:
        statement = statement.where(Purpose.legal_basis == legal_basis)
    return statement


async def create_purpose(
    session: AsyncSession, principal: Principal, body: PurposeCreate
) -> Purpose:
    purpose = Purpose(**body.model_dump())
    # The primary key decides, so two concurrent creates of one key cannot both succeed.
    try:
        async with session.begin_nested():
            session.add(purpose)
    except IntegrityError:
        raise Conflict(f"A purpose with key {body.key!r} already exists") from None
    record(
        session,
        principal,
        "purpose.created",
        "purpose",
        purpose.key,
        {"legal_basis": purpose.legal_basis, "objection_absolute": purpose.objection_absolute},
    )
    return purpose


async def update_purpose(
    session: AsyncSession, principal: Principal, purpose: Purpose, body: PurposeUpdate
) -> list[str]:
    """Apply the fields sent; return the names of those that changed."""
    changes = body.model_dump(exclude_unset=True)
    changed = sorted(f for f, value in changes.items() if getattr(purpose, f) != value)
    for field in changed:
        setattr(purpose, field, changes[field])
    await session.flush()
    if changed:
        record(session, principal, "purpose.updated", "purpose", purpose.key, {"fields": changed})
    return changed
