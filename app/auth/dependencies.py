"""Who is calling: the principal behind the bearer key, and role requirements as types."""

from collections.abc import Collection
from typing import Annotated

from fastapi import Request, Security
from fastapi.security import HTTPBearer

from app.auth.oidc import looks_like_jwt
from app.auth.service import KEY_PREFIX, Principal, cached_principal, verify_key
from app.auth.usage import touch_key
from app.core.db import Database
from app.core.errors import Forbidden, Unauthorized


class ApiKeyAuth(HTTPBearer):
    """The bearer scheme the spec documents, resolving the key to its principal and checking
    its role in one dependency: FastAPI solves every dependency level anew on each request,
    and this one runs on every /v1 call."""

    def __init__(self, roles: Collection[str] | None = None) -> None:
        super().__init__(
            auto_error=False,
            scheme_name="apiKey",
            description="An API key (`Bearer sdsr_…`), or a token of a configured identity "
            "provider (`Bearer <JWT>`)",
        )
        self.roles = frozenset(roles) if roles is not None else None

    async def __call__(self, request: Request) -> Principal:  # type: ignore[override]
        # As HTTPBearer reads the header, without building its credentials model.
        scheme, _, key = (request.headers.get("authorization") or "").partition(" ")
        key = key.strip()
        if not key or scheme.lower() != "bearer":
            raise Unauthorized("Send `Authorization: Bearer <key>`")
        principal = cached_principal(key)
        if principal is None:
            # An API key never goes through JWT parsing; anything else may be a token.
            if key.startswith(KEY_PREFIX + "_") or not looks_like_jwt(key):
                principal = await _verify(request, key)
            else:
                principal = await _verify_token(request, key)
        request.state.principal = principal
        await request.app.state.rate_limiter.hit(principal.key_id, request.method)
        if self.roles is not None and principal.role not in self.roles:
            raise Forbidden(f"The {principal.role} role may not call this operation")
        return principal


async def _verify(request: Request, key: str) -> Principal:
    settings = request.app.state.settings
    database: Database = request.app.state.db
    # Its own short session, given back at once: a request never holds two pooled
    # connections, so a burst of requests cannot exhaust the pool waiting on itself.
    async with database.read_sessionmaker() as session:
        principal = await verify_key(session, key, cache_ttl=settings.api_key_cache_seconds)
    if principal is None:
        raise Unauthorized("Unknown or revoked API key")
    await touch_key(database, principal.key_id, every=max(60.0, settings.api_key_cache_seconds))
    return principal


async def _verify_token(request: Request, token: str) -> Principal:
    verifier = request.app.state.oidc
    if not verifier:
        raise Unauthorized("Unknown or revoked API key")
    settings = request.app.state.settings
    database: Database = request.app.state.db
    principal: Principal = await verifier.principal(
        token, database.read_sessionmaker, cache_seconds=settings.api_key_cache_seconds
    )
    return principal


def require_roles(*roles: str) -> object:
    return Security(ApiKeyAuth(roles))


AnyKey = Annotated[Principal, Security(ApiKeyAuth())]
AdminKey = Annotated[Principal, require_roles("admin")]
ReaderKey = Annotated[Principal, require_roles("admin", "auditor")]
