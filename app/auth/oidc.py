"""Sign-in with an identity provider: OIDC bearer tokens (JWTs) beside API keys.

A token is checked against its issuer's configuration (app/core/oidc_settings.py): signed by
a key of the issuer's JWKS with an allowed asymmetric algorithm, for our audience, in its
validity window (with a small leeway). Its claims then make the same `Principal` an API key
makes, failing closed: a role we do not know, a controller or system that does not exist, or
a missing claim is 403. Tokens are never logged, nor put into errors."""

from __future__ import annotations

import asyncio
import hashlib
import json
import logging
import time
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jwt
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.auth.models import ROLES
from app.auth.service import Principal
from app.controllers.models import Controller
from app.core.errors import Forbidden, Unauthorized
from app.core.oidc_settings import OidcIssuer
from app.systems.models import System

log = logging.getLogger("spix_dsr.oidc")

_MAX_JWKS_BYTES = 1024 * 1024
_FETCH_TIMEOUT = 5.0
# Where token principals get their stable actor id (the audit log's actor_key_id).
_ACTOR_NAMESPACE = uuid.UUID("5f0b1c8e-6d1e-4c57-9a53-4f0e6d0b2a11")


def looks_like_jwt(credential: str) -> bool:
    return credential.count(".") == 2


class JwksSource:
    """One issuer's signing keys by `kid`: fetched from the URL (or read from the file),
    kept for `jwks_cache_seconds`, fetched again early when a token names an unknown kid,
    so the provider can rotate its keys without a restart here."""

    def __init__(self, issuer: OidcIssuer) -> None:
        self.issuer = issuer
        self._keys: dict[str | None, dict[str, Any]] = {}
        self._fetched_at = float("-inf")
        self._lock = asyncio.Lock()

    async def key(self, kid: str | None) -> dict[str, Any] | None:
        now = time.monotonic()
        age = now - self._fetched_at
        stale = age > self.issuer.jwks_cache_seconds
        if stale or (kid not in self._keys and age >= self.issuer.jwks_min_refresh_seconds):
            await self._refresh(self._fetched_at)
        return self._keys.get(kid)

    async def _refresh(self, seen: float) -> None:
        async with self._lock:
            if self._fetched_at != seen:  # another request refreshed while this one waited
                return
            try:
                document = await asyncio.to_thread(self._load)
                self._keys = _index(document)
            except (OSError, ValueError) as exc:
                # Keep the keys we had: a provider that is briefly down signs nobody out.
                log.warning(
                    "could not load the JWKS",
                    extra={"issuer": self.issuer.issuer, "error": str(exc)},
                )
            self._fetched_at = time.monotonic()

    def _load(self) -> Any:
        if self.issuer.jwks_file is not None:
            raw = Path(self.issuer.jwks_file).read_bytes()
        else:
            url = self.issuer.jwks_url or ""
            if not url.startswith(("https://", "http://")):
                raise ValueError("jwks_url must be an http(s) URL")
            request = urllib.request.Request(url, headers={"Accept": "application/json"})  # noqa: S310
            with urllib.request.urlopen(request, timeout=_FETCH_TIMEOUT) as response:  # noqa: S310
                raw = response.read(_MAX_JWKS_BYTES + 1)
        if len(raw) > _MAX_JWKS_BYTES:
            raise ValueError("the JWKS is too large")
        return json.loads(raw)


def _index(document: Any) -> dict[str | None, dict[str, Any]]:
    if not isinstance(document, dict) or not isinstance(document.get("keys"), list):
        raise ValueError("a JWKS is an object with a `keys` list")
    keys = [k for k in document["keys"] if isinstance(k, dict) and k.get("use", "sig") == "sig"]
    indexed: dict[str | None, dict[str, Any]] = {k.get("kid"): k for k in keys}
    if len(keys) == 1:  # a token without a kid may use the only key there is
        indexed.setdefault(None, keys[0])
    return indexed


class _TokenCache:
    """Principals of tokens verified lately, by the token's digest, until the cache time or
    the token's expiry, whichever is first."""

    def __init__(self) -> None:
        self._entries: dict[str, tuple[Principal, float]] = {}

    def get(self, digest: str) -> Principal | None:
        entry = self._entries.get(digest)
        if entry is None or entry[1] < time.time():
            return None
        return entry[0]

    def put(self, digest: str, principal: Principal, until: float) -> None:
        if len(self._entries) > 10_000:
            self._entries.clear()
        self._entries[digest] = (principal, until)


