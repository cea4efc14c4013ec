"""Who is calling: the principal behind the bearer key, and role requirements as types."""

from typing import Annotated

from fastapi import Depends, Request, Security
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from app.auth.service import Principal, verify_key
from app.core.db import Database
from app.core.errors import Forbidden, Unauthorized

bearer_scheme = HTTPBearer(
    auto_error=False, scheme_name="apiKey", description="An API key: `Bearer sdsr_…`"
)


async def get_principal(
    request: Request,
    credentials: Annotated[HTTPAuthorizationCredentials | None, Security(bearer_scheme)],
) -> Principal:
    if credentials is None:
        raise Unauthorized("Send `Authorization: Bearer <key>`")
    settings = request.app.state.settings
    database: Database = request.app.state.db
    # Its own short session, given back at once: a request never holds two pooled
    # connections, so a burst of requests cannot exhaust the pool waiting on itself.
    async with database.read_sessionmaker() as session:
        principal = await verify_key(
            session, credentials.credentials, cache_ttl=settings.api_key_cache_seconds
        )
    if principal is None:
        raise Unauthorized("Unknown or revoked API key")
    request.state.principal = principal
    return principal


def require_roles(*roles: str) -> object:
    async def check(principal: Annotated[Principal, Depends(get_principal)]) -> Principal:
        if principal.role not in roles:
            raise Forbidden(f"The {principal.role} role may not call this operation")
        return principal

    return Depends(check)


AnyKey = Annotated[Principal, Depends(get_principal)]
AdminKey = Annotated[Principal, require_roles("admin")]
ReaderKey = Annotated[Principal, require_roles("admin", "auditor")]
