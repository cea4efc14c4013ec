"""The first admin key of a new deployment, chosen by the operator (from a secret store)
instead of read from a shell: stored hashed, only while no active admin key exists."""

from __future__ import annotations

from enum import StrEnum

from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.audit.service import OPERATOR, record
from app.auth.models import ApiKey
from app.auth.service import KEY_PREFIX, _hash, _split

MIN_SECRET = 32


class InvalidBootstrapKey(ValueError):
    """The key given is not a usable spix-dsr key (the message never holds the key)."""


class Bootstrapped(StrEnum):
    created = "created"
    present = "present"  # this very key is already stored
    skipped = "skipped"  # another active admin key exists: nothing added


def parse_bootstrap_key(key: str) -> str:
    """The key's public prefix; raises InvalidBootstrapKey when the form is wrong."""
    key = key.strip()
    prefix = _split(key)
    if prefix is None or len(prefix) > 32 or not prefix.isascii() or not prefix.isalnum():
        raise InvalidBootstrapKey(
            f"the bootstrap admin key must read {KEY_PREFIX}_<prefix>_<secret>, the prefix "
            "1 to 32 letters or digits"
        )
    if len(key) - len(KEY_PREFIX) - len(prefix) - 2 < MIN_SECRET:
        raise InvalidBootstrapKey(
            f"the bootstrap admin key's secret part must be at least {MIN_SECRET} characters "
            "(e.g. python -c 'import secrets; print(secrets.token_urlsafe(32))')"
        )
    return prefix


async def bootstrap_admin_key(session: AsyncSession, key: str) -> Bootstrapped:
    """Store `key` as an admin key unless an active admin key exists (idempotent)."""
    key = key.strip()
    prefix = parse_bootstrap_key(key)
    same = await session.scalar(select(ApiKey).where(ApiKey.prefix == prefix))
    if same is not None:
        if same.key_hash == _hash(key) and same.role == "admin" and same.revoked_at is None:
            return Bootstrapped.present
        if same.key_hash != _hash(key):
            raise InvalidBootstrapKey("another key already uses the bootstrap key's prefix")
    admins = await session.scalar(
        select(ApiKey.id).where(ApiKey.role == "admin", ApiKey.revoked_at.is_(None)).limit(1)
    )
    if admins is not None or same is not None:
        return Bootstrapped.skipped
    api_key = ApiKey(prefix=prefix, key_hash=_hash(key), name="bootstrap", role="admin")
    session.add(api_key)
    await session.flush()
    record(
        session,
        OPERATOR,
        "api_key.created",
        "api_key",
        api_key.id,
        {"role": "admin", "system": None, "controller_id": None, "bootstrap": True},
    )
    return Bootstrapped.created
