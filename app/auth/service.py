"""API keys: random, shown once, stored as a SHA-256 hash, verified without a round trip
per request (a short per-process cache that revocation through this process clears)."""

from __future__ import annotations

import hashlib
import hmac
import secrets
import time
import uuid
from dataclasses import dataclass, field

from sqlalchemy import select, update
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ROLES, ApiKey
from app.auth.visibility import Visibility
from app.controllers.models import Controller
from app.core.db import utcnow
from app.core.errors import NotFound, Unprocessable
from app.systems.models import System

KEY_PREFIX = "sdsr"


@dataclass(frozen=True, slots=True)
class Principal:
    key_id: uuid.UUID
    role: str
    system_key: str | None = None
    controller_id: uuid.UUID | None = None
    # What this key sees, decided once from its role and binding (fails closed).
    visibility: Visibility = field(init=False, compare=False)

    def __post_init__(self) -> None:
        visibility = Visibility.of(
            self.role, system_key=self.system_key, controller_id=self.controller_id
        )
        object.__setattr__(self, "visibility", visibility)


@dataclass(frozen=True, slots=True)
class CreatedKey:
    api_key: ApiKey
    secret: str


def _hash(key: str) -> str:
    # Keys carry 256 random bits, so a plain digest is as strong as a slow KDF here.
    return hashlib.sha256(key.encode()).hexdigest()


def _split(key: str) -> str | None:
    parts = key.split("_", 2)  # the secret part may itself contain "_"
    if len(parts) != 3 or parts[0] != KEY_PREFIX or not parts[1] or not parts[2]:
        return None
    return parts[1]


async def create_key(
    session: AsyncSession,
    *,
    role: str,
    name: str | None = None,
    system_key: str | None = None,
    controller_id: uuid.UUID | None = None,
) -> CreatedKey:
    if role not in ROLES:
        raise Unprocessable(f"role must be one of {', '.join(ROLES)}", loc=["role"])
    if (role == "system") != (system_key is not None):
        raise Unprocessable("a system key, and only a system key, names its system", loc=["system"])
    if (role == "controller") != (controller_id is not None):
        raise Unprocessable(
            "a controller key, and only a controller key, names its controller",
            loc=["controller_id"],
        )
    if system_key is not None and await session.get(System, system_key) is None:
        raise Unprocessable(f"No system with key {system_key!r}", loc=["system"])
    if controller_id is not None and await session.get(Controller, controller_id) is None:
        raise Unprocessable("No controller with this id", loc=["controller_id"])
    prefix = secrets.token_hex(6)
    secret = f"{KEY_PREFIX}_{prefix}_{secrets.token_urlsafe(32)}"
    api_key = ApiKey(
        prefix=prefix,
        key_hash=_hash(secret),
        name=name,
        role=role,
        system_key=system_key,
        controller_id=controller_id,
    )
    session.add(api_key)
    await session.flush()
    return CreatedKey(api_key=api_key, secret=secret)


async def list_keys(session: AsyncSession) -> list[ApiKey]:
    return list((await session.scalars(select(ApiKey).order_by(ApiKey.id))).all())


async def revoke_key(session: AsyncSession, key_id: uuid.UUID) -> None:
    result = await session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=utcnow())
    )
    if result.rowcount == 0:  # type: ignore[attr-defined]
        raise NotFound("No active API key with this id")
    _cache.clear()


class _KeyCache:
    def __init__(self) -> None:
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, key_hash: str) -> Principal | None:
        entry = self._entries.get(key_hash)
        if entry is None or entry[1] < time.monotonic():
            return None
        return entry[0]

    def put(self, key_hash: str, principal: Principal, ttl: float) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[key_hash] = (principal, time.monotonic() + ttl)

    def clear(self) -> None:
        self._entries.clear()


_cache = _KeyCache()

_lookup = select(ApiKey.key_hash, ApiKey.id, ApiKey.role, ApiKey.system_key, ApiKey.controller_id)


def cached_principal(presented: str) -> Principal | None:
    """The principal of a key verified within the cache time, without touching the database."""
    if _split(presented) is None:
        return None
    return _cache.get(_hash(presented))


async def verify_key(
    session: AsyncSession, presented: str, *, cache_ttl: float
) -> Principal | None:
    prefix = _split(presented)
    if prefix is None:
        return None
    digest = _hash(presented)
    cached = _cache.get(digest)
    if cached is not None:
        return cached
    row = (
        await session.execute(_lookup.where(ApiKey.prefix == prefix, ApiKey.revoked_at.is_(None)))
    ).first()
    if row is None or not hmac.compare_digest(row.key_hash, digest):
        return None
    principal = Principal(
        key_id=row.id, role=row.role, system_key=row.system_key, controller_id=row.controller_id
    )
    if cache_ttl > 0:
        _cache.put(digest, principal, cache_ttl)
    return principal
