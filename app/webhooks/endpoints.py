"""Where an event goes and how it is signed, per kind of receiver: one resolver per
`target_kind`, each reading a batch of its receivers at once. A new kind of receiver adds its
resolver to RESOLVERS."""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from app.controllers.models import Controller
from app.core.crypto import SecretBox
from app.interop.drp.models import DrpRequest
from app.systems.models import System
from app.webhooks.models import WebhookSecret


@dataclass(frozen=True, slots=True)
class Endpoint:
    """A receiver's URL and Standard Webhooks scheme: `v1` signs with each of `secrets`
    (HMAC), `v1a` with the service's webhook key (Ed25519)."""

    url: str | None
    scheme: str = "v1"  # or "v1a"; "none" for DRP status callbacks, which are sent unsigned
    secrets: list[str] = field(default_factory=list)


Resolver = Callable[[AsyncSession, SecretBox, set[str], datetime], Awaitable[dict[str, Endpoint]]]


async def system_endpoints(
    session: AsyncSession, box: SecretBox, keys: set[str], now: datetime
) -> dict[str, Endpoint]:
    """Systems by key: their webhook URL, scheme and unretired secrets (newest first)."""
    secrets: dict[str, list[str]] = {}
    for key, sealed in await session.execute(
        select(WebhookSecret.target_id, WebhookSecret.secret_sealed)
        .where(
            WebhookSecret.target_kind == "system",
            WebhookSecret.target_id.in_(keys),
            or_(WebhookSecret.retires_at.is_(None), WebhookSecret.retires_at > now),
        )
        .order_by(WebhookSecret.created_at.desc())
    ):
        secrets.setdefault(key, []).append(box.open(sealed, context=f"webhook-secret:system:{key}"))
    rows = await session.execute(
        select(System.key, System.webhook_url, System.webhook_signature_scheme).where(
            System.key.in_(keys)
        )
    )
    return {key: Endpoint(url, scheme, secrets.get(key, [])) for key, url, scheme in rows}


async def controller_endpoints(
    session: AsyncSession, box: SecretBox, ids: set[str], now: datetime
) -> dict[str, Endpoint]:
    """Controllers by id: a URL only while they are routed by webhook."""
    rows = await session.execute(
        select(
            Controller.id,
            Controller.dsr_routing_mode,
            Controller.webhook_url,
            Controller.webhook_signature_scheme,
            Controller.webhook_secret_sealed,
        ).where(Controller.id.in_([uuid.UUID(i) for i in ids]))
    )
    return {
        str(cid): Endpoint(
            url if mode == "webhook" else None,
            scheme,
            [box.open(sealed, context=f"controller:{cid}")] if sealed else [],
        )
        for cid, mode, url, scheme, sealed in rows
    }


async def drp_endpoints(
    session: AsyncSession, box: SecretBox, ids: set[str], now: datetime
) -> dict[str, Endpoint]:
    """DRP requests by id: the `status_callback` URL the agent gave with the request.

    DRP 1.0 defines no signature for callbacks (section 2.03: the body is the Exercise Status
    object, nothing else), and an agent holds no secret of ours to check one with: callbacks go
    unsigned, with `webhook-id` so a receiver can drop a repeated delivery."""
    rows = await session.execute(
        select(DrpRequest.id, DrpRequest.status_callback).where(
            DrpRequest.id.in_([uuid.UUID(i) for i in ids])
        )
    )
    return {str(drp_id): Endpoint(url, scheme="none") for drp_id, url in rows}


RESOLVERS: dict[str, Resolver] = {
    "system": system_endpoints,
    "controller": controller_endpoints,
    "drp_agent": drp_endpoints,
}


async def resolve(
    session: AsyncSession, box: SecretBox, targets: set[tuple[str, str]], now: datetime
) -> dict[tuple[str, str], Endpoint]:
    """The endpoints of these (kind, id) receivers; unknown ones are left out."""
    found: dict[tuple[str, str], Endpoint] = {}
    for kind, resolver in RESOLVERS.items():
        ids = {target for k, target in targets if k == kind}
        if ids:
            for target, endpoint in (await resolver(session, box, ids, now)).items():
                found[kind, target] = endpoint
    return found
