"""The relay: claim due outbox events, deliver each as a signed Standard Webhooks POST, and
record the outcome (delivered; or retried later with exponential backoff and jitter; or, after
the last attempt, dead-lettered).

Claims are leases: a worker marks a batch `claimed_by` itself until `claimed_until` (on
PostgreSQL with `FOR UPDATE SKIP LOCKED`, so concurrent workers take different events; on SQLite
the write lock serialises claims). Every attempt is bounded by the timeout, and the lease is
longer than that, so no two workers deliver one event at the same time. A worker that dies
leaves its lease to lapse: the event is claimed again and sent with the same `webhook-id`.

Where an event goes and in which scheme it is signed (`v1` HMAC, `v1a` Ed25519) comes from its
receiver, one resolver per kind of receiver (app/webhooks/endpoints.py); connections go to the
address that passed the safety check (app/webhooks/transport.py).
"""

from __future__ import annotations

import asyncio
import random
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import Any

import httpx
import orjson
from sqlalchemy import Table, and_, bindparam, or_, select, update

from app.core.config import Settings
from app.core.crypto import SecretBox
from app.core.db import Database, utcnow
from app.core.signing import Signer
from app.interop.opendsr.callbacks import TARGET_KIND as OPENDSR_CALLBACK
from app.interop.opendsr.callbacks import signed_callback
from app.interop.opendsr.signing import NotConfigured, ProcessorSigner, processor_signer
from app.outbox.models import OutboxEvent
from app.webhooks.endpoints import Endpoint, resolve
from app.webhooks.signing import asymmetric_signature, signature_header
from app.webhooks.targets import UnsafeTarget, check_shape
from app.webhooks.transport import Resolver, delivery_client, system_resolver

_table: Table = OutboxEvent.__table__  # type: ignore[assignment]


@dataclass(frozen=True, slots=True)
class RelayConfig:
    timeout: float = 10.0
    max_attempts: int = 8
    backoff_base: float = 10.0
    backoff_max: float = 3600.0
    allow_private: bool = False
    batch_size: int = 20
    # What signs OpenDSR callbacks, loaded at the first one (raises NotConfigured when
    # OpenDSR is not set up: those callbacks wait and retry).
    opendsr_signer: Callable[[], ProcessorSigner] | None = None

    @classmethod
    def from_settings(cls, settings: Settings) -> RelayConfig:
        return cls(
            timeout=settings.webhook_timeout_seconds,
            max_attempts=settings.webhook_max_attempts,
            backoff_base=settings.webhook_backoff_base_seconds,
            backoff_max=settings.webhook_backoff_max_seconds,
            allow_private=settings.webhook_allow_private_targets,
            batch_size=settings.worker_batch_size,
            opendsr_signer=partial(processor_signer, settings),
        )

    @property
    def lease(self) -> timedelta:
        # Longer than an attempt (bounded by the timeout) plus recording its outcome.
        return timedelta(seconds=2 * self.timeout + 5)

    def backoff(self, attempts: int) -> timedelta:
        """The wait after the n-th failed attempt: exponential, with "equal jitter"."""
        delay = min(self.backoff_max, self.backoff_base * 2 ** max(attempts - 1, 0))
        return timedelta(seconds=delay * random.uniform(0.5, 1.0))  # noqa: S311


@dataclass(slots=True)
class Claimed:
    id: uuid.UUID
    event_type: str
    payload: dict[str, Any]
    target_kind: str
    target_id: str
    attempts: int
    created_at: datetime
    endpoint: Endpoint | None = None


@dataclass(frozen=True, slots=True)
class Outcome:
    delivered: bool
    status_code: int | None = None
    error: str | None = None


def body_of(event: Claimed) -> str:
    """The body every attempt sends, the same each time: type, time and data (ids only)."""
    return orjson.dumps(
        {
            "type": event.event_type,
            "timestamp": event.created_at.isoformat().replace("+00:00", "Z"),
            "data": {"event_id": str(event.id), **event.payload},
        }
    ).decode()


