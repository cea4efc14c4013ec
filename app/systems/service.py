"""Systems: the internal Spix services that hold personal data, addressed by their key."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.auth.service import Principal
from app.core.errors import Conflict, NotFound
from app.core.schemas import SystemKey
from app.systems.models import System
from app.systems.schemas import SystemCreate, SystemUpdate

_KEY: TypeAdapter[str] = TypeAdapter(SystemKey)


async def get_system(session: AsyncSession, key: str) -> System:
    # A malformed key names nothing; refusing it before the query also keeps bytes that
    # PostgreSQL rejects in text (NUL) from turning a 404 into a 500.
    try:
        _KEY.validate_python(key)
    except ValidationError:
        raise NotFound("No system with this key") from None
    system = await session.get(System, key)
    if system is None:
        raise NotFound("No system with this key")
    return system


async def create_system(session: AsyncSession, principal: Principal, body: SystemCreate) -> System:
    system = System(**body.model_dump())
    # The primary key decides, so two concurrent creates of one key cannot both succeed.
    try:
        async with session.begin_nested():
            session.add(system)
    except IntegrityError:
        raise Conflict(f"A system with key {body.key!r} already exists") from None
    record(
        session,
        principal,
        "system.created",
        "system",
        system.key,
        {"has_webhook": system.webhook_url is not None},
    )
    return system


async def update_system(
    session: AsyncSession, principal: Principal, system: System, body: SystemUpdate
) -> list[str]:
    """Apply the fields sent; return the names of those that changed."""
    changes = body.model_dump(exclude_unset=True)
    changed = sorted(f for f, value in changes.items() if getattr(system, f) != value)
    for field in changed:
        setattr(system, field, changes[field])
    await session.flush()
    if changed:
        record(session, principal, "system.updated", "system", system.key, {"fields": changed})
    return changed


def select_systems() -> Select[System]:
    return select(System)