class OidcVerifier:
    def __init__(self, issuers: list[OidcIssuer]) -> None:
        self._issuers = {issuer.issuer: (issuer, JwksSource(issuer)) for issuer in issuers}
        self._cache = _TokenCache()

    def __bool__(self) -> bool:
        return bool(self._issuers)

    async def principal(
        self,
        token: str,
        session_factory: Callable[[], Any],
        *,
        cache_seconds: float,
    ) -> Principal:
        digest = hashlib.sha256(token.encode()).hexdigest()
        cached = self._cache.get(digest)
        if cached is not None:
            return cached
        issuer, claims = await self.verify(token)
        async with session_factory() as session:
            principal = await principal_of(session, issuer, claims)
        if cache_seconds > 0:
            self._cache.put(digest, principal, min(time.time() + cache_seconds, claims["exp"]))
        return principal

    async def verify(self, token: str) -> tuple[OidcIssuer, dict[str, Any]]:
        """The token's issuer and claims once its signature and validity are checked; 401
        for any token that is not one we accept."""
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise Unauthorized("The bearer token is not a well-formed JWT") from exc
        iss = unverified.get("iss")
        found = self._issuers.get(iss) if isinstance(iss, str) else None
        if found is None:
            raise Unauthorized("The token's issuer is not configured here")
        issuer, source = found
        algorithm = header.get("alg")
        if algorithm not in issuer.algorithms:
            raise Unauthorized("The token's signing algorithm is not accepted")
        kid = header.get("kid")
        jwk_data = await source.key(kid if isinstance(kid, str) else None)
        if jwk_data is None:
            raise Unauthorized("The token is signed by a key the issuer does not publish")
        if jwk_data.get("alg") not in (None, algorithm):
            raise Unauthorized("The token's algorithm does not match its key")
        try:
            key = jwt.PyJWK(jwk_data, algorithm=algorithm)
            claims: dict[str, Any] = jwt.decode(
                token,
                key=key.key,
                algorithms=[algorithm],
                audience=issuer.audience,
                issuer=issuer.issuer,
                leeway=issuer.leeway_seconds,
                options={"require": ["exp", "iss", "aud", "sub"]},
            )
        except jwt.ExpiredSignatureError as exc:
            raise Unauthorized("The token has expired") from exc
        except jwt.InvalidAudienceError as exc:
            raise Unauthorized("The token is not meant for this service") from exc
        except (jwt.PyJWTError, ValueError, TypeError) as exc:
            raise Unauthorized("The token is not valid") from exc
        return issuer, claims


def _role(issuer: OidcIssuer, claims: dict[str, Any]) -> str:
    value = claims.get(issuer.role_claim)
    values = [value] if isinstance(value, str) else value if isinstance(value, list) else []
    mapped = {
        issuer.role_map.get(v) if issuer.role_map else v for v in values if isinstance(v, str)
    }
    roles = {role for role in mapped if role in ROLES}
    if len(roles) != 1:
        # No role, one we do not know, or several: fail closed.
        raise Forbidden("The token names no role this service knows (or several)")
    return roles.pop()


async def principal_of(
    session: AsyncSession, issuer: OidcIssuer, claims: dict[str, Any]
) -> Principal:
    """The principal a verified token's claims make; 403 when they do not make one."""
    role = _role(issuer, claims)
    sub = claims.get("sub")
    if not isinstance(sub, str) or not sub:
        raise Forbidden("The token names no subject")
    actor = uuid.uuid5(_ACTOR_NAMESPACE, f"{issuer.issuer}\n{sub}")
    if role == "controller":
        raw = claims.get(issuer.controller_claim)
        try:
            controller_id = uuid.UUID(raw) if isinstance(raw, str) else None
        except ValueError:
            controller_id = None
        if controller_id is None or (
            await session.scalar(select(Controller.id).where(Controller.id == controller_id))
            is None
        ):
            raise Forbidden("The token names no controller this service knows")
        return Principal(key_id=actor, role=role, controller_id=controller_id)
    if role == "system":
        system_key = claims.get(issuer.system_claim)
        if not isinstance(system_key, str) or (
            await session.scalar(select(System.key).where(System.key == system_key)) is None
        ):
            raise Forbidden("The token names no system this service knows")
        return Principal(key_id=actor, role=role, system_key=system_key)
    return Principal(key_id=actor, role=role)