class Relay:
    def __init__(
        self,
        database: Database,
        box: SecretBox,
        config: RelayConfig,
        *,
        signer: Signer | None = None,
        worker_id: uuid.UUID | None = None,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver = system_resolver,
    ) -> None:
        self.database = database
        self.box = box
        self.config = config
        # The webhook key that signs `v1a` deliveries (None: such events cannot be signed).
        self.signer = signer
        self.worker_id = worker_id or uuid.uuid4()
        self._client = client
        self._resolver = resolver

    async def __aenter__(self) -> Relay:
        if self._client is None:
            self._client = delivery_client(
                allow_private=self.config.allow_private, resolver=self._resolver
            )
        return self

    async def __aexit__(self, *_exc: object) -> None:
        if self._client is not None:
            await self._client.aclose()
            self._client = None

    async def claim(self) -> list[Claimed]:
        """Take up to a batch of due events for this worker, with where to send them."""
        now = utcnow()
        probe = select(_table.c.id).where(
            _table.c.status == "pending",
            _table.c.next_attempt_at <= now,
            or_(_table.c.claimed_until.is_(None), _table.c.claimed_until < now),
        )
        due = (
            probe.order_by(_table.c.next_attempt_at)
            .limit(self.config.batch_size)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(_table)
            .where(_table.c.id.in_(due.scalar_subquery()))
            .values(claimed_by=self.worker_id, claimed_until=now + self.config.lease)
            .returning(
                _table.c.id,
                _table.c.event_type,
                _table.c.payload,
                _table.c.target_kind,
                _table.c.target_id,
                _table.c.attempts,
                _table.c.created_at,
            )
        )
        async with self.database.read_sessionmaker() as reader:
            # A read first: an idle worker takes no write lock (SQLite) and no row locks.
            if await reader.scalar(probe.limit(1)) is None:
                return []
        async with self.database.sessionmaker() as session, session.begin():
            rows = (await session.execute(statement)).all()
            claimed = [Claimed(*row) for row in rows]
            if claimed:
                await self._resolve(session, claimed, now)
        for event in claimed:  # SQLite hands back naive times from RETURNING
            if event.created_at.tzinfo is None:
                event.created_at = event.created_at.replace(tzinfo=now.tzinfo)
        return claimed

    async def _resolve(self, session: Any, claimed: list[Claimed], now: datetime) -> None:
        endpoints = await resolve(
            session, self.box, {(e.target_kind, e.target_id) for e in claimed}, now
        )
        for event in claimed:
            event.endpoint = endpoints.get((event.target_kind, event.target_id))

    def _signature(self, endpoint: Endpoint, msg_id: str, now: datetime, body: str) -> str:
        """The `webhook-signature` header in the endpoint's scheme ("" when it cannot sign)."""
        if endpoint.scheme == "v1a":
            if self.signer is None:
                return ""
            return asymmetric_signature(self.signer, msg_id, now, body)
        return signature_header(endpoint.secrets, msg_id, now, body) if endpoint.secrets else ""

    async def deliver(self, event: Claimed) -> Outcome:
        """One attempt: POST the signed body, bounded by the timeout as a whole."""
        assert self._client is not None, "use the relay as an async context manager"
        if event.target_kind == OPENDSR_CALLBACK:
            return await self._deliver_opendsr(event)
        endpoint = event.endpoint
        if endpoint is None or not endpoint.url:
            return Outcome(False, error="the receiver has no webhook URL")
        try:
            check_shape(endpoint.url, allow_private=self.config.allow_private)
        except UnsafeTarget as exc:
            return Outcome(False, error=str(exc))
        msg_id = f"msg_{event.id.hex}"
        now = utcnow()
        if endpoint.scheme == "none":
            # A DRP status callback: the status object itself, unsigned (app/webhooks/endpoints.py).
            body = orjson.dumps(event.payload).decode()
            headers = {"content-type": "application/json", "webhook-id": msg_id}
        else:
            body = body_of(event)
            signature = self._signature(endpoint, msg_id, now, body)
            if not signature:
                if endpoint.scheme == "v1a":
                    return Outcome(False, error="the service has no webhook signing key (v1a)")
                return Outcome(False, error="the receiver has no signing secret")
            headers = {
                "content-type": "application/json",
                "webhook-id": msg_id,
                "webhook-timestamp": str(int(now.timestamp())),
                "webhook-signature": signature,
            }
        return await self._post(endpoint.url, body.encode(), headers)

    async def _deliver_opendsr(self, event: Claimed) -> Outcome:
        """An OpenDSR status callback: the spec's body, signed with the processor's RSA key
        (not a Standard Webhooks secret), to the URL the controller's request named."""
        try:
            if self.config.opendsr_signer is None:
                raise NotConfigured
            signer = self.config.opendsr_signer()
        except NotConfigured:
            return Outcome(False, error="OpenDSR signing is not configured")
        url, body, headers = signed_callback(event.payload, signer)
        try:
            check_shape(url, allow_private=self.config.allow_private)
        except UnsafeTarget as exc:
            return Outcome(False, error=str(exc))
        return await self._post(url, body, headers)

    async def _post(self, url: str, body: bytes, headers: dict[str, str]) -> Outcome:
        """One POST, bounded by the timeout as a whole; a 2xx is delivered."""
        assert self._client is not None, "use the relay as an async context manager"
        try:
            async with asyncio.timeout(self.config.timeout):
                response = await self._client.post(url, content=body, headers=headers)
        except UnsafeTarget as exc:  # the addresses checked as the connection opened
            return Outcome(False, error=str(exc))
        except TimeoutError:
            return Outcome(False, error="timed out")
        except httpx.HTTPError as exc:
            return Outcome(False, error=f"{type(exc).__name__}: could not deliver")
        if 200 <= response.status_code < 300:
            return Outcome(True, response.status_code)
        return Outcome(False, response.status_code, f"answered {response.status_code}")

    async def record(self, results: list[tuple[Claimed, Outcome]]) -> None:
        """Write the outcomes, each only while this worker still holds the event's claim."""
        if not results:
            return
        now = utcnow()
        params = []
        for event, outcome in results:
            attempts = event.attempts + 1
            if outcome.delivered:
                status, next_at, delivered_at = "delivered", now, now
            elif attempts >= self.config.max_attempts:
                status, next_at, delivered_at = "dead", now, None
            else:
                status, next_at = "pending", now + self.config.backoff(attempts)
                delivered_at = None
            params.append(
                {
                    "b_id": event.id,
                    "b_status": status,
                    "b_attempts": attempts,
                    "b_next": next_at,
                    "b_code": outcome.status_code,
                    "b_error": (outcome.error or None) and outcome.error[:500],
                    "b_delivered": delivered_at,
                }
            )
        statement = (
            update(_table)
            .where(and_(_table.c.id == bindparam("b_id"), _table.c.claimed_by == self.worker_id))
            .values(
                status=bindparam("b_status"),
                attempts=bindparam("b_attempts"),
                next_attempt_at=bindparam("b_next"),
                last_attempt_at=now,
                last_status_code=bindparam("b_code"),
                last_error=bindparam("b_error"),
                delivered_at=bindparam("b_delivered"),
                claimed_by=None,
                claimed_until=None,
            )
        )
        async with self.database.sessionmaker() as session, session.begin():
            await (await session.connection()).execute(statement, params)

    async def release(self, events: list[Claimed]) -> None:
        """Give back claims this worker will not attempt (it is stopping)."""
        if not events:
            return
        async with self.database.sessionmaker() as session, session.begin():
            await session.execute(
                update(_table)
                .where(
                    _table.c.id.in_([e.id for e in events]),
                    _table.c.claimed_by == self.worker_id,
                )
                .values(claimed_by=None, claimed_until=None)
            )

    async def run_once(self) -> int:
        """Claim one batch, deliver it concurrently, record the outcomes; the batch's size."""
        claimed = await self.claim()
        if not claimed:
            return 0
        outcomes = await asyncio.gather(*(self.deliver(event) for event in claimed))
        await self.record(list(zip(claimed, outcomes, strict=True)))
        return len(claimed)
