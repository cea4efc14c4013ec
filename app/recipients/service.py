"""Recipients: processors, sub-processors, third parties and other controllers that receive
personal data from Spix's systems (GDPR Art. 15(1)(c), 30(1)(d)-(e))."""

from __future__ import annotations

from collections.abc import Iterable

from pydantic import TypeAdapter, ValidationError
from sqlalchemy import Select, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import record
from app.auth.service import Principal
from app.core.errors import Conflict, NotFound, Unprocessable
from app.core.schemas import SystemKey
from app.recipients.models import Recipient
from app.recipients.schemas import RecipientCreate, RecipientUpdate
from app.systems.models import System

_KEY: TypeAdapter[str] = TypeAdapter(SystemKey)


async def get_recipient(session: AsyncSession, key: str) -> Recipient:
    try:
        _KEY.validate_python(key)
    except ValidationError:
        raise NotFound("No recipient with this key") from None
    recipient = await session.get(Recipient, key)
    if recipient is None:
        raise NotFound("No recipient with this key")
    return recipient


async def _check_systems(session: AsyncSession, systems: list[str]) -> list[str]:
    wanted = sorted(set(systems))
    known = set(await session.scalars(select(System.key).where(System.key.in_(wanted))))
    unknown = [key for key in wanted if key not in known]
    if unknown:
        raise Unprocessable(f"Unknown system(s): {', '.join(unknown)}", loc=["body", "systems"])
    return wanted


async def create_recipient(
    session: AsyncSession, principal: Principal, body: RecipientCreate
) -> Recipient:
    values = body.model_dump()
    values["systems"] = await _check_systems(session, body.systems)
    recipient = Recipient(**values)
    try:
        async with session.begin_nested():
            session.add(recipient)
    except IntegrityError:
        raise Conflict(f"A recipient with key {body.key!r} already exists") from None
    record(
        session,
        principal,
        "recipient.created",
        "recipient",
        recipient.key,
        {"role": recipient.role, "transfer_safeguard": recipient.transfer_safeguard},
    )
    return recipient


async def update_recipient(
    session: AsyncSession, principal: Principal, recipient: Recipient, body: RecipientUpdate
) -> list[str]:
    """Apply the fields sent; return the names of those that changed."""
    changes = body.model_dump(exclude_unset=True)
    if "systems" in changes:
        changes["systems"] = await _check_systems(session, changes["systems"])
    changed = sorted(f for f, value in changes.items() if getattr(recipient, f) != value)
    for field in changed:
        setattr(recipient, field, changes[field])
    await session.flush()
    if changed:
        record(
            session, principal, "recipient.updated", "recipient", recipient.key, {"fields": changed}
        )
    return changed


def select_recipients() -> Select[Recipient]:
    return select(Recipient)


async def recipients_of_systems(
    session: AsyncSession, systems: Iterable[str]
) -> dict[str, list[Recipient]]:
    """Per system key, the recipients that receive its data (ordered by key)."""
    wanted = set(systems)
    found: dict[str, list[Recipient]] = {key: [] for key in wanted}
    if not wanted:
        return found
    # The registry is small: read it whole rather than query inside a JSON list per backend.
    for recipient in await session.scalars(select(Recipient).order_by(Recipient.key)):
        for key in recipient.systems:
            if key in found:
                found[key].append(recipient)
    return found
