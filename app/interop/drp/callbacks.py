"""Status callbacks (section 2.03): when a request an agent filed changes status, the agent's
`status_callback` gets the new Exercise Status object, through the outbox like every webhook:
written in the transaction of the change, sent by the worker's relay (app/webhooks/endpoints.py).

A listener on the request's status notes the requests that changed; at commit, those filed
through DRP with a callback URL (and whose agent takes callbacks) get one outbox event each,
carrying the status as it stands at commit: several moves in one transaction are one callback,
of the latest status, which is what the protocol asks to deliver. For the same reason a new
callback supersedes the request's earlier ones still waiting (pending, unclaimed): the relay
delivers a batch concurrently, and an older status must not land after a newer one.
"""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy import delete, event, insert, select
from sqlalchemy.orm import Session, object_session
from sqlalchemy.orm.base import NO_VALUE

from app.core.db import utcnow
from app.core.ids import new_id
from app.interop.drp.models import DrpAgent, DrpRequest
from app.interop.drp.status import status_object
from app.outbox.models import OutboxEvent
from app.requests.fresh import Pointers
from app.requests.models import SubjectRequest

TARGET_KIND = "drp_agent"
EVENT_TYPE = "drp.status_changed"
_CHANGED = "drp_status_changed"


@event.listens_for(SubjectRequest.status, "set", active_history=True)
def _note_change(target: SubjectRequest, value: Any, old: Any, _initiator: Any) -> None:
    session = object_session(target)
    if session is None or old in (NO_VALUE, None) or old == value:
        return
    session.info.setdefault(_CHANGED, {})[target.id] = target


# A request filed in this transaction has an exercise only if this transaction wrote it.
_EXERCISES = Pointers(DrpRequest, "subject_request_id")


@event.listens_for(Session, "before_commit")
def _write_callbacks(session: Session) -> None:
    changed: dict[uuid.UUID, SubjectRequest] = session.info.pop(_CHANGED, {})
    ask = _EXERCISES.to_ask(session, changed)
    if not ask:
        return
    filed = session.scalars(
        select(DrpRequest)
        .join(DrpAgent, DrpAgent.id == DrpRequest.agent_pk)
        .where(
            DrpRequest.subject_request_id.in_(ask),
            DrpRequest.status_callback.is_not(None),
            DrpAgent.callback_allowed.is_(True),
            DrpAgent.status == "active",
        )
    ).all()
    now = utcnow()
    rows = [
        {
            "id": new_id(),
            "event_type": EVENT_TYPE,
            "payload": status_object(drp, changed[drp.subject_request_id]),
            "target_kind": TARGET_KIND,
            "target_id": str(drp.id),
            "status": "pending",
            "attempts": 0,
            "next_attempt_at": now,
            "created_at": now,
        }
        for drp in filed
        if drp.subject_request_id is not None
    ]
    if rows:
        session.execute(
            delete(OutboxEvent).where(
                OutboxEvent.target_kind == TARGET_KIND,
                OutboxEvent.target_id.in_([row["target_id"] for row in rows]),
                OutboxEvent.status == "pending",
                OutboxEvent.claimed_by.is_(None),
            )
        )
        session.execute(insert(OutboxEvent), rows)


@event.listens_for(Session, "after_soft_rollback")
def _drop_changes(session: Session, _previous_transaction: Any) -> None:
    session.info.pop(_CHANGED, None)
