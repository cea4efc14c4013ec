"""The outbox: events queued in the session during a transaction and written at its commit,
beside the audit events of the same change. A rolled-back change sends nothing; a committed one
is in the table, where the worker's relay finds it (app/webhooks/relay.py).

Each event names one receiver (a system, or a controller: None means the platform). At commit
an event becomes a row only when its receiver takes webhooks (a system with a `webhook_url`, a
controller routed by webhook); the others have nobody to tell.

Payloads carry ids and statuses only, never an identity, a verification code or a secret.
"""

from __future__ import annotations

import itertools
import uuid
from datetime import datetime
from typing import Any

from sqlalchemy import (
    String,
    Table,
    case,
    cast,
    event,
    insert,
    literal,
    select,
    union_all,
)
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.base import NO_VALUE

from app.controllers.models import Controller
from app.core.db import utcnow
from app.core.hot_read import HotRead, among
from app.core.ids import new_id
from app.outbox.models import OutboxEvent
from app.requests.models import SubjectRequest
from app.systems.models import System

_PENDING = "outbox_pending"
_PLATFORM = "platform"


def emit(
    session: AsyncSession | Session,
    event_type: str,
    payload: dict[str, Any],
    *,
    system: str | None = None,
    controller: uuid.UUID | str | None = None,
) -> None:
    """Queue an event for a system (by key) or a controller (by id; neither: the platform).
    It is written with the transaction's commit, or dropped with it."""
    if system is not None:
        kind, target = "system", system
    else:
        kind, target = "controller", str(controller) if controller else _PLATFORM
    session.info.setdefault(_PENDING, []).append(
        {"event_type": event_type, "payload": payload, "target_kind": kind, "target_id": target}
    )


_SYSTEMS: Table = System.__table__  # type: ignore[assignment]
_CONTROLLERS: Table = Controller.__table__  # type: ignore[assignment]
_OUTBOX: Table = OutboxEvent.__table__  # type: ignore[assignment]


def _receivers_statement(systems: bool, platform: bool, controllers: bool, dialect: str) -> Any:
    """(kind, target) rows: the systems named that take webhooks; the platform's id, and
    whether it takes them; the controllers named that take them. Built once per shape; the
    lists bind as arrays on PostgreSQL (one text whatever their length), expanded elsewhere."""
    c = _CONTROLLERS.c
    hooked = (c.dsr_routing_mode == "webhook") & c.webhook_url.is_not(None)

    parts: list[Any] = []
    if systems:
        parts.append(
            select(literal("system").label("kind"), _SYSTEMS.c.key.label("target")).where(
                among(_SYSTEMS.c.key, "systems", dialect), _SYSTEMS.c.webhook_url.is_not(None)
            )
        )
    if platform:
        parts.append(
            select(
                case((hooked, literal("platform_hooked")), else_=literal("platform")).label("kind"),
                cast(c.id, String).label("target"),
            ).where(c.kind == "platform")
        )
    if controllers:
        parts.append(
            select(literal("controller").label("kind"), cast(c.id, String).label("target")).where(
                among(c.id, "ids", dialect), hooked
            )
        )
    return parts[0] if len(parts) == 1 else union_all(*parts)


# Run at every commit that emitted an event: straight on the driver on PostgreSQL.
_RECEIVERS = {
    (systems, platform, controllers): HotRead(
        _receivers_statement(systems, platform, controllers, "postgresql"),
        other=_receivers_statement(systems, platform, controllers, "other"),
    )
    for systems, platform, controllers in itertools.product((False, True), repeat=3)
    if systems or platform or controllers
}


def _receivers(session: Session, pending: list[dict[str, Any]]) -> tuple[set[str], set[str], Any]:
    """The systems and controllers among the events' receivers that take webhooks, and the
    platform's id where an event is addressed to it: one statement."""
    systems = {p["target_id"] for p in pending if p["target_kind"] == "system"}
    controllers = {p["target_id"] for p in pending if p["target_kind"] == "controller"}
    ids = {uuid.UUID(c) for c in controllers if c != _PLATFORM}
    with_system_hook: set[str] = set()
    with_controller_hook: set[str] = set()
    platform = None
    shape = (bool(systems), _PLATFORM in controllers, bool(ids))
    if not any(shape):
        return with_system_hook, with_controller_hook, platform
    params = {"systems": sorted(systems), "ids": sorted(ids)}
    for kind, target in _RECEIVERS[shape].rows_from_sync(session.connection(), params):
        if kind == "system":
            with_system_hook.add(target)
            continue
        controller_id = uuid.UUID(target)  # SQLite's text has no hyphens
        if kind == "controller" or kind == "platform_hooked":
            with_controller_hook.add(str(controller_id))
        if kind != "controller":
            platform = controller_id
    return with_system_hook, with_controller_hook, platform


def row(
    event_type: str, payload: dict[str, Any], target_kind: str, target_id: str, now: datetime
) -> dict[str, Any]:
    """One outbox row, pending and due now (for hooks that write rows at commit)."""
    return {
        "id": new_id(),
        "event_type": event_type,
        "payload": payload,
        "target_kind": target_kind,
        "target_id": target_id,
        "status": "pending",
        "attempts": 0,
        "next_attempt_at": now,
        "created_at": now,
    }


@event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    pending: list[dict[str, Any]] = session.info.pop(_PENDING, [])
    if not pending:
        return
    # The receivers as this transaction left them (a registry change in it counts): what an
    # ORM query would have flushed first, the Core statement below does not.
    session.flush()
    systems, controllers, platform = _receivers(session, pending)
    now = utcnow()
    rows = []
    for item in pending:
        target = item["target_id"]
        if item["target_kind"] == "controller" and target == _PLATFORM:
            if platform is None:
                continue
            target = str(platform)
        if target not in (systems if item["target_kind"] == "system" else controllers):
            continue
        rows.append(row(item["event_type"], item["payload"], item["target_kind"], target, now))
    if rows:
        session.connection().execute(insert(_OUTBOX), rows)


@event.listens_for(Session, "after_soft_rollback")
def _drop_pending(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(_PENDING, None)


# A request's status changes in several places (app/requests/state.py names them all); one
# listener on the attribute emits `request.status_changed` for each, to the filing controller
# (or the platform), so no call site can forget it.
@event.listens_for(SubjectRequest.status, "set", active_history=True)
def _on_request_status(target: SubjectRequest, value: Any, old: Any, _initiator: Any) -> None:
    session = object_session(target)
    if session is None or old in (NO_VALUE, None) or old == value:
        return
    emit(
        session,
        "request.status_changed",
        {
            "request_id": str(target.id),
            "type": target.type,
            "regime": target.regime,
            "from": str(old),
            "to": str(value),
        },
        controller=target.filed_by_controller_id,
    )
